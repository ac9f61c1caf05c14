import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { scanWorkersOf } from '../src/cli/chaos/processes.js';
import { cli } from './helpers/cli.js';
import { lines, tempFile } from './helpers/pool.js';

const HANDLERS = 'examples/handlers.py';
const STREAMS = 'test/fixtures/http_streams.py';

/** The number in the first line of `text` that starts with `label` (after optional spaces). */
function figure(text: string, label: string): number {
  const m = new RegExp(`^\\s*${label}\\s+(\\d+(?:\\.\\d+)?)`, 'm').exec(text);
  assert.ok(m, `no line "${label} <number>" in:\n${text}`);
  return Number(m[1]);
}

describe('pyfleet call', () => {
  it('prints the JSON result on stdout and exits 0', async () => {
    const r = await cli(['call', 'add', '{"a": 1, "b": 2}', '--module', HANDLERS]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '3\n');
    const echo = await cli(['call', 'echo', '{"x": [1, "two", null]}', '--module', HANDLERS, '--timeout', '5000']);
    assert.equal(echo.code, 0, echo.stderr);
    assert.deepEqual(JSON.parse(echo.stdout), { x: [1, 'two', null] });
  });

  it('prints code, category, message and the Python traceback on stderr and exits 1 on a PoolError', async () => {
    const r = await cli(['call', 'fail', '{"message": "cli says no"}', '--module', HANDLERS]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /PYFLEET_PYTHON_ERROR/);
    assert.match(r.stderr, /python_error/);
    assert.match(r.stderr, /ValueError: cli says no/);
    assert.match(r.stderr, /Traceback \(most recent call last\)/);
    assert.match(r.stderr, /handlers\.py", line \d+, in fail/);
  });

  it('exits 1 with a timeout_error when the call takes longer than --timeout', async () => {
    const r = await cli(['call', 'sleep', '{"ms": 3000}', '--module', HANDLERS, '--timeout', '200']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /PYFLEET_TIMEOUT \(timeout_error\)/);
  });

  it('exits 1 for an unknown command or a module that fails to import, 2 for bad JSON', async () => {
    const unknown = await cli(['call', 'nope', '--module', HANDLERS]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /PYFLEET_UNKNOWN_COMMAND/);
    const missing = await cli(['call', 'add', '--module', 'examples/no_such_module.py']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /initialization_error/);
    const badJson = await cli(['call', 'add', '{a: 1}', '--module', HANDLERS]);
    assert.equal(badJson.code, 2);
    assert.match(badJson.stderr, /must be JSON/);
  });

  it('prints a generator line by line, each item as it arrives', async () => {
    const gate = tempFile('gate');
    let firstWhileBlocked = false;
    const r = await cli(['call', 'gated', JSON.stringify({ gate }), '--module', STREAMS], 60_000, undefined, (stdout) => {
      // The generator waits on the gate after its first item: the line came before the generator ended.
      if (stdout === '"first"\n' && !firstWhileBlocked) {
        firstWhileBlocked = true;
        writeFileSync(gate, '');
      }
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(firstWhileBlocked, `stdout: ${r.stdout}`);
    assert.equal(r.stdout, '"first"\n"second"\n');
    // Binary items print as base64, as pyfleet serve sends them.
    const b = await cli(['call', 'blobs', '--module', STREAMS]);
    assert.equal(b.stdout, `"AAH/"\n{"data":"AAECAw==","n":4}\n`);
  });

  it('Ctrl-C (SIGINT) stops a stream cleanly: the generator is closed in Python, exit 130, no worker left', async () => {
    const file = tempFile('endless.log');
    let pid = 0;
    let signalled = false;
    const r = await cli(['call', 'endless', JSON.stringify({ path: file }), '--module', STREAMS], 60_000, undefined, (stdout, child) => {
      pid = child.pid!;
      if (!signalled && stdout.split('\n').length > 3) {
        signalled = true;
        child.kill('SIGINT');
      }
    });
    assert.equal(r.code, 130, r.stderr);
    const got = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as number);
    assert.ok(got.length >= 3, r.stdout);
    assert.deepEqual(got, got.map((_, i) => i), 'whole lines, in order');
    assert.match(r.stderr, new RegExp(`interrupted after ${got.length} items; the generator was closed`));
    assert.deepEqual(lines(file), ['closed'], "the generator's finally ran");
    assert.deepEqual(scanWorkersOf(pid), []);
  });

  it('a reader that closes the pipe (| head -2) stops the stream the same way, exit 0', async () => {
    const file = tempFile('endless-pipe.log');
    let closed = false;
    const r = await cli(['call', 'endless', JSON.stringify({ path: file }), '--module', STREAMS], 60_000, undefined, (stdout, child) => {
      if (!closed && stdout.split('\n').length > 2) {
        closed = true;
        child.stdout!.destroy();
      }
    });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE/);
    assert.deepEqual(lines(file), ['closed'], "the generator's finally ran");
  });

  it('a stream that fails mid-way keeps its items on stdout, prints the traceback and exits 1', async () => {
    const r = await cli(['call', 'breaks', '--module', STREAMS]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '1\n2\n');
    assert.match(r.stderr, /PYFLEET_PYTHON_ERROR \(python_error\)/);
    assert.match(r.stderr, /ValueError: broke after two/);
    assert.match(r.stderr, /Traceback \(most recent call last\)/);
  });

  it('prints the version from package.json', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await cli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });
});

describe('pyfleet demo', () => {
  it('runs a mixed workload with crashes and prints the table', async () => {
    const r = await cli(['demo', '--duration', '2']);
    assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const out = r.stdout;
    // The progress display goes to stderr, plain lines when it is not a terminal.
    assert.match(r.stderr, /demo (\d+%|done)/);
    for (const label of ['command', 'total', 'errors by category', 'python_error', 'latency p50', 'latency p99', 'worker restarts', 'calls', 'successes']) {
      assert.ok(out.includes(label), `"${label}" missing from:\n${out}`);
    }
    const calls = figure(out, 'calls');
    const successes = figure(out, 'successes');
    const errors = figure(out, 'errors');
    assert.ok(calls >= 50, `only ${calls} calls in 2 s`);
    assert.equal(successes + errors, calls);
    assert.ok(successes > errors, out);
    // The workload's Python exceptions, a crash injected by chaos (seed 1 kills the worker on the second call) and restarts.
    assert.ok(figure(out, 'python_error') > 0, out);
    assert.ok(figure(out, 'worker crashes injected') >= 1, out);
    assert.ok(figure(out, 'worker restarts') >= 1, out);
    assert.equal(figure(out, 'lost calls'), 0);
    const p50 = figure(out, 'latency p50');
    const p99 = figure(out, 'latency p99');
    assert.ok(p50 > 0 && p99 >= p50, out);
    assert.ok(r.ms < 30_000, `demo --duration 2 took ${r.ms} ms`);
  });
});
