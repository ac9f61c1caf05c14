"""Call a handler in a test as a worker would, without a pool.

    from pyfleet.testing import call, context, cancel

    def test_add():
        assert call(add, {"a": 1, "b": 2}) == 3

`call` builds a real `Context` (session, request id, attempt, deadline, cancellation), converts
the args as the command's type hints say (dataclasses), awaits an `async def` and lists what a
generator yields. Put `npx pyfleet python-path` on PYTHONPATH to import it.
"""
import asyncio
import itertools
import time

from ._registry import _COMMANDS, Context

_ids = itertools.count(1)


class _Runtime:
    """What a Context asks of its worker: the ids of the calls the host cancelled."""

    __slots__ = ("cancelled",)

    def __init__(self):
        self.cancelled = set()


def context(session=None, *, request_id=None, attempt=1, timeout=None):
    """A real Context. `session` is the dict the handler sees as ctx.session (kept, so a test can
    read what the handler stored); `timeout` in seconds sets ctx.deadline."""
    n = next(_ids)
    msg = {"id": n, "cid": request_id if request_id is not None else "test-%d" % n, "at": attempt}
    if timeout is not None:
        msg["dl"] = (time.time() + timeout) * 1000.0
    return Context(msg, _Runtime(), session)


def cancel(ctx):
    """Makes ctx.cancelled true, as when the host gives up on the call."""
    ctx._rt.cancelled.add(ctx._m["id"])


def call(handler, args=None, *, ctx=None, **context_args):
    """Runs `handler(args, ctx)` (a function, or the name it was registered under) and returns its
    value; a generator's items as a list. Keyword arguments other than ctx go to `context()`."""
    cmd = _COMMANDS.get(handler) if isinstance(handler, str) else next((c for c in _COMMANDS.values() if c.fn is handler), None)
    if cmd is None and isinstance(handler, str):
        raise KeyError("no @command named %r (import the module that declares it first)" % handler)
    fn = cmd.fn if cmd is not None else handler
    if cmd is not None:
        args = cmd.convert(args)
    if ctx is None:
        ctx = context(**context_args)
    elif context_args:
        raise TypeError("give ctx or the context's arguments, not both")
    out = fn(args, ctx)
    if hasattr(out, "__aiter__"):
        return asyncio.run(_collect(out))
    if asyncio.iscoroutine(out):
        return asyncio.run(out)
    if hasattr(out, "__next__") and hasattr(out, "send"):
        return list(out)
    return out


async def _collect(agen):
    return [x async for x in agen]
