"""Top-level typer app; verbs live in sibling modules."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(help="hangar: version control for tensor data, built on real git.",
                  no_args_is_help=True, add_completion=False)


def _version_callback(value: bool) -> None:
    if value:
        from hangar import __version__

        typer.echo(f"hangar {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Optional[bool] = typer.Option(None, "--version", callback=_version_callback,
                                                 is_eager=True, help="Print the version and exit.")) -> None:
    """hangar: version control for tensor data, built on real git."""


def main() -> None:
    app()
