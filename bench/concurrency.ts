/**
 * i. Concurrency inside a worker.
 *
 *   1. 200 calls of an `async def` handler awaiting asyncio.sleep(0.05), at once, on ONE worker
 *      with `concurrency: 200`, against one such call alone (same pool, same round) and a bare
 *      asyncio loop gathering 200 such sleeps (no pyfleet, no Node).
 *   2. A trivial `async def` handler one call at a time against the same handler as a plain
 *      `def`, in each CPU placement (one core, two cores, unpinned).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createPool, type Pool } from '../dist/pool/pool.js';
import { callLoop } from './loops.js';
import {
  JUDGED,
  PLACEMENTS,
  fmt,
  fmtInt,
  homeCpu,
  log,
  median,
  otherCpu,
  pass,
  place,
  roundsNote,
  runRounds,
  silent,
  spread,
  targets,
  withCpus,
  type Placement,
} from './common.js';

const MODULE = fileURLToPath(new URL('./handlers.py', import.meta.url));
const SLEEP_S = 0.05;
const FANOUT = 200;

/** A persistent Python process that, for each line it reads, gathers FANOUT asyncio.sleep(SLEEP_S) on one loop and prints the ms it took. */
const BARE = `
import asyncio, sys, time
loop = asyncio.new_event_loop()
async def many(n, s):
    await asyncio.gather(*(asyncio.sleep(s) for _ in range(n)))
for line in sys.stdin:
    t0 = time.perf_counter()
    loop.run_until_complete(many(${FANOUT}, ${SLEEP_S}))
    print((time.perf_counter() - t0) * 1000, flush=True)
`;

class BareLoop {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ReturnType<typeof spawn>) {
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }
  static start(python: string): BareLoop {
    return new BareLoop(spawn(python, ['-c', BARE], { stdio: ['pipe', 'pipe', 'inherit'] }));
  }
  async run(): Promise<number> {
    this.child.stdin!.write('go\n');
    const r = await this.lines.next();
    return Number(r.value);
  }
  close(): void {
    this.child.stdin!.end();
  }
}

async function fanout(pool: Pool, n: number, round: number): Promise<number> {
  const t0 = performance.now();
  const got = await Promise.all(Array.from({ length: n }, (_, i) => pool.execute('asleep', { s: SLEEP_S, i: round * n + i })));
  const ms = performance.now() - t0;
  if (got.length !== n) throw new Error('fanout lost calls');
  return ms;
}

export async function benchConcurrency(python: string): Promise<string> {
  log(`i. concurrency: ${FANOUT} async sleeps on one worker; async def vs def one at a time (${PLACEMENTS.join(', ')})`);
  // ---- 1. many sleeping calls on one worker
  const WANT1 = 11;
  const many = await createPool({ module: MODULE, python, logger: silent, workers: 1, concurrency: FANOUT });
  const bare = BareLoop.start(python);
  let r1;
  try {
    await fanout(many, FANOUT, 0);
    await many.execute('asleep', { s: SLEEP_S, i: 0 });
    await bare.run();
    r1 = await runRounds(WANT1, 2 * WANT1, 10_000, async (r) => {
      const got = { one: 0, fan: 0, bare: 0 };
      const steps = [
        async () => {
          const t0 = performance.now();
          await many.execute('asleep', { s: SLEEP_S, i: -r });
          got.one = performance.now() - t0;
        },
        async () => void (got.fan = await fanout(many, FANOUT, r + 1)),
        async () => void (got.bare = await bare.run()),
      ];
      for (let k = 0; k < steps.length; k++) await steps[(k + r) % steps.length]();
      return got;
    });
  } finally {
    bare.close();
    await many.close();
  }
  const fanRatios = r1.used.map((g) => g.fan / g.one);
  const fanRatio = median(fanRatios);
  const m1 = (k: 'one' | 'fan' | 'bare'): number => median(r1.used.map((g) => g[k]));
  targets.push({ name: `i. ${FANOUT} x asyncio.sleep(${SLEEP_S}) on one worker (concurrency ${FANOUT}) vs one call`, value: `${fmt(fanRatio)}x (${fmt(m1('fan'), 1)} vs ${fmt(m1('one'), 1)} ms)`, target: '<= 3x', ok: fanRatio <= 3 });

  // ---- 2. async def vs def, one call at a time, per placement
  const N = 1000;
  const WANT2 = 11;
  const pool = await createPool({ module: MODULE, python, logger: silent, workers: 1 });
  const variants: Array<[string, () => Promise<{ ms: number }>]> = [
    ['def', () => callLoop(pool, N, 'add', (i) => ({ a: i, b: 1 }))],
    ['async def', () => callLoop(pool, N, 'aadd', (i) => ({ a: i, b: 1 }))],
  ];
  interface V2 {
    rate: number;
    nodeUs: number;
    pyUs: number;
  }
  type R2 = Partial<Record<Placement, { def: V2; async: V2 }>>;
  let r2;
  try {
    for (const [, f] of variants) await f();
    r2 = await runRounds(WANT2, 3 * WANT2, 12_000, async (r): Promise<R2> => {
      const got: R2 = {};
      for (let q = 0; q < PLACEMENTS.length; q++) {
        const p = PLACEMENTS[(q + r) % PLACEMENTS.length];
        place(p, pool.pids());
        const v: Record<string, V2> = {};
        for (let k = 0; k < variants.length; k++) {
          const [name, f] = variants[(k + r) % variants.length];
          await callLoop(pool, 50, name === 'def' ? 'add' : 'aadd', (i) => ({ a: i, b: 1 })); // settle, untimed
          const res = await withCpus(pool.pids(), f);
          v[name] = { rate: N / (res.ms / 1000), nodeUs: res.nodeUs / N, pyUs: res.pyUs / N };
        }
        got[p] = { def: v.def, async: v['async def'] };
      }
      place('unpinned', pool.pids());
      return got;
    });
  } finally {
    place('unpinned', pool.pids());
    await pool.close();
  }
  const ratios = (p: Placement): number[] => r2.used.map((g) => g[p]!.async.rate / g[p]!.def.rate);
  const m2 = (p: Placement, v: 'def' | 'async', k: keyof V2): number => median(r2.used.map((g) => g[p]![v][k]));
  const judged = median(ratios(JUDGED));
  targets.push({
    name: `i. async def vs def, trivial handler, one at a time (${JUDGED}${PLACEMENTS.length > 1 ? `; ${PLACEMENTS.filter((p) => p !== JUDGED).map((p) => `${p} ${fmt(median(ratios(p)))}`).join(', ')}` : ''})`,
    value: fmt(judged),
    target: '>= 0.80',
    ok: judged >= 0.8,
  });
  const where = (p: Placement): string => (p === 'one core' ? `all on CPU ${homeCpu()}` : p === 'two cores' ? `Node on CPU ${homeCpu()}, Python on CPU ${otherCpu()}` : 'scheduler');
  return [
    '## i. Concurrency inside a worker',
    '',
    `**${FANOUT} sleeping calls on one worker.** \`asleep\` (\`bench/handlers.py\`: \`async def\`, \`await asyncio.sleep(${SLEEP_S})\`), one worker with \`concurrency: ${FANOUT}\`, unpinned. Each round, interleaved: one call alone; ${FANOUT} calls at once (\`Promise.all\`); a bare asyncio loop in a Python process of its own gathering ${FANOUT} such sleeps (timed inside Python: no pyfleet, no Node). ${roundsNote(r1)}`,
    '',
    '| | ms (median) |',
    '|---|---:|',
    `| one call alone, through the pool | ${fmt(m1('one'), 1)} |`,
    `| ${FANOUT} calls at once, through the pool | ${fmt(m1('fan'), 1)} |`,
    `| bare asyncio: ${FANOUT} sleeps gathered on one loop | ${fmt(m1('bare'), 1)} |`,
    '',
    `${FANOUT} calls / one call: **${fmt(fanRatio)}x** (target <= 3x) ${pass(fanRatio <= 3)}; per round ${spread(fanRatios)}. The pool's ${FANOUT} calls take ${fmt(m1('fan') - m1('bare'), 1)} ms more than the bare loop's ${FANOUT} sleeps (${fmt(((m1('fan') - m1('bare')) * 1000) / FANOUT, 0)} µs per call).`,
    '',
    `**\`async def\` vs \`def\`, one call at a time.** The trivial \`aadd\` (\`async def\`) against \`add\` (\`def\`), same work, one worker (default \`concurrency\`), rounds of ${fmtInt(N)} calls each, interleaved; each round runs both in every placement (order rotating; 50 untimed calls after each move). ${roundsNote(r2)}`,
    '',
    '| placement | def calls/s | async def calls/s | async / def (median of rounds) | per round | µs per call def / async: wall | Node CPU | Python CPU |',
    '|---|---:|---:|---:|---|---:|---:|---:|',
    ...PLACEMENTS.map(
      (p) =>
        `| ${p} (${where(p)})${p === JUDGED ? ' **judged**' : ''} | ${fmtInt(m2(p, 'def', 'rate'))} | ${fmtInt(m2(p, 'async', 'rate'))} | ${fmt(median(ratios(p)))} | ${spread(ratios(p))} | ${fmt(1e6 / m2(p, 'def', 'rate'), 1)} / ${fmt(1e6 / m2(p, 'async', 'rate'), 1)} | ${fmt(m2(p, 'def', 'nodeUs'), 1)} / ${fmt(m2(p, 'async', 'nodeUs'), 1)} | ${fmt(m2(p, 'def', 'pyUs'), 1)} / ${fmt(m2(p, 'async', 'pyUs'), 1)} |`,
    ),
    '',
    'Node CPU is this process\'s user + system time per call; Python CPU is the worker\'s, every thread, from /proc/<pid>/task/*/schedstat (ns).',
    '',
    `async def / def (${JUDGED}): **${fmt(judged)}** (target >= 0.80) ${pass(judged >= 0.8)}.${PLACEMENTS.length > 1 ? ` Judged on one core, like section a (see "CPU placement"): there nothing overlaps, so the ratio is that of the CPU each call costs on both sides. Per call, the async path costs ${fmt(m2('one core', 'async', 'pyUs') - m2('one core', 'def', 'pyUs'), 1)} µs more Python CPU and ${fmt(m2('one core', 'async', 'nodeUs') - m2('one core', 'def', 'nodeUs'), 1)} µs more Node CPU than \`def\` on one core (${fmt(m2('two cores', 'async', 'pyUs') - m2('two cores', 'def', 'pyUs'), 1)} µs and ${fmt(m2('two cores', 'async', 'nodeUs') - m2('two cores', 'def', 'nodeUs'), 1)} µs on two cores), yet on two cores its wall time per call is only ${fmt(1e6 / m2('two cores', 'async', 'rate') - 1e6 / m2('two cores', 'def', 'rate'), 1)} µs longer: the part of the worker's extra work that it does after writing its answer runs while Node handles that answer, hidden by the second core; with the cores busy (or shared) it is not. Two cores is also the placement where every round trip pays the slow cross-core wake-ups (compare the def rates), which dilutes any per-call cost in the ratio.` : ''}`,
    '',
  ].join('\n');
}
