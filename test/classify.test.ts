import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ERROR_CATEGORIES, PoolError, classify } from '../src/errors/index.js';

function errno(code: string, message = `spawn python3 ${code}`): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, syscall: 'spawn python3' });
}

describe('classify: PoolError and Node errors', () => {
  it('a PoolError keeps its own category', () => {
    for (const c of ERROR_CATEGORIES) {
      assert.equal(classify(new PoolError({ code: 'PYFLEET_INTERNAL', category: c, message: 'x' })), c);
    }
    assert.equal(classify(new PoolError({ code: 'PYFLEET_TIMEOUT', message: 'x' })), 'timeout_error');
  });

  it('ENOENT / EACCES / EPERM -> initialization_error', () => {
    for (const c of ['ENOENT', 'EACCES', 'EPERM']) assert.equal(classify(errno(c)), 'initialization_error');
  });

  it('EPIPE / ECONNRESET / ERR_STREAM_DESTROYED -> connection_error', () => {
    for (const c of ['EPIPE', 'ECONNRESET', 'ERR_STREAM_DESTROYED', 'ERR_IPC_CHANNEL_CLOSED']) assert.equal(classify(errno(c)), 'connection_error');
  });

  it('ETIMEDOUT -> timeout_error, EMFILE/ENOMEM/EAGAIN -> resource_error', () => {
    assert.equal(classify(errno('ETIMEDOUT')), 'timeout_error');
    for (const c of ['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN']) assert.equal(classify(errno(c)), 'resource_error');
  });

  it('an unknown errno, a plain Error and anything else are system_error', () => {
    assert.equal(classify(errno('EWHATEVER')), 'system_error');
    assert.equal(classify(new Error('boom')), 'system_error');
    assert.equal(classify('weird'), 'system_error');
    assert.equal(classify({ code: 'EPIPE' }), 'system_error', 'an errno code counts only on an Error');
    assert.equal(classify(Object.assign(new Error('x'), { code: ['EPIPE'] })), 'system_error', 'and only as a string (an array would name the key)');
  });

  it('a real spawn of a missing interpreter is initialization_error', async () => {
    const err = await new Promise<Error>((resolve) => {
      const child = spawn('/nonexistent/pyfleet-test-python', ['-c', 'pass']);
      child.on('error', resolve);
    });
    assert.equal(classify(err), 'initialization_error');
  });
});

