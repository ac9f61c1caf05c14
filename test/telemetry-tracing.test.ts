/**
 * OpenTelemetry: a span per execute with attempts as events and the error category as an
 * attribute; a no-op without an SDK.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AsyncLocalStorage } from 'node:async_hooks';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace, type Context, type ContextManager } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createPool, type Pool } from '../src/pool/pool.js';
import { instrument, startExecuteSpan } from '../src/telemetry/tracing.js';
import { alive, quiet, until } from './helpers/pool.js';

const EXAMPLES = fileURLToPath(new URL('../examples/handlers.py', import.meta.url));
const FAST = { connection_error: { delays: [10, 20, 40] } };

const pools: Pool[] = [];
async function pool(workers = 2): Promise<Pool> {
  const p = await createPool({ module: EXAMPLES, workers, logger: quiet, policy: FAST });
  pools.push(p);
  return p;
}
after(async () => {
  trace.disable();
  const pids = pools.flatMap((p) => p.pids());
  await Promise.all(pools.map((p) => p.close()));
  await until(() => pids.every((pid) => !alive(pid)));
});

function sdk(): { provider: BasicTracerProvider; exporter: InMemorySpanExporter; spans: () => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  return { provider, exporter, spans: () => exporter.getFinishedSpans() };
}

describe('OpenTelemetry spans', () => {
  it('without an SDK: the tracer does not record and execute is unchanged', async () => {
    const p = await pool(1);
    assert.equal(startExecuteSpan(trace.getTracer('pyfleet'), p.id, 'add', undefined), null);
    const undo = instrument(p);
    assert.equal(await p.execute('add', { a: 1, b: 2 }), 3);
    const d = await p.execute('add', { a: 1, b: 2 }, { detailed: true });
    assert.equal(d.value, 3);
    assert.equal(d.via, 'pool');
    await assert.rejects(p.execute('fail', {}), { code: 'PYFLEET_PYTHON_ERROR' });
    await assert.rejects(p.execute('nope', {}), { code: 'PYFLEET_UNKNOWN_COMMAND' });
    undo();
    assert.equal(Object.hasOwn(p, 'execute'), false, 'undo restored the class method');
  });

  it('a span per execute with command, attempts, worker and via; an error span has the code, category and status ERROR', async () => {
    const p = await pool(1);
    const { provider, spans } = sdk();
    const undo = instrument(p, { tracerProvider: provider });
    assert.equal(await p.execute('add', { a: 1, b: 2 }), 3);
    await p.session('s-1').execute('echo', { x: 1 });
    await assert.rejects(p.execute('fail', { message: 'bad input' }), { code: 'PYFLEET_PYTHON_ERROR' });
    undo();
    await p.execute('add', { a: 1, b: 2 }); // not traced any more
    const [ok, sess, failed] = spans();
    assert.equal(spans().length, 3);

    assert.equal(ok.name, 'pyfleet.execute add');
    assert.equal(ok.kind, SpanKind.CLIENT);
    assert.equal(ok.attributes['pyfleet.command'], 'add');
    assert.equal(ok.attributes['pyfleet.pool_id'], p.id);
    assert.equal(ok.attributes['pyfleet.attempts'], 1);
    assert.equal(ok.attributes['pyfleet.via'], 'pool');
    assert.equal(ok.attributes['pyfleet.worker_id'], p.stats().workers[0].id);
    assert.equal(ok.status.code, SpanStatusCode.UNSET);
    assert.equal(ok.events.length, 0);
    assert.equal(ok.instrumentationScope.name, 'pyfleet');

    assert.equal(sess.attributes['pyfleet.session_id'], 's-1');

    assert.equal(failed.status.code, SpanStatusCode.ERROR);
    assert.match(failed.status.message ?? '', /ValueError: bad input/);
    assert.equal(failed.attributes['error.type'], 'PYFLEET_PYTHON_ERROR');
    assert.equal(failed.attributes['pyfleet.error.category'], 'python_error');
    assert.equal(failed.attributes['pyfleet.error.severity'], 'major');
    assert.deepEqual(
      failed.events.map((e) => e.name),
      ['pyfleet.attempt_failed', 'exception'],
    );
    const attempt = failed.events[0];
    assert.equal(attempt.attributes?.['pyfleet.attempt'], 1);
    assert.equal(attempt.attributes?.['pyfleet.error.category'], 'python_error');
    assert.equal(failed.events[1].attributes?.['exception.type'], 'PYFLEET_PYTHON_ERROR');
  });

  it('attempts are span events: a worker killed mid-call shows the failed attempt and the retry, on the right span only', async () => {
    const p = await pool(2);
    const { provider, spans } = sdk();
    const undo = instrument(p, { tracerProvider: provider });
    const slow = p.execute('sleep', { ms: 400 });
    await until(() => p.stats().workers.some((w) => w.state === 'busy'));
    const busy = p.stats().workers.find((w) => w.state === 'busy')!;
    // Another call runs meanwhile; its span must not get the other call's events.
    const other = p.execute('add', { a: 2, b: 2 });
    // Killed once the other call is done, so the other worker is free for the immediate re-send.
    await other;
    process.kill(busy.pid!, 'SIGKILL');
    await slow;
    undo();
    const s = spans().find((x) => x.name === 'pyfleet.execute sleep')!;
    const a = spans().find((x) => x.name === 'pyfleet.execute add')!;
    assert.equal(s.attributes['pyfleet.attempts'], 2);
    assert.notEqual(s.attributes['pyfleet.worker_id'], busy.id);
    assert.deepEqual(
      s.events.map((e) => [e.name, e.attributes?.['pyfleet.attempt'], e.attributes?.['pyfleet.error.category'] ?? null]),
      [
        ['pyfleet.attempt_failed', 1, 'connection_error'],
        ['pyfleet.retry', 2, 'connection_error'],
      ],
    );
    assert.equal(s.events[0].attributes?.['error.type'], 'PYFLEET_WORKER_CRASHED');
    assert.equal(s.events[0].attributes?.['pyfleet.worker_id'], busy.id);
    assert.equal(s.events[1].attributes?.['pyfleet.retry.delay_ms'], 0, 'the first re-send after a death goes at once to the free worker');
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    assert.equal(a.events.length, 0);
  });

  it('uses the global tracer provider once an SDK registers one, and nests under the caller span', async () => {
    const p = await pool(1);
    const { provider, spans } = sdk();
    const undo = instrument(p); // instrumented before the SDK is registered: the proxy tracer follows
    trace.setGlobalTracerProvider(provider);
    // What @opentelemetry/context-async-hooks does in a real SDK set-up, in a few lines.
    const als = new AsyncLocalStorage<Context>();
    context.setGlobalContextManager({
      active: () => als.getStore() ?? ROOT_CONTEXT,
      with: (ctx, fn, thisArg, ...args) => als.run(ctx, () => fn.call(thisArg, ...args)),
      bind: (_ctx, target) => target,
      enable() {
        return this;
      },
      disable() {
        return this;
      },
    } as ContextManager);
    try {
      const parent = provider.getTracer('app').startSpan('handle request');
      await context.with(trace.setSpan(context.active(), parent), () => p.execute('add', { a: 1, b: 1 }));
      parent.end();
      const child = spans().find((x) => x.name === 'pyfleet.execute add')!;
      assert.ok(child);
      assert.equal(child.parentSpanContext?.spanId, parent.spanContext().spanId);
    } finally {
      undo();
      trace.disable();
      context.disable();
    }
  });
});
