import { PoolError } from '../errors/pool-error.js';
import { channels } from '../telemetry/channels.js';
import { ArgsError, encodeArgs, type EncodeArgsOptions, type EncodedArgs } from '../protocol/args.js';
import type { Call, CallInit } from './call.js';
import { abortedError, badCall, quarantinedError } from './errors.js';
import { PoisonTracker } from './poison.js';
import type { ExecuteOptions, Target } from './types.js';

/** src/validate's ArgsValidator as admission sees it: a structure, so the package's types name no Ajv type. */
export interface ArgsCheck {
  check(command: string, args: unknown): PoolError | null;
}

/** What admission needs of the pool or the fleet it admits calls for. */
export interface AdmissionDeps<C extends Call> {
  /** The pool's (or fleet client's) id, carried by `call:refused`. */
  ownerId: number;
  target: Target<C>;
  /** A call's timeout when neither it nor its command says (requestTimeoutMs). */
  requestTimeoutMs: number;
  nonFinite: 'null' | 'error';
  poison: PoisonTracker;
  maxDeaths: number;
  closing(): boolean;
  closedError(call: C | null, command?: string): PoolError;
  /** A call was refused because it is quarantined. */
  refusedAsPoison(): void;
  /** What only the owner can refuse at the call site: args that fail their schema, args over its size limit. */
  check(command: string, args: unknown, encoded: EncodedArgs): void;
  /** The owner's call object; throws for a session that cannot take calls (its state is lost). */
  make(init: CallInit, stream: boolean): C;
  /** The call takes its place in its session's order (execute at once, a stream when iteration starts). */
  enqueue(call: C): void;
}

/**
 * Checks a call at the call site and makes it a `Call`, or throws a PoolError for bad input
 * without sending anything: a closed owner, an unknown command, bad options, arguments that
 * cannot be sent or are too large, a quarantined call, a lost session. The timeout is decided
 * here, once: the call's own, else the command's (`@command(timeout=S)`), else the default.
 */
export class Admission<C extends Call> {
  private seq = 0;

  constructor(private readonly d: AdmissionDeps<C>) {}

  /** Checks and makes a call of `execute`, and takes its place in its session's order. */
  admit(command: string, args: unknown, options: ExecuteOptions): C {
    const call = this.check(command, args, options, false);
    if (call.sessionId !== null) this.d.enqueue(call);
    return call;
  }

  /**
   * Checks a call of `stream` at the call site (bad input throws there); it takes its place in its
   * session's order only when iteration starts (`enqueue`), so a stream never iterated blocks nothing.
   */
  prepareStream(command: string, args: unknown, options: ExecuteOptions): C {
    return this.check(command, args, options, true);
  }

  /** A prepared stream starts: the owner may have closed meanwhile. */
  enqueue(call: C): void {
    if (this.d.closing()) throw this.d.closedError(call);
    if (call.sessionId !== null) this.d.enqueue(call);
  }

  /** `build`, publishing `call:refused` for a call refused here (the metrics count them). */
  private check(command: string, args: unknown, options: ExecuteOptions, stream: boolean): C {
    try {
      return this.build(command, args, options, stream);
    } catch (e) {
      if (channels['call:refused'].hasSubscribers) channels['call:refused'].publish({ poolId: this.d.ownerId, command: String(command), code: (e as PoolError).code, stream });
      throw e;
    }
  }

  private build(command: string, args: unknown, options: ExecuteOptions, stream: boolean): C {
    const d = this.d;
    if (d.closing()) throw d.closedError(null, command);
    if (typeof command !== 'string' || command === '') throw badCall(`command must be a non-empty string, got ${typeof command}`);
    if (typeof options !== 'object' || options === null) throw badCall('options must be an object');
    const info = d.target.command(command);
    if (info === undefined) throw d.target.unknownCommand(command);
    // The call's own timeout, else the command's (@command(timeout=S)), else the default.
    const timeoutMs = options.timeoutMs ?? (info.timeout !== null ? info.timeout * 1000 : d.requestTimeoutMs);
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw badCall(`timeoutMs must be a number of ms > 0, got ${String(timeoutMs)}`, command);
    if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') throw badCall('idempotent must be a boolean', command);
    const sessionId = options.sessionId;
    if (sessionId !== undefined && (typeof sessionId !== 'string' || sessionId === '')) throw badCall('sessionId must be a non-empty string', command);
    if (info.stream && !stream) throw badCall(`${command} is a generator: call it with pool.stream() (fleet.stream()), which yields its items`, command);
    const encoded = encode(args, command, d.nonFinite);
    d.check(command, args, encoded);
    if (d.poison.active) {
      const left = d.poison.quarantinedFor(PoisonTracker.key(command, encoded.json, encoded.parts));
      if (left > 0) {
        d.refusedAsPoison();
        throw quarantinedError(command, d.maxDeaths, left);
      }
    }
    const call = d.make(
      {
        id: ++this.seq,
        command,
        info,
        args,
        argsJson: encoded.json,
        argsParts: encoded.parts,
        sessionId: sessionId ?? null,
        idempotent: options.idempotent ?? info.idempotent,
        timeoutMs,
        signal: options.signal,
        detailed: options.detailed === true,
      },
      stream,
    );
    // Checked last: an aborted signal refuses the call like any bad input, with its own code.
    if (options.signal?.aborted) throw abortedError(call, options.signal);
    return call;
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
