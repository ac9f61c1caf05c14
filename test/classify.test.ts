import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ERROR_CATEGORIES,
  ErrorPolicy,
  PoolError,
  classify,
  isFailureShape,
  wrapError,
  type ErrorCategory,
  type ErrorCode,
} from '../src/errors/index.js';

const SEED_KINDS: Array<[string, ErrorCategory, ErrorCode]> = [
  ['port_exited', 'connection_error', 'PYFLEET_WORKER_CRASHED'],
  ['connect_failed', 'connection_error', 'PYFLEET_WORKER_CRASHED'],
  ['checkout_failed', 'resource_error', 'PYFLEET_NO_WORKERS'],
  ['timeout', 'timeout_error', 'PYFLEET_TIMEOUT'],
  ['encode_error', 'communication_error', 'PYFLEET_INVALID_ARGS'],
  ['decode_error', 'communication_error', 'PYFLEET_PROTOCOL_ERROR'],
  ['health_check_failed', 'health_check_error', 'PYFLEET_HEALTH_CHECK_FAILED'],
  ['python_exception', 'python_error', 'PYFLEET_PYTHON_ERROR'],
  ['init_failed', 'initialization_error', 'PYFLEET_INIT_FAILED'],
  ['session_not_found', 'session_error', 'PYFLEET_SESSION_LOST'],
  ['circuit_open', 'resource_error', 'PYFLEET_CIRCUIT_OPEN'],
];

function errno(code: string, message = `spawn python3 ${code}`): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, syscall: 'spawn python3' });
}

describe('classify: failure shapes', () => {
  for (const [kind, category] of SEED_KINDS) {
    it(`{ kind: '${kind}' } -> ${category}`, () => {
      assert.equal(classify({ kind }), category);
      assert.equal(classify({ kind, detail: 1 }), category);
    });
  }

  it('covers every category from some shape', () => {
    const reached = new Set<ErrorCategory>(SEED_KINDS.map(([k]) => classify({ kind: k })));
    reached.add(classify({ kind: 'anything_else' }));
    assert.deepEqual([...reached].sort(), [...ERROR_CATEGORIES].sort());
  });

  it('a kind naming a category maps to that category (the seed sent them to system_error)', () => {
    for (const c of ERROR_CATEGORIES) assert.equal(classify({ kind: c }), c);
  });

  it('unknown kinds and non-shapes are system_error', () => {
    for (const x of [{ kind: 'mystery' }, { kind: 5 }, {}, 'timeout', ['timeout', 1], 42, null, undefined, new Error('boom'), new TypeError('x')]) {
      assert.equal(classify(x), 'system_error', `for ${String(x)}`);
    }
  });

  it('isFailureShape', () => {
    assert.equal(isFailureShape({ kind: 'timeout' }), true);
    assert.equal(isFailureShape({ kind: 1 }), false);
    assert.equal(isFailureShape(null), false);
  });
});

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

  it('an unknown errno is system_error', () => {
    assert.equal(classify(errno('EWHATEVER')), 'system_error');
  });

  it('a real spawn of a missing interpreter is initialization_error', async () => {
    const err = await new Promise<Error>((resolve) => {
      const child = spawn('/nonexistent/pyfleet-test-python', ['-c', 'pass']);
      child.on('error', resolve);
    });
    assert.equal(classify(err), 'initialization_error');
    const wrapped = wrapError(err);
    assert.equal(wrapped.code, 'PYFLEET_SPAWN_FAILED');
    assert.equal(wrapped.retryable, true);
    assert.match(wrapped.message, /Could not start the Python interpreter .*ENOENT.*`python` option/);
    assert.equal(wrapped.cause, err);
    assert.equal(wrapped.details?.errno, 'ENOENT');
  });
});

describe('wrapError', () => {
  for (const [kind, category, code] of SEED_KINDS) {
    it(`{ kind: '${kind}' } -> ${code}`, () => {
      const e = wrapError({ kind, detail: 'd' }, { workerId: 2, sessionId: 's', command: 'predict', requestId: 9 });
      assert.ok(e instanceof PoolError);
      assert.equal(e.category, category);
      assert.equal(e.code, code);
      assert.equal(e.workerId, 2);
      assert.equal(e.sessionId, 's');
      assert.equal(e.command, 'predict');
      assert.equal(e.requestId, 9);
      assert.equal(e.attempt, 1);
      assert.equal(e.details?.kind, kind);
      assert.equal(e.details?.detail, 'd');
      assert.ok(e.message.length > 10 && /[.:]/.test(e.message), e.message);
    });
  }

  it('severity and strategy come from the policy', () => {
    const e = wrapError({ kind: 'timeout' });
    assert.equal(e.severity, 'major');
    assert.equal(e.strategy, 'backoff_retry');
    const late = wrapError({ kind: 'timeout' }, { attempt: 4 });
    assert.equal(late.severity, 'critical');
    assert.equal(late.strategy, 'abandon');
    const all = wrapError({ kind: 'health_check_failed' }, { affectingAllWorkers: true });
    assert.equal(all.severity, 'critical');
    assert.equal(all.strategy, 'backoff_retry'); // critical, but attempt 1: not abandoned yet
  });

  it('uses the given policy', () => {
    const policy = new ErrorPolicy({ timeout_error: { severity: 'minor', strategy: 'immediate_retry' } });
    const e = wrapError({ kind: 'timeout' }, { policy });
    assert.equal(e.severity, 'minor');
    assert.equal(e.strategy, 'immediate_retry');
  });

  it('python_exception carries the exception and says it in the message', () => {
    const python = { type: 'ValueError', message: 'bad value', traceback: 'Traceback (most recent call last):\n  ...\nValueError: bad value\n' };
    const e = wrapError({ kind: 'python_exception', python }, { taken: true });
    assert.deepEqual(e.python, python);
    assert.equal(e.message, 'Python raised ValueError: bad value');
    assert.equal(e.taken, true);
  });

  it('a given message replaces the default', () => {
    assert.equal(wrapError({ kind: 'port_exited', message: 'worker 3 died (SIGKILL)' }).message, 'worker 3 died (SIGKILL)');
  });

  it('default messages name the detail', () => {
    assert.match(wrapError({ kind: 'port_exited', detail: 137 }).message, /exited unexpectedly \(137\)/);
    assert.match(wrapError({ kind: 'session_not_found', detail: 'user-42' }).message, /user-42.*open it again/);
    assert.match(wrapError({ kind: 'resource_error', detail: 'pool_not_available' }).message, /resource_error \(pool_not_available\)/);
  });

  it('category-named kinds get the category default code', () => {
    assert.equal(wrapError({ kind: 'system_error' }).code, 'PYFLEET_INTERNAL');
    assert.equal(wrapError({ kind: 'resource_error' }).code, 'PYFLEET_NO_WORKERS');
  });

  it('Node pipe errors become PYFLEET_WORKER_CRASHED', () => {
    const e = wrapError(errno('EPIPE', 'write EPIPE'), { workerId: 4 });
    assert.equal(e.code, 'PYFLEET_WORKER_CRASHED');
    assert.equal(e.category, 'connection_error');
    assert.match(e.message, /pipe to the Python worker broke \(write EPIPE\)/);
  });

  it('anything else is PYFLEET_INTERNAL system_error, not retryable, abandoned', () => {
    const boom = new Error('boom');
    const e = wrapError(boom);
    assert.equal(e.code, 'PYFLEET_INTERNAL');
    assert.equal(e.category, 'system_error');
    assert.equal(e.retryable, false);
    assert.equal(e.severity, 'critical');
    assert.equal(e.strategy, 'abandon');
    assert.equal(e.cause, boom);
    assert.match(e.message, /Unexpected internal error: boom/);
    assert.match(wrapError('weird').message, /Unexpected failure: 'weird'/);
  });

  it('retryable follows the code', () => {
    assert.equal(wrapError({ kind: 'encode_error' }).retryable, false);
    assert.equal(wrapError({ kind: 'decode_error' }).retryable, true);
    assert.equal(wrapError({ kind: 'session_not_found' }).retryable, false);
  });

  it('an existing PoolError keeps its identity and code, and gets attempt/severity/strategy updated', () => {
    const original = new PoolError({ code: 'PYFLEET_TIMEOUT', message: 'timed out', workerId: 1 });
    const e = wrapError(original, { attempt: 4, workerId: 7, sessionId: 's1', command: 'c', taken: true, details: { x: 1 } });
    assert.equal(e, original);
    assert.equal(e.code, 'PYFLEET_TIMEOUT');
    assert.equal(e.attempt, 4);
    assert.equal(e.severity, 'critical');
    assert.equal(e.strategy, 'abandon');
    assert.equal(e.workerId, 1, 'keeps the worker it already names');
    assert.equal(e.sessionId, 's1', 'fills in what it lacked');
    assert.equal(e.command, 'c');
    assert.equal(e.taken, true);
    assert.deepEqual(e.details, { x: 1 });
    assert.equal(e.message, 'timed out');
  });

  it('an existing PoolError without a context attempt keeps its attempt', () => {
    const original = new PoolError({ code: 'PYFLEET_WORKER_CRASHED', message: 'x', attempt: 2, severity: 'warning' });
    const e = wrapError(original);
    assert.equal(e.attempt, 2);
    assert.equal(e.severity, 'major', 'recomputed from the policy');
    assert.equal(e.strategy, 'backoff_retry');
  });
});
