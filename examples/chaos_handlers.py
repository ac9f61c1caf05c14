"""Handlers for `pyfleet chaos`: a workload whose results and side effects the host can check.

- compute (idempotent): a pure function of its arguments; the host knows the right answer,
  so an answer delivered to the wrong call is caught.
- record (not idempotent): appends the call's unique token as one line to the ledger file
  named by $PYFLEET_CHAOS_LEDGER (opened with O_APPEND, one write() per line, so lines from
  several workers never interleave). After the run the host counts tokens seen more than
  once: a non-idempotent call that ran twice.
- session_put (not idempotent) / session_get (idempotent): per-session state, so the host
  can check that a session is never silently re-created empty.
"""
import os

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


@command(idempotent=True)
def compute(args, ctx):
    """Sum of i*i for i < n (a little CPU), echoed with the caller's salt."""
    n = int(args["n"])
    total = 0
    for i in range(n):
        total += i * i
    return {"n": n, "salt": args["salt"], "value": total}


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
