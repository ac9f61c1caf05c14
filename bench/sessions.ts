/**
 * l. Durable sessions: what a call costs with the default memory store (and the file store)
 * against the same call with `sessionStore: false`, by what the session holds and what the call
 * does to it; a DataFrame and a fitted RandomForest in the session (Debian's /usr/bin/python3,
 * with pandas and sklearn); restoring a 10 MiB session after a SIGKILL; and a fleet of durable
 * hosts (JetStream KV) against its baselines. Handlers: bench/sessions_handlers.py.
 *
 *   BENCH_ONLY=l npm run bench
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { connectFleet, type Fleet } from '../dist/fleet/index.js';
import { createPool, type Pool } from '../dist/pool/pool.js';
import type { PoolOptions } from '../dist/pool/options.js';
import { fileSessionStore } from '../dist/sessions/file-store.js';
import { callLoop } from './loops.js';
import { JUDGED, dist, fmt, fmtInt, homeCpu, log, median, pass, place, roundsNote, runRounds, silent, spread, targets, until, withCpus, type Rounds } from './common.js';

const MODULE = fileURLToPath(new URL('./sessions_handlers.py', import.meta.url));
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const ECHO = fileURLToPath(new URL('./nats_echo.mjs', import.meta.url));
const DEBIAN = '/usr/bin/python3';
const KEEP = 40;
const item = (i: number): string => `item-${String(i).padStart(8, '0')}-abcdef`;
const MB = 1024 * 1024;

interface Variant {
  /** The pool it runs on, and the one it is compared with (sessionStore: false). */
  pool: Pool;
  against: string | null;
  n: number;
  run: () => Promise<{ ms: number }>;
}
type Sample = Record<string, { us: number; node: number; py: number }>;

async function measured(names: string[], variants: Record<string, Variant>, want: number, maxMs: number): Promise<Rounds<Sample>> {
  return runRounds(want, 2 * want, maxMs, async (r) => {
    const got: Sample = {};
    for (let k = 0; k < names.length; k++) {
      const n = names[(k + r) % names.length];
      const v = variants[n];
      const res = await withCpus(v.pool.pids(), v.run);
      got[n] = { us: (res.ms * 1000) / v.n, node: res.nodeUs / v.n, py: res.pyUs / v.n };
    }
    return got;
  });
}

/** The table of a set of variants, each beside the variant it is compared with. */
function table(rounds: Rounds<Sample>, variants: Record<string, Variant>): { rows: string[]; ratio: (n: string, k?: 'us' | 'cpu') => number[] } {
  const ratio = (n: string, k: 'us' | 'cpu' = 'us'): number[] => {
    const a = variants[n].against!;
    return rounds.used.map((g) => (k === 'us' ? g[n].us / g[a].us : (g[n].node + g[n].py) / (g[a].node + g[a].py)));
  };
  const m = (n: string, k: 'us' | 'node' | 'py'): number => median(rounds.used.map((g) => g[n][k]));
  const rows = Object.keys(variants).map((n) => {
    const v = variants[n];
    const base = v.against === null;
    return `| ${n} | ${fmt(m(n, 'us'), 1)} | ${fmt(m(n, 'node'), 1)} | ${fmt(m(n, 'py'), 1)} | ${base ? '' : fmt(median(ratio(n)), 2)} | ${base ? '' : fmt(median(ratio(n, 'cpu')), 2)} | ${base ? '' : spread(ratio(n), 2)} |`;
  });
  return { rows, ratio };
}

const HEAD = ['| variant | µs per call | Node CPU µs | Python CPU µs | latency vs sessionStore false | CPU vs sessionStore false | latency ratio per round |', '|---|---:|---:|---:|---:|---:|---|'];

function hasLibraries(): string | null {
  const r = spawnSync(DEBIAN, ['-c', 'import pandas, sklearn'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${DEBIAN} cannot import pandas and sklearn (${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)})`;
}

export async function benchSessions(python: string): Promise<string> {
  log(`l. durable sessions: per-call cost by what the session holds (${JUDGED}), DataFrame and RandomForest, 10 MiB restore, a durable fleet`);
  const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-bench-sessions-'));
  const pools: Pool[] = [];
  const open = async (o: Partial<PoolOptions>): Promise<Pool> => {
    const p = await createPool({ module: MODULE, python, logger: silent, workers: 1, ...o });
    pools.push(p);
    return p;
  };
  const out: string[] = ['## l. Durable sessions', ''];
  try {
    out.push(...(await perCall(open, dir)));
    out.push(...(await libraries(open)));
    place('unpinned', pools.flatMap((p) => p.pids()));
    out.push(...(await restore(open)));
    out.push(...(await fleet(python)));
  } finally {
    place('unpinned', pools.flatMap((p) => p.pids()));
    for (const p of pools) await p.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out.join('\n');
}

type Open = (o: Partial<PoolOptions>) => Promise<Pool>;

async function perCall(open: Open, dir: string): Promise<string[]> {
  const N = 1000;
  const mem = await open({});
  const off = await open({ sessionStore: false });
  const off2 = await open({ sessionStore: false });
  const file = await open({ sessionStore: fileSessionStore(path.join(dir, 'plain')), sessionKey: 'bench' });
  const fsync = await open({ sessionStore: fileSessionStore(path.join(dir, 'fsync'), { fsync: true }), sessionKey: 'bench' });
  let seq = 0;
  const append = () => ({ item: item(++seq), keep: KEEP });
  const sizes = [1, 10, 15];
  for (const p of [mem, off]) {
    await p.execute('neighbours', {}, { sessionId: 'nb' });
    for (const mb of sizes) await p.execute('fill', { blob: (mb * MB) / 2, rows: Math.round((mb * MB) / 2 / 62) }, { sessionId: `size${mb}` });
  }
  const durable = mem.stats().sessions.durable;
  if (durable !== 1 + sizes.length) throw new Error(`the memory store holds ${durable} sessions, not ${1 + sizes.length}: one is over maxSessionBytes`);
  const v: Record<string, Variant> = {};
  const add = (name: string, pool: Pool, against: string | null, n: number, command: string, args: (i: number) => unknown, sessionId?: string): void => {
    v[name] = { pool, against, n, run: () => callLoop(pool, n, command, args, sessionId === undefined ? undefined : { sessionId }) };
  };
  add('add, sessionStore false', off, null, N, 'add', (i) => ({ a: i, b: 1 }));
  add('add, memory store', mem, 'add, sessionStore false', N, 'add', (i) => ({ a: i, b: 1 }));
  add('add, sessionStore false, another pool (A/A control)', off2, 'add, sessionStore false', N, 'add', (i) => ({ a: i, b: 1 }));
  add('add in a session, sessionStore false', off, null, N, 'add', (i) => ({ a: i, b: 1 }), 'quiet');
  add('add in a session, memory store', mem, 'add in a session, sessionStore false', N, 'add', (i) => ({ a: i, b: 1 }), 'quiet');
  add('append to ~1 KB, sessionStore false', off, null, N, 'append', append, 's');
  add('append to ~1 KB, memory store', mem, 'append to ~1 KB, sessionStore false', N, 'append', append, 's');
  add('append to ~1 KB, file store', file, 'append to ~1 KB, sessionStore false', 200, 'append', append, 's');
  add('append to ~1 KB, file store with fsync', fsync, 'append to ~1 KB, sessionStore false', 100, 'append', append, 's');
  add('small key beside 10 MiB bytes + 2 MiB list, sessionStore false', off, null, N, 'set_small', (i) => ({ i }), 'nb');
  add('small key beside 10 MiB bytes + 2 MiB list, memory store', mem, 'small key beside 10 MiB bytes + 2 MiB list, sessionStore false', N, 'set_small', (i) => ({ i }), 'nb');
  for (const mb of sizes) {
    add(`count calls in a ${mb} MB session, sessionStore false`, off, null, N, 'touch', () => ({}), `size${mb}`);
    add(`count calls in a ${mb} MB session, memory store`, mem, `count calls in a ${mb} MB session, sessionStore false`, N, 'touch', () => ({}), `size${mb}`);
  }
  const names = Object.keys(v);
  for (const n of names) await v[n].run(); // warm-up: every append session is ~1 KB from here on
  place(JUDGED, pools(v));
  const rounds = await measured(names, v, 15, 60_000);
  place('unpinned', pools(v));
  const { rows, ratio } = table(rounds, v);
  const untouched = Math.max(median(ratio('add, memory store')), median(ratio('add in a session, memory store')));
  const appendCpu = median(ratio('append to ~1 KB, memory store', 'cpu'));
  const beside = median(ratio('small key beside 10 MiB bytes + 2 MiB list, memory store'));
  const aa = median(ratio('add, sessionStore false, another pool (A/A control)'));
  const where = JUDGED === 'one core' ? `Node and the workers on CPU ${homeCpu()}` : 'unpinned';
  targets.push({ name: 'l. a call that does not touch ctx.session (no session / in a session), memory store vs sessionStore false', value: `${fmt(median(ratio('add, memory store')), 3)} / ${fmt(median(ratio('add in a session, memory store')), 3)}`, target: '<= 1.05', ok: untouched <= 1.05 });
  targets.push({ name: 'l. append one item to a ~1 KB session, Node + Python CPU per call, memory store vs sessionStore false', value: `${fmt(appendCpu)}x`, target: '<= 1.5x', ok: appendCpu <= 1.5 });
  targets.push({ name: 'l. set one small key beside 10 MiB bytes + a 2 MiB list, memory store vs sessionStore false (latency)', value: `${fmt(beside)}x`, target: '<= 1.5x', ok: beside <= 1.5 });
  return [
    `### Per call, by what the session holds`,
    '',
    `One worker per pool, ${where}; variants interleaved round after round (the order rotates), ${fmtInt(N)} calls one at a time per variant (200 with the file store, 100 with fsync), after a warm-up. \`add\` never reads \`ctx.session\`; \`append\` adds one ~24-byte string to the session's list and keeps its last ${KEEP} (one key, about 1 KB pickled); \`set_small\` sets an int key in a session that also holds a 10 MiB \`bytes\` value and a list of 150,000 short strings (about 2 MiB pickled); \`touch\` counts calls (\`s["n"] = s.get("n", 0) + 1\`, the \`big\` call of 9af47d2) in a session that also holds half its size in \`os.urandom\` bytes and half in a list of small dicts. CPU is Node's and the worker's, per call. ${roundsNote(rounds)}`,
    '',
    ...HEAD,
    ...rows,
    '',
    `A call that does not touch the session: **${fmt(median(ratio('add, memory store')), 3)}** without a session, **${fmt(median(ratio('add in a session, memory store')), 3)}** in one (target <= 1.05) ${pass(untouched <= 1.05)}; the A/A control (two pools without a store) gives ${fmt(aa, 3)}, what noise alone does here. Appending to a ~1 KB session: **${fmt(appendCpu)}x** in Node + Python CPU (target <= 1.5x) ${pass(appendCpu <= 1.5)}, ${fmt(median(ratio('append to ~1 KB, memory store')))}x in latency. A small key beside 12 MiB of other keys: **${fmt(beside)}x** (target <= 1.5x) ${pass(beside <= 1.5)}.`,
    '',
  ];
}

const pools = (v: Record<string, Variant>): number[] => [...new Set(Object.values(v).map((x) => x.pool))].flatMap((p) => p.pids());

async function libraries(open: Open): Promise<string[]> {
  const missing = hasLibraries();
  if (missing !== null) {
    log(`l. DataFrame and RandomForest skipped: ${missing}`);
    targets.push({ name: 'l. session="read" of a 15 MB DataFrame vs sessionStore false', value: 'skipped', target: '<= 1.1x', ok: false });
    return ['### A DataFrame and a model in the session', '', `Skipped: ${missing}.`, ''];
  }
  const mem = await open({ python: DEBIAN });
  const off = await open({ python: DEBIAN, sessionStore: false });
  let modelBytes = 0;
  let dfBytes = 0;
  for (const p of [mem, off]) {
    dfBytes = await p.execute<number>('df_fill', { bytes: 15 * MB }, { sessionId: 'df' });
    modelBytes = await p.execute<number>('rf_fit', { trees: 100 }, { sessionId: 'rf' });
  }
  const v: Record<string, Variant> = {};
  const add = (name: string, pool: Pool, against: string | null, n: number, command: string, sessionId: string): void => {
    v[name] = { pool, against, n, run: () => callLoop(pool, n, command, () => ({}), { sessionId }) };
  };
  const F = 'sessionStore false';
  add(`DataFrame, session="read", ${F}`, off, null, 300, 'df_read', 'df');
  add('DataFrame, session="read", memory store', mem, `DataFrame, session="read", ${F}`, 300, 'df_read', 'df');
  add('DataFrame, read with ctx.session.peek in a rw command, memory store', mem, `DataFrame, session="read", ${F}`, 300, 'df_peek', 'df');
  add(`DataFrame, read with [] in a rw command, ${F}`, off, null, 300, 'df_get', 'df');
  add('DataFrame, read with [] in a rw command, memory store (stored again)', mem, `DataFrame, read with [] in a rw command, ${F}`, 10, 'df_get', 'df');
  add(`RandomForest predict, session="read", ${F}`, off, null, 50, 'rf_read', 'rf');
  add('RandomForest predict, session="read", memory store', mem, `RandomForest predict, session="read", ${F}`, 50, 'rf_read', 'rf');
  add('RandomForest predict, peek in a rw command, memory store', mem, `RandomForest predict, session="read", ${F}`, 50, 'rf_peek', 'rf');
  add(`RandomForest predict, [] in a rw command, ${F}`, off, null, 50, 'rf_get', 'rf');
  add('RandomForest predict, [] in a rw command, memory store (stored again)', mem, `RandomForest predict, [] in a rw command, ${F}`, 30, 'rf_get', 'rf');
  const names = Object.keys(v);
  for (const n of names) await v[n].run();
  place(JUDGED, pools(v));
  const rounds = await measured(names, v, 9, 60_000);
  place('unpinned', pools(v));
  const { rows, ratio } = table(rounds, v);
  const read = median(ratio('DataFrame, session="read", memory store'));
  targets.push({ name: 'l. session="read" of a 15 MB DataFrame, memory store vs sessionStore false', value: `${fmt(read, 3)}x`, target: '<= 1.1x', ok: read <= 1.1 });
  return [
    '### A DataFrame and a model in the session',
    '',
    `${DEBIAN} (pandas, sklearn), one worker per pool, the same placement and rounds as above. The session \`df\` holds a DataFrame of two float64 columns, ${fmtInt(dfBytes)} bytes; the session \`rf\` a RandomForestClassifier (100 trees, 20 features) whose pickle is ${fmtInt(modelBytes)} bytes, and one row to predict. Each call reads one value of the DataFrame, or predicts that row. ${roundsNote(rounds)}`,
    '',
    ...HEAD,
    ...rows,
    '',
    `A \`session="read"\` call reading the 15 MB DataFrame: **${fmt(read, 3)}x** (target <= 1.1x) ${pass(read <= 1.1)}. Read with \`[]\` in a command that may change the session, a mutable value is stored again after every call: that row is the cost \`session="read"\` and \`peek\` avoid.`,
    '',
  ];
}

async function restore(open: Open): Promise<string[]> {
  const ROUNDS = Number(process.env.BENCH_RESTORE_ROUNDS ?? 10);
  const two = await open({ workers: 2 });
  const events: number[] = [];
  two.on('session:restore', (e) => {
    if (e.ok) events.push(e.durationMs);
  });
  const s = two.session('blob');
  await s.execute('fill', { blob: 10 * MB, rows: 0 });
  const timed = async (): Promise<number> => {
    const t0 = performance.now();
    await s.execute('touch', {});
    return performance.now() - t0;
  };
  const normal: number[] = [];
  const first: number[] = [];
  const alone: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    await until(() => two.stats().workers.filter((w) => w.state === 'ready').length === 2, 10_000, 'two ready workers');
    await timed();
    normal.push(await timed());
    const holder = two.stats().workers.find((w) => w.sessions > 0);
    if (holder === undefined) throw new Error('no worker holds the session');
    const exited = new Promise<void>((res) => {
      const off = two.on('worker:exit', (e) => {
        if (e.workerId === holder.id) {
          off();
          res();
        }
      });
    });
    process.kill(holder.pid!, 'SIGKILL');
    await exited;
    // The replacement is up before the timed call: its start-up is not the restore's cost.
    await until(() => two.stats().workers.filter((w) => w.state === 'ready').length === 2, 10_000, 'the replacement');
    const n0 = events.length;
    first.push(await timed());
    if (events.length !== n0 + 1) throw new Error('the first call after the death did not restore the session');
    alone.push(events[n0]);
  }
  const added = median(first) - median(normal);
  targets.push({ name: 'l. a session holding 10 MiB bytes: first call after SIGKILL minus a normal call (medians)', value: `${fmt(added, 1)} ms`, target: '<= 40 ms', ok: added <= 40 });
  return [
    '### Restoring 10 MiB after a SIGKILL',
    '',
    `Two workers, unpinned. The session holds a 10 MiB \`os.urandom\` value (a record kept apart) and a call counter; each of ${ROUNDS} rounds: a normal call (timed), SIGKILL of the session's worker, wait for the pool to see the death and for the replacement to be ready (its start-up is not counted), then the session's next call (timed): the host signs a manifest of the session's records, the new worker checks the manifest and the record's digest, then unpickles.`,
    '',
    '| | ms |',
    '|---|---:|',
    `| normal call of the session | ${dist(normal, 2)} |`,
    `| first call after the death (restore + call) | ${dist(first, 2)} |`,
    `| the restore alone (\`session:restore\` durationMs) | ${dist(alone, 2)} |`,
    '',
    `Added by the restore: **${fmt(added, 1)} ms** (median first call minus median normal call) (target <= 40 ms) ${pass(added <= 40)}.`,
    '',
  ];
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function ready(c: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`not ready: ${buf}`)), 30_000);
    c[stream]!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      if (re.test(buf)) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

async function p50(n: number, call: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 100; i++) await call();
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    lat.push(performance.now() - t);
  }
  return median(lat) * 1000;
}

async function fleet(python: string): Promise<string[]> {
  const ROUNDS = Number(process.env.BENCH_FLEET_ROUNDS ?? 5);
  const SEQ = 1000;
  const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-bench-sessions-nats-'));
  const url = `nats://127.0.0.1:${await freePort()}`;
  const children: ChildProcess[] = [];
  const server = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', url.split(':').at(-1)!, '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(server);
  let f: Fleet | null = null;
  let nc: Awaited<ReturnType<typeof connect>> | null = null;
  let pool: Pool | null = null;
  try {
    await ready(server, 'stderr', /Server is ready/);
    const echo = spawn(process.execPath, [ECHO, url, 'bench.echo'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(echo);
    await ready(echo, 'stdout', /ready/);
    const host = spawn(process.execPath, [CLI, 'host', '--module', MODULE, '--python', python, '--nats', url, '--fleet', 'sessions', '--workers', '1', '--session-store', 'nats', '--session-key', 'bench key', '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(host);
    await ready(host, 'stdout', /ready/);
    nc = await connect({ servers: url });
    const c = nc;
    f = await connectFleet({ servers: url, fleet: 'sessions' });
    await f.ready();
    pool = await createPool({ module: MODULE, python, logger: silent, workers: 1 });
    const kv = await new Kvm(c).create('bench_sessions_kv');
    const value = new Uint8Array(1200).fill(7); // about the size of the session's head entry
    const payload = new TextEncoder().encode(JSON.stringify({ item: item(0), keep: KEEP }));
    let seq = 0;
    const fl = f;
    const pl = pool;
    const r = { raw: [] as number[], kv: [] as number[], pool: [] as number[], fleet: [] as number[] };
    const variants: Array<[keyof typeof r, () => Promise<unknown>]> = [
      ['raw', () => c.request('bench.echo', payload, { timeout: 5_000 })],
      ['kv', () => kv.put('k', value)],
      ['pool', () => pl.execute('append', { item: item(++seq), keep: KEEP }, { sessionId: 'p' })],
      ['fleet', () => fl.execute('append', { item: item(++seq), keep: KEEP }, { sessionId: 'f' })],
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < variants.length; k++) {
        const [name, call] = variants[(k + round) % variants.length];
        r[name].push(await p50(SEQ, call));
      }
    }
    const m = Object.fromEntries(Object.entries(r).map(([k, xs]) => [k, median(xs)])) as Record<keyof typeof r, number>;
    const limit = m.pool + 1.5 * m.raw + m.kv;
    targets.push({ name: 'l. fleet of durable hosts (JetStream KV): append to a ~1 KB session, p50 vs pool + 1.5 x raw NATS request + raw KV put', value: `${fmtInt(m.fleet)} µs vs ${fmtInt(limit)} µs`, target: '<=', ok: m.fleet <= limit });
    const version = execFileSync('nats-server', ['--version'], { encoding: 'utf8' }).trim();
    return [
      '### A fleet of durable hosts',
      '',
      `${version}, loopback, unpinned; one \`pyfleet host\` process (1 worker, \`--session-store nats\`: natsSessionStore on JetStream KV) and a client in this process; the raw baselines measured in the same rounds: a NATS request answered by another Node process (bench/nats_echo.mjs) and a JetStream KV put of 1,200 bytes (about what a session's head entry holds here). ${ROUNDS} interleaved rounds of ${fmtInt(SEQ)} calls one at a time; the median of the rounds' p50.`,
      '',
      '| | p50 µs | per round |',
      '|---|---:|---|',
      ...(Object.keys(r) as Array<keyof typeof r>).map((k) => `| ${{ raw: 'raw NATS request-reply', kv: 'raw JetStream KV put', pool: 'pool (memory store): append to a ~1 KB session', fleet: 'fleet (durable hosts): the same call' }[k]} | ${fmtInt(m[k])} | ${r[k].map((x) => fmtInt(x)).join(', ')} |`),
      '',
      `Target: fleet p50 <= pool + 1.5 x raw request + KV put = ${fmtInt(m.pool)} + 1.5 x ${fmtInt(m.raw)} + ${fmtInt(m.kv)} = **${fmtInt(limit)} µs**; measured **${fmtInt(m.fleet)} µs** ${pass(m.fleet <= limit)}.`,
      '',
    ];
  } finally {
    await f?.close();
    await pool?.close();
    await nc?.close();
    for (const ch of children.reverse()) {
      ch.kill('SIGTERM');
      await new Promise((res) => (ch.exitCode !== null || ch.signalCode !== null ? res(null) : ch.once('exit', res)));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
