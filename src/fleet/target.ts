import { asPoolError } from '../call/errors.js';
import { causedDeath } from '../call/poison.js';
import type { AttemptFailed, AttemptOk, AttemptOptions, Member, Target } from '../call/types.js';
import type { PoolError } from '../errors/pool-error.js';
import type { CommandInfo } from '../protocol/messages.js';
import type { FleetCall } from './call.js';
import { unknownCommandError } from './client-errors.js';
import type { HostTable } from './host-table.js';
import type { RequestTable } from './requests.js';
import type { Router, Turn } from './routing.js';
import { HostStream } from './stream-attempt.js';
import type { FleetSubjects } from './subjects.js';

/** A session that moved meanwhile is looked up again this often per attempt, then the attempt fails. */
const MAX_MOVES = 3;

/**
 * The fleet's target (the call core's seam): one attempt of a call goes to the host the router
 * picks (the session's host, else the least loaded live one that has the command), through that
 * host's circuit, as one request (or one stream) the host's pool runs once. Whatever follows a
 * failure (a re-send to another host, a larger timeout, the fallback) is the call core's.
 */
export class FleetTarget implements Target<FleetCall> {
  constructor(
    private readonly fleet: string,
    private readonly table: HostTable,
    private readonly router: Router,
    private readonly requests: RequestTable,
    private readonly subjects: FleetSubjects,
    private readonly queueTimeoutMs: number,
  ) {}

  command(name: string): CommandInfo | undefined {
    return this.table.command(name);
  }

  unknownCommand(name: string): PoolError {
    return unknownCommandError(this.fleet, name, this.table.commandNames());
  }

  hasOtherReady(call: FleetCall, avoid: Member | null): boolean {
    return this.table.canTake(call.command, (id) => id === avoid || call.tried.has(id));
  }

  allDown(): boolean {
    return this.table.alive().length === 0;
  }

  attempt(call: FleetCall, o: AttemptOptions, ok: AttemptOk, failed: AttemptFailed): void {
    void this.place(call, ++call.attempts, o.timeoutMs, ok, failed, 0);
  }

  private async place(call: FleetCall, attempt: number, timeoutMs: number, ok: AttemptOk, failed: AttemptFailed, moves: number): Promise<void> {
    let turn: Turn;
    try {
      turn = await this.router.take(call);
    } catch (e) {
      return failed(asPoolError(e, call), null, false);
    }
    const { host, ticket } = turn.route;
    let left = false;
    const leave = (err: PoolError | null): void => {
      if (left) return;
      left = true;
      if (err === null) host.breaker.leaveOk(ticket);
      else host.breaker.leaveFailed(ticket, err);
    };
    const fail = async (e: unknown): Promise<void> => {
      const err = asPoolError(e, call);
      if (!left && moves < MAX_MOVES && (await this.router.sessionMoved(err, call, host, ticket))) {
        left = true;
        return this.place(call, attempt, timeoutMs, ok, failed, moves + 1);
      }
      leave(err);
      call.tried.add(host.id);
      failed(err, host.id, causedDeath(err));
    };
    const done = (value: unknown): void => {
      leave(null);
      call.hostId = host.id;
      ok(value);
    };
    try {
      if (call.sink === null) {
        this.requests.send(call, attempt, timeoutMs, turn.route).then(done, fail);
      } else {
        const s = new HostStream(this.requests.streamTransport, call, attempt, timeoutMs, this.queueTimeoutMs, turn.route, this.subjects.stream(host.id), () => leave(null), done, fail);
        call.current = s;
        s.start();
      }
    } catch (e) {
      void fail(e);
    } finally {
      turn.release(); // sent (or its send threw): the session's next call may go
    }
  }
}
