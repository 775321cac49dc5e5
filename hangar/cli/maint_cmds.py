"""Maintenance verbs: fsck (check every record and re-hash every sample) and gc."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from hangar.cli.app import app
from hangar.cli.context import CliError, open_repo

if TYPE_CHECKING:
    from hangar.records.pointer import SamplePointer


@app.command("fsck")
def fsck(
    repair: bool = typer.Option(False, "--repair", help="Fetch damaged samples again from --remote."),
    remote: str = typer.Option("origin", "--remote", help="Remote that --repair fetches from."),
) -> None:
    """Check every commit, record and sample; re-hash all stored bytes. Exit status 1 on damage.

    Problems are listed by arrayset and key (corrupt or missing bytes, unreadable records).
    With --repair, samples whose stored bytes are damaged are fetched again from a remote
    (verified against their digests) and the repository is checked again.
    Example: hangar fsck --repair --remote origin
    """
    repo = open_repo()
    addresses = {r.name: r.address for r in repo.remote.list_all()} if repair else {}
    if repair and remote not in addresses:
        raise CliError(f"no remote named {remote!r} to repair from (remotes: {sorted(addresses)}); "
                       "add one with `hangar remote add NAME ADDRESS`")
    report = repo.verify()
    typer.echo(str(report))
    if repair and report.damaged:
        from hangar.remote.client import DataClient, download_into

        def fetch(store: Any, pointers: list[SamplePointer]) -> None:  # a TensorStore
            with DataClient(addresses[remote]) as client:
                download_into(store, client, pointers)

        dropped = repo.repair(report, fetch)
        typer.echo(f"repair: replaced {dropped} damaged sample record(s) with bytes from {remote!r}; checking again")
        report = repo.verify()
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
