import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FALLBACK_DELAYS as FALLBACK, RETRY_DELAYS as SEED_DELAYS, RETRY_IN_PLACE, scheduleFor as schedule, validatePolicyOverrides as validate } from '../src/errors/policy.js';
import { PoolError as PE } from '../src/errors/pool-error.js';
import {
  DEFAULT_MATRIX,
  DEFAULT_POLICY,
  ERROR_CATEGORIES,
  ErrorPolicy,
  PoolError,
  RETRY_DELAYS,
  upgradeSeverity,
  validatePolicyOverrides,
  type ErrorCategory,
  type ErrorCode,
  type RecoveryStrategy,
  type Severity,
} from '../src/errors/index.js';

/** The seed's table, written out again: the matrix must equal it exactly. */
const SEED_TABLE = {
  initialization_error: { severity: 'critical', strategy: 'circuit_break', maxRetries: 3, backoff: 'exponential' },
  connection_error: { severity: 'major', strategy: 'backoff_retry', maxRetries: 5, backoff: 'exponential' },
  communication_error: { severity: 'major', strategy: 'immediate_retry', maxRetries: 3, backoff: 'linear' },
  timeout_error: { severity: 'major', strategy: 'backoff_retry', maxRetries: 2, backoff: 'exponential' },
  resource_error: { severity: 'critical', strategy: 'circuit_break', maxRetries: 1, backoff: 'none' },
  health_check_error: { severity: 'minor', strategy: 'backoff_retry', maxRetries: 3, backoff: 'linear' },
  session_error: { severity: 'minor', strategy: 'immediate_retry', maxRetries: 2, backoff: 'none' },
  python_error: { severity: 'major', strategy: 'failover', maxRetries: 1, backoff: 'none' },
  system_error: { severity: 'critical', strategy: 'abandon', maxRetries: 0, backoff: 'none' },
} as const;

const CODE_OF: Record<ErrorCategory, ErrorCode> = {
  initialization_error: 'PYFLEET_SPAWN_FAILED',
  connection_error: 'PYFLEET_WORKER_CRASHED',
  communication_error: 'PYFLEET_PROTOCOL_ERROR',
  timeout_error: 'PYFLEET_TIMEOUT',
  resource_error: 'PYFLEET_NO_WORKERS',
  health_check_error: 'PYFLEET_HEALTH_CHECK_FAILED',
  session_error: 'PYFLEET_SESSION_LOST',
  python_error: 'PYFLEET_PYTHON_ERROR',
  system_error: 'PYFLEET_INTERNAL',
};

function err(category: ErrorCategory, init: Partial<ConstructorParameters<typeof PoolError>[0]> = {}): PoolError {
  return new PoolError({ code: CODE_OF[category], category, message: `${category} happened`, retryable: true, ...init });
}

function invalidOptions(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PoolError, 'a PoolError');
    assert.equal(e.code, 'PYFLEET_INVALID_OPTIONS');
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

describe('the default matrix', () => {
  it('is the seed table, as data', () => {
    assert.deepEqual({ ...DEFAULT_MATRIX }, SEED_TABLE);
    assert.ok(Object.isFrozen(DEFAULT_MATRIX));
  });

  it('the default policy serves it unchanged', () => {
    for (const c of ERROR_CATEGORIES) assert.deepEqual({ ...DEFAULT_POLICY.row(c) }, SEED_TABLE[c]);
    assert.deepEqual(JSON.parse(JSON.stringify(new ErrorPolicy().matrix())), SEED_TABLE);
  });

  it('the delay lists are the seed\'s', () => {
    assert.deepEqual(RETRY_DELAYS, { immediate_retry: [0, 100, 200], backoff_retry: [1000, 2000, 4000, 8000, 16000], exponential: [1000, 3000, 9000, 27000] });
  });
});

describe('severity', () => {
  const p = DEFAULT_POLICY;
  it('is the row\'s for attempts 1 to 3', () => {
    for (const c of ERROR_CATEGORIES) for (const attempt of [1, 2, 3]) assert.equal(p.severity(c, { attempt }), SEED_TABLE[c].severity, `${c} #${attempt}`);
  });

  it('rises one step after attempt 3: minor -> major, major -> critical, critical stays', () => {
    const expected: Record<Severity, Severity> = { warning: 'minor', minor: 'major', major: 'critical', critical: 'critical' };
    for (const c of ERROR_CATEGORIES) {
      for (const attempt of [4, 5, 10]) assert.equal(p.severity(c, { attempt }), expected[SEED_TABLE[c].severity], `${c} #${attempt}`);
    }
    assert.equal(p.severity('health_check_error', { attempt: 4 }), 'major');
    assert.equal(p.severity('timeout_error', { attempt: 4 }), 'critical');
    assert.equal(p.severity('system_error', { attempt: 4 }), 'critical');
  });

  it('a warning row rises to minor', () => {
    const q = new ErrorPolicy({ session_error: { severity: 'warning' } });
    assert.equal(q.severity('session_error', { attempt: 1 }), 'warning');
    assert.equal(q.severity('session_error', { attempt: 4 }), 'minor');
    assert.equal(upgradeSeverity('warning'), 'minor');
  });

  it('is critical when all workers are affected, at any attempt', () => {
    for (const c of ERROR_CATEGORIES) {
      for (const attempt of [1, 4]) assert.equal(p.severity(c, { attempt, affectingAllWorkers: true }), 'critical');
      assert.equal(p.severity(c, { attempt: 1, affectingAllWorkers: false }), SEED_TABLE[c].severity);
    }
  });
});

describe('strategy', () => {
  const p = DEFAULT_POLICY;
  it('each category\'s default is the table\'s (where the seed\'s code disagrees, the table wins)', () => {
    for (const c of ERROR_CATEGORIES) {
      const ctx = { attempt: 1 };
      assert.equal(p.strategy(c, p.severity(c, ctx), ctx), SEED_TABLE[c].strategy, c);
    }
    assert.equal(p.strategy('initialization_error', 'critical', { attempt: 1 }), 'circuit_break');
    assert.equal(p.strategy('resource_error', 'critical', { attempt: 1 }), 'circuit_break');
    assert.equal(p.strategy('system_error', 'critical', { attempt: 1 }), 'abandon');
    assert.equal(p.strategy('communication_error', 'minor', { attempt: 1 }), 'immediate_retry', 'seed code would abandon a minor communication_error');
  });

  it('critical past attempt 2 is abandoned', () => {
    for (const c of ERROR_CATEGORIES) {
      assert.equal(p.strategy(c, 'critical', { attempt: 3 }), 'abandon', c);
      assert.equal(p.strategy(c, 'critical', { attempt: 2 }), SEED_TABLE[c].strategy, `${c} at attempt 2 is not yet abandoned`);
      assert.equal(p.strategy(c, 'major', { attempt: 3 }), SEED_TABLE[c].strategy, `${c} major at attempt 3 keeps its strategy`);
    }
  });
});

describe('overrides', () => {
  it('merge per category, partial rows', () => {
    const p = new ErrorPolicy({ timeout_error: { maxRetries: 0 }, python_error: { strategy: 'backoff_retry', backoff: 'linear' } });
    assert.deepEqual({ ...p.row('timeout_error') }, { ...SEED_TABLE.timeout_error, maxRetries: 0 });
    assert.deepEqual({ ...p.row('python_error') }, { severity: 'major', strategy: 'backoff_retry', maxRetries: 1, backoff: 'linear' });
    for (const c of ERROR_CATEGORIES) if (c !== 'timeout_error' && c !== 'python_error') assert.deepEqual({ ...p.row(c) }, SEED_TABLE[c]);
    assert.ok(Object.isFrozen(p.row('timeout_error')));
    assert.deepEqual({ ...DEFAULT_MATRIX.timeout_error }, SEED_TABLE.timeout_error, 'the default is not mutated');
  });

  it('undefined values and empty input change nothing', () => {
    assert.deepEqual(validatePolicyOverrides(undefined), {});
    assert.deepEqual(validatePolicyOverrides(null), {});
    assert.deepEqual(new ErrorPolicy({ timeout_error: { maxRetries: undefined } }).row('timeout_error').maxRetries, 2);
  });

  it('delays are copied and frozen', () => {
    const delays = [5, 10];
    const p = new ErrorPolicy({ connection_error: { delays } });
    delays.push(99);
    assert.deepEqual(p.row('connection_error').delays, [5, 10]);
  });
});

describe('validatePolicyOverrides', () => {
  it('rejects a non-object policy', () => {
    invalidOptions(() => validatePolicyOverrides('strict'), /policy must be an object keyed by error category, got "strict"/);
    invalidOptions(() => validatePolicyOverrides([1]), /policy must be an object/);
  });

  it('names an unknown category and lists the allowed ones', () => {
    invalidOptions(() => validatePolicyOverrides({ timeout: { maxRetries: 1 } }), /unknown category "timeout"/, /initialization_error, connection_error, .*system_error/);
  });

  it('rejects a row that is not an object', () => {
    invalidOptions(() => validatePolicyOverrides({ timeout_error: 3 }), /policy\.timeout_error must be an object .*got 3/);
  });

  it('names an unknown row key', () => {
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { retries: 1 } }), /policy\.timeout_error has unknown key "retries"/, /severity, strategy, maxRetries, backoff, delays/);
  });

  it('bad severity / strategy / backoff name the key and the allowed values', () => {
    invalidOptions(() => new ErrorPolicy({ timeout_error: { severity: 'huge' as Severity } }), /policy\.timeout_error\.severity is "huge"/, /warning, minor, major, critical/);
    invalidOptions(() => new ErrorPolicy({ timeout_error: { strategy: 'pray' as RecoveryStrategy } }), /policy\.timeout_error\.strategy is "pray"/, /immediate_retry, backoff_retry, circuit_break, failover, abandon/);
    invalidOptions(() => validatePolicyOverrides({ session_error: { backoff: 'fibonacci' } }), /policy\.session_error\.backoff is "fibonacci"/, /none, linear, exponential/);
  });

  it('maxRetries must be a non-negative integer', () => {
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { maxRetries: -1 } }), /policy\.timeout_error\.maxRetries is -1; use an integer >= 0/);
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { maxRetries: 1.5 } }), /maxRetries is 1\.5/);
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { maxRetries: '2' } }), /maxRetries is "2"/);
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { maxRetries: Number.NaN } }), /maxRetries is NaN/);
  });

  it('delays must be a non-empty array of finite numbers >= 0', () => {
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { delays: [] } }), /policy\.timeout_error\.delays is \[\]; use a non-empty array/);
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { delays: [100, -1] } }), /delays is \[100,-1\]/);
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { delays: 100 } }), /delays is 100/);
    invalidOptions(() => validatePolicyOverrides({ timeout_error: { delays: [Infinity] } }), /delays is/);
  });
});

describe('decide', () => {
  const p = DEFAULT_POLICY;

  it('retries a retryable connection_error with the exponential schedule until the escalation abandons it', () => {
    const e = err('connection_error');
    assert.deepEqual(p.decide(e, { attempt: 1 }), { severity: 'major', strategy: 'backoff_retry', retry: true, delayMs: 1000, reason: 'retry' });
    assert.equal(p.decide(e, { attempt: 2 }).delayMs, 3000);
    assert.equal(p.decide(e, { attempt: 3 }).delayMs, 9000);
    // attempt 4: major -> critical, critical past attempt 2 -> abandon (the seed's rules combined).
    assert.deepEqual(p.decide(e, { attempt: 4 }), { severity: 'critical', strategy: 'abandon', retry: false, delayMs: 0, reason: 'strategy' });
  });

  it('uses the whole maxRetries when the severity does not escalate to critical', () => {
    const q = new ErrorPolicy({ connection_error: { severity: 'minor' } });
    const e = err('connection_error');
    const delays = [1, 2, 3, 4, 5].map((attempt) => q.decide(e, { attempt }));
    assert.ok(delays.every((d) => d.retry));
    assert.deepEqual(delays.map((d) => d.delayMs), [1000, 3000, 9000, 27000, 27000]);
    assert.deepEqual(q.decide(e, { attempt: 6 }).reason, 'max_retries');
  });

  it('bounds retries by maxRetries (attempt = the attempt that failed)', () => {
    const e = err('timeout_error');
    assert.equal(p.decide(e, { attempt: 1 }).retry, true);
    assert.equal(p.decide(e, { attempt: 2 }).retry, true);
    const third = p.decide(e, { attempt: 3 });
    assert.equal(third.retry, false);
    assert.equal(third.reason, 'max_retries');
    assert.equal(third.delayMs, 0);
  });

  it('maxRetries 0 never retries', () => {
    const q = new ErrorPolicy({ timeout_error: { maxRetries: 0 } });
    assert.deepEqual(q.decide(err('timeout_error'), { attempt: 1 }).reason, 'max_retries');
  });

  it('defaults the attempt to the error\'s', () => {
    assert.equal(p.decide(err('timeout_error', { attempt: 3 })).reason, 'max_retries');
    assert.equal(p.decide(err('timeout_error', { attempt: 2 })).delayMs, 3000);
  });

  it('never retries a non-retryable error', () => {
    const e = new PoolError({ code: 'PYFLEET_INVALID_ARGS', message: 'bad args' });
    const d = p.decide(e, { attempt: 1, idempotent: true });
    assert.equal(d.strategy, 'immediate_retry');
    assert.equal(d.retry, false);
    assert.equal(d.reason, 'not_retryable');
  });

  it('idempotency: a taken call is re-sent only when idempotent', () => {
    const taken = err('connection_error', { taken: true });
    assert.deepEqual(p.decide(taken, { attempt: 1 }), { severity: 'major', strategy: 'backoff_retry', retry: false, delayMs: 0, reason: 'not_idempotent' });
    assert.equal(p.decide(taken, { attempt: 1, idempotent: false }).reason, 'not_idempotent');
    assert.equal(p.decide(taken, { attempt: 1, idempotent: true }).retry, true);
    const notTaken = err('connection_error', { taken: false });
    assert.equal(p.decide(notTaken, { attempt: 1, idempotent: false }).retry, true, 'a call no worker took may always be dispatched again');
  });

  it('failover, circuit_break and abandon do not retry in place', () => {
    assert.equal(p.decide(err('python_error'), { attempt: 1, idempotent: true }).reason, 'strategy');
    assert.equal(p.decide(err('resource_error'), { attempt: 1 }).reason, 'strategy');
    assert.equal(p.decide(err('initialization_error'), { attempt: 1 }).reason, 'strategy');
    assert.equal(p.decide(err('system_error'), { attempt: 1 }).reason, 'strategy');
  });

  it('all workers affected -> critical; abandoned past attempt 2', () => {
    const e = err('timeout_error');
    assert.deepEqual(p.decide(e, { attempt: 1, affectingAllWorkers: true }), { severity: 'critical', strategy: 'backoff_retry', retry: true, delayMs: 1000, reason: 'retry' });
    assert.equal(p.decide(e, { attempt: 3, affectingAllWorkers: true }).strategy, 'abandon');
  });

  it('delays per schedule: immediate (linear) 0/100/200, none 0, linear backoff 1s/2s/4s', () => {
    const comm = err('communication_error');
    assert.deepEqual([1, 2, 3].map((attempt) => p.decide(comm, { attempt }).delayMs), [0, 100, 200]);
    const sess = err('session_error');
    assert.deepEqual([1, 2].map((attempt) => p.decide(sess, { attempt }).delayMs), [0, 0]);
    const hc = err('health_check_error');
    assert.deepEqual([1, 2, 3].map((attempt) => p.decide(hc, { attempt }).delayMs), [1000, 2000, 4000]);
  });

  it('row delays override the schedule, the last one repeating', () => {
    const q = new ErrorPolicy({ connection_error: { severity: 'minor', delays: [10, 20] } });
    const e = err('connection_error');
    assert.deepEqual([1, 2, 3, 4].map((attempt) => q.decide(e, { attempt }).delayMs), [10, 20, 20, 20]);
  });

  it('a timeout a worker took decides by idempotency', () => {
    const e = new PoolError({ code: 'PYFLEET_TIMEOUT', message: 'timed out', taken: true, attempt: 1 });
    assert.equal(p.decide(e, { idempotent: true }).delayMs, 1000);
    assert.equal(p.decide(e).reason, 'not_idempotent');
  });
});

describe('delay (the seed\'s get_retry_delay, by category and strategy)', () => {
  const p = DEFAULT_POLICY;

  it('follows the strategy and the row, the last delay repeating', () => {
    assert.deepEqual([1, 2, 3, 4].map((a) => p.delay('communication_error', 'immediate_retry', a)), [0, 100, 200, 200]);
    assert.deepEqual([1, 2, 4, 9].map((a) => p.delay('connection_error', 'backoff_retry', a)), [1000, 3000, 27000, 27000]);
    assert.deepEqual([1, 5, 6].map((a) => p.delay('health_check_error', 'backoff_retry', a)), [1000, 16000, 16000]);
    assert.equal(p.delay('initialization_error', 'circuit_break', 1), 1000, 'seed fallback [1000]');
    assert.equal(p.delay('python_error', 'failover', 1), 0, 'backoff none');
    assert.equal(p.delay('timeout_error', 'backoff_retry', 2), 3000);
  });
});

// ---- what mutation testing found untested (npm run mutate) ----

describe('policy: schedules and validation messages', () => {
  it('scheduleFor: a strategy that does not retry in place gets the seed\'s fallback, whatever the backoff; none is [0]', () => {
    for (const backoff of ['exponential', 'linear'] as const) {
      for (const strategy of ['failover', 'circuit_break', 'abandon'] as const) assert.deepEqual(schedule({ severity: 'major', strategy, maxRetries: 1, backoff }, strategy), FALLBACK);
    }
    assert.deepEqual(FALLBACK, [1_000]);
    assert.deepEqual(schedule({ severity: 'major', strategy: 'backoff_retry', maxRetries: 1, backoff: 'none' }, 'backoff_retry'), [0]);
    assert.deepEqual(schedule({ severity: 'major', strategy: 'backoff_retry', maxRetries: 1, backoff: 'linear' }, 'backoff_retry'), SEED_DELAYS.backoff_retry);
    assert.deepEqual(RETRY_IN_PLACE, ['immediate_retry', 'backoff_retry']);
  });

  const refusedWith = (input: unknown, message: string) =>
    assert.throws(
      () => validate(input),
      (e: unknown) => e instanceof PE && e.code === 'PYFLEET_INVALID_OPTIONS' && e.message === `Invalid options: ${message}.`,
      message,
    );

  it('names what it got, however odd, and what it wants', () => {
    refusedWith({ nope: {} }, `policy has unknown category "nope"; use one of initialization_error, connection_error, communication_error, timeout_error, resource_error, health_check_error, session_error, python_error, system_error`);
    refusedWith({ timeout_error: null }, 'policy.timeout_error must be an object with any of severity, strategy, maxRetries, backoff, delays, got null');
    refusedWith({ timeout_error: 'fast' }, 'policy.timeout_error must be an object with any of severity, strategy, maxRetries, backoff, delays, got "fast"');
    refusedWith({ timeout_error: [1] }, 'policy.timeout_error must be an object with any of severity, strategy, maxRetries, backoff, delays, got [1]');
    refusedWith({ timeout_error: new (class Row {})() }, 'policy.timeout_error must be an object with any of severity, strategy, maxRetries, backoff, delays, got an object');
    refusedWith({ timeout_error: undefined }, 'policy.timeout_error must be an object with any of severity, strategy, maxRetries, backoff, delays, got undefined');
    refusedWith({ timeout_error: { maxRetries: true } }, 'policy.timeout_error.maxRetries is true; use an integer >= 0 (0 = never retried)');
    refusedWith({ timeout_error: { maxRetries: null } }, 'policy.timeout_error.maxRetries is null; use an integer >= 0 (0 = never retried)');
    refusedWith({ timeout_error: { maxRetries: {} } }, 'policy.timeout_error.maxRetries is an object; use an integer >= 0 (0 = never retried)');
    refusedWith({ timeout_error: { maxRetries: () => 1 } }, 'policy.timeout_error.maxRetries is a function; use an integer >= 0 (0 = never retried)');
    const loop: unknown[] = [];
    loop.push(loop);
    refusedWith({ timeout_error: { delays: loop } }, 'policy.timeout_error.delays is an array; use a non-empty array of finite numbers >= 0 (ms after failed attempt 1, 2, ...)');
    refusedWith({ timeout_error: { delays: [-1] } }, 'policy.timeout_error.delays is [-1]; use a non-empty array of finite numbers >= 0 (ms after failed attempt 1, 2, ...)');
    refusedWith(5, 'policy must be an object keyed by error category, got 5');
  });

  it('accepts an object without a prototype, and a delay of 0', () => {
    const row = Object.assign(Object.create(null) as object, { delays: [0, 5] });
    const got = validate(Object.assign(Object.create(null) as object, { timeout_error: row }));
    assert.deepEqual(got.timeout_error?.delays, [0, 5]);
  });
});
