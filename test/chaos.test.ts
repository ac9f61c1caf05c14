import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cli, type CliRun } from './helpers/cli.js';

function chaos(args: string[], timeoutMs = 90_000): Promise<CliRun> {
  return cli(['chaos', ...args], timeoutMs);
}

interface Report {
  ok: boolean;
  seed: number;
  sent: number;
  settled: number;
  succeeded: number;
  failed: number;
  lost: number;
  answeredTwice: number;
  duplicateSideEffects: number;
  missingSideEffects: number;
  wrongAnswers: number;
  sessionStateErrors: number;
  nonPoolErrors: number;
  orphans: number;
  idempotentSuccessRate: number;
  idempotent: { calls: number; succeeded: number; injectedExceptions: number; brokenStreams: number; failedByCode: Record<string, number> };
  kinds: Record<'acompute' | 'tcompute' | 'stream' | 'blob', { calls: number; succeeded: number; injectedExceptions: number; failedByCode: Record<string, number> }>;
  streams: { items: number; complete: number; failedAfterItems: number; broken: number };
  streamBrokenMislabelled: number;
  session: { calls: number; succeeded: number; lost: number };
  durableSessions: { restored: number; snapshots: { ok: number; failed: number }; restores: { ok: number; failed: number } };
  poolConcurrency: number;
  maxWorkerInflight: number;
  circuitOpenings: number;
  nonIdempotent: { calls: number; succeeded: number; failed: number };
  injected: Record<string, number>;
  workerRestarts: { total: number };
  pidsSeen: number;
  latencyMs: { p50: number; p99: number; max: number };
  invariants: Array<{ name: string; ok: boolean; skipped?: string }>;
}

describe('pyfleet chaos', () => {
  it('10 s on 2 workers with every fault on, async, threaded, streaming, binary and durable-session calls: nothing lost, doubled, duplicated, wrong or orphaned', async () => {
    const r = await chaos(['--duration', '10', '--workers', '2', '--json', '--seed', '20240601']);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, `--json prints one line:\n${r.stdout}`);
    const report = JSON.parse(lines[0]) as Report;
    const show = JSON.stringify(report, null, 1);
    assert.equal(report.seed, 20240601);
    assert.ok(report.sent >= 300, `only ${report.sent} calls sent in 10 s at 50 calls/s`);
    assert.equal(report.settled, report.sent, show);
    assert.equal(report.succeeded + report.failed, report.settled, show);
    assert.equal(report.lost, 0, show);
    assert.equal(report.answeredTwice, 0, show);
    assert.equal(report.duplicateSideEffects, 0, show);
    assert.equal(report.missingSideEffects, 0, show);
    assert.equal(report.wrongAnswers, 0, show);
    assert.equal(report.sessionStateErrors, 0, show);
    assert.equal(report.nonPoolErrors, 0, show);
    assert.equal(report.orphans, 0, show);
    assert.ok(
      report.idempotentSuccessRate >= 0.99,
      `idempotentSuccessRate ${report.idempotentSuccessRate}: idempotent failures by code ${JSON.stringify(report.idempotent.failedByCode)}, circuit openings ${report.circuitOpenings}\n${show}`,
    );
    // The faults really happened, and the pool replaced workers.
    assert.ok((report.injected.kill ?? 0) > 0, show);
    assert.ok((report.injected.exception ?? 0) > 0, show);
    assert.ok(report.idempotent.injectedExceptions > 0, show);
    assert.ok(report.workerRestarts.total > 0, show);
    assert.ok(report.pidsSeen > 2, show);
    assert.ok(report.nonIdempotent.calls > 0 && report.idempotent.calls > 0, show);
    // The newer kinds ran, most of them succeeded, and their answers were checked (wrongAnswers 0 above).
    for (const k of ['acompute', 'tcompute', 'stream', 'blob'] as const) {
      const t = report.kinds[k];
      assert.ok(t.calls >= 20 && t.succeeded >= t.calls * 0.9, `${k}: ${JSON.stringify(t)}`);
    }
    assert.ok(report.streams.complete > 0 && report.streams.items >= report.streams.complete, show);
    assert.equal(report.streamBrokenMislabelled, 0, show);
    // Async calls shared a worker: the pool ran with concurrency > 1 and a worker held several calls at once.
    assert.equal(report.poolConcurrency, 4);
    assert.ok(report.maxWorkerInflight > 1, `at most ${report.maxWorkerInflight} calls at once on a worker`);
    // Sessions are durable: worker deaths restored them elsewhere, and their state was checked after it.
    assert.ok(report.session.succeeded > 0, show);
    assert.ok(report.durableSessions.snapshots.ok > 0, show);
    assert.ok(report.durableSessions.restores.ok > 0, `no session was restored on another worker: ${JSON.stringify(report.durableSessions)}`);
    assert.equal(report.durableSessions.restores.ok, report.durableSessions.restored, 'the events and stats().sessions.restored agree');
    assert.ok(report.latencyMs.max >= report.latencyMs.p99 && report.latencyMs.p99 >= report.latencyMs.p50, show);
    // Every invariant checked and held, and the exit code says so.
    assert.ok(report.invariants.every((i) => i.ok && i.skipped === undefined), show);
    assert.equal(report.ok, true);
    assert.equal(r.code, 0, r.stderr);
  });

  it('SIGINT mid-run: stops sending, drains, reports every call settled and no process left, exit 0', async () => {
    let signalled = false;
    const r = await cli(['chaos', '--duration', '60', '--workers', '2', '--json', '--seed', '7'], 90_000, (stderr, child) => {
      // The first progress line: the pool is up and calls are in flight.
      if (!signalled && /sent [1-9]/.test(stderr)) {
        signalled = true;
        child.kill('SIGINT');
      }
    });
    assert.ok(signalled, r.stderr);
    assert.match(r.stderr, /SIGINT: stopping, draining/);
    const report = JSON.parse(r.stdout.trim()) as Report & { interrupted: boolean };
    const show = JSON.stringify(report, null, 1);
    assert.equal(report.interrupted, true, show);
    assert.ok(report.sent > 0 && report.settled === report.sent, show);
    assert.equal(report.lost, 0, show);
    assert.equal(report.answeredTwice, 0, show);
    assert.equal(report.orphans, 0, show);
    assert.ok(r.ms < 45_000, `took ${r.ms} ms: the signal did not cut the 60 s run short`);
    assert.equal(r.code, 0, r.stderr);
  });

  it('exits 2 on a bad option and lists the known faults', async () => {
    const r = await chaos(['--faults', 'kill,meteor', '--duration', '1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown fault "meteor"; known: kill, hang/);
  });
});
