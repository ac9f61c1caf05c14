"""The worker's loop: runs calls, answers them, cancels them.

Two modes. While nothing runs concurrently, the main thread blocks in os.read on fd 3 and
runs each plain `def` call itself: no event loop, no hand-off (handing each call to another
thread cost about a quarter of the sequential rate). When an async, threaded or stream call
arrives, the worker enters the asyncio loop (fd 3 watched with add_reader, read into our own
buffer: asyncio streams cost too much per call), runs it until nothing is in flight and
nothing is queued, then goes back to blocking reads. A plain `def` call that arrives while the
loop runs is run at once on the main thread, blocking the loop while it runs (the host sends
none then; the worker only guards itself).

Cancellation: the host writes a cancel frame and sends SIGUSR1. The signal handler runs on
the main thread between bytecodes. Only while a handler's own code runs there (a sync
handler, a sync generator's step, or an async task's step) does it read the frames waiting on
fd 3, and if one cancels that very call it raises Cancelled in it: so `time.sleep` in a sync
handler, or in an `async def` that blocks the loop, is interrupted, `finally` blocks run, and
the worker acknowledges. Otherwise the frame is read in order: an async task is cancelled
(CancelledError inside it), a threaded call sees ctx.cancelled, a stream's generator is closed.
This costs nothing on the hot path (no extra thread, no extra system call per call); a C
extension holding the GIL cannot be interrupted, and the host kills the process after a grace
period.

Hot path: one os.read and one os.write per call, no buffering for a frame that arrives whole,
and json's C scanner and C encoder called directly (bench/runtime_loop.py measures it).
"""
import os
import select
import sys
from collections import deque

from . import _chaos, _defaults, _streams, _tasks
from ._framing import IN_FD, binary_frame, descriptors_json
from ._io import READ_SIZE, Wire
from ._registry import _COMMANDS, _ON_STOP, ASYNC, GEN, PLAIN, THREAD, Cancelled, Context
from ._sessions import Refused, Sessions
from ._exc import exc_payload, fit_error
from ._values import EncodeError, encode_slow, fast_body

_ascii_dumps = __import__("json").JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _err(type_, message):
    return {"type": type_, "message": message, "traceback": ""}


class Runtime(Wire):
    def __init__(self, max_frame, sessions=None, nonfinite_error=False, concurrency=1, worker=None):
        super().__init__(max_frame)
        self.calls = deque()
        # Ids of queued or running calls the host cancelled (ctx.cancelled reads it).
        self.cancelled = set()
        self.sessions = sessions if sessions is not None else Sessions([], _defaults.MAX_SESSION_BYTES)
        self.nonfinite_error = nonfinite_error
        self.concurrency = max(1, concurrency)
        self.worker = worker
        # The Context of the sync handler running on the main thread, while one runs.
        self.current = None
        self.in_call = False
        self.in_signal = False
        self.sig_missed = False
        self.eof = False
        # The event loop, made on first need (importing asyncio costs tens of ms per worker start).
        self.loop = None
        self.in_async = False
        self.reader_on = False
        self.active = 0
        self.inflight = {}
        self._pool = None
        self._current_task = None
        self._all_tasks = None
        self._registry = None

    # ---- output -------------------------------------------------------------

    def send(self, obj):
        # Control messages: ASCII JSON, so a lone surrogate in a traceback cannot break the frame.
        self.send_raw(_ascii_dumps(obj).encode())

    def send_error(self, rid, kind, payload):
        self.send_with_error({"t": "err", "id": rid, "k": kind, "e": payload})

    def send_with_error(self, msg):
        """Sends a message whose "e" is an error payload, cut to fit maxFrameBytes when it does not."""
        body = _ascii_dumps(msg).encode()
        keep = self.max_frame >> 1
        while len(body) > self.max_frame and keep >= 0:
            body = _ascii_dumps(dict(msg, e=fit_error(msg["e"], keep))).encode()
            keep = keep >> 1 if keep else -1
        self.send_raw(body)

    def answer_problem(self, rid, reason):
        self.send_error(rid, "bad_request", _err("BadRequest", reason))

    def encode_message(self, prefix, value, what):
        """Frames of `prefix` + value + `}` (with binary parts when the value has buffers).

        Returns ("plain", body) or ("parts", (total, buffers)), or ("error", payload) naming the
        value's path and the reason it cannot be sent."""
        body = fast_body(prefix, value)
        if body is not None:
            return "plain", body
        try:
            text, parts = encode_slow(value, self.nonfinite_error)
        except EncodeError as exc:
            return "error", _err(exc.etype, "%s cannot be sent as JSON: %s %s" % (what, exc.path, exc.what))
        if not parts:
            return "plain", (prefix + text + "}").encode()
        return "parts", binary_frame(prefix + text + ',"b":' + descriptors_json(parts) + "}", parts)

    def send_message(self, prefix, value, what):
        """Sends the value message; returns None, or the error payload when it could not be sent."""
        form, got = self.encode_message(prefix, value, what)
        try:
            if form == "plain":
                self.send_raw(got)
            elif form == "parts":
                self.send_buffers(*got)
            else:
                return got
        except OverflowError as exc:
            return _err("OverflowError", "%s: %s" % (what, exc))
        return None

    def send_ok(self, rid, value, name):
        problem = self.send_message('{"t":"ok","id":%d,"v":' % rid, value, "the result of %s" % name)
        if problem is not None:
            self.send_error(rid, "python", problem)

    def send_item(self, rid, value, index, name):
        """One stream item; returns None, or ("python", payload) when it cannot be sent."""
        problem = self.send_message('{"t":"item","id":%d,"v":' % rid, value, "item %d of %s" % (index, name))
        return None if problem is None else ("python", problem)

    def send_snapshot(self, rid, sid, session, entry):
        got = self.sessions.snapshot(rid, sid, session, entry.session == "rw", self.max_frame)
        if type(got) is str:
            self.send({"t": "snap", "id": rid, "sid": sid, "err": got})
        elif got is not None:
            with self.wlock:
                held = self.before_next
                self.before_next = got if held is None else held + got

    def failure_of(self, rid, exc, skip=0):
        """(kind, payload) of the answer for a call that raised `exc`."""
        if rid in self.cancelled and (isinstance(exc, Cancelled) or type(exc).__name__ == "CancelledError"):
            return "cancelled", _err("Cancelled", "cancelled by the host")
        return "python", exc_payload(exc, skip_frames=skip)

    # ---- control messages ---------------------------------------------------

    def on_control(self, msg):
        """cancel and credit act at once (they target calls in flight); the rest waits its turn."""
        t = msg.get("t")
        if t == "cancel":
            rid = msg.get("id")
            if type(rid) is int:
                self.on_cancel(rid)
            else:
                self.note("a cancel without an integer id")
        elif t == "credit":
            rid = msg.get("id")
            n = msg.get("n")
            if type(rid) is int and type(n) is int and n >= 0:
                fl = self.inflight.get(rid)
                if fl is not None:
                    fl.add_credit(n)
            else:
                self.note("a credit without an integer id and count")
        elif t == "drop_session" or t == "restore":
            self.calls.append(msg)
        else:
            self.note("a message of unknown type %s" % _ascii_dumps(t)[:40])

    def note(self, what):
        sys.stderr.write("pyfleet worker: ignored %s from the host\n" % what)

    def on_cancel(self, rid):
        cur = self.current
        if cur is not None and cur._m["id"] == rid:
            self.cancelled.add(rid)
            return
        fl = self.inflight.get(rid)
        if fl is not None:
            self.cancelled.add(rid)
            fl.cancel(self)
            return
        for c in self.calls:
            if c.get("id") == rid and c.get("t") == "call":
                self.cancelled.add(rid)
                return
        # Already answered: the host may cancel what has finished; nothing to do.

    def on_sigusr1(self, signum, frame):
        if self.in_signal:
            return
        if self.in_call:
            rid = self.current._m["id"] if self.current is not None else None
        else:
            fl = None
            if self.in_async:
                task = self._current_task(self.loop)
                if task is not None:
                    fl = getattr(task, "_pyfleet_flight", None)
            if fl is None or not fl.in_user:
                # Our own code runs: the frame is read in order, soon.
                self.sig_missed = True
                return
            rid = fl.rid
        self.in_signal = True
        try:
            self.poll_input()
        finally:
            self.in_signal = False
        if self.in_async and self.calls:
            self.loop.call_soon(self.process_queue)
        if rid is not None and rid in self.cancelled:
            raise Cancelled("cancelled by the host")

    def poll_input(self):
        """Reads whatever is waiting on fd 3 without blocking."""
        while not self.eof and select.select([IN_FD], [], [], 0)[0]:
            if not self.read_once():
                self.eof = True

    # ---- calls --------------------------------------------------------------

    def run(self, msg):
        rid = msg.get("id")
        name = msg.get("cmd")
        if type(rid) is not int or type(name) is not str:
            return self.run_odd(msg)
        cancelled = self.cancelled
        if cancelled and rid in cancelled:
            cancelled.discard(rid)
            self.send_error(rid, "cancelled", _err("Cancelled", "cancelled before it started"))
            return
        entry = _COMMANDS.get(name)
        if entry is None:
            self.send_error(rid, "unknown_command", _err("UnknownCommand", "no command named %r is registered" % (name,)))
            return
        if entry.mode or "cr" in msg:
            return self.run_special(msg, entry)
        sid = msg.get("sid")
        if sid is None:
            sess = None
        else:
            sess = self.session_for(rid, sid)
            if sess is None:
                return
        ctx = Context(msg, self, sess)
        chaos = msg.get("x")
        self.current = ctx
        try:
            try:
                self.in_call = True
                if chaos is not None:
                    _chaos.before_call(chaos, self)
                result = entry.fn(msg.get("a") if entry.conv is None else entry.convert(msg.get("a")), ctx)
            finally:
                self.in_call = False
                self.current = None
        except BaseException as exc:  # a handler's bug must not take the worker down
            kind, payload = self.failure_of(rid, exc, skip=1)
            cancelled.discard(rid)
            if sid is not None and ctx._t:
                self.send_snapshot(rid, sid, sess, entry)
            self.send_error(rid, kind, payload)
            return
        if cancelled:
            cancelled.discard(rid)
        if sid is not None and ctx._t:
            self.send_snapshot(rid, sid, sess, entry)
        body = fast_body('{"t":"ok","id":%d,"v":' % rid, result)
        if body is None:
            self.send_ok(rid, result, name)
            return
        try:
            self.send_raw(body)
        except OverflowError as exc:
            self.send_error(rid, "python", _err("OverflowError", "the result of %s: %s" % (name, exc)))

    def session_for(self, rid, sid):
        """The call's session dict, or None after answering the call (a refused session, a bad sid)."""
        if type(sid) is not str:
            self.answer_problem(rid, "the call's sid is not a string")
            return None
        try:
            return self.sessions.for_call(sid)
        except Refused as exc:
            self.send_error(rid, "session", _err("SessionRefused", str(exc)))
            return None

    def run_odd(self, msg):
        """What is not a well-formed call: restore, drop_session (in order with calls), malformed calls."""
        t = msg.get("t")
        if t == "drop_session":
            sid = msg.get("sid")
            if type(sid) is str:
                self.sessions.drop(sid)
            else:
                self.note("a drop_session without a string sid")
            return
        if t == "restore":
            return self.restore(msg)
        rid = msg.get("id")
        if type(rid) is not int:
            self.fatal("the host sent a call without an integer id")
        self.answer_problem(rid, "the call has no command name (cmd)")

    def restore(self, msg):
        rid = msg.get("id")
        if type(rid) is not int:
            self.fatal("the host sent a restore without an integer id")
        try:
            problem = self.sessions.restore(msg)
        except Refused as exc:
            self.send_error(rid, "session", _err("SessionRefused", "snapshot of session %r refused: %s" % (msg.get("sid"), exc)))
            return
        if problem is not None:
            self.answer_problem(rid, problem)
            return
        self.send_raw(('{"t":"ok","id":%d,"v":null}' % rid).encode())

    def run_special(self, msg, entry):
        """Every call but a plain `def` called without credit: streams, async, threaded."""
        rid = msg["id"]
        cr = msg.get("cr")
        if entry.mode == ASYNC and cr is None and msg.get("sid") is None:
            # The common concurrent call, kept short: a task, nothing else to decide.
            fl = _tasks.Flight(rid, Context(msg, self, None), msg, entry, _tasks.ASYNC_CALL)
            coro = _tasks.async_call(self, fl, msg.get("a"), msg.get("x"))
            if self.in_async:
                self.start_task(fl, coro)
            else:
                self.enter_async(fl, coro)
            return
        if cr is not None and (type(cr) is not int or cr < 0):
            self.answer_problem(rid, "the call's credit (cr) is not a non-negative integer")
            return
        if entry.stream and cr is None:
            self.answer_problem(rid, "%s is a generator: it must be called as a stream (pool.stream), not with execute" % entry.name)
            return
        sid = msg.get("sid")
        sess = None
        if sid is not None:
            sess = self.session_for(rid, sid)
            if sess is None:
                return
        ctx = Context(msg, self, sess)
        mode = entry.mode
        chaos = msg.get("x")
        args = msg.get("a")
        if cr is not None:
            kind = _tasks.THREAD_STREAM if mode >= THREAD else _tasks.STREAM
        else:
            kind = _tasks.THREAD_CALL if mode == THREAD else _tasks.ASYNC_CALL
        fl = _tasks.new_flight(rid, ctx, msg, entry, kind)
        fl.credit = cr or 0
        if (mode == PLAIN or mode == GEN) and not self.in_async:
            self.adopt(fl)
            _streams.run_blocking(self, fl, args, chaos)
            return
        if kind == _tasks.THREAD_STREAM:
            coro = _streams.thread_stream(self, fl, args, chaos)
        elif kind == _tasks.STREAM:
            coro = _streams.loop_stream(self, fl, args, chaos)
        elif kind == _tasks.THREAD_CALL:
            coro = _tasks.thread_call(self, fl, args, chaos)
        else:
            coro = _tasks.async_call(self, fl, args, chaos)
        if self.in_async:
            self.start_task(fl, coro)
        else:
            self.enter_async(fl, coro)

    def adopt(self, fl):
        """Registers a flight: cancel and credit find it; it owns its message's binary parts."""
        self.inflight[fl.rid] = fl
        holds = self.holds
        if holds:
            fl.hold = holds.pop(id(fl.msg), None)

    def start_task(self, fl, coro):
        self.inflight[fl.rid] = fl
        if self.holds:
            fl.hold = self.holds.pop(id(fl.msg), None)
        self.active += 1
        task = fl.task = self.loop.create_task(coro)
        # The signal handler finds the flight of the task it interrupted here.
        task._pyfleet_flight = fl

    def settle(self, fl, outcome, result, end_n=None):
        """The final answer of a flight (after its snapshot), then forgets it."""
        rid = fl.rid
        ctx = fl.ctx
        try:
            if ctx._t:
                sid = ctx._m.get("sid")
                if sid is not None:
                    self.send_snapshot(rid, sid, ctx._s, fl.entry)
            if outcome is not None:
                self.send_error(rid, outcome[0], outcome[1])
            elif end_n is not None:
                self.send_raw(('{"t":"end","id":%d,"n":%d}' % (rid, end_n)).encode())
            else:
                body = fast_body('{"t":"ok","id":%d,"v":' % rid, result)
                if body is None:
                    self.send_ok(rid, result, fl.entry.name)
                else:
                    try:
                        self.send_raw(body)
                    except OverflowError as exc:
                        self.send_error(rid, "python", _err("OverflowError", "the result of %s: %s" % (fl.entry.name, exc)))
        finally:
            self.drop_flight(fl)

    def drop_flight(self, fl):
        del self.inflight[fl.rid]
        if self.cancelled:
            self.cancelled.discard(fl.rid)
        if fl.hold is not None:
            self.holds[id(fl.msg)] = fl.hold
            fl.hold = None
            self.release_msg(fl.msg)
        if fl.task is not None:
            # The task points at its flight: without this, finished tasks would live on in a
            # cycle (and in asyncio's registry of tasks) until the garbage collector ran.
            fl.task = None
            self.active -= 1
            if not self.active:
                self.maybe_stop()

    def thread_pool(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="pyfleet-call")
        return self._pool

    # ---- the event loop -------------------------------------------------------

    def ensure_loop(self):
        if self.loop is None:
            import asyncio

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            self._current_task = asyncio.current_task
            self._all_tasks = asyncio.all_tasks
            # Every task not yet collected (done or not): counting it is cheaper than listing
            # the pending ones, and settles the usual case (loop_has_other_tasks).
            self._registry = getattr(asyncio.tasks, "_all_tasks", None)
        return self.loop

    def enter_async(self, fl=None, coro=None):
        """Runs the event loop until nothing is in flight or queued (or fd 3 ends)."""
        loop = self.loop or self.ensure_loop()
        if not self.reader_on:
            loop.add_reader(IN_FD, self.on_readable)
            self.reader_on = True
        self.in_async = True
        try:
            if coro is not None:
                self.start_task(fl, coro)
            if self.calls:
                loop.call_soon(self.process_queue)
            elif coro is None:
                loop.call_soon(self.maybe_stop)
            loop.run_forever()
        finally:
            self.in_async = False

    def on_readable(self):
        if not self.read_once():
            self.eof = True
            self.loop.stop()
            return
        if self.calls:
            self.process_queue()

    def process_queue(self):
        calls = self.calls
        holds = self.holds
        run = self.run
        while calls:
            m = calls.popleft()
            run(m)
            if holds:
                self.release_msg(m)
        self.maybe_stop()

    def maybe_stop(self):
        if self.active or self.calls or not self.in_async:
            return
        if self.loop_has_other_tasks():
            return
        self.loop.stop()

    def loop_has_other_tasks(self):
        """Tasks the handlers or @on_start hooks left running on the loop keep it running."""
        me = self._current_task(self.loop)
        registry = self._registry
        if registry is not None:
            n = len(registry)
            # No task at all, or only the one running this (it is finishing): nothing else pends.
            if n == 0 or (n == 1 and me is not None):
                return False
        return any(task is not me for task in self._all_tasks(self.loop))

    # ---- the blocking loop ----------------------------------------------------

    def serve(self):
        """Serves calls until fd 3 ends; never returns."""
        if self.loop is not None and self.loop_has_other_tasks():
            self.enter_async()
        calls = self.calls
        popleft = calls.popleft
        run = self.run
        ingest = self.ingest
        read = os.read
        holds = self.holds
        while True:
            if self.big is None:
                data = read(IN_FD, READ_SIZE)
                if not data:
                    self.shutdown()
                ingest(data)
            elif not self.read_once():
                self.shutdown()
            # The signal handler may queue more while a call runs; this drains them too.
            while calls:
                m = popleft()
                run(m)
                if holds:
                    self.release_msg(m)

    def shutdown(self):
        """fd 3 ended: the host stops this worker (or is gone). @on_stop hooks run, then exit 0."""
        if _ON_STOP:
            loop = self.ensure_loop()
            if self.reader_on:
                loop.remove_reader(IN_FD)
                self.reader_on = False
            try:
                loop.run_until_complete(run_hooks(_ON_STOP, self.worker))
            except BaseException:
                import traceback

                sys.stderr.write("pyfleet worker: an @on_stop hook failed:\n" + traceback.format_exc())
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)


async def run_hooks(hooks, worker):
    """@on_start / @on_stop hooks in order, sync ones called, async ones awaited, on the loop."""
    for hook in hooks:
        got = hook(worker)
        if hasattr(got, "__await__"):
            await got

