import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PoolError, formatForLogging, logFields } from '../src/errors/index.js';

describe('formatForLogging', () => {
  it('prints the seed lines with N/A for missing worker and session', () => {
    const e = new PoolError({ code: 'PYFLEET_TIMEOUT', message: 'The call timed out after 5000 ms.', command: 'predict' });
    const lines = formatForLogging(e).split('\n');
    assert.equal(lines[0], 'Pool Error: The call timed out after 5000 ms.');
    assert.equal(lines[1], 'Category: timeout_error');
    assert.equal(lines[2], 'Severity: major');
    assert.equal(lines[3], 'Recovery: backoff_retry');
    assert.equal(lines[4], 'Worker: N/A');
    assert.equal(lines[5], 'Session: N/A');
    assert.equal(lines[6], 'Attempt: 1');
    assert.match(lines[7], /^Context: \{/);
    const text = formatForLogging(e);
    assert.match(text, /code: 'PYFLEET_TIMEOUT'/);
    assert.match(text, /command: 'predict'/);
    assert.ok(!text.endsWith('\n'));
    assert.ok(!text.includes('Python:'));
  });

  it('shows worker, session, attempt, details and cause', () => {
    const e = new PoolError({ code: 'PYFLEET_WORKER_CRASHED', message: 'Worker 3 exited with code 137.', workerId: 3, sessionId: 'user-42', attempt: 2, command: 'add', details: { exitCode: 137 }, cause: new Error('pipe closed') });
    const text = formatForLogging(e);
    assert.match(text, /^Pool Error: Worker 3 exited with code 137\./);
    assert.match(text, /\nCategory: connection_error\n/);
    assert.match(text, /\nRecovery: backoff_retry\n/);
    assert.match(text, /\nWorker: 3\n/);
    assert.match(text, /\nSession: user-42\n/);
    assert.match(text, /\nAttempt: 2\n/);
    assert.match(text, /exitCode: 137/);
    assert.match(text, /cause: 'Error: pipe closed'/);
  });

  it('worker 0 is a worker, not N/A', () => {
    const e = new PoolError({ code: 'PYFLEET_WORKER_CRASHED', message: 'x', workerId: 0 });
    assert.match(formatForLogging(e), /\nWorker: 0\n/);
  });

  it('appends the Python exception and its traceback, indented', () => {
    const python = { type: 'KeyError', message: "'a'", traceback: 'Traceback (most recent call last):\n  File "h.py", line 3\nKeyError: \'a\'\n' };
    const e = new PoolError({ code: 'PYFLEET_PYTHON_ERROR', message: "h raised KeyError: 'a'", python, workerId: 1 });
    const lines = formatForLogging(e).split('\n');
    const i = lines.indexOf("Python: KeyError: 'a'");
    assert.ok(i > 7, lines.join('\n'));
    assert.equal(lines[i + 1], 'Traceback:');
    assert.equal(lines[i + 2], '  Traceback (most recent call last):');
    assert.equal(lines[i + 3], '    File "h.py", line 3');
    assert.equal(lines.at(-1), "  KeyError: 'a'");
  });
});

describe('logFields', () => {
  it('is flat and carries the same fields', () => {
    const python = { type: 'ValueError', message: 'bad', traceback: 'tb' };
    const e = new PoolError({ code: 'PYFLEET_PYTHON_ERROR', message: 'Python raised ValueError: bad', python, details: { kind: 'python_exception', detail: { nested: { deep: 1 } } }, workerId: 2, sessionId: 's', command: 'predict', attempt: 1 });
    const f = logFields(e);
    assert.equal(f.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(f.message, 'Python raised ValueError: bad');
    assert.equal(f.category, 'python_error');
    assert.equal(f.severity, 'major');
    assert.equal(f.strategy, 'failover');
    assert.equal(f.workerId, 2);
    assert.equal(f.sessionId, 's');
    assert.equal(f.command, 'predict');
    assert.equal(f.attempt, 1);
    assert.equal(f.pythonType, 'ValueError');
    assert.equal(f.pythonMessage, 'bad');
    assert.equal(f.pythonTraceback, 'tb');
    assert.equal(f['details.kind'], 'python_exception');
    assert.equal(typeof f['details.detail'], 'string');
    assert.match(String(f['details.detail']), /nested/);
    for (const v of Object.values(f)) assert.ok(v === null || ['string', 'number', 'boolean'].includes(typeof v), `not flat: ${String(v)}`);
  });

  it('missing values are null, no python fields without an exception, cause as text', () => {
    const f = logFields(new PoolError({ code: 'PYFLEET_INTERNAL', message: 'Unexpected failure: boom.', cause: new Error('boom') }));
    assert.equal(f.workerId, null);
    assert.equal(f.sessionId, null);
    assert.equal('pythonType' in f, false);
    assert.equal(f.cause, 'Error: boom');
  });
});
