"""Section d's module: one command and no imports of its own, so that what is timed is the
worker's own start (the interpreter, pyfleet, the hello), not a module's imports."""
from pyfleet import command


@command(idempotent=True)
def add(args, ctx):
    return args["a"] + args["b"]
