import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPool, subscribe, type ChaosOptions, type Logger, type Pool, type PoolOptions, type PoolStats } from '../../index.js';
import { exampleFile } from '../paths.js';
import { auditLedger, reap } from './ledger.js';
import { ChaosMix, type KindTally, type NewerKind, type SessionStateError } from './mix.js';
import { runWorkload, type WorkloadState } from '../workload.js';
import { infraFaultRate } from './faults.js';
import { findOrphans } from './processes.js';
import { seededRandom } from '../../pool/chaos.js';
import { neverInvariants, zero, type Invariant } from './invariants.js';

/**
 * Pool options for a chaos run, chosen so that a fault costs about a second, not the
 * production defaults' tens of seconds; the retry delays stay the decision matrix's own
 * (e.g. 1 s then 3 s after a crash or a timeout). Printed by `pyfleet chaos --help`.
 */
export const CHAOS_POOL_OPTIONS = Object.freeze({
  requestTimeoutMs: 1_500,
  cancelGraceMs: 300,
  startupTimeoutMs: 5_000,
  queueTimeoutMs: 5_000,
  healthCheck: Object.freeze({ intervalMs: 200, maxMissed: 3 }),
  circuitBreaker: Object.freeze({ openTimeoutMs: 1_500 }),
  recycle: Object.freeze({ maxMemoryMb: 160 }),
}) satisfies Partial<PoolOptions>;

/** The highest per-call infrastructure fault rate at which 99% of idempotent calls can be expected to succeed. */
export const SLO_MAX_INFRA_RATE = 0.1;

/** What the injected Python exception looks like in `err.python`. */
export { INJECTED_EXCEPTION } from './mix.js';

export interface ChaosRunOptions {
  durationS: number;
  workers: number;
  seed: number;
  /** Calls started per second. */
  rate: number;
  concurrency: number;
  /** `concurrency` of the pool: async and threaded calls one worker runs at once. */
  poolConcurrency: number;
  /** Shares of session-less calls given to acompute, tcompute, stream and blob (default: none). */
  kinds?: Partial<Record<NewerKind, number>>;
  /** Share of the other session-less calls that are idempotent (compute); the rest are not (record). */
  idempotentShare: number;
  /** Session ids used (0: no session calls). */
  sessions: number;
  /** Share of calls made in a session (when one is free). */
  sessionShare: number;
  chaos: ChaosOptions;
  python?: string;
  requestTimeoutMs: number;
  /** Time in-flight calls get to settle after sending stops before they count as lost. */
  drainTimeoutMs: number;
  /** idempotentSuccessRate below this fails the run (when the fault rates allow: see SLO_MAX_INFRA_RATE). */
  minSuccessRate: number;
  logger: Logger;
  signal?: AbortSignal;
  onTick?(state: WorkloadState, pool: Pool): void;
  /** Keep the ledger file (its path is in the report). */
  keepLedger?: boolean;
}


export interface ChaosReport {
  ok: boolean;
  seed: number;
  durationS: number;
  workers: number;
  rate: number;
  concurrency: number;
  poolConcurrency: number;
  interrupted: boolean;
  faults: ChaosOptions;
  poolOptions: Omit<typeof CHAOS_POOL_OPTIONS, 'requestTimeoutMs'> & { requestTimeoutMs: number };
  sent: number;
  settled: number;
  succeeded: number;
  failed: number;
  failedByCategory: Record<string, number>;
  failedByCode: Record<string, number>;
  lost: number;
  lostByCommand: Record<string, number>;
  settledLate: number;
  /** Answers delivered twice, counted where they arrive: this driver's callbacks and call:end per call id. */
  answeredTwice: number;
  /** Second settlements the pool refused (its own count: a pyfleet bug if above 0). */
  settledTwice: number;
  duplicateSideEffects: number;
  missingSideEffects: number;
  /** Non-idempotent calls that failed with taken=false ("not run") although their side effect happened. */
  ranButReportedNotTaken: number;
  /** Non-idempotent calls that failed (worker died, timeout...) and whose side effect did happen (allowed: the error says it may have run). */
  failedButRan: number;
  ledgerCorruptLines: number;
  wrongAnswers: number;
  wrongAnswersByKind: Record<string, number>;
  sessionStateErrors: number;
  sessionStateErrorsByKind: Record<SessionStateError, number>;
  streamBrokenMislabelled: number;
  nonPoolErrors: number;
  nonPoolErrorSamples: string[];
  /** compute and the newer kinds (all idempotent). */
  idempotent: { calls: number; succeeded: number; injectedExceptions: number; brokenStreams: number; failedByCode: Record<string, number> };
  /** The newer kinds one by one. */
  kinds: Record<NewerKind, KindTally>;
  streams: { items: number; complete: number; failedAfterItems: number; broken: number };
  idempotentSuccessRate: number;
  nonIdempotent: { calls: number; succeeded: number; failed: number };
  session: { calls: number; succeeded: number; lost: number; reopened: number };
  /** The pool's durable sessions: `stats().sessions` at the end, and the snapshot and restore events of the run. */
  durableSessions: { restored: number; durable: number; snapshots: { ok: number; failed: number }; restores: { ok: number; failed: number }; notDurable: number };
  injectedExceptionsSeen: number;
  retries: number;
  recoveries: { initiated: number; succeeded: number; failed: number; byStrategy: Record<string, { initiated: number; succeeded: number; failed: number }> };
  circuitOpenings: number;
  circuits: Record<string, { state: string; opened: number; rejected: number }>;
  workerRestarts: { total: number; byReason: Record<string, number> };
  poison: { quarantined: number; refused: number };
  injected: Record<string, number>;
  poolCalls: PoolStats['calls'] | null;
  latencyMs: { p50: number; p99: number; max: number };
  pidsSeen: number;
  /** The most calls one worker held at once, sampled every 100 ms (above 1: calls shared a worker). */
  maxWorkerInflight: number;
  orphans: number;
  orphanPids: number[];
  closeMs: number;
  closeTimedOut: boolean;
  drainMs: number;
  ledger: string | null;
  invariants: Invariant[];
}


/** Runs the chaos workload against a pool with faults injected, and checks the invariants. */
export async function runChaos(o: ChaosRunOptions): Promise<ChaosReport> {
  // Salted: the workload's choices must not mirror the pool's chaos stream of the same seed.
  const rnd = seededRandom((o.seed ^ 0x5bd1e995) >>> 0);
  const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const ledgerDir = mkdtempSync(path.join(tmpdir(), 'pyfleet-chaos-'));
  const ledger = path.join(ledgerDir, 'ledger.txt');

  // Every worker pid the run sees, for the orphan check after close.
  const pids = new Set<number>();
  const durable = { snapshots: { ok: 0, failed: 0 }, restores: { ok: 0, failed: 0 }, notDurable: 0 };
  // call:end is the answer as its subscribers (metrics, traces, the dashboard) see it: one per call.
  const ends = new Map<number, number>();
  let poolId: number | null = null;
  const unsubscribe = [
    subscribe('worker:transition', (p) => {
      if (p.pid !== null) pids.add(p.pid);
    }),
    subscribe('worker:exit', (p) => {
      if (p.pid !== null) pids.add(p.pid);
    }),
    // The pool's id is known once it is created; its sessions' events only come after.
    subscribe('session:snapshot', (e) => {
      if (e.poolId === poolId) durable.snapshots[e.ok ? 'ok' : 'failed']++;
    }),
    subscribe('session:restore', (e) => {
      if (e.poolId === poolId) durable.restores[e.ok ? 'ok' : 'failed']++;
    }),
    subscribe('session:not_durable', (e) => {
      if (e.poolId === poolId) durable.notDurable++;
    }),
    subscribe('call:end', (e) => {
      if (e.poolId === poolId) ends.set(e.callId, (ends.get(e.callId) ?? 0) + 1);
    }),
  ];

  const pool = await createPool({
    module: exampleFile('chaos_handlers.py'),
    ...(o.python !== undefined ? { python: o.python } : {}),
    workers: o.workers,
    concurrency: o.poolConcurrency,
    ...CHAOS_POOL_OPTIONS,
    requestTimeoutMs: o.requestTimeoutMs,
    logger: o.logger,
    env: { PYFLEET_CHAOS_LEDGER: ledger },
    chaos: o.chaos,
  }).catch((e: unknown) => {
    for (const u of unsubscribe) u();
    rmSync(ledgerDir, { recursive: true, force: true });
    throw e;
  });
  poolId = pool.id;
  const samplePids = (): void => {
    for (const p of pool.pids()) pids.add(p);
  };
  samplePids();

  let mix: ChaosMix;
  try {
    mix = new ChaosMix({ target: pool, runId, sessions: o.sessions, sessionShare: o.sessionShare, idempotentShare: o.idempotentShare, rnd, ...(o.kinds !== undefined ? { kinds: o.kinds } : {}) });
  } catch (e) {
    for (const u of unsubscribe) u();
    await pool.close();
    rmSync(ledgerDir, { recursive: true, force: true });
    throw e;
  }
  const { failedByCategory, failedByCode, idem, nonIdem, sess } = mix;

  let maxWorkerInflight = 0;
  let result;
  try {
    result = await runWorkload({
      durationMs: o.durationS * 1000,
      rate: o.rate,
      concurrency: o.concurrency,
      drainTimeoutMs: o.drainTimeoutMs,
      next: mix.next,
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
      onTick: (st) => {
        samplePids();
        for (const w of pool.stats().workers) if (w.inflight > maxWorkerInflight) maxWorkerInflight = w.inflight;
        o.onTick?.(st, pool);
      },
    });
  } finally {
    samplePids();
  }

  // Close: drains, stops and reaps every worker. A close that never returns is a failure of its own.
  const statsBefore = pool.stats();
  const closeStart = performance.now();
  const CLOSE_LIMIT_MS = 30_000;
  let closeTimedOut = false;
  // Not unref'd: a close that never settles must end in a report, not in a silent exit 0.
  let closeLimit: NodeJS.Timeout | undefined;
  await Promise.race([
    pool.close(),
    new Promise<void>((r) => {
      closeLimit = setTimeout(() => {
        closeTimedOut = true;
        r();
      }, CLOSE_LIMIT_MS);
    }),
  ]);
  clearTimeout(closeLimit);
  const closeMs = performance.now() - closeStart;
  for (const u of unsubscribe) u();
  // Calls lost at the drain deadline may settle while the pool closes: wait a moment for them.
  if (result.lost > 0) await Promise.race([result.allSettled(), new Promise((r) => setTimeout(r, 1_000))]);

  // Orphans: any worker process still alive after close (poll briefly: the kernel may lag a kill).
  let orphanPids = findOrphans(pids);
  for (let i = 0; i < 10 && orphanPids.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    orphanPids = findOrphans(pids);
  }
  // Do not leave them behind: they are counted, now reap them.
  reap(orphanPids);

  // Side effects of non-idempotent calls.
  const audit = auditLedger(ledger, { sent: mix.tokensSent, succeeded: mix.tokensSucceeded, failed: mix.tokensFailed });
  const { duplicateSideEffects, missingSideEffects, failedButRan, ranButReportedNotTaken, ledgerCorruptLines } = audit;
  if (o.keepLedger !== true) rmSync(ledgerDir, { recursive: true, force: true });

  const stats = pool.stats();
  const idemDenominator = idem.calls - idem.injectedExceptions - idem.brokenStreams;
  const idempotentSuccessRate = idemDenominator === 0 ? 1 : idem.succeeded / idemDenominator;
  const infraRate = infraFaultRate(o.chaos);
  const circuitOpenings = Object.values(stats.circuits).reduce((s, c) => s + c.opened, 0);

  // Answers seen twice where they arrive: by this driver, and on call:end (not the pool's own settledTwice
  // count, which a broken guard would take down with it; that one is checked as well).
  let answeredTwice = result.answeredTwice;
  for (const n of ends.values()) answeredTwice += n - 1;
  const invariants: Invariant[] = [
    ...neverInvariants({ lost: result.lost, answeredTwice, settledTwice: stats.calls.settledTwice, audit, mix, orphans: orphanPids.length }),
    zero('closeTimedOut', closeTimedOut ? 1 : 0),
  ];
  const slo: Invariant = { name: 'idempotentSuccessRate', ok: true, value: idempotentSuccessRate, expected: `>= ${o.minSuccessRate}` };
  if (infraRate > SLO_MAX_INFRA_RATE) slo.skipped = `infrastructure fault rate ${round4(infraRate)} per call is above ${SLO_MAX_INFRA_RATE}`;
  else if (o.minSuccessRate <= 0) slo.skipped = 'disabled (--min-success-rate 0)';
  else slo.ok = idempotentSuccessRate >= o.minSuccessRate;
  invariants.push(slo);

  return {
    ok: invariants.every((i) => i.ok),
    seed: o.seed,
    durationS: Math.round(result.sendingMs / 100) / 10,
    workers: o.workers,
    rate: o.rate,
    concurrency: o.concurrency,
    poolConcurrency: o.poolConcurrency,
    interrupted: result.interrupted,
    faults: o.chaos,
    poolOptions: { ...CHAOS_POOL_OPTIONS, requestTimeoutMs: o.requestTimeoutMs },
    sent: result.sent,
    settled: result.settled,
    succeeded: result.succeeded,
    failed: result.failed,
    failedByCategory,
    failedByCode,
    lost: result.lost,
    lostByCommand: result.lostByLabel,
    settledLate: result.settledLate,
    answeredTwice,
    settledTwice: stats.calls.settledTwice,
    duplicateSideEffects,
    missingSideEffects,
    ranButReportedNotTaken,
    failedButRan,
    ledgerCorruptLines,
    wrongAnswers: mix.wrongAnswers,
    wrongAnswersByKind: mix.wrongAnswersByKind,
    sessionStateErrors: mix.sessionStateErrors,
    sessionStateErrorsByKind: mix.sessionStateErrorsByKind,
    streamBrokenMislabelled: mix.streamBrokenMislabelled,
    nonPoolErrors: mix.nonPoolErrors,
    nonPoolErrorSamples: mix.nonPoolErrorSamples,
    idempotent: idem,
    kinds: mix.kinds,
    streams: mix.streamStats,
    // Rounded down, so a rate that failed the check never prints as passing.
    idempotentSuccessRate: Math.floor(idempotentSuccessRate * 10_000) / 10_000,
    nonIdempotent: nonIdem,
    session: sess,
    durableSessions: { restored: stats.sessions.restored, durable: stats.sessions.durable, ...durable },
    injectedExceptionsSeen: mix.injectedExceptionsSeen,
    retries: stats.calls.retries,
    recoveries: {
      initiated: stats.recoveries.initiated,
      succeeded: stats.recoveries.succeeded,
      failed: stats.recoveries.failed,
      byStrategy: Object.fromEntries(Object.entries(stats.recoveries.byStrategy).filter(([, c]) => c.initiated > 0).map(([k, c]) => [k, { initiated: c.initiated, succeeded: c.succeeded, failed: c.failed }])),
    },
    circuitOpenings,
    circuits: Object.fromEntries(Object.entries(stats.circuits).map(([k, c]) => [k, { state: c.state, opened: c.opened, rejected: c.rejected }])),
    workerRestarts: stats.restarts,
    poison: stats.poison,
    injected: stats.chaos?.injected ?? {},
    poolCalls: statsBefore.calls,
    latencyMs: result.latencies.summary(),
    pidsSeen: pids.size,
    maxWorkerInflight,
    orphans: orphanPids.length,
    orphanPids,
    closeMs: Math.round(closeMs),
    closeTimedOut,
    drainMs: Math.round(result.drainMs),
    ledger: o.keepLedger === true ? ledger : null,
    invariants,
  };
}

function round4(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}
