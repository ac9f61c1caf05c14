"""Refuses an interpreter older than 3.11, saying which one it is (valid Python 2.7 and 3.x).

In a worker (the host set PYFLEET_MAX_FRAME and gave it fd 4) this answers init_error, stage
"python", and exits 3, so the pool's PYFLEET_INIT_FAILED names the interpreter, its version and
the `python` option; anywhere else it raises ImportError with the same words.
"""
import json
import os
import struct
import sys


def refuse():
    version = "%d.%d.%d" % tuple(sys.version_info[:3])
    exe = sys.executable or "this interpreter"
    message = (
        "pyfleet needs Python 3.11 or newer, and %s is Python %s: "
        "set the pool's `python` option (or $PYFLEET_PYTHON) to a Python 3.11+ interpreter" % (exe, version)
    )
    if "PYFLEET_MAX_FRAME" in os.environ:
        body = json.dumps(
            {
                "t": "init_error",
                "stage": "python",
                "python": version,
                "executable": exe,
                "e": {"type": "RuntimeError", "message": message, "traceback": ""},
            }
        ).encode("ascii")
        try:
            os.write(4, struct.pack(">I", len(body)) + body)
        except OSError:
            pass
        sys.stderr.write("pyfleet worker: %s\n" % message)
        sys.stderr.flush()
        os._exit(3)
    raise ImportError(message)
