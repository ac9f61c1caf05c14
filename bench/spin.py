"""The machine's own ceiling for benchmark c: `primes(n)` (the same loop as examples/handlers.py)
run back to back for `seconds`, in a bare interpreter. Prints calls per second.

    python bench/spin.py N SECONDS
"""
import math
import sys
import time


def primes(n):
    count = 0
    for i in range(2, n):
        r = int(math.isqrt(i))
        for d in range(2, r + 1):
            if i % d == 0:
                break
        else:
            count += 1
    return count


def main():
    n = int(sys.argv[1])
    seconds = float(sys.argv[2])
    calls = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        primes(n)
        calls += 1
    print(calls / (time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main()
