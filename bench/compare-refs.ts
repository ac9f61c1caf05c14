/**
 * The reshaped pool against the pre-reshape pool: sections a (one call at a time) and b (64 in
 * flight) run on two builds in one process, interleaved, each build against its own raw
 * baseline (its own Python runtime driven by hand, bench/raw.ts). Not part of `npm run bench`:
 * it needs a second tree.
 *
 *   git worktree add --detach /tmp/pre 838536a
 *   (cd /tmp/pre && ln -s "$PWD_OF_THIS_TREE/node_modules" node_modules && npx tsc -p tsconfig.build.json)
 *   npm run build && node --import tsx bench/compare-refs.ts [--pre /tmp/pre] [--runs 3] [--write]
 *
 * Each run starts fresh processes (two raw workers, four pools); within a run, rounds interleave
 * the four variants of a section in a rotated order, and in section a each round runs them in
 * every CPU placement (see bench/common.ts). Printed per run and over runs: pool/raw of each
 * build, the ratio of those ratios (reshaped / pre-reshape), and the builds' pool and raw rates
 * against each other. `--write` writes bench/COMPARE-REFS.md, which `npm run bench` copies into
 * RESULTS.md (and its two ratios into the Targets table).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createPool } from '../dist/pool/pool.js';
import { resolvePython } from '../dist/worker/python-path.js';
import { RawWorker, workerEnv } from './raw.js';
import { poolPipelined, poolSequential, type Executes } from './loops.js';
import { JUDGED, PLACEMENTS, fmt, fmtInt, log, median, place, quietMoment, roundsNote, runRounds, silent, spread, withCpu, type Placement, type Rounds } from './common.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = fileURLToPath(new URL('./COMPARE-REFS.md', import.meta.url));
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const PRE = path.resolve(arg('--pre', '/tmp/pre'));
/** The build compared with PRE: this tree by default (another tree's root with --new, e.g. to place a regression between two commits). */
const NEW = path.resolve(arg('--new', ROOT));
const RUNS = Number(arg('--runs', '3'));
const WRITE = process.argv.includes('--write');
if (WRITE && NEW !== path.resolve(ROOT)) throw new Error('--write records this tree against --pre; run without --new to write it');
const PYTHON = process.env.PYFLEET_PYTHON ?? 'python3';

interface Build {
  name: string;
  root: string;
  commit: string;
  createPool: (o: Record<string, unknown>) => Promise<Executes & { close(): Promise<void>; pids(): number[] }>;
}

const git = (dir: string, ...args: string[]): string => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' }).trim();

/** The tree's commit, and the last one that changed its library (src/, python/) when that is an older one. */
function code(dir: string): string {
  const head = git(dir, 'rev-parse', '--short', 'HEAD');
  const lib = git(dir, 'log', '-1', '--format=%h', '--', 'src', 'python');
  return lib === head ? head : `${head}, library as of ${lib}`;
}

async function builds(): Promise<[Build, Build]> {
  const pre = (await import(pathToFileURL(path.join(PRE, 'dist/pool/pool.js')).href)) as { createPool: Build['createPool'] };
  const cur = NEW === path.resolve(ROOT) ? { createPool: createPool as unknown as Build['createPool'] } : ((await import(pathToFileURL(path.join(NEW, 'dist/pool/pool.js')).href)) as { createPool: Build['createPool'] });
  return [
    { name: 'reshaped', root: NEW, commit: code(NEW), createPool: cur.createPool },
    { name: 'pre-reshape', root: PRE, commit: code(PRE), createPool: pre.createPool },
  ];
}

/** The four variants of a round: [new raw, new pool, old raw, old pool]. */
type Four = [number, number, number, number];
/** Calls per second, and Node's CPU per call (µs), of the four variants. */
interface Round4 {
  rate: Four;
  cpu: Four;
}
interface RunFigures {
  seq: Rounds<Partial<Record<Placement, Round4>>>;
  pipe: Rounds<Round4>;
}

async function oneRun(python: string, [nb, ob]: [Build, Build], run: number): Promise<RunFigures> {
  const SEQ_N = 1000;
  const PIPE_N = 10_000;
  const DEPTH = 64;
  const WANT_SEQ = 15;
  const WANT_PIPE = 11;
  const module = (b: Build): string => path.join(b.root, 'examples/handlers.py');
  const nRaw = await RawWorker.start(python, module(nb), workerEnv(path.join(nb.root, 'python')));
  const oRaw = await RawWorker.start(python, module(ob), workerEnv(path.join(ob.root, 'python')));
  const opts = (b: Build, extra: Record<string, unknown> = {}) => ({ module: module(b), python, logger: silent, workers: 1, ...extra });
  const nPool = await nb.createPool(opts(nb));
  const oPool = await ob.createPool(opts(ob));
  const nPipe = await nb.createPool(opts(nb, { pipelineDepth: DEPTH }));
  const oPipe = await ob.createPool(opts(ob, { pipelineDepth: DEPTH }));
  const pids = (): number[] => [nRaw.child.pid!, oRaw.child.pid!, ...nPool.pids(), ...oPool.pids(), ...nPipe.pids(), ...oPipe.pids()];
  try {
    const seqRuns = [(n: number) => nRaw.sequential(n), (n: number) => poolSequential(nPool, n), (n: number) => oRaw.sequential(n), (n: number) => poolSequential(oPool, n)];
    const pipeRuns = [() => nRaw.pipelined(PIPE_N, DEPTH), () => poolPipelined(nPipe, PIPE_N, DEPTH), () => oRaw.pipelined(PIPE_N, DEPTH), () => poolPipelined(oPipe, PIPE_N, DEPTH)];
    for (const f of seqRuns) await f(3 * SEQ_N);
    for (const f of pipeRuns) await f();
    log(`run ${run}: a. one at a time (${PLACEMENTS.join(', ')})`);
    const seq = await runRounds(WANT_SEQ, 3 * WANT_SEQ, 60_000, async (r) => {
      const got: Partial<Record<Placement, Round4>> = {};
      for (let q = 0; q < PLACEMENTS.length; q++) {
        const p = PLACEMENTS[(q + r) % PLACEMENTS.length];
        place(p, pids());
        const four: Round4 = { rate: [0, 0, 0, 0], cpu: [0, 0, 0, 0] };
        for (let k = 0; k < seqRuns.length; k++) {
          const i = (k + r) % seqRuns.length;
          await seqRuns[i](50);
          const res = await withCpu(() => seqRuns[i](SEQ_N));
          four.rate[i] = SEQ_N / (res.ms / 1000);
          four.cpu[i] = res.cpuUs / SEQ_N;
        }
        got[p] = four;
      }
      place('unpinned', pids());
      return got;
    });
    log(`run ${run}: b. ${DEPTH} in flight (unpinned)`);
    const pipe = await runRounds(WANT_PIPE, 3 * WANT_PIPE, 60_000, async (r) => {
      const four: Round4 = { rate: [0, 0, 0, 0], cpu: [0, 0, 0, 0] };
      for (let k = 0; k < pipeRuns.length; k++) {
        const i = (k + r) % pipeRuns.length;
        const res = await withCpu(pipeRuns[i]);
        four.rate[i] = PIPE_N / (res.ms / 1000);
        four.cpu[i] = res.cpuUs / PIPE_N;
      }
      return four;
    });
    return { seq, pipe };
  } finally {
    place('unpinned', pids());
    await nRaw.close();
    await oRaw.close();
    for (const p of [nPool, oPool, nPipe, oPipe]) await p.close();
  }
}

interface Summary {
  newRate: number;
  newRaw: number;
  oldRate: number;
  oldRaw: number;
  newRatio: number;
  oldRatio: number;
  /** Median of per-round (new pool/new raw) / (old pool/old raw). */
  ratioOfRatios: number;
  perRound: number[];
  /** Median of per-round new pool / old pool. */
  poolVsPool: number;
  rawVsRaw: number;
  /** Node CPU per call (µs, median): reshaped raw, reshaped pool, pre-reshape raw, pre-reshape pool. */
  cpu: Four;
}

function summarize(all: Round4[]): Summary {
  const rounds = all.map((g) => g.rate);
  const col = (i: number): number => median(rounds.map((g) => g[i]));
  const per = rounds.map((g) => g[1] / g[0] / (g[3] / g[2]));
  return {
    newRate: col(1),
    newRaw: col(0),
    oldRate: col(3),
    oldRaw: col(2),
    newRatio: median(rounds.map((g) => g[1] / g[0])),
    oldRatio: median(rounds.map((g) => g[3] / g[2])),
    ratioOfRatios: median(per),
    perRound: per,
    poolVsPool: median(rounds.map((g) => g[1] / g[3])),
    rawVsRaw: median(rounds.map((g) => g[0] / g[2])),
    cpu: [0, 1, 2, 3].map((i) => median(all.map((g) => g.cpu[i]))) as Four,
  };
}

async function main(): Promise<void> {
  const started = performance.now();
  const python = await resolvePython(PYTHON);
  const bs = await builds();
  log(`compare-refs: ${bs[0].name} ${bs[0].commit} (${bs[0].root}) vs ${bs[1].name} ${bs[1].commit} (${bs[1].root}), ${RUNS} runs`);
  const runs: RunFigures[] = [];
  for (let r = 1; r <= RUNS; r++) {
    await quietMoment();
    runs.push(await oneRun(python, bs, r));
  }
  const rows: string[] = [];
  const row = (label: string, s: Summary): string =>
    `| ${label} | ${fmtInt(s.newRaw)} | ${fmtInt(s.newRate)} | **${fmt(s.newRatio, 3)}** | ${fmtInt(s.oldRaw)} | ${fmtInt(s.oldRate)} | **${fmt(s.oldRatio, 3)}** | **${fmt(s.ratioOfRatios, 3)}** | ${fmt(s.poolVsPool, 3)} | ${fmt(s.rawVsRaw, 3)} | ${s.cpu.map((c) => fmt(c, 1)).join(' / ')} |`;
  const seqSummaries: Record<string, Summary[]> = Object.fromEntries(PLACEMENTS.map((p) => [p, []]));
  const pipeSummaries: Summary[] = [];
  runs.forEach((run, k) => {
    for (const p of PLACEMENTS) {
      const s = summarize(run.seq.used.map((g) => g[p]!));
      seqSummaries[p].push(s);
      rows.push(row(`run ${k + 1}, a. one at a time, ${p}`, s));
    }
    const s = summarize(run.pipe.used);
    pipeSummaries.push(s);
    rows.push(row(`run ${k + 1}, b. 64 in flight, unpinned`, s));
  });
  const over = (ss: Summary[], k: keyof Omit<Summary, 'perRound' | 'cpu'>): number => median(ss.map((s) => s[k]));
  const overall = (ss: Summary[]): Summary => ({
    newRate: over(ss, 'newRate'),
    newRaw: over(ss, 'newRaw'),
    oldRate: over(ss, 'oldRate'),
    oldRaw: over(ss, 'oldRaw'),
    newRatio: over(ss, 'newRatio'),
    oldRatio: over(ss, 'oldRatio'),
    ratioOfRatios: over(ss, 'ratioOfRatios'),
    perRound: ss.flatMap((s) => s.perRound),
    poolVsPool: over(ss, 'poolVsPool'),
    rawVsRaw: over(ss, 'rawVsRaw'),
    cpu: [0, 1, 2, 3].map((i) => median(ss.map((s) => s.cpu[i]))) as Four,
  });
  const seqJudged = overall(seqSummaries[JUDGED]);
  const pipeAll = overall(pipeSummaries);
  const date = new Date().toISOString().slice(0, 10);
  const minutes = (performance.now() - started) / 60_000;
  const md = [
    '## Reshaped pool vs pre-reshape pool (bench/compare-refs.ts)',
    '',
    `Not part of \`npm run bench\` (it needs a second tree). Run on ${date} (${fmt(minutes, 1)} min): \`node --import tsx bench/compare-refs.ts --runs ${RUNS} --write\` with the reshaped build (\`${bs[0].commit}\`, this tree's \`dist/\`, \`npm run build\`) and the pre-reshape build (\`${bs[1].commit}\`, the parent of the reshape, 1874186: \`git worktree add --detach /tmp/pre 838536a\`, its own \`npx tsc -p tsconfig.build.json\` against a symlink to this tree's node_modules), both loaded into one Node process. Each build runs against its own raw baseline: its own Python runtime (\`python/\` of its tree) spawned as its pool spawns it and driven by hand (\`bench/raw.ts\`), so each pool/raw ratio is what that build's Node side keeps of its own runtime's speed. ${RUNS} runs, each with fresh processes; within a run the four variants (reshaped raw, reshaped pool, pre-reshape raw, pre-reshape pool) are interleaved in a rotated order, round after round: section a's loop (\`add\`, 1,000 calls one at a time per variant, one worker), in every CPU placement in each round (see "CPU placement"); section b's (10,000 calls, 64 in flight, \`pipelineDepth: 64\`, one worker, unpinned). The "ratio of ratios" is the median over rounds of (reshaped pool / reshaped raw) / (pre-reshape pool / pre-reshape raw) in the same round; "pool vs pool" is reshaped pool / pre-reshape pool in the same round, and "raw vs raw" the same for the two runtimes. The last column is this Node process's CPU time per call in each variant (steadier than wall time on a busy machine: the pools' own work, without the waits).`,
    '',
    '| run, section, placement | reshaped raw calls/s | reshaped pool calls/s | reshaped pool/raw | pre-reshape raw | pre-reshape pool | pre-reshape pool/raw | ratio of ratios | pool vs pool | raw vs raw | Node CPU µs per call: reshaped raw / pool, pre-reshape raw / pool |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows,
    ...PLACEMENTS.map((p) => row(`**all runs (medians of the runs), a. one at a time, ${p}**`, overall(seqSummaries[p]))),
    row('**all runs (medians of the runs), b. 64 in flight, unpinned**', pipeAll),
    '',
    ...runs.flatMap((run, k) => [`Run ${k + 1}: a. ${roundsNote(run.seq)} b. ${roundsNote(run.pipe)}`, '']),
    `Ratio of ratios per round, all runs: a. (${JUDGED}) ${spread(seqJudged.perRound, 3)}; b. ${spread(pipeAll.perRound, 3)}.`,
    '',
    `Issue target: the sequential and pipelined ratios within 5% of before the reshaping. Judged as ratio of ratios >= 0.95 (not more than 5% below), the sequential one in the placement section a judges (${JUDGED}): a. **${fmt(seqJudged.ratioOfRatios, 3)}** (reshaped pool/raw ${fmt(seqJudged.newRatio, 3)} vs pre-reshape ${fmt(seqJudged.oldRatio, 3)}) ${seqJudged.ratioOfRatios >= 0.95 ? '**pass**' : '**FAIL**'}; b. **${fmt(pipeAll.ratioOfRatios, 3)}** (reshaped ${fmt(pipeAll.newRatio, 3)} vs pre-reshape ${fmt(pipeAll.oldRatio, 3)}) ${pipeAll.ratioOfRatios >= 0.95 ? '**pass**' : '**FAIL**'}.`,
    '',
    `<!-- compare-refs: ${JSON.stringify({ date, seq: Number(seqJudged.ratioOfRatios.toFixed(4)), pipe: Number(pipeAll.ratioOfRatios.toFixed(4)) })} -->`,
    '',
  ].join('\n');
  process.stdout.write(md);
  if (WRITE) writeFileSync(OUT, md);
}

await main();
