"""The ``hangar`` command line (typer)."""

from hangar.cli import server_cmd  # noqa: F401  (registers the verb)
from hangar.cli.app import app, main

__all__ = ["app", "main"]
