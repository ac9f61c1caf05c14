"""Session state kept in the worker, its snapshots by key and their restore (docs/protocol.md, "Session snapshots").

A session is a SessionDict: a dict that notes the keys a call may have changed (assigned,
deleted, or whose mutable value it fetched). After a call only those are pickled, each on its own
as (key, value): one record per key. A restore is verified before anything of it is unpickled:
the HMAC-SHA256 of the manifest under one of the keys the host gave in PYFLEET_SESSION_KEYS (it
covers the session id, the version, every record's name, size and digest, and the records kept
inside the manifest), compared in constant time; then the session id and the version against the
host's minimum, then each record kept apart against its SHA-256 digest, then that the session has
no state here yet. Only then pickle.loads runs.
"""
import os
import struct
from time import perf_counter

from . import _defaults
from ._framing import binary_frame, pack_len

_DOMAIN = b"pyfleet-session-v1\0"
_DOMAIN2 = b"pyfleet-session-v2\0"
_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")
# A str as an ASCII JSON string (lone surrogates escaped).
_q = __import__("json").encoder.encode_basestring_ascii

# Values that cannot change in place: reading one never makes its key dirty.
_ATOMIC = frozenset((int, float, complex, str, bytes, bool, type(None)))


def _immutable(v):
    t = type(v)
    if t in _ATOMIC:
        return True
    if t is tuple or t is frozenset:
        try:
            return all(map(_immutable, v))
        except RecursionError:
            return False
    return False


class SessionDict(dict):
    """ctx.session: a dict that notes which keys a call may have changed, so that only those are stored.

    `peek(key, default=None)` reads a value without marking its key: a promise that this call
    does not change it (what @command(session="read") promises for the whole session).
    """

    # _w: keys assigned or deleted; _f: keys whose mutable value was fetched. The rest is what
    # the worker knows of the stored records: sizes and unpicklable keys by key, names of keys
    # that are not plain strings, the total, whether the next snapshot must hold every key, and
    # why the session is not durable now.
    __slots__ = ("_w", "_f", "_sizes", "_bad", "_names", "_total", "_full", "_nd")

    def __init__(self):
        dict.__init__(self)
        self._w = set()
        self._f = set()
        self._sizes = {}
        self._bad = {}
        self._names = {}
        self._total = 0
        self._full = False
        self._nd = None

    def _fetched(self, k, v):
        if type(v) not in _ATOMIC and not _immutable(v):
            self._f.add(k)
        return v

    def _fetch_all(self):
        for k, v in dict.items(self):
            self._fetched(k, v)

    def __getitem__(self, k):
        return self._fetched(k, dict.__getitem__(self, k))

    def get(self, k, default=None):
        if dict.__contains__(self, k):
            return self._fetched(k, dict.__getitem__(self, k))
        return default

    def peek(self, k, default=None):
        return dict.get(self, k, default)

    def setdefault(self, k, default=None):
        if dict.__contains__(self, k):
            return self._fetched(k, dict.__getitem__(self, k))
        self._w.add(k)
        dict.__setitem__(self, k, default)
        return default

    def __setitem__(self, k, v):
        self._w.add(k)
        dict.__setitem__(self, k, v)

    def __delitem__(self, k):
        dict.__delitem__(self, k)
        self._w.add(k)

    def pop(self, k, *default):
        if dict.__contains__(self, k):
            self._w.add(k)
        return dict.pop(self, k, *default)

    def popitem(self):
        kv = dict.popitem(self)
        self._w.add(kv[0])
        return kv

    def clear(self):
        self._w.update(dict.keys(self))
        dict.clear(self)

    def update(self, *args, **kw):
        new = dict(*args, **kw)
        self._w.update(new)
        dict.update(self, new)

    def __ior__(self, other):
        self.update(other)
        return self

    def __or__(self, other):
        if not isinstance(other, dict):
            return NotImplemented
        new = dict(self)
        new.update(other)
        return new

    def items(self):
        self._fetch_all()
        return dict.items(self)

    def values(self):
        self._fetch_all()
        return dict.values(self)

    def __iter__(self):
        # Overridden so that dict(s), {**s} and s | x copy through __getitem__ (noted), not C.
        return dict.__iter__(self)

    def copy(self):
        return dict(self)


def _show(k):
    try:
        return repr(k)[:80]
    except BaseException:
        return "<%s>" % type(k).__name__


def _name(s, k):
    """A key's record name: the key itself when it is a plain string, else one made for it (the record holds the key)."""
    if type(k) is str and not k.startswith("\0"):
        return k
    n = s._names.get(k)
    if n is None:
        n = s._names[k] = "\0%s\0%s" % (_show(k), os.urandom(4).hex())
    return n


_dumps = None


def _pickle(s, keys, recs):
    """Pickles each key of `keys` that is in `s` into recs; returns the names of those gone that were stored."""
    global _dumps
    if _dumps is None:
        from pickle import dumps as _dumps
    gone = []
    sizes = s._sizes
    for k in keys:
        if dict.__contains__(s, k):
            try:
                data = _dumps((k, dict.__getitem__(s, k)), protocol=5)
            except BaseException as exc:  # pickling runs user code (__reduce__, __getstate__)
                s._bad[k] = "the value of key %s cannot be pickled: %s: %s" % (_show(k), type(exc).__name__, exc)
                s._total -= sizes.pop(k, 0)
                continue
            if s._bad:
                s._bad.pop(k, None)
            n = len(data)
            s._total += n - sizes.get(k, 0)
            sizes[k] = n
            recs[k] = data
        else:
            if k in sizes:
                s._total -= sizes.pop(k)
                gone.append(_name(s, k))
                s._names.pop(k, None)
            if s._bad:
                s._bad.pop(k, None)
    return gone


def _snap_frame(rid, sid, s, recs, gone, full, t0):
    """The snap message of `recs` (key -> pickle) and `gone` (names): (total bytes, buffers)."""
    names = []
    descs = []
    parts = []
    i = 0
    for k, data in recs.items():
        names.append(_q(_name(s, k)))
        descs.append('{"p":[%d],"k":"bytes","n":%d}' % (i, len(data)))
        parts.append(([i], "bytes", len(data), None, data))
        i += 1
    head = '{"t":"snap","id":%d,"sid":%s,"k":[%s],"d":[%s],"full":%s,"ms":%.3f,"v":[%s]' % (
        rid,
        _q(sid),
        ",".join(names),
        ",".join(map(_q, gone)),
        "true" if full else "false",
        (perf_counter() - t0) * 1000.0,
        ",".join(["null"] * i),
    )
    if i:
        return binary_frame('%s,"b":[%s]}' % (head, ",".join(descs)), parts)
    body = (head + "}").encode()
    return len(body), [pack_len(len(body)) + body]


class Refused(Exception):
    """A snapshot or a call refused for its session; the message says why."""


def read_keys(environ):
    """The verification keys, removed from the environment so subprocesses of handlers do not inherit them."""
    raw = environ.pop("PYFLEET_SESSION_KEYS", "")
    keys = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            keys.append(bytes.fromhex(part))
        except ValueError:
            raise ValueError("PYFLEET_SESSION_KEYS holds something that is not hex: every key must be hex") from None
    return keys


def mac_input(sid, ver, data):
    """What the MAC of a single-blob snapshot (format 1, still restored) covers."""
    raw = sid.encode()
    return [_DOMAIN, _u32.pack(len(raw)), raw, _u64.pack(ver), data]


class Sessions:
    def __init__(self, keys, max_bytes):
        self.keys = keys
        self.max_bytes = max_bytes
        # sid -> SessionDict: the state of every session this worker holds.
        self.state = {}
        # sid -> why: sessions whose snapshot was refused; their calls fail until drop_session.
        self.refused = {}

    def for_call(self, sid):
        """The call's session dict (created empty on first use), or raises Refused."""
        if self.refused:
            # Before the state: a session whose restore was refused because it had state fails too.
            why = self.refused.get(sid)
            if why is not None:
                raise Refused("session %r was refused earlier (%s); it fails until it is closed" % (sid, why))
        s = self.state.get(sid)
        if s is None:
            s = self.state[sid] = SessionDict()
        return s

    def drop(self, sid):
        self.state.pop(sid, None)
        self.refused.pop(sid, None)

    # ---- snapshots ----------------------------------------------------------

    def snapshot(self, rid, sid, s, rw, max_frame):
        """After a call that touched `s`: the buffers of its snap frame (to send before the answer),
        or a string saying why the session is not durable (once, as it becomes so), or None.

        Only the keys the call may have changed are pickled. Nothing is sent for a read-only call
        (its fetches are forgotten: that is its promise; what it assigned waits for the next
        call that stores), for a session dropped while the call ran, nor while the session stays
        not durable; the first snapshot that fits again holds every key.
        """
        if not rw:
            s._f.clear()
            return None
        dirty = s._w
        if s._f:
            dirty.update(s._f)
            s._f.clear()
        if not dirty and not s._full:
            return None
        s._w = set()
        if self.max_bytes <= 0 or self.state.get(sid) is not s:
            # max_bytes 0: the pool keeps no snapshots (sessionStore: false), so none is made.
            return None
        t0 = perf_counter()
        recs = {}
        gone = _pickle(s, dirty, recs)
        full = s._full and not s._bad and s._total <= self.max_bytes
        if full:
            _pickle(s, [k for k in dict.keys(s) if k not in recs], recs)
            gone = ()
        why = None
        if s._bad:
            why = next(iter(s._bad.values()))
        elif s._total > self.max_bytes:
            why = "the session's records are %d bytes, over the limit of %d (PYFLEET_MAX_SESSION_BYTES)" % (s._total, self.max_bytes)
        else:
            total, bufs = _snap_frame(rid, sid, s, recs, gone, full, t0)
            if total > max_frame:
                why = "the session's snapshot frame is %d bytes, over maxFrameBytes (%d)" % (total, max_frame)
        if why is not None:
            s._full = True
            if s._nd is not None:
                return None
            s._nd = why
            return why
        s._full = False
        s._nd = None
        return bufs

    # ---- restores -----------------------------------------------------------

    def restore(self, msg):
        """A restore message: verifies, then unpickles. Returns None, or a problem with the
        message's shape (answered bad_request); raises Refused, which marks the session refused
        until it is dropped."""
        sid = msg.get("sid")
        low = msg.get("min", 0)
        legacy = "sig" in msg
        v = msg.get("v")
        if type(sid) is not str or type(low) is not int:
            return "restore needs sid (a string) and min (an integer)"
        if legacy:
            ver = msg.get("ver")
            if type(ver) is not int or ver < 0 or type(msg.get("sig")) is not str or not isinstance(v, memoryview) or v.ndim != 1:
                return "a restore of a single-blob snapshot needs ver (an integer), sig (hex) and the snapshot as one bytes part at []"
        elif type(v) is not list or not v or not all(isinstance(p, memoryview) and p.ndim == 1 for p in v):
            return "restore needs v: the manifest, then each record kept apart, as bytes parts"
        try:
            if sid in self.refused:
                raise Refused("session %r was refused earlier (%s)" % (sid, self.refused[sid]))
            if not self.keys:
                raise Refused("the worker has no session keys (PYFLEET_SESSION_KEYS), so it restores nothing")
            if legacy:
                self.verify(sid, ver, low, msg["sig"], v)
                records = None
            else:
                records = self.verify_manifest(sid, low, v)
            if sid in self.state:
                raise Refused("the session already has state in this worker")
            self.state[sid] = self._load(v, records)
        except Refused as exc:
            self.refused.setdefault(sid, str(exc))
            raise
        return None

    @staticmethod
    def _load(blob, records):
        import pickle

        s = SessionDict()
        if records is None:
            try:
                state = pickle.loads(blob)
            except BaseException as exc:
                raise Refused("the snapshot does not unpickle: %s: %s" % (type(exc).__name__, exc)) from None
            if type(state) is not dict:
                raise Refused("the snapshot holds a %s, not a session dict" % type(state).__name__)
            dict.update(s, state)
            # Sizes unknown: the next snapshot holds every key, in the format of today.
            s._full = True
            return s
        for name, data in records:
            try:
                got = pickle.loads(data)
            except BaseException as exc:
                raise Refused("record %r does not unpickle: %s: %s" % (name, type(exc).__name__, exc)) from None
            if type(got) is not tuple or len(got) != 2:
                raise Refused("record %r holds a %s, not a (key, value) pair" % (name, type(got).__name__))
            k, value = got
            dict.__setitem__(s, k, value)
            s._sizes[k] = len(data)
            s._total += len(data)
            if _name(s, k) != name:
                s._names[k] = name
        return s

    def _signed(self, want, parts):
        import hashlib
        import hmac

        ok = False
        for key in self.keys:
            h = hmac.new(key, digestmod=hashlib.sha256)
            for p in parts:
                h.update(p)
            # Every key is tried, so the time taken does not say which one matched.
            ok = hmac.compare_digest(h.digest(), want) | ok
        return ok

    def verify_manifest(self, sid, low, parts):
        """The records of a manifest (parts[0]) and the records kept apart (parts[1:]), as (name, bytes),
        once all of it checked out; raises Refused. Reads nothing but the bytes and the signed header."""
        import hashlib
        import json

        m = parts[0]
        if len(m) < 40 or bytes(m[:4]) != b"PFS2":
            raise Refused("the manifest is not a pyfleet manifest (format 2)")
        body = m[36:]
        if not self._signed(bytes(m[4:36]), (_DOMAIN2, body)):
            raise Refused("the manifest's signature does not match under any session key (another key signed it, or it was changed)")
        try:
            hlen = _u32.unpack_from(body, 0)[0]
            head = json.loads(bytes(body[4 : 4 + hlen]))
            tail = body[4 + hlen :]
            hsid, ver, marks, keys = head["sid"], head["ver"], head["marks"], head["keys"]
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise Refused("the manifest does not parse: %s" % exc) from None
        if hsid != sid:
            raise Refused("the manifest belongs to another session (%r)" % (hsid,))
        if type(ver) is not int or ver < low:
            raise Refused("the manifest is version %r, older than the minimum %d" % (ver, low))
        if marks:
            raise Refused("the manifest is marked %s: it holds no state to restore" % ", ".join(sorted(marks)))
        out = []
        at = 0
        apart = iter(parts[1:])
        try:
            for entry in keys:
                name, size = entry[0], entry[1]
                if len(entry) == 2:
                    data = tail[at : at + size]
                    at += size
                else:
                    data = next(apart, None)
                    if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != entry[2]:
                        raise Refused("record %r does not match the digest its manifest names (a record of another session or version, or changed)" % (name,))
                if len(data) != size:
                    raise Refused("record %r is cut short in its manifest" % (name,))
                out.append((name, data))
        except (TypeError, IndexError, ValueError) as exc:
            raise Refused("the manifest's keys do not parse: %s" % exc) from None
        if at != len(tail) or next(apart, None) is not None:
            raise Refused("the restore holds records its manifest does not name")
        return out

    def verify(self, sid, ver, low, sig, data):
        """A single-blob snapshot (format 1): raises Refused unless it is signed by one of our keys for
        this session and version and is not older than `low`. Reads nothing but the bytes."""
        try:
            want = bytes.fromhex(sig) if type(sig) is str else None
        except ValueError:
            want = None
        if want is None or len(want) != 32:
            raise Refused("the snapshot's signature is not 64 hex digits")
        if not self._signed(want, mac_input(sid, ver, data)):
            raise Refused("the snapshot's signature does not match this session, version and data under any session key")
        if ver < low:
            raise Refused("the snapshot is version %d, older than the minimum %d" % (ver, low))


def max_bytes_from_env(environ):
    raw = environ.get("PYFLEET_MAX_SESSION_BYTES")
    if not raw:
        return _defaults.MAX_SESSION_BYTES
    return int(raw)


def keys_from_env():
    return read_keys(os.environ)
