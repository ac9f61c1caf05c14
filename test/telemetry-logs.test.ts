/**
 * The pool's log records, through a real pino writing JSON, from real Python workers: a worker's
 * pid has its own key (pino's `pid` is the host's), a traceback on stderr is one record with the
 * error under `err`, and one that ends quiet is logged all the same.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createPool, type Pool } from '../src/pool/pool.js';
import { groupTracebacks } from '../src/worker/tracebacks.js';
import { alive, until } from './helpers/pool.js';

const LOGS = fileURLToPath(new URL('./fixtures/logs.py', import.meta.url));

/** A pino logger at debug whose JSON lines are kept raw (duplicate keys show there, not after JSON.parse). */
function capture(): { logger: pino.Logger; raw: string[]; records: () => any[] } {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw.push(...chunk.toString().split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return { logger: pino({ name: 'pyfleet', level: 'debug' }, sink), raw, records: () => raw.map((l) => JSON.parse(l)) };
}

const pools: Pool[] = [];
after(async () => {
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

describe('worker log records', () => {
  it("carry the worker's pid as workerPid beside pino's pid; a chained traceback is one record, its error under err", async () => {
    const log = capture();
    const pool = await createPool({ module: LOGS, workers: 1, logger: log.logger });
    pools.push(pool);
    const workerPid = pool.pids()[0];
    assert.equal(await pool.execute('chained'), true);
    await until(() => log.records().some((r) => r.msg === 'hello from stdout') && log.records().some((r) => r.msg === 'after the traceback'));
    for (const line of log.raw) assert.equal(line.match(/"pid":/g)?.length ?? 0, 1, `one pid key: ${line}`);
    const out = log.records().find((r) => r.msg === 'hello from stdout');
    assert.equal(out.pid, process.pid);
    assert.equal(out.workerPid, workerPid);
    assert.equal(out.stream, 'stdout');
    const tracebacks = log.records().filter((r) => /Traceback|File "|\^\^\^|direct cause/.test(`${r.msg} ${r.err?.stack ?? ''}`));
    assert.equal(tracebacks.length, 1, JSON.stringify(log.records().map((r) => r.msg)));
    const [tb] = tracebacks;
    assert.equal(tb.level, 40);
    assert.equal(tb.msg, 'ValueError: bad value');
    assert.equal(tb.stream, 'stderr');
    assert.equal(tb.workerPid, workerPid);
    assert.equal(tb.err.type, 'ValueError');
    assert.equal(tb.err.message, 'bad value');
    assert.match(tb.err.stack, /^Traceback \(most recent call last\):\n {2}File .*\n[\s\S]*KeyError: 'x'\n\nThe above exception was the direct cause of the following exception:\n\nTraceback \(most recent call last\):\n[\s\S]*\nValueError: bad value$/);
    // In the order printed: the traceback, then the line after it.
    const msgs = log.records().map((r) => r.msg);
    assert.ok(msgs.indexOf('ValueError: bad value') < msgs.indexOf('after the traceback'));
  });

  it('a traceback with nothing after it is logged once it goes quiet', async () => {
    const log = capture();
    const pool = await createPool({ module: LOGS, workers: 1, logger: log.logger });
    pools.push(pool);
    await pool.execute('lonely');
    await until(() => log.records().some((r) => r.err?.type === 'RuntimeError'));
    const tb = log.records().filter((r) => r.stream === 'stderr');
    assert.equal(tb.length, 1, JSON.stringify(tb));
    assert.equal(tb[0].msg, 'RuntimeError: alone');
  });
});

describe('groupTracebacks', () => {
  it('keeps an exception group whole, passes other lines at once, and logs a cut-off traceback at the end', () => {
    const got: Array<{ line: string; type?: string; stack?: string }> = [];
    const g = groupTracebacks((line, err) => got.push({ line, type: err?.constructor.name, stack: err?.stack }));
    const group = [
      '  + Exception Group Traceback (most recent call last):',
      '  |   File "x.py", line 1, in <module>',
      '  | ExceptionGroup: two (2 sub-exceptions)',
      '  +-+---------------- 1 ----------------',
      '    | ValueError: one',
      '    +------------------------------------',
    ];
    g.line('before');
    for (const l of group) g.line(l);
    g.line('plain after');
    g.line('Traceback (most recent call last):');
    g.line('  File "y.py", line 2, in f');
    g.end();
    assert.deepEqual(got.map((x) => x.line), ['before', 'ExceptionGroup: two (2 sub-exceptions)', 'plain after', 'Traceback (most recent call last):']);
    assert.equal(got[1].type, 'ExceptionGroup');
    assert.equal(got[1].stack, group.join('\n'));
    assert.equal(got[0].stack, undefined);
    assert.equal(got[3].stack, 'Traceback (most recent call last):\n  File "y.py", line 2, in f');
  });
});
