/**
 * The fleet's message format. Metadata travels in NATS headers so that the payload stays the
 * call's own bytes: the JSON text of the args or of the result, or, when they hold binary values,
 * the worker protocol's 0x01 form (src/fleet/values.ts; never base64: NATS payloads are bytes).
 *
 * Request (client -> host, on the host's call or stream subject, reply to the client's inbox):
 *   Pf-V     the fleet protocol (FLEET_PROTOCOL); a host refuses a request of another
 *   Pf-Id    the call's id, unique across clients ("<client nuid>.<seq>"); the same on every
 *            attempt and every host, and what a host de-duplicates re-sends with
 *   Pf-Cmd   the command
 *   Pf-Att   the attempt number (1, 2, ...): a host runs each (Pf-Id, Pf-Att) at most once, and
 *            its pool makes exactly one attempt of it (the client decides every re-send)
 *   Pf-To    the attempt's timeout: the call's, else the command's @command(timeout=S), else the
 *            client's requestTimeoutMs (a re-send with a larger timeout says so here)
 *   Pf-Dl    the attempt's deadline (epoch ms): a host does not start an attempt whose caller gave up
 *   Pf-Idem  "1" or "0": the call's idempotency
 *   Pf-Sid   the session id, if any; Pf-Sep the session's epoch in the session map (how many
 *            times it moved to another host); Pf-Sgen the placement's id (new on every place or
 *            move); Pf-Sfn the fence: a revision of the map entry of that placement (revisions
 *            only grow, so a later placement always has a higher fence than any earlier one)
 *   Pf-Hwm   (streams) chunks the host may send ahead of the consumer
 * Reply (host -> client):
 *   Pf-St    "ok" (payload: the value) or "err" (payload: the PoolError's JSON)
 *   Pf-Host  the host that answered
 * Stream items (host -> client inbox): Pf-St "item" | "end" | "err", Pf-Seq the item's number.
 */
import type { MsgHdrs } from '@nats-io/transport-node';
import { nats } from './nats.js';
import { ERROR_CODES, type ErrorCode } from '../errors/codes.js';
import { isErrorCategory } from '../errors/categories.js';
import { PoolError, isPoolError } from '../errors/pool-error.js';

export const H = {
  version: 'Pf-V',
  id: 'Pf-Id',
  cmd: 'Pf-Cmd',
  attempt: 'Pf-Att',
  timeout: 'Pf-To',
  deadline: 'Pf-Dl',
  idempotent: 'Pf-Idem',
  session: 'Pf-Sid',
  sessionEpoch: 'Pf-Sep',
  sessionGen: 'Pf-Sgen',
  sessionFence: 'Pf-Sfn',
  hwm: 'Pf-Hwm',
  status: 'Pf-St',
  host: 'Pf-Host',
  seq: 'Pf-Seq',
} as const;

export interface CallMeta {
  /** The sender's fleet protocol (0 when it sent none: a client of protocol 1). */
  protocol: number;
  id: string;
  command: string;
  attempt: number;
  timeoutMs: number;
  deadline: number;
  idempotent: boolean | undefined;
  sessionId: string | null;
  sessionEpoch: number;
  /** The session's placement ('' when the client sent none). */
  sessionGen: string;
  sessionFence: number;
  hwm?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeText(s: string): Uint8Array {
  return enc.encode(s);
}
export function decodeText(b: Uint8Array): string {
  return dec.decode(b);
}

export function callHeaders(m: CallMeta): MsgHdrs {
  const h = nats().headers();
  h.set(H.version, String(m.protocol));
  h.set(H.id, m.id);
  h.set(H.cmd, m.command);
  h.set(H.attempt, String(m.attempt));
  h.set(H.timeout, String(m.timeoutMs));
  h.set(H.deadline, String(m.deadline));
  if (m.idempotent !== undefined) h.set(H.idempotent, m.idempotent ? '1' : '0');
  if (m.sessionId !== null) {
    h.set(H.session, m.sessionId);
    h.set(H.sessionEpoch, String(m.sessionEpoch));
    if (m.sessionGen !== '') h.set(H.sessionGen, m.sessionGen);
    if (m.sessionFence > 0) h.set(H.sessionFence, String(m.sessionFence));
  }
  if (m.hwm !== undefined) h.set(H.hwm, String(m.hwm));
  return h;
}

/** The metadata of a request, or a reason it is malformed (answered as PYFLEET_INVALID_ARGS). */
export function readCallMeta(h: MsgHdrs | undefined): CallMeta | string {
  if (h === undefined) return 'no headers';
  const id = h.get(H.id);
  const command = h.get(H.cmd);
  if (id === '' || command === '') return `missing ${id === '' ? H.id : H.cmd}`;
  const attempt = Number(h.get(H.attempt) || '1');
  const timeoutMs = Number(h.get(H.timeout));
  const deadline = Number(h.get(H.deadline) || '0');
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) return `bad ${H.timeout}`;
  const idem = h.get(H.idempotent);
  const sid = h.get(H.session);
  const hwm = h.get(H.hwm);
  return {
    protocol: Number(h.get(H.version) || '0') || 0,
    id,
    command,
    attempt: Number.isInteger(attempt) && attempt > 0 ? attempt : 1,
    timeoutMs,
    deadline: Number.isFinite(deadline) ? deadline : 0,
    idempotent: idem === '1' ? true : idem === '0' ? false : undefined,
    sessionId: sid === '' ? null : sid,
    sessionEpoch: Number(h.get(H.sessionEpoch) || '0') || 0,
    sessionGen: h.get(H.sessionGen),
    sessionFence: Number(h.get(H.sessionFence) || '0') || 0,
    ...(hwm !== '' ? { hwm: Math.max(1, Math.floor(Number(hwm)) || 1) } : {}),
  };
}

export function statusHeaders(status: 'ok' | 'err' | 'item' | 'end', hostId: string, seq?: number): MsgHdrs {
  const h = nats().headers();
  h.set(H.status, status);
  h.set(H.host, hostId);
  if (seq !== undefined) h.set(H.seq, String(seq));
  return h;
}

/** A PoolError as JSON bytes for a reply; anything else becomes PYFLEET_INTERNAL first. */
export function encodeError(e: unknown, hostId: string): Uint8Array {
  const err = isPoolError(e)
    ? e
    : new PoolError({ code: 'PYFLEET_INTERNAL', message: `Unexpected failure on host ${hostId}: ${(e as Error)?.message ?? String(e)}. This is likely a pyfleet bug; please report it.`, cause: e });
  const j = err.toJSON();
  j.details = { ...(err.details ?? {}), hostId };
  return enc.encode(JSON.stringify(j));
}

/** Rebuilds the PoolError a host sent (same code, category, taken, python traceback...). */
export function decodeError(payload: Uint8Array, hostId: string): PoolError {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(dec.decode(payload)) as Record<string, unknown>;
  } catch {
    return new PoolError({ code: 'PYFLEET_PROTOCOL_ERROR', message: `Host ${hostId} sent an error reply that is not JSON.`, details: { hostId } });
  }
  const code = (typeof j.code === 'string' && j.code in ERROR_CODES ? j.code : 'PYFLEET_INTERNAL') as ErrorCode;
  const err = new PoolError({
    code,
    message: typeof j.message === 'string' ? j.message : `Host ${hostId} failed the call (${String(j.code)}).`,
    ...(isErrorCategory(j.category) ? { category: j.category } : {}),
    ...(typeof j.retryable === 'boolean' ? { retryable: j.retryable } : {}),
    attempt: typeof j.attempt === 'number' ? j.attempt : 1,
    workerId: typeof j.workerId === 'number' ? j.workerId : null,
    sessionId: typeof j.sessionId === 'string' ? j.sessionId : null,
    command: typeof j.command === 'string' ? j.command : null,
    callId: typeof j.callId === 'number' ? j.callId : null,
    taken: j.taken === true,
    ...(j.python !== undefined && j.python !== null ? { python: j.python as PoolError['python'] & object } : {}),
    details: { ...((j.details as Record<string, unknown> | undefined) ?? {}), hostId },
  });
  return err;
}
