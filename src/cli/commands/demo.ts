import type { Command } from 'commander';
import { createPool, isPoolError, type Pool } from '../../index.js';
import { intArg, logLevelArg, numberArg, type LogLevel } from '../args.js';
import { printError } from '../errors.js';
import { cliLogger } from '../log.js';
import { exampleFile } from '../paths.js';
import { Progress } from '../progress.js';
import { Latencies, round, table } from '../stats.js';
import { runWorkload, type Outcome, type PlannedCall } from '../workload.js';
import { seededRandom } from '../../pool/chaos.js';

interface DemoOptions {
  duration: number;
  workers: number;
  rate: number;
  concurrency: number;
  killRate: number;
  seed: number;
  python?: string;
  quiet?: boolean;
  logLevel: LogLevel;
}

/** One kind of call in the demo's mix. */
interface Kind {
  name: string;
  weight: number;
  /** What it shows. */
  note: string;
  call(pool: Pool, i: number, session: string): Promise<unknown>;
}

const TIMEOUT_MS = 250;

const KINDS: readonly Kind[] = [
  { name: 'add', weight: 40, note: 'idempotent: re-sent elsewhere if its worker dies', call: (p, i) => p.execute('add', { a: i, b: 1 }) },
  { name: 'echo', weight: 15, note: 'idempotent', call: (p, i) => p.execute('echo', { i, text: 'hello' }) },
  { name: 'primes', weight: 10, note: 'CPU-bound Python', call: (p) => p.execute('primes', { n: 3000 }) },
  { name: 'shout', weight: 5, note: 'prints: goes to the log, not the protocol', call: (p, i) => p.execute('shout', { text: `call ${i}` }) },
  {
    name: 'remember',
    weight: 8,
    note: 'session state, snapshotted in the host: restored on another worker if its own dies',
    call: (p, i, s) => p.execute('remember', { x: i }, { sessionId: s }),
  },
  { name: 'recall', weight: 8, note: 'reads the session state', call: (p, _i, s) => p.execute('recall', {}, { sessionId: s }) },
  { name: 'fail', weight: 8, note: 'raises ValueError: python_error with traceback', call: (p, i) => p.execute('fail', { message: `demo failure ${i}` }) },
  {
    name: 'slow',
    weight: 1,
    note: `sleeps 400 ms with a ${TIMEOUT_MS} ms timeout, idempotent: re-sent with a larger timeout (recovery)`,
    call: (p) => p.execute('sleep', { ms: 400 }, { timeoutMs: TIMEOUT_MS }),
  },
  {
    name: 'sleep',
    weight: 0.6,
    note: `sleeps 1 s with a ${TIMEOUT_MS} ms timeout: cancelled, timeout_error`,
    // Not idempotent for this call: the timeout is reported at once instead of re-sent with a larger timeout.
    call: (p) => p.execute('sleep', { ms: 1000 }, { timeoutMs: TIMEOUT_MS, idempotent: false }),
  },
];


interface KindStats {
  calls: number;
  ok: number;
  errors: number;
  latencies: Latencies;
}

/** `pyfleet demo`: the bundled example handlers under a mixed workload, with some workers crashing. */
export function register(program: Command): void {
  program
    .command('demo')
    .description('run a mixed workload on the bundled examples/handlers.py, with worker crashes, and print what the pool did')
    .option('-d, --duration <seconds>', 'how long to send calls', numberArg(0.1), 5)
    .option('-w, --workers <n>', 'worker processes', intArg(1, 64), 2)
    .option('-r, --rate <calls/s>', 'calls started per second', numberArg(1), 200)
    .option('-c, --concurrency <n>', 'calls in flight at most', intArg(1, 1_000), 8)
    .option('--kill-rate <0..1>', 'share of calls whose worker is SIGKILLed (chaos)', numberArg(0, 1), 0.005)
    .option('--seed <n>', 'seed of the workload and of the crashes', intArg(0, 2 ** 31 - 1), 1)
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .option('-q, --quiet', 'no progress display')
    .option('--log-level <level>', 'pool log level on stderr', logLevelArg, (process.env.PYFLEET_LOG_LEVEL ?? 'silent') as LogLevel)
    .addHelpText(
      'after',
      `
The mix (weights): ${KINDS.map((k) => `${k.name} ${k.weight}`).join(', ')}.
${KINDS.map((k) => `  ${k.name.padEnd(9)} ${k.note}`).join('\n')}
Workers are killed at random (the pool's chaos option, kill rate --kill-rate, seeded): a call to
an idempotent command on a killed worker is re-sent at once to another worker (the decision
matrix's delay applies from the next failure), others fail with connection_error (they may
have run), and the pool starts a replacement.`,
    )
    .action(async (opts: DemoOptions) => {
      let pool: Pool | null = null;
      const module = exampleFile('handlers.py');
      try {
        pool = await createPool({
          module,
          ...(opts.python !== undefined ? { python: opts.python } : {}),
          workers: opts.workers,
          requestTimeoutMs: 2_000,
          cancelGraceMs: 500,
          logger: cliLogger(opts.logLevel),
          chaos: { seed: opts.seed, kill: opts.killRate },
        });
        const p = pool;
        // Salted: the workload's choices must not mirror the pool's chaos stream of the same seed.
        const rnd = seededRandom((opts.seed ^ 0x2545f491) >>> 0);
        const total = KINDS.reduce((s, k) => s + k.weight, 0);
        const byKind = new Map<string, KindStats>(KINDS.map((k) => [k.name, { calls: 0, ok: 0, errors: 0, latencies: new Latencies() }]));
        const byCategory: Record<string, number> = {};
        const busySessions = new Set<string>();
        const lostSessions = new Set<string>();
        const sessionIds = Array.from({ length: Math.max(2, opts.concurrency / 2) }, (_, i) => `demo-${i}`);
        let i = 0;

        const next = (): PlannedCall => {
          let r = rnd() * total;
          let kind = KINDS[0];
          for (const k of KINDS) {
            if (r < k.weight) {
              kind = k;
              break;
            }
            r -= k.weight;
          }
          let session = '';
          if (kind.name === 'remember' || kind.name === 'recall') {
            const free = sessionIds.filter((s) => !busySessions.has(s));
            if (free.length === 0) kind = KINDS[0];
            else {
              session = free[Math.floor(rnd() * free.length)];
              busySessions.add(session);
              // A session whose worker died: close it, as a client should, and start it afresh.
              if (lostSessions.delete(session)) p.closeSession(session);
            }
          }
          const n = i++;
          const st = byKind.get(kind.name)!;
          st.calls++;
          return {
            label: kind.name,
            start: () => kind.call(p, n, session),
            done: (o: Outcome) => {
              if (session !== '') busySessions.delete(session);
              st.latencies.add(o.ms);
              if (o.ok) st.ok++;
              else {
                st.errors++;
                const cat = isPoolError(o.error) ? o.error.category : 'unexpected';
                byCategory[cat] = (byCategory[cat] ?? 0) + 1;
                if (cat === 'session_error') lostSessions.add(session);
              }
            },
          };
        };

        let line = '';
        const progress = new Progress({ total: opts.duration, describe: () => line, quiet: opts.quiet === true, plainEveryMs: 1_000, label: 'demo' });
        const result = await runWorkload({
          durationMs: opts.duration * 1000,
          rate: opts.rate,
          concurrency: opts.concurrency,
          drainTimeoutMs: 30_000,
          next,
          onTick: (st) => {
            const s = p.stats();
            line = `${st.phase === 'sending' ? `${(st.elapsedMs / 1000).toFixed(1)} s` : st.phase} | calls ${st.sent} ok ${st.succeeded} errors ${st.failed} | workers ${s.workers.length} restarts ${s.restarts.total}`;
            progress.update(Math.min(st.elapsedMs / 1000, opts.duration));
          },
        });
        progress.stop();
        const stats = p.stats();
        await p.close();
        pool = null;

        const lines: string[] = [];
        lines.push(`pyfleet demo: ${(result.sendingMs / 1000).toFixed(1)} s on ${opts.workers} workers (${module})`);
        lines.push(`chaos: workers SIGKILLed on ${(opts.killRate * 100).toFixed(1)}% of calls (seed ${opts.seed}); Python exceptions, timeouts and sessions from the mix`);
        lines.push('');
        const rows = KINDS.map((k) => {
          const s = byKind.get(k.name)!;
          return [k.name, s.calls, s.ok, s.errors, round(s.latencies.percentile(50)), round(s.latencies.percentile(99))];
        });
        rows.push(['total', result.sent, result.succeeded, result.failed, round(result.latencies.percentile(50)), round(result.latencies.percentile(99))]);
        lines.push(table(['command', 'calls', 'ok', 'errors', 'p50 ms', 'p99 ms'], rows));
        lines.push('');
        const cats = Object.entries(byCategory).sort((a, b) => b[1] - a[1]);
        lines.push(
          table(
            ['errors by category', 'count'],
            cats.length > 0 ? cats : [['none', 0]],
          ),
        );
        lines.push('');
        const reasons = Object.entries(stats.restarts.byReason).map(([k, v]) => `${k} ${v}`).join(', ');
        lines.push(
          table(
            ['pool', 'value'],
            [
              ['calls', result.sent],
              ['successes', result.succeeded],
              ['errors', result.failed],
              ['retries', stats.calls.retries],
              ['answered by a recovery', stats.calls.viaRecovery],
              ['worker crashes injected', stats.chaos?.injected.kill ?? 0],
              ['worker restarts', `${stats.restarts.total}${reasons ? ` (${reasons})` : ''}`],
              ['recoveries', `${stats.recoveries.initiated} initiated, ${stats.recoveries.succeeded} succeeded, ${stats.recoveries.failed} failed`],
              ['circuits', Object.entries(stats.circuits).map(([k, c]) => `${k} ${c.state}`).join(', ')],
              ['latency p50', `${round(result.latencies.percentile(50))} ms`],
              ['latency p99', `${round(result.latencies.percentile(99))} ms`],
              ['lost calls', result.lost],
            ],
          ),
        );
        process.stdout.write(`${lines.join('\n')}\n`);
        process.exitCode = result.lost === 0 ? 0 : 1;
      } catch (e) {
        printError(e, 'pyfleet demo');
        process.exitCode = 1;
      } finally {
        await pool?.close();
      }
    });
}
