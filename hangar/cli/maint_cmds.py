"""Maintenance verbs: fsck (check every record and re-hash every sample) and gc."""

from __future__ import annotations

import typer

from hangar.cli.app import app
from hangar.cli.context import open_repo


@app.command("fsck")
def fsck() -> None:
    """Check every commit, record and sample; re-hash all stored bytes. Exit status 1 on damage.

    Problems are listed by arrayset and key (corrupt or missing bytes, unreadable records).
    Example: hangar fsck
    """
    report = open_repo().verify()
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(1)


@app.command("gc")
def gc(
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only report what would be removed."),
) -> None:
    """Remove git objects and sample bytes no branch, remote branch or the staging area reaches.

    Reachable data is rewritten into new packs first; old packs are removed afterwards.
    Needs the writer lock (fails while a writer checkout is open).
    Example: hangar gc --dry-run
    """
    typer.echo(str(open_repo().gc(dry_run=dry_run)))
