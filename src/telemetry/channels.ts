import diagnostics_channel from 'node:diagnostics_channel';

/**
 * Every event pyfleet publishes, one `node:diagnostics_channel` channel each, named
 * `pyfleet:<event>` (as undici does). Publishers check `hasSubscribers` first, so an event
 * nobody listens to costs one property read.
 */
export interface EventPayloads {
  'pool:error': {
    poolId: number;
    code: string;
    category: string;
    severity: string;
    strategy: string;
    workerId: number | null;
    sessionId: string | null;
    command: string | null;
    attempt: number;
    durationMs: number;
    message: string;
  };
  'circuit:opened': { circuit: string; failures: number; retryAfterMs: number; poolId?: number };
  'circuit:half_open': { circuit: string; poolId?: number };
  'circuit:closed': { circuit: string; poolId?: number };
  'retry:attempt': { command: string | null; attempt: number; delayMs: number; category: string | null; code: string | null; poolId?: number };
  'retry:exhausted': { command: string | null; attempts: number; category: string | null; code: string | null; reason: string; poolId?: number };
  'recovery:complete': { id: string; category: string; strategy: string; result: 'ok' | 'error'; durationMs: number; action: string; poolId?: number };
  'worker:transition': { poolId: number; workerId: number; pid: number | null; from: string; to: string; reason: string; durationMs: number };
  'worker:exit': { poolId: number; workerId: number; pid: number | null; exitCode: number | null; signal: string | null; reason: string };
  'worker:log': { poolId: number; workerId: number; stream: 'stdout' | 'stderr'; line: string };
  /** `stream`: made by `pool.stream()`. */
  'call:start': { poolId: number; callId: number; command: string; sessionId: string | null; stream: boolean };
  /** A call refused at the call site, before any attempt (unknown command, bad arguments or options, closed pool, ...). */
  'call:refused': { poolId: number; command: string; code: string; stream: boolean };
  /** `items`: the items a stream delivered (0 for `execute`). */
  'call:end': {
    poolId: number;
    callId: number;
    command: string;
    sessionId: string | null;
    ok: boolean;
    durationMs: number;
    attempts: number;
    code: string | null;
    via: 'pool' | 'fallback';
    stream: boolean;
    items: number;
  };
  /** `pool.close()` was called: the pool stops taking calls and drains (workers going down now are a shutdown, not an outage). */
  'pool:closing': { poolId: number };
  /** A session's snapshot was stored (or the store failed: `ok` false). */
  'session:snapshot': { poolId: number; sessionId: string; version: number; bytes: number; durationMs: number; ok: boolean; error: string | null };
  /** A session was restored on a new worker from its snapshot (or the restore failed). */
  'session:restore': { poolId: number; sessionId: string; version: number; bytes: number; durationMs: number; ok: boolean; error: string | null };
  /** A session's state cannot be kept as a snapshot (said once per session). */
  'session:not_durable': { poolId: number; sessionId: string; reason: string };
  /** One call's snapshot was large or slow (DEFAULTS.sessionLarge; said once per session): the keys that cost the most, and what to do. */
  'session:large': { poolId: number; sessionId: string; version: number; bytes: number; pickleMs: number; keys: Array<{ key: string; bytes: number }>; advice: string };
  // A fleet on NATS: a client's view of the hosts (from their heartbeats). `fleetId` is the client's.
  /** A host's first heartbeat (or its first after it was dead). */
  'host:joined': { fleetId: number; fleet: string; hostId: string; version: string; moduleVersion: string };
  /** A host announced that it is leaving (SIGTERM drain done, or its close()). */
  'host:left': { fleetId: number; fleet: string; hostId: string; reason: string };
  /** A host missed heartbeats: no new calls go to it. */
  'host:suspected': { fleetId: number; fleet: string; hostId: string; silentMs: number };
  /** A host is taken for dead (heartbeats missed too long, or its subjects have no responder); its calls in flight fail or move. */
  'host:dead': { fleetId: number; fleet: string; hostId: string; silentMs: number; reason: string };
}

export type EventName = keyof EventPayloads;

export const EVENT_NAMES = [
  'pool:error',
  'circuit:opened',
  'circuit:half_open',
  'circuit:closed',
  'retry:attempt',
  'retry:exhausted',
  'recovery:complete',
  'worker:transition',
  'worker:exit',
  'worker:log',
  'call:start',
  'call:refused',
  'call:end',
  'pool:closing',
  'session:snapshot',
  'session:restore',
  'session:not_durable',
  'session:large',
  'host:joined',
  'host:left',
  'host:suspected',
  'host:dead',
] as const satisfies readonly EventName[];

type Channels = { [K in EventName]: diagnostics_channel.Channel };

export const channels: Channels = Object.fromEntries(
  EVENT_NAMES.map((n) => [n, diagnostics_channel.channel(`pyfleet:${n}`)]),
) as Channels;

/** Publishes only when someone listens; callers on hot paths should check `channels[x].hasSubscribers` first to skip building the payload. */
export function publish<K extends EventName>(name: K, payload: EventPayloads[K]): void {
  const ch = channels[name];
  if (ch.hasSubscribers) ch.publish(payload);
}

/** Typed subscription; returns the function that unsubscribes. */
export function subscribe<K extends EventName>(name: K, fn: (payload: EventPayloads[K]) => void): () => void {
  const handler = (msg: unknown) => fn(msg as EventPayloads[K]);
  diagnostics_channel.subscribe(`pyfleet:${name}`, handler);
  return () => {
    diagnostics_channel.unsubscribe(`pyfleet:${name}`, handler);
  };
}
