"""Merging branches: fast-forward when possible, else a 3-way merge commit.

A merge works from the records alone (git trees and pointer blobs); it never needs
the tensor bytes, so branches fetched without their data merge too. A merge that
meets conflicts changes nothing: no objects referenced, no ref moved, the staging
area as it was. See ``docs/diff-merge.md``.
"""

from __future__ import annotations

from typing import Optional

from hangar._faults import crash_point
from hangar.core import RepositoryCore
from hangar.diff import Conflicts, MetadataKey, SampleKey, conflicts_from_merge
from hangar.errors import (
    BranchNotFoundError,
    CheckoutBaseMovedError,
    DirtyStagingAreaError,
    InvalidArgumentError,
    MergeConflictError,
)
from hangar.plumbing.gitrepo import GitRepo
from hangar.records.treediff import STRATEGIES, TreeReader, diff_trees, three_way, write_merge_commit
from hangar.writer_stage import WriterStage

_CLASS_TEXT = {
    "t1": "added on both sides with different values",
    "t21": "removed in master, mutated in dev",
    "t22": "mutated in master, removed in dev",
    "t3": "mutated on both sides to different values",
}
_MAX_LISTED = 20


def _check_args(message: object, strategy: object) -> None:
    if not isinstance(message, str):
        raise InvalidArgumentError(f"merge message must be a str, not {type(message).__name__}")
    if strategy is not None and strategy not in STRATEGIES:
        raise InvalidArgumentError(f"merge strategy {strategy!r} is not valid; choose None (stop on conflicts), "
                                   f"'ours' (keep the master side) or 'theirs' (take the dev side)")


def _branch_head(git: GitRepo, name: object, what: str, remote_ok: bool = False) -> str:
    ok = isinstance(name, str) and name
    # name is a non-empty str when ok
    head = (git.branch_or_remote_head(name) if remote_ok else git.branch_head(name)) if ok else None  # type: ignore[arg-type]
    if head is None:
        raise BranchNotFoundError(f"{what} {name!r} is not a branch with commits; branches: {git.branches()}")
    return head


def _plain(key: object) -> object:
    """A record key as the message shows it: ``('foo', 3)`` for a sample, ``'hello'`` for metadata."""
    if isinstance(key, SampleKey):
        return tuple(key)
    if isinstance(key, MetadataKey):
        return key.meta_name
    return key


def _list(records: dict) -> str:
    items = list(records)
    shown = ", ".join(repr(_plain(i)) for i in items[:_MAX_LISTED])
    more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def conflict_message(conflicts: Conflicts, master: str, dev: str) -> str:
    """Human-readable list of ``conflicts`` for a merge of ``dev`` into ``master``."""
    lines = [f"cannot merge {dev!r} into {master!r}: conflicting changes"]
    for cls in ("t1", "t21", "t22", "t3"):
        recs = getattr(conflicts, cls)
        for kind, label in (("schema", "arraysets"), ("samples", "samples (arrayset, key)"),
                            ("metadata", "metadata keys")):
            items = getattr(recs, kind)
            if items:
                lines.append(f"  {cls} ({_CLASS_TEXT[cls]}): {label} {_list(items)}")
    lines.append("nothing was changed; make the changes agree on one branch and merge again, "
                 "or pass strategy='ours' (keep master's side) or strategy='theirs' (take dev's side)")
    return "\n".join(lines)


def merge_commits(git: GitRepo, message: str, master: Optional[str], dev: str, user: tuple[str, str],
                  strategy: Optional[str] = None, names: tuple[str, str] = ("master", "dev")) -> str:
    """Merge commit ``dev`` into commit ``master``; return the resulting head (no ref is moved).

    Fast-forward (``dev``) when ``master`` is an ancestor of ``dev``; ``master`` itself when
    ``dev`` is already contained in it; otherwise a new 3-way merge commit with parents
    ``[master, dev]``, found through the merge base.

    Raises
    ------
    MergeConflictError
        (a ``ValueError``) listing the conflicts, when there are any and no ``strategy``.
    """
    if master is None:
        return dev
    # one merge-base search answers both ancestry questions: when either commit is an ancestor of
    # the other, it is the one best common ancestor (two ``descendant_of`` calls besides the
    # search cost ~0.3 ms of CPU, a tenth of a merge at 1,000,000 samples)
    base = git.merge_base(master, dev)
    if base == dev:
        return master

    def tree(commit: Optional[str]) -> Optional[bytes]:
        return bytes.fromhex(git.commit_tree_id(commit)) if commit else None

    m_tree, d_tree, b_tree = tree(master), tree(dev), tree(base)
    reader = TreeReader(git)
    # dev's changes since the base, opened before any enters master: the merge takes a subtree
    # changed on dev only by its id, unopened, so it carried a samples-tree entry of a mode
    # hangar never writes (a directory, link, gitlink) into master; the diff refuses it
    # (InvalidRecordError, C and Python alike), and its change record is kept for later diffs
    diff_trees(reader, b_tree, d_tree)
    if base == master:
        return dev
    plan = three_way(reader, b_tree, m_tree, d_tree, strategy)
    if plan.conflicts:
        conflicts = conflicts_from_merge(plan.conflicts, reader, m_tree, d_tree)
        raise MergeConflictError(conflict_message(conflicts, *names))
    return write_merge_commit(git, m_tree, plan, [master, dev], user, message)


def merge_branches(core: RepositoryCore, message: str, master_branch: str, dev_branch: str, *,
                   strategy: Optional[str] = None) -> str:
    """Merge ``dev_branch`` into ``master_branch`` (see :meth:`hangar.repository.Repository.merge`).

    Parameters
    ----------
    message : str
        Message of the merge commit (ignored for a fast-forward).
    master_branch, dev_branch : str
        Branch to merge into, and branch to merge.
    strategy : {None, 'ours', 'theirs'}
        How conflicts are resolved: ``None`` raises on any conflict; ``'ours'`` keeps
        ``master_branch``'s side of every conflict; ``'theirs'`` takes ``dev_branch``'s.

    Returns
    -------
    str
        The new head commit of ``master_branch``.

    Raises
    ------
    ValueError
        If a branch does not exist, the strategy is unknown, the staging area of
        ``master_branch`` holds uncommitted changes, or the merge conflicts.
    PermissionError
        If a writer checkout holds the writer lock.
    """
    _check_args(message, strategy)
    git = core.git
    _branch_head(git, master_branch, "master_branch")
    _branch_head(git, dev_branch, "dev_branch", remote_ok=True)
    with core.lock:
        state = core.staging_state()
        if state is not None and state.branch == master_branch and not state.is_clean(git):
            raise DirtyStagingAreaError(
                f"the staging area of branch {master_branch!r} holds uncommitted changes; commit or reset "
                "them before merging into it")
        master_head = _branch_head(git, master_branch, "master_branch")
        dev_head = _branch_head(git, dev_branch, "dev_branch", remote_ok=True)
        new = merge_commits(git, message, master_head, dev_head, core.user(), strategy,
                            (master_branch, dev_branch))
        if new != master_head:
            git.set_branch(master_branch, new)
            crash_point("merge.after_ref")
            if state is not None and state.branch == master_branch:
                core.base_staging_on(master_branch, new)
        return new


def merge_into_writer(stage: WriterStage, message: str, dev_branch: str, *,
                      strategy: Optional[str] = None) -> str:
    """Merge ``dev_branch`` into the writer checkout's branch (see ``WriterCheckout.merge``).

    The staging area must be clean; afterwards it is based on the new head, and the
    checkout's arrayset and metadata objects read the merged records.

    Raises
    ------
    ValueError
        If ``dev_branch`` does not exist, the strategy is unknown, the staging area holds
        uncommitted changes (also a ``RuntimeError``), or the merge conflicts.
    """
    _check_args(message, strategy)
    core = stage.core
    git = core.git
    dev_head = _branch_head(git, dev_branch, "dev_branch", remote_ok=True)
    if not stage.is_clean():
        raise DirtyStagingAreaError(
            f"the staging area of branch {stage.state.branch!r} holds uncommitted changes; commit or "
            "reset them before merging")
    branch = stage.state.branch
    head = git.branch_head(branch)
    if head != stage.state.base:
        raise CheckoutBaseMovedError(f"branch {branch!r} moved to {head} since this checkout was based on "
                                     f"{stage.state.base}; close and check out again")
    new = merge_commits(git, message, head, dev_head, core.user(), strategy, (branch, dev_branch))
    if new != head:
        git.set_branch(branch, new)
        stage.move_to(new)
    return new
