"""Diffs between commits, branches and the staging area.

Every diff returns :class:`DiffAndConflicts`, shaped as in Hangar 0.3::

    DiffAndConflicts(diff=DiffOut(added, deleted, mutated),
                     conflict=Conflicts(t1, t21, t22, t3, conflict))

where ``added``, ``deleted``, ``mutated`` and ``t1`` .. ``t3`` are each
``Changes(schema, samples, metadata)``, three dicts: arrayset name ->
:class:`ArraysetSchemaVal`, :class:`SampleKey` -> :class:`SampleVal`, and
:class:`MetadataKey` -> :class:`MetadataVal`. Dicts are filled in a stable order
(arraysets by name, then keys: ints numerically before strs).

Direction: between a commit and its descendant (a linear history) the diff lists the
changes from the older to the newer commit, whichever side the checkout is on. When
the histories diverged, it lists the changes from the checkout's side to the other
side, and ``conflict`` holds what a merge would meet. See ``docs/diff-merge.md``.
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple, Optional

from hangar.core import RepositoryCore
from hangar.errors import BranchNotFoundError, CommitNotFoundError
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import ObjectBatch
from hangar.records import layout
from hangar.records.keys import Key, decode_key, fan_path, sort_key
from hangar.records.parsing import (  # the record types diffs report (also importable from here)
    ArraysetSchemaVal,
    MetadataKey,
    MetadataVal,
    SampleKey,
    SampleVal,
)
from hangar.records.pointer import decode_pointer
from hangar.records.treediff import (
    CONFLICT_CLASSES,
    MergeConflicts,
    Oid,
    TreeDiff,
    TreeReader,
    diff_trees,
    diff_trees_via_base,
    three_way,
)
from hangar.session import CheckoutSession
from hangar.writer_stage import WriterStage


class Changes(NamedTuple):
    """Records of one kind of change (or of one conflict class).

    Attributes
    ----------
    schema : dict
        Arrayset name -> :class:`ArraysetSchemaVal`.
    samples : dict
        :class:`SampleKey` ``(aset_name, data_name)`` -> :class:`SampleVal`.
    metadata : dict
        :class:`MetadataKey` ``(meta_name,)`` -> :class:`MetadataVal`.

    The value is the record on the newer side (for ``deleted``, the record removed); for
    a conflict, the record on the dev side (for ``t22``, where dev removed it, master's).
    """

    schema: dict
    samples: dict
    metadata: dict


class DiffOut(NamedTuple):
    """``added``, ``deleted`` and ``mutated`` records, each a :class:`Changes`."""

    added: Changes
    deleted: Changes
    mutated: Changes


class Conflicts(NamedTuple):
    """The four classes of merge conflict, each a :class:`Changes`.

    Attributes
    ----------
    t1 : Changes
        Added in master AND dev with different values.
    t21 : Changes
        Removed in master, mutated in dev.
    t22 : Changes
        Mutated in master, removed in dev.
    t3 : Changes
        Mutated in master AND dev to different values.
    conflict : bool
        True when any class holds a record.
    """

    t1: Changes
    t21: Changes
    t22: Changes
    t3: Changes
    conflict: bool


class DiffAndConflicts(NamedTuple):
    """Two-tuple of ``diff`` (:class:`DiffOut`) and ``conflict`` (:class:`Conflicts`)."""

    diff: DiffOut
    conflict: Conflicts


# ---------------------------------------------------------------- conversion
def _raw_id(hexid: Optional[str]) -> Oid:
    return bytes.fromhex(hexid) if hexid else None


class _RecordValues:
    """Record values by raw object id.

    Sample values read from git are deferred (read when first used); with ``eager`` they are
    read now, each id once: a staged diff's objects live only in memory, in a batch that a
    reset drops.
    """

    def __init__(self, reader: TreeReader, eager: bool = False) -> None:
        self.reader = reader
        self.eager = eager
        self._samples: dict[bytes, SampleVal] = {}

    def sample(self, oid: bytes) -> SampleVal:
        if not self.eager:
            return SampleVal.deferred(oid, self.reader.raw)
        v = self._samples.get(oid)
        if v is None:
            p = decode_pointer(self.reader.raw(oid))
            v = self._samples[oid] = SampleVal(p.digest.hex(), p.dtype, p.shape)
        return v

    def metadata(self, oid: bytes) -> MetadataVal:
        return MetadataVal(oid.hex(), self.reader.raw(oid).decode("ascii"))

    def schema(self, oid: bytes) -> ArraysetSchemaVal:
        s = self.reader.schema(oid)
        return ArraysetSchemaVal(oid.hex(), s.dtype, s.variable_shape, tuple(s.shape), s.named_samples, s.backend)


_KINDS = ("added", "deleted", "mutated")


def _kind(old: Oid, new: Oid) -> int:
    return 0 if old is None else 1 if new is None else 2


_first = itemgetter(0)


def _sorted_entries(entries: dict) -> list[tuple[Key, Oid, Oid]]:
    """``(key, old, new)`` by key, ints (numerically) before strs (the order of ``sort_key``).

    Ints and strs are sorted apart, by the key alone (keys are unique): 0.24 ms for 600 entries
    where a ``sort_key`` per entry took 1.1 ms. Int keys (``i:<digits>``, what ``decode_key``
    reads) are decoded inline, without a call per entry."""
    items = entries.items()
    ints: list[tuple[Key, Oid, Oid]] = [(int(n[2:]), old, new) for n, (old, new) in items if n[:2] == "i:"]
    ints.sort(key=_first)  # by the int alone: int comparisons, not tuple ones
    if len(ints) == len(entries):
        return ints
    strs = [(decode_key(n), old, new) for n, (old, new) in items if n[:2] != "i:"]
    strs.sort(key=_first)
    return ints + strs


def _sample_changes(parts: list[Changes], aset: str, entries: dict, values: _RecordValues) -> None:
    """The changed samples of arrayset ``aset`` (entry name -> (old id, new id)) into ``parts``
    (added, deleted, mutated), keyed in ``sort_key`` order.

    The hot loop of a diff, one pass per entry: at 1,200 changed samples the general form (a
    ``_kind`` call, a ``SampleVal.deferred`` call and its attribute sets per entry) took ~1.7 ms,
    most of a 3-way diff read from change records."""
    added, deleted, mutated = (p.samples for p in parts)
    make_key = tuple.__new__
    ordered = _sorted_entries(entries)
    if values.eager:
        sample = values.sample
        for key, old, new in ordered:
            target = added if old is None else deleted if new is None else mutated
            target[make_key(SampleKey, (aset, key))] = sample(new or old)  # type: ignore[arg-type]
        return
    deferred = SampleVal.deferred_maker(values.reader.raw)
    for key, old, new in ordered:
        if old is not None and new is not None:
            mutated[make_key(SampleKey, (aset, key))] = deferred(new)
        elif old is None:
            added[make_key(SampleKey, (aset, key))] = deferred(new)  # type: ignore[arg-type]  # a change has a side
        else:
            deleted[make_key(SampleKey, (aset, key))] = deferred(old)


def changes_from_tree_diff(td: TreeDiff, reader: TreeReader, eager: bool = False) -> DiffOut:
    """User-facing :class:`DiffOut` of a record-level :class:`~hangar.records.treediff.TreeDiff`.

    ``reader`` reads the record values (it must see both trees' objects); ``eager``: read
    sample values now (needed when ``reader`` holds unwritten objects).
    """
    values = _RecordValues(reader, eager)
    parts = [Changes({}, {}, {}) for _ in _KINDS]
    for aset in sorted(td.arraysets):
        ch = td.arraysets[aset]
        if ch.old_schema != ch.new_schema:
            k = _kind(ch.old_schema, ch.new_schema)
            # a schema change has one side at least
            parts[k].schema[aset] = values.schema(ch.new_schema or ch.old_schema)  # type: ignore[arg-type]
        _sample_changes(parts, aset, ch.samples, values)
    for key, old, new in _sorted_entries(td.metadata):
        # new or old is set: a change has one side at least
        parts[_kind(old, new)].metadata[MetadataKey(key)] = values.metadata(new or old)  # type: ignore[arg-type]
    return DiffOut(*parts)


def _child_path(reader: TreeReader, oid: Oid, path: tuple[str, ...]) -> Oid:
    for part in path:
        oid = reader.child(oid, part.encode())
        if oid is None:
            return None
    return oid


def _record_id(reader: TreeReader, root: Oid, kind: str, item: object) -> Oid:
    """Object id of one record (``kind`` as in ``MergeConflicts``) in root tree ``root``."""
    if kind == "metadata":
        name = str(item)
        return _child_path(reader, root, (layout.METADATA, *fan_path(name, layout.METADATA_FANOUT_DEPTH), name))
    # item is a name for schemas, an (arrayset, key) pair otherwise
    aset_tree = _child_path(reader, root, (layout.ARRAYSETS, item if kind == "schema" else item[0]))  # type: ignore[arg-type, index]
    schema = reader.child(aset_tree, layout.SCHEMA.encode())
    if kind == "schema" or schema is None:
        return schema
    name = item[1]  # type: ignore[index]  # an (arrayset, key) pair for samples
    depth = reader.schema(schema).fanout_depth
    return _child_path(reader, aset_tree, (layout.SAMPLES, *fan_path(name, depth), name))


def conflicts_from_merge(mc: Optional[MergeConflicts], reader: Optional[TreeReader] = None,
                         master_root: Oid = None, dev_root: Oid = None, eager: bool = False) -> Conflicts:
    """User-facing :class:`Conflicts` of the records' merge classification (``None``: no conflicts).

    Values are read from ``dev_root`` (from ``master_root`` where dev removed the record).
    """
    if not mc:
        # a NamedTuple built from its fields in order
        return Conflicts(*(Changes({}, {}, {}) for _ in CONFLICT_CLASSES), conflict=False)  # type: ignore[misc, arg-type]
    assert reader is not None
    values = _RecordValues(reader, eager)
    decode = {"schema": values.schema, "samples": values.sample, "metadata": values.metadata}
    parts = []
    for cls in CONFLICT_CLASSES:
        out = Changes({}, {}, {})
        by_kind = mc.by_class[cls]
        for kind in ("schema", "samples", "metadata"):
            items = by_kind[kind]
            if kind == "schema":
                keyed = [(name, name) for name in sorted(items)]
            elif kind == "samples":
                keyed = sorted(((SampleKey(a, decode_key(n)), (a, n)) for a, n in items),
                               key=lambda e: (e[0].aset_name, sort_key(e[0].data_name)))
            else:
                keyed = sorted(((MetadataKey(decode_key(n)), n) for n in items), key=lambda e: sort_key(e[0].meta_name))
            target = getattr(out, kind)
            for key, item in keyed:
                oid = _record_id(reader, dev_root, kind, item) or _record_id(reader, master_root, kind, item)
                target[key] = decode[kind](oid) if oid is not None else None
        parts.append(out)
    # a NamedTuple built from its fields in order
    return Conflicts(*parts, conflict=True)  # type: ignore[misc, arg-type]


def diff_commits(git: GitRepo, master: Optional[str], dev: str, *, master_tree: Optional[str] = None,
                 overlay: Optional[ObjectBatch] = None) -> DiffAndConflicts:
    """Diff between commit ``master`` (``None``: no commit yet) and commit ``dev``, with the
    conflicts a merge of ``dev`` into ``master`` would meet.

    Linear history: the changes from the older commit to the newer one, whichever is
    ``master``. Diverged: the changes from ``master`` to ``dev``. ``master_tree`` (with the
    unwritten objects in ``overlay``) stands for ``master``'s contents when given: a
    writer's staging tree, based on commit ``master``.
    """
    reader = TreeReader(git, overlay)
    eager = overlay is not None
    if master_tree is not None:
        m_tree = _raw_id(master_tree)
    else:
        m_tree = _raw_id(git.commit_tree_id(master)) if master else None
    d_tree = _raw_id(git.commit_tree_id(dev))
    no_conflicts = conflicts_from_merge(None)
    if master and git.is_ancestor(dev, master):  # dev is older (or the same commit)
        td = diff_trees(reader, d_tree, m_tree)
        return DiffAndConflicts(changes_from_tree_diff(td, reader, eager), no_conflicts)
    if not master or git.is_ancestor(master, dev):
        td = diff_trees(reader, m_tree, d_tree)
        return DiffAndConflicts(changes_from_tree_diff(td, reader, eager), no_conflicts)
    b_tree = _raw_id(git.commit_tree_id(base)) if (base := git.merge_base(master, dev)) else None
    mc = three_way(reader, b_tree, m_tree, d_tree, build=False).conflicts
    td = diff_trees_via_base(reader, b_tree, m_tree, d_tree)
    return DiffAndConflicts(changes_from_tree_diff(td, reader, eager),
                            conflicts_from_merge(mc, reader, m_tree, d_tree, eager))


def _resolve_branch(git: GitRepo, dev_branch: object) -> str:
    # a local branch, else a fetched remote one such as 'origin/master'
    head = git.branch_or_remote_head(dev_branch) if isinstance(dev_branch, str) and dev_branch else None
    if head is None:
        raise BranchNotFoundError(f"no branch named {dev_branch!r}; branches: {git.all_branches()}")
    return head


def _resolve_commit(git: GitRepo, dev_commit_hash: object) -> str:
    commit = git.resolve_commit(dev_commit_hash) if isinstance(dev_commit_hash, str) else None
    if commit is None:
        raise CommitNotFoundError(f"no commit {dev_commit_hash!r} in the repository")
    return commit


# ------------------------------------------------------------------- differs
class ReaderUserDiff:
    """Diff methods of a read-only checkout: compare its commit to a branch or commit.

    Between a commit and its descendant the result lists the changes from the older to
    the newer one, from either side. When the histories diverged (a 3-way merge would be
    needed), it lists the changes from this checkout's commit to the other side, and
    ``conflict`` holds the conflicts a merge would meet.
    """

    def __init__(self, core: RepositoryCore, session: CheckoutSession, commit: str) -> None:
        self._core = core
        self._session = session
        self._commit = commit

    def branch(self, dev_branch: str) -> DiffAndConflicts:
        """Diff between this checkout's commit and the head of ``dev_branch``.

        Parameters
        ----------
        dev_branch : str
            A local branch, or a fetched remote one such as ``'origin/master'``.

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
        git = self._core.git
        return diff_commits(git, self._commit, _resolve_branch(git, dev_branch))

    def commit(self, dev_commit_hash: str) -> DiffAndConflicts:
        """Diff between this checkout's commit and commit ``dev_commit_hash`` (full or abbreviated).

        Raises
        ------
        ValueError
            If ``dev_commit_hash`` is not a commit of the repository.
        """
        self._session.check()
        git = self._core.git
        return diff_commits(git, self._commit, _resolve_commit(git, dev_commit_hash))


class WriterUserDiff:
    """Diff methods of the write-enabled checkout, aware of staged changes.

    ``branch()`` and ``commit()`` compare the staging area (its contents, on top of its
    base commit, the branch ``HEAD``) with another branch or commit; ``staged()``
    compares the staging area with its base commit; ``status()`` says whether anything
    is staged. Nothing is written to build these.
    """

    def __init__(self, core: RepositoryCore, session: CheckoutSession, stage: WriterStage) -> None:
        self._core = core
        self._session = session
        self._stage = stage

    def status(self) -> str:
        """``'CLEAN'`` when the staging area equals its base commit, else ``'DIRTY'``."""
        self._session.check()
        return "CLEAN" if self._stage.is_clean() else "DIRTY"

    def _diff_to(self, dev: str) -> DiffAndConflicts:
        tree, batch = self._stage.staged_tree()
        base = self._stage.state.base
        if tree is None:  # nothing ever staged on a fresh branch: the empty tree
            return diff_commits(self._core.git, base, dev)
        return diff_commits(self._core.git, base, dev, master_tree=tree, overlay=batch if len(batch) else None)

    def branch(self, dev_branch: str) -> DiffAndConflicts:
        """Diff between the staging area and the head of ``dev_branch``.

        Raises
        ------
        ValueError
            If ``dev_branch`` does not exist.
        """
        self._session.check()
        return self._diff_to(_resolve_branch(self._core.git, dev_branch))

    def commit(self, dev_commit_hash: str) -> DiffAndConflicts:
        """Diff between the staging area and commit ``dev_commit_hash``.

        Raises
        ------
        ValueError
            If ``dev_commit_hash`` is not a commit of the repository.
        """
        self._session.check()
        return self._diff_to(_resolve_commit(self._core.git, dev_commit_hash))

    def staged(self) -> DiffAndConflicts:
        """Diff from the base commit to the staging area (nothing is written to build it).

        ``conflict`` is always empty.
        """
        self._session.check()
        tree, batch = self._stage.staged_tree()
        base = self._stage.base_tree()
        reader = TreeReader(self._core.git, batch)
        td = diff_trees(reader, _raw_id(base), _raw_id(tree))
        return DiffAndConflicts(changes_from_tree_diff(td, reader, eager=True), conflicts_from_merge(None))
