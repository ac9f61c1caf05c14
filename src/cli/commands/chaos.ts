import { InvalidArgumentError, Option, type Command } from 'commander';
import { intArg, logLevelArg, numberArg, type LogLevel } from '../args.js';
import { printError } from '../errors.js';
import { cliLogger } from '../log.js';
import { Progress } from '../progress.js';
import { FAULTS, FAULT_SIZES, chaosOptions, parseFaultList, parseFaultRates } from '../chaos/faults.js';
import { renderReport } from '../chaos/report.js';
import { CHAOS_POOL_OPTIONS, SLO_MAX_INFRA_RATE, runChaos } from '../chaos/run.js';
import { DEFAULT_KIND_SHARES, NEWER_KINDS, type NewerKind } from '../chaos/mix.js';

interface ChaosCliOptions {
  duration: number;
  workers: number;
  seed?: number;
  rate: number;
  concurrency: number;
  poolConcurrency: number;
  kinds: Partial<Record<NewerKind, number>>;
  idempotentShare: number;
  sessions: number;
  sessionShare: number;
  faults: Set<string>;
  faultRates: Map<string, number>;
  timeout: number;
  drainTimeout: number;
  minSuccessRate: number;
  python?: string;
  json?: boolean;
  quiet?: boolean;
  keepLedger?: boolean;
  logLevel: LogLevel;
  fleet?: boolean;
  hosts: number;
  killEvery: number;
}

/** `--kinds acompute=0.2,stream=0.1` (the others 0), or 'none'. */
function parseKinds(value: string): Partial<Record<NewerKind, number>> {
  const v = value.trim().toLowerCase();
  if (v === 'none' || v === '') return {};
  const out: Partial<Record<NewerKind, number>> = {};
  for (const part of v.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*([0-9.eE+-]+)\s*$/.exec(part);
    if (m === null || !(NEWER_KINDS as readonly string[]).includes(m[1])) throw new InvalidArgumentError(`expected kind=share pairs of ${NEWER_KINDS.join(', ')} (or none), got ${JSON.stringify(part)}`);
    const n = Number(m[2]);
    if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`${m[1]} must be a share from 0 to 1, got ${m[2]}`);
    out[m[1] as NewerKind] = n;
  }
  const total = Object.values(out).reduce((t, x) => t + x, 0);
  if (total > 1) throw new InvalidArgumentError(`the shares add up to ${total}, over 1`);
  return out;
}

const DEFAULT_KINDS_TEXT = NEWER_KINDS.map((k) => `${k}=${DEFAULT_KIND_SHARES[k]}`).join(',');

const faultHelp = FAULTS.map((f) => `  ${f.name.padEnd(19)} ${String(f.defaultValue).padEnd(6)} ${f.what}`).join('\n');

const HELP = `
Faults (per call attempt unless said; every one is on by default at this rate):
${faultHelp}
  sizes: memoryMb ${FAULT_SIZES.memoryMb}, heartbeatStallMs ${FAULT_SIZES.heartbeatStallMs}, slowStartMs ${FAULT_SIZES.slowStartMs}

Workload (examples/chaos_handlers.py): --kinds of the session-less calls are the newer
kinds, all idempotent, each answer checked: acompute (async def) and tcompute (threaded), which
share a worker up to --pool-concurrency; stream (an async generator: items in order and
complete, or a PoolError); blob (binary args and results, SHA-256 checked both ways). The rest
are compute (idempotent, its answer is checked) or record (not idempotent: appends a unique
token to a ledger file). --session-share of calls are session_put/session_get on --sessions
sessions, one call per session at a time, with the session's state checked; sessions are
durable (the pool's default 'memory' store), so a worker death restores them elsewhere. A lost
session is closed and reopened.

Pool options used (shorter than the production defaults so that each fault costs about a
second; the retry delays are the decision matrix's own, e.g. 1 s then 3 s after a crash):
  requestTimeoutMs ${CHAOS_POOL_OPTIONS.requestTimeoutMs} (--timeout), cancelGraceMs ${CHAOS_POOL_OPTIONS.cancelGraceMs}, startupTimeoutMs ${CHAOS_POOL_OPTIONS.startupTimeoutMs},
  queueTimeoutMs ${CHAOS_POOL_OPTIONS.queueTimeoutMs}, healthCheck { intervalMs ${CHAOS_POOL_OPTIONS.healthCheck.intervalMs}, maxMissed ${CHAOS_POOL_OPTIONS.healthCheck.maxMissed} },
  circuitBreaker { openTimeoutMs ${CHAOS_POOL_OPTIONS.circuitBreaker.openTimeoutMs} }, recycle { maxMemoryMb ${CHAOS_POOL_OPTIONS.recycle.maxMemoryMb} }, workers min = max = --workers,
  concurrency --pool-concurrency.

Invariants (the exit code is 1 when one breaks, 0 when all hold, 2 on a usage error):
  lost 0                   every call settles before the drain deadline (--drain-timeout)
  answeredTwice 0          no call is answered twice where answers arrive: in this driver's callbacks,
                           and on call:end (one per call id)
  settledTwice 0           the pool refused no second settlement of a call (its own count)
  duplicateSideEffects 0   no record token appears twice in the ledger
  missingSideEffects 0     every record call that succeeded did append its token
  ranButReportedNotTaken 0 no failed record call said "not run" (taken=false) yet ran
  ledgerCorruptLines 0     every ledger line is a token that was sent
  wrongAnswers 0           each answer belongs to its call and is right (compute values, echoed
                           tokens, stream items in order and complete, blob checksums)
  sessionStateErrors 0     session_get returns what the last completed call left: never silently
                           empty, older than a call that succeeded, or another session's
  streamBrokenMislabelled 0 a stream that failed after items says PYFLEET_STREAM_BROKEN with the
                           count that arrived (or a timeout), never another connection_error
  nonPoolErrors 0          every failure is a PoolError
  orphans 0                no worker process alive after close (pids seen + a /proc scan)
  closeTimedOut 0          pool.close() returns within 30 s
  idempotentSuccessRate    >= --min-success-rate: idempotent calls that succeeded over those not
                           given an injected Python exception (which fail with python_error)
                           and streams broken after their first item (never re-sent, by design);
                           checked when the infrastructure fault rate per call is <= ${SLO_MAX_INFRA_RATE}

Across hosts (--fleet): injected faults are host SIGKILLs instead (Python-level --faults
do not apply); the same workload, --kinds included, and invariants, the orphan check covering
every host's workers.

Examples:
  pyfleet chaos --duration 60 --workers 2
  pyfleet chaos --fleet --hosts 3 --kill-every 4 --duration 60
  pyfleet chaos --faults kill,hang --fault-rates kill=0.05 --seed 42 --json`;

/** `pyfleet chaos`: a workload against a pool with faults injected, and a report of the invariants. */
export function register(program: Command): void {
  program
    .command('chaos')
    .description('run a workload against a pool with injected faults and check that nothing is lost, doubled or orphaned')
    .option('-d, --duration <seconds>', 'how long to send calls', numberArg(0.1), 30)
    .option('-w, --workers <n>', 'worker processes', intArg(1, 64), 2)
    .option('--seed <n>', 'seed of the fault and workload choices (default: random; printed, to replay a run)', intArg(0, 2 ** 31 - 1))
    .option('-r, --rate <calls/s>', 'calls started per second', numberArg(0.1), 50)
    .option('-c, --concurrency <n>', 'calls in flight at most', intArg(1, 10_000), 16)
    .option('--pool-concurrency <n>', "the pool's concurrency: async and threaded calls one worker runs at once", intArg(1, 1_000), 4)
    .addOption(new Option('--kinds <list>', "shares of session-less calls for acompute, tcompute, stream, blob (e.g. stream=0.2), or 'none'").argParser(parseKinds).default({ ...DEFAULT_KIND_SHARES }, DEFAULT_KINDS_TEXT))
    .option('--idempotent-share <0..1>', 'share of session-less calls that are idempotent', numberArg(0, 1), 0.7)
    .option('--sessions <n>', 'sessions used by session calls (0: none)', intArg(0, 1_000), 4)
    .option('--session-share <0..1>', 'share of calls made in a session', numberArg(0, 1), 0.1)
    .addOption(new Option('-f, --faults <list>', "faults to inject, comma-separated, or 'all' / 'none'").argParser(parseFaultList).default(parseFaultList('all'), 'all'))
    .addOption(
      new Option('--fault-rates <list>', 'override rates, e.g. kill=0.05,hang=0.01,fail-import=1 (enables the fault)').argParser(parseFaultRates).default(new Map<string, number>(), 'the rates below'),
    )
    .option('-t, --timeout <ms>', 'requestTimeoutMs of the pool', intArg(50), CHAOS_POOL_OPTIONS.requestTimeoutMs)
    .option('--drain-timeout <ms>', 'after sending stops, time for in-flight calls to settle before they count as lost', intArg(1_000), 60_000)
    .option('--min-success-rate <0..1>', 'lowest idempotentSuccessRate that passes (0: not checked)', numberArg(0, 1), 0.99)
    .option('--python <path>', 'the Python interpreter (default: $PYFLEET_PYTHON or python3)')
    .option('--json', 'print the report as one JSON object on stdout')
    .option('-q, --quiet', 'no progress display')
    .option('--keep-ledger', 'keep the side-effect ledger file (its path is in the report)')
    .option('--log-level <level>', 'pool log level on stderr', logLevelArg, (process.env.PYFLEET_LOG_LEVEL ?? 'silent') as LogLevel)
    .option('--fleet', 'chaos across hosts: a nats-server and --hosts `pyfleet host` processes, one SIGKILLed and replaced every --kill-every seconds (needs nats-server)')
    .option('--hosts <n>', 'with --fleet: hosts', intArg(2, 16), 3)
    .option('--kill-every <seconds>', 'with --fleet: seconds between host kills', numberArg(0.5), 4)
    .addHelpText('after', HELP)
    .action(async (opts: ChaosCliOptions) => {
      if (opts.fleet === true) {
        const { runFleetChaos, renderFleetReport } = await import('../chaos/fleet-run.js');
        const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
        try {
          const report = await runFleetChaos({
            durationS: opts.duration,
            hosts: opts.hosts,
            workers: opts.workers,
            killEveryS: opts.killEvery,
            seed,
            rate: opts.rate,
            concurrency: opts.concurrency,
            idempotentShare: opts.idempotentShare,
            sessions: opts.sessions,
            sessionShare: opts.sessionShare,
            minSuccessRate: opts.minSuccessRate,
            drainTimeoutMs: opts.drainTimeout,
            kinds: opts.kinds,
            ...(opts.quiet === true ? {} : { onLine: (l: string) => process.stderr.write(`pyfleet chaos --fleet: ${l}\n`) }),
          });
          process.stdout.write(opts.json === true ? `${JSON.stringify(report)}\n` : `${renderFleetReport(report)}\n`);
          process.exitCode = report.ok ? 0 : 1;
        } catch (e) {
          printError(e, 'pyfleet chaos --fleet');
          process.exitCode = 1;
        }
        return;
      }
      const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
      const chaos = chaosOptions(opts.faults, opts.faultRates, seed);
      const totalRate = FAULTS.filter((f) => f.perCall).reduce((s, f) => s + ((chaos[f.key] as number | undefined) ?? 0), 0);
      if (totalRate > 1) {
        process.stderr.write(`pyfleet chaos: the per-call fault rates add up to ${totalRate.toFixed(3)}, over 1\n`);
        process.exitCode = 2;
        return;
      }

      // SIGINT / SIGTERM: stop sending, drain, close, report. A second one exits at once.
      const stop = new AbortController();
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals): void => {
        signals++;
        if (signals > 1) process.exit(sig === 'SIGINT' ? 130 : 143);
        process.stderr.write(`\npyfleet chaos: ${sig}: stopping, draining in-flight calls and closing the pool (again to exit now)\n`);
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);

      let progress: Progress | null = null;
      let line = 'starting the pool';
      try {
        if (opts.quiet !== true) process.stderr.write(`pyfleet chaos: seed ${seed}, ${opts.duration} s on ${opts.workers} workers, ${opts.rate} calls/s\n`);
        const report = await runChaos({
          durationS: opts.duration,
          workers: opts.workers,
          seed,
          rate: opts.rate,
          concurrency: opts.concurrency,
          poolConcurrency: opts.poolConcurrency,
          kinds: opts.kinds,
          idempotentShare: opts.idempotentShare,
          sessions: opts.sessions,
          sessionShare: opts.sessionShare,
          chaos,
          ...(opts.python !== undefined ? { python: opts.python } : {}),
          requestTimeoutMs: opts.timeout,
          drainTimeoutMs: opts.drainTimeout,
          minSuccessRate: opts.minSuccessRate,
          logger: cliLogger(opts.logLevel),
          signal: stop.signal,
          keepLedger: opts.keepLedger === true,
          onTick: (st, pool) => {
            const s = pool.stats();
            const phase = st.phase === 'sending' ? `${(st.elapsedMs / 1000).toFixed(1)}/${opts.duration} s` : st.phase;
            line = `${phase} | sent ${st.sent} ok ${st.succeeded} failed ${st.failed} in flight ${st.inFlight} | workers ${s.workers.length} restarts ${s.restarts.total} retries ${s.calls.retries}`;
            progress ??= new Progress({ total: opts.duration, describe: () => line, quiet: opts.quiet === true, plainEveryMs: 5_000, label: 'chaos' });
            progress.update(Math.min(st.elapsedMs / 1000, opts.duration));
          },
        });
        (progress as Progress | null)?.stop();
        if (opts.json === true) process.stdout.write(`${JSON.stringify(report)}\n`);
        else process.stdout.write(`${renderReport(report)}\n`);
        process.exitCode = report.ok ? 0 : 1;
      } catch (e) {
        (progress as Progress | null)?.stop();
        printError(e, 'pyfleet chaos');
        process.exitCode = 1;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
