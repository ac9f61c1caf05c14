/**
 * Chaos across hosts (`pyfleet chaos --fleet`): a nats-server and N `pyfleet host` processes on
 * this machine, the chaos workload (examples/chaos_handlers.py) sent through connectFleet, a host
 * SIGKILLed and a new one started every few seconds, and the same invariant report as the
 * single-pool chaos: nothing lost, nothing answered twice, no duplicate side effect, no orphan.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPoolError } from '../errors/pool-error.js';
import { seededRandom } from '../pool/chaos.js';
import { exampleFile } from '../cli/paths.js';
import { isAlive, scanWorkersOf } from '../cli/chaos/processes.js';
import type { Invariant } from '../cli/chaos/run.js';
import { runWorkload, type Outcome, type PlannedCall } from '../cli/workload.js';
import { table } from '../cli/stats.js';
import { connectFleet, type Fleet } from './client.js';

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
  lost: number;
  answeredTwice: number;
  duplicateSideEffects: number;
  missingSideEffects: number;
  ranButReportedNotTaken: number;
  ledgerCorruptLines: number;
  wrongAnswers: number;
  sessionStateErrors: number;
  nonPoolErrors: number;
  orphans: number;
  orphanPids: number[];
  retries: number;
  latencyMs: { p50: number; p99: number; max: number };
  invariants: Invariant[];
}

const sumOfSquaresBelow = (n: number): number => ((n - 1) * n * (2 * n - 1)) / 6;

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
  const hosts = new Set<ChildProcess>();
  const hostPids = new Set<number>();
  let hostsStarted = 0;
  let hostsKilled = 0;
  const startHost = async (): Promise<void> => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, process.argv[1], 'host', '--module', exampleFile('chaos_handlers.py'), '--nats', url, '--fleet', fleetName, '--workers', String(o.workers), '--heartbeat', '250', '--timeout', '3000', '--log-level', 'error'],
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

    const failedByCode: Record<string, number> = {};
    const idem = { calls: 0, succeeded: 0 };
    const nonIdem = { calls: 0, succeeded: 0, failed: 0, failedButRan: 0 };
    const sess = { calls: 0, succeeded: 0, lost: 0, reopened: 0 };
    let wrongAnswers = 0;
    let sessionStateErrors = 0;
    let nonPoolErrors = 0;
    const tokensSent = new Set<string>();
    const tokensOk = new Set<string>();
    const tokensFailed = new Map<string, boolean>();
    let seq = 0;
    const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
    const sessions = Array.from({ length: o.sessions }, (_, i) => ({ id: `fc-${runId}-${i}`, busy: false, lost: false, allowed: new Set<number | null>([null]) }));
    const failure = (e: unknown): void => {
      if (!isPoolError(e)) {
        nonPoolErrors++;
        return;
      }
      failedByCode[e.code] = (failedByCode[e.code] ?? 0) + 1;
    };
    const next = (): PlannedCall | null => {
      if (sessions.length > 0 && rnd() < o.sessionShare) {
        const free = sessions.filter((s) => !s.busy);
        if (free.length > 0) {
          const s = free[Math.floor(rnd() * free.length)];
          s.busy = true;
          sess.calls++;
          const put = rnd() < 0.5;
          const v = seq++;
          return {
            label: put ? 'session_put' : 'session_get',
            start: async () => {
              if (s.lost) {
                await f.closeSession(s.id);
                s.lost = false;
                s.allowed = new Set([null]);
                sess.reopened++;
              }
              return put ? f.execute('session_put', { v }, { sessionId: s.id }) : f.execute('session_get', { nonce: v }, { sessionId: s.id });
            },
            done: (r: Outcome) => {
              s.busy = false;
              if (r.ok) {
                sess.succeeded++;
                if (put) {
                  if (r.value !== v) wrongAnswers++;
                  s.allowed = new Set([v]);
                } else {
                  const got = r.value as number | null;
                  if (!s.allowed.has(got)) sessionStateErrors++;
                  s.allowed = new Set([got]);
                }
                return;
              }
              failure(r.error);
              if (isPoolError(r.error) && r.error.category === 'session_error') {
                s.lost = true;
                sess.lost++;
              } else if (put) s.allowed.add(v);
            },
          };
        }
      }
      if (rnd() < o.idempotentShare) {
        const i = seq++;
        const n = 50 + Math.floor(rnd() * 450);
        idem.calls++;
        return {
          label: 'compute',
          start: () => f.execute('compute', { n, salt: i }),
          done: (r) => {
            if (!r.ok) return failure(r.error);
            idem.succeeded++;
            const v = r.value as { n?: unknown; salt?: unknown; value?: unknown } | null;
            if (v === null || v.n !== n || v.salt !== i || v.value !== sumOfSquaresBelow(n)) wrongAnswers++;
          },
        };
      }
      const token = `${runId}-${seq++}`;
      tokensSent.add(token);
      nonIdem.calls++;
      return {
        label: 'record',
        start: () => f.execute('record', { token }),
        done: (r) => {
          if (r.ok) {
            nonIdem.succeeded++;
            tokensOk.add(token);
            if (r.value !== token) wrongAnswers++;
            return;
          }
          nonIdem.failed++;
          failure(r.error);
          tokensFailed.set(token, isPoolError(r.error) ? r.error.taken : true);
        },
      };
    };

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
      next,
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
      onTick: (st) => {
        if (Math.floor(st.elapsedMs / 5000) !== Math.floor((st.elapsedMs - 100) / 5000)) o.onLine?.(`${(st.elapsedMs / 1000).toFixed(0)} s: sent ${st.sent}, ok ${st.succeeded}, failed ${st.failed}, in flight ${st.inFlight}, hosts killed ${hostsKilled}`);
      },
    });
    killing = false;
    await killer;
    // Counted where the client settles each send (a second answer is counted, never delivered).
    const answeredTwice = fleet.stats().calls.settledTwice;
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
    for (const p of orphanPids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }

    const seen = new Map<string, number>();
    let ledgerCorruptLines = 0;
    let text = '';
    try {
      text = readFileSync(ledger, 'utf8');
    } catch {
      // no record call ran
    }
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (!tokensSent.has(line)) ledgerCorruptLines++;
      else seen.set(line, (seen.get(line) ?? 0) + 1);
    }
    let duplicateSideEffects = 0;
    for (const n of seen.values()) if (n > 1) duplicateSideEffects++;
    let missingSideEffects = 0;
    for (const t of tokensOk) if (!seen.has(t)) missingSideEffects++;
    let ranButReportedNotTaken = 0;
    for (const [t, taken] of tokensFailed) {
      if (!seen.has(t)) continue;
      nonIdem.failedButRan++;
      if (!taken) ranButReportedNotTaken++;
    }
    const rate = idem.calls === 0 ? 1 : idem.succeeded / idem.calls;
    const zero = (name: string, value: number): Invariant => ({ name, ok: value === 0, value, expected: '0' });
    const invariants: Invariant[] = [
      zero('lost', result.lost),
      zero('answeredTwice', answeredTwice),
      zero('duplicateSideEffects', duplicateSideEffects),
      zero('missingSideEffects', missingSideEffects),
      zero('ranButReportedNotTaken', ranButReportedNotTaken),
      zero('ledgerCorruptLines', ledgerCorruptLines),
      zero('wrongAnswers', wrongAnswers),
      zero('sessionStateErrors', sessionStateErrors),
      zero('nonPoolErrors', nonPoolErrors),
      zero('orphans', orphanPids.length),
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
      nonIdempotent: nonIdem,
      session: sess,
      lost: result.lost,
      answeredTwice,
      duplicateSideEffects,
      missingSideEffects,
      ranButReportedNotTaken,
      ledgerCorruptLines,
      wrongAnswers,
      sessionStateErrors,
      nonPoolErrors,
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
        ['  idempotent (compute)', `${r.idempotent.succeeded}/${r.idempotent.calls} ok`],
        ['  non-idempotent (record)', `${r.nonIdempotent.succeeded}/${r.nonIdempotent.calls} ok, ${r.nonIdempotent.failedButRan} failed but ran (may-have-run errors)`],
        ['  session', `${r.session.succeeded}/${r.session.calls} ok, ${r.session.lost} lost sessions, ${r.session.reopened} reopened`],
      ],
    ),
    '',
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
