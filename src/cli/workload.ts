import { Latencies } from './stats.js';

export type Outcome = { ok: true; value: unknown; ms: number } | { ok: false; error: unknown; ms: number };

/** One call the workload sends. */
export interface PlannedCall {
  /** A label for reports (the command name). */
  label: string;
  /** Starts the call (e.g. `pool.execute(...)`); latency is measured from here to settlement. */
  start(): Promise<unknown>;
  /** Called once, when the call settles (before the drain deadline or after it). */
  done?(outcome: Outcome): void;
}

export interface WorkloadOptions {
  /** How long to keep sending. */
  durationMs: number;
  /** Calls started per second (open loop); Infinity sends as fast as `concurrency` allows. */
  rate: number;
  /** Calls in flight at most. */
  concurrency: number;
  /** The next call to send, or null when there is nothing to send right now. */
  next(): PlannedCall | null;
  /** After sending stops: how long in-flight calls get to settle before they count as lost. */
  drainTimeoutMs: number;
  /** Stops sending early (the run then drains as usual). */
  signal?: AbortSignal;
  /** Called about every 100 ms while sending and draining. */
  onTick?(state: WorkloadState): void;
}

export interface WorkloadState {
  elapsedMs: number;
  sent: number;
  settled: number;
  succeeded: number;
  failed: number;
  inFlight: number;
  phase: 'sending' | 'draining' | 'done';
}

export interface WorkloadResult extends WorkloadState {
  /** Calls not settled by the drain deadline. */
  lost: number;
  /** Settlements of a call after its first, as this driver received them (each was ignored). */
  readonly answeredTwice: number;
  /** Labels of those calls, with how many. */
  lostByLabel: Record<string, number>;
  /** Of the lost calls, how many settled later (while the pool closed). */
  settledLate: number;
  latencies: Latencies;
  sendingMs: number;
  drainMs: number;
  interrupted: boolean;
  /** Resolves when every call has settled (or never, for a truly lost call): wait on it with a timeout. */
  allSettled(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Sends calls at `rate` per second, at most `concurrency` at once, for `durationMs`, then waits
 * up to `drainTimeoutMs` for the ones in flight.
 */
export async function runWorkload(o: WorkloadOptions): Promise<WorkloadResult> {
  const latencies = new Latencies();
  const pending = new Map<number, PlannedCall>();
  const state: WorkloadState = { elapsedMs: 0, sent: 0, settled: 0, succeeded: 0, failed: 0, inFlight: 0, phase: 'sending' };
  let settledLate = 0;
  let answeredTwice = 0;
  let drainDeadlinePassed = false;
  let wake: (() => void) | null = null;
  let allDone: (() => void) | null = null;
  const t0 = performance.now();

  const launch = (call: PlannedCall): void => {
    const id = state.sent++;
    state.inFlight++;
    pending.set(id, call);
    const started = performance.now();
    let answered = false;
    const settle = (ok: boolean, payload: unknown): void => {
      // Counted here, where the answer arrives, not where the pool settles it: a pool whose guard
      // against a second settlement broke would lose its own count of them with the guard.
      if (answered) {
        answeredTwice++;
        return;
      }
      answered = true;
      const ms = performance.now() - started;
      pending.delete(id);
      state.inFlight--;
      state.settled++;
      if (ok) state.succeeded++;
      else state.failed++;
      if (drainDeadlinePassed) settledLate++;
      latencies.add(ms);
      try {
        call.done?.(ok ? { ok: true, value: payload, ms } : { ok: false, error: payload, ms });
      } finally {
        wake?.();
        if (state.inFlight === 0) allDone?.();
      }
    };
    let p: Promise<unknown>;
    try {
      p = call.start();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (v) => settle(true, v),
      (e: unknown) => settle(false, e),
    );
  };

  let lastTick = 0;
  const tick = (): void => {
    state.elapsedMs = performance.now() - t0;
    if (o.onTick && state.elapsedMs - lastTick >= 100) {
      lastTick = state.elapsedMs;
      o.onTick({ ...state });
    }
  };

  // Sending: open loop at `rate`, capped by `concurrency`.
  while (!o.signal?.aborted) {
    const elapsed = performance.now() - t0;
    if (elapsed >= o.durationMs) break;
    const due = Number.isFinite(o.rate) ? Math.floor((o.rate * elapsed) / 1000) + 1 : Number.MAX_SAFE_INTEGER;
    let progressed = false;
    while (state.sent < due && state.inFlight < o.concurrency) {
      const call = o.next();
      if (call === null) break;
      launch(call);
      progressed = true;
    }
    tick();
    // Wake at the next due time, or when a call settles (a slot frees up), whichever is first.
    const waitMs = Number.isFinite(o.rate) ? Math.max(1, Math.min(20, ((state.sent + 1) * 1000) / o.rate - elapsed)) : progressed ? 0 : 20;
    await new Promise<void>((r) => {
      const t = setTimeout(r, waitMs);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });
    wake = null;
  }
  const interrupted = o.signal?.aborted === true && performance.now() - t0 < o.durationMs;
  const sendingMs = performance.now() - t0;

  // Draining.
  state.phase = 'draining';
  const drainStart = performance.now();
  const settledAll = new Promise<void>((r) => {
    allDone = r;
    if (state.inFlight === 0) r();
  });
  const deadline = drainStart + o.drainTimeoutMs;
  while (state.inFlight > 0 && performance.now() < deadline) {
    tick();
    await Promise.race([settledAll, sleep(Math.min(100, deadline - performance.now()))]);
  }
  const drainMs = performance.now() - drainStart;
  drainDeadlinePassed = true;
  const lostByLabel: Record<string, number> = {};
  for (const c of pending.values()) lostByLabel[c.label] = (lostByLabel[c.label] ?? 0) + 1;
  const lost = pending.size;
  state.phase = 'done';
  state.elapsedMs = performance.now() - t0;
  o.onTick?.({ ...state });
  return {
    ...state,
    get settledLate() {
      return settledLate;
    },
    get answeredTwice() {
      return answeredTwice;
    },
    lost,
    lostByLabel,
    latencies,
    sendingMs,
    drainMs,
    interrupted,
    allSettled: () => settledAll,
  };
}
