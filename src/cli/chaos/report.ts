import { table } from '../stats.js';
import { FAULTS } from './faults.js';
import type { ChaosReport } from './run.js';

const pct = (x: number): string => `${(Math.floor(x * 10_000) / 100).toFixed(2)}%`;

function kv(o: Record<string, number>): string {
  const e = Object.entries(o).filter(([, v]) => v > 0);
  return e.length === 0 ? 'none' : e.map(([k, v]) => `${k} ${v}`).join(', ');
}

/** The human-readable report. */
export function renderReport(r: ChaosReport): string {
  const out: string[] = [];
  const faults = FAULTS.map((f) => {
    const v = (r.faults[f.key] as number | undefined) ?? 0;
    return v > 0 ? `${f.name} ${v}` : null;
  }).filter((x): x is string => x !== null);
  out.push(`pyfleet chaos: ${r.durationS} s on ${r.workers} workers (pool concurrency ${r.poolConcurrency}), ${r.rate} calls/s, ${r.concurrency} in flight at most, seed ${r.seed}${r.interrupted ? ' (interrupted)' : ''}`);
  out.push(`faults: ${faults.length > 0 ? faults.join(', ') : 'none'}`);
  out.push(`replay: pyfleet chaos --seed ${r.seed} (same options)`);
  out.push('');
  out.push(
    table(
      ['calls', 'count'],
      [
        ['sent', r.sent],
        ['settled', r.settled],
        ['succeeded', r.succeeded],
        ['failed', r.failed],
        ['  idempotent (all kinds)', `${r.idempotent.succeeded}/${r.idempotent.calls} ok, ${r.idempotent.injectedExceptions} injected exceptions, ${r.idempotent.brokenStreams} broken streams`],
        ...Object.entries(r.kinds)
          .filter(([, k]) => k.calls > 0)
          .map(([name, k]) => [`    ${name}`, `${k.succeeded}/${k.calls} ok, ${k.injectedExceptions} injected exceptions${Object.keys(k.failedByCode).length > 0 ? `, failed: ${kv(k.failedByCode)}` : ''}`]),
        ['  non-idempotent (record)', `${r.nonIdempotent.succeeded}/${r.nonIdempotent.calls} ok, ${r.failedButRan} failed but ran (may-have-run errors)`],
        ['  session', `${r.session.succeeded}/${r.session.calls} ok, ${r.session.lost} lost sessions, ${r.session.reopened} reopened`],
      ],
    ),
  );
  if (r.kinds.stream.calls > 0) out.push(`streams: ${r.streams.complete} complete, ${r.streams.items} items, ${r.streams.failedAfterItems} failed after items (${r.streams.broken} PYFLEET_STREAM_BROKEN)`);
  const d = r.durableSessions;
  out.push(`durable sessions: ${d.restores.ok} restored on another worker (${d.restores.failed} restores failed), ${d.snapshots.ok} snapshots stored (${d.snapshots.failed} failed), ${d.notDurable} not durable`);
  out.push('');
  out.push(`failed by category: ${kv(r.failedByCategory)}`);
  out.push(`failed by code:     ${kv(r.failedByCode)}`);
  out.push(`faults injected:    ${kv(r.injected)}`);
  out.push(`retries ${r.retries}; recoveries ${r.recoveries.initiated} initiated, ${r.recoveries.succeeded} succeeded, ${r.recoveries.failed} failed (${kv(Object.fromEntries(Object.entries(r.recoveries.byStrategy).map(([k, c]) => [k, c.initiated])))})`);
  out.push(`circuit openings ${r.circuitOpenings} (${Object.entries(r.circuits).map(([k, c]) => `${k}: opened ${c.opened}, rejected ${c.rejected}, now ${c.state}`).join('; ')})`);
  out.push(`worker restarts ${r.workerRestarts.total} (${kv(r.workerRestarts.byReason)}); poison quarantined ${r.poison.quarantined}, refused ${r.poison.refused}`);
  out.push(`latency p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms; drain ${r.drainMs} ms, close ${r.closeMs} ms; ${r.pidsSeen} worker pids seen; at most ${r.maxWorkerInflight} calls at once on one worker`);
  out.push('');
  out.push('invariants');
  out.push(
    table(
      ['', 'check', 'value', 'must be'],
      r.invariants.map((i) => [
        i.skipped !== undefined ? 'skip' : i.ok ? 'ok' : 'FAIL',
        i.name,
        i.name === 'idempotentSuccessRate' ? pct(i.value) : String(i.value),
        i.skipped !== undefined ? `${i.expected} (not checked: ${i.skipped})` : i.expected,
      ]),
      '  ',
    ),
  );
  if (r.wrongAnswers > 0) out.push(`wrong answers by kind: ${kv(r.wrongAnswersByKind)}`);
  if (r.sessionStateErrors > 0) out.push(`session state errors: ${kv(r.sessionStateErrorsByKind)}`);
  if (r.lost > 0) out.push(`lost calls by command: ${kv(r.lostByCommand)}${r.settledLate > 0 ? ` (${r.settledLate} settled later, while the pool closed)` : ''}`);
  if (r.orphans > 0) out.push(`orphaned worker pids (killed now): ${r.orphanPids.join(', ')}`);
  if (r.nonPoolErrorSamples.length > 0) out.push(`rejections that were not PoolErrors:\n${r.nonPoolErrorSamples.join('\n')}`);
  out.push('');
  out.push(r.ok ? 'result: every invariant held' : `result: FAILED (${r.invariants.filter((i) => !i.ok).map((i) => i.name).join(', ')})`);
  return out.join('\n');
}
