"""Results to the wire: JSON text plus binary parts (docs/protocol.md, "Values").

The fast path is json's C encoder, called directly (the worker's hot path; bench/runtime_loop.py
measures it). Only when it fails does `encode_slow` walk the value in Python: NaN and
+-Infinity become null (or an error under PYFLEET_NON_FINITE=error), buffers become binary parts,
dataclasses objects, numpy scalars and other numbers.Integral / numbers.Real numbers, tuples
arrays; anything else is an error that names the value's type, its path and why.
"""
import json
import math
import sys

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
dumps = _encoder.encode
_json_default = _encoder.default

_markers = {}
# One C encoder for every result, instead of JSONEncoder.encode building one per call. Its
# markers (cycle detection) are left behind when encoding fails, so they are cleared then.
_encode_chunks = json.encoder.c_make_encoder(
    _markers, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
) if json.encoder.c_make_encoder is not None else None


def encode_fast(value):
    """The JSON text of a plain value; raises on anything JSON cannot carry as is."""
    if _encode_chunks is None:
        return dumps(value)
    try:
        return "".join(_encode_chunks(value, 0))
    except BaseException:
        _markers.clear()
        raise


class EncodeError(Exception):
    """A value that cannot be sent: `path` says where (e.g. $.rows[3].when), the message what and why."""

    def __init__(self, path, what, etype="TypeError"):
        super().__init__("%s %s" % (path, what))
        self.path = path
        self.what = what
        self.etype = etype


# Deeper than this is refused with a path. The C encoder of the fast path goes about as deep;
# the walker takes two Python frames per level, so it lifts the recursion limit while it runs.
MAX_DEPTH = 1000
_NATIVE = {"b", "B", "h", "H", "i", "I", "q", "Q", "f", "d"}
_NUMBERS = None


def _numbers():
    global _NUMBERS
    if _NUMBERS is None:
        import numbers

        _NUMBERS = (numbers.Integral, numbers.Real)
    return _NUMBERS


_MORE = object()  # stands for the steps left out of a very long path


def format_path(path):
    out = ["$"]
    for step in path:
        if step is _MORE:
            out.append("...")
        elif type(step) is int:
            out.append("[%d]" % step)
        elif step.isidentifier():
            out.append("." + step)
        else:
            out.append("[%s]" % json.dumps(step, ensure_ascii=False))
    return "".join(out)


def _json_key(k, path):
    t = type(k)
    if t is str:
        return k
    if t is bool:
        return "true" if k else "false"
    if k is None:
        return "null"
    if t is int:
        return str(k)
    if t is float and math.isfinite(k):
        return float.__repr__(k)
    raise EncodeError(format_path(path), "has a key %s (%s): JSON object keys are strings" % (_show(k), _tname(k)))


def _tname(v):
    t = type(v)
    mod = t.__module__
    return t.__qualname__ if mod in ("builtins", None) else "%s.%s" % (mod, t.__qualname__)


def _show(v):
    try:
        r = repr(v)
    except Exception:
        return "<%s>" % _tname(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _hint(v):
    name = type(v).__name__
    if isinstance(v, (set, frozenset)):
        return "return a list instead (list(...) or sorted(...))"
    if name in ("datetime", "date", "time"):
        return "return v.isoformat() or a timestamp"
    if name == "Decimal":
        return "return str(v) or float(v)"
    if isinstance(v, complex):
        return "return [v.real, v.imag]"
    if isinstance(v, type):
        return "return its name"
    return "return a JSON value (dict, list, str, int, float, bool, None), a dataclass, or a buffer (bytes, array.array, numpy array)"


def buffer_part(v, mv):
    """(kind, nbytes, shape or None, buffer to write) for a buffer-protocol object, else EncodeError's reason.

    Byte strings (bytes, bytearray, a 'B' memoryview, any 1-D 'c' buffer) go as kind "bytes";
    other buffers as their element format, normalized from numpy's spellings ('<f', '=d',
    'l' -> 'q' on LP64, 'L' -> 'Q', '?' -> 'B'); more than one dimension adds the shape.
    """
    fmt = mv.format
    if fmt and fmt[0] in "@=<":
        fmt = fmt[1:]
    elif fmt and fmt[0] in ">!":
        if sys.byteorder != "big" and mv.itemsize > 1:
            return "holds big-endian elements (%r): convert it to native byte order (numpy: .astype(a.dtype.newbyteorder('='))" % mv.format
        fmt = fmt[1:]
    # Byte strings by their own format: a bool ('?') buffer is typed uint8, not bytes.
    if mv.ndim == 1 and (fmt == "c" or (fmt == "B" and (type(v) is memoryview or isinstance(v, (bytes, bytearray))))):
        kind = "bytes"
    elif fmt in ("l", "n"):
        kind = "q" if mv.itemsize == 8 else "i"
    elif fmt in ("L", "N"):
        kind = "Q" if mv.itemsize == 8 else "I"
    elif fmt == "?" or fmt == "c":
        kind = "B"
    elif fmt in _NATIVE:
        kind = fmt
    else:
        return "has elements of format %r, which the protocol does not carry (it carries int8..int64, uint8..uint64, float32, float64)" % mv.format
    shape = list(mv.shape) if mv.ndim > 1 else None
    # writev takes any C-contiguous buffer as it is; anything else costs one copy, in C order.
    buf = mv if mv.c_contiguous else mv.tobytes()
    return (kind, mv.nbytes, shape, buf)


class _Walker:
    __slots__ = ("parts", "nonfinite_error", "path", "seen")

    def __init__(self, nonfinite_error):
        self.parts = []
        self.nonfinite_error = nonfinite_error
        self.path = []
        self.seen = set()

    def fail(self, what, etype="TypeError"):
        raise EncodeError(format_path(self.path), what, etype)

    def walk(self, v, depth):
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            return v
        if t is float:
            return self.number(v)
        if depth > MAX_DEPTH:
            self.path[20:] = [_MORE]
            self.fail("is nested more than %d levels deep" % MAX_DEPTH, "RecursionError")
        if t is dict:
            return self.mapping(v, depth)
        if t is list or t is tuple:
            return self.sequence(v, depth)
        if isinstance(v, str):
            return str(v)
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return self.number(float(v))
        if isinstance(v, (bytes, bytearray, memoryview)):
            return self.buffer(v, memoryview(v))
        if hasattr(t, "__dataclass_fields__") and not isinstance(v, type):
            return self.dataclass(v, depth)
        if isinstance(v, dict):
            return self.mapping(v, depth)
        if isinstance(v, (list, tuple)):
            return self.sequence(v, depth)
        integral, real = _numbers()
        if isinstance(v, integral):
            return int(v)
        if isinstance(v, real):
            return self.number(float(v))
        try:
            mv = memoryview(v)
        except TypeError:
            mv = None
        if mv is not None:
            if mv.ndim == 0:
                item = getattr(v, "item", None)
                mv.release()
                if item is None:
                    self.fail("is a 0-dimensional buffer (%s): return a number" % _tname(v))
                return self.walk(item(), depth + 1)
            return self.buffer(v, mv)
        self.fail("is %s (%s), which JSON cannot carry: %s" % (_show(v), _tname(v), _hint(v)))

    def number(self, x):
        if x - x == 0.0:  # finite (NaN - NaN and inf - inf are NaN)
            return x
        if self.nonfinite_error:
            self.fail("is %s, which is not a JSON number (the pool runs with nonFinite: 'error')" % x, "ValueError")
        return None

    def buffer(self, v, mv):
        try:
            got = buffer_part(v, mv)
        except ValueError as exc:  # a released memoryview
            self.fail("is a buffer that cannot be read (%s)" % exc)
        if type(got) is str:
            self.fail("is %s of shape %s that %s" % (_tname(v), list(mv.shape), got))
        kind, n, shape, buf = got
        self.parts.append((list(self.path), kind, n, shape, buf))
        return None

    def enter(self, v):
        key = id(v)
        if key in self.seen:
            self.fail("contains itself (a cycle): JSON cannot carry it", "ValueError")
        self.seen.add(key)
        return key

    def mapping(self, d, depth):
        key = self.enter(d)
        path = self.path
        out = {}
        try:
            for k, x in d.items():
                jk = k if type(k) is str else _json_key(k, path)
                path.append(jk)
                out[jk] = self.walk(x, depth + 1)
                path.pop()
        finally:
            self.seen.discard(key)
        return out

    def sequence(self, s, depth):
        key = self.enter(s)
        path = self.path
        out = []
        try:
            for i, x in enumerate(s):
                path.append(i)
                out.append(self.walk(x, depth + 1))
                path.pop()
        finally:
            self.seen.discard(key)
        return out

    def dataclass(self, v, depth):
        import dataclasses  # already imported: v is a dataclass instance

        key = self.enter(v)
        path = self.path
        out = {}
        try:
            for f in dataclasses.fields(v):
                path.append(f.name)
                out[f.name] = self.walk(getattr(v, f.name), depth + 1)
                path.pop()
        finally:
            self.seen.discard(key)
        return out


def _find_bad_string(v, path, seen):
    """Where a string that UTF-8 cannot encode (a lone surrogate) hides, for the error message."""
    if isinstance(v, str):
        try:
            v.encode()
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(v, dict):
        if id(v) in seen:
            return None
        seen.add(id(v))
        for k, x in v.items():
            if isinstance(k, str):
                try:
                    k.encode()
                except UnicodeEncodeError:
                    return path
            got = _find_bad_string(x, path + [str(k)], seen)
            if got is not None:
                return got
    elif isinstance(v, (list, tuple)):
        if id(v) in seen:
            return None
        seen.add(id(v))
        for i, x in enumerate(v):
            got = _find_bad_string(x, path + [i], seen)
            if got is not None:
                return got
    return None


def encode_slow(value, nonfinite_error):
    """(JSON text, parts) for any value the protocol carries; raises EncodeError.

    parts: (path, kind, nbytes, shape or None, buffer) in the order of the walk."""
    w = _Walker(nonfinite_error)
    limit = sys.getrecursionlimit()
    if limit < 3 * MAX_DEPTH:
        sys.setrecursionlimit(3 * MAX_DEPTH)
    try:
        plain = w.walk(value, 0)
        # The C encoder counts its levels against the same limit.
        text = encode_fast(plain)
    except RecursionError:
        raise EncodeError(format_path(w.path[:20] + [_MORE]), "is nested too deeply to encode", "RecursionError") from None
    finally:
        if limit < 3 * MAX_DEPTH:
            sys.setrecursionlimit(limit)
    try:
        text.encode()
    except UnicodeEncodeError:
        where = _find_bad_string(plain, [], set())
        raise EncodeError(format_path(where or []), "is a string with a lone surrogate, which UTF-8 (and so JSON) cannot carry", "UnicodeEncodeError") from None
    return text, w.parts


def exc_payload(exc, skip_frames=0):
    """{type, message, traceback} of an exception, without our own `skip_frames` outer frames."""
    import traceback

    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"type": type(exc).__name__, "message": str(exc), "traceback": text}
