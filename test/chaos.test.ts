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
  idempotent: { calls: number; succeeded: number; injectedExceptions: number; failedByCode: Record<string, number> };
  circuitOpenings: number;
  nonIdempotent: { calls: number; succeeded: number; failed: number };
  injected: Record<string, number>;
  workerRestarts: { total: number };
  pidsSeen: number;
  latencyMs: { p50: number; p99: number; max: number };
  invariants: Array<{ name: string; ok: boolean; skipped?: string }>;
}

describe('pyfleet chaos', () => {
  it('10 s on 2 workers with every fault on: nothing lost, doubled, duplicated or orphaned', async () => {
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
