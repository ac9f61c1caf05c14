"""Handlers of bench l (durable sessions, bench/sessions.ts). pandas and sklearn are imported
only by the handlers that use them (Debian's /usr/bin/python3 has them)."""
import os

from pyfleet import command


@command(idempotent=True)
def add(args, ctx):
    return args["a"] + args["b"]


@command
def append(args, ctx):
    """Appends one small item to the session's list, keeping its last `keep` items (about 1 KB)."""
    items = ctx.session.setdefault("items", [])
    items.append(args["item"])
    if len(items) > args["keep"]:
        del items[0]
    return len(items)


@command
def fill(args, ctx):
    """Puts `blob` bytes of os.urandom and a list of `rows` small dicts in the session (as the
    whole-session bench of 9af47d2 did: half bytes, half rows)."""
    s = ctx.session
    s["blob"] = os.urandom(args["blob"])
    s["rows"] = [{"id": i, "name": "user-%06d" % i, "score": i * 0.5, "tags": ["a", "b"]} for i in range(args["rows"])]
    return len(s)


@command
def neighbours(args, ctx):
    """A 10 MiB bytes value and a list whose pickle is about 2 MiB."""
    ctx.session["blob"] = os.urandom(10 * 1024 * 1024)
    ctx.session["list"] = ["row-%07d" % i for i in range(150_000)]
    return len(ctx.session)


@command
def touch(args, ctx):
    """Counts calls in the session (the bench `big` call of 9af47d2, after its session was filled)."""
    s = ctx.session
    s["n"] = s.get("n", 0) + 1
    return os.getpid()


@command
def set_small(args, ctx):
    ctx.session["small"] = args["i"]
    return args["i"]


@command
def df_fill(args, ctx):
    import numpy as np
    import pandas as pd

    n = args["bytes"] // 16
    ctx.session["df"] = pd.DataFrame({"a": np.arange(n, dtype=float), "b": np.ones(n)})
    return int(ctx.session["df"].memory_usage(index=False).sum())


@command(idempotent=True, session="read")
def df_read(args, ctx):
    return float(ctx.session["df"]["a"].iat[-1])


@command(idempotent=True)
def df_get(args, ctx):
    """Reads the DataFrame in a command that may change the session: it is stored again."""
    return float(ctx.session["df"]["a"].iat[-1])


@command(idempotent=True)
def df_peek(args, ctx):
    return float(ctx.session.peek("df")["a"].iat[-1])


@command
def rf_fit(args, ctx):
    import pickle

    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    ctx.session["model"] = RandomForestClassifier(n_estimators=args["trees"], random_state=0).fit(X, y)
    ctx.session["x"] = X[:1].tolist()
    return len(pickle.dumps(ctx.session["model"], protocol=5))


@command(idempotent=True, session="read")
def rf_read(args, ctx):
    return int(ctx.session["model"].predict(ctx.session["x"])[0])


@command(idempotent=True)
def rf_get(args, ctx):
    return int(ctx.session["model"].predict(ctx.session["x"])[0])


@command(idempotent=True)
def rf_peek(args, ctx):
    return int(ctx.session.peek("model").predict(ctx.session.peek("x"))[0])
