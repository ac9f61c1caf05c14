"""Session state kept in the worker, its snapshots and their restore (docs/protocol.md, "Session snapshots").

A restore is verified before anything of it is unpickled: the HMAC-SHA256 of the snapshot, under
one of the keys the host gave in PYFLEET_SESSION_KEYS, over the session id, the version and the
bytes, compared in constant time; then the version against the host's minimum, then that the
session has no state here yet. Only then pickle.loads runs.
"""
import os
import struct

from . import _defaults

_DOMAIN = b"pyfleet-session-v1\0"
_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")


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
    raw = sid.encode()
    return [_DOMAIN, _u32.pack(len(raw)), raw, _u64.pack(ver), data]


class Sessions:
    def __init__(self, keys, max_bytes):
        self.keys = keys
        self.max_bytes = max_bytes
        # sid -> dict: the state of every session this worker holds.
        self.state = {}
        # sid -> why: sessions whose snapshot was refused; their calls fail until drop_session.
        self.refused = {}
        # sids whose state could not be snapshotted: no more attempts until drop_session.
        self.not_durable = set()

    def for_call(self, sid):
        """The call's session dict (created empty on first use), or raises Refused."""
        if self.refused:
            # Before the state: a session whose restore was refused because it had state fails too.
            why = self.refused.get(sid)
            if why is not None:
                raise Refused("session %r was refused earlier (%s); it fails until it is closed" % (sid, why))
        s = self.state.get(sid)
        if s is None:
            s = self.state[sid] = {}
        return s

    def drop(self, sid):
        self.state.pop(sid, None)
        self.refused.pop(sid, None)
        self.not_durable.discard(sid)

    def snapshot(self, sid, session):
        """(pickle bytes, None), or (None, why) once when it cannot be kept, or None when nothing is to be sent.

        Nothing is sent for a session dropped while the call ran (the call worked on a dict no
        longer stored) nor for one that already proved not durable.
        """
        if self.max_bytes <= 0 or sid in self.not_durable or self.state.get(sid) is not session:
            # max_bytes 0: the pool keeps no snapshots (sessionStore: false), so none is made.
            return None
        import pickle

        try:
            data = pickle.dumps(session, protocol=5)
        except BaseException as exc:  # pickling runs user code (__reduce__, __getstate__)
            self.not_durable.add(sid)
            return None, "the session cannot be pickled: %s: %s" % (type(exc).__name__, exc)
        if len(data) > self.max_bytes:
            self.not_durable.add(sid)
            return None, "the session's pickle is %d bytes, over the limit of %d (PYFLEET_MAX_SESSION_BYTES)" % (len(data), self.max_bytes)
        return data, None

    def verify(self, sid, ver, low, sig, data):
        """Raises Refused unless the snapshot is signed by one of our keys for this session and version,
        is not older than `low`, and the session has no state here. Reads nothing but the bytes."""
        if not self.keys:
            raise Refused("the worker has no session keys (PYFLEET_SESSION_KEYS), so it restores nothing")
        import hashlib
        import hmac

        try:
            want = bytes.fromhex(sig) if type(sig) is str else None
        except ValueError:
            want = None
        if want is None or len(want) != 32:
            raise Refused("the snapshot's signature is not 64 hex digits")
        parts = mac_input(sid, ver, data)
        ok = False
        for key in self.keys:
            h = hmac.new(key, digestmod=hashlib.sha256)
            for p in parts:
                h.update(p)
            # Every key is tried, so the time taken does not say which one matched.
            ok = hmac.compare_digest(h.digest(), want) | ok
        if not ok:
            raise Refused("the snapshot's signature does not match this session, version and data under any session key")
        if ver < low:
            raise Refused("the snapshot is version %d, older than the minimum %d" % (ver, low))
        if sid in self.state:
            raise Refused("the session already has state in this worker")

    def restore(self, sid, ver, low, sig, data):
        """Verifies, then unpickles; any refusal marks the session refused until it is dropped."""
        try:
            if sid in self.refused:
                raise Refused("session %r was refused earlier (%s)" % (sid, self.refused[sid]))
            self.verify(sid, ver, low, sig, data)
            import pickle

            try:
                state = pickle.loads(data)
            except BaseException as exc:
                raise Refused("the snapshot does not unpickle: %s: %s" % (type(exc).__name__, exc)) from None
            if type(state) is not dict:
                raise Refused("the snapshot holds a %s, not a session dict" % type(state).__name__)
        except Refused as exc:
            self.refused.setdefault(sid, str(exc))
            raise
        self.state[sid] = state


def max_bytes_from_env(environ):
    raw = environ.get("PYFLEET_MAX_SESSION_BYTES")
    if not raw:
        return _defaults.MAX_SESSION_BYTES
    return int(raw)


def keys_from_env():
    return read_keys(os.environ)
