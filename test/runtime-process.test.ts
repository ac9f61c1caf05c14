/**
 * The worker process's own life: it dies with its parent by PR_SET_PDEATHSIG alone, or by the
 * heartbeat thread's parent poll alone (each switched off in turn), and exits at once when its
 * parent is not the host it was started by.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { encodeFrame } from '../src/protocol/frame.js';
import { alive, until } from './helpers/pool.js';
import { PYTHON_DIR, RawWorker, RUNTIME_FIXTURES, workerEnv } from './helpers/raw-worker.js';

const HANDLERS = `${RUNTIME_FIXTURES}handlers.py`;

/**
 * Starts `middle.py`, which starts a worker on the fds this test holds, gives the worker a long
 * call, then SIGKILLs the middle process. Returns whether the worker died within `withinMs`.
 */
async function orphan(env: Record<string, string>, withinMs: number): Promise<{ died: boolean; pid: number }> {
  const middle = spawn('python3', [`${RUNTIME_FIXTURES}middle.py`, HANDLERS], {
    env: workerEnv({ module: HANDLERS, env }),
    stdio: ['pipe', 'pipe', 'inherit', 'pipe', 'pipe'],
  });
  const pid = await new Promise<number>((resolve) => (middle.stdout as Readable).once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  // The worker's hello and heartbeats arrive on fd 4, which this test holds open (it never sees EOF there).
  const out = middle.stdio[4] as Readable;
  // The worker's end goes away when it dies: a reset there is expected, not a failure.
  out.on('error', () => {});
  (middle.stdio[3] as Writable).on('error', () => {});
  await new Promise<void>((resolve) => out.once('data', () => resolve()));
  out.resume();
  (middle.stdio[3] as Writable).write(encodeFrame(`{"t":"call","id":1,"cmd":"sleep","a":{"ms":60000},"dl":0}`, 1 << 20));
  middle.kill('SIGKILL');
  await new Promise((r) => middle.once('exit', r));
  let died = true;
  try {
    await until(() => !alive(pid), withinMs, 5);
  } catch {
    died = false;
  }
  if (!died) process.kill(pid, 'SIGKILL');
  (middle.stdio[3] as Writable).destroy();
  out.destroy();
  return { died, pid };
}

describe('runtime: no orphans', () => {
  it('PR_SET_PDEATHSIG alone kills a busy worker when its parent dies (parent poll off)', async () => {
    const t0 = performance.now();
    const r = await orphan({ PYFLEET_PARENT_POLL: '0', PYFLEET_HEARTBEAT_MS: '50' }, 2000);
    assert.ok(r.died, 'the worker outlived its parent');
    assert.ok(performance.now() - t0 < 2000);
  });

  it("the heartbeat thread's parent poll alone kills it (PDEATHSIG off)", async () => {
    const r = await orphan({ PYFLEET_PDEATHSIG: '0', PYFLEET_HEARTBEAT_MS: '50' }, 2000);
    assert.ok(r.died, 'the worker outlived its parent');
  });

  it('with both off, the worker outlives its parent: each test above shows one mechanism at work', async () => {
    const r = await orphan({ PYFLEET_PDEATHSIG: '0', PYFLEET_PARENT_POLL: '0', PYFLEET_HEARTBEAT_MS: '50' }, 500);
    assert.equal(r.died, false);
  });

  it('says on stderr, in one line, when PR_SET_PDEATHSIG cannot be set, and serves anyway', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYTHONPATH: `${RUNTIME_FIXTURES}no_ctypes:${PYTHON_DIR}` } });
    try {
      assert.equal(await w.value('add', { a: 1, b: 2 }), 3);
      const said = w.stderr.split('\n').filter((l) => l.includes('PR_SET_PDEATHSIG'));
      assert.equal(said.length, 1);
      assert.match(said[0], /^pyfleet worker: prctl\(PR_SET_PDEATHSIG\) failed \(ImportError: ctypes is not available in this test\); only the heartbeat thread's parent poll ends this worker if the host dies$/);
    } finally {
      w.kill();
    }
    const ok = await RawWorker.start({ module: HANDLERS });
    assert.equal(await ok.value('pid'), ok.pid);
    ok.kill();
    assert.equal(ok.stderr, '', 'nothing said when it works');
  });

  it('exits at once when its parent is not PYFLEET_PARENT_PID', async () => {
    const w = await RawWorker.start({ module: HANDLERS, env: { PYFLEET_PARENT_PID: '1' }, noHello: true });
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    assert.equal(w.hello, null);
    assert.equal(w.messages.length, 0);
  });
});
