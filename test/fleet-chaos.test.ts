/** `pyfleet chaos --fleet`: a short run with hosts SIGKILLed under load; every invariant must hold. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { cli } from './helpers/cli.js';

it('pyfleet chaos --fleet kills hosts under load and every invariant holds (nothing lost, doubled or orphaned)', async () => {
  const r = await cli(['chaos', '--fleet', '--duration', '8', '--hosts', '2', '--workers', '1', '--kill-every', '2.5', '--rate', '40', '--seed', '11', '--json', '--quiet'], 90_000);
  assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const report = JSON.parse(r.stdout) as { ok: boolean; hostsKilled: number; lost: number; orphans: number; sent: number; invariants: Array<{ name: string; ok: boolean }> };
  assert.equal(report.ok, true, JSON.stringify(report.invariants));
  // At least one kill under load (a loaded machine starts the next host slowly; each kill waits for it).
  assert.ok(report.hostsKilled >= 1, `hosts killed: ${report.hostsKilled}`);
  assert.equal(report.lost, 0);
  assert.equal(report.orphans, 0);
  assert.ok(report.sent > 200);
});
