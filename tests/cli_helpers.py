"""Driving the CLI in-process with typer's runner (shared by the CLI test files)."""

from __future__ import annotations

from typer.testing import CliRunner

from hangar.cli import app

runner = CliRunner()


def hangar(path, *args: str):
    """Run ``hangar -C path args...`` in-process."""
    return runner.invoke(app, ["-C", str(path), *args])


def ok(path, *args: str) -> str:
    """Run a command that must succeed; return its stdout."""
    result = hangar(path, *args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
    return result.stdout


def fails(path, *args: str) -> str:
    """Run a command that must fail; return its stderr after checking it is one ``error:`` line."""
    result = hangar(path, *args)
    assert result.exit_code == 1, (args, result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr
