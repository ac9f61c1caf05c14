"""The worker process: reads calls on fd 3, answers on fd 4 (docs/protocol.md is the contract).

Stdout and stderr are not part of the protocol: whatever a handler (or a C extension) prints
there goes to the host's log.

Where things live: _framing.py lays out and checks frames, _io.py reads and writes them,
_values.py turns results into JSON and binary parts, _runtime.py runs and cancels calls (its
docstring explains the two modes and the cancellation), _tasks.py and _streams.py run the
concurrent calls and the streams, _sessions.py keeps sessions and their snapshots. This module
starts the process: it loads the handlers' module, runs the @on_start hooks, says hello, starts
the heartbeat thread and hands over to the runtime.

No orphans: the worker asks Linux to SIGKILL it when the host dies (PR_SET_PDEATHSIG), checks
at start that its parent is still the host (PYFLEET_PARENT_PID), and the heartbeat thread also
polls its parent; a closed fd 3 is a clean stop. PYFLEET_PDEATHSIG=0 and PYFLEET_PARENT_POLL=0
switch the first and the last off, so each can be tested alone.
"""
import os
import signal
import sys
import threading
import time

from . import _chaos, _defaults
from ._framing import IN_FD, OUT_FD
from ._io import write_all
from ._registry import _COMMANDS, _ON_START, WorkerInfo, commands, where
from ._runtime import Runtime, run_hooks
from ._sessions import Sessions, max_bytes_from_env, read_keys
from ._exc import exc_payload

PROTOCOL_VERSION = 3

__all__ = ["main", "Runtime", "IN_FD", "OUT_FD", "PROTOCOL_VERSION", "_load_module"]


def _heartbeat(rt, interval, parent):
    """Writes a heartbeat every `interval` s; exits the process when its parent is no longer `parent` (None: no poll)."""
    frame = b'\x00\x00\x00\x0a{"t":"hb"}'
    while True:
        time.sleep(interval)
        if parent is not None and os.getppid() != parent:
            os._exit(0)
        if _chaos.heartbeat_stalled():
            continue
        try:
            with rt.wlock:
                write_all(frame)
        except OSError:
            # The host closed its end: nobody will read our answers.
            os._exit(0)


def _die_with_parent(pdeathsig):
    """Asks Linux to SIGKILL this process when the host dies, even mid-call."""
    if pdeathsig and sys.platform.startswith("linux"):
        why = None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
                why = os.strerror(ctypes.get_errno())
        except Exception as exc:
            why = "%s: %s" % (type(exc).__name__, exc)
        if why is not None:
            sys.stderr.write(
                "pyfleet worker: prctl(PR_SET_PDEATHSIG) failed (%s); only the heartbeat thread's parent poll ends this worker if the host dies\n" % why
            )
    expected = os.environ.get("PYFLEET_PARENT_PID")
    # The host may have died before prctl took effect: then our parent is already another process.
    if expected and os.getppid() != int(expected):
        os._exit(0)


def _load_module(spec):
    import importlib
    import importlib.util

    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = os.path.splitext(os.path.basename(path))[0]
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise ImportError("cannot load %s as a Python module" % path)
        mod = importlib.util.module_from_spec(mspec)
        sys.modules[name] = mod
        mspec.loader.exec_module(mod)
        return mod
    return importlib.import_module(spec)


def _env_int(name, default):
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def _worker_id():
    raw = os.environ.get("PYFLEET_WORKER_ID")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def _described(infos):
    """The command infos, with their schemas from type hints when the host asked for them.

    Only the worker the host asks (PYFLEET_DESCRIBE=1, the first it starts) pays for importing
    typing and reading the hints; a hint it does not know degrades to an open schema, with a
    line on stderr (the host logs it) naming the command and the hint.
    """
    if os.environ.get("PYFLEET_DESCRIBE") != "1":
        return infos
    from ._schema import describe_module

    described = describe_module(_COMMANDS)
    for name, d in described["commands"].items():
        info = infos.get(name)
        if info is not None:
            info.update({k: d[k] for k in ("args", "result", "item", "doc")})
    for w in described["warnings"]:
        sys.stderr.write("pyfleet: %s\n" % w)
    return infos


def _init_failed(rt, exc, stage, hook=None):
    """Answers init_error (what failed, under which interpreter) and exits 3."""
    msg = {"t": "init_error", "stage": stage, "python": sys.version.split()[0], "executable": sys.executable, "e": exc_payload(exc)}
    if hook is not None:
        msg["hook"] = hook
    try:
        rt.send_with_error(msg)
    finally:
        sys.stderr.flush()
        os._exit(3)


def main():
    # The parent as the worker starts: read later (when the heartbeat thread starts, after hello),
    # a host that died in between would already have been replaced by init.
    expected = os.environ.get("PYFLEET_PARENT_PID", "")
    parent = int(expected) if expected.isdigit() else os.getppid()
    _die_with_parent(os.environ.get("PYFLEET_PDEATHSIG", "1") != "0")
    for fd in (IN_FD, OUT_FD):
        os.set_inheritable(fd, False)
    # Ctrl-C in a terminal reaches the whole process group; the host decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass
    max_frame = _env_int("PYFLEET_MAX_FRAME", _defaults.MAX_FRAME)
    hb_ms = _env_int("PYFLEET_HEARTBEAT_MS", _defaults.HEARTBEAT_MS)
    concurrency = max(1, _env_int("PYFLEET_CONCURRENCY", _defaults.CONCURRENCY))
    worker = WorkerInfo(_worker_id(), os.getpid(), concurrency)
    rt = Runtime(max_frame, concurrency=concurrency, worker=worker, nonfinite_error=os.environ.get("PYFLEET_NON_FINITE") == "error")
    _chaos.configure_from_env()
    try:
        # Before the user's module runs: it never sees the keys, nor do its subprocesses.
        rt.sessions = Sessions(read_keys(os.environ), max_bytes_from_env(os.environ))
        _chaos.on_start()
        spec = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PYFLEET_MODULE", "")
        if not spec:
            raise ImportError("no module given to the worker")
        _load_module(spec)
        if not _COMMANDS:
            raise ImportError("module %s registers no commands: decorate handlers with @command" % spec)
    except BaseException as exc:
        _init_failed(rt, exc, "import")
    for hook in _ON_START:
        try:
            rt.ensure_loop().run_until_complete(run_hooks([hook], worker))
        except BaseException as exc:
            _init_failed(rt, exc, "on_start", "%s (%s)" % (getattr(hook, "__qualname__", "?"), where(hook)))
    signal.signal(signal.SIGUSR1, rt.on_sigusr1)
    rt.send({"t": "hello", "protocol": PROTOCOL_VERSION, "pid": os.getpid(), "python": sys.version.split()[0], "commands": _described(commands())})
    if hb_ms > 0:
        poll = os.environ.get("PYFLEET_PARENT_POLL", "1") != "0"
        threading.Thread(target=_heartbeat, args=(rt, hb_ms / 1000.0, parent if poll else None), name="pyfleet-heartbeat", daemon=True).start()
    rt.serve()


if __name__ == "__main__":
    main()
