/**
 * The README's error codes that only real processes produce, each produced by one: a missing
 * interpreter, no worker that can start, a worker over its memory limit, a worker whose
 * heartbeats stop, a fleet with no host serving (on a real nats-server); and the README's promise
 * that workers die with the host on `process.exit`, with every other way of dying switched off.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ERROR_CODES } from '../src/errors/codes.js';
import { connectFleet } from '../src/fleet/index.js';
import { createPool, type Pool } from '../src/index.js';
import type { EventPayloads } from '../src/telemetry/channels.js';
import { ROOT } from './helpers/cli.js';
import { killAllHosts, nextEvent, orphansOf, startHostProc } from './helpers/fleet.js';
import { startNats, type NatsServer } from './helpers/nats.js';
import { FAULTS, FIXTURES, alive, memoryLogger, rejection, tempFile, until } from './helpers/pool.js';

/** Resolves with the first `pool:error` of `pool` with this code. */
function poolError(pool: Pool, code: string, timeoutMs = 15_000): Promise<EventPayloads['pool:error']> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no pool:error ${code} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = pool.on('pool:error', (e) => {
      if (e.code !== code) return;
      clearTimeout(t);
      off();
      resolve(e);
    });
  });
}

/** The category and retryable flag the README's table gives the code (the codes table holds them). */
function asDocumented(e: { code: string; category: string; retryable?: boolean }): void {
  const facts = ERROR_CODES[e.code as keyof typeof ERROR_CODES];
  assert.ok(facts, `${e.code} is in the codes table`);
  assert.equal(e.category, facts.category, `${e.code}'s category`);
  if (e.retryable !== undefined) assert.equal(e.retryable, facts.retryable, `${e.code}'s retryable`);
}

describe('error codes only a real process produces', () => {
  it('PYFLEET_SPAWN_FAILED: createPool with an interpreter that is not there, or is not a program', async () => {
    const missing = await rejection(createPool({ module: FAULTS, python: '/nonexistent/pyfleet-python3', logger: memoryLogger() }));
    assert.equal(missing.code, 'PYFLEET_SPAWN_FAILED');
    assert.equal(missing.category, 'initialization_error');
    assert.equal(missing.retryable, true);
    assert.match(missing.message, /\/nonexistent\/pyfleet-python3/);
    assert.match(missing.message, /python option or \$PYFLEET_PYTHON/, 'says what to set');

    const notAProgram = tempFile('python3');
    writeFileSync(notAProgram, 'not an interpreter\n');
    const refused = await rejection(createPool({ module: FAULTS, python: notAProgram, logger: memoryLogger() }));
    assert.equal(refused.code, 'PYFLEET_SPAWN_FAILED');
    assert.match(refused.message, /EACCES/);
    asDocumented(refused);
  });

  it('PYFLEET_SPAWN_FAILED: an interpreter that went away after the pool started fails each restart, reported on pool:error', async () => {
    const real = execFileSync('/usr/bin/python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
    const link = tempFile('python3');
    symlinkSync(real, link);
    const pool = await createPool({ module: FAULTS, python: link, workers: 1, logger: memoryLogger(), restart: { baseDelayMs: 20, maxDelayMs: 50 } });
    try {
      const failed = poolError(pool, 'PYFLEET_SPAWN_FAILED');
      rmSync(link);
      process.kill(pool.pids()[0], 'SIGKILL');
      const e = await failed;
      asDocumented(e);
      assert.match(e.message, /ENOENT/);
      assert.match(e.message, new RegExp(link.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    } finally {
      await pool.close();
    }
  });

  it('PYFLEET_NO_WORKERS: a call waits queueTimeoutMs while no worker can be started, then says so', async () => {
    const flag = tempFile('import.flag');
    const pool = await createPool({
      module: path.join(FIXTURES, 'import_fails_while_flag.py'),
      env: { IMPORT_FAIL_FLAG: flag },
      workers: { min: 0, max: 1 },
      idleTimeoutMs: 50,
      queueTimeoutMs: 600,
      logger: memoryLogger(),
    });
    try {
      // The first worker (started to learn the commands) is idle above min: it is stopped.
      await until(() => pool.stats().workers.length === 0);
      writeFileSync(flag, 'down');
      const t0 = performance.now();
      const e = await rejection(pool.execute('pid'));
      const waited = performance.now() - t0;
      assert.equal(e.code, 'PYFLEET_NO_WORKERS');
      asDocumented(e);
      assert.equal(e.taken, false);
      assert.match(e.message, /No worker could be started/);
      assert.ok(waited >= 550, `failed after ${Math.round(waited)} ms, before queueTimeoutMs (600)`);
      // The start it tried failed as the import does: the log says why.
      assert.ok(pool.stats().errorsByCategory.initialization_error >= 1);
    } finally {
      await pool.close();
    }
  });

  it('PYFLEET_MEMORY_LIMIT: a worker past recycle.maxMemoryMb is reported with the code, and recycled', async () => {
    const pool = await createPool({ module: FAULTS, workers: 1, logger: memoryLogger(), recycle: { maxMemoryMb: 60 }, healthCheck: { intervalMs: 50, maxMissed: 20 } });
    try {
      const pid = await pool.execute<number>('pid', {});
      const id = pool.stats().workers[0].id;
      const over = poolError(pool, 'PYFLEET_MEMORY_LIMIT');
      await pool.execute('grow', { mb: 80 });
      const e = await over;
      asDocumented(e);
      assert.equal(e.workerId, id);
      assert.match(e.message, /over recycle\.maxMemoryMb \(60\); it is recycled/);
      await until(() => !pool.pids().includes(pid) && pool.stats().workers.some((w) => w.state === 'ready'));
      assert.equal(pool.stats().recoveries.byStrategy.recycle_worker.succeeded, 1);
    } finally {
      await pool.close();
    }
  });

  it('PYFLEET_HEALTH_CHECK_FAILED: a worker whose heartbeats stop is reported with the code, and replaced', async () => {
    const pool = await createPool({ module: FAULTS, workers: 1, logger: memoryLogger(), chaos: { heartbeatStall: 1, heartbeatStallMs: 5_000, seed: 1 }, healthCheck: { intervalMs: 50, maxMissed: 3 } });
    try {
      const pid = pool.pids()[0];
      const silent = poolError(pool, 'PYFLEET_HEALTH_CHECK_FAILED');
      await pool.execute('add', { a: 1, b: 1 });
      const e = await silent;
      asDocumented(e);
      assert.match(e.message, /heartbeat/i);
      await until(() => !alive(pid));
      // Each such death is counted once as an error, as the other failures are (a loaded machine may starve a heartbeat more than once).
      const s = pool.stats();
      assert.ok(s.restarts.byReason.health_check >= 1);
      assert.equal(s.errorsByCategory.health_check_error, s.restarts.byReason.health_check);
    } finally {
      await pool.close();
    }
  });
});

describe('PYFLEET_NO_HOSTS: a fleet with no host serving (real nats-server)', () => {
  let srv: NatsServer;
  before(async () => {
    srv = await startNats();
  });
  after(async () => {
    await killAllHosts();
    await srv?.dispose();
  });

  it('no host ever announced itself: execute, stream and ready() fail after their wait, saying how to start one', async () => {
    const fleet = await connectFleet({ servers: srv.url, fleet: 'nobody', queueTimeoutMs: 500 });
    try {
      const t0 = performance.now();
      const e = await rejection(fleet.execute('add', { a: 1, b: 2 }));
      assert.ok(performance.now() - t0 >= 450, 'it waited queueTimeoutMs for a host');
      assert.equal(e.code, 'PYFLEET_NO_HOSTS');
      asDocumented(e);
      assert.equal(e.taken, false, 'not sent');
      assert.match(e.message, /pyfleet host --fleet nobody/);
      const s = await rejection(
        (async () => {
          for await (const _ of fleet.stream('count', {})) assert.fail('no host: no item');
        })(),
      );
      assert.equal(s.code, 'PYFLEET_NO_HOSTS');
      const r = await rejection(fleet.ready({ hosts: 1, timeoutMs: 300 }));
      assert.equal(r.code, 'PYFLEET_NO_HOSTS');
      assert.match(r.message, /0 of 1 hosts alive/);
    } finally {
      await fleet.close();
    }
  });

  it('the only host left: the next call fails with PYFLEET_NO_HOSTS, not sent', async () => {
    const h = await startHostProc(srv.url, 'alone', { workers: 1 });
    const fleet = await connectFleet({ servers: srv.url, fleet: 'alone', queueTimeoutMs: 500 });
    try {
      await fleet.ready({ hosts: 1, timeoutMs: 10_000 });
      assert.equal(await fleet.execute('add', { a: 1, b: 2 }), 3);
      const left = nextEvent(fleet, 'host:left', (p) => p.hostId === h.id);
      h.kill('SIGTERM');
      await left;
      const e = await rejection(fleet.execute('add', { a: 1, b: 2 }));
      assert.equal(e.code, 'PYFLEET_NO_HOSTS');
      assert.equal(e.taken, false);
      assert.equal((await h.exited).code, 0);
      assert.deepEqual(await orphansOf([h.pid]), []);
    } finally {
      await fleet.close();
    }
  });
});

describe('workers die with the host on process.exit', () => {
  it('a host that exits without close() takes its busy workers with it, every other way of dying switched off', async () => {
    // The script starts two workers that each run a 60 s call, prints their pids and calls
    // process.exit(0): only the pool's exit hook can kill them (see the script).
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(FIXTURES, 'exit-without-close.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYFLEET_LOG_LEVEL: 'silent' } });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 0, err);
    const pids = JSON.parse(out.trim().split('\n').at(-1)!) as number[];
    assert.equal(pids.length, 2, out);
    try {
      await until(() => pids.every((p) => !alive(p)), 3_000);
    } finally {
      for (const p of pids.filter(alive)) process.kill(p, 'SIGKILL');
    }
  });
});
