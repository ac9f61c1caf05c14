"""python-shell's side of the comparison: line-based JSON over stdin/stdout, one at a time.

Each line is {"id": N, "a": {"a": x, "b": y}}; the answer is {"id": N, "v": x + y}, the same
work as pyfleet's `add`.
"""
import json
import sys


def main():
    readline = sys.stdin.readline
    write = sys.stdout.write
    flush = sys.stdout.flush
    loads = json.loads
    dumps = json.dumps
    while True:
        line = readline()
        if not line:
            return
        m = loads(line)
        a = m["a"]
        write(dumps({"id": m["id"], "v": a["a"] + a["b"]}) + "\n")
        flush()


if __name__ == "__main__":
    main()
