"""Top-level typer app: global options, error reporting; verbs live in sibling modules.

Every verb runs inside :class:`HangarGroup.invoke`, which turns an exception into one
``error: <message>`` line on stderr and exit status 1 (the traceback only with ``--debug``),
so the behaviour is the same under typer's test runner and as a real process.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Optional

import typer
from typer.core import TyperGroup

# Exceptions typer uses for control flow (usage errors, exit, abort): they pass through.
_CONTROL_FLOW = (typer.Exit, typer.Abort, typer.exceptions.TyperException)


class CliState:
    """Global options, set by the root callback, read by every verb.

    A plain class: a dataclass compiles its generated methods at import (~2 ms of every
    ``hangar --help``)."""

    __slots__ = ("path", "debug")

    def __init__(self, path: str = ".", debug: bool = False) -> None:
        self.path = path
        self.debug = debug

    def __repr__(self) -> str:
        return f"CliState(path={self.path!r}, debug={self.debug!r})"


_state = CliState()


def current_state() -> CliState:
    """Global options of the running command (set by the root callback)."""
    return _state


def _hint(exc: BaseException) -> str:
    """The command-line way out of errors whose messages name a Python call."""
    from hangar.errors import RemoteDataError, StagingBaseMovedError, WriterLockError

    if isinstance(exc, StagingBaseMovedError):
        return "from the command line: hangar reset"
    if isinstance(exc, WriterLockError):
        alive = getattr(exc, "holder_alive", None)
        if alive:
            return "from the command line: hangar writer-lock shows the holder"
        if alive is False:
            return "from the command line: hangar writer-lock --force-release"
        return "from the command line: hangar writer-lock shows the holder; --force-release --force if it is dead"
    if isinstance(exc, RemoteDataError):
        return "from the command line: hangar fetch-data REMOTE BRANCH"
    return ""


# Python API phrases in error messages -> what a command-line user types instead.
_CLI_WORDS = [
    (re.compile(r"pass force_delete=True"), "pass -D (hangar branch -D NAME)"),
    (re.compile(r"strategy='(ours|theirs)'"), r"--strategy \1"),
    (re.compile(r"repo\.remote\.fetch\('([^']*)', '([^']*)'\)"), r"hangar fetch \1 \2"),
    (re.compile(r"(?:use |with )?repo\.remote\.fetch_data\([^)]*\)"), "hangar fetch-data REMOTE BRANCH"),
    (re.compile(r"fetch_data them first"), "bring them first with hangar fetch-data REMOTE BRANCH"),
    (re.compile(r"max_num_bytes"), "--max-bytes"),
    (re.compile(r"repo\.force_release_writer_lock\(\)"), "hangar writer-lock --force-release"),
    (re.compile(r"repo\.reset_staging_area\(\)"), "hangar reset"),
    (re.compile(r"repo\.checkout\(write=True, timeout=SECONDS\)"), "run the command again when it is done"),
    (re.compile(r"repo\.checkout\(write=True, branch=OTHER\)"), "hangar checkout OTHER"),
]


def cli_words(text: str) -> str:
    """``text`` with the Python calls it names replaced by the matching command-line words."""
    for pattern, words in _CLI_WORDS:
        text = pattern.sub(words, text)
    return text


def error_message(exc: BaseException) -> str:
    """Text describing ``exc`` for the user (KeyError's quotes are dropped), in command-line words."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    text = text.strip() or type(exc).__name__
    text = cli_words(text)
    hint = _hint(exc)
    if hint and hint.partition(": ")[2].split(";")[0] in text:
        hint = ""  # the message already names the command
    if hint:
        first, sep, rest = text.partition("\n")
        text = f"{first}; {hint}{sep}{rest}"
    return text


class HangarGroup(TyperGroup):
    """Root command group reporting errors as ``error: <message>`` and exit status 1."""

    # typer.Context is the click Context typer passes
    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return sorted(super().list_commands(ctx))

    # typer.Context is the click Context typer passes
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except _CONTROL_FLOW:
            raise
        except BrokenPipeError:
            raise  # the reader went away (``hangar log | head``): main() exits quietly
        except Exception as exc:
            if _state.debug:
                raise
            # one ``error:`` line; details some errors carry (merge conflicts) follow as is
            typer.echo(f"error: {error_message(exc)}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=HangarGroup, help="hangar: version control for tensor data, built on real git.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)


def _version_callback(value: bool) -> None:
    if value:
        from hangar._version import __version__

        typer.echo(f"hangar {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version_callback,
                                           is_eager=True, help="Print the version and exit."),
    path: str = typer.Option(".", "-C", metavar="PATH",
                             help="Run as if hangar was started in PATH (like git -C)."),
    debug: bool = typer.Option(False, "--debug", envvar="HANGAR_DEBUG",
                               help="Show the full traceback when a command fails."),
) -> None:
    """hangar: version control for tensor data, built on real git.

    Example: hangar init --name "Ann" --email ann@example.com
    """
    global _state
    _state = CliState(path=path, debug=debug)


def main() -> None:
    """Entry point of the ``hangar`` console script and ``python -m hangar``."""
    try:
        app(prog_name="hangar")
    except BrokenPipeError:
        # stdout was closed early; point it at devnull so the interpreter's final flush is quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
