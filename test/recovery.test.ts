import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ERROR_CATEGORIES, SEVERITIES, PoolError, type ErrorCategory, type Severity } from '../src/errors/index.js';
import { DEFAULTS } from '../src/defaults.js';
import { CODE_OF, failure } from './helpers/errors.js';
import { RecoveryOrchestrator } from '../src/resilience/recovery/orchestrator.js';
import type { RecoveryStep } from '../src/resilience/recovery/run.js';
import { DEFAULT_RECOVERY_STRATEGIES, loadRecoveryStrategies } from '../src/resilience/recovery/strategies.js';
import { RECOVERY_TYPES, type RecoveryActions, type RecoveryContext, type RecoveryType } from '../src/resilience/recovery/types.js';
import { failoverStep, resendWithLargerTimeout } from '../src/call/resend.js';
import { subscribe, type EventPayloads } from '../src/telemetry/channels.js';
import { FakeClock, flush } from './helpers/fake-clock.js';

function err(category: ErrorCategory, severity?: Severity, init: Partial<ConstructorParameters<typeof PoolError>[0]> = {}): PoolError {
  return new PoolError({ code: CODE_OF[category], category, severity, message: `${category} on worker`, workerId: 3, command: 'predict', ...init });
}

type Behavior = 'ok' | 'fail' | 'hang';

/** What the call core's re-send step (or its failover step) was asked to send. */
interface Resend {
  timeoutMs: number;
  attempt: number;
  recoveryId: string;
  error: PoolError;
}

/** Fake actions: record every call; each action resolves, rejects or never settles as told. */
class FakeActions implements RecoveryActions {
  calls: Array<{ action: string; arg: unknown; reason?: string }> = [];
  behavior: Record<string, Behavior | Behavior[]> = {};
  retryValue: unknown = 'retried-value';
  failoverValue: unknown = 'fallback-value';
  failWith: unknown = new Error('action failed');

  private next(action: string): Behavior {
    const b = this.behavior[action] ?? 'ok';
    if (Array.isArray(b)) return b.shift() ?? 'ok';
    return b;
  }
  private settle<T>(action: string, value: T): Promise<T> {
    const b = this.next(action);
    if (b === 'hang') return new Promise<T>(() => {});
    if (b === 'fail') return Promise.reject(this.failWith);
    return Promise.resolve(value);
  }
  replaceWorker(workerId: number, reason: string): Promise<void> {
    this.calls.push({ action: 'replaceWorker', arg: workerId, reason });
    return this.settle('replaceWorker', undefined);
  }
  recycleWorker(workerId: number, reason: string): Promise<void> {
    this.calls.push({ action: 'recycleWorker', arg: workerId, reason });
    return this.settle('recycleWorker', undefined);
  }
  retryWithLargerTimeout(call: Resend): Promise<unknown> {
    this.calls.push({ action: 'retryWithLargerTimeout', arg: call });
    return this.settle('retryWithLargerTimeout', this.retryValue);
  }
  openCircuit(name: string, reason: string): void {
    this.calls.push({ action: 'openCircuit', arg: name, reason });
    if (this.next('openCircuit') === 'fail') throw this.failWith;
  }
  failover(call: Resend): Promise<unknown> {
    this.calls.push({ action: 'failover', arg: call });
    return this.settle('failover', this.failoverValue);
  }
}

let events: Array<EventPayloads['recovery:complete']> = [];
let unsubscribe: () => void = () => {};
beforeEach(() => {
  events = [];
  unsubscribe = subscribe('recovery:complete', (e) => events.push(e));
});
afterEach(() => unsubscribe());

/**
 * The call core's steps for the plans that send the call again (retry_with_backoff, failover),
 * over the fake actions: what the pool runs, with the sends recorded.
 */
function stepOf(actions: FakeActions, clock: FakeClock, baseTimeoutMs: number): RecoveryStep {
  return (run) => {
    const resend = (timeoutMs: number): Resend => ({ timeoutMs, attempt: run.attempts, recoveryId: run.id, error: run.err });
    if (run.plan.type === 'failover') return failoverStep(run, () => actions.failover(resend(baseTimeoutMs)));
    return resendWithLargerTimeout(run, { baseTimeoutMs, clock, mayAttempt: () => true, send: (t) => actions.retryWithLargerTimeout(resend(t)), failed: () => {} });
  };
}

function setup(opts: Partial<ConstructorParameters<typeof RecoveryOrchestrator>[0]> = {}) {
  const actions = new FakeActions();
  const clock = new FakeClock();
  const orch = new RecoveryOrchestrator({ actions, clock, ...opts });
  /** handle() as the call core calls it: with its steps, for a call whose attempt timed out after `timeoutMs`. */
  const handle = (e: PoolError, ctx: RecoveryContext = {}, timeoutMs: number = DEFAULTS.requestTimeoutMs) => orch.handle(e, ctx, stepOf(actions, clock, timeoutMs));
  return { actions, clock, orch, handle };
}

const ACTION_OF: Record<RecoveryType, string> = {
  retry_with_backoff: 'retryWithLargerTimeout',
  failover: 'failover',
  circuit_break: 'openCircuit',
  abandon: 'none',
  replace_worker: 'replaceWorker',
  recycle_worker: 'recycleWorker',
};

describe('the strategy table (load_recovery_strategies)', () => {
  it('covers all nine categories and four severities with known types', () => {
    for (const c of ERROR_CATEGORIES) {
      for (const s of SEVERITIES) assert.ok(RECOVERY_TYPES.includes(DEFAULT_RECOVERY_STRATEGIES[c][s].type), `${c}.${s}`);
    }
  });

  it('is the documented table', () => {
    const types = Object.fromEntries(ERROR_CATEGORIES.map((c) => [c, SEVERITIES.map((s) => DEFAULT_RECOVERY_STRATEGIES[c][s].type)]));
    //                                 warning            minor              major                 critical
    assert.deepEqual(types, {
      initialization_error: ['replace_worker', 'replace_worker', 'circuit_break', 'circuit_break'],
      connection_error: ['replace_worker', 'replace_worker', 'replace_worker', 'circuit_break'],
      communication_error: ['replace_worker', 'replace_worker', 'replace_worker', 'circuit_break'],
      timeout_error: ['retry_with_backoff', 'retry_with_backoff', 'retry_with_backoff', 'abandon'],
      resource_error: ['recycle_worker', 'recycle_worker', 'recycle_worker', 'circuit_break'],
      health_check_error: ['recycle_worker', 'recycle_worker', 'replace_worker', 'circuit_break'],
      session_error: ['abandon', 'abandon', 'abandon', 'abandon'],
      python_error: ['failover', 'failover', 'failover', 'failover'],
      system_error: ['abandon', 'abandon', 'abandon', 'abandon'],
    });
    assert.deepEqual(DEFAULT_RECOVERY_STRATEGIES.timeout_error.major, { type: 'retry_with_backoff', maxAttempts: 2, backoff: 'exponential', timeoutFactor: 2, ifNotIdempotent: 'abandon' });
    assert.deepEqual(DEFAULT_RECOVERY_STRATEGIES.timeout_error.minor, { type: 'retry_with_backoff', maxAttempts: 3, backoff: 'linear', timeoutFactor: 2, ifNotIdempotent: 'abandon' });
    assert.equal(DEFAULT_RECOVERY_STRATEGIES.python_error.major.ifNotIdempotent, 'abandon');
  });

  it('overrides merge per cell and are validated', () => {
    const t = loadRecoveryStrategies({ timeout_error: { major: { type: 'replace_worker' } } });
    assert.equal(t.timeout_error.major.type, 'replace_worker');
    assert.equal(t.timeout_error.minor.type, 'retry_with_backoff');
    assert.equal(DEFAULT_RECOVERY_STRATEGIES.timeout_error.major.type, 'retry_with_backoff');
    const bad = (x: unknown, re: RegExp) =>
      assert.throws(() => loadRecoveryStrategies(x as never), (e: unknown) => e instanceof PoolError && e.code === 'PYFLEET_INVALID_OPTIONS' && re.test(e.message));
    bad({ nope: {} }, /strategies has unknown category "nope"/);
    bad({ timeout_error: { severe: { type: 'abandon' } } }, /strategies\.timeout_error has unknown severity "severe"; use one of warning, minor, major, critical/);
    bad({ timeout_error: { major: { type: 'pray' } } }, /strategies\.timeout_error\.major\.type is "pray"; use one of retry_with_backoff, failover/);
    bad({ timeout_error: { major: { type: 'retry_with_backoff', maxAttempts: 0 } } }, /maxAttempts is 0; use an integer >= 1/);
    bad({ timeout_error: { major: { type: 'retry_with_backoff', backoff: 'fib' } } }, /backoff is "fib"/);
    bad({ timeout_error: { major: { type: 'retry_with_backoff', ifNotIdempotent: 'failover' } } }, /re-sends the call too/);
    bad({ timeout_error: { major: { type: 'abandon', extra: 1 } } }, /unknown key "extra"/);
  });

  it('time limits and actions are validated', () => {
    const actions = new FakeActions();
    assert.throws(() => new RecoveryOrchestrator({ actions, timeLimits: { major: -1 } }), /timeLimits\.major is -1/);
    assert.throws(() => new RecoveryOrchestrator({ actions, timeLimits: { huge: 1 } as never }), /unknown severity "huge"/);
    const partial = { replaceWorker: actions.replaceWorker, recycleWorker: actions.recycleWorker };
    assert.throws(() => new RecoveryOrchestrator({ actions: partial as never }), /actions\.openCircuit must be a function/);
  });
});

describe('plan: strategy selection', () => {
  it('picks the table cell for every category and severity (idempotent call)', () => {
    const { orch } = setup();
    for (const c of ERROR_CATEGORIES) {
      for (const s of SEVERITIES) {
        const plan = orch.plan(err(c, s, { taken: true }), { idempotent: true });
        assert.equal(plan.type, DEFAULT_RECOVERY_STRATEGIES[c][s].type, `${c}.${s}`);
        assert.equal(plan.category, c);
        assert.equal(plan.severity, s);
        assert.equal(plan.insteadOf, undefined);
      }
    }
  });

  it('timeout_error major: retry with a larger timeout when idempotent, else nothing to do (the worker handles its cancel)', () => {
    const { orch } = setup();
    const e = failure('PYFLEET_TIMEOUT', { taken: true, workerId: 1 });
    assert.equal(orch.plan(e, { idempotent: true }).type, 'retry_with_backoff');
    const p = orch.plan(e, { idempotent: false });
    assert.equal(p.type, 'abandon');
    assert.equal(p.insteadOf, 'retry_with_backoff');
    assert.equal(orch.plan(failure('PYFLEET_TIMEOUT', { taken: false }), {}).type, 'retry_with_backoff', 'not taken: may always be re-sent');
  });

  it('python_error: failover only when the call may run twice', () => {
    const { orch } = setup();
    const e = failure('PYFLEET_PYTHON_ERROR', { taken: true });
    assert.equal(orch.plan(e, { idempotent: true }).type, 'failover');
    const p = orch.plan(e, {});
    assert.equal(p.type, 'abandon');
    assert.equal(p.insteadOf, 'failover');
  });

  it('max recovery time: critical 5 s, major 30 s, minor 60 s, warning 10 s, halved when user-facing', () => {
    const { orch } = setup();
    const t = (s: Severity, userFacing?: boolean) => orch.plan(err('connection_error', s), { userFacing }).maxRecoveryTimeMs;
    assert.deepEqual([t('critical'), t('major'), t('minor'), t('warning')], [5000, 30000, 60000, 10000]);
    assert.deepEqual([t('critical', true), t('major', true), t('minor', true), t('warning', true)], [2500, 15000, 30000, 5000]);
    assert.deepEqual(DEFAULTS.recoveryTimeLimits, { critical: 5000, major: 30000, minor: 60000, warning: 10000 });
    const custom = setup({ timeLimits: { major: 100 } }).orch;
    assert.equal(custom.plan(err('connection_error', 'major')).maxRecoveryTimeMs, 100);
  });
});

describe('handle: asks the actions for the one its plan names, for each category (recorded actions here; the pool tests run the real ones)', () => {
  for (const c of ERROR_CATEGORIES) {
    it(`${c} at its base severity`, async () => {
      const { orch, actions, handle } = setup();
      const e = failure(CODE_OF[c], { category: c, workerId: 5, command: 'predict', taken: true });
      const expected = orch.plan(e, { idempotent: true }).type;
      const r = await handle(e, { idempotent: true });
      assert.equal(r.type, expected);
      assert.equal(r.action, ACTION_OF[expected]);
      assert.match(r.id, /^recovery_\d+_\d+$/);
      if (expected === 'abandon') {
        assert.equal(actions.calls.length, 0, 'abandon runs nothing');
        assert.equal(r.ok, false);
        assert.equal(r.outcome, 'failed');
        assert.match(r.reason, /abandoned/i);
      } else {
        assert.equal(actions.calls.length, 1);
        assert.equal(actions.calls[0].action, ACTION_OF[expected]);
        assert.equal(r.ok, true);
      }
      assert.equal(events.length, 1);
      assert.deepEqual(events[0], { id: r.id, category: c, strategy: expected, result: r.ok ? 'ok' : 'error', durationMs: 0, action: ACTION_OF[expected] });
    });
  }

  it('replace_worker passes the worker and a reason; the outcome is mitigated, not recovered', async () => {
    const { orch, actions } = setup();
    const r = await orch.handle(err('connection_error', 'major', { workerId: 7 }));
    assert.deepEqual(actions.calls.map((c) => [c.action, c.arg]), [['replaceWorker', 7]]);
    assert.match(actions.calls[0].reason!, /connection_error \(major\)/);
    assert.equal(r.outcome, 'mitigated');
    assert.equal(r.reason, 'Replaced worker 7.');
    assert.equal('value' in r, false);
  });

  it('the context worker wins over the error\'s', async () => {
    const { orch, actions } = setup();
    await orch.handle(err('resource_error', 'minor', { workerId: 1 }), { workerId: 2 });
    assert.deepEqual(actions.calls.map((c) => [c.action, c.arg]), [['recycleWorker', 2]]);
  });

  it('replace_worker without a worker fails with a reason and calls nothing', async () => {
    const { orch, actions } = setup();
    const r = await orch.handle(err('connection_error', 'major', { workerId: null }));
    assert.equal(r.ok, false);
    assert.match(r.reason, /Could not replace a worker: the error does not say which worker failed/);
    assert.equal(actions.calls.length, 0);
  });

  it('circuit_break opens the named circuit', async () => {
    const { orch, actions } = setup({ circuitName: 'workers' });
    const r1 = await orch.handle(err('resource_error', 'critical'));
    const r2 = await orch.handle(err('resource_error', 'critical'), { circuit: 'spawn' });
    assert.deepEqual(actions.calls.map((c) => c.arg), ['workers', 'spawn']);
    assert.equal(r1.outcome, 'mitigated');
    assert.match(r1.reason, /Opened circuit "workers"/);
    assert.equal(r2.ok, true);
  });

  it('failover resolves with the fallback\'s value; the call core\'s step gets the recovery', async () => {
    const { actions, handle } = setup();
    const e = failure('PYFLEET_PYTHON_ERROR', { taken: true, workerId: 2, command: 'predict', sessionId: 's' });
    const r = await handle(e, { idempotent: true }, 4000);
    assert.equal(r.outcome, 'recovered');
    assert.equal(r.value, 'fallback-value');
    assert.equal(r.action, 'failover');
    const call = actions.calls[0].arg as Resend;
    assert.equal(call.recoveryId, r.id);
    assert.equal(call.error, e);
  });

  it('a plan that sends the call again fails without the call core\'s step, saying so', async () => {
    const { orch, actions } = setup();
    const r = await orch.handle(err('timeout_error', 'major'), { idempotent: true });
    assert.equal(r.ok, false);
    assert.match(r.reason, /sends the call again: only the call core can run it/);
    assert.equal(actions.calls.length, 0);
  });

  it('abandon for a non-idempotent taken call says why and does not re-send', async () => {
    const { orch, actions } = setup();
    const e = failure('PYFLEET_PYTHON_ERROR', { taken: true, workerId: 2, command: 'charge_card' });
    const r = await orch.handle(e);
    assert.equal(actions.calls.length, 0);
    assert.equal(r.ok, false);
    assert.equal(r.type, 'abandon');
    assert.equal(r.plan.insteadOf, 'failover');
    assert.match(r.reason, /"charge_card" was not sent to the fallback because worker 2 already took it and it is not idempotent, so it may have run/);
  });

  it('system_error and session_error are abandoned with a clear reason, never a fake success', async () => {
    const { orch } = setup();
    const sys = await orch.handle(failure('PYFLEET_INTERNAL'));
    assert.equal(sys.ok, false);
    assert.equal(sys.outcome, 'failed');
    assert.equal(sys.action, 'none');
    assert.match(sys.reason, /strategy for system_error at severity critical is abandon/);
    const sess = await orch.handle(failure('PYFLEET_SESSION_LOST'));
    assert.match(sess.reason, /session's state is gone.*open the session again/);
  });

  it('ids are unique', async () => {
    const { orch } = setup();
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add((await orch.handle(err('connection_error', 'major'))).id);
    assert.equal(ids.size, 5);
  });
});

describe('handle: action errors are failures', () => {
  it('a rejected action is a failed recovery carrying the error', async () => {
    const { orch, actions } = setup();
    actions.behavior.replaceWorker = 'fail';
    actions.failWith = new Error('spawn failed');
    const r = await orch.handle(err('connection_error', 'major'));
    assert.equal(r.ok, false);
    assert.equal(r.outcome, 'failed');
    assert.equal(r.error, actions.failWith);
    assert.match(r.reason, /Could not replace worker 3: spawn failed/);
    assert.equal(r.timedOut, false);
    assert.equal(events[0].result, 'error');
  });

  it('a throwing openCircuit is a failure', async () => {
    const { orch, actions } = setup();
    actions.behavior.openCircuit = 'fail';
    const r = await orch.handle(err('resource_error', 'critical'));
    assert.equal(r.ok, false);
    assert.match(r.reason, /Could not open circuit "pool"/);
  });

  it('a failed failover is a failure', async () => {
    const { actions, handle } = setup();
    actions.behavior.failover = 'fail';
    actions.failWith = new PoolError({ code: 'PYFLEET_INTERNAL', message: 'no fallback configured' });
    const r = await handle(err('python_error', 'major'), { idempotent: true });
    assert.equal(r.ok, false);
    assert.match(r.reason, /Failover failed: no fallback configured/);
  });

  it('a synchronous throw inside an async action is caught', async () => {
    const actions = new FakeActions();
    actions.replaceWorker = () => {
      throw new Error('sync boom');
    };
    const orch = new RecoveryOrchestrator({ actions, clock: new FakeClock() });
    const r = await orch.handle(err('connection_error', 'major'));
    assert.equal(r.ok, false);
    assert.match(r.reason, /sync boom/);
  });
});

describe('handle: retry_with_backoff (the call core\'s re-send step)', () => {
  it('retries with growing timeouts and the backoff between attempts', async () => {
    const { actions, clock, handle } = setup();
    actions.behavior.retryWithLargerTimeout = ['fail', 'ok'];
    const e = failure('PYFLEET_TIMEOUT', { taken: true, workerId: 1, command: 'slow' });
    const p = handle(e, { idempotent: true }, 1000);
    await flush();
    assert.equal(actions.calls.length, 1);
    assert.equal((actions.calls[0].arg as Resend).timeoutMs, 2000);
    await clock.advance(999);
    assert.equal(actions.calls.length, 1, 'waits the exponential schedule (1000 ms) before attempt 2');
    await clock.advance(1);
    const r = await p;
    assert.equal(actions.calls.length, 2);
    const second = actions.calls[1].arg as Resend;
    assert.equal(second.timeoutMs, 4000);
    assert.equal(second.attempt, 2);
    assert.equal(r.outcome, 'recovered');
    assert.equal(r.value, 'retried-value');
    assert.equal(r.attempts, 2);
    assert.equal(r.durationMs, 1000);
    assert.match(r.reason, /attempt 2 of 2/);
    assert.equal(clock.pending, 0, 'time-limit timer cleared');
  });

  it('fails with the last error when every attempt fails', async () => {
    const { actions, clock, handle } = setup();
    actions.behavior.retryWithLargerTimeout = 'fail';
    const p = handle(err('timeout_error', 'major'), { idempotent: true }, 100);
    await clock.advance(1000);
    const r = await p;
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 2);
    assert.match(r.reason, /All 2 retries with a larger timeout failed; the last error: action failed/);
    assert.equal(r.error, actions.failWith);
  });

  it('stops at an error that retrying cannot fix', async () => {
    const { actions, handle } = setup();
    actions.behavior.retryWithLargerTimeout = 'fail';
    actions.failWith = new PoolError({ code: 'PYFLEET_UNKNOWN_COMMAND', message: 'no such command' });
    const r = await handle(err('timeout_error', 'minor'), { idempotent: true });
    assert.equal(r.attempts, 1);
    assert.match(r.reason, /cannot fix: no such command/);
  });

  it('a re-send\'s timeout is the expired one x2, never capped by the recovery\'s time limit (defaults: 30 s call, 15 s limit)', async () => {
    const { actions, handle } = setup();
    const r = await handle(err('timeout_error', 'major'), { idempotent: true, userFacing: true }, 30_000);
    assert.equal(r.plan.maxRecoveryTimeMs, 15_000, 'the major limit, halved for a waiting caller');
    assert.equal((actions.calls[0].arg as Resend).timeoutMs, 60_000);
  });

  it('no re-send starts after the time limit; the one in flight is not cut short', async () => {
    const { actions, clock, handle } = setup({ timeLimits: { major: 500 } });
    actions.behavior.retryWithLargerTimeout = 'fail';
    const p = handle(err('timeout_error', 'major'), { idempotent: true, userFacing: true }, 1_000);
    await clock.advance(5_000);
    const r = await p;
    assert.equal(actions.calls.length, 1, 'the second re-send would start at 1 000 ms, after the 250 ms limit');
    assert.equal(r.ok, false);
    assert.equal(r.timedOut, true);
    assert.match(r.reason, /stopped after 1 re-send.*250 ms/);
  });
});

describe('handle: time limit', () => {
  it('a hung action fails the recovery at the limit, and the signal tells the action to stop', async () => {
    const { orch, actions, clock } = setup();
    actions.behavior.replaceWorker = 'hang';
    let settled = false;
    const p = orch.handle(err('connection_error', 'major')).then((r) => {
      settled = true;
      return r;
    });
    await flush();
    assert.equal(orch.metrics().active, 1);
    assert.equal(orch.activeRecoveries()[0].type, 'replace_worker');
    assert.equal(orch.activeRecoveries()[0].deadline, 30_000);
    await clock.advance(29_999);
    assert.equal(settled, false);
    await clock.advance(1);
    const r = await p;
    assert.equal(r.ok, false);
    assert.equal(r.timedOut, true);
    assert.equal(r.durationMs, 30_000);
    assert.match(r.reason, /did not finish within 30000 ms \(the time limit for major errors\)/);
    const m = orch.metrics();
    assert.equal(m.failed, 1);
    assert.equal(m.timedOut, 1);
    assert.equal(m.active, 0);
    assert.deepEqual(orch.activeRecoveries(), []);
    assert.equal(events[0].result, 'error');
    assert.equal(events[0].durationMs, 30_000);
  });

  it('the user-facing limit is half', async () => {
    const { orch, actions, clock } = setup();
    actions.behavior.recycleWorker = 'hang';
    const p = orch.handle(err('resource_error', 'minor'), { userFacing: true });
    await clock.advance(30_000);
    const r = await p;
    assert.equal(r.timedOut, true);
    assert.match(r.reason, /within 30000 ms .*halved because a caller is waiting/);
  });

  it('the timer is cleared when the action completes', async () => {
    const { orch, clock } = setup();
    await orch.handle(err('connection_error', 'major'));
    assert.equal(clock.pending, 0);
    assert.ok(clock.scheduled.includes(30_000));
  });

  it('the caller\'s signal aborts a recovery; abortAll aborts them all', async () => {
    const { orch, actions } = setup();
    actions.behavior.replaceWorker = 'hang';
    const ac = new AbortController();
    const p1 = orch.handle(err('connection_error', 'major'), { signal: ac.signal });
    const p2 = orch.handle(err('connection_error', 'major'));
    await flush();
    ac.abort(new Error('caller gave up'));
    const r1 = await p1;
    assert.equal(r1.ok, false);
    assert.equal(r1.timedOut, false);
    assert.match(r1.reason, /aborted by the caller's signal: caller gave up/);
    orch.abortAll();
    const r2 = await p2;
    assert.match(r2.reason, /Recovery aborted: the pool is closing/);
    assert.equal(orch.metrics().active, 0);
  });
});

describe('metrics', () => {
  it('counts initiated, succeeded, failed and per strategy', async () => {
    const { orch, actions, handle } = setup();
    await orch.handle(err('connection_error', 'major')); // replace ok
    await orch.handle(err('connection_error', 'major')); // replace ok
    actions.behavior.replaceWorker = 'fail';
    await orch.handle(err('connection_error', 'major')); // replace failed
    await orch.handle(err('system_error', 'critical')); // abandon: failed
    await handle(err('python_error', 'major'), { idempotent: true }); // failover ok
    const m = orch.metrics();
    assert.equal(m.initiated, 5);
    assert.equal(m.succeeded, 3);
    assert.equal(m.failed, 2);
    assert.equal(m.active, 0);
    assert.equal(m.timedOut, 0);
    assert.deepEqual(m.byStrategy.replace_worker, { initiated: 3, succeeded: 2, failed: 1 });
    assert.deepEqual(m.byStrategy.abandon, { initiated: 1, succeeded: 0, failed: 1 });
    assert.deepEqual(m.byStrategy.failover, { initiated: 1, succeeded: 1, failed: 0 });
    assert.deepEqual(m.byStrategy.circuit_break, { initiated: 0, succeeded: 0, failed: 0 });
    assert.deepEqual(
      events.map((e) => [e.strategy, e.result, e.action]),
      [
        ['replace_worker', 'ok', 'replaceWorker'],
        ['replace_worker', 'ok', 'replaceWorker'],
        ['replace_worker', 'error', 'replaceWorker'],
        ['abandon', 'error', 'none'],
        ['failover', 'ok', 'failover'],
      ],
    );
  });

  it('metrics() returns a copy', async () => {
    const { orch } = setup();
    const m = orch.metrics();
    m.byStrategy.abandon.failed = 99;
    m.initiated = 99;
    assert.equal(orch.metrics().initiated, 0);
    assert.equal(orch.metrics().byStrategy.abandon.failed, 0);
  });

  it('counts initiated and active while a recovery runs', async () => {
    const { orch, actions, clock } = setup();
    actions.behavior.replaceWorker = 'hang';
    const p = orch.handle(err('connection_error', 'major'));
    await flush();
    assert.deepEqual({ ...orch.metrics(), byStrategy: undefined }, { initiated: 1, succeeded: 0, failed: 0, active: 1, timedOut: 0, byStrategy: undefined });
    await clock.advance(30_000);
    await p;
    assert.equal(orch.metrics().active, 0);
  });
});
