"""The staging area: edits layered over a snapshot, built into git trees in bulk.

The staging area is durable: ``flush`` writes its tree as a pack and records it in
``staging.json`` (with the branch and base commit), so it survives close and restart.
"""

from __future__ import annotations

import gc
import json
import os
from bisect import bisect_right
from itertools import chain
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union, overload

import numpy as np

from hangar._faults import crash_point
from hangar.errors import SampleIndexError
from hangar.plumbing.durable import TMP_SUFFIX, replace_file_durably, write_open
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import OBJ_BLOB, OBJ_COMMIT, ObjectBatch, PackSpill, StagedPack, blob_block
from hangar.plumbing.paths import STAGING_FILE
from hangar.plumbing.regular import MAX_STATE_BYTES, read_regular
from hangar.plumbing.trees import (
    MODE_BLOB,
    MODE_TREE,
    LeafEdits,
    apply_edits,
    empty_tree_id,
    fan_entries,
    fanout_tree,
    update_fanout_tree,
)
from hangar.records import layout
from hangar.records.keys import fan_path
from hangar.records.pointer import SamplePointer, encode_pointers
from hangar.records.schema import ArraysetSchema
from hangar.records.snapshot import EntryTable, SampleTable, Snapshot

_DIGEST, _DTYPE, _SHAPE = itemgetter(0), itemgetter(1), itemgetter(2)  # of a SamplePointer


class StagingState:
    """Branch, base commit and tree of the staging area (``.hangar/staging.json``)."""

    def __init__(self, branch: str, base: Optional[str], tree: Optional[str]) -> None:
        self.branch = branch
        self.base = base
        self.tree = tree

    @classmethod
    def load(cls, hangar_dir: str) -> Optional["StagingState"]:
        try:
            # a crafted repository's FIFO or link here is refused by name, never waited on or followed
            d = json.loads(read_regular(os.path.join(hangar_dir, STAGING_FILE), hangar_dir, MAX_STATE_BYTES))
        except FileNotFoundError:
            return None
        return cls(d["branch"], d["base"], d["tree"])

    def is_clean(self, git: GitRepo) -> bool:
        """True when the flushed staging tree equals its base commit's tree (nothing staged)."""
        if self.base is None:
            return self.tree in (None, empty_tree_id(ObjectBatch()).hex())
        return self.tree == git.commit_tree_id(self.base)

    def _encoded(self) -> bytes:
        return json.dumps({"branch": self.branch, "base": self.base, "tree": self.tree}).encode()

    def save(self, hangar_dir: str) -> None:
        path = os.path.join(hangar_dir, STAGING_FILE)
        replace_file_durably(path, [self._encoded()], fault="staging.before_replace")

    def write_next(self, hangar_dir: str) -> int:
        """Write this state to a file of its own beside ``staging.json`` and return its open
        descriptor, unsynced: the caller fsyncs it (with the commit's records pack: the same
        journal commit) and closes it; :meth:`publish_next` renames it into place.

        What a commit saves once its branch has moved (base: the new commit, tree: its tree).
        Written before the branch moves, it is never read until renamed."""
        return write_open(_next_path(hangar_dir), [self._encoded()])

    @staticmethod
    def publish_next(hangar_dir: str) -> None:
        """Rename the state of :meth:`write_next` (fsynced by the caller) over ``staging.json``.

        The directory is not fsynced, on purpose: a commit publishes it right after moving its
        branch, and every state the rename may lose to a crash leads to the same staging area.
        The state it replaces is the one saved before the commit (clean: equal to its base; or
        with staged changes, then saved with the new tree as the commit's last step before the
        branch moved, see ``WriterStage.commit_records``) or an earlier commit's (clean, or the one
        an earlier commit saved before its ref when several renames in a row were lost): a writer
        opened after the crash finds such a state clean, or its tree on a commit between its base
        and the branch's head, and bases it on the head (``RepositoryCore.writer_state``), as with
        this state. Saved
        durably, it cost two journal commits in a row (the file's fsync and its directory's)
        after the branch moved; the file's fsync now rides on the records pack's.
        """
        crash_point("staging.before_next")
        os.replace(_next_path(hangar_dir), os.path.join(hangar_dir, STAGING_FILE))

    @staticmethod
    def discard_next(hangar_dir: str) -> None:
        """Remove the state of :meth:`write_next` when the commit failed before :meth:`publish_next`."""
        try:
            os.unlink(_next_path(hangar_dir))
        except FileNotFoundError:
            pass


def _next_path(hangar_dir: str) -> str:
    """The file :meth:`StagingState.write_next` writes (the ``.tmp`` suffix of every temporary file)."""
    return os.path.join(hangar_dir, STAGING_FILE + ".next" + TMP_SUFFIX)


class StagedStack(NamedTuple):
    """Samples of one dtype and shape staged by one stacked add, as columns (no object per sample)."""

    names: list[str]  #: entry names, in add order
    digests: np.ndarray  #: (len(names), 32) uint8
    dtype: str
    shape: tuple[int, ...]

    def pointers(self) -> list[SamplePointer]:
        raw = self.digests.tobytes()
        return SamplePointer.many([raw[i:i + 32] for i in range(0, len(raw), 32)], self.dtype, self.shape)


class StackedPointers(Sequence[SamplePointer]):
    """The pointers of staged stacks, in order, each made when asked for (``StagedColumns.pointers``)."""

    def __init__(self, stacks: list[StagedStack]) -> None:
        self._stacks = stacks
        self._starts = np.cumsum([0, *(len(s.names) for s in stacks)]).tolist()

    def __len__(self) -> int:
        return int(self._starts[-1])

    @overload
    def __getitem__(self, i: int) -> SamplePointer: ...

    @overload
    def __getitem__(self, i: slice) -> list[SamplePointer]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[SamplePointer, list[SamplePointer]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise SampleIndexError(f"staged pointer {i} of {len(self)}: give an index in range(-{len(self)}, "
                                   f"{len(self)})")
        k = bisect_right(self._starts, i) - 1
        s = self._stacks[k]
        return SamplePointer(s.digests[i - self._starts[k]].tobytes(), s.dtype, s.shape)

    def __iter__(self) -> Iterator[SamplePointer]:
        for s in self._stacks:
            yield from s.pointers()


class StagedEntries:
    """Edits (name -> value, ``None`` deletes) over a base table, with a live count.

    Stacked adds (:meth:`add_stack`) are kept as columns, after every edit of the dict, and
    folded into it (as ``set_many`` would) the first time anything reads or changes ``edits``:
    an ingest that goes straight to the commit never makes a Python object per sample.
    """

    def __init__(self, base: EntryTable, tick: list[int]) -> None:
        self.base = base
        self._edits: dict[str, object] = {}
        self._stacks: list[StagedStack] = []  # later than every entry of _edits
        self.delta = 0
        self.tick = tick  # shared edit counter of the staging area (invalidates built trees)

    @property
    def edits(self) -> dict[str, object]:
        """Name -> staged value (``None``: deleted), in edit order (stacked adds folded in)."""
        if self._stacks:
            self._fold_stacks()
        return self._edits

    @edits.setter
    def edits(self, value: dict[str, object]) -> None:
        self._stacks = []
        self._edits = value

    def _fold_stacks(self) -> None:
        stacks, self._stacks = self._stacks, []
        for st in stacks:  # the same state as set_many of each, in order; no tick: nothing changed
            self._set_many(zip(st.names, st.pointers()))

    def has_edits(self) -> bool:
        """True when anything is staged (without folding stacked adds)."""
        return bool(self._stacks or self._edits)

    def add_stack(self, names: list[str], digests: np.ndarray, dtype: str, shape: tuple[int, ...]) -> None:
        """Stage ``names[i]`` -> ``SamplePointer(digests[i], dtype, shape)`` for every ``i``, as columns
        (a later value for the same name wins, as in :meth:`set_many`)."""
        if names:
            self._stacks.append(StagedStack(names, digests, dtype, shape))
            self.tick[0] += 1

    def value(self, name: str) -> object:
        if name in self.edits:
            return self.edits[name]
        return self._base_value(name)

    def _base_value(self, name: str) -> object:
        return self.base.data(name)

    def __contains__(self, name: str) -> bool:
        if name in self.edits:
            return self.edits[name] is not None
        return name in self.base

    def set(self, name: str, value: object) -> None:
        if name not in self:
            self.delta += 1
        self.edits[name] = value
        self.tick[0] += 1

    def set_many(self, items: Iterable[tuple[str, object]]) -> None:
        """``set`` each ``(name, value)`` in order (a later value for the same name wins).

        One ``dict.update``; only names not staged yet are looked up in the base (none when
        the base is empty, as for a new arrayset): ~0.5 µs per name less than ``set`` each.
        """
        self._set_many(items)
        self.tick[0] += 1

    def _set_many(self, items: Iterable[tuple[str, object]]) -> None:
        new = dict(items)
        if not new:
            return
        edits = self.edits
        known = new.keys() & edits.keys() if edits else ()
        added = len(new) - len(known) + sum(1 for n in known if edits[n] is None)
        if self.base.root is not None:
            added -= sum(1 for n in new if n not in edits and n in self.base)
        self.delta += added
        edits.update(new)

    def remove(self, name: str) -> bool:
        if name not in self:
            return False
        self.edits[name] = None
        self.delta -= 1
        self.tick[0] += 1
        return True

    def count(self) -> int:
        if self._stacks:
            self._fold_stacks()  # the delta counts them
        return self.base.count() + self.delta

    def names(self) -> Iterator[str]:
        edits = self.edits
        for n in self.base.names():
            if n not in edits:
                yield n
        for n, v in list(edits.items()):
            if v is not None:
                yield n

    def nested_edits(self, depth: int, encode: Callable[[Any], bytes], batch: ObjectBatch) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.edits.items():
            d = out
            for f in fan_path(name, depth):
                d = d.setdefault(f, {})
            d[name] = None if value is None else (MODE_BLOB, batch.add(OBJ_BLOB, encode(value)))
        return out


class StagedColumns(NamedTuple):
    """The staged edits of one arrayset as columns: what a commit reads of the staged state.

    The commit's tree build (:meth:`StagedSamples.sample_edits`) and its location tables
    (:mod:`hangar.commit_tables`) both read these, so the pointers are gathered once (at
    1,000,000 samples the digest join alone is ~0.1 s).
    """

    names: list[str]  #: every staged entry name, in edit order (deletions included)
    pointers: Sequence[SamplePointer]  #: the staged pointers, deletions left out, in edit order
    live: Optional[np.ndarray]  #: bool per name: not a deletion; None when nothing is deleted
    digests: np.ndarray  #: (len(pointers), 32) uint8, the pointers' digests
    dtypes: set[str]  #: the pointers' dtypes
    shapes: set[tuple[int, ...]]  #: the pointers' shapes


class StagedSamples(StagedEntries):
    """Staged samples of one arrayset; values are ``SamplePointer``."""

    base: SampleTable

    def __init__(self, schema: ArraysetSchema, base: SampleTable, replaced: bool, tick: list[int]) -> None:
        super().__init__(base, tick)
        self.schema = schema
        self.replaced = replaced
        self._columns: Optional[tuple[int, StagedColumns]] = None  # (tick, columns)

    def _base_value(self, name: str) -> Optional[SamplePointer]:
        return self.base.pointer(name)

    def pointer(self, name: str) -> Optional[SamplePointer]:
        return self.value(name)  # type: ignore[return-value]  # the edits of a StagedSamples are SamplePointers

    def columns(self) -> StagedColumns:
        """The staged edits as :class:`StagedColumns` (kept until the next edit)."""
        cached = self._columns
        if cached is not None and cached[0] == self.tick[0]:
            return cached[1]
        cols = self._stacked_columns()
        if cols is not None:
            self._columns = (self.tick[0], cols)
            return cols
        names = list(self.edits)
        values: list[Any] = list(self.edits.values())  # SamplePointers and Nones
        live = np.array([v is not None for v in values]) if None in values else None
        pointers = values if live is None else [v for v in values if v is not None]
        digests = np.frombuffer(b"".join(map(_DIGEST, pointers)), dtype=np.uint8).reshape(-1, 32)
        cols = StagedColumns(names, pointers, live, digests, set(map(_DTYPE, pointers)),
                             set(map(_SHAPE, pointers)))
        self._columns = (self.tick[0], cols)
        return cols

    def _stacked_columns(self) -> Optional[StagedColumns]:
        """The columns straight from the stacked adds when they are all that is staged and every
        name is staged once (no fold: 60,000 samples in ~5 ms); else None."""
        stacks = self._stacks
        if not stacks or self._edits:
            return None
        names = stacks[0].names if len(stacks) == 1 else list(chain.from_iterable(s.names for s in stacks))
        if len(set(names)) != len(names):
            return None
        digests = stacks[0].digests if len(stacks) == 1 else np.concatenate([s.digests for s in stacks])
        return StagedColumns(names, StackedPointers(list(stacks)), None, digests, {s.dtype for s in stacks},
                             {s.shape for s in stacks})

    def sample_edits(self, batch: ObjectBatch) -> dict[str, Any] | LeafEdits | tuple[int, bytes] | None:
        """The edits of the samples tree, its pointer blobs added to ``batch`` in bulk.

        Pointers are built, hashed and packed per (dtype, shape) group with array operations
        (:func:`encode_pointers`, :func:`blob_block`), and the leaf trees get their entries in
        git order from one sort (:func:`fan_entries`): a commit of 60,000 new samples took
        0.25 s of CPU instead of 0.58 s (W1, same loaded 2-core box and run). Without a base tree
        (a new arrayset) the whole samples tree is built here, a level per call
        (:func:`fanout_tree`), and returned as ``(MODE_TREE, raw id)`` (``None``: no samples left).
        """
        depth = self.schema.fanout_depth
        if not self.has_edits():
            return {}
        cols = self.columns()
        names = cols.names
        pointers, live = cols.pointers, cols.live
        oids = np.zeros((len(names), 20), dtype=np.uint8)
        if len(cols.dtypes) <= 1 and len(cols.shapes) <= 1:
            groups: dict[tuple[str, tuple[int, ...]], Optional[np.ndarray]] = (
                {(pointers[0].dtype, pointers[0].shape): None} if pointers else {})
        else:  # several shapes (a variable-shape arrayset) or dtypes
            by_kind: dict[tuple[str, tuple[int, ...]], list[int]] = {}
            for i, p in enumerate(pointers):
                by_kind.setdefault((p.dtype, p.shape), []).append(i)
            groups = {kind: np.array(rows) for kind, rows in by_kind.items()}
        where_live = np.flatnonzero(live) if live is not None else None
        for (dtype, shape), rows in groups.items():
            digests = cols.digests if rows is None else cols.digests[rows]
            block = blob_block(encode_pointers(digests, dtype, shape))
            batch.add_block(block)
            target = rows if where_live is None else where_live if rows is None else where_live[rows]
            if target is None:
                oids = block.oids
            else:
                oids[target] = block.oids
        # each name's leaf (its fan_path digits as one number, the top level's digit highest) and
        # the entries in tree order: one sort by (leaf, name) puts each parent's children together
        order, fan, entries, starts = fan_entries(names, oids, depth, live)
        bounds = [0, *(np.flatnonzero(np.diff(fan)) + 1).tolist(), len(names)]
        if live is None:
            set_at = bounds
            dead: dict[int, list[bytes]] = {}
        else:  # deletions: out of the entries, listed per leaf
            keep = live[order]
            set_before = np.concatenate([[0], np.cumsum(keep)])
            set_at = set_before[bounds].tolist()
            gone = order[~keep]
            leaf_of = np.searchsorted(bounds, np.flatnonzero(~keep), side="right") - 1
            dead = {}
            for leaf, k in zip(leaf_of.tolist(), gone.tolist()):
                dead.setdefault(leaf, []).append(names[k].encode())
        digits = self._leaf_digits(fan[np.array(bounds[:-1], dtype=np.int64)], depth)
        if self.replaced or self.base.root is None:  # no base tree: every level built in bulk
            at = np.array(set_at, dtype=np.int64)
            full = np.flatnonzero(np.diff(at) > 0)  # leaves left empty by deletions are no trees
            root = fanout_tree(entries, starts, np.append(at[full], at[-1]), digits[full], batch)
            return None if root is None else (MODE_TREE, root)
        offsets = starts.tolist()
        raw = entries.tobytes()  # slicing bytes costs less than a numpy slice + tobytes per leaf
        leaves = [LeafEdits(raw[offsets[set_at[k]]:offsets[set_at[k + 1]]], dead.get(k, []))
                  for k in range(len(bounds) - 1)]
        if depth == 0:
            return leaves[0]
        # an update: the touched leaves merged and every level above rebuilt a level per call
        done, root = update_fanout_tree(self.base.git.repo, self.base.root, leaves, digits, batch)
        if done:
            return None if root is None else (MODE_TREE, root)
        out: dict[str, Any] = {}  # a samples tree not of the fan-out form: edited tree by tree
        hexd = "0123456789abcdef"
        for leaf, path in zip(leaves, digits.tolist()):
            d = out
            for digit in path[:-1]:
                d = d.setdefault(hexd[digit], {})
            d[hexd[path[-1]]] = leaf
        return out

    @staticmethod
    def _leaf_digits(fan: np.ndarray, depth: int) -> np.ndarray:
        """(leaves, depth) uint8 fan-out digits (top level first) of leaf keys built as in :meth:`sample_edits`."""
        shifts = np.uint64(4) * np.arange(depth - 1, -1, -1, dtype=np.uint64)
        digits: np.ndarray = ((fan[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.uint8)
        return digits

    def pointers(self) -> Iterator[tuple[str, SamplePointer]]:
        edits = self.edits
        for n, p in self.base.pointers():
            if n not in edits:
                yield n, p
        for n, v in list(edits.items()):
            if v is not None:
                yield n, v  # type: ignore[misc]  # the edits of a StagedSamples are SamplePointers


class StagingArea:
    """All staged changes of a writer over the last flushed staging tree."""

    def __init__(self, git: GitRepo, tree_id: Optional[str]) -> None:
        self.git = git
        self._tick = [0]
        self._rebase(tree_id)

    def _rebase(self, tree_id: Optional[str]) -> None:
        self.snapshot = Snapshot(self.git, tree_id)
        self.asets: dict[str, StagedSamples] = {}
        self.removed: set[str] = set()
        self.metadata = StagedEntries(self.snapshot.metadata, self._tick)
        self._built: Optional[tuple[int, str, ObjectBatch]] = None
        self._tick[0] += 1

    # ------------------------------------------------------------- arraysets
    def arrayset_names(self) -> list[str]:
        names = (set(self.snapshot.arrayset_names()) - self.removed) | set(self.asets)
        return sorted(names)

    def arrayset(self, name: str) -> Optional[StagedSamples]:
        st = self.asets.get(name)
        if st is None and name not in self.removed:
            schema = self.snapshot.schema(name)
            if schema is None:
                return None
            st = self.asets[name] = StagedSamples(schema, self.snapshot.samples(name), False, self._tick)
        return st

    def init_arrayset(self, schema: ArraysetSchema) -> StagedSamples:
        empty = SampleTable(self.git, None, schema.fanout_depth)
        self.removed.discard(schema.name)
        st = self.asets[schema.name] = StagedSamples(schema, empty, True, self._tick)
        self._tick[0] += 1
        return st

    def remove_arrayset(self, name: str) -> None:
        self.asets.pop(name, None)
        if self.snapshot.schema(name) is not None:
            self.removed.add(name)
        self._tick[0] += 1

    # ----------------------------------------------------------------- build
    def build(self, spill: bool = False) -> tuple[str, ObjectBatch]:
        """Tree id of the staged state, and the batch of new objects it needs (cached).

        ``spill``: a build not cached yet writes the batch's blocks to the records pack's file as
        they are built (:class:`~hangar.plumbing.pack.PackSpill`; what a commit asks for, which
        then stages that pack: :meth:`stage_commit`, or :meth:`drop_spill` when it stops)."""
        if self._built is not None and self._built[0] == self._tick[0]:
            return self._built[1], self._built[2]
        # building allocates a few objects per leaf tree and none in cycles, but the cyclic
        # collector's full passes over a heap of staged pointers (one tuple per sample) cost
        # ~14% of the CPU time of a 200,000-sample commit: paused, the previous state restored
        was_enabled = gc.isenabled()
        gc.disable()
        batch: Optional[ObjectBatch] = None
        try:
            batch = ObjectBatch(PackSpill(self.git.pack_dir) if spill else None)
            tree = self._build(batch)
        except BaseException:
            if batch is not None:
                batch.drop_spill()
            raise
        finally:
            if was_enabled:
                gc.enable()
        self._built = (self._tick[0], tree, batch)
        return tree, batch

    def drop_spill(self) -> None:
        """Remove the records pack file a ``build(spill=True)`` started, when no commit stages it."""
        if self._built is not None:
            self._built[2].drop_spill()

    def _build(self, batch: ObjectBatch) -> str:
        aset_edits: dict[str, Any] = {name: None for name in self.removed}
        for name, st in self.asets.items():
            if not st.replaced and not st.has_edits():
                continue
            sub = {
                layout.SCHEMA: (MODE_BLOB, batch.add(OBJ_BLOB, st.schema.to_json())),
                layout.SAMPLES: st.sample_edits(batch),
            }
            base = None if st.replaced else self.snapshot.aset_tree(name)
            aset_edits[name] = (MODE_TREE, apply_edits(self.git.repo, base, sub, batch))
        root_edits: dict[str, Any] = {}
        if aset_edits:
            root_edits[layout.ARRAYSETS] = aset_edits
        if self.metadata.edits:
            root_edits[layout.METADATA] = self.metadata.nested_edits(
                layout.METADATA_FANOUT_DEPTH, lambda v: v.encode("ascii"), batch)
        if not root_edits and self.snapshot.tree_id is not None:
            return self.snapshot.tree_id
        root = apply_edits(self.git.repo, self.snapshot.root, root_edits, batch)
        if root is None:
            root = empty_tree_id(batch)
        return root.hex()

    def has_edits(self) -> bool:
        return bool(self.removed or self.metadata.has_edits() or any(
            st.replaced or st.has_edits() for st in self.asets.values()))

    def flush(self) -> str:
        """Write the staged trees to git; return the staging tree id."""
        tree, batch = self.build()
        self.git.write_batch(batch)
        self._rebase_keep_objects(tree)
        return tree

    def stage_commit(self, commit_data: Callable[[str], bytes],
                     sync_with: Optional[Callable[[str, str], Sequence[int]]] = None
                     ) -> tuple[str, str, Optional[StagedPack]]:
        """:meth:`flush` with a commit object (``commit_data(tree id)``, its bytes; ``GitRepo.commit_data``)
        in the same pack, up to that pack's durable temporary files: returns the tree and commit
        ids and the staged pack; :meth:`finish_commit` publishes it. Nothing is visible (nor the
        staging area changed) before that. One pack for trees and commit: a loose commit object
        cost 2 of a 1%-update commit's ~16 fsyncs. ``sync_with(tree id, commit id)``: descriptors
        of files the caller wrote, fsynced together with the pack (``GitRepo.stage_batch``)."""
        tree, batch = self.build()
        commit = batch.add(OBJ_COMMIT, commit_data(tree)).hex()
        staged = self.git.stage_batch(batch, sync_with(tree, commit) if sync_with is not None else ())
        self._built = None  # the batch was handed over (and cleared)
        return tree, commit, staged

    def finish_commit(self, tree: str, staged: Optional[StagedPack]) -> None:
        """Publish the pack of :meth:`stage_commit` and base the staging area on ``tree``."""
        self.git.publish(staged)
        self._rebase_keep_objects(tree)

    def rebase(self, tree: str) -> None:
        """Base the (clean) staging area on ``tree``, keeping its arraysets' accessor objects valid."""
        self._rebase_keep_objects(tree)

    def _rebase_keep_objects(self, tree: str) -> None:
        old = self.asets
        self._rebase(tree)
        # keep accessor objects valid: re-point them at the flushed tree
        for name, st in old.items():
            st.base = self.snapshot.samples(name)
            st.edits = {}
            st.delta = 0
            st.replaced = False
            st._columns = None  # the committed edits' columns (tens of MB at a million samples)
            self.asets[name] = st
