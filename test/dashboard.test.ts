/**
 * The live dashboard in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * it loads, shows the workers, and its tiles change state when a worker is SIGKILLed.
 *
 * PYFLEET_SCREENSHOT=docs/dashboard.png writes the README's screenshot (after a richer workload).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { createPool, type Pool } from '../src/pool/pool.js';
import { createServer, type PyfleetServer } from '../src/server/app.js';
import { alive, quiet, until } from './helpers/pool.js';

// The functions given to page.evaluate run in the browser; this project compiles without the DOM lib.
declare const document: { querySelector<T>(s: string): T | null; querySelectorAll(s: string): { length: number }; getElementById(id: string): { textContent: string | null } | null };
declare function getComputedStyle(el: unknown): { backgroundColor: string };
type HTMLElement = { innerText: string };

const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
const CHROMIUM = process.env.PYFLEET_CHROMIUM ?? '/usr/bin/chromium';
const FAST = { connection_error: { delays: [10, 20, 40] } };

let browser: Browser | null = null;
const pools: Pool[] = [];
const servers: PyfleetServer[] = [];
after(async () => {
  await browser?.close();
  await Promise.all(servers.map((s) => s.close()));
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
  await until(() => chromiumPids().length === 0, 5_000);
});

const haveChromium = existsSync(CHROMIUM);

/**
 * Live (not zombie) Chromium processes of this test's browser: every one of them runs with its
 * temporary profile (other test runs on the machine have profiles of their own).
 */
function chromiumPids(): number[] {
  if (profile === null) return [];
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(profile) && alive(Number(d))) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The profile directory of the browser this process launched (its main process is our child). */
function ownProfile(): string | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid !== process.pid) continue;
      const m = /playwright_chromiumdev_profile-[A-Za-z0-9]+/.exec(readFileSync(`/proc/${d}/cmdline`, 'utf8'));
      if (m !== null) return m[0];
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

let profile: string | null = null;

describe('dashboard', { skip: !haveChromium && !process.env.CI ? `no Chromium at ${CHROMIUM} (run .ci/install-chromium.sh)` : false }, () => {
  it('loads in headless Chromium, shows the workers with their calls in flight, sessions, and a killed worker turns red while its replacement appears', async (t) => {
    const pool = await createPool({ module: EXAMPLES, workers: 2, logger: quiet, policy: FAST, concurrency: 4 });
    pools.push(pool);
    // With a token, as when served beyond loopback: the page passes it on to its event stream.
    const server = await createServer({ pool, token: 'dash-t0ken', live: { sampleMs: 200, bucketMs: 5_000, buckets: 24 } });
    servers.push(server);
    const url = await server.listen({ port: 0 });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-crash-reporter', '--disable-breakpad'],
    });
    profile = ownProfile();
    assert.notEqual(profile, null, 'the browser runs with a profile of its own');
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${url}/?token=dash-t0ken`);
    await page.waitForSelector('#conn[data-conn="live"]');

    // The workers, as tiles colored by state.
    const [w1, w2] = pool.stats().workers;
    await page.waitForSelector(`.tile[data-worker-id="${w1.id}"][data-state="ready"]`);
    await page.waitForSelector(`.tile[data-worker-id="${w2.id}"][data-state="ready"]`);
    // The page redraws on every snapshot, so each tile is read in one go inside the page.
    const tile = (id: number) =>
      page.evaluate((wid) => {
        const el = document.querySelector<HTMLElement>(`.tile[data-worker-id="${wid}"]`);
        return el === null ? null : { color: getComputedStyle(el).backgroundColor, text: el.innerText.replace(/\s+/g, ' '), tiles: document.querySelectorAll('.tile').length };
      }, id);
    const first = await tile(w1.id);
    assert.equal(first?.tiles, 2);
    assert.equal(first?.color, 'rgb(47, 158, 68)');
    assert.match(first?.text ?? '', new RegExp(`#${w1.id} ready pid ${w1.pid}`));
    // Circuits, queue, calls, recoveries are drawn.
    assert.equal(await page.locator('.circuit[data-state="closed"]').count(), 1, 'pool_operations; a command gets its circuit on its first call');
    assert.match(await page.locator('#queue-now').innerText(), /0 waiting \(max 1,000\)/);

    // Some traffic and a Python error: the counters and the error chart follow.
    for (let i = 0; i < 5; i++) await pool.execute('add', { a: i, b: i });
    await pool.execute('fail', {}).catch(() => {});
    await page.waitForFunction(() => /python_error 1/.test(document.getElementById('errors-legend')!.textContent ?? ''));
    assert.ok((await page.locator('#errors-chart rect').count()) >= 1);
    // Each command's rate and latency: p50 and p99 of its calls, its calls/s while calls come.
    const row = (command: string) => page.locator(`#commands tr[data-command="${command}"]`).innerText();
    await page.waitForFunction(() => /^fail\t/.test(document.querySelector<HTMLElement>('#commands tr[data-command="fail"]')?.innerText ?? ''));
    assert.match(await row('add'), /^add\t[\d.]+\t[\d.]+ ms\t[\d.]+ ms\t5\t0$/);
    assert.match(await row('fail'), /\t1\t1$/);
    let going = true;
    const burst = (async () => {
      while (going) await pool.execute('echo', { x: 1 });
    })();
    await page.waitForFunction(() => Number((document.querySelector<HTMLElement>('#commands tr[data-command="echo"]')?.innerText ?? '').split('\t')[1]) > 0, undefined, { timeout: 5_000 });
    going = false;
    await burst;
    // Concurrency per worker: async calls share workers, each tile shows its calls in flight against the capacity.
    const asks = Array.from({ length: 5 }, (_, i) => pool.execute('ask', { prompt: `q${i}`, ms: 1_500 }));
    await until(() => pool.stats().workers.reduce((n, w) => n + w.inflight, 0) === 5);
    for (const w of pool.stats().workers) await page.waitForSelector(`.tile[data-worker-id="${w.id}"][data-inflight="${w.inflight}"][data-capacity="4"]`, { timeout: 5_000 });
    assert.match((await tile(w1.id))?.text ?? '', new RegExp(`${pool.stats().workers.find((w) => w.id === w1.id)!.inflight}/4 in flight`));
    await Promise.all(asks);
    await page.waitForSelector(`.tile[data-worker-id="${w1.id}"][data-inflight="0"]`, { timeout: 5_000 });
    // Each command's circuit is drawn on its own line.
    await page.waitForSelector('.circuit[data-circuit="worker_commands:add"][data-state="closed"]', { timeout: 5_000 });
    await page.waitForSelector('.circuit[data-circuit="worker_commands:fail"][data-state="closed"]', { timeout: 5_000 });

    // Kill a worker: its tile turns terminated (red) with the signal, and the replacement shows up and gets ready.
    process.kill(w1.pid!, 'SIGKILL');
    await page.waitForSelector(`.tile[data-worker-id="${w1.id}"][data-state="terminated"]`, { timeout: 5_000 });
    const dead = await tile(w1.id);
    assert.equal(dead?.color, 'rgb(201, 42, 42)');
    assert.match(dead?.text ?? '', /terminated killed by SIGKILL pid \d+/);
    await until(() => pool.stats().workers.some((w) => w.id !== w1.id && w.id !== w2.id && w.state === 'ready'));
    const fresh = pool.stats().workers.find((w) => w.id !== w1.id && w.id !== w2.id)!;
    await page.waitForSelector(`.tile[data-worker-id="${fresh.id}"][data-state="ready"]`, { timeout: 5_000 });
    assert.match(await page.locator('#restarts').innerText(), /crash\s+1/);
    assert.match(await page.locator('#feed').innerText(), new RegExp(`worker ${w1.id} .*exited: killed by SIGKILL`));

    // Sessions: durable, so the death of the session's worker restores it on another; the panel says so.
    const s = pool.session('dash');
    await s.execute('chat', { message: 'hello' });
    const holder = pool.stats().workers.find((w) => w.sessions === 1)!;
    await page.waitForFunction(() => /Durable\s*1/.test(document.getElementById('sessions')!.textContent ?? ''));
    process.kill(holder.pid!, 'SIGKILL');
    await until(() => pool.stats().workers.every((w) => w.id !== holder.id));
    assert.deepEqual(await s.execute('history', {}), ['hello']);
    await page.waitForFunction(() => /Restored\s*1/.test(document.getElementById('sessions')!.textContent ?? ''));
    const sessions = await page.locator('#sessions').innerText();
    assert.match(sessions, /Sessions\s+1/);
    assert.match(sessions, /Snapshots\s+1/);
    assert.match(sessions, /Restores\s+1, \d+ ms avg/);
    assert.match(await page.locator('#feed').innerText(), /session dash restored/);
    // Streams: counted as they end.
    for await (const _ of pool.stream('tokens', { text: 'a b', ms: 1 }));
    await page.waitForFunction(() => /Ended\s*1/.test(document.getElementById('streams')!.textContent ?? ''));

    // Light: the page, its stylesheet, its script and the event stream; nothing from elsewhere.
    const own = requests.filter((r) => r.startsWith(url));
    assert.deepEqual(requests.filter((r) => !r.startsWith(url)), []);
    assert.deepEqual([...new Set(own.map((r) => new URL(r).pathname))].sort(), ['/', '/dashboard.css', '/dashboard.js', '/events']);
    assert.deepEqual(pageErrors, []);

    const shot = process.env.PYFLEET_SCREENSHOT;
    if (shot) {
      await richWorkload(pool, w2.pid!);
      await page.waitForTimeout(700);
      await page.screenshot({ path: shot, fullPage: true });
      t.diagnostic(`screenshot written to ${shot}`);
    } else {
      const file = path.join(mkdtempSync(path.join(tmpdir(), 'pyfleet-dash-')), 'dashboard.png');
      await page.screenshot({ path: file });
      assert.ok(readFileSync(file).length > 10_000);
    }
    await browser.close();
    browser = null;
    await until(() => chromiumPids().length === 0, 5_000);
  });
});

/** For the README's screenshot: a busier pool with errors of several kinds, a retry and a second restart. */
async function richWorkload(pool: Pool, victimPid: number): Promise<void> {
  const calls: Array<Promise<unknown>> = [];
  for (let i = 0; i < 60; i++) calls.push(pool.execute('add', { a: i, b: 1 }));
  for (let i = 0; i < 4; i++) calls.push(pool.execute('fail', { message: `bad row ${i}` }).catch(() => {}));
  for (let i = 0; i < 2; i++) calls.push(pool.execute('sleep', { ms: 300 }, { timeoutMs: 100 }).catch(() => {}));
  calls.push(pool.execute('primes', { n: 30000 }));
  const busy = pool.execute('sleep', { ms: 250 }).catch(() => {});
  await new Promise((r) => setTimeout(r, 60));
  try {
    process.kill(victimPid, 'SIGKILL');
  } catch {
    // already gone
  }
  await Promise.all([...calls, busy]);
  for (let i = 0; i < 40; i++) await pool.execute('echo', { i });
}
