"""Calls that run concurrently inside one worker: async handlers as asyncio tasks, threaded
handlers on the worker's thread pool. Each runs under a Flight, the runtime's record of it.

Every answer is written from the event loop's thread, after the handler settled: the loop owns
the worker's bookkeeping (sessions, snapshots, the in-flight table), threads only run handlers.
"""
import threading

from . import _chaos
from ._registry import Cancelled
from ._exc import exc_payload

# Flight.kind
ASYNC_CALL = "async"
THREAD_CALL = "thread"
STREAM = "stream"  # a generator on the main thread (blocking loop) or an async generator task
THREAD_STREAM = "thread_stream"


class Flight:
    """A call in flight that is not the main thread's sync call: what cancel and credit act on."""

    __slots__ = ("rid", "ctx", "msg", "entry", "kind", "task", "hold", "in_user", "settling", "credit", "waiter", "cond", "cancel_event")

    def __init__(self, rid, ctx, msg, entry, kind):
        self.rid = rid
        self.ctx = ctx
        self.msg = msg
        self.entry = entry
        self.kind = kind
        self.task = None
        self.hold = None
        # True while the handler's own code runs in this task (the signal handler may raise in it).
        self.in_user = False
        # Set once the task is answering: a late cancel no longer interrupts it.
        self.settling = False
        # Streams only (set by run_special and the stream runners).
        self.credit = 0
        self.waiter = None
        self.cond = None
        self.cancel_event = None

    def add_credit(self, n):
        cond = self.cond
        if cond is not None:
            with cond:
                self.credit += n
                cond.notify_all()
            return
        self.credit += n
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def cancel(self, rt):
        """The host cancelled this call (its id is already in rt.cancelled)."""
        if self.kind == THREAD_CALL or self.kind == THREAD_STREAM:
            # A thread cannot be interrupted: it sees ctx.cancelled, the stream's wait wakes up.
            self.cancel_event.set()
            if self.cond is not None:
                with self.cond:
                    self.cond.notify_all()
            return
        if self.task is not None:
            # Deferred to the loop: this may run inside the signal handler, in the middle of
            # another task's step, where cancelling a task directly is not safe.
            rt.loop.call_soon(self._cancel_task)
        # A stream on the blocking loop checks rt.cancelled between items.

    def _cancel_task(self):
        task = self.task
        if task is not None and not self.settling and not task.done():
            task.cancel()


async def async_call(rt, fl, args, chaos):
    try:
        try:
            fl.in_user = True
            if chaos is not None:
                await _chaos.before_call_async(chaos, rt)
            result = await fl.entry.fn(args if fl.entry.conv is None else fl.entry.convert(args), fl.ctx)
        finally:
            fl.in_user = False
    except BaseException as exc:
        fl.settling = True
        rt.settle(fl, rt.failure_of(fl.rid, exc, skip=1), None)
        return
    fl.settling = True
    rt.settle(fl, None, result)


def _thread_body(rt, fl, args, chaos):
    try:
        if chaos is not None:
            _chaos.before_call_thread(chaos, rt, fl.cancel_event)
        return None, fl.entry.fn(args if fl.entry.conv is None else fl.entry.convert(args), fl.ctx)
    except BaseException as exc:
        if isinstance(exc, Cancelled):
            return ("cancelled", {"type": "Cancelled", "message": "cancelled by the host", "traceback": ""}), None
        return ("python", exc_payload(exc, skip_frames=1)), None


async def thread_call(rt, fl, args, chaos):
    try:
        outcome, result = await rt.loop.run_in_executor(rt.thread_pool(), _thread_body, rt, fl, args, chaos)
    except BaseException as exc:  # the loop shutting down under it
        outcome, result = rt.failure_of(fl.rid, exc, skip=1), None
    fl.settling = True
    rt.settle(fl, outcome, result)


def new_flight(rid, ctx, msg, entry, kind):
    fl = Flight(rid, ctx, msg, entry, kind)
    if kind == THREAD_CALL or kind == THREAD_STREAM:
        fl.cancel_event = threading.Event()
    return fl
