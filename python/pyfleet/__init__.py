"""pyfleet's Python side: declare commands that a Node pyfleet pool calls.

    from pyfleet import command

    @command(idempotent=True)
    def add(args, ctx):
        return args["a"] + args["b"]

Standard library only. The worker loop lives in pyfleet._worker; the host starts it.
"""
from ._registry import Cancelled, Context, WorkerInfo, command, commands, on_start, on_stop

__all__ = ["command", "commands", "on_start", "on_stop", "Cancelled", "Context", "WorkerInfo"]
__version__ = "0.2.0"
