"""Remote verbs: ``hangar remote add|remove|list|ping``, ``clone``, ``fetch``, ``fetch-data``, ``push``.

(``hangar server`` lives in :mod:`hangar.cli.server_cmd`.)
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

import typer

from hangar.cli.app import app
from hangar.cli.context import CliError, open_repo, parse_size, resolve_commit, state
from hangar.plumbing import paths

if TYPE_CHECKING:
    from hangar import Repository

remote_app = typer.Typer(help="Manage the remotes (hangar servers) this repository talks to.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(remote_app, name="remote")

_T = TypeVar("_T")


def _noting_no_op(call: Callable[[], _T]) -> tuple[_T, bool]:
    """Run a push/fetch; a "changed nothing" UserWarning becomes a ``note:`` line on stderr.

    Returns the call's result and whether it changed nothing.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = call()
    no_op = False
    for w in caught:
        if issubclass(w.category, UserWarning) and "changed nothing" in str(w.message):
            typer.echo(f"note: {w.message}", err=True)
            no_op = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, no_op


@remote_app.command("add")
def remote_add(
    name: str = typer.Argument(..., metavar="NAME", help="Name for the remote, e.g. origin."),
    address: str = typer.Argument(..., metavar="ADDRESS",
                                  help="IP:PORT (or https://IP:PORT) where hangar server runs; with --data, "
                                       "any git URL (path, file://, ssh://, git://, https://)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="s3://BUCKET/PREFIX",
                                       help="Keep sample bytes in this object-store prefix (a data remote)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", metavar="URL",
                                               help="S3-compatible server URL (default: AWS_ENDPOINT_URL, else AWS)."),
    lazy: bool = typer.Option(True, "--lazy/--no-lazy",
                              help="Read samples that are not local from the data remote on first access."),
) -> None:
    """Record a remote under NAME.

    Example: hangar remote add origin 127.0.0.1:50051
    Example: hangar remote add origin git@github.com:me/mnist.git --data s3://team-data/mnist
    """
    if data is None and (endpoint_url is not None or not lazy):
        raise CliError("--endpoint-url and --no-lazy apply to a data remote: give --data s3://BUCKET/PREFIX too")
    info = open_repo().remote.add(name, address, data=data, endpoint_url=endpoint_url, lazy=lazy)
    typer.echo(f"added remote {info.name}\t{info.address}" + (f"\tdata {data}" if data else ""))


@remote_app.command("lazy")
def remote_lazy(
    name: str = typer.Argument(..., metavar="NAME", help="A data remote."),
    setting: str = typer.Argument(..., metavar="on|off", help="Read missing samples from it on first access?"),
) -> None:
    """Turn lazy reads from the data remote NAME on or off (fetch-data always works).

    Example: hangar remote lazy origin off
    """
    if setting not in ("on", "off"):
        raise CliError(f"lazy reads are 'on' or 'off', not {setting!r}")
    open_repo().remote.set_lazy_reads(name, setting == "on")
    typer.echo(f"lazy reads from {name}: {setting}")


@remote_app.command("remove")
def remote_remove(name: str = typer.Argument(..., help="Remote to forget.")) -> None:
    """Forget the remote NAME.

    Example: hangar remote remove origin
    """
    open_repo().remote.remove(name)
    typer.echo(f"removed remote {name}")


@remote_app.command("list")
def remote_list() -> None:
    """List remotes: name and address, tab-separated.

    Example: hangar remote list
    """
    for info in sorted(open_repo().remote.list_all(), key=lambda r: r.name):
        typer.echo(f"{info.name}\t{info.address}")


@remote_app.command("ping")
def remote_ping(name: str = typer.Argument(..., help="Remote to ping.")) -> None:
    """Check that a remote answers and print the round trip time (NAME<TAB>1.2 ms).

    Example: hangar remote ping origin
    """
    seconds = open_repo().remote.ping(name)
    typer.echo(f"{name}\t{seconds * 1000:.1f} ms")


@app.command("clone")
def clone(
    address: str = typer.Argument(..., metavar="ADDRESS",
                                  help="IP:PORT (or https://IP:PORT) where hangar server runs, or the git URL "
                                       "of a data remote's history."),
    path: Optional[str] = typer.Argument(None, metavar="PATH",
                                         help="Directory to clone into (default: current, created)."),
    name: str = typer.Option(..., "--name", metavar="NAME", help="Your name, recorded in every commit."),
    email: str = typer.Option(..., "--email", metavar="EMAIL", help="Your email, recorded in every commit."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", metavar="URL",
                                               help="For a data remote: the S3-compatible server's URL."),
) -> None:
    """Copy a remote repository's history (records only) into PATH; fetch-data brings sample bytes.

    Example: hangar clone 127.0.0.1:50051 ./mnist --name "Ann Lee" --email ann@example.com
    """
    from hangar import Repository

    base = os.path.abspath(state().path)
    target = os.path.join(base, path) if path else base
    created = not os.path.exists(target)
    os.makedirs(target, exist_ok=True)
    try:
        repo = Repository(target, exists=False)
        if repo.initialized:
            raise CliError(f"a hangar repository already exists in {target}; clone into an empty directory")
        branch = (repo.clone(name, email, address, endpoint_url=endpoint_url) if endpoint_url
                  else repo.clone(name, email, address))
    except BaseException:
        if created:  # a failed clone leaves no folder behind that it made
            shutil.rmtree(target, ignore_errors=True)
        raise
    typer.echo(f"cloned {address} into {target} (branch {branch})")


@app.command("fetch")
def fetch(
    remote: str = typer.Argument(..., metavar="REMOTE", help="Remote to fetch from."),
    branch: str = typer.Argument(..., metavar="BRANCH", help="Remote branch whose new commits to fetch."),
) -> None:
    """Fetch a remote branch's new commits (records only) into REMOTE/BRANCH.

    Example: hangar fetch origin master
    """
    repo = open_repo()
    local, no_op = _noting_no_op(lambda: repo.remote.fetch(remote, branch))
    typer.echo(f"{remote} {branch} -> {local}" + (" (up to date)" if no_op else ""))


@app.command("fetch-data")
def fetch_data(
    remote: str = typer.Argument(..., metavar="REMOTE", help="Remote to fetch the data from."),
    branch: Optional[str] = typer.Argument(None, metavar="BRANCH", help="Branch whose head's data to fetch."),
    commit: Optional[str] = typer.Option(None, "--commit", metavar="COMMIT", help="Commit whose data to fetch."),
    arraysets: Optional[list[str]] = typer.Option(None, "--arrayset", metavar="NAME",
                                                  help="Only this arrayset (repeatable)."),
    max_bytes: Optional[str] = typer.Option(None, "--max-bytes", metavar="SIZE",
                                            help="Stop after about this much, e.g. 10MB."),
    all_history: bool = typer.Option(False, "--all-history", help="Also fetch data of every ancestor commit."),
) -> None:
    """Download the tensor data of a fetched branch or commit; prints the commits served.

    A summary line on stderr says how many samples of the commit were fetched and the bytes stored.

    Example: hangar fetch-data origin origin/master --arrayset digits --max-bytes 100MB
    """
    if bool(branch) == bool(commit):
        raise CliError("give exactly one of BRANCH or --commit")
    limit = parse_size(max_bytes) if max_bytes is not None else None
    repo = open_repo()
    if commit:
        commit = resolve_commit(repo, commit)
    data_dir = paths.data_dir(paths.hangar_dir(repo.path))
    remote_before, size_before = _remote_only(repo, branch, commit), _tree_size(data_dir)
    commits = repo.remote.fetch_data(remote, branch=branch, commit=commit, arrayset_names=arraysets or None,
                                     max_num_bytes=limit, retrieve_all_history=all_history)
    remote_after, size_after = _remote_only(repo, branch, commit), _tree_size(data_dir)
    for c in commits:
        typer.echo(c)
    fetched = remote_before - remote_after
    left = f"; {remote_after} still on the remote only" if remote_after else ""
    typer.echo(f"fetched {fetched} sample{'s' if fetched != 1 else ''} of {(commits or ['?'])[0][:12]} "
               f"({_human(size_after - size_before)} stored){left}", err=True)


def _remote_only(repo: Repository, branch: Optional[str], commit: Optional[str]) -> int:
    """Samples of the commit (or branch head) whose bytes are not local."""
    try:
        # None: the default branch, as checkout's '' is
        co = repo.checkout(commit=commit) if commit else repo.checkout(branch=branch)  # type: ignore[arg-type]
    except ValueError:
        return 0
    try:
        return sum(len(co.arraysets[n].remote_reference_sample_keys) for n in co.arraysets.keys())
    finally:
        co.close()


def _tree_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:  # removed meanwhile (a temporary file)
                pass
    return total


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]  # an int that becomes a float for display
    return f"{n} bytes"


@app.command("push")
def push(
    remote: str = typer.Argument(..., metavar="REMOTE", help="Remote to push to."),
    branch: str = typer.Argument(..., metavar="BRANCH", help="Local branch to push (created on the remote if new)."),
    username: str = typer.Option("", "--username", metavar="USER", help="User, if the server requires one."),
    password: str = typer.Option("", "--password", envvar="HANGAR_PASSWORD",
                                 help="Password (or set HANGAR_PASSWORD to keep it off the command line)."),
) -> None:
    """Send a branch's commits and data to a remote.

    Example: hangar push origin master --username ann
    """
    repo = open_repo()
    _, no_op = _noting_no_op(lambda: repo.remote.push(remote, branch, username=username, password=password))
    typer.echo(f"{branch} on {remote} is up to date" if no_op else f"pushed {branch} to {remote}")
