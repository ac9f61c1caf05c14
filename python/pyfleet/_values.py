"""Results to the wire: JSON text plus binary parts (docs/values.md is the table of conversions).

The fast path is json's C encoder, called directly (the worker's hot path; bench/runtime_loop.py
measures it), followed by a scan of its bytes (`fast_body`) for the two things the C encoder does
silently and the table refuses: an integer beyond 2^53 (JavaScript would round it) and object keys
that are not strings (1 and "1" would collapse into one key). Only when the C encoder fails, or
the scan finds a candidate, does `encode_slow` walk the value in Python: it applies the table
(NaN and +-Infinity to null, buffers to binary parts, dataclasses to objects, numpy scalars and
other numbers.Integral / numbers.Real numbers to numbers, tuples to arrays) and refuses the rest
with an EncodeError that names the value's path, what it is, and what to return instead.
Whatever a value's own code raises while it is read becomes such an EncodeError too.
"""
import json
import math
import sys

# The largest integer a JavaScript number (a float64) holds exactly, and so the largest sent.
MAX_INT = 1 << 53

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
dumps = _encoder.encode
_json_default = _encoder.default


def _c_encoder(markers, sort_keys):
    if json.encoder.c_make_encoder is None:
        return None
    return json.encoder.c_make_encoder(markers, _json_default, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, False)


_markers = {}
# One C encoder for every result, instead of JSONEncoder.encode building one per call. Its
# markers (cycle detection) are left behind when encoding fails, so they are cleared then.
_encode_chunks = _c_encoder(_markers, False)
# The same with sorted keys: sorting the keys of a dict that mixes strings with other keys
# raises TypeError, which is how fast_body finds such a dict without walking the value in Python.
_sorted_markers = {}
_encode_sorted = _c_encoder(_sorted_markers, True)


def encode_fast(value):
    """The JSON text of a plain value; raises on anything JSON cannot carry as is."""
    if _encode_chunks is None:
        return dumps(value)
    try:
        return "".join(_encode_chunks(value, 0))
    except BaseException:
        _markers.clear()
        raise


# For the scan of fast_body: digits and "-" to "0", "{" and "[" to ","; the letters of true, false
# and null to "n" (t, f, n) or "l" (r, u, e, a, l, s), so that the three keys are two needles.
_SCAN = bytes.maketrans(b"123456789-{[tfnrueals", b"0000000000,,nnnllllll")
_Z16 = "0" * 16
_INT_AFTER_COMMA = "," + _Z16
_INT_AFTER_COLON = ":" + _Z16


def _mixed_keys(value):
    """True when some dict in `value` has a string key and a key of another type."""
    if _encode_sorted is None:
        return True
    try:
        for _ in _encode_sorted(value, 0):
            pass
    except BaseException:
        _sorted_markers.clear()
        return True
    return False


def fast_body(prefix, value):
    """`prefix` + the value's JSON + "}" as UTF-8 bytes, or None when the slow path must decide.

    A scalar needs no scan (an int only its range). For the rest the scan is a bytes.translate
    and a few substring searches, on a str (a bytes search pays for a buffer export each time):
    about 7,000 instructions for a small dict, a third of encoding it. Mapped by
    _SCAN, an integer of 16 digits or more shows as ",0000000000000000" or ":0000000000000000"
    (a float's 16+ digits follow a "." or precede one, so they do not match); a key made from a
    number starts like ',"0'; a key made from True, None ("true", "null") is '"nlll":' and one
    made from False '"nllll":'. Strings that look the same (a key "2023-01-01", "fall") cost a
    slow-path walk or a sort of the keys (_mixed_keys), never a wrong answer.
    """
    t = type(value)
    if t is int:
        if not -MAX_INT <= value <= MAX_INT:
            return None
        scan = False
    else:
        scan = not (t is str or t is float or t is bool or value is None)
    try:
        text = encode_fast(value)
        body = (prefix + text + "}").encode()
    except BaseException:
        return None
    # A str that numpy made of random bytes can hold code points past U+10FFFF, which encode()
    # turns into bytes that are not UTF-8 (the host would kill the worker for the frame).
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return None
    if not scan:
        return body
    s = body.translate(_SCAN).decode("latin-1")
    if _Z16 in s and (_INT_AFTER_COMMA in s or _INT_AFTER_COLON in s):
        return None
    # Keys only where there are objects (a list of numbers has none).
    if "{" in text and (',"0' in s or '"nlll":' in s or '"nllll":' in s) and _mixed_keys(value):
        return None
    return body


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
_TODO = "return a JSON value (dict, list, str, int, float, bool, None), a dataclass, or a buffer (bytes, array.array, numpy array)"


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


def _utf8_ok(s):
    """False for a lone surrogate, and for a code point past U+10FFFF (numpy can make one)."""
    if s.isascii():
        return True
    try:
        s.encode().decode()  # encode() alone lets a code point past U+10FFFF through, as bad bytes
    except UnicodeError:
        return False
    return True


def _tname(v):
    t = type(v)
    mod = t.__module__
    return t.__qualname__ if mod in ("builtins", None) else "%s.%s" % (mod, t.__qualname__)


def _show(v):
    try:
        r = repr(v)
    except BaseException:
        return "<%s>" % _tname(v)
    if type(r) is not str:
        return "<%s>" % _tname(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _hint(v):
    name = type(v).__name__
    mod = type(v).__module__ or ""
    if isinstance(v, (set, frozenset)):
        return "return a list instead (list(...) or sorted(...))"
    if name in ("datetime", "date", "time", "timedelta"):
        return "return v.isoformat() or a timestamp" if name != "timedelta" else "return v.total_seconds()"
    if name == "Decimal":
        return "return str(v) or float(v)"
    if isinstance(v, complex):
        return "return [v.real, v.imag]"
    if isinstance(v, type):
        return "return its name"
    if mod.startswith("pandas"):
        return "return plain data: df.to_dict(orient='records'), s.tolist(), or a numpy array (df.to_numpy())"
    return _TODO


def buffer_part(v, mv):
    """(kind, nbytes, shape or None, buffer to write) for a buffer-protocol object, else EncodeError's reason.

    Byte strings (bytes, bytearray, a 'B' memoryview, any 1-D 'c' buffer) go as kind "bytes";
    bool ('?') buffers as kind "?", always with their shape (an NDArray of dtype bool in Node);
    other buffers as their element format, normalized from numpy's spellings ('<f', '=d',
    'l' -> 'q' on LP64, 'L' -> 'Q'); more than one dimension adds the shape.
    """
    fmt = mv.format
    if fmt and fmt[0] in "@=<":
        fmt = fmt[1:]
    elif fmt and fmt[0] in ">!":
        if sys.byteorder != "big" and mv.itemsize > 1:
            return "holds big-endian elements (%r): convert it to native byte order (numpy: .astype(a.dtype.newbyteorder('='))" % mv.format
        fmt = fmt[1:]
    shape = list(mv.shape) if mv.ndim > 1 else None
    if mv.ndim == 1 and (fmt == "c" or (fmt == "B" and (type(v) is memoryview or isinstance(v, (bytes, bytearray))))):
        kind = "bytes"
    elif fmt in ("l", "n"):
        kind = "q" if mv.itemsize == 8 else "i"
    elif fmt in ("L", "N"):
        kind = "Q" if mv.itemsize == 8 else "I"
    elif fmt == "?":
        kind = "?"
        shape = list(mv.shape)
    elif fmt == "c":
        kind = "B"
    elif fmt in _NATIVE:
        kind = fmt
    else:
        return (
            "has elements of format %r, which the protocol does not carry (it carries bool, int8..int64, uint8..uint64, float32, float64): "
            "convert it (numpy: a.astype('float64'), or a.tolist())" % mv.format
        )
    if mv.nbytes == 0:
        buf = b""  # a view with a zero in its shape cannot be cast to bytes
    elif mv.c_contiguous:
        # As one flat byte view now, so that nothing can fail once the frame is being written.
        try:
            buf = mv.cast("B")
        except TypeError:  # a format cast does not take ('<d' of ctypes): one copy
            buf = mv.tobytes()
    else:
        buf = mv.tobytes()  # one copy, in C order
    return (kind, mv.nbytes, shape, buf)


def _numpy_refusal(v):
    """Why a numpy array or scalar is refused (a reason and what to return), or None when the table carries it."""
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(v, ma.MaskedArray):
        return "is a masked array (numpy.ma), whose mask JSON cannot carry: return a.filled(fill_value), or a.tolist() (masked elements become None)"
    dt = v.dtype
    kind = dt.kind
    what = "a numpy array of dtype %s" % dt if v.ndim else "numpy.%s" % type(v).__name__
    if kind in "Mm":
        if not v.ndim:
            return "is %s, which JSON has no type for: return str(v) (an ISO string) or an integer in a unit you name (int(v.astype('%s64[ms]').astype('int64')))" % (what, "datetime" if kind == "M" else "timedelta")
        return "is %s, which JSON has no type for: return ISO strings (a.astype(str).tolist()) or integers in a unit you name (a.astype('%s64[ms]').astype('int64'))" % (what, "datetime" if kind == "M" else "timedelta")
    if kind == "V":
        return "is %s (structured), which the protocol does not carry: return a dict of its fields ({n: a[n] for n in a.dtype.names}) or a.tolist()" % what
    if kind == "O" and v.ndim:
        return "is a numpy array of Python objects (dtype object), which the protocol does not carry: return a.tolist()"
    if kind in "US" and v.ndim:
        return "is %s (strings), which the protocol does not carry as an array: return a.tolist()" % what
    if kind == "c" and v.ndim:
        return "is %s (complex), which JSON has no type for: return [a.real, a.imag]" % what
    return None


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
        if t is str:
            return v if v.isascii() or _utf8_ok(v) else self.surrogate()
        if t is int:
            return v if -MAX_INT <= v <= MAX_INT else self.big_int(v)
        if t is bool or v is None:
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
            return self.walk(str.__str__(v), depth)
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, int):
            return self.walk(int.__int__(v), depth)
        if isinstance(v, float):
            return self.number(float.__float__(v))
        if isinstance(v, (bytes, bytearray, memoryview)):
            return self.buffer(v, memoryview(v))
        if hasattr(t, "__dataclass_fields__") and not isinstance(v, type):
            return self.dataclass(v, depth)
        if isinstance(v, dict):
            return self.mapping(v, depth)
        if isinstance(v, (list, tuple)):
            return self.sequence(v, depth)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(v, (np.ndarray, np.generic)):
            why = _numpy_refusal(v)
            if why is not None:
                self.fail(why)
            if v.ndim:
                return self.buffer(v, memoryview(v))
            # numpy scalars and 0-d arrays: their Python value; item() keeps a longdouble as it is.
            x = v.item()
            if isinstance(x, np.generic):
                if v.dtype.kind != "f":
                    self.fail("is %s (%s), which JSON cannot carry: return [v.real, v.imag]" % (_show(v), _tname(v)))
                x = float(x)
            return self.walk(x, depth + 1)
        integral, real = _numbers()
        if isinstance(v, integral):
            return self.walk(int(v), depth)
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

    def surrogate(self):
        self.fail("is a string that UTF-8 (and so JSON) cannot carry (a lone surrogate, or a code point past U+10FFFF): remove it, or return bytes", "UnicodeEncodeError")

    def big_int(self, v):
        shown = str(v) if v.bit_length() <= 128 else "of %d bits" % v.bit_length()
        self.fail("is the integer %s, beyond 2^53 in magnitude, which a JavaScript number cannot hold exactly: return str(v) (exact) or float(v) (rounded)" % shown, "OverflowError")

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

    def key(self, k):
        """The JSON text of a key: str as is, numbers, True, False and None as the C encoder writes them."""
        t = type(k)
        if t is str or isinstance(k, str):
            k = str.__str__(k)
            return k if _utf8_ok(k) else self.surrogate()
        if t is bool or k is None:
            return "true" if k is True else "false" if k is False else "null"
        np = sys.modules.get("numpy")
        if np is not None and isinstance(k, np.bool_):
            return "true" if k else "false"
        integral, real = _numbers()
        if isinstance(k, integral):
            return str(int(k))
        if isinstance(k, real) and math.isfinite(k):
            return float.__repr__(float(k))
        self.fail("has a key %s (%s): JSON object keys are strings (numbers, True, False and None are turned into strings): return str keys" % (_show(k), _tname(k)))

    def mapping(self, d, depth):
        key = self.enter(d)
        path = self.path
        out = {}
        try:
            for k, x in d.items():
                jk = k if type(k) is str and (k.isascii() or _utf8_ok(k)) else self.key(k)
                path.append(jk)
                out[jk] = self.walk(x, depth + 1)
                path.pop()
        finally:
            self.seen.discard(key)
        if len(out) != len(d):
            self.collision(d)
        return out

    def collision(self, d):
        first = {}
        for k in d:
            jk = self.key(k)
            if jk in first:
                self.fail(
                    "has the keys %s (%s) and %s (%s), which are the same JSON key %s: return a dict whose keys stay distinct as strings"
                    % (_show(first[jk]), _tname(first[jk]), _show(k), _tname(k), json.dumps(jk, ensure_ascii=False)),
                    "ValueError",
                )
            first[jk] = k

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


def _safe_str(exc):
    try:
        s = str(exc)
    except BaseException:
        return "<its __str__ raised>"
    return s if type(s) is str and len(s) <= 500 else (s[:497] + "..." if type(s) is str else "")


def encode_slow(value, nonfinite_error):
    """(JSON text, parts) for any value the protocol carries; raises EncodeError, whatever the value does.

    parts: (path, kind, nbytes, shape or None, buffer) in the order of the walk."""
    w = _Walker(nonfinite_error)
    limit = sys.getrecursionlimit()
    if limit < 3 * MAX_DEPTH:
        sys.setrecursionlimit(3 * MAX_DEPTH)
    try:
        plain = w.walk(value, 0)
        # The C encoder counts its levels against the same limit.
        text = encode_fast(plain)
        text.encode()  # the walk refused every string UTF-8 cannot carry: this cannot fail
    except EncodeError:
        raise
    except RecursionError:
        raise EncodeError(format_path(w.path[:20] + [_MORE]), "is nested too deeply to encode", "RecursionError") from None
    except BaseException as exc:
        # A value's own code failed while it was read (a property, __iter__, items(), a buffer export).
        raise EncodeError(
            format_path(w.path[:20] + [_MORE] if len(w.path) > 20 else w.path),
            "could not be read: reading it raised %s: %s; %s" % (type(exc).__name__, _safe_str(exc), _TODO),
            type(exc).__name__,
        ) from None
    finally:
        if limit < 3 * MAX_DEPTH:
            sys.setrecursionlimit(limit)
    return text, w.parts
