"""An exception as the worker sends it: {type, message, traceback}, whatever the exception does.

Building it never raises: an exception whose __str__ raises (or returns no str) is described by
its type, and the failure of its __str__ is said. A message over MAX_MESSAGE bytes of UTF-8 is cut
there, saying so (in the message and in the traceback); a traceback over MAX_TRACEBACK
characters keeps its head and its tail. Whatever still does not fit in a frame is cut further
when it is sent (`fit_error`).
"""
MAX_MESSAGE = 64 << 10
MAX_TRACEBACK = 256 << 10


def cap(text, limit=MAX_MESSAGE):
    """`text` cut to `limit` bytes of UTF-8 (a whole character at the end), with a note saying so."""
    if len(text) <= limit >> 2:  # four bytes a character at most: certainly short enough
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore") + " [... cut: the message was %d bytes, over the %d KiB pyfleet sends]" % (len(raw), limit >> 10)


def message_of(exc):
    try:
        m = str(exc)
        if type(m) is not str:
            raise TypeError("__str__ returned %s, not str" % type(m).__name__)
    except BaseException as e:
        try:
            why = "%s: %s" % (type(e).__name__, str(e)[:200])
        except BaseException:
            why = type(e).__name__
        return "<the message of this %s cannot be read: its __str__ raised %s>" % (type(exc).__name__, why)
    return cap(m)


def _cap_chain(te):
    """Caps the message of each exception of a TracebackException's chain (their `_str`)."""
    seen = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        s = getattr(t, "_str", None)
        if type(s) is str and len(s) > MAX_MESSAGE >> 2:
            t._str = cap(s)
        todo.extend((getattr(t, "__cause__", None), getattr(t, "__context__", None)))
        todo.extend(getattr(t, "exceptions", None) or ())


def traceback_of(exc, tb):
    try:
        import traceback

        te = traceback.TracebackException(type(exc), exc, tb, compact=True)
        _cap_chain(te)
        text = "".join(te.format())
    except BaseException as e:
        return "(the traceback could not be formatted: %s)" % type(e).__name__
    if len(text) > MAX_TRACEBACK:
        head = MAX_TRACEBACK >> 3
        tail = MAX_TRACEBACK - head
        text = "%s\n[... %d characters of the traceback cut ...]\n%s" % (text[:head], len(text) - head - tail, text[-tail:])
    return text


def exc_payload(exc, skip_frames=0):
    """{type, message, traceback} of an exception, without our own `skip_frames` outer frames."""
    tb = getattr(exc, "__traceback__", None)
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return {"type": type(exc).__name__, "message": message_of(exc), "traceback": traceback_of(exc, tb)}


def fit_error(payload, keep):
    """The payload with its message cut to `keep` characters and no traceback (to fit a small maxFrameBytes)."""
    message = payload.get("message", "")
    return {
        "type": str(payload.get("type", "Exception"))[:100],
        "message": message if len(message) <= keep else message[:keep] + " [... cut to fit maxFrameBytes]",
        "traceback": "(the traceback was dropped: the error did not fit in maxFrameBytes)",
    }
