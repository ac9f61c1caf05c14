import { Call, type CallInit } from '../call/call.js';
import type { DetailedResult, Via } from '../call/types.js';
import type { HostEntry } from './host-table.js';
import { FLEET_PROTOCOL } from './version.js';
import type { CallMeta } from './wire.js';

/** A call as the fleet client holds it: the call core's, plus its id on the wire, its payload and the hosts it failed on. */
export class FleetCall extends Call {
  /** Host that answered the latest attempt. */
  hostId: string | null = null;
  /** Hosts an attempt failed on: the next goes elsewhere when it can. */
  readonly tried = new Set<string>();

  constructor(
    init: CallInit,
    /** Pf-Id: unique across clients, the same on every attempt and every host. */
    readonly wireId: string,
    /** The args as one NATS payload, made once at the call site. */
    readonly payload: Uint8Array,
  ) {
    super(init);
  }

  override detailedResult<T>(value: T, via: Via): DetailedResult<T> & { hostId: string | null } {
    return { ...super.detailedResult(value, via), hostId: this.hostId };
  }
}

/** Where one attempt goes: the host, its circuit ticket, and the session's placement (zeros without a session). */
export interface Route {
  host: HostEntry;
  ticket: number;
  epoch: number;
  gen: string;
  fence: number;
}

/** Longest a call waits for a live host's answer: the host's queue and its pool's cancel fit in it. */
export function hardCapMs(timeoutMs: number): number {
  return 4 * timeoutMs + 10_000;
}

/** The headers of one attempt: the call's deadline is its timeout plus the wait for a worker (`queueMs`). */
export function callMeta(call: FleetCall, attempt: number, timeoutMs: number, queueMs: number, route: Route): CallMeta {
  return {
    protocol: FLEET_PROTOCOL,
    id: call.wireId,
    command: call.command,
    attempt,
    timeoutMs,
    deadline: Date.now() + timeoutMs + queueMs,
    idempotent: call.idempotent,
    sessionId: call.sessionId,
    sessionEpoch: route.epoch,
    sessionGen: route.gen,
    sessionFence: route.fence,
  };
}
