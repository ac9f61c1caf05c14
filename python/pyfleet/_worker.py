"""The worker process: reads calls on fd 3, answers on fd 4.

Frames are a 4-byte big-endian length and UTF-8 JSON. Stdout and stderr are not part of
the protocol: whatever a handler (or a C extension) prints there goes to the host's log.

Threads: the main thread reads frames and runs handlers itself (handing each call to
another thread through a queue costs about a quarter of the sequential rate). A
heartbeat thread writes liveness frames under the write lock, so the host sees a worker
alive while a long handler runs, and notices when it is not.

Cancellation: the host writes a cancel frame and sends SIGUSR1. The signal handler runs
on the main thread between bytecodes; only while a handler runs does it read the frames
waiting on fd 3 (the main loop is not reading then, so the buffer has one owner), and if
one cancels the running call it raises Cancelled in the handler. Between calls it does
nothing: the main loop reads the cancel frame in order. This costs nothing on the hot
path (no extra thread, no extra syscall per call), and interrupts time.sleep and other
blocking calls; a C extension that holds the GIL cannot be interrupted, and the host
kills the process after a grace period.
"""
import json
import os
import select
import signal
import sys
import threading
import time
from collections import deque

from . import _chaos
from ._registry import _COMMANDS, Cancelled, Context, commands

IN_FD = 3
OUT_FD = 4
PROTOCOL_VERSION = 1

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_loads = json.loads


def _write_all(data):
    view = memoryview(data)
    while view:
        n = os.write(OUT_FD, view)
        view = view[n:]


def _exc_payload(exc, skip_frames=0):
    import traceback

    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"type": type(exc).__name__, "message": str(exc), "traceback": text}


class Runtime:
    def __init__(self, max_frame):
        self.max_frame = max_frame
        self.wlock = threading.Lock()
        self.buf = bytearray()
        self.calls = deque()
        self.cancelled_ids = set()
        self.sessions = {}
        self.current = None
        self.cancel_requested = None
        self.in_call = False
        self.in_signal = False

    # ---- output -------------------------------------------------------------

    def send_raw(self, body):
        if len(body) > self.max_frame:
            raise OverflowError(
                "answer of %d bytes exceeds the pool's maxFrameBytes (%d)" % (len(body), self.max_frame)
            )
        frame = len(body).to_bytes(4, "big") + body
        with self.wlock:
            _write_all(frame)

    def send(self, obj):
        self.send_raw(_dumps(obj).encode())

    def send_error(self, rid, kind, payload):
        self.send({"t": "err", "id": rid, "k": kind, "e": payload})

    # ---- input --------------------------------------------------------------

    def read_blocking(self):
        data = os.read(IN_FD, 1 << 16)
        if not data:
            # The host closed the pipe: a graceful stop, or the host is gone.
            os._exit(0)
        self.ingest(data)

    def ingest(self, data):
        buf = self.buf
        buf += data
        off = 0
        n = len(buf)
        while n - off >= 4:
            ln = int.from_bytes(buf[off : off + 4], "big")
            if ln > self.max_frame:
                sys.stderr.write("pyfleet worker: host sent a frame of %d bytes, over the limit; exiting\n" % ln)
                os._exit(70)
            if n - off - 4 < ln:
                break
            msg = _loads(buf[off + 4 : off + 4 + ln])
            off += 4 + ln
            self.on_message(msg)
        if off:
            del buf[:off]

    def on_message(self, msg):
        t = msg.get("t")
        if t == "call":
            self.calls.append(msg)
        elif t == "cancel":
            rid = msg.get("id")
            if self.in_call and rid == self.current:
                self.cancel_requested = rid
            elif any(c.get("id") == rid for c in self.calls):
                self.cancelled_ids.add(rid)
        elif t == "drop_session":
            self.sessions.pop(msg.get("sid"), None)

    def on_sigusr1(self, signum, frame):
        if not self.in_call or self.in_signal:
            return
        self.in_signal = True
        try:
            while select.select([IN_FD], [], [], 0)[0]:
                data = os.read(IN_FD, 1 << 16)
                if not data:
                    os._exit(0)
                self.ingest(data)
        finally:
            self.in_signal = False
        if self.in_call and self.cancel_requested == self.current:
            raise Cancelled("cancelled by the host")

    # ---- calls --------------------------------------------------------------

    def run(self, msg):
        rid = msg.get("id")
        if rid in self.cancelled_ids:
            self.cancelled_ids.discard(rid)
            self.send_error(rid, "cancelled", {"type": "Cancelled", "message": "cancelled before it started", "traceback": ""})
            return
        name = msg.get("cmd")
        entry = _COMMANDS.get(name)
        if entry is None:
            self.send_error(
                rid,
                "unknown_command",
                {"type": "UnknownCommand", "message": "no command named %r is registered" % (name,), "traceback": ""},
            )
            return
        sid = msg.get("sid")
        session = self.sessions.setdefault(sid, {}) if sid is not None else {}
        dl = msg.get("dl")
        ctx = Context(session, rid, dl / 1000.0 if dl else None, self)
        chaos = msg.get("x")
        self.current = rid
        self.cancel_requested = None
        try:
            try:
                self.in_call = True
                if chaos is not None:
                    _chaos.before_call(chaos, self)
                result = entry[0](msg.get("a"), ctx)
            finally:
                self.in_call = False
        except Cancelled:
            self.current = None
            self.send_error(rid, "cancelled", {"type": "Cancelled", "message": "cancelled by the host", "traceback": ""})
            return
        except BaseException as exc:  # a handler's bug must not take the worker down
            self.current = None
            self.send_error(rid, "python", _exc_payload(exc, skip_frames=1))
            return
        self.current = None
        try:
            body = ('{"t":"ok","id":%d,"v":%s}' % (rid, _dumps(result))).encode()
        except (TypeError, ValueError) as exc:
            self.send_error(
                rid,
                "python",
                {
                    "type": type(exc).__name__,
                    "message": "the result of %s is not JSON-serializable: %s" % (name, exc),
                    "traceback": "",
                },
            )
            return
        try:
            self.send_raw(body)
        except OverflowError as exc:
            self.send_error(rid, "python", {"type": "OverflowError", "message": str(exc), "traceback": ""})

    def loop(self):
        calls = self.calls
        while True:
            if not calls:
                self.read_blocking()
            while calls:
                self.run(calls.popleft())


def _heartbeat(rt, interval):
    frame = b'\x00\x00\x00\x0a{"t":"hb"}'
    parent = os.getppid()
    while True:
        time.sleep(interval)
        if os.getppid() != parent or _chaos.heartbeat_stalled():
            if os.getppid() != parent:
                os._exit(0)
            continue
        try:
            with rt.wlock:
                _write_all(frame)
        except OSError:
            # The host closed its end: nobody will read our answers.
            os._exit(0)


def _die_with_parent():
    """Asks Linux to SIGKILL this process when the host dies, even mid-call."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:
            pass
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


def main():
    _die_with_parent()
    for fd in (IN_FD, OUT_FD):
        os.set_inheritable(fd, False)
    # Ctrl-C in a terminal reaches the whole process group; the host decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass
    max_frame = int(os.environ.get("PYFLEET_MAX_FRAME", str(64 << 20)))
    hb_ms = int(os.environ.get("PYFLEET_HEARTBEAT_MS", "1000"))
    rt = Runtime(max_frame)
    _chaos.configure_from_env()
    try:
        _chaos.on_start()
        spec = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PYFLEET_MODULE", "")
        if not spec:
            raise ImportError("no module given to the worker")
        _load_module(spec)
        if not _COMMANDS:
            raise ImportError("module %s registers no commands: decorate handlers with @command" % spec)
    except BaseException as exc:
        try:
            rt.send({"t": "init_error", "e": _exc_payload(exc)})
        finally:
            os._exit(3)
    signal.signal(signal.SIGUSR1, rt.on_sigusr1)
    rt.send(
        {
            "t": "hello",
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "commands": commands(),
        }
    )
    if hb_ms > 0:
        threading.Thread(target=_heartbeat, args=(rt, hb_ms / 1000.0), name="pyfleet-heartbeat", daemon=True).start()
    rt.loop()


if __name__ == "__main__":
    main()
