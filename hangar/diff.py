"""Diffs between commits, branches and the staging area.

Every diff returns :class:`DiffAndConflicts`: ``diff`` lists what is added, deleted
and mutated going from the checkout's ``HEAD`` to the other side, and ``conflict``
lists what would conflict if the two were merged "right now" (only non-empty when a
3-way merge would be needed). See ``docs/diff-merge.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import ObjectBatch
from hangar.records.keys import Key, decode_key, sort_key, sorted_keys
from hangar.records.treediff import (
    MergeConflicts,
    TreeDiff,
    TreeReader,
    diff_trees,
    diff_trees_via_base,
    three_way,
)
from hangar.session import CheckoutSession

if TYPE_CHECKING:
    from hangar.checkout import WriterCheckout
    from hangar.repository import Repository


class DiffOut(NamedTuple):
    """Records of one kind of change.

    Attributes
    ----------
    schema : list of str
        Arrayset names whose schema (the arrayset itself) changed this way.
    samples : list of (str, key)
        ``(arrayset name, sample key)`` pairs, sorted by arrayset then key.
    metadata : list of key
        Metadata keys (ints first, then strs).
    """

    schema: list
    samples: list
    metadata: list


class Changes(NamedTuple):
    """``added``, ``deleted`` and ``mutated`` records, each a :class:`DiffOut`."""

    added: DiffOut
    deleted: DiffOut
    mutated: DiffOut


class ConflictRecords(NamedTuple):
    """Records of one conflict class: arrayset names, ``(arrayset, key)`` pairs, metadata keys."""

    schema: list
    samples: list
    metadata: list


class Conflicts(NamedTuple):
    """The four classes of merge conflict.

    Attributes
    ----------
    t1 : ConflictRecords
        Added in master AND dev with different values.
    t21 : ConflictRecords
        Removed in master, mutated in dev.
    t22 : ConflictRecords
        Mutated in master, removed in dev.
    t3 : ConflictRecords
        Mutated in master AND dev to different values.
    conflict : bool
        True when any class holds a record.
    """

    t1: ConflictRecords
    t21: ConflictRecords
    t22: ConflictRecords
    t3: ConflictRecords
    conflict: bool


class DiffAndConflicts(NamedTuple):
    """Two-tuple of ``diff`` (:class:`Changes`) and ``conflict`` (:class:`Conflicts`)."""

    diff: Changes
    conflict: Conflicts


# ---------------------------------------------------------------- conversion
def _keys(names) -> list[Key]:  # noqa: ANN001
    return sorted_keys(decode_key(n) for n in names)


def _sample_list(pairs) -> list[tuple[str, Key]]:  # noqa: ANN001
    out = [(aset, decode_key(n)) for aset, n in pairs]
    out.sort(key=lambda ak: (ak[0], sort_key(ak[1])))
    return out


def changes_from_tree_diff(td: TreeDiff) -> Changes:
    """User-facing :class:`Changes` of a record-level :class:`~hangar.records.treediff.TreeDiff`."""
    schema: dict[str, list[str]] = {"added": [], "deleted": [], "mutated": []}
    samples: dict[str, list] = {"added": [], "deleted": [], "mutated": []}
    meta: dict[str, list] = {"added": [], "deleted": [], "mutated": []}

    def kind(old: object, new: object) -> str:
        return "added" if old is None else "deleted" if new is None else "mutated"

    for aset, ch in td.arraysets.items():
        if ch.old_schema != ch.new_schema:
            schema[kind(ch.old_schema, ch.new_schema)].append(aset)
        for n, (old, new) in ch.samples.items():
            samples[kind(old, new)].append((aset, n))
    for n, (old, new) in td.metadata.items():
        meta[kind(old, new)].append(n)
    return Changes(*(DiffOut(sorted(schema[k]), _sample_list(samples[k]), _keys(meta[k]))
                     for k in ("added", "deleted", "mutated")))


def conflicts_from_merge(mc: Optional[MergeConflicts]) -> Conflicts:
    """User-facing :class:`Conflicts` of the records' merge classification (``None``: no conflicts)."""
    if mc is None:
        mc = MergeConflicts()
    parts = [ConflictRecords(sorted(d["schema"]), _sample_list(d["samples"]), _keys(d["metadata"]))
             for d in mc.by_class.values()]
    return Conflicts(*parts, conflict=bool(mc))


def diff_commits(git: GitRepo, master: Optional[str], dev: str) -> DiffAndConflicts:
    """Diff from commit ``master`` (``None``: no commit yet) to commit ``dev``, with the
    conflicts a merge of ``dev`` into ``master`` would meet."""
    reader = TreeReader(git)
    m_tree = bytes.fromhex(git.commit_tree_id(master)) if master else None
    d_tree = bytes.fromhex(git.commit_tree_id(dev))
    if not master or git.is_ancestor(master, dev) or git.is_ancestor(dev, master):
        td = diff_trees(reader, m_tree, d_tree)
        return DiffAndConflicts(changes_from_tree_diff(td), conflicts_from_merge(None))
    base = git.merge_base(master, dev)
    b_tree = bytes.fromhex(git.commit_tree_id(base)) if base else None
    mc = three_way(reader, b_tree, m_tree, d_tree, build=False).conflicts
    td = diff_trees_via_base(reader, b_tree, m_tree, d_tree)
    return DiffAndConflicts(changes_from_tree_diff(td), conflicts_from_merge(mc))


def _resolve_branch(git: GitRepo, dev_branch: object) -> str:
    # a local branch, else a fetched remote one such as 'origin/master'
    head = git.branch_or_remote_head(dev_branch) if isinstance(dev_branch, str) and dev_branch else None
    if head is None:
        raise ValueError(f"no branch named {dev_branch!r}; branches: {git.all_branches()}")
    return head


def _resolve_commit(git: GitRepo, dev_commit_hash: object) -> str:
    commit = git.resolve_commit(dev_commit_hash) if isinstance(dev_commit_hash, str) else None
    if commit is None:
        raise ValueError(f"no commit {dev_commit_hash!r} in the repository")
    return commit


# ------------------------------------------------------------------- differs
class ReaderUserDiff:
    """Diff methods of a read-only checkout: compare its commit to a branch or commit.

    When the history between the checkout's commit and the other side is not linear
    (a 3-way merge would be needed), ``conflict`` holds the conflicts a merge would meet.
    """

    def __init__(self, repo: "Repository", session: CheckoutSession, commit: str) -> None:
        self._repo = repo
        self._session = session
        self._commit = commit

    def branch(self, dev_branch: str) -> DiffAndConflicts:
        """Diff from this checkout's commit to the head of ``dev_branch``.

        Returns
        -------
        DiffAndConflicts
            ``diff`` (added / deleted / mutated) and ``conflict`` (if any).

        Raises
        ------
        ValueError
            If ``dev_branch`` does not exist.
        """
        self._session.check()
        git = self._repo._git
        return diff_commits(git, self._commit, _resolve_branch(git, dev_branch))

    def commit(self, dev_commit_hash: str) -> DiffAndConflicts:
        """Diff from this checkout's commit to commit ``dev_commit_hash`` (full or abbreviated).

        Raises
        ------
        ValueError
            If ``dev_commit_hash`` is not a commit of the repository.
        """
        self._session.check()
        git = self._repo._git
        return diff_commits(git, self._commit, _resolve_commit(git, dev_commit_hash))


class WriterUserDiff:
    """Diff methods of the write-enabled checkout, aware of staged changes.

    ``branch()`` and ``commit()`` compare the staging area's base commit (the branch
    ``HEAD``) to another branch or commit; ``staged()`` compares the staging area to
    its base commit; ``status()`` says whether anything is staged.
    """

    def __init__(self, repo: "Repository", session: CheckoutSession, checkout: "WriterCheckout") -> None:
        self._repo = repo
        self._session = session
        self._checkout = checkout

    def status(self) -> str:
        """``'CLEAN'`` when the staging area equals its base commit, else ``'DIRTY'``."""
        self._session.check()
        return "CLEAN" if self._checkout._is_clean() else "DIRTY"

    def branch(self, dev_branch: str) -> DiffAndConflicts:
        """Diff from the staging area's base commit to the head of ``dev_branch``.

        Raises
        ------
        ValueError
            If ``dev_branch`` does not exist.
        """
        self._session.check()
        git = self._repo._git
        return diff_commits(git, self._checkout._state.base, _resolve_branch(git, dev_branch))

    def commit(self, dev_commit_hash: str) -> DiffAndConflicts:
        """Diff from the staging area's base commit to commit ``dev_commit_hash``.

        Raises
        ------
        ValueError
            If ``dev_commit_hash`` is not a commit of the repository.
        """
        self._session.check()
        git = self._repo._git
        return diff_commits(git, self._checkout._state.base, _resolve_commit(git, dev_commit_hash))

    def staged(self) -> DiffAndConflicts:
        """Diff from the base commit to the staging area (nothing is written to build it).

        ``conflict`` is always empty.
        """
        self._session.check()
        git = self._repo._git
        staging = self._checkout._staging
        if staging.has_edits():
            tree, batch = staging.build()
        else:
            tree, batch = staging.snapshot.tree_id, ObjectBatch()
        base = self._checkout._base_tree()
        reader = TreeReader(git, batch)
        td = diff_trees(reader, bytes.fromhex(base) if base else None, bytes.fromhex(tree) if tree else None)
        return DiffAndConflicts(changes_from_tree_diff(td), conflicts_from_merge(None))
