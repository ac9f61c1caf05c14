"""Fault injection, inert unless the host started this worker with chaos enabled.

The host decides which call gets which fault (from its seeded random source, so a run can
be replayed) and names it in the call's "x" field; this module only carries it out. A
worker started without PYFLEET_CHAOS=1 ignores "x" entirely.

A fault runs inside the call, where the handler would: on the main thread for a plain def, in
the task for an async def (a hang awaits, so a cancel ends it as it would end the handler), on
the worker thread for a threaded one (a hang waits for the cancel and acknowledges it, as a
well-behaved threaded handler does; hang_uncancellable ignores it).
"""
import os
import signal
import time

_enabled = False
_stall_until = 0.0
_hoard = []


def configure_from_env():
    global _enabled
    _enabled = os.environ.get("PYFLEET_CHAOS") == "1"


def on_start():
    if not _enabled:
        return
    slow = int(os.environ.get("PYFLEET_CHAOS_SLOW_START_MS", "0"))
    if slow > 0:
        time.sleep(slow / 1000.0)
    if os.environ.get("PYFLEET_CHAOS_FAIL_IMPORT") == "1":
        raise ImportError("chaos: injected import failure")


def heartbeat_stalled():
    return _enabled and time.monotonic() < _stall_until


def _common(kind, fault, rt):
    """The faults that act the same wherever the call runs; True when `kind` was one of them."""
    global _stall_until
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang_uncancellable":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        while True:
            time.sleep(3600)
    elif kind == "garbage":
        with rt.wlock:
            os.write(4, b"\xff\xfe\x00garbage: not a pyfleet frame\n")
    elif kind == "truncated":
        with rt.wlock:
            os.write(4, b"\x00\x00\x00\x40" + b'{"t":"ok","id"')
    elif kind == "exception":
        raise RuntimeError("chaos: injected exception")
    elif kind == "memory":
        mb = int(fault.get("mb", 64))
        _hoard.append(b"\x01" * (mb << 20))
    elif kind == "stall":
        _stall_until = time.monotonic() + float(fault.get("ms", 5000)) / 1000.0
    else:
        return False
    return True


def before_call(fault, rt):
    """Runs inside a sync call (cancellable like the handler)."""
    if not _enabled or not isinstance(fault, dict):
        return
    kind = fault.get("kind")
    if _common(kind, fault, rt):
        return
    if kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "sleep":
        time.sleep(float(fault.get("ms", 0)) / 1000.0)


async def before_call_async(fault, rt):
    """Runs inside an async call's task: a hang or a sleep awaits, and a cancel ends it."""
    if not _enabled or not isinstance(fault, dict):
        return
    kind = fault.get("kind")
    if _common(kind, fault, rt):
        return
    import asyncio

    if kind == "hang":
        while True:
            await asyncio.sleep(3600)
    elif kind == "sleep":
        await asyncio.sleep(float(fault.get("ms", 0)) / 1000.0)


def before_call_thread(fault, rt, cancelled):
    """Runs on the worker thread of a threaded call; `cancelled` is the call's threading.Event."""
    if not _enabled or not isinstance(fault, dict):
        return
    kind = fault.get("kind")
    if kind == "hang_uncancellable":
        # Signals reach only the main thread: this thread simply never looks at the cancel.
        while True:
            time.sleep(3600)
    if _common(kind, fault, rt):
        return
    from ._registry import Cancelled

    if kind == "hang":
        cancelled.wait()
        raise Cancelled("cancelled by the host")
    elif kind == "sleep":
        if cancelled.wait(float(fault.get("ms", 0)) / 1000.0):
            raise Cancelled("cancelled by the host")
