"""The command registry, the per-call context and the cancellation exception."""

_COMMANDS = {}


def command(fn=None, *, name=None, idempotent=False):
    """Registers a handler `(args, ctx) -> JSON value`.

    `idempotent=True` declares the command safe to re-send after a worker died while
    running it; the default is at most once once a worker took the call.
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError("@command(name=...) takes a non-empty string")

    def register(f):
        if not callable(f):
            raise TypeError("@command decorates a function (args, ctx)")
        key = name or f.__name__
        _COMMANDS[key] = (f, bool(idempotent))
        return f

    if fn is None:
        return register
    if callable(fn):
        return register(fn)
    raise TypeError("use @command or @command(name=..., idempotent=...)")


def commands():
    """Name -> {"idempotent": bool} for every registered command."""
    return {k: {"idempotent": v[1]} for k, v in _COMMANDS.items()}


class Cancelled(BaseException):
    """Raised inside a handler when the host cancels its call (timeout or abort).

    A BaseException so that `except Exception` in user code does not swallow it.
    """


class Context:
    """What a handler knows about its call.

    session: a dict kept in this worker for the call's session id (an empty, unsaved
             dict when the call has no session).
    request_id: the host's id for this attempt.
    deadline: epoch seconds (time.time()) after which the host stops waiting, or None.
    cancelled: True once the host asked to cancel this call.
    """

    __slots__ = ("session", "request_id", "deadline", "_rt")

    def __init__(self, session, request_id, deadline, rt):
        self.session = session
        self.request_id = request_id
        self.deadline = deadline
        self._rt = rt

    @property
    def cancelled(self):
        return self._rt.cancel_requested == self.request_id
