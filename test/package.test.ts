/**
 * The package as a user gets it: `npm pack`, then `npm install` of the tarball into empty
 * projects (`--prefer-offline --omit=dev --engine-strict`), one without the optional peers and
 * one with them. Counts what was installed, runs the README's quickstart as written, an ESM, a
 * CommonJS and a TypeScript consumer, the CLI, and checks PYFLEET_MISSING_DEPENDENCY.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT } from './helpers/cli.js';
import { startNats, type NatsServer } from './helpers/nats.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: 180_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): Promise<Run> {
  const r = await run(cmd, args, cwd, env);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Packages in node_modules (npm's own list of what it installed) and the bytes of their files. */
function installed(project: string): { packages: number; bytes: number } {
  const lock = JSON.parse(readFileSync(path.join(project, 'node_modules', '.package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) bytes += lstatSync(p).size;
    }
  };
  walk(path.join(project, 'node_modules'));
  return { packages: Object.keys(lock.packages).length, bytes };
}

// semver from our own dev tree (fastify's): does every Node >= 20 satisfy a package's engines.node?
const semver = createRequire(import.meta.url)('semver') as { subset(sub: string, dom: string): boolean };

/** Installed packages whose engines.node leaves out some Node >= 20 (engine-strict here checks only this Node). */
function disagreeing(project: string): string[] {
  const lock = JSON.parse(readFileSync(path.join(project, 'node_modules', '.package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
  return Object.keys(lock.packages).flatMap((dir) => {
    const node = (JSON.parse(readFileSync(path.join(project, dir, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines?.node;
    return node === undefined || semver.subset('>=20', node) ? [] : [`${dir} (node ${node})`];
  });
}

const NPM_INSTALL = ['install', '--prefer-offline', '--omit=dev', '--engine-strict', '--no-audit', '--no-fund'];
const PEERS = ['fastify', 'ajv', 'prom-client', '@nats-io/transport-node@3.3', '@nats-io/kv@3.3'];
// An application on an older 1.x of the API than pyfleet was built with: pyfleet must use its copy.
const APP_OTEL = '@opentelemetry/api@1.4.1';

/** The README's first section: the code blocks of `## Quickstart`, up to the next heading of its level. */
function quickstart(): { install: string; files: Record<string, string>; command: string; prints: string } {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Quickstart\n');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end);
  const blocks = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], text: m[2] }));
  const files: Record<string, string> = {};
  for (const b of blocks) {
    const name = /^(?:#|\/\/) (\S+\.(?:py|mjs))\n/.exec(b.text)?.[1];
    if (name !== undefined) files[name] = b.text;
  }
  const sh = blocks.filter((b) => b.lang === 'sh').map((b) => b.text.trim());
  return { install: sh[0], files, command: sh[1], prints: blocks.find((b) => b.lang === 'text')!.text };
}

let work: string;
let tarball: string;
let bare: string;
let full: string;
let nats: NatsServer;
const figures: string[] = [];

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'pyfleet-pack-'));
  // npm pack runs `prepare`, so dist/ is built from the sources being tested.
  const packed = await ok('npm', ['pack', '--pack-destination', work, '--json'], ROOT);
  const info = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = path.join(work, info[0].filename);
  const maps = info[0].files.filter((f) => f.path.endsWith('.map'));
  assert.deepEqual(maps, [], 'no source maps ship: their sources do not');

  const q = quickstart();
  assert.equal(q.install, 'npm init -y && npm install pyfleet', 'the quickstart installs pyfleet');
  bare = path.join(work, 'bare');
  mkdirSync(bare);
  await ok('npm', ['init', '-y'], bare);
  await ok('npm', [...NPM_INSTALL, tarball], bare);

  full = path.join(work, 'full');
  mkdirSync(full);
  // README: on Node 20/21, --engine-strict with fastify needs this pin in the app's package.json.
  writeFileSync(path.join(full, 'package.json'), JSON.stringify({ name: 'full', version: '1.0.0', private: true, overrides: { 'light-my-request': '6.6.0' } }));
  const r = await ok('npm', [...NPM_INSTALL, tarball, ...PEERS, APP_OTEL], full);
  assert.doesNotMatch(r.stderr, /EBADENGINE/);
  nats = await startNats();
});

after(async () => {
  await nats?.dispose();
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
  if (figures.length > 0) process.stdout.write(`# ${figures.join('; ')}\n`);
});

test('npm install pyfleet (no optional peers): at most 20 packages and 6 MB, and --engine-strict accepts them', () => {
  const n = installed(bare);
  figures.push(`without peers: ${n.packages} packages, ${(n.bytes / 1e6).toFixed(2)} MB`, `with peers: ${installed(full).packages} packages, ${(installed(full).bytes / 1e6).toFixed(2)} MB`);
  assert.ok(n.packages <= 20, `${n.packages} packages`);
  assert.ok(n.bytes <= 6e6, `${n.bytes} bytes`);
  const lock = JSON.parse(readFileSync(path.join(bare, 'node_modules', '.package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
  for (const peer of ['fastify', 'ajv', 'prom-client', '@nats-io/transport-node', '@opentelemetry/api']) assert.ok(!(`node_modules/${peer}` in lock.packages), `${peer} is not installed`);
});

test('every package installed, the optional peers included, agrees with engines: node >= 20', () => {
  assert.deepEqual(disagreeing(bare), []);
  assert.deepEqual(disagreeing(full), []);
});

test("the README's first section runs as written in an empty project", async () => {
  const q = quickstart();
  // The bare project is the quickstart's first step done: `npm init -y`, then `npm install pyfleet` (the tarball).
  const dir = bare;
  assert.deepEqual(readdirSync(dir).sort(), ['node_modules', 'package-lock.json', 'package.json']);
  for (const [name, text] of Object.entries(q.files)) writeFileSync(path.join(dir, name), text);
  assert.deepEqual(Object.keys(q.files).sort(), ['handlers.py', 'quickstart.mjs']);
  const [cmd, ...args] = q.command.split(' ');
  const r = await ok(cmd, args, dir);
  assert.equal(r.stdout, q.prints);
  const call = await ok(path.join(dir, 'node_modules', '.bin', 'pyfleet'), ['call', 'add', '{"a": 1, "b": 2}', '--module', 'handlers.py'], dir);
  assert.equal(call.stdout.trim(), '3');
});

test('CommonJS: require("pyfleet") works, and what needs a missing peer says which npm install to run', async () => {
  writeFileSync(path.join(bare, 'handlers.py'), quickstart().files['handlers.py']);
  writeFileSync(
    path.join(bare, 'consumer.cjs'),
    `const { createPool, isPoolError } = require('pyfleet');
const out = {};
const code = async (name, f) => { try { await f(); out[name] = 'no error'; } catch (e) { out[name] = isPoolError(e) ? e.code + ': ' + e.details.install : String(e); } };
(async () => {
  const pool = await createPool({ module: 'handlers.py', workers: 1 });
  out.add = await pool.execute('add', { a: 2, b: 3 });
  await code('validateArgs', () => createPool({ module: 'handlers.py', validateArgs: true }));
  await code('server', () => require('pyfleet/server').createServer({ pool }));
  await code('fleet', () => require('pyfleet/fleet').connectFleet({ servers: 'nats://127.0.0.1:1', fleet: 'x' }));
  await code('metrics', () => new (require('pyfleet/telemetry').PyfleetMetrics)());
  await code('tracing', () => require('pyfleet/telemetry').instrument(pool));
  // A reporter traces by default only where @opentelemetry/api is installed: without it, no error.
  await code('reporter', () => new (require('pyfleet/telemetry').ErrorReporter)(pool, {}).close());
  await pool.close();
  console.log(JSON.stringify(out));
})();
`,
  );
  const r = await ok('node', ['consumer.cjs'], bare);
  assert.deepEqual(JSON.parse(r.stdout), {
    add: 5,
    validateArgs: 'PYFLEET_MISSING_DEPENDENCY: npm install ajv',
    server: 'PYFLEET_MISSING_DEPENDENCY: npm install fastify ajv prom-client',
    fleet: 'PYFLEET_MISSING_DEPENDENCY: npm install @nats-io/transport-node@3.3 @nats-io/kv@3.3',
    metrics: 'PYFLEET_MISSING_DEPENDENCY: npm install prom-client',
    tracing: 'PYFLEET_MISSING_DEPENDENCY: npm install @opentelemetry/api',
    reporter: 'no error',
  });
});

test('the CLI without the optional peers: serve and host say what to install, in one line; python-path works', async () => {
  const bin = path.join(bare, 'node_modules', '.bin', 'pyfleet');
  writeFileSync(path.join(bare, 'handlers.py'), quickstart().files['handlers.py']);
  for (const [args, install] of [
    [['serve', '--module', 'handlers.py', '--port', '0'], 'npm install fastify ajv prom-client'],
    [['host', '--module', 'handlers.py', '--nats', nats.url, '--fleet', 'x'], 'npm install @nats-io/transport-node@3.3 @nats-io/kv@3.3'],
  ] as const) {
    const r = await run(bin, [...args], bare);
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('{'));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /PYFLEET_MISSING_DEPENDENCY/);
    assert.ok(lines[0].includes(`\`${install}\``), lines[0]);
  }
  const p = await ok(bin, ['python-path'], bare);
  const dir = p.stdout.trim();
  assert.ok(readdirSync(path.join(dir, 'pyfleet')).includes('py.typed'), dir);
  await ok('python3', ['-c', 'import pyfleet.testing'], bare, { PYTHONPATH: dir });
});

test('TypeScript strict, NodeNext, skipLibCheck off, without the peers: the quickstart (ESM) and a .cts consumer compile and run', async () => {
  const dir = bare;
  const q = quickstart();
  writeFileSync(path.join(dir, 'handlers.py'), q.files['handlers.py']);
  writeFileSync(path.join(dir, 'quickstart.mts'), q.files['quickstart.mjs']);
  writeFileSync(
    path.join(dir, 'consumer.cts'),
    `import { createPool, type PoolOptions } from 'pyfleet';
const options: PoolOptions = { module: 'handlers.py', workers: 1 };
createPool(options).then(async (pool) => { console.log(await pool.execute<number>('add', { a: 4, b: 5 })); await pool.close(); });
`,
  );
  writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', skipLibCheck: false, types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')], outDir: 'out' },
      files: ['quickstart.mts', 'consumer.cts'],
    }),
  );
  await ok('node', [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], dir);
  assert.equal((await ok('node', ['out/quickstart.mjs'], dir)).stdout, q.prints);
  assert.equal((await ok('node', ['out/consumer.cjs'], dir)).stdout.trim(), '9');
});

test("with the optional peers: the server, validation, metrics, the fleet's NATS client, and spans through the app's own @opentelemetry/api", async () => {
  writeFileSync(
    path.join(full, 'handlers.py'),
    'from typing import TypedDict\nfrom pyfleet import command\n\nclass AddArgs(TypedDict):\n    a: int\n    b: int\n\n@command(idempotent=True)\ndef add(args: AddArgs, ctx) -> int:\n    return args["a"] + args["b"]\n',
  );
  writeFileSync(
    path.join(full, 'consumer.mjs'),
    `import { trace } from '@opentelemetry/api';
import { createPool } from 'pyfleet';
import { createServer } from 'pyfleet/server';
import { connectFleet } from 'pyfleet/fleet';
import { instrument, PyfleetMetrics } from 'pyfleet/telemetry';
// A tracer provider registered with the app's copy of the API (1.4.1), as an SDK would.
const ended = [];
const span = (name) => ({ isRecording: () => true, spanContext: () => ({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 }),
  setAttribute() { return this; }, setAttributes() { return this; }, addEvent() { return this; }, setStatus() { return this; }, updateName() { return this; }, recordException() {}, end() { ended.push(name); } });
trace.setGlobalTracerProvider({ getTracer: () => ({ startSpan: span, startActiveSpan: () => { throw new Error('unused'); } }) });
const out = {};
const pool = await createPool({ module: 'handlers.py', workers: 1, validateArgs: true });
instrument(pool);
out.add = await pool.execute('add', { a: 1, b: 2 });
out.spans = [...ended];
out.invalid = await pool.execute('add', { a: 'x', b: 2 }).catch((e) => e.code);
const server = await createServer({ pool });
const url = await server.listen({ port: 0, host: '127.0.0.1' });
out.http = await (await fetch(url + '/v1/call/add', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a": 2, "b": 2}' })).json();
out.metrics = (await new PyfleetMetrics().metrics()).includes('pyfleet_calls_total');
await server.close();
const fleet = await connectFleet({ servers: process.env.NATS_URL, fleet: 'pack-test' });
out.fleet = typeof fleet.stats;
await fleet.close();
await pool.close();
console.log(JSON.stringify(out));
`,
  );
  const r = await ok('node', ['consumer.mjs'], full, { NATS_URL: nats.url });
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { add: 3, spans: ['pyfleet.execute add'], invalid: 'PYFLEET_INVALID_ARGS', http: { result: 4 }, metrics: true, fleet: 'function' });
});
