"""The command registry, start/stop hooks, the per-call context and the cancellation exception."""
import functools

_COMMANDS = {}
_ON_START = []
_ON_STOP = []

# How a call of a command is run (Command.mode). 0 is the plain `def`: the fast path tests it first.
PLAIN = 0
GEN = 1  # def + yield, on the main thread
ASYNC = 2  # async def: an asyncio.Task
ASYNC_GEN = 3  # async def + yield
THREAD = 4  # @command(threaded=True) def: on a thread of the worker
THREAD_GEN = 5  # @command(threaded=True) def + yield

_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200


_UNSET = object()


def _args_hint(f):
    """The annotation of a handler's first parameter (its args), without importing typing."""
    code = getattr(f, "__code__", None)
    ann = getattr(f, "__annotations__", None)
    if code is None or not ann or code.co_argcount < 1:
        return None
    return ann.get(code.co_varnames[0])


class Command:
    __slots__ = ("fn", "name", "mode", "idempotent", "timeout", "max_concurrency", "session", "stream", "conv")

    def __init__(self, fn, name, mode, idempotent, timeout, max_concurrency, session):
        self.fn = fn
        self.name = name
        self.mode = mode
        self.idempotent = idempotent
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.session = session
        self.stream = mode in (GEN, ASYNC_GEN, THREAD_GEN)
        # Args hinted with a dataclass (or a hint that may hold one) are converted on the way in;
        # which converter is worked out on the first call, so workers whose handlers need none
        # never import typing. None: the args go to the handler as they came.
        hint = _args_hint(fn)
        self.conv = _UNSET if hint is not None and (isinstance(hint, str) or hasattr(hint, "__dataclass_fields__") or hasattr(hint, "__origin__")) else None

    def convert(self, args):
        """The handler's args, built into the dataclasses its hint names (a mismatch raises, naming the field)."""
        conv = self.conv
        if conv is _UNSET:
            from ._schema import arg_converter

            conv = self.conv = arg_converter(self.fn)
        return args if conv is None else conv(args)

    def info(self):
        kind = "async" if self.mode in (ASYNC, ASYNC_GEN) else "thread" if self.mode in (THREAD, THREAD_GEN) else "sync"
        return {
            "idempotent": self.idempotent,
            "kind": kind,
            "stream": self.stream,
            "timeout": self.timeout,
            "maxConcurrency": self.max_concurrency,
            "session": self.session,
        }


def _code(f):
    # inspect costs milliseconds to import in every worker; the code object says the same.
    while isinstance(f, functools.partial):
        f = f.func
    code = getattr(f, "__code__", None)
    if code is None:
        code = getattr(getattr(f, "__call__", None), "__code__", None)
    return code


def _code_flags(f):
    code = _code(f)
    return code.co_flags if code is not None else 0


def where(f):
    """file:line of a function's definition (its repr when it has no code)."""
    code = _code(f)
    if code is None:
        return repr(f)
    return "%s:%d" % (code.co_filename, code.co_firstlineno)


def _mode(f, threaded):
    flags = _code_flags(f)
    if flags & _CO_ASYNC_GENERATOR:
        if threaded:
            raise TypeError("@command(threaded=True) takes a plain def: an async def already runs on the event loop")
        return ASYNC_GEN
    if flags & _CO_COROUTINE:
        if threaded:
            raise TypeError("@command(threaded=True) takes a plain def: an async def already runs on the event loop")
        return ASYNC
    if flags & _CO_GENERATOR:
        return THREAD_GEN if threaded else GEN
    return THREAD if threaded else PLAIN


def command(fn=None, *, name=None, idempotent=False, threaded=False, max_concurrency=None, timeout=None, session="rw"):
    """Registers a handler `(args, ctx) -> value`.

    `idempotent=True` declares the command safe to re-send after a worker died while
    running it; the default is at most once once a worker took the call.
    `async def` handlers run as asyncio tasks, many at once; `threaded=True` runs a plain
    `def` on one of the worker's threads; a generator (`yield`) is a stream.
    `timeout` (seconds) is the host's default timeout for the command, `max_concurrency` the
    most calls of it one worker runs at once, `session="read"` promises the handler does
    not change `ctx.session` (no snapshot after its calls).
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError("@command(name=...) takes a non-empty string")
    if max_concurrency is not None and (type(max_concurrency) is not int or max_concurrency < 1):
        raise TypeError("@command(max_concurrency=...) takes a positive int or None")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or timeout == float("inf")):
        raise TypeError("@command(timeout=...) takes a positive number of seconds or None")
    if session not in ("rw", "read"):
        raise TypeError('@command(session=...) takes "rw" or "read"')

    def register(f):
        if not callable(f):
            raise TypeError("@command decorates a function (args, ctx)")
        key = name or f.__name__
        old = _COMMANDS.get(key)
        # The same definition run twice (its module imported under two names) is not a second one.
        if old is not None and where(old.fn) != where(f):
            raise ValueError(
                "@command %r is defined twice, at %s and at %s: rename one (def name, or @command(name=...))" % (key, where(old.fn), where(f))
            )
        _COMMANDS[key] = Command(f, key, _mode(f, bool(threaded)), bool(idempotent), timeout, max_concurrency, session)
        return f

    if fn is None:
        return register
    if callable(fn):
        return register(fn)
    raise TypeError("use @command or @command(name=..., idempotent=..., threaded=..., ...)")


def commands():
    """Name -> the command's info as the worker announces it in hello."""
    return {k: c.info() for k, c in _COMMANDS.items()}


def on_start(fn):
    """Runs `fn(worker)` (sync or async) on the worker's event loop before it takes calls.

    An exception stops the worker before it says hello: the pool's PYFLEET_INIT_FAILED names the
    hook, its message and its traceback.
    """
    if not callable(fn):
        raise TypeError("@on_start decorates a function (worker)")
    _ON_START.append(fn)
    return fn


def on_stop(fn):
    """Runs `fn(worker)` (sync or async) on the worker's event loop when the host stops it cleanly."""
    if not callable(fn):
        raise TypeError("@on_stop decorates a function (worker)")
    _ON_STOP.append(fn)
    return fn


class Cancelled(BaseException):
    """Raised inside a handler when the host cancels its call (timeout or abort).

    A BaseException so that `except Exception` in user code does not swallow it.
    """


class WorkerInfo:
    """What @on_start and @on_stop hooks get: the worker's id in the pool, its pid, its concurrency."""

    __slots__ = ("id", "pid", "concurrency")

    def __init__(self, id, pid, concurrency):
        self.id = id
        self.pid = pid
        self.concurrency = concurrency

    def __repr__(self):
        return "WorkerInfo(id=%r, pid=%r, concurrency=%r)" % (self.id, self.pid, self.concurrency)


class Context:
    """What a handler knows about its call.

    session: a dict kept in this worker for the call's session id (an empty, unsaved dict
             when the call has no session). Reading it marks the session as touched: it is
             snapshotted after the call (durable sessions).
    request_id: the call's id, the same on every attempt (for de-duplicating side effects).
    attempt: 1 on the first attempt, 2 on the first re-send, ...
    deadline: epoch seconds (time.time()) after which the host stops waiting, or None.
    cancelled: True once the host asked to cancel this call.
    """

    # Built once per call on the hot path: four slots, everything else derived on demand.
    __slots__ = ("_m", "_rt", "_s", "_t")

    def __init__(self, msg, rt, session):
        self._m = msg
        self._rt = rt
        self._s = session
        self._t = False

    @property
    def session(self):
        self._t = True
        s = self._s
        if s is None:
            s = self._s = {}
        return s

    @property
    def request_id(self):
        m = self._m
        cid = m.get("cid")
        return m["id"] if cid is None else cid

    @property
    def attempt(self):
        return self._m.get("at", 1)

    @property
    def deadline(self):
        dl = self._m.get("dl")
        return dl / 1000.0 if dl else None

    @property
    def cancelled(self):
        return self._m["id"] in self._rt.cancelled
