"""Reading frames from fd 3 and writing frames to fd 4.

Reading: one os.read of up to 64 KiB at a time, and a frame that arrives whole is handled
without buffering (the hot path). A frame of 64 KiB or more that is not whole is read with
os.readv straight into a receive buffer of its own size, never past its end; a binary one is
handed to the call as read-only memoryviews of that buffer (no copy). The buffer belongs to
the call until it settles; then our views are released, and it is kept for a later large frame
only if nothing else still holds a view of it (a numpy array made with frombuffer does).

Writing: whole frames under one lock (the heartbeat thread and threaded handlers write too),
os.writev over the caller's buffers for binary parts, looping on partial writes.
"""
import os
import sys
import threading

from ._framing import (
    IN_FD,
    OUT_FD,
    FrameProblem,
    loads,
    pack_len,
    parse_binary,
    release,
    sniff_id,
    unpack_len,
)

READ_SIZE = 1 << 16
# A frame this large that is not whole gets a receive buffer of its own.
BIG_FRAME = 1 << 16
_IOV_MAX = 512


def write_all(data):
    n = os.write(OUT_FD, data)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        n = os.write(OUT_FD, view)
        view = view[n:]


def writev_all(bufs):
    """Writes `bufs` in order with as few system calls as the kernel allows, none of them copied."""
    views = [b if type(b) is bytes else memoryview(b).cast("B") for b in bufs]
    i = 0
    count = len(views)
    while i < count:
        n = os.writev(OUT_FD, views[i : i + _IOV_MAX])
        while n:
            head = views[i]
            if n >= len(head):
                n -= len(head)
                i += 1
            else:
                views[i] = memoryview(head)[n:]
                n = 0
        while i < count and not len(views[i]):
            i += 1


def _exported(buf):
    """True while something still holds a buffer export of the bytearray (a bytearray with exports
    cannot be resized: pop() raises without touching it, and on success append() puts the byte back)."""
    try:
        last = buf.pop()
    except BufferError:
        return True
    buf.append(last)
    return False


class _Big:
    """The large frame being read: its receive buffer and how much of it has arrived."""

    __slots__ = ("buf", "view", "length", "pos", "skip_rid")

    def __init__(self, buf, length, pos, skip_rid=None):
        self.buf = buf
        self.view = memoryview(buf) if buf is not None else None
        self.length = length
        self.pos = pos
        # Discarding the rest of an oversized frame (buf is None) after answering it.
        self.skip_rid = skip_rid


class Wire:
    """Frame I/O of the worker. Subclasses implement on_call_frame(msg) and on_control(msg)."""

    def __init__(self, max_frame):
        self.max_frame = max_frame
        self.wlock = threading.Lock()
        self.buf = bytearray()
        self.big = None
        self.spare = None
        # id(msg) -> (msg, buffer, views, reusable): binary messages whose views are out.
        self.holds = {}
        # A session snapshot's buffers, written in one system call with the answer that follows
        # it (that answer is always the next thing its call sends).
        self.before_next = None

    # ---- output -------------------------------------------------------------

    def send_raw(self, body):
        if len(body) > self.max_frame:
            raise OverflowError("answer of %d bytes exceeds the pool's maxFrameBytes (%d): return less per call (a stream sends each item in a frame of its own), or raise maxFrameBytes" % (len(body), self.max_frame))
        frame = pack_len(len(body)) + body
        with self.wlock:
            held = self.before_next
            if held is None:
                write_all(frame)
            else:
                self.before_next = None
                held.append(frame)
                writev_all(held)

    def send_buffers(self, total, bufs):
        if total > self.max_frame:
            raise OverflowError("answer of %d bytes exceeds the pool's maxFrameBytes (%d): return less per call (a stream sends each item in a frame of its own), or raise maxFrameBytes" % (total, self.max_frame))
        with self.wlock:
            held = self.before_next
            if held is not None:
                self.before_next = None
                bufs = held + bufs
            writev_all(bufs)

    # ---- input --------------------------------------------------------------

    def read_once(self):
        """One read from fd 3 (blocking if nothing is there); False at end of file."""
        big = self.big
        if big is None:
            data = os.read(IN_FD, READ_SIZE)
            if not data:
                return False
            self.ingest(data)
            return True
        if big.buf is None:
            data = os.read(IN_FD, min(READ_SIZE, big.length - big.pos))
            if not data:
                return False
            big.pos += len(data)
            if big.pos == big.length:
                self.big = None
            return True
        n = os.readv(IN_FD, [big.view[big.pos : big.length]])
        if not n:
            return False
        big.pos += n
        if big.pos == big.length:
            self.big = None
            big.view.release()
            self.on_big_frame(big.buf, big.length)
        return True

    def ingest(self, data):
        buf = self.buf
        if not buf and len(data) > 4:
            # The usual case, one whole frame per read: no buffering.
            ln = unpack_len(data)[0]
            if len(data) == 4 + ln and ln <= self.max_frame:
                self.on_frame(data[4:])
                return
        buf += data
        off = 0
        n = len(buf)
        while n - off >= 4:
            ln = unpack_len(buf, off)[0]
            if ln > self.max_frame:
                off = self.oversized(buf, off, n, ln)
                continue
            if n - off - 4 < ln:
                if ln >= BIG_FRAME:
                    self.begin_big(ln, memoryview(buf)[off + 4 : n])
                    off = n
                break
            payload = bytes(buf[off + 4 : off + 4 + ln])
            off += 4 + ln
            self.on_frame(payload)
        if off:
            del buf[:off]

    def begin_big(self, length, have):
        spare = self.spare
        self.spare = None
        # Reuse the spare buffer only when it is not much larger: a 64 MiB buffer kept for
        # 100 KiB frames would pin the memory for nothing (it is dropped instead).
        if spare is not None and length <= len(spare) <= 2 * length + (1 << 20):
            buf = spare
        else:
            buf = bytearray(length)
        got = len(have)
        buf[:got] = have
        have.release()
        self.big = _Big(buf, length, got)

    def oversized(self, buf, off, n, ln):
        """A frame announcing more than maxFrameBytes: answered bad_request and skipped when its id
        shows in the bytes at hand, else the stream cannot be trusted and the worker exits 70."""
        rid = sniff_id(buf[off + 4 : n])
        reason = "the host sent a frame of %d bytes, over maxFrameBytes (%d)" % (ln, self.max_frame)
        if rid is None:
            self.fatal(reason)
        self.answer_problem(rid, reason)
        have = n - off - 4
        if have >= ln:
            return off + 4 + ln
        self.big = _Big(None, ln, have, rid)
        return n

    def on_big_frame(self, buf, length):
        if buf[0] == 0x01:
            try:
                msg, views = parse_binary(buf, length)
            except FrameProblem as exc:
                self.spare = buf
                self.frame_problem(exc)
                return
            self.holds[id(msg)] = (msg, buf, views, True)
            self.dispatch_frame(msg)
            return
        try:
            text = str(memoryview(buf)[:length], "utf-8")
        except UnicodeDecodeError as exc:
            self.spare = buf
            self.frame_problem(FrameProblem("frame is not UTF-8 JSON (%s)" % exc, sniff_id(buf)))
            return
        self.spare = buf
        self.on_text(text, buf)

    def on_frame(self, payload):
        # try costs nothing in 3.11 until something raises: odd frames take the slow road.
        try:
            msg = loads(payload.decode())
            if msg.get("t") == "call":
                self.calls.append(msg)
                return
        except RecursionError:
            return self.on_text(None, payload)
        except Exception:
            return self.on_odd_frame(payload)
        self.dispatch_frame(msg)

    def on_odd_frame(self, payload):
        if payload[:1] == b"\x01":
            try:
                msg, views = parse_binary(payload, len(payload))
            except FrameProblem as exc:
                self.frame_problem(exc)
                return
            self.holds[id(msg)] = (msg, payload, views, False)
            self.dispatch_frame(msg)
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            self.frame_problem(FrameProblem("frame is neither UTF-8 JSON nor binary (%s)" % exc, sniff_id(payload)))
            return
        self.on_text(text, payload)

    def on_text(self, text, raw):
        """A frame the fast path could not decode (or a large one): decode it again, saying why it fails."""
        try:
            msg = loads(text if text is not None else raw.decode())
        except RecursionError:
            # Arguments nested deeper than Python's decoder goes: the call's fault, not the worker's.
            rid = sniff_id(raw)
            if rid is None:
                self.fatal("the host sent a frame nested too deeply to decode, without a readable id")
            self.send_error(
                rid,
                "python",
                {"type": "RecursionError", "message": "the arguments are nested too deeply for Python's JSON decoder", "traceback": ""},
            )
            return
        except ValueError as exc:
            self.frame_problem(FrameProblem("frame is not JSON (%s)" % exc, sniff_id(raw)))
            return
        self.dispatch_frame(msg)

    def dispatch_frame(self, msg):
        if msg.__class__ is not dict:
            self.frame_problem(FrameProblem("frame is not a JSON object"))
            return
        if msg.get("t") == "call":
            self.calls.append(msg)
        else:
            self.on_control(msg)

    def frame_problem(self, exc):
        if exc.rid is None:
            self.fatal(str(exc))
        self.answer_problem(exc.rid, str(exc))

    def fatal(self, reason):
        sys.stderr.write("pyfleet worker: %s; exiting\n" % reason)
        sys.stderr.flush()
        os._exit(70)

    def release_msg(self, msg):
        """The call of `msg` settled: release the views of its binary parts, keep its buffer if it is free."""
        hold = self.holds.pop(id(msg), None)
        if hold is None:
            return
        _, buf, views, reusable = hold
        clean = release(views)
        if reusable and clean and not _exported(buf):
            # One spare, the latest: the next large frame is likely of the same size.
            self.spare = buf
