/**
 * m. validateArgs through the pool: the typed `search` (bench/handlers.py: a TypedDict with a
 * Literal, an Optional int and a list of strings) one call at a time on a pool with
 * `validateArgs: true` and on one without, interleaved; then bench/validate.ts's micro figure
 * (the check alone, no pool) run as a child process.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createPool } from '../dist/pool/pool.js';
import { callLoop } from './loops.js';
import { JUDGED, fmt, fmtInt, homeCpu, log, median, percentile, place, roundsNote, runRounds, silent, spread, type Rounds } from './common.js';

const MODULE = fileURLToPath(new URL('./handlers.py', import.meta.url));
const MICRO = fileURLToPath(new URL('./validate.ts', import.meta.url));

function micro(): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', MICRO], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.once('exit', (code) => resolve(code === 0 ? out.trim() : `bench/validate.ts exited with ${code}:\n${out.trim()}`));
  });
}

export async function benchValidate(python: string): Promise<string> {
  const N = 1000;
  const WANT = 21;
  log(`m. validateArgs through the pool (${JUDGED})`);
  const on = await createPool({ module: MODULE, python, logger: silent, workers: 1, validateArgs: true });
  const off = await createPool({ module: MODULE, python, logger: silent, workers: 1 });
  const args = (i: number) => ({ query: `q${i & 63}`, mode: i % 2 ? 'fast' : 'slow', limit: i & 63, tags: ['a', 'b'] });
  const runs: Record<'on' | 'off', () => Promise<{ ms: number }>> = {
    on: () => callLoop(on, N, 'search', args),
    off: () => callLoop(off, N, 'search', args),
  };
  let rounds: Rounds<{ on: number; off: number }>;
  try {
    try {
      await on.execute('search', { query: 1 });
      throw new Error('validateArgs let a wrong call through');
    } catch (e) {
      if ((e as { code?: string }).code !== 'PYFLEET_INVALID_ARGS') throw e;
    }
    await runs.on();
    await runs.off();
    place(JUDGED, [...on.pids(), ...off.pids()]);
    rounds = await runRounds(WANT, 2 * WANT, 15_000, async (r) => {
      const got = { on: 0, off: 0 };
      const order: Array<'on' | 'off'> = r % 2 ? ['on', 'off'] : ['off', 'on'];
      for (const k of order) got[k] = ((await runs[k]()).ms * 1000) / N;
      return got;
    });
  } finally {
    place('unpinned', [...on.pids(), ...off.pids()]);
    await on.close();
    await off.close();
  }
  const cost = rounds.used.map((g) => g.on - g.off);
  const ratios = rounds.used.map((g) => g.on / g.off);
  const m = await micro();
  return [
    '## m. validateArgs through the pool',
    '',
    `\`search\` (\`bench/handlers.py\`, args typed by a TypedDict: \`query\` str, \`mode\` Literal["fast", "slow"], \`limit\` int | None, \`tags\` list[str]) with args like \`${JSON.stringify(args(1))}\`, one worker per pool, ${fmtInt(N)} calls one at a time per variant, the two pools interleaved (order alternating), ${JUDGED === 'one core' ? `Node and both workers on CPU ${homeCpu()}` : 'unpinned'}. ${roundsNote(rounds)} No target; reported.`,
    '',
    '| pool | µs per call (median) |',
    '|---|---:|',
    `| \`validateArgs: false\` (default) | ${fmt(median(rounds.used.map((g) => g.off)), 1)} |`,
    `| \`validateArgs: true\` | ${fmt(median(rounds.used.map((g) => g.on)), 1)} |`,
    '',
    `Cost of validateArgs per call through the pool: **${fmt(median(cost), 2)} µs** (median of per-round differences; per round ${spread(cost)} µs), ratio ${fmt(median(ratios), 3)} (per round ${spread(ratios, 3)}).${percentile(cost, 25) < 0 && percentile(cost, 75) > 0 ? ' The per-round differences straddle zero (quartiles on both sides): through the pool the cost is below what these rounds resolve.' : ''}`,
    '',
    '`bench/validate.ts` (the check alone, same kind of args, no pool), run as a child process in this section:',
    '',
    '```',
    m,
    '```',
    '',
  ].join('\n');
}
