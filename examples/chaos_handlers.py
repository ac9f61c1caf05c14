"""Handlers for `pyfleet chaos`: a workload whose results and side effects the host can check.

- compute (idempotent): a pure function of its arguments; the host knows the right answer,
  so an answer delivered to the wrong call is caught.
- record (not idempotent): appends the call's unique token as one line to the ledger file
  named by $PYFLEET_CHAOS_LEDGER (opened with O_APPEND, one write() per line, so lines from
  several workers never interleave). After the run the host counts tokens seen more than
  once: a non-idempotent call that ran twice.
- session_put (not idempotent) / session_get (idempotent): per-session state, so the host
  can check that a session is never silently re-created empty, older than a call that
  succeeded, or another session's (the pool's sessions are durable: after a worker death the
  state is restored from its snapshot on another worker).
- acompute (async def) and tcompute (threaded): compute's answer from an asyncio task and from
  a worker thread, so with concurrency > 1 several share a worker.
- count_stream (async generator): items {i, salt} for i < n, in order; the host checks that a
  stream is complete and in order, or ends with a PoolError.
- blob: binary both ways; the host checks the SHA-256 of what each side received.
"""
import array
import asyncio
import hashlib
import os
import threading
import time

from pyfleet import command

_ledger_fd = None


def _ledger():
    global _ledger_fd
    if _ledger_fd is None:
        path = os.environ.get("PYFLEET_CHAOS_LEDGER")
        if not path:
            raise RuntimeError("record needs $PYFLEET_CHAOS_LEDGER: the file to append tokens to")
        _ledger_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _ledger_fd


def _sum_of_squares(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


@command(idempotent=True)
def compute(args, ctx):
    """Sum of i*i for i < n (a little CPU), echoed with the caller's salt."""
    n = int(args["n"])
    return {"n": n, "salt": args["salt"], "value": _sum_of_squares(n)}


@command(idempotent=True)
async def acompute(args, ctx):
    """compute after an await: an asyncio task that shares its worker with other async calls."""
    await asyncio.sleep(float(args.get("ms", 0)) / 1000.0)
    n = int(args["n"])
    return {"n": n, "salt": args["salt"], "value": _sum_of_squares(n), "task": asyncio.current_task() is not None}


@command(threaded=True, idempotent=True)
def tcompute(args, ctx):
    """compute on one of the worker's threads, after blocking I/O (a sleep)."""
    time.sleep(float(args.get("ms", 0)) / 1000.0)
    n = int(args["n"])
    return {"n": n, "salt": args["salt"], "value": _sum_of_squares(n), "thread": threading.current_thread() is not threading.main_thread()}


@command(idempotent=True)
async def count_stream(args, ctx):
    """Yields {i, salt} for i < n, one every `ms` milliseconds."""
    delay = float(args.get("ms", 0)) / 1000.0
    for i in range(int(args["n"])):
        await asyncio.sleep(delay)
        yield {"i": i, "salt": args["salt"]}


def _pattern(salt, n):
    seed = hashlib.sha256(str(salt).encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]


@command(idempotent=True)
def blob(args, ctx):
    """Binary in (a Buffer and a Float64Array) and out (bytes and a float array), with checksums."""
    data = args["data"]  # a read-only memoryview of the caller's bytes
    values = args["values"]  # a memoryview of format "d"
    if values.format != "d":
        raise TypeError("values arrived as format %r, not 'd'" % values.format)
    out = _pattern(args["salt"], int(args["n"]))
    return {
        "sha_in": hashlib.sha256(data).hexdigest(),
        "sha_values": hashlib.sha256(values).hexdigest(),
        "out": out,
        "sha_out": hashlib.sha256(out).hexdigest(),
        "reversed": array.array("d", reversed(values)),
    }


@command  # not idempotent: each run appends a line
def record(args, ctx):
    token = str(args["token"])
    line = (token + "\n").encode()
    written = os.write(_ledger(), line)
    if written != len(line):
        raise OSError("short write to the ledger (%d of %d bytes)" % (written, len(line)))
    return token


@command  # not idempotent (declared so: it changes state)
def session_put(args, ctx):
    ctx.session["v"] = args["v"]
    return args["v"]


@command(idempotent=True)
def session_get(args, ctx):
    return ctx.session.get("v")
