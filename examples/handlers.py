"""Example handlers for pyfleet: the demo and the README use these."""
import math
import time

from pyfleet import command


@command(idempotent=True)  # pure: safe to re-send after a worker dies
def add(args, ctx):
    return args["a"] + args["b"]


@command  # default: not idempotent (at most once once a worker took it)
def remember(args, ctx):
    ctx.session["x"] = args["x"]  # per-session state, lives in this worker
    return len(ctx.session)


@command(idempotent=True)
def recall(args, ctx):
    return ctx.session.get("x")


@command(idempotent=True)
def echo(args, ctx):
    return args


@command(idempotent=True)
def primes(args, ctx):
    """CPU-bound work: counts primes below n."""
    n = int(args.get("n", 20000))
    count = 0
    for i in range(2, n):
        r = int(math.isqrt(i))
        for d in range(2, r + 1):
            if i % d == 0:
                break
        else:
            count += 1
    return count


@command(idempotent=True)
def sleep(args, ctx):
    time.sleep(float(args.get("ms", 100)) / 1000.0)
    return {"slept_ms": args.get("ms", 100), "cancelled": ctx.cancelled}


@command
def fail(args, ctx):
    raise ValueError(args.get("message", "this handler always fails"))


@command(idempotent=True)
def shout(args, ctx):
    print("shout:", args.get("text", ""))
    return str(args.get("text", "")).upper()
