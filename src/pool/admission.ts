import { PoolError } from '../errors/pool-error.js';
import { ArgsError, encodeArgs, type EncodeArgsOptions, type EncodedArgs } from '../protocol/args.js';
import type { CommandInfo } from '../protocol/messages.js';
import type { ArgsValidator } from '../validate/args-validator.js';
import type { ExecuteOptions } from '../call/types.js';
import { Call } from './call.js';
import { abortedError, badCall, closedError, quarantinedError, sessionLostError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { PoisonTracker } from './poison.js';
import type { SessionTable } from './sessions.js';

export interface AdmissionDeps {
  options: ResolvedOptions;
  /** Checks args against their command's schema (validateArgs), or null. */
  validator: ArgsValidator | null;
  sessions: SessionTable;
  poison: PoisonTracker;
  commands(): Readonly<Record<string, CommandInfo>>;
  closing(): boolean;
  /** A call was refused because it is quarantined. */
  refusedAsPoison(): void;
}

/**
 * Checks a call at the call site and makes it a `Call`, or throws a PoolError for bad input
 * without touching a worker: a closed pool, an unknown command, bad options, arguments that
 * cannot be sent, arguments over `maxFrameBytes`, a quarantined call, a lost session.
 */
export class Admission {
  private seq = 0;

  constructor(private readonly deps: AdmissionDeps) {}

  /** Checks and makes a call of `execute`, and takes its place in its session's order. */
  admit(command: string, args: unknown, options: ExecuteOptions): Call {
    const call = this.check(command, args, options, false);
    if (call.session !== null) this.deps.sessions.enqueue(call.session, call);
    return call;
  }

  /**
   * Checks a call of `stream` at the call site (bad input throws there); it takes its place in its
   * session's order only when iteration starts (`enqueue`), so a stream never iterated blocks nothing.
   */
  prepareStream(command: string, args: unknown, options: ExecuteOptions): Call {
    return this.check(command, args, options, true);
  }

  /** A prepared stream starts: the pool may have closed and its session may be lost meanwhile. */
  enqueue(call: Call): void {
    if (this.deps.closing()) throw closedError(call);
    const s = call.session;
    if (s !== null) {
      if (s.lost !== null) throw sessionLostError(s, call.command, call);
      this.deps.sessions.enqueue(s, call);
    }
  }

  private check(command: string, args: unknown, options: ExecuteOptions, stream: boolean): Call {
    const d = this.deps;
    if (d.closing()) throw closedError(null, command);
    if (typeof command !== 'string' || command === '') throw badCall(`command must be a non-empty string, got ${typeof command}`);
    if (typeof options !== 'object' || options === null) throw badCall('options must be an object');
    const info = d.commands()[command];
    if (info === undefined) {
      throw new PoolError({
        code: 'PYFLEET_UNKNOWN_COMMAND',
        command,
        message: `No command named ${JSON.stringify(command)} in ${d.options.module}; registered: ${Object.keys(d.commands()).join(', ') || 'none'}. Decorate the handler with @command.`,
      });
    }
    // The call's own timeout, else the command's (@command(timeout=S)), else the pool's.
    const timeoutMs = options.timeoutMs ?? (info.timeout !== null ? info.timeout * 1000 : d.options.requestTimeoutMs);
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw badCall(`timeoutMs must be a number of ms > 0, got ${String(timeoutMs)}`, command);
    if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') throw badCall('idempotent must be a boolean', command);
    const sessionId = options.sessionId;
    if (sessionId !== undefined && (typeof sessionId !== 'string' || sessionId === '')) throw badCall('sessionId must be a non-empty string', command);
    if (info.stream && !stream) throw badCall(`${command} is a generator: call it with pool.stream(), which yields its items`, command);
    if (d.validator !== null) {
      const wrong = d.validator.check(command, args);
      if (wrong !== null) throw wrong;
    }
    const encoded = encode(args, command, d.options.nonFinite);
    this.checkSize(encoded, command);
    if (d.poison.active) {
      const left = d.poison.quarantinedFor(PoisonTracker.key(command, encoded.json, encoded.parts));
      if (left > 0) {
        d.refusedAsPoison();
        throw quarantinedError(command, d.options.poison.maxDeaths, left);
      }
    }
    let session = null;
    if (sessionId !== undefined) {
      // A store that outlives the pool may hold the state of a session new to this pool.
      session = d.sessions.open(sessionId, performance.now(), d.options.persistentSessions ? 'maybe' : 'no');
      if (session.lost !== null) throw sessionLostError(session, command);
    }
    const call = new Call({
      id: ++this.seq,
      command,
      info,
      args,
      argsJson: encoded.json,
      argsParts: encoded.parts,
      session,
      idempotent: options.idempotent ?? info.idempotent,
      timeoutMs,
      signal: options.signal,
      detailed: options.detailed === true,
    });
    // Checked last: an aborted signal refuses the call like any bad input, with its own code.
    if (options.signal?.aborted) throw abortedError(call, options.signal);
    return call;
  }

  private checkSize(encoded: EncodedArgs, command: string): void {
    const max = this.deps.options.maxFrameBytes;
    const json = encoded.json;
    let binary = 0;
    for (const p of encoded.parts) binary += p.data.byteLength + 8;
    // A UTF-8 byte takes at most 3 bytes per UTF-16 unit: most calls skip the exact count.
    if (json.length * 3 + binary + 256 <= max) return;
    const bytes = Buffer.byteLength(json) + binary + 256 + command.length;
    if (bytes > max) {
      throw new PoolError({
        code: 'PYFLEET_FRAME_TOO_LARGE',
        command,
        message: `The arguments of ${command} take ${bytes} bytes${binary > 0 ? ` (binary parts included)` : ''}, over maxFrameBytes (${max}). Pass a path or a reference instead, or raise maxFrameBytes.`,
      });
    }
  }
}

/**
 * Encodes call arguments once, at the call site: bad input is the caller's error, not a worker's.
 * Binary values (typed arrays, Buffers, NDArrays) become parts outside the JSON text.
 */
function encode(args: unknown, command: string, nonFinite: 'null' | 'error'): EncodedArgs {
  try {
    return encodeArgs(args, nonFinite === 'error' ? NON_FINITE_ERROR : undefined);
  } catch (e) {
    if (e instanceof ArgsError) {
      throw new PoolError({ code: 'PYFLEET_INVALID_ARGS', command, cause: e, details: { path: e.path }, message: `The arguments of ${command} cannot be sent: ${e.message}` });
    }
    throw new PoolError({
      code: 'PYFLEET_INVALID_ARGS',
      command,
      cause: e,
      message: `The arguments of ${command} cannot be sent as JSON: ${(e as Error).message}. Convert BigInt to string or number and remove circular references.`,
    });
  }
}

const NON_FINITE_ERROR: EncodeArgsOptions = Object.freeze({ nonFinite: 'error' });
