/**
 * Chaos across hosts (`pyfleet chaos --fleet`): a nats-server and N `pyfleet host` processes on
 * this machine, the chaos workload (examples/chaos_handlers.py) sent through connectFleet, a host
 * SIGKILLed and a new one started every few seconds, and the same invariant report as the
 * single-pool chaos: nothing lost, nothing answered twice, no duplicate side effect, no orphan.
 * The hosts run with durable sessions (natsSessionStore, one key) unless told otherwise: then no
 * session may be lost either, and none may come back empty, older, or with another's state.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { auditLedger, reap } from './ledger.js';
import { ChaosMix, type KindTally, type NewerKind } from './mix.js';
import { seededRandom } from '../../pool/chaos.js';
import { exampleFile } from '../paths.js';
import { isAlive, scanWorkersOf } from './processes.js';
import { neverInvariants, zero, type Invariant } from './invariants.js';
import { runWorkload } from '../workload.js';
import { table } from '../stats.js';
import { connectFleet, type Fleet } from '../../fleet/client.js';

export interface FleetChaosOptions {
  durationS: number;
  hosts: number;
  workers: number;
  killEveryS: number;
  seed: number;
  rate: number;
  concurrency: number;
  idempotentShare: number;
  sessions: number;
  sessionShare: number;
  minSuccessRate: number;
  drainTimeoutMs: number;
  /** Hosts with --session-store nats (default true); false: sessions die with their host. */
  durableSessions?: boolean;
  /** Shares of session-less calls for the newer kinds (async, threaded, streams, binary), as in the pool chaos. */
  kinds?: Partial<Record<NewerKind, number>>;
  onLine?(line: string): void;
  signal?: AbortSignal;
}

export interface FleetChaosReport {
  ok: boolean;
  seed: number;
  durationS: number;
  hosts: number;
  workers: number;
  killEveryS: number;
  rate: number;
  concurrency: number;
  sent: number;
  succeeded: number;
  failed: number;
  failedByCode: Record<string, number>;
  hostsKilled: number;
  hostsStarted: number;
  idempotent: { calls: number; succeeded: number };
  idempotentSuccessRate: number;
  nonIdempotent: { calls: number; succeeded: number; failed: number; failedButRan: number };
  session: { calls: number; succeeded: number; lost: number; reopened: number };
  durableSessions: boolean;
  /** Sessions restored from their snapshots, as the hosts' last heartbeats counted them (a killed host's last count included). */
  sessionsRestored: number;
  lost: number;
  answeredTwice: number;
  settledTwice: number;
  duplicateSideEffects: number;
  missingSideEffects: number;
  ranButReportedNotTaken: number;
  ledgerCorruptLines: number;
  wrongAnswers: number;
  sessionStateErrors: number;
  nonPoolErrors: number;
  streamBrokenMislabelled: number;
  kinds: Record<NewerKind, KindTally>;
  streams: { items: number; complete: number; failedAfterItems: number; broken: number };
  orphans: number;
  orphanPids: number[];
  retries: number;
  latencyMs: { p50: number; p99: number; max: number };
  invariants: Invariant[];
}


async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function waitForLine(child: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp, ms: number, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`${what} not ready within ${ms} ms: ${buf.slice(-500)}`)), ms);
    const s = child[stream]!;
    s.setEncoding('utf8');
    const on = (d: string): void => {
      buf += d;
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        s.off('data', on);
        s.resume();
        resolve(m);
      }
    };
    s.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited (${code}) before it was ready: ${buf.slice(-500)}`));
    });
  });
}

export async function runFleetChaos(o: FleetChaosOptions): Promise<FleetChaosReport> {
  const rnd = seededRandom((o.seed ^ 0x2545f491) >>> 0);
  const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-fleet-chaos-'));
  const ledger = path.join(dir, 'ledger.txt');
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const server = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', path.join(dir, 'js')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const serverUp = waitForLine(server, 'stderr', /Server is ready/, 10_000, 'nats-server');
  server.on('error', () => {});
  await serverUp;
  const fleetName = `chaos${process.pid}`;
  const durable = o.durableSessions ?? true;
  const sessionArgs = durable ? ['--session-store', 'nats', '--session-key', randomBytes(32).toString('hex')] : ['--session-store', 'memory'];
  const restoredBy = new Map<string, number>();
  const hosts = new Set<ChildProcess>();
  const hostPids = new Set<number>();
  let hostsStarted = 0;
  let hostsKilled = 0;
  const startHost = async (): Promise<void> => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, process.argv[1], 'host', '--module', exampleFile('chaos_handlers.py'), '--nats', url, '--fleet', fleetName, '--workers', String(o.workers), '--heartbeat', '250', '--timeout', '3000', '--log-level', 'error', ...sessionArgs],
      { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, PYFLEET_CHAOS_LEDGER: ledger } },
    );
    hosts.add(child);
    hostPids.add(child.pid!);
    child.once('exit', () => hosts.delete(child));
    await waitForLine(child, 'stdout', /ready/, 30_000, 'pyfleet host');
    hostsStarted++;
  };
  let fleet: Fleet | null = null;
  try {
    await Promise.all(Array.from({ length: o.hosts }, () => startHost()));
    fleet = await connectFleet({ servers: url, fleet: fleetName, requestTimeoutMs: 3_000, queueTimeoutMs: 8_000 });
    await fleet.ready({ hosts: o.hosts, timeoutMs: 10_000 });
    const f = fleet;

    const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
    const mix = new ChaosMix({ target: f, runId, sessions: o.sessions, sessionShare: o.sessionShare, idempotentShare: o.idempotentShare, rnd, ...(o.kinds !== undefined ? { kinds: o.kinds } : {}) });
    const { failedByCode, idem, nonIdem, sess } = mix;

    // The killer: every killEveryS, SIGKILL a random host and start a new one.
    let killing = true;
    const killer = (async () => {
      while (killing) {
        await new Promise((r) => setTimeout(r, o.killEveryS * 1000));
        if (!killing) break;
        const list = [...hosts];
        if (list.length === 0) continue;
        const victim = list[Math.floor(rnd() * list.length)];
        victim.kill('SIGKILL');
        hostsKilled++;
        o.onLine?.(`killed host pid ${victim.pid} (SIGKILL); starting another`);
        await startHost().catch((e: unknown) => o.onLine?.(`a host did not start: ${(e as Error).message}`));
      }
    })();

    const result = await runWorkload({
      durationMs: o.durationS * 1000,
      rate: o.rate,
      concurrency: o.concurrency,
      drainTimeoutMs: o.drainTimeoutMs,
      next: mix.next,
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
      onTick: (st) => {
        for (const h of f.stats().hosts) restoredBy.set(h.id, Math.max(restoredBy.get(h.id) ?? 0, h.pool.sessions.restored));
        if (Math.floor(st.elapsedMs / 5000) !== Math.floor((st.elapsedMs - 100) / 5000)) o.onLine?.(`${(st.elapsedMs / 1000).toFixed(0)} s: sent ${st.sent}, ok ${st.succeeded}, failed ${st.failed}, in flight ${st.inFlight}, hosts killed ${hostsKilled}`);
      },
    });
    killing = false;
    await killer;
    // Answers seen twice, counted where they arrive (the driver's callbacks); the client's own count
    // of second settlements of a send, which it refused, is checked as well.
    const answeredTwice = result.answeredTwice;
    const settledTwice = fleet.stats().calls.settledTwice;
    const retries = f.stats().calls.retries;
    await f.close();
    fleet = null;
    // Hosts leave cleanly (SIGTERM drains them); then nothing of theirs may be left.
    for (const h of hosts) h.kill('SIGTERM');
    await Promise.all([...hosts].map((h) => new Promise((r) => (h.exitCode !== null || h.signalCode !== null ? r(null) : h.once('exit', r)))));
    let orphanPids: number[] = [];
    for (let i = 0; i < 30; i++) {
      orphanPids = [...hostPids].flatMap((p) => scanWorkersOf(p)).concat([...hostPids].filter((p) => isAlive(p)));
      if (orphanPids.length === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    reap(orphanPids);

    const audit = auditLedger(ledger, { sent: mix.tokensSent, succeeded: mix.tokensSucceeded, failed: mix.tokensFailed });
    const { duplicateSideEffects, missingSideEffects, failedButRan, ranButReportedNotTaken, ledgerCorruptLines } = audit;
    const rate = idem.calls === 0 ? 1 : idem.succeeded / idem.calls;
    const invariants: Invariant[] = [
      ...neverInvariants({ lost: result.lost, answeredTwice, settledTwice, audit, mix, orphans: orphanPids.length }),
      // Durable sessions: a host's death is no reason to lose one.
      ...(durable ? [zero('sessionsLost', sess.lost)] : []),
      { name: 'idempotentSuccessRate', ok: rate >= o.minSuccessRate, value: Math.floor(rate * 10_000) / 10_000, expected: `>= ${o.minSuccessRate}` },
    ];
    return {
      ok: invariants.every((i) => i.ok),
      seed: o.seed,
      durationS: Math.round(result.sendingMs / 100) / 10,
      hosts: o.hosts,
      workers: o.workers,
      killEveryS: o.killEveryS,
      rate: o.rate,
      concurrency: o.concurrency,
      sent: result.sent,
      succeeded: result.succeeded,
      failed: result.failed,
      failedByCode,
      hostsKilled,
      hostsStarted,
      idempotent: idem,
      idempotentSuccessRate: Math.floor(rate * 10_000) / 10_000,
      nonIdempotent: { ...nonIdem, failedButRan },
      session: sess,
      durableSessions: durable,
      sessionsRestored: [...restoredBy.values()].reduce((a, b) => a + b, 0),
      lost: result.lost,
      answeredTwice,
      settledTwice,
      duplicateSideEffects,
      missingSideEffects,
      ranButReportedNotTaken,
      ledgerCorruptLines,
      wrongAnswers: mix.wrongAnswers,
      sessionStateErrors: mix.sessionStateErrors,
      nonPoolErrors: mix.nonPoolErrors,
      streamBrokenMislabelled: mix.streamBrokenMislabelled,
      kinds: mix.kinds,
      streams: mix.streamStats,
      orphans: orphanPids.length,
      orphanPids,
      retries,
      latencyMs: result.latencies.summary(),
      invariants,
    };
  } finally {
    await fleet?.close().catch(() => {});
    for (const h of hosts) h.kill('SIGKILL');
    server.kill('SIGTERM');
    await new Promise((r) => (server.exitCode !== null ? r(null) : server.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

export function renderFleetReport(r: FleetChaosReport): string {
  const kv = (o: Record<string, number>): string => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const out = [
    `pyfleet chaos --fleet: ${r.durationS} s, ${r.hosts} hosts x ${r.workers} workers, a host SIGKILLed every ${r.killEveryS} s (${r.hostsKilled} killed, ${r.hostsStarted} started), ${r.rate} calls/s, concurrency ${r.concurrency}, seed ${r.seed}`,
    '',
    table(
      ['calls', 'count'],
      [
        ['sent', r.sent],
        ['succeeded', r.succeeded],
        ['failed', r.failed],
        ['  idempotent (all kinds)', `${r.idempotent.succeeded}/${r.idempotent.calls} ok`],
        ...Object.entries(r.kinds)
          .filter(([, k]) => k.calls > 0)
          .map(([name, k]) => [`    ${name}`, `${k.succeeded}/${k.calls} ok${Object.keys(k.failedByCode).length > 0 ? `, failed: ${kv(k.failedByCode)}` : ''}`]),
        ['  non-idempotent (record)', `${r.nonIdempotent.succeeded}/${r.nonIdempotent.calls} ok, ${r.nonIdempotent.failedButRan} failed but ran (may-have-run errors)`],
        ['  session', `${r.session.succeeded}/${r.session.calls} ok, ${r.session.lost} lost sessions, ${r.session.reopened} reopened, ${r.sessionsRestored} restored from snapshots (${r.durableSessions ? 'durable: natsSessionStore' : 'not durable'})`],
      ],
    ),
    '',
    ...(r.kinds.stream.calls > 0 ? [`streams: ${r.streams.complete} complete, ${r.streams.items} items, ${r.streams.failedAfterItems} failed after items (${r.streams.broken} PYFLEET_STREAM_BROKEN)`] : []),
    `failed by code: ${kv(r.failedByCode)}`,
    `re-sends to another host ${r.retries}; latency p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms`,
    '',
    'invariants',
    table(
      ['', 'check', 'value', 'must be'],
      r.invariants.map((i) => [i.ok ? 'ok' : 'FAIL', i.name, i.name === 'idempotentSuccessRate' ? `${(i.value * 100).toFixed(2)}%` : String(i.value), i.expected]),
      '  ',
    ),
    '',
    r.ok ? 'result: every invariant held' : `result: FAILED (${r.invariants.filter((i) => !i.ok).map((i) => i.name).join(', ')})`,
  ];
  if (r.orphans > 0) out.push(`orphaned pids (killed now): ${r.orphanPids.join(', ')}`);
  return out.join('\n');
}
