"""Streams: a generator command's items sent as `item` frames, never more than the host's credit.

Three ways to run one, by where its generator runs:
- run_blocking: a `def` generator on the main thread while no task or thread is in flight. Out
  of credit, it blocks reading fd 3 (credit and cancel act at once, calls wait in the queue).
- loop_stream: a `def` or `async def` generator as a task on the event loop; out of credit it
  awaits the credit. A `def` generator's steps run on the main thread, blocking the loop.
- thread_stream: a threaded `def` generator iterates on a worker thread, which waits for credit
  on a condition variable and writes its items itself.
A cancel closes the generator (its `finally` runs) and is answered `cancelled`; an exception in
it ends the stream with an `err` after the items already sent; an item that cannot be encoded
closes the generator and ends the stream with an `err` naming it. A command that is not a
generator, called as a stream, yields its value as one item and ends at once.

A generator that used its last credit stays suspended at its yield until more credit comes:
only resuming it tells whether it has more, and the worker never runs it ahead of the consumer.
"""
from . import _chaos
from ._registry import ASYNC, ASYNC_GEN, Cancelled
from ._exc import exc_payload

_CANCELLED = ("cancelled", {"type": "Cancelled", "message": "cancelled by the host", "traceback": ""})


def _one(fn, args, ctx):
    yield fn(args, ctx)


async def _one_async(fn, args, ctx):
    yield await fn(args, ctx)


def _make_gen(entry, args, ctx, stream):
    if entry.conv is not None:
        args = entry.convert(args)
    if entry.mode == ASYNC:
        return _one_async(entry.fn, args, ctx)
    if stream:
        return entry.fn(args, ctx)
    return _one(entry.fn, args, ctx)


def _close(gen, rt):
    """Closes a generator so its `finally` runs; an error there becomes the stream's error."""
    try:
        gen.close()
    except BaseException as exc:
        return ("python", exc_payload(exc))
    return None


def run_blocking(rt, fl, args, chaos):
    """A sync generator on the main thread, nothing else in flight. Returns after answering."""
    rid = fl.rid
    ctx = fl.ctx
    cancelled = rt.cancelled
    n = 0
    outcome = None
    gen = None
    rt.sig_missed = False  # a signal from before this stream concerns something else
    try:
        rt.current = ctx
        rt.in_call = True
        try:
            if chaos is not None:
                _chaos.before_call(chaos, rt)
            gen = _make_gen(fl.entry, args, ctx, fl.entry.stream)
        finally:
            rt.in_call = False
            rt.current = None
        while True:
            while fl.credit <= 0 and rid not in cancelled:
                if not rt.read_once():
                    rt.eof = True
                    break
            if rid in cancelled or rt.eof:
                outcome = _CANCELLED
                break
            rt.current = ctx
            rt.in_call = True
            try:
                item = next(gen)
            finally:
                rt.in_call = False
                rt.current = None
            problem = rt.send_item(rid, item, n, fl.entry.name)
            if problem is not None:
                outcome = problem
                break
            n += 1
            fl.credit -= 1
            if not fl.entry.stream:
                break  # a plain command's one value: the end is known without more credit
            if rt.sig_missed:
                # A SIGUSR1 came while no handler code ran: its cancel may be waiting on fd 3.
                rt.sig_missed = False
                rt.poll_input()
    except StopIteration:
        pass
    except BaseException as exc:
        outcome = rt.failure_of(rid, exc, skip=1)
    # Closing a generator that finished or raised does nothing; a suspended one runs its finally.
    # After a cancel the close runs outside the call: the SIGUSR1 that follows the cancel frame
    # must not raise Cancelled again inside the generator's finally and cut its cleanup short.
    if gen is not None:
        if outcome is _CANCELLED:
            outcome = _close(gen, rt) or outcome
        else:
            rt.current = ctx
            rt.in_call = True
            try:
                outcome = _close(gen, rt) or outcome
            finally:
                rt.in_call = False
                rt.current = None
    if rt.eof:
        rt.drop_flight(fl)
        return
    rt.settle(fl, outcome, None, n)


async def loop_stream(rt, fl, args, chaos):
    """A generator (def or async def) as a task on the event loop."""
    rid = fl.rid
    ctx = fl.ctx
    entry = fl.entry
    cancelled = rt.cancelled
    loop = rt.loop
    is_async = entry.mode in (ASYNC, ASYNC_GEN)
    n = 0
    outcome = None
    gen = None
    try:
        if is_async:
            fl.in_user = True
            try:
                if chaos is not None:
                    await _chaos.before_call_async(chaos, rt)
            finally:
                fl.in_user = False
            gen = _make_gen(entry, args, ctx, entry.stream)
        else:
            rt.current = ctx
            rt.in_call = True
            try:
                if chaos is not None:
                    _chaos.before_call(chaos, rt)
                gen = _make_gen(entry, args, ctx, entry.stream)
            finally:
                rt.in_call = False
                rt.current = None
        while True:
            while fl.credit <= 0 and rid not in cancelled:
                fl.waiter = loop.create_future()
                await fl.waiter
                fl.waiter = None
            if rid in cancelled:
                outcome = _CANCELLED
                break
            if is_async:
                fl.in_user = True
                try:
                    item = await gen.__anext__()
                finally:
                    fl.in_user = False
            else:
                rt.current = ctx
                rt.in_call = True
                try:
                    item = next(gen)
                finally:
                    rt.in_call = False
                    rt.current = None
            problem = rt.send_item(rid, item, n, entry.name)
            if problem is not None:
                outcome = problem
                break
            n += 1
            fl.credit -= 1
            if not entry.stream:
                break
    except (StopIteration, StopAsyncIteration):
        pass
    except BaseException as exc:
        outcome = rt.failure_of(rid, exc, skip=1)
    fl.settling = True
    if gen is not None:
        if is_async:
            try:
                await gen.aclose()
            except BaseException as exc:
                outcome = ("python", exc_payload(exc)) if outcome is None or outcome[0] != "cancelled" else outcome
        else:
            outcome = _close(gen, rt) or outcome
    rt.settle(fl, outcome, None, n)


def _thread_stream_body(rt, fl, args, chaos):
    """Runs on a worker thread: iterates, waits for credit, writes its items. Returns (outcome, n)."""
    rid = fl.rid
    cond = fl.cond
    cancelled = rt.cancelled
    n = 0
    gen = None
    try:
        if chaos is not None:
            _chaos.before_call_thread(chaos, rt, fl.cancel_event)
        gen = _make_gen(fl.entry, args, fl.ctx, fl.entry.stream)
        while True:
            with cond:
                while fl.credit <= 0 and rid not in cancelled:
                    cond.wait()
            if rid in cancelled:
                outcome = _CANCELLED
                break
            item = next(gen)
            if rid in cancelled:
                outcome = _CANCELLED
                break
            problem = rt.send_item(rid, item, n, fl.entry.name)
            if problem is not None:
                outcome = problem
                break
            n += 1
            with cond:
                fl.credit -= 1
            if not fl.entry.stream:
                outcome = None
                break
    except StopIteration:
        return None, n
    except BaseException as exc:
        if isinstance(exc, Cancelled):
            return _CANCELLED, n
        return ("python", exc_payload(exc, skip_frames=1)), n
    return _close(gen, rt) or outcome, n


async def thread_stream(rt, fl, args, chaos):
    import threading

    fl.cond = threading.Condition()
    try:
        outcome, n = await rt.loop.run_in_executor(rt.thread_pool(), _thread_stream_body, rt, fl, args, chaos)
    except BaseException as exc:
        outcome, n = rt.failure_of(fl.rid, exc, skip=1), 0
    fl.settling = True
    rt.settle(fl, outcome, None, n)
