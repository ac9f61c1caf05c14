"""Example handlers for pyfleet: the demo, the README and docs/workloads.md use these.

Standard library only: the binary examples use bytes and array.array (numpy works the same
way: numpy.frombuffer(args["values"]) needs no copy, and a numpy array returned arrives in Node
as an NDArray).
"""
import array
import asyncio
import hashlib
import math
import threading
import time

from pyfleet import command, on_start, on_stop

_worker = {}


@on_start  # once per worker, on its event loop, before it takes calls: make clients here
async def setup(worker):
    _worker["id"] = worker.id
    _worker["concurrency"] = worker.concurrency


@on_stop  # once per worker, when the pool stops it cleanly: close clients here
async def teardown(worker):
    _worker.clear()


@command(idempotent=True)  # pure: safe to re-send after a worker dies
def add(args, ctx):
    return args["a"] + args["b"]


@command  # default: not idempotent (at most once once a worker took it)
def remember(args, ctx):
    ctx.session["x"] = args["x"]  # per-session state, lives in this worker
    return len(ctx.session)


@command(idempotent=True)
def recall(args, ctx):
    return ctx.session.get("x")


@command(idempotent=True)
def echo(args, ctx):
    return args


@command(idempotent=True)
def primes(args, ctx):
    """CPU-bound work: counts primes below n."""
    n = int(args.get("n", 20000))
    count = 0
    for i in range(2, n):
        r = int(math.isqrt(i))
        for d in range(2, r + 1):
            if i % d == 0:
                break
        else:
            count += 1
    return count


@command(idempotent=True)
def sleep(args, ctx):
    time.sleep(float(args.get("ms", 100)) / 1000.0)
    return {"slept_ms": args.get("ms", 100), "cancelled": ctx.cancelled}


@command
def fail(args, ctx):
    raise ValueError(args.get("message", "this handler always fails"))


@command(idempotent=True)
def shout(args, ctx):
    print("shout:", args.get("text", ""))
    return str(args.get("text", "")).upper()


# ---- concurrency inside a worker (createPool({ concurrency: N })) --------------------------


@command(idempotent=True, timeout=60)  # per-command default timeout, in seconds
async def ask(args, ctx):
    """I/O-bound, like an LLM call: up to `concurrency` of these run at once in one worker."""
    await asyncio.sleep(float(args.get("ms", 100)) / 1000.0)  # stands for `await client.complete(...)`
    return {"answer": "you asked: " + str(args.get("prompt", "")), "worker": _worker.get("id")}


@command(threaded=True, idempotent=True)
def fetch(args, ctx):
    """Synchronous but I/O-bound (requests, DSPy): runs on one of the worker's threads."""
    end = time.monotonic() + float(args.get("ms", 100)) / 1000.0
    while time.monotonic() < end and not ctx.cancelled:  # a long threaded handler checks ctx.cancelled
        time.sleep(0.01)
    return {"url": args.get("url"), "main_thread": threading.current_thread() is threading.main_thread(), "cancelled": ctx.cancelled}


# ---- streams (pool.stream(), POST /v1/stream/<command>, pyfleet call) ------------------------


@command(idempotent=True)
async def tokens(args, ctx):
    """A generator: yields the words of `text`, one every `ms` milliseconds, as a model streams tokens."""
    delay = float(args.get("ms", 50)) / 1000.0
    for word in str(args.get("text", "")).split():
        await asyncio.sleep(delay)
        yield word


@command(idempotent=True)
def countdown(args, ctx):
    """A plain def generator; its finally runs when the consumer stops early (break, a hung-up client)."""
    try:
        for i in range(int(args.get("n", 3)), 0, -1):
            yield i
    finally:
        print("countdown closed")


# ---- binary data --------------------------------------------------------------------------


@command(idempotent=True)
def checksum(args, ctx):
    """A Buffer arrives as a read-only memoryview; bytes go back to Node as a Buffer."""
    data = args["data"]
    return {"size": data.nbytes, "sha256": hashlib.sha256(data).hexdigest(), "reversed": bytes(data)[::-1]}


@command(idempotent=True)
def scale(args, ctx):
    """A Float64Array arrives as a memoryview of format "d"; an array.array("d") goes back as a Float64Array."""
    factor = float(args.get("factor", 2.0))
    return array.array("d", (x * factor for x in args["values"]))


# ---- sessions (durable by default: the state survives its worker) -------------------------


@command  # not idempotent: it changes the session
def chat(args, ctx):
    """Keeps a conversation's history in its session; returns the number of turns so far."""
    history = ctx.session.setdefault("history", [])
    history.append(str(args["message"]))
    return len(history)


@command(idempotent=True, session="read")  # reads only: no snapshot after it
def history(args, ctx):
    return list(ctx.session.get("history", []))
