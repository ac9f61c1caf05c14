/**
 * decideNext: the decision matrix applied to one failed attempt, with the pool's rules on top.
 * Pure: every input is given, the recovery's plan and the retry budget are stubs that say
 * whether they were asked.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_POLICY, ErrorPolicy } from '../src/errors/policy.js';
import { PoolError } from '../src/errors/pool-error.js';
import type { ErrorCode } from '../src/errors/codes.js';
import { decideNext, type DecisionInput } from '../src/call/decide.js';
import type { RecoveryPlan } from '../src/resilience/recovery/types.js';

function plan(type: RecoveryPlan['type'], insteadOf?: RecoveryPlan['type']): RecoveryPlan {
  return { type, ...(insteadOf !== undefined ? { insteadOf } : {}), maxAttempts: 2, backoff: 'exponential', timeoutFactor: 2, maxRecoveryTimeMs: 30_000, category: 'timeout_error', severity: 'major' };
}

/** An input with nothing special about it; `asked` counts the calls to plan() and acquireRetry(). */
function input(code: ErrorCode, o: Partial<DecisionInput> & { taken?: boolean; planned?: RecoveryPlan; budget?: boolean } = {}) {
  const asked = { plan: 0, budget: 0 };
  const { taken, planned, budget, ...rest } = o;
  const i: DecisionInput = {
    err: new PoolError({ code, message: 'x', taken: taken ?? true }),
    attempt: 1,
    maxAttempts: 3,
    idempotent: true,
    affectingAllWorkers: false,
    closing: false,
    poisoned: false,
    streamStarted: false,
    hasFallback: false,
    freeWorkerElsewhere: false,
    movable: false,
    resentAfterDeath: false,
    backoffDelay: undefined,
    maxDelayMs: 30_000,
    acquireRetry: () => {
      asked.budget++;
      return budget ?? true;
    },
    plan: () => {
      asked.plan++;
      return planned ?? plan('abandon');
    },
    ...rest,
  };
  return { i, asked };
}

const decide = (code: ErrorCode, o: Parameters<typeof input>[1] = {}) => {
  const { i, asked } = input(code, o);
  return { d: decideNext(DEFAULT_POLICY, i), asked };
};

describe('decideNext: what stops a call before the matrix is asked', () => {
  it('closing, poison and a started stream stop it, in that order, whatever the error', () => {
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { closing: true, poisoned: true, streamStarted: true }).d, { next: { kind: 'stop', reason: 'closing' }, severity: 'major', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { poisoned: true, streamStarted: true }).d, { next: { kind: 'stop', reason: 'poison' }, severity: 'major', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { streamStarted: true }).d, { next: { kind: 'stop', reason: 'stream_started' }, severity: 'major', strategy: 'abandon' });
    // A timeout too: none of them asks the recovery.
    const { d, asked } = decide('PYFLEET_TIMEOUT', { closing: true, planned: plan('retry_with_backoff') });
    assert.equal(d.next.kind, 'stop');
    assert.deepEqual(asked, { plan: 0, budget: 0 });
  });

  it('a refusal (the codes table says abandon) is never retried: reason refused, strategy abandon', () => {
    assert.deepEqual(decide('PYFLEET_CIRCUIT_OPEN', { closing: true }).d, { next: { kind: 'stop', reason: 'closing' }, severity: 'critical', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_CIRCUIT_OPEN', { taken: false }).d, { next: { kind: 'stop', reason: 'refused' }, severity: 'critical', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_QUEUE_FULL', { taken: false }).d.next, { kind: 'stop', reason: 'refused' });
    const { asked } = decide('PYFLEET_QUEUE_TIMEOUT', { taken: false, freeWorkerElsewhere: true });
    assert.deepEqual(asked, { plan: 0, budget: 0 });
  });

  it('a call refused without running, movable to another member, goes there at once while attempts are left', () => {
    assert.deepEqual(decide('PYFLEET_QUEUE_FULL', { taken: false, movable: true }).d, { next: { kind: 'retry', delayMs: 0, afterDeath: false }, severity: 'critical', strategy: 'immediate_retry' });
    assert.deepEqual(decide('PYFLEET_QUEUE_FULL', { taken: false, movable: true, attempt: 3, maxAttempts: 3 }).d.next, { kind: 'stop', reason: 'refused' });
    assert.equal(decide('PYFLEET_QUEUE_FULL', { taken: false, movable: true, closing: true }).d.next.kind, 'stop', 'closing first');
  });

  it('severity is the matrix\'s: critical when all workers are affected', () => {
    assert.equal(decide('PYFLEET_WORKER_CRASHED', { closing: true, affectingAllWorkers: true }).d.severity, 'critical');
    assert.equal(decide('PYFLEET_WORKER_CRASHED', { closing: true, attempt: 4 }).d.severity, 'critical', 'major rises one step after the third attempt');
  });
});

describe('decideNext: a timeout goes to the recovery, never retried in place', () => {
  it('re-sent with a larger timeout when the recovery plans it', () => {
    const p = plan('retry_with_backoff');
    const { d, asked } = decide('PYFLEET_TIMEOUT', { planned: p });
    assert.deepEqual(d, { next: { kind: 'resend', plan: p }, severity: 'major', strategy: 'backoff_retry' });
    assert.deepEqual(asked, { plan: 1, budget: 0 });
    assert.deepEqual(decide('PYFLEET_TIMEOUT', { planned: p, attempt: 3, maxAttempts: 3 }).d.next, { kind: 'stop', reason: 'max_attempts' }, 'retry.maxAttempts bounds re-sends too');
  });

  it('the caller gets it when the plan is not a re-send: not_idempotent when the guard replaced one, else strategy', () => {
    assert.deepEqual(decide('PYFLEET_TIMEOUT', { planned: plan('abandon', 'retry_with_backoff') }).d, { next: { kind: 'stop', reason: 'not_idempotent' }, severity: 'major', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_TIMEOUT', { planned: plan('abandon') }).d, { next: { kind: 'stop', reason: 'strategy' }, severity: 'major', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_TIMEOUT', { planned: plan('failover') }).d.next, { kind: 'stop', reason: 'strategy' });
  });
});

describe('decideNext: retries in place', () => {
  it('a crash of an idempotent call: retried after the matrix\'s delay, within maxAttempts, one retry taken from the budget', () => {
    const { d, asked } = decide('PYFLEET_WORKER_CRASHED');
    assert.deepEqual(d, { next: { kind: 'retry', delayMs: 1_000, afterDeath: false }, severity: 'major', strategy: 'backoff_retry' });
    assert.deepEqual(asked, { plan: 0, budget: 1 });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { attempt: 2 }).d.next, { kind: 'retry', delayMs: 3_000, afterDeath: false });
  });

  it('the first re-send after a death goes at once to another free worker; then, or with none free, the backoff', () => {
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { freeWorkerElsewhere: true }).d.next, { kind: 'retry', delayMs: 0, afterDeath: true });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { freeWorkerElsewhere: true, resentAfterDeath: true }).d.next, { kind: 'retry', delayMs: 1_000, afterDeath: false });
    // A protocol error is a death too (its worker is killed); its own schedule is 0, 100, 200 ms.
    assert.deepEqual(decide('PYFLEET_PROTOCOL_ERROR', { attempt: 2, freeWorkerElsewhere: true }).d.next, { kind: 'retry', delayMs: 0, afterDeath: true });
    assert.deepEqual(decide('PYFLEET_PROTOCOL_ERROR', { attempt: 2 }).d, { next: { kind: 'retry', delayMs: 100, afterDeath: false }, severity: 'major', strategy: 'immediate_retry' });
    // A Python error is not a death: no immediate re-send, whatever is free.
    const q = decideNext(new ErrorPolicy({ python_error: { strategy: 'backoff_retry', backoff: 'linear' } }), input('PYFLEET_PYTHON_ERROR', { freeWorkerElsewhere: true }).i);
    assert.deepEqual(q.next, { kind: 'retry', delayMs: 1_000, afterDeath: false });
  });

  it('the configured backoff gives the delay (uncapped: it has its own cap); the matrix\'s delay is capped at maxDelayMs', () => {
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { backoffDelay: () => 40_000, maxDelayMs: 500 }).d.next, { kind: 'retry', delayMs: 40_000, afterDeath: false });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { maxDelayMs: 500 }).d.next, { kind: 'retry', delayMs: 500, afterDeath: false });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { attempt: 2, maxDelayMs: 3_000 }).d.next, { kind: 'retry', delayMs: 3_000, afterDeath: false });
    // After a death with a free worker elsewhere, the backoff is not asked.
    let asked = 0;
    assert.equal((decide('PYFLEET_WORKER_CRASHED', { freeWorkerElsewhere: true, backoffDelay: () => ++asked }).d.next as { delayMs: number }).delayMs, 0);
    assert.equal(asked, 0);
  });

  it('retry.maxAttempts stops it before the budget is asked', () => {
    const { d, asked } = decide('PYFLEET_WORKER_CRASHED', { attempt: 3, maxAttempts: 3 });
    assert.deepEqual(d, { next: { kind: 'stop', reason: 'max_attempts' }, severity: 'major', strategy: 'abandon' });
    assert.deepEqual(asked, { plan: 0, budget: 0 });
    assert.equal(decide('PYFLEET_WORKER_CRASHED', { attempt: 2, maxAttempts: 3 }).d.next.kind, 'retry');
  });

  it('a budget that refuses stops it with reason budget', () => {
    const { d, asked } = decide('PYFLEET_WORKER_CRASHED', { budget: false });
    assert.deepEqual(d, { next: { kind: 'stop', reason: 'budget' }, severity: 'major', strategy: 'abandon' });
    assert.equal(asked.budget, 1);
  });

  it('the matrix\'s no is the reason: not retryable, not idempotent once taken, past maxRetries, a strategy that does not retry', () => {
    assert.deepEqual(decide('PYFLEET_SESSION_LOST', { taken: false }).d.next, { kind: 'stop', reason: 'not_retryable' });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { idempotent: false }).d.next, { kind: 'stop', reason: 'not_idempotent' });
    assert.equal(decide('PYFLEET_WORKER_CRASHED', { idempotent: false, taken: false }).d.next.kind, 'retry', 'not taken: may always be sent again');
    const oneRetry = new ErrorPolicy({ connection_error: { maxRetries: 1 } });
    assert.deepEqual(decideNext(oneRetry, input('PYFLEET_WORKER_CRASHED', { attempt: 2, maxAttempts: 10 }).i).next, { kind: 'stop', reason: 'max_retries' });
    assert.equal(decideNext(oneRetry, input('PYFLEET_WORKER_CRASHED', { attempt: 1, maxAttempts: 10 }).i).next.kind, 'retry');
    // Past the third attempt a major error is critical, and a critical one is abandoned.
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { attempt: 4, maxAttempts: 10 }).d, { next: { kind: 'stop', reason: 'strategy' }, severity: 'critical', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_PYTHON_ERROR').d, { next: { kind: 'stop', reason: 'strategy' }, severity: 'major', strategy: 'abandon' });
    const asked = decide('PYFLEET_SESSION_LOST', { taken: false }).asked;
    assert.deepEqual(asked, { plan: 0, budget: 0 }, 'no retry, so no budget taken');
  });
});

describe('decideNext: the fallback', () => {
  it('an open circuit goes straight to the fallback', () => {
    const { d, asked } = decide('PYFLEET_CIRCUIT_OPEN', { taken: false, hasFallback: true });
    assert.deepEqual(d, { next: { kind: 'fallback', plan: null }, severity: 'critical', strategy: 'failover' });
    assert.equal(asked.plan, 0);
  });

  it('a Python error fails over through the recovery when it plans it', () => {
    const p = plan('failover');
    const { d, asked } = decide('PYFLEET_PYTHON_ERROR', { hasFallback: true, planned: p });
    assert.deepEqual(d, { next: { kind: 'fallback', plan: p }, severity: 'major', strategy: 'failover' });
    assert.equal(asked.plan, 1);
  });

  it('a Python error the recovery will not fail over: not_idempotent when the guard said no, else the matrix\'s reason', () => {
    assert.deepEqual(decide('PYFLEET_PYTHON_ERROR', { hasFallback: true, planned: plan('abandon', 'failover') }).d, { next: { kind: 'stop', reason: 'not_idempotent' }, severity: 'major', strategy: 'abandon' });
    assert.deepEqual(decide('PYFLEET_PYTHON_ERROR', { hasFallback: true, planned: plan('abandon') }).d.next, { kind: 'stop', reason: 'strategy' });
  });

  it('never for an unknown command, nor without a fallback, nor for other errors: the recovery is not asked', () => {
    for (const [code, o] of [
      ['PYFLEET_UNKNOWN_COMMAND', { hasFallback: true, taken: false }],
      ['PYFLEET_PYTHON_ERROR', { hasFallback: false }],
      ['PYFLEET_WORKER_CRASHED', { hasFallback: true, attempt: 3 }],
    ] as const) {
      const { d, asked } = decide(code, { ...o, planned: plan('failover') });
      assert.equal(d.next.kind, 'stop', code);
      assert.equal(asked.plan, 0, code);
    }
    assert.deepEqual(decide('PYFLEET_UNKNOWN_COMMAND', { hasFallback: true, taken: false }).d.next, { kind: 'stop', reason: 'refused' });
    assert.deepEqual(decide('PYFLEET_WORKER_CRASHED', { hasFallback: true, attempt: 3 }).d.next, { kind: 'stop', reason: 'max_attempts' });
  });

  it('a call the budget refused still fails over', () => {
    const p = plan('failover');
    const q = decideNext(new ErrorPolicy({ python_error: { strategy: 'immediate_retry' } }), input('PYFLEET_PYTHON_ERROR', { hasFallback: true, planned: p, budget: false }).i);
    assert.deepEqual(q, { next: { kind: 'fallback', plan: p }, severity: 'major', strategy: 'failover' });
    const r = decideNext(new ErrorPolicy({ python_error: { strategy: 'immediate_retry' } }), input('PYFLEET_PYTHON_ERROR', { hasFallback: true, planned: plan('abandon'), budget: false }).i);
    assert.deepEqual(r.next, { kind: 'stop', reason: 'budget' });
  });
});
