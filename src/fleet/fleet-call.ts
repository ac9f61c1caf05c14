import type { HostEntry } from './host-table.js';
import type { CallMeta } from './wire.js';

/** One call or stream as the client holds it across its attempts, its arguments already checked and encoded. */
export interface FleetCall {
  /** Pf-Id: the host de-duplicates re-sends by it. */
  id: string;
  command: string;
  payload: Uint8Array;
  timeoutMs: number;
  /** The caller's `idempotent`; undefined: what the host's command declares. */
  idempotentOpt: boolean | undefined;
  sessionId: string | null;
  signal: AbortSignal | undefined;
  startedAt: number;
}

/** Where one attempt goes: the host, its circuit ticket, and the session's placement (zeros without a session). */
export interface Route {
  host: HostEntry;
  ticket: number;
  epoch: number;
  gen: string;
  fence: number;
}

/** Longest a call waits for a live host's answer: its pool's own attempts and recoveries fit in it. */
export function hardCapMs(timeoutMs: number): number {
  return 4 * timeoutMs + 10_000;
}

/** The headers of one attempt. */
export function callMeta(call: FleetCall, attempt: number, route: Route): CallMeta {
  return {
    id: call.id,
    command: call.command,
    attempt,
    timeoutMs: call.timeoutMs,
    deadline: Date.now() + hardCapMs(call.timeoutMs),
    idempotent: call.idempotentOpt,
    sessionId: call.sessionId,
    sessionEpoch: route.epoch,
    sessionGen: route.gen,
    sessionFence: route.fence,
  };
}
