"""The ``hangar`` command line (typer): ``hangar`` console script and ``python -m hangar``.

One module per command group; importing them registers their verbs on :data:`app`.
"""

from hangar.cli import arrayset_cmds, io_cmds, maint_cmds, remote_cmds, repo_cmds, server_cmd  # noqa: F401  (register verbs)
from hangar.cli.app import app, main

__all__ = ["app", "main"]
