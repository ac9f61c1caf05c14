import { AsyncLocalStorage } from 'node:async_hooks';
import type * as OTel from '@opentelemetry/api';
import type { Span, Tracer, TracerProvider } from '@opentelemetry/api';
import { requireOptional } from '../util/optional.js';
import { subscribe } from './channels.js';
import type { ObservedPool } from './source.js';

/** The name pyfleet's tracer is registered under. */
export const TRACER_NAME = 'pyfleet';

export interface TracingOptions {
  /** The tracer to use (default: `trace.getTracer('pyfleet')` from the global provider, a no-op until an SDK registers one). */
  tracer?: Tracer;
  /** Or a provider to take the tracer from. */
  tracerProvider?: TracerProvider;
}

/** What `instrument` needs: a pool whose `execute` can be wrapped. */
export interface TracedPool extends ObservedPool {
  execute(command: string, args?: unknown, options?: Record<string, unknown>): Promise<unknown>;
}

interface DetailedLike {
  value: unknown;
  via: string;
  attempts: number;
  workerId: number | null;
  durationMs: number;
}

/** The application's own copy (an optional peer, any 1.x): a second copy would not see its SDK. */
let otel: typeof OTel | undefined;
const api = (): typeof OTel => (otel ??= requireOptional<typeof OTel>('@opentelemetry/api', 'tracing'));

/** The span of the execute() whose async context an event is published in. */
const current = new AsyncLocalStorage<Span>();
let listeners = 0;
let unsubscribeEvents: Array<() => void> = [];

/**
 * Attempt failures and retries are published inside the call's async context (the retry loop
 * runs there), so the span is found through AsyncLocalStorage without any id in the payload.
 */
function retainEventListeners(): void {
  if (listeners++ > 0) return;
  unsubscribeEvents = [
    subscribe('pool:error', (e) => {
      const span = current.getStore();
      if (span === undefined) return;
      span.addEvent('pyfleet.attempt_failed', {
        'pyfleet.attempt': e.attempt,
        'error.type': e.code,
        'pyfleet.error.category': e.category,
        'pyfleet.error.severity': e.severity,
        'pyfleet.error.strategy': e.strategy,
        ...(e.workerId === null ? {} : { 'pyfleet.worker_id': e.workerId }),
      });
    }),
    subscribe('retry:attempt', (e) => {
      const span = current.getStore();
      if (span === undefined) return;
      span.addEvent('pyfleet.retry', { 'pyfleet.attempt': e.attempt + 1, 'pyfleet.retry.delay_ms': e.delayMs, ...(e.category === null ? {} : { 'pyfleet.error.category': e.category }) });
    }),
  ];
}

function releaseEventListeners(): void {
  if (--listeners > 0) return;
  for (const u of unsubscribeEvents) u();
  unsubscribeEvents = [];
}

/**
 * Starts the span of one execute, `pyfleet.execute <command>`, or returns null when the tracer
 * does not record (no SDK installed): then the caller runs the call untouched.
 */
export function startExecuteSpan(tracer: Tracer, poolId: number, command: string, sessionId: string | undefined): Span | null {
  const span = tracer.startSpan(`pyfleet.execute ${command}`, {
    kind: api().SpanKind.CLIENT,
    attributes: { 'pyfleet.command': command, 'pyfleet.pool_id': poolId, ...(sessionId === undefined ? {} : { 'pyfleet.session_id': sessionId }) },
  });
  if (span.isRecording()) return span;
  span.end();
  return null;
}

/**
 * Runs `run` (one execute, asked for its detailed result) inside `span`, made active for
 * OpenTelemetry and for pyfleet's events: one span event per failed attempt and per retry;
 * at the end the attempts, worker and where the value came from, or on failure the error's
 * code (`error.type`), category and severity with status ERROR. Ends the span.
 */
export function runInSpan<R extends DetailedLike>(span: Span, run: () => Promise<R>): Promise<R> {
  let p: Promise<R>;
  try {
    const { context, trace } = api();
    p = current.run(span, () => context.with(trace.setSpan(context.active(), span), run));
  } catch (e) {
    endWithError(span, e);
    throw e;
  }
  return p.then(
    (r) => {
      span.setAttributes({ 'pyfleet.attempts': r.attempts, 'pyfleet.via': r.via, ...(r.workerId === null ? {} : { 'pyfleet.worker_id': r.workerId }) });
      span.end();
      return r;
    },
    (e: unknown) => {
      endWithError(span, e);
      throw e;
    },
  );
}

function endWithError(span: Span, e: unknown): void {
  const err = e as { code?: unknown; category?: unknown; severity?: unknown; attempt?: unknown; message?: unknown; workerId?: unknown };
  const attrs: Record<string, string | number> = {};
  if (typeof err?.code === 'string') attrs['error.type'] = err.code;
  if (typeof err?.category === 'string') attrs['pyfleet.error.category'] = err.category;
  if (typeof err?.severity === 'string') attrs['pyfleet.error.severity'] = err.severity;
  if (typeof err?.attempt === 'number') attrs['pyfleet.attempts'] = err.attempt;
  if (typeof err?.workerId === 'number') attrs['pyfleet.worker_id'] = err.workerId;
  span.setAttributes(attrs);
  if (e instanceof Error) span.recordException(e);
  span.setStatus({ code: api().SpanStatusCode.ERROR, message: typeof err?.message === 'string' ? err.message : String(e) });
  span.end();
}

const instrumented = new WeakMap<TracedPool, () => void>();

/**
 * A span per `pool.execute` (and `pool.session(id).execute`), through `@opentelemetry/api`: a
 * no-op until an OpenTelemetry SDK registers a tracer provider. Wraps the instance's `execute`;
 * returns the function that restores it.
 */
export function instrument(pool: TracedPool, options: TracingOptions = {}): () => void {
  const done = instrumented.get(pool);
  if (done !== undefined) return done;
  const { trace } = api();
  const tracer = options.tracer ?? (options.tracerProvider ?? trace).getTracer(TRACER_NAME);
  const original = pool.execute;
  const own = Object.hasOwn(pool, 'execute');
  retainEventListeners();
  const wrapped = function execute(this: unknown, command: string, args?: unknown, opts?: Record<string, unknown>): Promise<unknown> {
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) return original.call(pool, command, args, opts);
    const o = opts ?? {};
    const span = startExecuteSpan(tracer, pool.id, String(command), typeof o.sessionId === 'string' ? o.sessionId : undefined);
    if (span === null) return original.call(pool, command, args, opts);
    const wantsDetailed = o.detailed === true;
    return runInSpan(span, () => original.call(pool, command, args, { ...o, detailed: true }) as Promise<DetailedLike>).then((r) => (wantsDetailed ? r : r.value));
  };
  (pool as { execute: TracedPool['execute'] }).execute = wrapped;
  const undo = (): void => {
    if (instrumented.get(pool) !== undo) return;
    instrumented.delete(pool);
    if (pool.execute === wrapped) {
      if (own) (pool as { execute: TracedPool['execute'] }).execute = original;
      else delete (pool as { execute?: unknown }).execute;
    }
    releaseEventListeners();
  };
  instrumented.set(pool, undo);
  return undo;
}
