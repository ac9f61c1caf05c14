"""The machine's own ceiling for benchmark c: the `primes` handler of examples/handlers.py (the
very function the pool runs) called back to back for `seconds` in a bare interpreter: no worker,
no protocol, no Node. Prints calls per second.

    python bench/spin.py N SECONDS
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "python"), os.path.join(HERE, "..", "examples")]

from handlers import primes  # noqa: E402  (@command returns the function unchanged)


def main():
    args = {"n": int(sys.argv[1])}
    seconds = float(sys.argv[2])
    calls = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        primes(args, None)
        calls += 1
    print(calls / (time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main()
