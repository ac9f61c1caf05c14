/**
 * One behaviour, two targets: every test here runs against a pool (2 workers) and against a
 * fleet of two real `pyfleet host` processes (1 worker each) on a real nats-server, with the same
 * handlers (test/fixtures/conformance.py). Attempts are counted twice: by the caller's events
 * (`pool:error` per failed attempt, `call:end`'s `attempts`) and by Python itself (a ledger line
 * per run), so a member that made more than one attempt per call of it is caught.
 *
 * The differences allowed between the targets, listed here and nowhere else:
 *  1. A member is a worker in a pool and a host in a fleet: a death is a worker's (`workerId`)
 *     or a host's (`details.hostId`), and `stats()` lists workers or hosts.
 *  2. Circuits are named and kept where their members are: a pool's `worker_commands:<command>`
 *     is in `pool.stats().circuits`; each host's pool keeps its own (in `fleet.stats().hosts[i].pool`),
 *     so a fleet refuses a command once its timeouts opened the circuit on every host.
 *  3. A fleet stream has two credit windows (the client's and the host pool's): its generator may
 *     run up to one more `highWaterMark` ahead of a slow consumer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { CallOptions } from '../src/call/options.js';
import type { PoolSession } from '../src/call/session.js';
import type { Caller as CallSurface } from '../src/call/types.js';
import { PoolError } from '../src/errors/pool-error.js';
import { connectFleet, type Fleet } from '../src/fleet/index.js';
import { createPool, type Pool } from '../src/pool/pool.js';
import type { EventName, EventPayloads } from '../src/telemetry/channels.js';
import { killAllHosts, linesOf, orphansOf, startHostProc, type HostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';
import { lines, quiet, rejection } from './helpers/pool.js';

const MODULE = fileURLToPath(new URL('./fixtures/conformance.py', import.meta.url));
const FLEET = 'conformance';
const dir = mkdtempSync(path.join(tmpdir(), 'pyfleet-conformance-'));
let seq = 0;
const file = (name: string): string => path.join(dir, `${name}-${++seq}.txt`);

type Kind = 'pool' | 'fleet';
/** What a test uses of a pool or a fleet: the call surface both share, plus their stats' common part. */
interface Caller extends CallSurface {
  readonly id: number;
  on: Pool['on'];
  session(sessionId: string): PoolSession;
  stats(): {
    calls: { total: number; succeeded: number; failed: number; inFlight: number; retries: number; settledTwice: number };
    errorsByCategory: Record<string, number>;
    retryBudget: { calls: number } | null;
  };
  close(): Promise<void>;
}

/** A caller of either kind, with what a test reads of it. */
interface Subject {
  kind: Kind;
  caller: Caller;
  /** Events of this caller only, from the moment it was opened. */
  seen<K extends EventName>(name: K): EventPayloads[K][];
  /** The state of a command's circuit on the members that have it. */
  commandCircuits(command: string): Promise<string[]>;
  close(): Promise<void>;
}

let srv: NatsServer;
let hosts: HostProc[] = [];

before(async () => {
  srv = await startNats();
  hosts = await Promise.all([startHostProc(srv.url, FLEET, { module: MODULE }), startHostProc(srv.url, FLEET, { module: MODULE })]);
});

after(async () => {
  for (const h of hosts) h.kill('SIGTERM');
  await Promise.all(hosts.map((h) => h.exited));
  await killAllHosts();
  assert.deepEqual(await orphansOf(hosts.map((h) => h.pid)), [], 'no host or worker outlives the suite');
  await srv?.dispose();
});

const WATCHED: EventName[] = ['pool:error', 'call:end', 'retry:attempt', 'retry:exhausted'];

async function open(kind: Kind, options: CallOptions = {}): Promise<Subject> {
  let caller: Caller;
  if (kind === 'pool') caller = await createPool({ module: MODULE, workers: 2, logger: quiet, ...options });
  else {
    const fleet = await connectFleet({ servers: srv.url, fleet: FLEET, logger: quiet, ...options });
    await fleet.ready({ hosts: 2, timeoutMs: 15_000 });
    caller = fleet;
  }
  const log = new Map<EventName, unknown[]>();
  const offs = WATCHED.map((name) => {
    log.set(name, []);
    return caller.on(name, (p) => {
      if ((p as { poolId?: number }).poolId === caller.id) log.get(name)!.push(p);
    });
  });
  return {
    kind,
    caller,
    seen: <K extends EventName>(name: K) => log.get(name) as EventPayloads[K][],
    commandCircuits: async (command) => {
      const name = `worker_commands:${command}`;
      if (kind === 'pool') return [(caller as Pool).stats().circuits[name]?.state ?? 'closed'];
      // A host's pool stats arrive with its next heartbeat.
      await new Promise((r) => setTimeout(r, 600));
      return (caller as Fleet).stats().hosts.map((h) => h.pool.circuits[name]?.state ?? 'closed');
    },
    close: async () => {
      for (const off of offs) off();
      await caller.close();
    },
  };
}

/** Registers `name` once per target; the body gets a caller opened with `options` and closed after. */
function both(name: string, body: (s: Subject) => Promise<void>, options: CallOptions = {}): void {
  for (const kind of ['pool', 'fleet'] as const) {
    it(`${name} [${kind}]`, async () => {
      const s = await open(kind, options);
      try {
        await body(s);
      } finally {
        await s.close();
      }
    });
  }
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; result: T | PoolError }> {
  const t0 = performance.now();
  const result = await p.catch((e: unknown) => {
    assert.ok(e instanceof PoolError, `a PoolError, got ${String(e)}`);
    return e;
  });
  return { ms: performance.now() - t0, result };
}

const runs = (ledger: string): number => lines(ledger).length;
const attemptsOf = (s: Subject, command: string): number[] => s.seen('call:end').filter((e) => e.command === command).map((e) => e.attempts);
const failedAttempts = (s: Subject, command: string) => s.seen('pool:error').filter((e) => e.command === command);

describe('timeouts', () => {
  both('a call\'s timeoutMs bounds its attempt', async (s) => {
    const ledger = file('ledger');
    const { ms, result } = await timed(s.caller.execute('act_once', { ledger, mode: 'sleep', ms: 3_000 }, { timeoutMs: 300 }));
    assert.ok(result instanceof PoolError && result.code === 'PYFLEET_TIMEOUT', String(result));
    assert.ok(ms >= 250 && ms < 2_000, `timed out after ${Math.round(ms)} ms (timeoutMs 300)`);
    assert.equal(result.taken, true);
    // At most one run (under load the handler may not have started within 300 ms), one attempt.
    assert.ok(runs(ledger) <= 1);
    assert.deepEqual(attemptsOf(s, 'act_once'), [1]);
  });

  both('a command\'s @command(timeout=0.5) is its default timeout', async (s) => {
    const { ms, result } = await timed(s.caller.execute('slow_command', { ms: 3_000 }));
    assert.ok(result instanceof PoolError && result.code === 'PYFLEET_TIMEOUT', String(result));
    assert.ok(ms >= 400 && ms < 2_000, `timed out after ${Math.round(ms)} ms (the command's timeout is 500 ms)`);
  });

  both('the call\'s own timeoutMs wins over the command\'s', async (s) => {
    const { ms, result } = await timed(s.caller.execute('slow_command', { ms: 3_000 }, { timeoutMs: 1_500 }));
    assert.ok(result instanceof PoolError && result.code === 'PYFLEET_TIMEOUT', String(result));
    assert.ok(ms >= 1_400 && ms < 2_900, `timed out after ${Math.round(ms)} ms (timeoutMs 1500)`);
  });

  both(
    'requestTimeoutMs is the default of a command without its own',
    async (s) => {
      const ledger = file('ledger');
      const { ms, result } = await timed(s.caller.execute('act_once', { ledger, mode: 'sleep', ms: 3_000 }));
      assert.ok(result instanceof PoolError && result.code === 'PYFLEET_TIMEOUT', String(result));
      assert.ok(ms >= 350 && ms < 2_000, `timed out after ${Math.round(ms)} ms (requestTimeoutMs 400)`);
    },
    { requestTimeoutMs: 400 },
  );
});

describe('retries and re-sends by idempotency', () => {
  both('an idempotent call that timed out is re-sent once with a larger timeout, and answered via the recovery', async (s) => {
    const ledger = file('ledger');
    // The first run sleeps past the timeout; the re-send (timeout x2) finds the ledger written and answers at once.
    const r = await s.caller.execute('act', { ledger, mode: 'slow_first', ms: 3_000 }, { timeoutMs: 1_000, detailed: true });
    assert.equal(r.via, 'recovery');
    assert.equal(r.attempts, 2);
    assert.equal(runs(ledger), 2, 'Python ran it twice: one run per attempt');
    assert.deepEqual(failedAttempts(s, 'act').map((e) => [e.code, e.strategy]), [['PYFLEET_TIMEOUT', 'backoff_retry']]);
    assert.deepEqual(attemptsOf(s, 'act'), [2]);
  });

  both('a call that is not idempotent is not re-sent after a timeout', async (s) => {
    const ledger = file('ledger');
    const e = await rejection(s.caller.execute('act_once', { ledger, mode: 'slow_first', ms: 1_500 }, { timeoutMs: 300 }));
    assert.equal(e.code, 'PYFLEET_TIMEOUT');
    assert.equal(e.strategy, 'abandon');
    assert.ok(runs(ledger) <= 1, 'never run twice');
    assert.deepEqual(attemptsOf(s, 'act_once'), [1]);
  });

  both('an idempotent call whose worker died is re-sent at once to another member', async (s) => {
    const ledger = file('ledger');
    const t0 = performance.now();
    const r = await s.caller.execute<{ runs: number }>('act', { ledger, mode: 'die_first' }, { detailed: true });
    assert.equal(r.value.runs, 2);
    assert.equal(r.attempts, 2);
    assert.ok(performance.now() - t0 < 5_000, 'no backoff before the first re-send after a death');
    assert.equal(runs(ledger), 2);
    const [death] = failedAttempts(s, 'act');
    assert.equal(death.code, 'PYFLEET_WORKER_CRASHED');
    assert.equal(death.strategy, 'backoff_retry');
  });

  both('a call that is not idempotent fails when its worker dies, saying it may have run', async (s) => {
    const ledger = file('ledger');
    const e = await rejection(s.caller.execute('act_once', { ledger, mode: 'die_first' }));
    assert.equal(e.code, 'PYFLEET_WORKER_CRASHED');
    assert.equal(e.category, 'connection_error');
    assert.equal(e.taken, true);
    assert.equal(e.strategy, 'abandon');
    assert.equal(runs(ledger), 1);
  });

  both('idempotent: true on the call lets a command that is not idempotent be re-sent', async (s) => {
    const ledger = file('ledger');
    const r = await s.caller.execute<{ runs: number }>('act_once', { ledger, mode: 'die_first' }, { idempotent: true });
    assert.equal(r.runs, 2);
    assert.equal(runs(ledger), 2);
  });
});

describe('the decision matrix and policy overrides', () => {
  both('a Python error is not retried by default: one run, strategy abandon', async (s) => {
    const ledger = file('ledger');
    const e = await rejection(s.caller.execute('act', { ledger, mode: 'raise' }));
    assert.equal(e.code, 'PYFLEET_PYTHON_ERROR');
    assert.equal(e.strategy, 'abandon');
    assert.equal(e.python?.type, 'ValueError');
    assert.equal(runs(ledger), 1);
  });

  both(
    'policy makes a Python error retried in place, up to its maxRetries',
    async (s) => {
      const ledger = file('ledger');
      const e = await rejection(s.caller.execute('act', { ledger, mode: 'raise' }));
      assert.equal(e.code, 'PYFLEET_PYTHON_ERROR');
      assert.equal(runs(ledger), 3, 'the first attempt and two retries');
      assert.deepEqual(failedAttempts(s, 'act').map((f) => f.strategy), ['immediate_retry', 'immediate_retry', 'abandon']);
      assert.deepEqual(attemptsOf(s, 'act'), [3]);
    },
    { policy: { python_error: { strategy: 'immediate_retry', maxRetries: 2 } } },
  );

  both(
    'retry.maxAttempts bounds the attempts whatever the policy allows',
    async (s) => {
      const ledger = file('ledger');
      await rejection(s.caller.execute('act', { ledger, mode: 'raise' }));
      assert.equal(runs(ledger), 2);
    },
    { policy: { python_error: { strategy: 'immediate_retry', maxRetries: 5 } }, retry: { maxAttempts: 2 } },
  );

  both(
    'policy can forbid the re-send after a death (connection_error maxRetries 0)',
    async (s) => {
      const ledger = file('ledger');
      const e = await rejection(s.caller.execute('act', { ledger, mode: 'die_first' }));
      assert.equal(e.code, 'PYFLEET_WORKER_CRASHED');
      assert.equal(runs(ledger), 1);
    },
    { policy: { connection_error: { maxRetries: 0 } } },
  );
});

describe('circuits and their scope', () => {
  both('a command\'s timeouts open its own circuit: it is then refused without running, other commands are served', async (s) => {
    const ledger = file('ledger');
    let refused: PoolError | null = null;
    let timeouts = 0;
    for (let i = 0; i < 14 && refused === null; i++) {
      const e = await rejection(s.caller.execute('trip', { ledger, mode: 'sleep', ms: 2_000 }, { timeoutMs: 150 }));
      if (e.code === 'PYFLEET_CIRCUIT_OPEN') refused = e;
      else {
        assert.equal(e.code, 'PYFLEET_TIMEOUT');
        timeouts++;
      }
    }
    assert.ok(refused !== null, `the circuit opened after ${timeouts} timeouts`);
    assert.equal(refused.strategy, 'abandon');
    assert.equal(refused.taken, false);
    assert.match(refused.message, /worker_commands:trip/);
    assert.ok(runs(ledger) <= timeouts, 'the refused call never ran');
    // A fleet tries each host's pool before it gives up (difference 2): one refused attempt per host.
    assert.equal(attemptsOf(s, 'trip').at(-1), s.kind === 'pool' ? 1 : 2);
    assert.equal(await s.caller.execute('add', { a: 1, b: 2 }), 3, 'another command is served');
    const states = await s.commandCircuits('trip');
    assert.ok(states.every((st) => st === 'open'), `every member's circuit for trip is open: ${states.join(', ')}`);
  });
});

describe('streams', () => {
  both('items arrive in order, and a slow consumer holds the generator back (credit)', async (s) => {
    const progress = file('progress');
    const hwm = 4;
    const it = s.caller.stream<number>('count', { n: 500, progress }, { highWaterMark: hwm });
    assert.equal((await it.next()).value, 0);
    // What is checked is that nothing runs ahead while the consumer waits: the credit stops the generator.
    await new Promise((r) => setTimeout(r, 400));
    const produced = Number(readFileSync(progress, 'utf8'));
    assert.ok(produced <= 2 * hwm + 3, `the generator ran ${produced} items ahead of a consumer that took 1 (highWaterMark ${hwm})`);
    const rest: number[] = [];
    for await (const x of it) rest.push(x);
    assert.deepEqual(rest, Array.from({ length: 499 }, (_, i) => i + 1));
  });

  both('break closes the generator in Python (its finally runs), and the call ends well', async (s) => {
    const closed = file('closed');
    const got: number[] = [];
    for await (const x of s.caller.stream<number>('count', { n: 1_000_000, closed }, { highWaterMark: 8 })) {
      got.push(x);
      if (got.length === 3) break;
    }
    assert.deepEqual(got, [0, 1, 2]);
    assert.deepEqual(await linesOf(closed, 1), ['closed']);
    const [end] = s.seen('call:end').filter((e) => e.command === 'count');
    assert.equal(end?.ok, true);
  });

  both('an exception mid-stream ends it with the PoolError and traceback, after the items before it', async (s) => {
    const got: unknown[] = [];
    let err: unknown = null;
    try {
      for await (const x of s.caller.stream('gen_fail')) got.push(x);
    } catch (e) {
      err = e;
    }
    assert.deepEqual(got, [1, 2]);
    assert.ok(err instanceof PoolError);
    assert.equal(err.category, 'python_error');
    assert.equal(err.python?.type, 'ValueError');
    assert.match(err.python?.traceback ?? '', /conformance\.py/);
  });

  both('a death before the first item re-sends the stream; after it, PYFLEET_STREAM_BROKEN with the items that arrived', async (s) => {
    const ledger = file('ledger');
    const got: unknown[] = [];
    for await (const x of s.caller.stream('gen_die', { ledger, die_before: true })) got.push(x);
    assert.deepEqual(got, ['first', 'second']);
    assert.equal(runs(ledger), 2);
    const broken: unknown[] = [];
    let err: unknown = null;
    try {
      for await (const x of s.caller.stream('gen_die', { ledger: file('ledger'), die_after: true })) broken.push(x);
    } catch (e) {
      err = e;
    }
    assert.deepEqual(broken, ['first']);
    assert.ok(err instanceof PoolError);
    assert.equal(err.code, 'PYFLEET_STREAM_BROKEN');
    assert.equal(err.category, 'connection_error');
    assert.equal(err.details?.items, 1);
  });

  both('chunkTimeoutMs bounds the wait for the next item', async (s) => {
    const got: number[] = [];
    let err: unknown = null;
    const t0 = performance.now();
    try {
      for await (const x of s.caller.stream<number>('count', { n: 5, pause_after: 2, pause_ms: 3_000 }, { chunkTimeoutMs: 400 })) got.push(x);
    } catch (e) {
      err = e;
    }
    assert.deepEqual(got, [0, 1]);
    assert.ok(err instanceof PoolError && err.code === 'PYFLEET_TIMEOUT', String(err));
    assert.ok(performance.now() - t0 < 2_500, 'not the whole pause');
  });
});

describe('sessions', () => {
  both('a session\'s calls run one at a time, in the order they were made', async (s) => {
    const session = s.caller.session(`order-${s.kind}-${Date.now()}`);
    const made = Array.from({ length: 6 }, (_, i) => session.execute<number[]>('append', { x: i, ms: 30 }));
    const rs = await Promise.all(made);
    assert.deepEqual(rs.at(-1), [0, 1, 2, 3, 4, 5], 'no update lost, none out of order');
    assert.deepEqual(await session.execute('items'), [0, 1, 2, 3, 4, 5]);
    await session.close();
    assert.deepEqual(await session.execute('items'), [], 'a closed session starts empty');
    await session.close();
  });
});

describe('error shapes', () => {
  both('code, category, strategy and taken say what happened, for the caller\'s mistakes and the handler\'s', async (s) => {
    const unknown = await rejection(s.caller.execute('nope'));
    assert.deepEqual([unknown.code, unknown.category, unknown.strategy, unknown.taken], ['PYFLEET_UNKNOWN_COMMAND', 'python_error', 'abandon', false]);
    assert.match(unknown.message, /act_once/);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const bad = await rejection(s.caller.execute('add', circular));
    assert.deepEqual([bad.code, bad.category, bad.strategy, bad.taken], ['PYFLEET_INVALID_ARGS', 'communication_error', 'abandon', false]);
    const badTimeout = await rejection(s.caller.execute('add', {}, { timeoutMs: -1 }));
    assert.equal(badTimeout.code, 'PYFLEET_INVALID_ARGS');
    const gen = await rejection(s.caller.execute('count', { n: 1 }));
    assert.equal(gen.code, 'PYFLEET_INVALID_ARGS', 'execute on a generator is refused');
    const py = await rejection(s.caller.execute('add', { a: 1 }));
    assert.deepEqual([py.code, py.category, py.strategy, py.taken], ['PYFLEET_PYTHON_ERROR', 'python_error', 'abandon', true]);
    assert.equal(py.python?.type, 'KeyError');
    const ac = new AbortController();
    const p = s.caller.execute('act_once', { ledger: file('ledger'), mode: 'sleep', ms: 2_000 }, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('enough')), 200);
    const aborted = await rejection(p);
    assert.deepEqual([aborted.code, aborted.category, aborted.strategy], ['PYFLEET_ABORTED', 'system_error', 'abandon']);
  });
});

describe('stats', () => {
  both('calls, retries and errors by category are counted the same way', async (s) => {
    const ledger = file('ledger');
    await s.caller.execute('add', { a: 1, b: 1 });
    await s.caller.execute('act', { ledger, mode: 'die_first' });
    await rejection(s.caller.execute('act', { ledger: file('ledger'), mode: 'raise' }));
    const st = s.caller.stats();
    assert.equal(st.calls.total, 3);
    assert.equal(st.calls.succeeded, 2);
    assert.equal(st.calls.failed, 1);
    assert.equal(st.calls.inFlight, 0);
    assert.equal(st.calls.retries, 1);
    assert.equal(st.calls.settledTwice, 0);
    assert.equal(st.errorsByCategory.connection_error, 1);
    assert.equal(st.errorsByCategory.python_error, 1);
    assert.ok(st.retryBudget !== null && st.retryBudget.calls >= 3);
  });
});
