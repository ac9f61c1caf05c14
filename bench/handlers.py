"""Handlers of the benchmark sections h to m (`npm run bench`); standard library only."""
from __future__ import annotations

import asyncio
import os
import pickle
import time
from typing import Literal, Required, TypedDict

from pyfleet import command


@command(idempotent=True)
def add(args, ctx):
    return args["a"] + args["b"]


@command(idempotent=True)
async def aadd(args, ctx):
    """The same work as add, as an async def."""
    return args["a"] + args["b"]


@command(idempotent=True)
async def asleep(args, ctx):
    """An I/O-bound call: awaits asyncio.sleep(s)."""
    await asyncio.sleep(args["s"])
    return args.get("i")


@command(idempotent=True)
def echo(args, ctx):
    """Returns its argument: a Buffer comes back as the same bytes, a dict as the same dict."""
    return args


@command(idempotent=True)
def hold(args, ctx):
    """Runs for ms milliseconds (the call a SIGKILL interrupts in section h)."""
    time.sleep(args["ms"] / 1000.0)
    return args["i"]


@command(idempotent=True)
def items(args, ctx):
    """A generator of n small items."""
    for i in range(args["n"]):
        yield i


@command(idempotent=True)
def stamped(args, ctx):
    """A generator whose items carry the CLOCK_MONOTONIC time (ns) at which they were yielded."""
    for _ in range(args["n"]):
        yield time.monotonic_ns()


@command
def append(args, ctx):
    """Appends one small item to the session's list, keeping its last `keep` items (about 1 KB)."""
    items = ctx.session.setdefault("items", [])
    items.append(args["item"])
    if len(items) > args["keep"]:
        del items[0]
    return len(items)


@command
def big(args, ctx):
    """Makes the session at least `bytes` large pickled on its first call (half a bytes blob, half
    a list of small dicts), then counts calls (every call reads the session: a snapshot each)."""
    s = ctx.session
    if "rows" not in s:
        target = args["bytes"]
        s["blob"] = os.urandom(target // 2)
        rows = s["rows"] = []
        i = 0
        while len(pickle.dumps(s, protocol=5)) < target:
            for _ in range(1000):
                rows.append({"id": i, "name": "user-%06d" % i, "score": i * 0.5, "tags": ["a", "b"]})
                i += 1
    s["n"] = s.get("n", 0) + 1
    return s["n"]


class SearchArgs(TypedDict, total=False):
    query: Required[str]
    mode: Literal["fast", "slow"]
    limit: int | None
    tags: list[str]


@command(idempotent=True)
def search(args: SearchArgs, ctx) -> int:
    """A typed command (its schema comes from the hints): the call validateArgs checks in section m."""
    return len(args["query"])
