import { toAdapter } from '../adapters/function-adapter.js';
import type { Adapter } from '../adapters/adapter.js';
import { ErrorPolicy } from '../errors/policy.js';
import type { PoolError } from '../errors/pool-error.js';
import type { EncodedArgs } from '../protocol/args.js';
import { RetryBudget } from '../resilience/budget.js';
import type { RecoveryOrchestrator } from '../resilience/recovery/orchestrator.js';
import { channels } from '../telemetry/channels.js';
import type { Logger } from '../util/logger.js';
import { Admission } from './admission.js';
import type { Call, CallInit } from './call.js';
import type { Counters } from './counters.js';
import type { CallSettings } from './options.js';
import type { PoisonTracker } from './poison.js';
import { CallPolicy } from './policy.js';
import { openStream } from './stream.js';
import type { DetailedResult, ExecuteOptions, StreamOptions, Target } from './types.js';

let ownerSeq = 0;

/** The id of a new pool or fleet client: one sequence for both, so that their events never mix. */
export function nextOwnerId(): number {
  return ++ownerSeq;
}

export interface CallCoreDeps<C extends Call> {
  /** The pool's (or fleet client's) id, carried by its events. */
  ownerId: number;
  settings: CallSettings;
  /** The owner's counts and quarantine (its other parts count into them too). */
  counters: Counters;
  poison: PoisonTracker;
  target: Target<C>;
  logger: Logger;
  recovery: RecoveryOrchestrator;
  nonFinite: 'null' | 'error';
  /** Aborted when the owner starts closing. */
  closeSignal: AbortSignal;
  closing(): boolean;
  closedError(call: C | null, command?: string, cause?: unknown): PoolError;
  /** What only the owner refuses at the call site (a schema, a size limit). */
  check(command: string, args: unknown, encoded: EncodedArgs): void;
  /** The owner's call object (throws for a lost session). */
  make(init: CallInit, stream: boolean): C;
  /** The call takes its place in its session's order. */
  enqueue(call: C): void;
  /** A call settled. */
  settled(call: C): void;
}

/**
 * What happens to a call, for a pool and a fleet alike (undici's pool base): admission, the
 * steps of the call policy, streams, counters, the retry budget and poison. The owner says where
 * attempts go (its `Target`) and what it alone knows (its sessions, its size limit).
 */
export class CallCore<C extends Call> {
  readonly counters: Counters;
  readonly budget: RetryBudget | undefined;
  readonly poison: PoisonTracker;
  readonly fallback: Adapter | null;
  readonly policy: CallPolicy<C>;
  readonly admission: Admission<C>;

  constructor(private readonly d: CallCoreDeps<C>) {
    const s = d.settings;
    this.budget = s.retry.budget === false ? undefined : new RetryBudget(s.retry.budget);
    this.counters = d.counters;
    this.poison = d.poison;
    this.fallback = s.fallback === undefined ? null : toAdapter(s.fallback);
    this.policy = new CallPolicy<C>({
      ownerId: d.ownerId,
      settings: s,
      policy: new ErrorPolicy(s.policy),
      target: d.target,
      counters: this.counters,
      logger: d.logger,
      budget: this.budget,
      poison: this.poison,
      recovery: d.recovery,
      fallback: this.fallback,
      closeSignal: d.closeSignal,
      closedError: d.closedError,
      settled: d.settled,
    });
    this.admission = new Admission<C>({
      ownerId: d.ownerId,
      target: d.target,
      requestTimeoutMs: s.requestTimeoutMs,
      nonFinite: d.nonFinite,
      poison: this.poison,
      maxDeaths: s.poison.maxDeaths,
      closing: d.closing,
      closedError: d.closedError,
      refusedAsPoison: () => this.counters.poisonRefused++,
      check: d.check,
      make: d.make,
      enqueue: d.enqueue,
    });
  }

  execute<T>(command: string, args: unknown, options: ExecuteOptions): Promise<T | DetailedResult<T>> {
    let call: C;
    try {
      call = this.admission.admit(command, args, options);
    } catch (e) {
      return Promise.reject(e);
    }
    if (channels['call:start'].hasSubscribers) channels['call:start'].publish({ poolId: this.d.ownerId, callId: call.id, command, sessionId: call.sessionId, stream: false });
    return this.policy.run<T>(call);
  }

  stream<T>(command: string, args: unknown, options: StreamOptions): AsyncIterableIterator<T> {
    return openStream<T, C>(
      command,
      options,
      (execute) => this.admission.prepareStream(command, args, execute),
      (call) => {
        this.admission.enqueue(call);
        if (channels['call:start'].hasSubscribers) channels['call:start'].publish({ poolId: this.d.ownerId, callId: call.id, command, sessionId: call.sessionId, stream: true });
        return this.policy.run(call);
      },
    );
  }
}
