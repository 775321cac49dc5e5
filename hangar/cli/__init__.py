"""The ``hangar`` command line (typer)."""

from hangar.cli.app import app, main

__all__ = ["app", "main"]
