"""The Python side of one call, measured two ways.

In-process (the default): pre-built call frames of `add` fed to the worker runtime
(Runtime.ingest + Runtime.run, the code the worker's main loop runs per call, answers written to
/dev/null on fd 4), and the same work done by a bare loop with json.loads and json.dumps (what
bench/shell_echo.py does per line). No pipe, no Node, no scheduler wake-ups. Prints JSON:
microseconds per call, the minimum over `rounds` rounds for each.

    python3 bench/runtime_loop.py [calls] [rounds]

Over a real pipe (`--pipe`): a worker process started as the host starts one (fds 3 and 4 are
socket pairs), driven one call at a time by this process; the same trivial handler as a plain
`def`, an `async def` and a threaded `def`. Variants run interleaved, round after round; prints
each variant's median calls per second and the median per-round ratio to `def`.

    python3 bench/runtime_loop.py --pipe [calls] [rounds]
"""
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

HANDLERS = '''
from pyfleet import command

@command(idempotent=True)
def add(args, ctx):
    return args["a"] + args["b"]

@command(idempotent=True)
async def aadd(args, ctx):
    return args["a"] + args["b"]

@command(idempotent=True, threaded=True)
def tadd(args, ctx):
    return args["a"] + args["b"]
'''


def in_process():
    from pyfleet import _worker
    from pyfleet._registry import command

    @command(idempotent=True)
    def add(args, ctx):
        return args["a"] + args["b"]

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


class Pipe:
    """A worker process on socket pairs, as the host starts it; one call at a time."""

    def __init__(self, module):
        self.to_worker, theirs_in = socket.socketpair()
        self.from_worker, theirs_out = socket.socketpair()
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONPATH=os.environ.get("PYFLEET_BENCH_PYTHONPATH", os.path.join(here, "..", "python")), PYFLEET_HEARTBEAT_MS="1000", PYFLEET_PARENT_PID=str(os.getpid()), PYFLEET_CONCURRENCY="1")

        def fds():
            # Moved out of the way first: either socket may sit on fd 3 or 4 already.
            a = fcntl.fcntl(theirs_in.fileno(), fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(theirs_out.fileno(), fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([sys.executable, "-c", "from pyfleet._worker import main; main()", module], env=env, preexec_fn=fds, close_fds=False)
        theirs_in.close()
        theirs_out.close()
        self.buf = b""
        self.read_message()  # hello

    def read_message(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack_from(">I", self.buf)[0]
                if len(self.buf) >= 4 + n:
                    body = self.buf[4 : 4 + n]
                    self.buf = self.buf[4 + n :]
                    msg = json.loads(body)
                    if msg.get("t") != "hb":
                        return msg
                    continue
            data = self.from_worker.recv(1 << 16)
            if not data:
                raise EOFError("worker exited")
            self.buf += data

    def rate(self, cmd, n):
        cmd = cmd.encode()
        send = self.to_worker.sendall
        t = time.perf_counter()
        for i in range(n):
            body = b'{"t":"call","id":%d,"cmd":"%s","a":{"a":%d,"b":1},"dl":0}' % (i + 1, cmd, i)
            send(len(body).to_bytes(4, "big") + body)
            m = self.read_message()
            if m.get("v") != i + 1:
                raise RuntimeError("bad answer %r" % (m,))
        return n / (time.perf_counter() - t)

    def close(self):
        self.to_worker.close()
        self.proc.wait(5)


def pipe():
    args = [a for a in sys.argv[1:] if a != "--pipe"]
    n = int(args[0]) if args else 20_000
    rounds = int(args[1]) if len(args) > 1 else 11
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(HANDLERS)
    w = Pipe(f.name)
    variants = ["add", "aadd", "tadd"]
    try:
        w.rate("add", n // 4)
        w.rate("aadd", n // 4)
        w.rate("tadd", n // 4)
        rates = {v: [] for v in variants}
        ratios = {v: [] for v in variants}
        for r in range(rounds):
            order = variants[r % 3 :] + variants[: r % 3]
            got = {v: w.rate(v, n) for v in order}
            for v in variants:
                rates[v].append(got[v])
                ratios[v].append(got[v] / got["add"])
    finally:
        w.close()
        os.unlink(f.name)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(
        json.dumps(
            {
                "calls": n,
                "rounds": rounds,
                "callsPerSecond": {"def": round(med(rates["add"])), "async": round(med(rates["aadd"])), "threaded": round(med(rates["tadd"]))},
                "vsDef": {"async": round(med(ratios["aadd"]), 3), "threaded": round(med(ratios["tadd"]), 3)},
            }
        )
    )


if __name__ == "__main__":
    if "--pipe" in sys.argv:
        pipe()
    else:
        in_process()
