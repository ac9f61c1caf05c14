/**
 * h. Recovery after a worker death: 2 workers, an idempotent call running on one of them, SIGKILL
 * of its process; from the kill to the re-send of the call to the other worker (its
 * `worker:transition` to busy), to the pool noticing the death (`worker:exit`), to
 * `retry:attempt`, and to the caller's value. Many rounds; each waits for the replacement worker
 * to be ready before the next.
 */
import { fileURLToPath } from 'node:url';
import { createPool } from '../dist/pool/pool.js';
import { dist, fmt, log, median, pass, percentile, silent, targets, until } from './common.js';

const MODULE = fileURLToPath(new URL('./handlers.py', import.meta.url));

interface Round {
  exit: number;
  retry: number;
  resend: number;
  value: number;
}

export async function benchRecovery(python: string): Promise<string> {
  const ROUNDS = Number(process.env.BENCH_RECOVERY_ROUNDS ?? 40);
  const HOLD_MS = 40;
  log(`h. recovery: ${ROUNDS} SIGKILLs of a worker running an idempotent call`);
  const pool = await createPool({ module: MODULE, python, logger: silent, workers: 2 });
  const got: Round[] = [];
  let t = { exit: NaN, retry: NaN, resend: NaN };
  let victim = -1;
  let calm = false;
  const offs = [
    pool.on('worker:exit', (e) => {
      if (e.workerId === victim && Number.isNaN(t.exit)) t.exit = performance.now();
    }),
    pool.on('retry:attempt', () => {
      if (Number.isNaN(t.retry)) t.retry = performance.now();
    }),
    pool.on('worker:transition', (e) => {
      if (!calm && e.workerId !== victim && e.to === 'busy' && Number.isNaN(t.resend)) t.resend = performance.now();
    }),
  ];
  const ready = (): boolean => pool.stats().workers.filter((w) => w.state === 'ready').length === 2;
  let failed = 0;
  try {
    for (let i = 0; i < 20; i++) await pool.execute('add', { a: i, b: 1 }); // both workers warm
    for (let r = 0; r < ROUNDS; r++) {
      await until(ready, 10_000, 'two ready workers');
      calm = true;
      t = { exit: NaN, retry: NaN, resend: NaN };
      // Distinct args each round: the deaths are not blamed on one call (poison).
      const call = pool.execute('hold', { ms: HOLD_MS, i: r });
      await until(() => pool.stats().workers.some((w) => w.state === 'busy'), 2_000, 'the call to start');
      const busy = pool.stats().workers.find((w) => w.state === 'busy')!;
      victim = busy.id;
      await new Promise((res) => setTimeout(res, 5)); // the handler is running in Python
      calm = false;
      const k = performance.now();
      process.kill(busy.pid!, 'SIGKILL');
      try {
        const v = await call;
        if (v !== r) throw new Error(`hold answered ${String(v)}`);
        got.push({ exit: t.exit - k, retry: t.retry - k, resend: t.resend - k, value: performance.now() - k });
      } catch (e) {
        failed++;
        log(`h. round ${r}: the call failed: ${(e as Error).message}`);
      }
    }
  } finally {
    for (const off of offs) off();
    await pool.close();
  }
  const col = (k: keyof Round): number[] => got.map((g) => g[k]).filter((x) => !Number.isNaN(x));
  const resend = col('resend');
  const p90 = percentile(resend, 90);
  const ok = resend.length > 0 && p90 < 20 && failed === 0;
  targets.push({ name: 'h. SIGKILL to re-send on the other worker (p90; p50 / max)', value: `${fmt(p90, 1)} ms (${fmt(median(resend), 1)} / ${fmt(Math.max(...resend), 1)})${failed > 0 ? `; ${failed} calls failed` : ''}`, target: '< 20 ms', ok });
  return [
    '## h. Recovery after a worker death',
    '',
    `2 workers (\`bench/handlers.py\`), unpinned. Each round: both workers ready, the idempotent \`hold\` (${HOLD_MS} ms of \`time.sleep\`, distinct args each round so no call is quarantined as poison) sent, 5 ms after its worker went busy that worker's process is SIGKILLed from Node; times from the \`process.kill\` call. The re-send is the other worker's \`worker:transition\` to busy (the attempt's frame is written right after). ${got.length} rounds measured, ${failed} calls failed.`,
    '',
    '| from the SIGKILL to | p50 / p90 / max |',
    '|---|---:|',
    `| the pool sees the death (\`worker:exit\`) | ${dist(col('exit'))} |`,
    `| \`retry:attempt\` published | ${dist(col('retry'))} |`,
    `| the re-send: the other worker goes busy | ${dist(resend)} |`,
    `| (between the two: from \`worker:exit\` to the re-send) | ${dist(got.map((g) => g.resend - g.exit).filter((x) => !Number.isNaN(x)))} |`,
    `| the caller has its value (includes the ${HOLD_MS} ms handler) | ${dist(col('value'))} |`,
    '',
    `Kill to re-send, p90: **${fmt(p90, 1)} ms** (target < 20 ms, judged on p90) ${pass(ok)}`,
    '',
  ].join('\n');
}
