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

Hot path: one os.read and one os.write per call, no buffering for a frame that arrives whole,
and json's C scanner and C encoder called directly. json.loads and json.dumps wrap them in
Python code (whitespace regexes, a new encoder per call) that cost as much again: the
runtime's share of an `add` went from about 10 us to about 5.5 us per call (measured
in-process by bench/runtime_loop.py).
"""
import json
from json.scanner import make_scanner
import os
import re
import select
import struct
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

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_dumps = _encoder.encode
_json_default = _encoder.default
_scan_once = make_scanner(json.JSONDecoder())


def _loads(text):
    """json.loads without its two whitespace regex passes, half its cost: the host writes compact JSON."""
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:
        raise ValueError("frame is not a JSON document") from None
    if end != len(text):
        raise ValueError("frame has data after its JSON document")
    return obj


_CALL_ID = re.compile(rb'^\{"t":"call","id":(\d+)')

_markers = {}
# One C encoder for every result, instead of JSONEncoder.encode building one per call. Its
# markers (cycle detection) are left behind when encoding fails, so they are cleared then.
_encode_chunks = json.encoder.c_make_encoder(
    _markers, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
) if json.encoder.c_make_encoder is not None else None


def _encode_result(value):
    if _encode_chunks is None:
        return _dumps(value)
    try:
        return "".join(_encode_chunks(value, 0))
    except BaseException:
        _markers.clear()
        raise


_len_prefix = struct.Struct(">I")
_pack_len = _len_prefix.pack
_unpack_len = _len_prefix.unpack_from


def _write_all(data):
    n = os.write(OUT_FD, data)
    if n == len(data):
        return
    view = memoryview(data)[n:]
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
        frame = _pack_len(len(body)) + body
        with self.wlock:
            _write_all(frame)

    def send(self, obj):
        self.send_raw(_dumps(obj).encode())

    def send_error(self, rid, kind, payload):
        self.send({"t": "err", "id": rid, "k": kind, "e": payload})

    # ---- input --------------------------------------------------------------

    def ingest(self, data):
        buf = self.buf
        if not buf and len(data) > 4:
            # The usual case, one whole frame per read: no buffering.
            ln = _unpack_len(data)[0]
            if len(data) == 4 + ln and ln <= self.max_frame:
                self.on_frame(data[4:])
                return
        buf += data
        off = 0
        n = len(buf)
        while n - off >= 4:
            ln = _unpack_len(buf, off)[0]
            if ln > self.max_frame:
                sys.stderr.write("pyfleet worker: host sent a frame of %d bytes, over the limit; exiting\n" % ln)
                os._exit(70)
            if n - off - 4 < ln:
                break
            payload = bytes(buf[off + 4 : off + 4 + ln])
            off += 4 + ln
            self.on_frame(payload)
        if off:
            del buf[:off]

    def on_frame(self, payload):
        try:
            msg = _loads(payload.decode())
        except RecursionError:
            # Arguments nested deeper than Python's decoder goes: the call's fault, not the worker's.
            m = _CALL_ID.match(payload)
            if m is None:
                raise
            self.send_error(
                int(m.group(1)),
                "python",
                {"type": "RecursionError", "message": "the arguments are nested too deeply for Python's JSON decoder", "traceback": ""},
            )
            return
        if msg.get("t") == "call":
            self.calls.append(msg)
        else:
            self.on_message(msg)

    def on_message(self, msg):
        t = msg.get("t")
        if t == "cancel":
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
        if self.cancelled_ids and rid in self.cancelled_ids:
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
                self.current = None
        except Cancelled:
            self.send_error(rid, "cancelled", {"type": "Cancelled", "message": "cancelled by the host", "traceback": ""})
            return
        except BaseException as exc:  # a handler's bug must not take the worker down
            self.send_error(rid, "python", _exc_payload(exc, skip_frames=1))
            return
        try:
            body = ('{"t":"ok","id":%d,"v":%s}' % (rid, _encode_result(result))).encode()
        except Exception as exc:  # TypeError, ValueError (NaN), RecursionError (nesting), UnicodeEncodeError (lone surrogates)
            self.send_error(
                rid,
                "python",
                {
                    "type": type(exc).__name__,
                    "message": "the result of %s cannot be sent as JSON: %s" % (name, exc),
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
        popleft = calls.popleft
        run = self.run
        ingest = self.ingest
        read = os.read
        while True:
            data = read(IN_FD, 1 << 16)
            if not data:
                # The host closed the pipe: a graceful stop, or the host is gone.
                os._exit(0)
            ingest(data)
            # The signal handler may queue more while a call runs; this drains them too.
            while calls:
                run(popleft())


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
