"""The Python side of one call, in-process: no pipe, no Node, no scheduler wake-ups.

Feeds pre-built call frames of `add` to the worker runtime (Runtime.ingest + Runtime.run, the
code the worker's main loop runs per call, answers written to /dev/null on fd 4), and the same
work done by a bare loop with json.loads and json.dumps (what bench/shell_echo.py does per line).
Prints JSON: microseconds per call, the minimum over `rounds` rounds for each.
"""
import json
import os
import sys
import time

from pyfleet import _worker
from pyfleet._registry import command


@command(idempotent=True)
def add(args, ctx):
    return args["a"] + args["b"]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, _worker.OUT_FD)
    rt = _worker.Runtime(64 << 20)
    dl = int(time.time() * 1000) + 30_000
    frames = []
    for i in range(n):
        body = ('{"t":"call","id":%d,"cmd":"add","a":{"a":%d,"b":1},"dl":%d}' % (i + 1, i, dl)).encode()
        frames.append(len(body).to_bytes(4, "big") + body)
    lines = ['{"id": %d, "a": {"a": %d, "b": 1}}\n' % (i + 1, i) for i in range(n)]
    out = open(os.devnull, "w")

    def runtime():
        calls = rt.calls
        for f in frames:
            rt.ingest(f)
            while calls:
                rt.run(calls.popleft())

    def bare():
        write, flush, loads, dumps = out.write, out.flush, json.loads, json.dumps
        for line in lines:
            m = loads(line)
            a = m["a"]
            write(dumps({"id": m["id"], "v": a["a"] + a["b"]}) + "\n")
            flush()

    best = {"runtime": float("inf"), "bare": float("inf")}
    for _ in range(rounds):
        for name, f in (("runtime", runtime), ("bare", bare)):
            t = time.perf_counter()
            f()
            best[name] = min(best[name], (time.perf_counter() - t) / n * 1e6)
    print(json.dumps({"n": n, "rounds": rounds, "runtimeUs": best["runtime"], "bareUs": best["bare"]}))


if __name__ == "__main__":
    main()
