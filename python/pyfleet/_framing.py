"""The wire format (docs/protocol.md, "Frames"): building frames and checking binary ones.

No system calls here: _io.py reads and writes, this module only lays out and checks bytes.
"""
import json
import re
import struct
from json.scanner import make_scanner

IN_FD = 3
OUT_FD = 4

_len_prefix = struct.Struct(">I")
pack_len = _len_prefix.pack
unpack_len = _len_prefix.unpack_from
_u32 = struct.Struct(">I")

BINARY = 0x01
# Element size of each part kind ("bytes" is a byte string, the others memoryview formats).
ITEMSIZE = {"bytes": 1, "?": 1, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "f": 4, "d": 8}
_MAX_NDIM = 64  # memoryview's limit
_PAD = bytes(8)

_scan_once = make_scanner(json.JSONDecoder())


def loads(text):
    """json.loads without its two whitespace regex passes, half its cost: the host writes compact JSON."""
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:
        raise ValueError("frame is not a JSON document") from None
    if end != len(text):
        raise ValueError("frame has data after its JSON document")
    return obj


_ID = re.compile(rb'"id":(\d{1,18})[,}]')
_ANSWERED = re.compile(rb'"t":"(?:call|restore)"')


def sniff_id(data):
    """The request id of a call or restore frame that cannot be decoded, when its first bytes show
    one (else None). Other messages (cancel, credit) carry ids of calls that get their own answer."""
    head = bytes(data[:512])
    m = _ID.search(head)
    return int(m.group(1)) if m and _ANSWERED.search(head) else None


def align8(n):
    return (n + 7) & ~7


class FrameProblem(Exception):
    """A frame from the host that breaks the protocol; `rid` is its request id when it could be read."""

    def __init__(self, reason, rid=None):
        super().__init__(reason)
        self.rid = rid


def _check_path(p):
    if type(p) is not list:
        return False
    for step in p:
        t = type(step)
        if t is int:
            if step < 0:
                return False
        elif t is not str:
            return False
    return True


def _place(msg, field, path, value):
    """Puts `value` at `path` under msg[field]; the place must hold null (contract: the JSON says null there)."""
    if not path:
        if field not in msg or msg[field] is not None:
            raise FrameProblem("part at [] but the message's %r is not null" % field)
        msg[field] = value
        return
    cur = msg.get(field)
    last = len(path) - 1
    for i, step in enumerate(path):
        # A key of a dict, or an index of a list: never a key of a list or an index of a dict.
        if not ((type(cur) is dict and step in cur) if type(step) is str else (type(cur) is list and step < len(cur))):
            raise FrameProblem("part path %s does not lead to a value of the message" % json.dumps(path))
        if i == last:
            if cur[step] is not None:
                raise FrameProblem("part path %s leads to a value that is not null" % json.dumps(path))
            cur[step] = value
            return
        cur = cur[step]


def parse_binary(payload, length):
    """Decodes the 0x01 payload form. `payload` is bytes or a bytearray of at least `length` bytes
    (a reused receive buffer may be longer); the frame is its first `length` bytes.

    Returns (msg, views): the message with read-only memoryviews of `payload` placed at the parts'
    paths, and every memoryview made (to release when the call settles). Raises FrameProblem.
    Everything is checked before any part is viewed; no byte outside the frame is read.
    """
    if length < 5:
        raise FrameProblem("binary frame of %d bytes, shorter than its 5-byte header" % length)
    jlen = _u32.unpack_from(payload, 1)[0]
    if jlen > length - 5:
        raise FrameProblem("binary frame announces %d bytes of JSON in a frame of %d bytes" % (jlen, length))
    raw = bytes(payload[5 : 5 + jlen])
    try:
        msg = loads(raw.decode())
    except (ValueError, RecursionError) as exc:
        raise FrameProblem("binary frame whose JSON does not decode (%s)" % exc, sniff_id(raw)) from None
    if type(msg) is not dict:
        raise FrameProblem("binary frame whose JSON is not an object", sniff_id(raw))
    rid = msg.get("id")
    if type(rid) is not int or msg.get("t") not in ("call", "restore"):
        rid = None
    descs = msg.get("b")
    if type(descs) is not list or not descs:
        raise FrameProblem("binary frame without part descriptors (\"b\")", rid)
    layout = []
    off = align8(5 + jlen)
    end = off
    for d in descs:
        if type(d) is not dict:
            raise FrameProblem("part descriptor is not an object", rid)
        p = d.get("p")
        k = d.get("k")
        n = d.get("n")
        s = d.get("s")
        size = ITEMSIZE.get(k) if type(k) is str else None
        if size is None:
            raise FrameProblem("part descriptor with unknown kind %s" % json.dumps(k)[:40], rid)
        if not _check_path(p):
            raise FrameProblem("part descriptor with a bad path %s" % json.dumps(p)[:80], rid)
        if type(n) is not int or n < 0 or n % size:
            raise FrameProblem("part descriptor with a bad length %s for kind %s" % (json.dumps(n)[:20], k), rid)
        if s is not None:
            if k == "bytes" or type(s) is not list or not s or len(s) > _MAX_NDIM or any(type(x) is not int or x < 0 for x in s):
                raise FrameProblem("part descriptor with a bad shape %s" % json.dumps(s)[:80], rid)
            count = 1
            for x in s:
                count *= x
            if count * size != n:
                raise FrameProblem("part shape %s does not match its %d bytes" % (json.dumps(s)[:80], n), rid)
        start = off
        end = start + n
        if end > length:
            raise FrameProblem("parts run past the end of the frame (%d > %d)" % (end, length), rid)
        layout.append((p, k, s, start, end))
        off = align8(end)
    if end != length:
        raise FrameProblem("parts end at byte %d of a frame of %d bytes" % (end, length), rid)
    field = "a" if msg.get("t") == "call" else "v"
    root = memoryview(payload)
    if not root.readonly:
        root = root.toreadonly()
    views = [root]
    try:
        for p, k, s, start, stop in layout:
            mv = root[start:stop]
            views.append(mv)
            if s is not None and start == stop:
                # memoryview.cast refuses a zero dimension: an empty n-D view comes from ctypes.
                if len(s) > 1:
                    mv = empty_view(k, s)
                else:
                    mv = mv.cast(k)
                    views.append(mv)
            elif s is not None:
                mv = mv.cast(k, s)
                views.append(mv)
            elif k != "bytes" and k != "B":
                mv = mv.cast(k)
                views.append(mv)
            _place(msg, field, p, mv)
    except FrameProblem as exc:
        release(views)
        exc.rid = rid
        raise
    except (TypeError, ValueError) as exc:  # memoryview.cast refusing a shape
        release(views)
        raise FrameProblem("part cannot be viewed as described (%s)" % exc, rid) from None
    return msg, views


_CTYPES = {"?": "c_bool", "b": "c_int8", "B": "c_uint8", "h": "c_int16", "H": "c_uint16", "i": "c_int32", "I": "c_uint32", "q": "c_int64", "Q": "c_uint64", "f": "c_float", "d": "c_double"}


def empty_view(kind, shape):
    """A read-only empty memoryview of `shape` (it has a zero), so numpy.asarray keeps the shape.

    Only ctypes exports such a view (its format is spelled '<d', not 'd'); without ctypes the
    part arrives as an empty 1-D view of its kind (docs/values.md)."""
    try:
        import ctypes
    except ImportError:
        return memoryview(b"").cast(kind)
    t = getattr(ctypes, _CTYPES[kind])
    for d in reversed(shape):
        t = t * d
    return memoryview(t()).toreadonly()


def release(views):
    """Releases our memoryviews, newest first; False when one is still exported (a numpy array over it)."""
    clean = True
    for mv in reversed(views):
        try:
            mv.release()
        except BufferError:
            clean = False
    return clean


def descriptors_json(parts):
    return json.dumps(
        [{"p": p, "k": k, "n": n, "s": s} if s is not None else {"p": p, "k": k, "n": n} for p, k, n, s, _ in parts],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def binary_frame(json_text, parts):
    """Lays out a 0x01 frame: returns (total bytes, buffers to write in order).

    `parts`: (path, kind, nbytes, shape or None, buffer). The buffers are written as given (no
    copy into one big bytes): header, length prefix, JSON and its padding in one, then each part
    followed by the padding that puts the next on an 8-byte boundary.
    """
    body = json_text.encode()
    jlen = len(body)
    off = 5 + jlen
    head_pad = align8(off) - off
    total = align8(off)
    bufs = [None]
    last = len(parts) - 1
    for i, (_, _, n, _, buf) in enumerate(parts):
        bufs.append(buf)
        total += n
        if i != last:
            pad = align8(total) - total
            if pad:
                bufs.append(_PAD[:pad])
                total += pad
    bufs[0] = pack_len(total) + b"\x01" + _u32.pack(jlen) + body + _PAD[:head_pad]
    return total, bufs
