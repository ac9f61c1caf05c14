import { abortedError, queueFullError, queueTimeoutError, sessionLostError } from '../call/errors.js';
import { causedDeath } from '../call/poison.js';
import type { AttemptFailed, AttemptOk, AttemptOptions, Member, Target } from '../call/types.js';
import { PoolError } from '../errors/pool-error.js';
import type { CommandInfo } from '../protocol/messages.js';
import { encodeFrame, encodeFrameParts, FrameError } from '../protocol/frame.js';
import type { CircuitBreaker } from '../resilience/circuit-breaker.js';
import type { Worker } from '../worker/worker.js';
import { Attempt, type AttemptOwner, type PoolCall } from './call.js';
import type { ChaosMonkey } from './chaos.js';
import type { ResolvedOptions } from './options.js';
import { WaitQueue } from './queue.js';
import type { Durability } from './durability.js';
import type { SessionEntry, SessionTable } from './sessions.js';

/** What the dispatcher needs from the rest of the pool. */
export interface DispatcherDeps {
  options: ResolvedOptions;
  sessions: SessionTable;
  /** The live workers, in start order. */
  workers(): readonly Worker[];
  worker(id: number): Worker | undefined;
  poolOperations: CircuitBreaker;
  commandCircuit(command: string): CircuitBreaker;
  chaos: ChaosMonkey | null;
  /** Calls are waiting: start another worker if the pool may grow. */
  grow(): void;
  /** A worker has nothing in flight any more (the supervisor recycles it if it served enough). */
  idle(w: Worker): void;
  /** Durable sessions, when the pool keeps them. */
  durability: Durability | null;
  /** Where the bytes of binary args sent are counted. */
  binary: { toPython: number };
  /** The module's commands, from the first worker's hello. */
  commands(): Readonly<Record<string, CommandInfo>>;
  /** No worker is serving, recovering or starting. */
  allWorkersDown(): boolean;
}

/**
 * The pool's target (the call core's seam): puts attempts on workers, through the circuits (`pool_operations`, then the command's own),
 * onto the least loaded worker that can take it now (the session's own worker for a session
 * call, and only when it is that call's turn in its session), or into the wait queue until one
 * can. It settles nothing itself except refusals (open circuit, full queue, queue timeout,
 * abort): the worker settles what it was given.
 */
export class Dispatcher implements Target<PoolCall> {
  readonly queue = new WaitQueue<Attempt>();
  private seq = 0;
  private readonly owner: AttemptOwner;

  constructor(private readonly deps: DispatcherDeps) {
    this.owner = {
      attemptSucceeded: (a, value) => {
        deps.commandCircuit(a.command).leaveOk(a.commandTicket);
        deps.poolOperations.leaveOk(a.poolTicket);
        a.onOk(value);
      },
      attemptFailed: (a, err) => {
        deps.commandCircuit(a.command).leaveFailed(a.commandTicket, err);
        deps.poolOperations.leaveFailed(a.poolTicket, err);
        // A death chaos injected is the pool's doing: said in the error, so that a fleet client knows it too.
        if (a.fault !== null && err.code === 'PYFLEET_WORKER_CRASHED') err.details = { ...err.details, fault: a.fault };
        a.onFailed(err, a.worker?.id ?? null, causedDeath(err));
      },
      snapshot: (a, m) => deps.durability?.snapshot(a.call, m),
    };
  }

  command(name: string): CommandInfo | undefined {
    return this.deps.commands()[name];
  }

  unknownCommand(name: string): PoolError {
    const known = this.deps.commands();
    return new PoolError({
      code: 'PYFLEET_UNKNOWN_COMMAND',
      command: name,
      message: `No command named ${JSON.stringify(name)} in ${this.deps.options.module}; registered: ${Object.keys(known).join(', ') || 'none'}. Decorate the handler with @command.`,
    });
  }

  allDown(): boolean {
    return this.deps.allWorkersDown();
  }

  /** Places one attempt of `call`. Reports to `onOk` or `onFailed` exactly once, after the circuits counted it. */
  attempt(call: PoolCall, o: AttemptOptions, onOk: AttemptOk, onFailed: AttemptFailed): void {
    const number = ++call.attempts;
    const s = call.session;
    if (s !== null && s.lost !== null) return this.refused(call, number, sessionLostError(s, call.command, call), onFailed);
    const commandCircuit = this.deps.commandCircuit(call.command);
    let poolTicket: number;
    let commandTicket: number;
    try {
      poolTicket = this.deps.poolOperations.enter();
    } catch (e) {
      return this.refused(call, number, e as PoolError, onFailed);
    }
    try {
      commandTicket = commandCircuit.enter();
    } catch (e) {
      this.deps.poolOperations.leaveFailed(poolTicket, e);
      return this.refused(call, number, e as PoolError, onFailed);
    }
    const id = ++this.seq;
    const fault = this.deps.chaos?.forCall();
    let a: Attempt;
    try {
      a = new Attempt(call, id, number, this.frame(call, id, number, o.timeoutMs, fault), o.timeoutMs, o.avoid, poolTicket, commandTicket, fault?.kind ?? null, this.owner, onOk, onFailed);
    } catch (e) {
      commandCircuit.leaveFailed(commandTicket, e);
      this.deps.poolOperations.leaveFailed(poolTicket, e);
      return this.refused(call, number, e as PoolError, onFailed);
    }
    const signal = call.signal;
    if (signal?.aborted) return a.reject(abortedError(call, signal));
    const turn = this.turn(call);
    const w = turn && !this.needsSnapshot(call) ? this.pick(call, o.avoid) : null;
    if (w !== null) this.sendTo(w, a);
    else {
      this.enqueue(a);
      if (turn && !a.settled && this.needsSnapshot(call)) this.fetchSnapshot(a);
    }
    if (signal !== undefined && !a.settled) {
      a.onAbort = () => {
        const err = abortedError(call, signal);
        if (a.worker === null) {
          this.queue.remove(a);
          a.reject(err);
        } else {
          err.taken = true;
          a.worker.abandon(a.id, err);
        }
      };
      signal.addEventListener('abort', a.onAbort, { once: true });
    }
  }

  /** A worker can take work: hand it queued attempts, oldest first. */
  onAvailable(w: Worker): void {
    if (this.queue.length > 0) {
      this.queue.takeWhile(
        (a) => {
          const bound = a.call.session?.workerId ?? null;
          if ((bound !== null && bound !== w.id) || !this.turn(a.call) || !w.canTake(a)) return false;
          if (this.needsSnapshot(a.call)) {
            this.fetchSnapshot(a);
            return false;
          }
          this.sendTo(w, a);
          return true;
        },
        () => w.saturated,
      );
    }
    if (w.load === 0) this.deps.idle(w);
  }

  /** A session's first call changed: if it waits in the queue, send it now when a worker can take it. */
  sessionAdvanced(e: SessionEntry): void {
    if (this.queue.length === 0) return;
    const head = e.ops[0];
    let done = false;
    this.queue.takeWhile(
      (a) => {
        if (a.call !== head) return false;
        done = true;
        if (this.needsSnapshot(a.call)) {
          this.fetchSnapshot(a);
          return false;
        }
        const w = this.pick(a.call, a.avoid);
        if (w === null) return false;
        this.sendTo(w, a);
        return true;
      },
      () => done,
    );
  }

  /** Rejects the queued attempts `pred` selects with the error `errorFor` makes. */
  rejectQueued(pred: (a: Attempt) => boolean, errorFor: (a: Attempt) => PoolError): void {
    for (const a of this.queue.drain(pred)) a.reject(errorFor(a));
  }

  /** A worker other than `except` that could take `call` now. */
  hasOtherReady(call: PoolCall, except: Member | null): boolean {
    for (const w of this.deps.workers()) if (w.id !== except && w.canTake(call.task)) return true;
    return false;
  }

  private needsSnapshot(call: PoolCall): boolean {
    return this.deps.durability !== null && this.deps.durability.needsSnapshot(call);
  }

  private readonly fetching = new WeakSet<PoolCall>();

  /**
   * A queued session call whose session's state is in the store, not in a worker: fetch and check
   * the snapshot, then send the call (the worker restores the snapshot first). A refused or lost
   * snapshot fails the call.
   */
  private fetchSnapshot(a: Attempt): void {
    const call = a.call;
    if (this.fetching.has(call)) return;
    this.fetching.add(call);
    this.deps.durability!.prepare(call).then(
      () => {
        this.fetching.delete(call);
        if (!a.settled) this.sessionAdvanced(call.session!);
      },
      (err: PoolError) => {
        this.fetching.delete(call);
        if (a.settled) return;
        this.queue.remove(a);
        a.reject(err);
      },
    );
  }

  private turn(call: PoolCall): boolean {
    return call.session === null || this.deps.sessions.isTurn(call.session, call);
  }

  private pick(call: PoolCall, avoid: Member | null): Worker | null {
    const task = call.task;
    const bound = call.session?.workerId ?? null;
    if (bound !== null) {
      const w = this.deps.worker(bound);
      return w !== undefined && w.canTake(task) ? w : null;
    }
    let best: Worker | null = null;
    let avoided: Worker | null = null;
    for (const w of this.deps.workers()) {
      if (!w.canTake(task)) continue;
      if (w.id === avoid) {
        avoided = w;
        continue;
      }
      if (best === null || w.load < best.load) {
        best = w;
        if (w.load === 0) break;
      }
    }
    return best ?? avoided;
  }

  private sendTo(w: Worker, a: Attempt): void {
    a.worker = w;
    const call = a.call;
    call.current = a;
    const s = call.session;
    if (s !== null && s.workerId === null) {
      this.deps.sessions.bind(s, w.id);
      // A session whose worker went: the new one restores its snapshot first (the worker answers
      // the restore before it runs the call, which it refuses if the restore was refused).
      if (call.restore !== null && s.restore === 'yes') w.send(this.deps.durability!.restoreAttempt(++this.seq, call, w.id));
      call.restore = null;
      s.restore = 'no';
    }
    w.send(a);
  }

  private enqueue(a: Attempt): void {
    const { maxQueue, queueTimeoutMs } = this.deps.options;
    if (this.queue.length >= maxQueue) return a.reject(queueFullError(a.call, this.queue.length, maxQueue));
    this.queue.push(a);
    a.queueTimer = setTimeout(() => {
      this.queue.remove(a);
      a.reject(queueTimeoutError(a.call, queueTimeoutMs, this.deps.workers().length === 0, !this.turn(a.call), a.call.session?.workerId ?? null));
    }, queueTimeoutMs);
    this.deps.grow();
  }

  /** An attempt refused before it had a frame (open circuit, arguments over the limit). */
  private refused(call: PoolCall, number: number, err: PoolError, onFailed: AttemptFailed): void {
    err.attempt = number;
    err.command ??= call.command;
    err.callId ??= call.id;
    err.sessionId ??= call.sessionId;
    onFailed(err, null, false);
  }

  private frame(call: PoolCall, id: number, number: number, timeoutMs: number, fault: object | undefined): Buffer | Buffer[] {
    let json = `{"t":"call","id":${id},"cid":${call.id},"at":${number},"cmd":${JSON.stringify(call.command)},"a":${call.argsJson},"dl":${Date.now() + timeoutMs}`;
    if (call.session !== null) json += `,"sid":${JSON.stringify(call.session.id)}`;
    if (call.credit > 0) json += `,"cr":${call.credit}`;
    if (fault !== undefined) json += `,"x":${JSON.stringify(fault)}`;
    const max = this.deps.options.maxFrameBytes;
    try {
      if (call.argsParts.length === 0) return encodeFrame(`${json}}`, max);
      const frame = encodeFrameParts(`${json}}`, call.argsParts, max);
      for (const p of call.argsParts) this.deps.binary.toPython += p.data.byteLength;
      return frame;
    } catch (e) {
      if (e instanceof FrameError) {
        throw new PoolError({ code: 'PYFLEET_FRAME_TOO_LARGE', command: call.command, message: `The call to ${call.command} is over maxFrameBytes (${this.deps.options.maxFrameBytes}). Pass smaller arguments or raise maxFrameBytes.` });
      }
      throw e;
    }
  }
}
