"""Repository verbs: init, status, log, summary, branch, checkout, diff, merge, commit, reset, writer-lock."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

import typer

from hangar.cli.app import app, error_message
from hangar.cli.context import CliError, branch_head, open_repo, reader, resolve_commit, state, writer
from hangar.errors import StagingBaseMovedError

if TYPE_CHECKING:
    from hangar import Repository

_CODES = {"added": "A", "deleted": "D", "mutated": "M"}
_WORDS = {"added": "added", "deleted": "removed", "mutated": "mutated"}
_KINDS = {"schema": "arrayset", "samples": "sample", "metadata": "metadata"}


# ------------------------------------------------------------------ diff records
def _fields(item: Any) -> list[str]:
    """Name parts of one diff record key: ``SampleKey('foo', 3)`` -> ``['foo', '3']``,
    ``MetadataKey('hello')`` -> ``['hello']``, arrayset ``'foo'`` -> ``['foo']``."""
    if isinstance(item, tuple):
        return [str(x) for x in item]
    return [str(item)]


def _changes(changes: Any) -> Iterator[tuple[str, list[str]]]:
    """``(kind, name parts)`` for every record (dict key) of one ``Changes(schema, samples, metadata)``."""
    for field, kind in _KINDS.items():
        records = getattr(changes, field, None)
        if records is None:
            continue
        items: Iterable[Any] = records.keys() if isinstance(records, dict) else records
        for parts in sorted((_fields(i) for i in items), key=lambda p: [(len(x), x) for x in p]):
            yield kind, parts


def diff_lines(result: Any) -> list[str]:
    """Tab-separated porcelain lines for a ``DiffAndConflicts``.

    ``A|D|M <tab> arrayset|sample|metadata <tab> name...`` for the changes, then
    ``C:<type> <tab> kind <tab> name...`` for each merge conflict (types t1, t21, t22, t3).
    """
    lines = []
    diff = getattr(result, "diff", result)
    for status, code in _CODES.items():
        for kind, parts in _changes(getattr(diff, status)):
            lines.append("\t".join([code, kind, *parts]))
    conflict = getattr(result, "conflict", None)
    if conflict is not None and getattr(conflict, "conflict", False):
        for ctype in ("t1", "t21", "t22", "t3"):
            for kind, parts in _changes(getattr(conflict, ctype, None)):
                lines.append("\t".join([f"C:{ctype}", kind, *parts]))
    return lines


def _summary_lines(result: Any) -> list[str]:
    """``added: arrayset foo`` / ``added: 10 samples in foo`` / ``removed: 1 metadata key``."""
    lines = []
    diff = getattr(result, "diff", result)
    for status, word in _WORDS.items():
        samples: Counter[str] = Counter()
        n_meta = 0
        for kind, parts in _changes(getattr(diff, status)):
            if kind == "arrayset":
                lines.append(f"{word}: arrayset {parts[0]}")
            elif kind == "sample":
                samples[parts[0]] += 1
            else:
                n_meta += 1
        for aset in sorted(samples):
            n = samples[aset]
            lines.append(f"{word}: {n} sample{'s' if n != 1 else ''} in {aset}")
        if n_meta:
            lines.append(f"{word}: {n_meta} metadata key{'s' if n_meta != 1 else ''}")
    return lines


# ------------------------------------------------------------------------ verbs
@app.command("init")
def init(
    name: str = typer.Option(..., "--name", metavar="NAME", help="Your name, recorded in every commit."),
    email: str = typer.Option(..., "--email", metavar="EMAIL", help="Your email, recorded in every commit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="DANGER: delete an existing repository first."),
) -> None:
    """Create an empty repository in the current directory (or -C PATH).

    Example: hangar init --name "Ann Lee" --email ann@example.com
    """
    from hangar import Repository

    path = os.path.abspath(state().path)
    os.makedirs(path, exist_ok=True)
    repo = Repository(path, exists=False)
    existed = repo.initialized
    if existed and not overwrite:
        raise CliError(f"a hangar repository already exists in {path}; pass --overwrite to replace it "
                       "(this deletes all its history and data)")
    hangar_dir = repo.init(user_name=name, user_email=email, remove_old=overwrite)
    typer.echo(f"{'Reinitialized' if existed else 'Initialized'} empty hangar repository in {hangar_dir}")


@app.command("status")
def status() -> None:
    """Show the current branch and whether the staging area has changes (CLEAN/DIRTY).

    Example: hangar status
    """
    repo = open_repo()
    try:
        with writer(repo) as co:
            lines = [f"branch: {co.branch_name}", f"head: {co.commit_hash or '(no commits yet)'}"]
            st = co.diff.status()
            lines.append(f"status: {st}")
            if st == "DIRTY" and hasattr(co.diff, "staged"):
                lines += _summary_lines(co.diff.staged())
            lines.append(f"next commit: on branch {co.branch_name}")
    except PermissionError as exc:  # another process is writing: its staged changes are its own for now
        current = repo.writer_branch
        lines = [f"branch: {current}", f"head: {branch_head(repo, current) or '(no commits yet)'}",
                 "status: UNKNOWN", f"note: the staging area is in use ({exc})"]
    except StagingBaseMovedError as exc:  # the branch moved under staged changes: say how out
        current = repo.writer_branch
        lines = [f"branch: {current}", f"head: {branch_head(repo, current) or '(no commits yet)'}",
                 "status: STALE", f"note: {error_message(exc)}"]
    typer.echo("\n".join(lines))


@app.command("log")
def log(
    branch: Optional[str] = typer.Argument(None, metavar="BRANCH",
                                           help="Branch to start from (default: current branch)."),
    commit: Optional[str] = typer.Option(None, "--commit", metavar="COMMIT", help="Commit hash to start from."),
    show_time: bool = typer.Option(False, "--time", help="Show the time of each commit (UTC)."),
    show_user: bool = typer.Option(False, "--user", help="Show the author of each commit."),
) -> None:
    """Show the commit graph of a branch or commit.

    Example: hangar log master --time --user
    """
    if branch and commit:
        raise CliError("give a branch or --commit, not both")
    repo = open_repo()
    branch, commit = _branch_or_commit(repo, branch, commit)
    if not sys.stdout.isatty():
        repo.log(branch=branch, commit=commit, show_time=show_time, show_user=show_user)
        return
    # commit messages and author names come from anyone who can push: on a terminal, control
    # characters (escape sequences that retitle, clear or remap it) are shown escaped, not obeyed
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        repo.log(branch=branch, commit=commit, show_time=show_time, show_user=show_user)
    typer.echo(visible(buf.getvalue()), nl=False)


def visible(text: str) -> str:
    """``text`` with every control character but newline written as a Python escape (``\\x1b``)."""
    return "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text)


def _branch_or_commit(repo: Repository, branch: Optional[str],
                      commit: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """``(branch, full commit)``: a BRANCH argument that names no branch may name a commit (HEAD~2)."""
    if branch is not None and branch not in repo.list_branches():
        return None, resolve_commit(repo, branch)
    return branch, resolve_commit(repo, commit) if commit else None


@app.command("summary")
def summary(
    branch: Optional[str] = typer.Argument(None, metavar="BRANCH",
                                           help="Branch whose head to summarize (default: current)."),
    commit: Optional[str] = typer.Option(None, "--commit", metavar="COMMIT", help="Commit hash to summarize."),
) -> None:
    """Summarize the arraysets and metadata of a branch head or commit.

    Example: hangar summary --commit 1a2b3c4
    """
    if branch and commit:
        raise CliError("give a branch or --commit, not both")
    repo = open_repo()
    branch, commit = _branch_or_commit(repo, branch, commit)
    repo.summary(branch=branch or "", commit=commit or "")


@app.command("branch")
def branch(
    name: Optional[str] = typer.Argument(None, metavar="NAME", help="Branch to create (or delete with -d)."),
    base: Optional[str] = typer.Argument(None, metavar="BASE",
                                         help="Branch or commit to start it at (default: current head)."),
    delete: bool = typer.Option(False, "-d", "--delete", help="Delete branch NAME (it must be merged)."),
    force_delete: bool = typer.Option(False, "-D", help="Delete branch NAME even if it is not merged."),
) -> None:
    """List branches (current marked with *), create one, or delete one with -d.

    Example: hangar branch dev master
    """
    repo = open_repo()
    if delete or force_delete:
        if name is None or base is not None:
            raise CliError("usage: hangar branch -d NAME")
        repo.remove_branch(name, force_delete=force_delete)
        typer.echo(f"deleted branch {name}")
        return
    if name is None:
        current = repo.writer_branch
        names = sorted(set(repo.list_branches()))
        for b in names:
            typer.echo(f"{'*' if b == current else ' '} {b}")
        if current not in names:
            typer.echo(f"* {current} (no commits yet)")
        return
    base_commit = resolve_commit(repo, base) if base is not None else None
    repo.create_branch(name, base_commit)
    typer.echo(f"created branch {name} at {branch_head(repo, name)}")


@app.command("checkout")
def checkout(
    name: str = typer.Argument(..., metavar="NAME", help="Branch to make current."),
    create: bool = typer.Option(False, "-b", help="Create the branch at the current head first."),
) -> None:
    """Make BRANCH current: the staging area and the next commit are based on it.

    Example: hangar checkout -b dev
    """
    repo = open_repo()
    if create:
        repo.create_branch(name)
    try:
        with writer(repo, name) as co:
            head = co.commit_hash
    except BaseException:
        if create:  # a failed checkout -b leaves no branch behind
            repo.remove_branch(name, force_delete=True)
        raise
    typer.echo(f"switched to branch {name} at {head or '(no commits yet)'}")


@app.command("diff")
def diff(
    target: Optional[str] = typer.Argument(None, metavar="TARGET",
                                           help="Branch or commit to compare the current head with."),
) -> None:
    """Show changes: staged ones, or those between the current head and a branch or commit.

    Lines are tab-separated: A|D|M, arrayset|sample|metadata, name(s); conflicts a
    3-way merge would meet are listed as C:t1, C:t21, C:t22, C:t3.

    Example: hangar diff dev
    """
    repo = open_repo()
    if target is None:
        with writer(repo) as co:
            result = co.diff.staged()
    else:
        with reader(repo) as co:
            if target in repo.list_branches():
                result = co.diff.branch(target)
            else:
                result = co.diff.commit(resolve_commit(repo, target))
    for line in diff_lines(result):
        typer.echo(line)


@app.command("merge")
def merge(
    dev: str = typer.Argument(..., metavar="DEV", help="Branch whose changes to merge."),
    message: Optional[str] = typer.Option(None, "-m", "--message", metavar="MSG", help="Message of the merge commit."),
    into: Optional[str] = typer.Option(None, "--into", metavar="BRANCH",
                                       help="Branch to merge into (default: current)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", metavar="ours|theirs",
                                           help="Resolve conflicts keeping our side or taking theirs."),
) -> None:
    """Merge branch DEV into the current branch (fast-forward when possible).

    Example: hangar merge dev -m "take dev's new labels"
    """
    repo = open_repo()
    target = into or repo.writer_branch
    dev_head = branch_head(repo, dev)
    if dev_head is None:
        raise CliError(f"no branch named {dev!r} with commits; branches: {sorted(repo.list_branches())}")
    text = message or f"Merge branch '{dev}' into {target}"
    new = repo.merge(text, target, dev, strategy=strategy) if strategy else repo.merge(text, target, dev)
    if new == dev_head:
        typer.echo(f"[{target} {new}] fast-forward to {dev}")
    else:
        typer.echo(f"[{target} {new}] {text}")


@app.command("commit")
def commit(
    message: str = typer.Option(..., "-m", "--message", metavar="MSG", help="Commit message."),
) -> None:
    """Record the staged changes as a new commit on the current branch.

    Example: hangar commit -m "add 60k training images"
    """
    repo = open_repo()
    with writer(repo) as co:
        new = co.commit(message)
        name = co.branch_name
    first = message.splitlines()[0] if message else ""
    typer.echo(f"[{name} {new}] {first}")


@app.command("reset")
def reset() -> None:
    """Drop every staged change (irreversible); the staging area returns to the head commit.

    Example: hangar reset
    """
    from hangar.errors import NothingToCommitError

    repo = open_repo()
    try:
        base = repo.reset_staging_area()  # also when the branch moved under the staged changes
    except NothingToCommitError:
        typer.echo("nothing to reset: the staging area is clean")
        return
    typer.echo(f"staging area reset to {base or '(no commits yet)'}")


@app.command("writer-lock")
def writer_lock(
    force_release: bool = typer.Option(False, "--force-release",
                                       help="Remove a lock left by a dead writer (refused for a running one)."),
    force: bool = typer.Option(False, "--force",
                               help="With --force-release: release even a lock whose holder runs or cannot be "
                                    "checked (its uncommitted work may be lost)."),
) -> None:
    """Show who holds the writer lock, or release a stale one.

    Example: hangar writer-lock --force-release
    """
    import warnings

    repo = open_repo()
    holder = repo.writer_lock_holder
    if not force_release:
        typer.echo(f"writer lock: {_holder_text(holder)}")
        return
    if holder is None:
        typer.echo("writer lock: free (nothing to release)")
        return
    if holder["alive"] is not False and not force:
        state = "is running" if holder["alive"] else "may be running (it cannot be checked from here)"
        raise CliError(f"the writer lock is held by pid {holder['pid']} on {holder['host']}, which {state}; "
                       "releasing it would let two writers change the staging area at once. Close that "
                       "writer (or wait for it); if you are sure it is gone, pass --force-release --force")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the line below says it
        released = repo.force_release_writer_lock(holder=holder)  # only the holder judged above
    if not released:
        raise CliError(f"the writer lock changed hands since it was read (pid {holder['pid']} on {holder['host']} "
                       f"no longer holds it): nothing released; now: {_holder_text(repo.writer_lock_holder)}")
    typer.echo(f"writer lock: released (was held by pid {holder['pid']} on {holder['host']})")


def _holder_text(holder: Optional[dict]) -> str:
    if holder is None:
        return "free"
    if holder["pid"] is None:
        return "held (the lock file cannot be read)"
    state = {True: "running", False: "not running: stale, release it with hangar writer-lock --force-release",
             None: "cannot be checked from this host"}[holder["alive"]]
    return f"held by pid {holder['pid']} on {holder['host']} ({state})"
