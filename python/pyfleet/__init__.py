"""pyfleet's Python side: declare commands that a Node pyfleet pool calls.

    from pyfleet import command

    @command(idempotent=True)
    def add(args, ctx):
        return args["a"] + args["b"]

Standard library only, Python 3.11+. The worker loop lives in pyfleet._worker; the host starts it.
"""
import sys

if sys.version_info < (3, 11):
    # Before anything that needs 3.11 is imported. This code stays valid Python 2.7 and 3.x.
    from ._too_old import refuse

    refuse()

from ._registry import Cancelled, Context, WorkerInfo, command, commands, on_start, on_stop

__all__ = ["command", "commands", "on_start", "on_stop", "Cancelled", "Context", "WorkerInfo"]
__version__ = "0.2.0"
