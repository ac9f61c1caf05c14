"""pyfleet's Python side: declare commands that a Node pyfleet pool calls.

    from pyfleet import command

    @command(idempotent=True)
    def add(args, ctx):
        return args["a"] + args["b"]

Standard library only. The worker loop lives in pyfleet._worker; the host starts it.
"""
from ._registry import Cancelled, Context, command, commands

__all__ = ["command", "commands", "Cancelled", "Context"]
__version__ = "0.1.0"
