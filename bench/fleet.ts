/**
 * g. A fleet on NATS, against baselines measured in the same run on loopback: raw NATS
 * request-reply between two Node processes (one in flight, 64 in flight), the local pool, and
 * JetStream KV put + get of 10 KiB. Then fleet.execute through one `pyfleet host` (one worker,
 * pipelineDepth 64), and 2 hosts vs 1 on a CPU-bound handler.
 *
 *   npm run build && node --import tsx bench/fleet.ts      (or BENCH_ONLY=g npm run bench)
 *
 * Targets: fleet p50 <= pool p50 + 1.5 x raw NATS p50; fleet 64-in-flight throughput >= 0.5 x
 * raw NATS 64-in-flight throughput. Variants run interleaved, round after round; figures are
 * medians over rounds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { createPool } from '../dist/pool/pool.js';
import { connectFleet, type Fleet } from '../dist/fleet/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MODULE = path.join(ROOT, 'examples/handlers.py');
const CLI = path.join(ROOT, 'dist/cli/main.js');
const ECHO = path.join(ROOT, 'bench/nats_echo.mjs');
const ARGS = { text: 'x'.repeat(60), n: 12345, ok: true }; // about 100 bytes of JSON each way
const ROUNDS = Number(process.env.BENCH_FLEET_ROUNDS ?? 5);
const SEQ = 2_000;
const PAR = 20_000;
const silent = { info() {}, warn() {}, error() {}, debug() {} };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x: number, d = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function waitLine(c: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = c[stream]!;
    s.setEncoding('utf8');
    const t = setTimeout(() => reject(new Error(`not ready: ${buf}`)), 30_000);
    s.on('data', (d: string) => {
      buf += d;
      if (re.test(buf)) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

async function seqP50(n: number, call: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 200; i++) await call();
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    lat[i] = performance.now() - t;
  }
  return median(Array.from(lat)) * 1000;
}

async function throughput(n: number, inflight: number, call: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next++ < n) await call();
    }),
  );
  return n / ((performance.now() - t) / 1000);
}

export async function benchFleet(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-bench-nats-'));
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const server = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitLine(server, 'stderr', /Server is ready/);
  const children: ChildProcess[] = [];
  const host = (fleet: string, extra: string[]): Promise<void> => {
    const c = spawn(process.execPath, [CLI, 'host', '--module', MODULE, '--nats', url, '--fleet', fleet, '--log-level', 'error', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(c);
    return waitLine(c, 'stdout', /ready/);
  };
  let nc: NatsConnection | null = null;
  const fleets: Fleet[] = [];
  try {
    const echo = spawn(process.execPath, [ECHO, url, 'bench.echo'], { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT });
    children.push(echo);
    await waitLine(echo, 'stdout', /ready/);
    await host('bench', ['--workers', '1', '--pipeline-depth', '64', '--max-queue', '10000']);
    nc = await connect({ servers: url });
    const c = nc;
    const payload = new TextEncoder().encode(JSON.stringify(ARGS));
    const raw = (): Promise<unknown> => c.request('bench.echo', payload, { timeout: 5_000 });
    const pool = await createPool({ module: MODULE, workers: 1, pipelineDepth: 64, maxQueue: 10_000, logger: silent });
    const fleet = await connectFleet({ servers: url, fleet: 'bench' });
    fleets.push(fleet);
    await fleet.ready();
    const kv = await new Kvm(c).create('bench_kv');
    const tenK = new Uint8Array(10 * 1024).fill(7);
    let k = 0;
    const kvPutGet = async (): Promise<void> => {
      const key = `k${k++ % 100}`;
      await kv.put(key, tenK);
      await kv.get(key);
    };

    const r = { raw1: [] as number[], pool1: [] as number[], fleet1: [] as number[], raw64: [] as number[], pool64: [] as number[], fleet64: [] as number[], kv: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      r.raw1.push(await seqP50(SEQ, raw));
      r.pool1.push(await seqP50(SEQ, () => pool.execute('echo', ARGS)));
      r.fleet1.push(await seqP50(SEQ, () => fleet.execute('echo', ARGS)));
      r.raw64.push(await throughput(PAR, 64, raw));
      r.pool64.push(await throughput(PAR, 64, () => pool.execute('echo', ARGS)));
      r.fleet64.push(await throughput(PAR, 64, () => fleet.execute('echo', ARGS)));
      r.kv.push(await seqP50(500, kvPutGet));
    }
    await pool.close();
    const m = Object.fromEntries(Object.entries(r).map(([key, v]) => [key, median(v)])) as Record<keyof typeof r, number>;

    // CPU-bound: 2 hosts vs 1, one worker each, 4 calls in flight.
    await Promise.all([host('cpu1', ['--workers', '1']), host('cpu2', ['--workers', '1']), host('cpu2', ['--workers', '1'])]);
    const f1 = await connectFleet({ servers: url, fleet: 'cpu1' });
    const f2 = await connectFleet({ servers: url, fleet: 'cpu2' });
    fleets.push(f1, f2);
    await f1.ready({ hosts: 1 });
    await f2.ready({ hosts: 2 });
    const t0 = performance.now();
    await f1.execute('primes', { n: 20_000 });
    const oneMs = performance.now() - t0;
    const cpu1: number[] = [];
    const cpu2: number[] = [];
    for (let round = 0; round < 3; round++) {
      cpu1.push(await throughput(100, 4, () => f1.execute('primes', { n: 20_000 })));
      cpu2.push(await throughput(100, 4, () => f2.execute('primes', { n: 20_000 })));
    }
    const c1 = median(cpu1);
    const c2 = median(cpu2);

    const latTarget = m.pool1 + 1.5 * m.raw1;
    const thrTarget = 0.5 * m.raw64;
    const met = (ok: boolean): string => (ok ? 'met' : '**NOT MET**');
    return [
      '## g. A fleet on NATS (loopback, one nats-server, hosts are separate `pyfleet host` processes)',
      '',
      `nats-server ${c.info?.version ?? '?'}, @nats-io/transport-node 3.4.0; about 100 bytes of JSON each way (\`echo\`); ${ROUNDS} interleaved rounds, medians. One host: 1 worker, \`--pipeline-depth 64\`.`,
      '',
      '| | one in flight, p50 | 64 in flight |',
      '|---|---:|---:|',
      `| raw NATS request-reply, two Node processes | ${fmt(m.raw1)} us | ${fmt(m.raw64)} req/s |`,
      `| local pool (\`pool.execute\`, 1 worker, pipelineDepth 64) | ${fmt(m.pool1)} us | ${fmt(m.pool64)} calls/s |`,
      `| \`fleet.execute\` through one host | ${fmt(m.fleet1)} us | ${fmt(m.fleet64)} calls/s |`,
      `| JetStream KV put + get, 10 KiB | ${fmt(m.kv)} us | |`,
      '',
      `- Latency target: fleet p50 <= pool p50 + 1.5 x raw NATS p50 = ${fmt(latTarget)} us; measured ${fmt(m.fleet1)} us: ${met(m.fleet1 <= latTarget)}.`,
      `- Throughput target: fleet >= 0.5 x raw NATS at 64 in flight = ${fmt(thrTarget)} calls/s; measured ${fmt(m.fleet64)} calls/s (${fmt(m.fleet64 / m.raw64, 2)} x): ${met(m.fleet64 >= thrTarget)}.`,
      `- CPU-bound (\`primes\` n=20000, ${fmt(oneMs, 1)} ms alone), 4 in flight, one worker per host: 1 host ${fmt(c1, 1)} calls/s, 2 hosts ${fmt(c2, 1)} calls/s (${fmt(c2 / c1, 2)} x). On this 2-core machine the client, the server, the hosts and their workers share the 2 cores: reported, not chased.`,
      '',
    ].join('\n');
  } finally {
    for (const f of fleets) await f.close().catch(() => {});
    await nc?.close().catch(() => {});
    for (const ch of children) ch.kill('SIGTERM');
    await Promise.all(children.map((ch) => new Promise((res) => (ch.exitCode !== null ? res(null) : ch.once('exit', res)))));
    server.kill('SIGTERM');
    await new Promise((res) => server.once('exit', res));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(`${await benchFleet()}\n`);
}
