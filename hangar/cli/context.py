"""What a verb needs from its surroundings: the repository, checkouts, parsed arguments.

Only the command line reads the working directory and the terminal; everything else goes
through the public Python API.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional, Union

from hangar.cli.app import CliState, current_state
from hangar.errors import CliError

if TYPE_CHECKING:
    from hangar import Repository
    from hangar.checkout import ReaderCheckout, WriterCheckout


def state() -> CliState:
    """Global options of the running command."""
    return current_state()


def start_dir() -> str:
    """Absolute directory the command acts on (``-C PATH`` or the working directory)."""
    path = os.path.abspath(state().path)
    if not os.path.isdir(path):
        raise CliError(f"cannot change to {path!r}: no such directory")
    return path


def open_repo() -> "Repository":
    """The repository at the start directory or its nearest parent holding one (like git)."""
    from hangar import Repository

    start = start_dir()
    path = start
    while True:
        repo = Repository(path, exists=False)
        if repo.initialized:
            return repo
        parent = os.path.dirname(path)
        if parent == path:
            raise CliError(f"not a hangar repository (or any parent up to /): {start}; "
                           "create one with: hangar init --name NAME --email EMAIL")
        path = parent


@contextmanager
def writer(repo: "Repository", branch: Optional[str] = None) -> Iterator["WriterCheckout"]:
    """The write-enabled checkout of ``branch`` (default: the current branch), always closed.

    Moving to another branch is what the verbs that name one (``checkout``, ``import
    --branch``) mean to do: the Python API's warning about it is not shown. The branch is
    remembered as the command line's current one (a Python writer moving it away warns).
    """
    from hangar.errors import BranchSwitchWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BranchSwitchWarning)
        co = repo.checkout(write=True, branch=branch or repo.writer_branch)
    repo.remember_cli_branch(co.branch_name)  # type: ignore[union-attr]  # write=True gives a WriterCheckout
    try:
        yield co  # type: ignore[misc]  # write=True gives a WriterCheckout
    finally:
        co.close()


_REV_RE = re.compile(r"(?P<base>.*?)(?P<ops>(?:~\d*|\^)*)\Z")


def resolve_commit(repo: "Repository", text: str) -> str:
    """The full hash of a commit named as git users name them.

    ``HEAD`` (the current branch's head), a branch (``dev``, ``origin/dev``), a full or
    abbreviated hash, each optionally followed by ``~N`` / ``~`` / ``^`` (N-th first parent).
    """
    match = _REV_RE.match(text.strip())
    base, ops = (match["base"], match["ops"]) if match and match["base"] else (text, "")
    if base == "HEAD":
        start = branch_head(repo, repo.writer_branch)
        if start is None:
            raise CliError(f"HEAD: branch {repo.writer_branch!r} has no commits yet")
    elif base in repo.list_branches():
        start = branch_head(repo, base)
        if start is None:
            raise CliError(f"branch {base!r} has no commits yet")
    else:
        try:
            # return_contents=True returns the dict
            start = repo.log(commit=base, return_contents=True)["head"]  # type: ignore[index]
        except ValueError:
            raise CliError(f"{text!r} names no commit: give a commit hash (or its first 7+ characters), a "
                           "branch (dev, origin/dev) or HEAD, optionally with ~N (N commits back)") from None
    steps = sum(int(op[1:] or 1) if op.startswith("~") else 1 for op in re.findall(r"~\d*|\^", ops))
    if not steps:
        return start
    # return_contents=True returns the dict
    ancestors = repo.log(commit=start, return_contents=True)["ancestors"]  # type: ignore[index]
    current = start
    for n in range(steps):
        parents = ancestors.get(current) or []
        if not parents:
            raise CliError(f"{text!r}: commit {current[:12]} has no parent ({n} of {steps} steps back)")
        current = parents[0]
    return current


@contextmanager
def reader(repo: "Repository", branch: Optional[str] = None,
           commit: Optional[str] = None) -> Iterator["ReaderCheckout"]:
    """A read-only checkout of ``commit`` or the head of ``branch`` (default: current branch)."""
    if commit and branch:
        raise CliError("give a branch or --commit, not both")
    if commit:
        co = repo.checkout(commit=resolve_commit(repo, commit))
    else:
        co = repo.checkout(branch=branch or repo.writer_branch)
    try:
        yield co  # type: ignore[misc]  # write=False gives a ReaderCheckout
    finally:
        co.close()


def branch_head(repo: "Repository", branch: str) -> Optional[str]:
    """Head commit of ``branch`` (None when it does not exist or has no commits yet)."""
    return repo.branch_head(branch)


def parse_shape(text: str) -> tuple[int, ...]:
    """``'28,28'`` / ``'28x28'`` / ``'(28, 28)'`` -> ``(28, 28)``."""
    parts = [p for p in re.split(r"[,x\s]+", text.strip().strip("()[]")) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise CliError(f"shape {text!r} is not a list of integers; example: --shape 28,28") from None
    if not shape:
        raise CliError(f"shape {text!r} is empty; example: --shape 28,28")
    return shape


def format_shape(shape: tuple[int, ...]) -> str:
    """Inverse of :func:`parse_shape`: ``(28, 28)`` -> ``'28,28'``."""
    return ",".join(str(d) for d in shape)


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\Z", re.IGNORECASE)
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """``'10MB'`` -> 10_000_000, ``'1MiB'`` -> 1_048_576, ``'512'`` -> 512 bytes."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise CliError(f"size {text!r} is not understood; examples: 512, 10KB, 10MB, 1GiB")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    if binary and not unit:
        raise CliError(f"size {text!r} is not understood; examples: 512, 10KB, 10MB, 1GiB")
    return int(float(number) * base ** _SIZE_POWERS[unit.lower()])


def parse_key(aset: object, text: str) -> Union[str, int]:
    """The sample key named on the command line.

    ``i:3`` and ``s:3`` say the type outright; otherwise a str key of that name wins, then
    an int key when ``text`` is all digits.
    """
    if text.startswith("i:") and text[2:].isdigit():
        return int(text[2:])
    if text.startswith("s:"):
        return text[2:]
    if text in aset:  # type: ignore[operator]  # an arrayset handle supports in
        return text
    if text.isdigit() and int(text) in aset:  # type: ignore[operator]  # an arrayset handle supports in
        return int(text)
    return text


def not_fetched(repo: "Repository", what: str, arrayset: str, branch: Optional[str],
                commit: Optional[str]) -> CliError:
    """The error for reading sample bytes a partial clone does not hold yet, naming the command."""
    remotes = sorted(r.name for r in repo.remote.list_all())
    remote = remotes[0] if len(remotes) == 1 else "REMOTE"
    where = f"--commit {commit}" if commit else (branch or repo.writer_branch)
    return CliError(f"{what} of arrayset {arrayset!r} is not fetched yet (this repository holds its record, the "
                    f"remote its bytes); bring it with: hangar fetch-data {remote} {where} --arrayset {arrayset}")
