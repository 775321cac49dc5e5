"""Record-level diff and 3-way merge classification over hangar's commit tree layout.

Both walks descend only where subtree ids differ: every unchanged subtree (an
unchanged arrayset, an unchanged fan-out directory) is skipped by comparing 20-byte
ids, so cost grows with what changed, not with the repository. At 1,000,000
samples this is far faster than libgit2's ``diff_to_tree`` / ``merge_trees``, which
open unchanged subtrees (see ARCHITECTURE.md, "Diff/merge").

Tree objects are parsed from their raw bytes (one regex pass per tree), which is
cheaper than building one Python object per entry. An optional ``ObjectBatch``
overlay makes trees that were built but not yet written (the writer's staging
area) readable too.

Results speak in tree-entry names (``i:3``, ``s:cat``) and raw object ids; the
porcelain decodes keys for users.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional

import numpy as np

from hangar.errors import InvalidRecordError
from hangar.plumbing import rowhash
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import OBJ_COMMIT, OBJ_TREE, ObjectBatch, ObjectBlock, object_id
from hangar.plumbing.trees import MODE_TREE, apply_edits, empty_tree_id
from hangar.records import changes, layout
from hangar.records.schema import ArraysetSchema

Oid = Optional[bytes]
#: entry name -> (old id, new id); ``None`` where the entry is absent
EntryChanges = dict[str, tuple[Oid, Oid]]
#: one tree entry's (mode, raw id), the mode as git writes it (``b"100644"``)
Entry = tuple[bytes, bytes]

_ENTRY = re.compile(rb"[0-7]+ ([^\x00]+)\x00(.{20})", re.S)
_MODED = re.compile(rb"([0-7]+) ([^\x00]+)\x00(.{20})", re.S)
#: bytes of one fan-out directory entry: b"40000 " + one hex digit + NUL + 20-byte id
_FAN_ENTRY = 28
_ZERO = bytes(20)
_ARRAYSETS = layout.ARRAYSETS.encode()
_METADATA = layout.METADATA.encode()
_SCHEMA = layout.SCHEMA.encode()
_SAMPLES = layout.SAMPLES.encode()
_EMPTY_TREE = object_id(OBJ_TREE, b"")

#: conflict classes, as in Hangar: t1 added on both sides with different values,
#: t21 removed in master and mutated in dev, t22 mutated in master and removed in dev,
#: t3 mutated on both sides to different values
CONFLICT_CLASSES = ("t1", "t21", "t22", "t3")
STRATEGIES = ("ours", "theirs")


_FAN_DIR = re.compile(rb"(?:40000 .\x00.{20})+", re.S)


def check_leaf(raw: bytes, oid: bytes) -> None:
    """Refuse a table leaf (tree ``oid``, bytes ``raw``) holding an entry that is not a blob of mode
    100644: a directory, link (120000), gitlink (160000) or executable where a record belongs was
    written with plain git, not by hangar. The C walks hand such trees to the Python path, which
    calls this, so both refuse them alike.

    Raises
    ------
    InvalidRecordError
        Naming the tree, the entry and its mode.
    """
    for mode, name, _ in _MODED.findall(raw):
        if mode != b"100644":
            raise InvalidRecordError(
                f"tree {oid.hex()} holds the entry {name.decode(errors='replace')!r} of mode {mode.decode()}, where "
                "only records (blobs of mode 100644) belong: it was written with plain git, not by hangar; "
                "`hangar fsck` lists such entries")


def _is_fan_dir(raw: bytes) -> bool:
    """True when every entry of tree ``raw`` is ``40000 <one byte>\\0<id>`` (one regex match in C:
    ~1.6 µs for 16 entries where seven strided slices and a generator took ~2.6 µs)."""
    return _FAN_DIR.fullmatch(raw) is not None


class _RawObjects:
    """Bytes of git objects by id, kept across readers up to a budget (dropped whole beyond it).

    Ids name content, so an entry is valid in any repository and never stale. Diffs and merges
    read their trees raw (C merge-joins over the bytes); libgit2 keeps the parsed trees of its
    own tree diff in its object cache, and without a cache of our own a repeated 3-way walk at
    1,000,000 samples (9 KB leaves) took 105 ms against libgit2's 63 ms, where with cold caches
    on both sides it takes 100 ms against 144 ms."""

    BUDGET = 64 << 20

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._size = 0

    def get(self, oid: bytes) -> Optional[bytes]:
        return self._data.get(oid)

    def mapping(self) -> dict[bytes, bytes]:
        """The kept bytes by id (the C walks look ids up here before calling back into Python)."""
        return self._data

    def keep(self, oid: bytes, data: bytes) -> None:
        self._size += len(data) + 100  # ~ the dict entry and the two bytes objects' headers
        if self._size > self.BUDGET:
            self._data.clear()
            self._size = len(data) + 100
        self._data[oid] = data


_RAW = _RawObjects()
#: parsed schemas by blob id, kept across readers (ids name content; a schema is frozen):
#: parsing and validating one cost ~0.1-0.3 ms, a tenth of a 600 + 600 merge at 60,000 samples
_SCHEMAS: dict[bytes, ArraysetSchema] = {}
_MAX_SCHEMAS = 4096


class TreeReader:
    """Raw tree and blob reads by raw id, with an optional overlay of unwritten objects."""

    def __init__(self, git: GitRepo, overlay: Optional[ObjectBatch] = None) -> None:
        self.git = git
        self._overlay = overlay
        self._tables: dict[tuple[Oid, Oid, int], EntryChanges] = {}
        self._pairs: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._fans: dict[bytes, Optional[bytes]] = {}
        #: (base root, side root) pairs whose table changes are remembered (see ``prime_sides``)
        self.primed: set[tuple[bytes, bytes]] = set()

    def table_changes(self, a: Oid, b: Oid, depth: int) -> EntryChanges:
        """:func:`fan_changes` of two tables, remembered (a diff and a 3-way share them)."""
        key = (a, b, depth)
        out = self._tables.get(key)
        if out is None:
            out = self._tables[key] = fan_changes(self, a, b, depth)
        return out

    def load_record(self, a_root: bytes, b_root: bytes) -> bool:
        """Remember the table changes of the kept change record from ``a_root`` to ``b_root``
        (:mod:`hangar.records.changes`); False when there is none."""
        if not (self.stored(a_root) and self.stored(b_root)):
            return False
        tables = changes.load_record(self.git.git_dir, a_root, b_root)
        if tables is None:
            return False
        for key, entries in tables.items():
            self._tables.setdefault(key, entries)
        return True

    def save_record(self, a_root: bytes, b_root: bytes, keys: list[tuple[Oid, Oid, int]]) -> None:
        """Keep the remembered changes of tables ``keys`` as the change record from ``a_root`` to
        ``b_root`` (only for trees written to git: the staging area's change with every edit)."""
        if self.stored(a_root) and self.stored(b_root):
            changes.save_record(self.git.git_dir, a_root, b_root, {k: self._tables[k] for k in keys})

    def raw(self, oid: bytes) -> bytes:
        obj = self._overlay.get(oid) if self._overlay is not None else None
        if obj is not None:
            return obj[1]
        if oid == _EMPTY_TREE:
            return b""
        data = _RAW.get(oid)
        if data is None:  # remembered: a 3-way diff reads the base trees for both sides
            data = self.git.read_raw(oid)
            _RAW.keep(oid, data)
        return data

    def stored(self, oid: bytes) -> bool:
        """False for objects only in the overlay (not written to git)."""
        return self._overlay is None or self._overlay.get(oid) is None

    def leaf_changes(self, a: bytes, b: bytes, out: EntryChanges) -> None:
        """Entries that differ between two stored leaf trees, by a C merge-join over the sorted
        entries (only the changed entries reach Python): the extension's ``leaf_diff`` over the
        raw bytes, else libgit2's tree diff. At 244 entries a leaf (1,000,000 samples) parsing
        both in Python cost ~10x more."""
        if rowhash.available:
            got = rowhash.leaf_diff(self.raw(a), self.raw(b))
            if got is not None:
                for name, was, now in got:
                    out[name.decode()] = (None if was is None else was[1], None if now is None else now[1])
                return
        git = self.git
        ta, tb = git.tree(a), git.tree(b)
        assert ta is not None and tb is not None  # both ids name stored trees
        for delta in ta.diff_to_tree(tb).deltas:
            old, new = delta.old_file, delta.new_file
            o, n = old.id.raw, new.id.raw
            out[new.path or old.path] = (None if o == _ZERO else o, None if n == _ZERO else n)

    def fan(self, oid: Oid) -> Optional[bytes]:
        """Raw bytes of tree ``oid`` when it is a fan-out directory (entries of fixed size
        ``40000 <one byte>\\0<id>``), else ``None``; remembered per id."""
        if oid is None:
            return None
        try:
            return self._fans[oid]
        except KeyError:
            raw = self.raw(oid)
            got = self._fans[oid] = raw if _is_fan_dir(raw) else None
            return got

    def leaf_delta(self, a: bytes, b: bytes) -> Optional[dict[bytes, tuple[Optional[Entry], Optional[Entry]]]]:
        """``{name: (old (mode, id), new (mode, id))}`` of the entries that differ between two
        stored leaf trees (``None`` on a side where the entry is absent), by a C merge-join
        (the extension's ``leaf_diff``, else libgit2's tree diff): the entries reach Python only
        where they changed. ``None`` when either tree holds a subtree (not a leaf: the caller
        takes the general path)."""
        if rowhash.available:
            got = rowhash.leaf_diff(self.raw(a), self.raw(b))
            return None if got is None else {name: (old, new) for name, old, new in got}
        check_leaf(self.raw(a), a)  # as the C leaf_diff: a leaf of anything but 100644 blobs is refused
        check_leaf(self.raw(b), b)
        git = self.git
        out: dict[bytes, tuple[Optional[Entry], Optional[Entry]]] = {}
        ta, tb = git.tree(a), git.tree(b)
        assert ta is not None and tb is not None  # both ids name stored trees
        for delta in ta.diff_to_tree(tb).deltas:
            old, new = delta.old_file, delta.new_file
            name = new.raw_path or old.raw_path
            if b"/" in name:
                return None
            o, n = old.id.raw, new.id.raw
            out[name] = (None if o == _ZERO else (b"%o" % old.mode, o), None if n == _ZERO else (b"%o" % new.mode, n))
        return out

    def pairs(self, oid: Oid) -> list[tuple[bytes, bytes]]:
        """``(name, raw id)`` of every entry of tree ``oid`` (empty for ``None``)."""
        if oid is None:
            return []
        got = self._pairs.get(oid)
        if got is None:  # remembered: a 3-way diff compares the base trees with both sides
            got = self._pairs[oid] = self._parse(self.raw(oid))
        return got

    @staticmethod
    def _parse(raw: bytes) -> list[tuple[bytes, bytes]]:
        if _is_fan_dir(raw):
            # entries "40000 <one hex digit>\0<id>" of fixed size, sliced without a regex
            # (3x faster, and a merge reads hundreds of fan-out directories)
            return [(raw[i + 6:i + 7], raw[i + 8:i + _FAN_ENTRY]) for i in range(0, len(raw), _FAN_ENTRY)]
        return _ENTRY.findall(raw)

    def entries(self, oid: Oid) -> dict[bytes, bytes]:
        return dict(self.pairs(oid))

    def moded(self, oid: Oid) -> dict[bytes, tuple[bytes, bytes]]:
        """``{name: (mode, raw id)}`` of tree ``oid`` (empty for ``None``)."""
        if oid is None:
            return {}
        raw = self.raw(oid)
        if _is_fan_dir(raw):
            return {name: (b"40000", i) for name, i in self.pairs(oid)}
        return {name: (mode, i) for mode, name, i in _MODED.findall(raw)}

    def child(self, oid: Oid, name: bytes) -> Oid:
        if oid is None:
            return None
        return self.entries(oid).get(name)

    def schema(self, oid: bytes) -> ArraysetSchema:
        s = _SCHEMAS.get(oid)
        if s is None:
            s = ArraysetSchema.from_json(self.raw(oid))
            if len(_SCHEMAS) >= _MAX_SCHEMAS:
                _SCHEMAS.clear()
            _SCHEMAS[oid] = s
        return s


def fan_changes(reader: TreeReader, a: Oid, b: Oid, depth: int, out: Optional[EntryChanges] = None) -> EntryChanges:
    """Entries that differ between two fanned-out tables ``depth`` levels deep.

    Only directories whose ids differ are opened; within one tree, entries are compared
    as ``(name, id)`` sets, so equal entries cost one hash each.
    """
    if out is None:
        out = {}
    if a == b:
        return out
    if rowhash.available:  # the whole walk in one C call
        got = rowhash.diff2(reader.raw, a, b, depth, _RAW.mapping())
        if got is not None:
            for name, was, now in got:
                out[name.decode()] = (was, now)
            return out
    if depth == 0:  # the C walk hands a leaf holding anything but 100644 blobs to this path
        for x in (a, b):
            if x is not None:
                check_leaf(reader.raw(x), x)
    if a is not None and b is not None:
        if depth == 0:
            if reader.stored(a) and reader.stored(b):
                reader.leaf_changes(a, b, out)
                return out
        else:
            fa, fb = reader.fan(a), reader.fan(b)
            if fa is not None and fb is not None and len(fa) == len(fb) and fa[6::_FAN_ENTRY] == fb[6::_FAN_ENTRY]:
                # the same fan-out digits on both sides (the usual case): compare ids in place,
                # without building (name, id) pairs and sets (~2x cheaper per directory)
                for i in range(8, len(fa), _FAN_ENTRY):
                    x, y = fa[i:i + 20], fb[i:i + 20]
                    if x != y:
                        fan_changes(reader, x, y, depth - 1, out)
                return out
    sa, sb = set(reader.pairs(a)), set(reader.pairs(b))
    da, db = dict(sa - sb), dict(sb - sa)
    if depth == 0:
        for n in da.keys() | db.keys():
            out[n.decode()] = (da.get(n), db.get(n))
    else:
        for n in da.keys() | db.keys():
            fan_changes(reader, da.get(n), db.get(n), depth - 1, out)
    return out


def _table_changes(reader: TreeReader, a: Oid, a_depth: int, b: Oid, b_depth: int) -> EntryChanges:
    if a_depth == b_depth or a is None or b is None:
        depth = b_depth if a is None else a_depth
        return fan_changes(reader, a, b, depth)
    # fan-out depth changed with the schema: compare flat listings
    old = fan_changes(reader, a, None, a_depth)
    new = fan_changes(reader, None, b, b_depth)
    out: EntryChanges = {}
    for n in old.keys() | new.keys():
        o, w = old.get(n, (None, None))[0], new.get(n, (None, None))[1]
        if o != w:
            out[n] = (o, w)
    return out


class ArraysetIds(NamedTuple):
    """Ids of one arrayset's tree, schema blob and samples tree (``None`` when absent)."""

    tree: Oid
    schema: Oid
    samples: Oid


_NO_ASET = ArraysetIds(None, None, None)


def _arrayset_ids(reader: TreeReader, tree: Oid) -> ArraysetIds:
    if tree is None:
        return _NO_ASET
    e = reader.entries(tree)
    return ArraysetIds(tree, e.get(_SCHEMA), e.get(_SAMPLES))


class RootIds(NamedTuple):
    arraysets: dict[str, bytes]
    metadata: Oid


def _root_ids(reader: TreeReader, root: Oid) -> RootIds:
    e = reader.entries(root)
    asets = {n.decode(): oid for n, oid in reader.pairs(e.get(_ARRAYSETS))}
    return RootIds(asets, e.get(_METADATA))


def _depth(reader: TreeReader, ids: ArraysetIds) -> int:
    return reader.schema(ids.schema).fanout_depth if ids.schema is not None else 0


# --------------------------------------------------------------- two-tree diff
class ArraysetChange(NamedTuple):
    """How one arrayset differs between two trees."""

    old_schema: Oid
    new_schema: Oid
    samples: EntryChanges


class TreeDiff(NamedTuple):
    """Changes from tree ``a`` to tree ``b``, by arrayset (name -> change) and metadata entry."""

    arraysets: dict[str, ArraysetChange]
    metadata: EntryChanges


def diff_trees(reader: TreeReader, a_root: Oid, b_root: Oid) -> TreeDiff:
    """Record changes from root tree ``a_root`` to ``b_root`` (raw ids, ``None`` = empty).

    Between two trees written to git the changes of each table are taken from the kept change
    record of the two roots when there is one (:mod:`hangar.records.changes`: only for the very
    table ids it was computed from); else the trees are walked and the record is kept.
    """
    if a_root == b_root:
        return TreeDiff({}, {})
    keep = a_root is not None and b_root is not None and not reader.load_record(a_root, b_root)
    keys: list[tuple[Oid, Oid, int]] = []
    ra, rb = _root_ids(reader, a_root), _root_ids(reader, b_root)
    asets: dict[str, ArraysetChange] = {}
    for name in ra.arraysets.keys() | rb.arraysets.keys():
        ta, tb = ra.arraysets.get(name), rb.arraysets.get(name)
        if ta == tb:
            continue
        ia, ib = _arrayset_ids(reader, ta), _arrayset_ids(reader, tb)
        da, db = _depth(reader, ia), _depth(reader, ib)
        if da == db or ia.samples is None or ib.samples is None:
            keys.append((ia.samples, ib.samples, db if ia.samples is None else da))
            samples = reader.table_changes(*keys[-1])
        else:  # fan-out depth changed with the schema (rare): compared flat, not kept
            samples = _table_changes(reader, ia.samples, da, ib.samples, db)
        asets[name] = ArraysetChange(ia.schema, ib.schema, samples)
    keys.append((ra.metadata, rb.metadata, layout.METADATA_FANOUT_DEPTH))
    meta = reader.table_changes(*keys[-1])
    if keep:
        assert a_root is not None and b_root is not None  # keep says so
        reader.save_record(a_root, b_root, keys)
    return TreeDiff(asets, meta)


def _via_base(reader: TreeReader, a: Oid, m: Oid, d: Oid, depth: int) -> EntryChanges:
    """Changes from table ``m`` to table ``d``, from the changes of each since base ``a``."""
    ours = reader.table_changes(a, m, depth)
    theirs = reader.table_changes(a, d, depth)
    out: EntryChanges = {}
    for n in ours.keys() | theirs.keys():
        o, t = ours.get(n), theirs.get(n)
        base = o[0] if o is not None else t[0]  # type: ignore[index]  # one side is set: a change has a side at least
        mine = o[1] if o is not None else base
        new = t[1] if t is not None else base
        if mine != new:
            out[n] = (mine, new)
    return out


def prime_sides(reader: TreeReader, base_root: Oid, a_root: Oid, b_root: Oid) -> None:
    """Have ``reader`` remember the table changes of each side since the base (from the kept
    change records where there are any), once per reader: the 3-way diff and the conflict check
    then look them up."""
    if base_root is None:
        return
    for side in (a_root, b_root):
        if side is not None and (base_root, side) not in reader.primed:
            reader.primed.add((base_root, side))
            diff_trees(reader, base_root, side)


def diff_trees_via_base(reader: TreeReader, base_root: Oid, a_root: Oid, b_root: Oid) -> TreeDiff:
    """Same result as ``diff_trees(reader, a_root, b_root)``, computed from the changes of
    each side since their merge base, which a 3-way merge classification needs anyway
    (with ``reader.table_changes`` remembering them, diff plus conflicts cost two walks)."""
    if a_root == b_root:
        return TreeDiff({}, {})
    prime_sides(reader, base_root, a_root, b_root)
    r0, ra, rb = _root_ids(reader, base_root), _root_ids(reader, a_root), _root_ids(reader, b_root)
    asets: dict[str, ArraysetChange] = {}
    for name in ra.arraysets.keys() | rb.arraysets.keys():
        t0, ta, tb = r0.arraysets.get(name), ra.arraysets.get(name), rb.arraysets.get(name)
        if ta == tb:
            continue
        i0, ia, ib = _arrayset_ids(reader, t0), _arrayset_ids(reader, ta), _arrayset_ids(reader, tb)
        depths = {_depth(reader, i) for i in (i0, ia, ib) if i.tree is not None}
        if len(depths) == 1:
            samples = _via_base(reader, i0.samples, ia.samples, ib.samples, depths.pop())
        else:
            samples = _table_changes(reader, ia.samples, _depth(reader, ia), ib.samples, _depth(reader, ib))
        asets[name] = ArraysetChange(ia.schema, ib.schema, samples)
    meta = _via_base(reader, r0.metadata, ra.metadata, rb.metadata, layout.METADATA_FANOUT_DEPTH)
    return TreeDiff(asets, meta)


# ------------------------------------------------------------- 3-way merge
class MergeConflicts:
    """Conflicts found by :func:`three_way`, by class and kind of record."""

    def __init__(self) -> None:
        self.by_class: dict[str, dict[str, list[Any]]] = {
            c: {"schema": [], "samples": [], "metadata": []} for c in CONFLICT_CLASSES}

    def add(self, cls: str, kind: str, item: object) -> None:
        self.by_class[cls][kind].append(item)

    def __bool__(self) -> bool:
        return any(v for kinds in self.by_class.values() for v in kinds.values())


class MergePlan(NamedTuple):
    """Edits (``trees.apply_edits`` form) that turn the master tree into the merge result,
    and the conflicts met on the way (the edits are only valid when there are none, or
    when a strategy resolved them). Merged sample and metadata tables are edits to whole
    subtree ids; the new trees they name are in ``batch`` (written with the merge commit)."""

    edits: dict[str, Any]
    conflicts: MergeConflicts
    batch: Optional[ObjectBatch] = None


def _conflict_class(base: object, ours: object, theirs: object) -> str:
    if base is None:
        return "t1"
    if ours is None:
        return "t21"
    if theirs is None:
        return "t22"
    return "t3"


def _serialize(entries: dict[bytes, tuple[bytes, bytes]]) -> bytes:
    """Git tree bytes of ``{name: (mode, raw id)}`` (git order: a tree's name sorts as name + '/')."""
    items = sorted(entries.items(), key=lambda kv: kv[0] + b"/" if kv[1][0] == b"40000" else kv[0])
    return b"".join(b"%s %s\x00%s" % (mode, name, oid) for name, (mode, oid) in items)


_GENERAL = object()  # a fast path declines: take the general one
_STRATEGY_CODE = {None: 0, "ours": 1, "theirs": 2}  # rowhash.merge3's codes
#: (base, master, dev) stand-ins that :func:`_conflict_class` maps to each class
_CLASS_ARGS = {"t1": (None, 1, 1), "t21": (1, None, 1), "t22": (1, 1, None), "t3": (1, 1, 1)}


def _tree_block(trees: rowhash.PackedTrees) -> ObjectBlock:
    """The new trees of ``rowhash.merge3_packed`` as one block of the pack (their entries were built
    in C as they were hashed)."""
    ids, entries, starts, crcs, data, bounds = trees
    return ObjectBlock(np.frombuffer(ids, dtype=np.uint8).reshape(-1, 20), np.frombuffer(entries, dtype=np.uint8),
                       np.frombuffer(starts, dtype=np.int64), np.frombuffer(crcs, dtype=np.uint32), OBJ_TREE,
                       np.frombuffer(data, dtype=np.uint8), np.frombuffer(bounds, dtype=np.int64))


class _TableMerge:
    """3-way merge of fanned-out tables by subtree ids.

    A directory changed on one side only is taken whole, by id; only directories changed
    on both sides are opened, and only leaves changed on both sides are merged entry by
    entry. New trees go to one ``ObjectBatch`` (one pack). At 600 + 600 changes in 60,000
    samples this opens ~300 trees of master, dev and base, where comparing every changed
    leaf of both sides entry by entry opened ~1,700 and rewrote ~800.
    """

    def __init__(self, reader: TreeReader, strategy: Optional[str], conflicts: MergeConflicts,
                 kind: str, label: Optional[str], batch: ObjectBatch) -> None:
        self.reader = reader
        self.strategy = strategy
        self.conflicts = conflicts
        self.kind = kind
        self.label = label
        self.batch = batch

    def classify(self, a: Oid, m: Oid, d: Oid, depth: int) -> None:
        """Record the conflicts only, from the full changes of each side since ``a`` (which
        :func:`diff_trees_via_base` needs anyway: the reader remembers them for it)."""
        if d == a or m == d or self.strategy is not None:
            return
        reader = self.reader
        theirs = reader.table_changes(a, d, depth)
        ours = reader.table_changes(a, m, depth) if m != a else {}
        for name, (old, new) in theirs.items():
            mine = ours[name][1] if name in ours else old
            if mine != new and mine != old:  # both sides changed this entry, differently
                self.conflicts.add(_conflict_class(old, mine, new), self.kind,
                                   name if self.label is None else (self.label, name))

    def merge(self, a: Oid, m: Oid, d: Oid, depth: int) -> Oid:
        """Id of the merged table (``None``: empty); ``m`` itself when dev brings nothing."""
        if d == a or m == d:
            return m
        if m == a:
            return d
        if rowhash.available:  # the whole table in one C call (docs/diff-merge.md, "Merge")
            merged = rowhash.merge3_packed(self.reader.raw, a, m, d, depth, _STRATEGY_CODE[self.strategy],
                                           _RAW.mapping())
            if merged is not None:
                root, trees, conflicts = merged
                self.batch.add_block(_tree_block(trees))
                for cls, name in conflicts:
                    self._conflict(name, *_CLASS_ARGS[cls])
                return root
        if depth > 0:
            got = self._merge_fan(a, m, d, depth)
        else:
            got = self._merge_leaf(a, m, d)
        if got is _GENERAL:
            return self._merge_entries(a, m, d, depth)
        assert got is None or isinstance(got, bytes)
        return got

    def _conflict(self, name: bytes, va: object, vm: object, vd: object) -> None:
        key = name.decode()
        self.conflicts.add(_conflict_class(va, vm, vd), self.kind, key if self.label is None else (self.label, key))

    def _merge_fan(self, a: Oid, m: Oid, d: Oid, depth: int) -> object:
        """The merge of three fan-out directories with the same digits, entry by entry in place
        (ids at fixed offsets); ``_GENERAL`` when the layouts differ or an entry empties."""
        reader = self.reader
        fa, fm, fd = reader.fan(a), reader.fan(m), reader.fan(d)
        if fa is None or fm is None or fd is None or not len(fa) == len(fm) == len(fd) \
                or not fa[6::_FAN_ENTRY] == fm[6::_FAN_ENTRY] == fd[6::_FAN_ENTRY]:
            return _GENERAL
        parts: list[bytes] = []
        done = 0  # bytes of fm already in parts
        for i in range(8, len(fm), _FAN_ENTRY):
            ia, im, id_ = fa[i:i + 20], fm[i:i + 20], fd[i:i + 20]
            if id_ == ia or im == id_:
                continue
            new = id_ if im == ia else self.merge(ia, im, id_, depth - 1)
            if new == im:
                continue
            parts.append(fm[done:i - 8])
            if new is not None:  # else the directory emptied: its entry goes
                parts.append(fm[i - 8:i] + new)
            done = i + 20
        if not parts:
            return m
        parts.append(fm[done:])
        out = b"".join(parts)
        return self.batch.add(OBJ_TREE, out) if out else None

    def _merge_leaf(self, a: Oid, m: Oid, d: Oid) -> object:
        """The merge of a leaf changed on both sides: dev's changes since the base (libgit2's
        tree diff: only changed entries reach Python) spliced into master's bytes, where master
        still holds the base's entry.

        Parsing the three leaves entry by entry cost ~0.4 ms a leaf at 1,000,000 samples (244
        entries each), and a second diff for master's side ~0.1 ms where a name lookup in libgit2's
        parse of master's leaf costs ~2 µs. ``_GENERAL`` (which also
        classifies conflicts) when dev adds an entry (its sorted position needs the parsed leaf),
        master changed an entry dev changed too, a leaf holds subtrees, or an object is unwritten.
        """
        reader = self.reader
        if a is None or m is None or d is None or not (reader.stored(a) and reader.stored(m) and reader.stored(d)):
            return _GENERAL
        theirs = reader.leaf_delta(a, d)
        if theirs is None:
            return _GENERAL
        out = reader.raw(m)
        ours = reader.git.tree(m)  # parsed by libgit2 (C), looked up by name below
        assert ours is not None
        for name in sorted(theirs):
            va, vd = theirs[name]
            if va is None:
                return _GENERAL
            # master must still hold the base's entry (libgit2's binary search by name says),
            # and its bytes must occur once in master's leaf: that occurrence is then the entry
            # (a name holding ' 100644 <name>' of a foreign tree cannot pass as it)
            try:
                mine = ours[name.decode()]
            except (KeyError, UnicodeDecodeError):
                return _GENERAL
            if mine.id.raw != va[1] or b"%o" % mine.filemode != va[0]:
                return _GENERAL
            old = b"%s %s\x00%s" % (va[0], name, va[1])
            if out.count(old) != 1:
                return _GENERAL
            at = out.find(old)
            rep = b"" if vd is None else b"%s %s\x00%s" % (vd[0], name, vd[1])
            out = out[:at] + rep + out[at + len(old):]
        if not out:
            return None
        return self.batch.add(OBJ_TREE, out)

    def _merge_entries(self, a: Oid, m: Oid, d: Oid, depth: int) -> Oid:
        """The general merge: the three trees parsed entry by entry."""
        reader = self.reader
        if depth == 0:  # the C merge hands leaves holding anything but 100644 blobs to this path
            for x in (a, m, d):
                if x is not None:
                    check_leaf(reader.raw(x), x)
        ea, em, ed = reader.moded(a), reader.moded(m), reader.moded(d)
        out = dict(em)
        changed = False
        for name in sorted({n for n, _ in ea.items() ^ ed.items()}):
            va, vm, vd = ea.get(name), em.get(name), ed.get(name)
            if vm == vd:
                continue
            if vm == va:  # only dev changed this entry (or directory): take it
                new = vd
            elif depth > 0:  # a directory changed on both sides: merge inside it
                sub = self.merge(None if va is None else va[1], None if vm is None else vm[1],
                                 None if vd is None else vd[1], depth - 1)
                new = None if sub is None else (b"40000", sub)
                if new == vm:
                    continue
            else:  # both sides changed this entry, differently
                if self.strategy == "ours":
                    continue
                if self.strategy is None:
                    self._conflict(name, va, vm, vd)
                    continue
                new = vd
            if new is None:
                out.pop(name, None)
            else:
                out[name] = new
            changed = True
        if not changed:
            return m
        if not out:
            return None
        return self.batch.add(OBJ_TREE, _serialize(out))


def three_way(reader: TreeReader, base_root: Oid, ours_root: Oid, theirs_root: Oid,
              strategy: Optional[str] = None, build: bool = True) -> MergePlan:
    """Classify the changes of ``ours`` (master) and ``theirs`` (dev) since ``base``.

    Per sample, metadata key and arrayset schema: a change on one side only is taken;
    the same change on both sides (or removal on both) is no conflict; anything else
    is a conflict of class t1/t21/t22/t3, resolved by ``strategy`` ('ours' keeps
    master's side, 'theirs' takes dev's) or, with no strategy, recorded. An arrayset
    whose schema conflicts (changed differently on both sides; changed on one side
    while its schema or samples changed on the other; removed on one side and changed
    on the other; added on both with different schemas) is resolved as a whole.

    With ``build=False`` only the conflicts are found (no merged trees; sample and metadata
    edits are left out), from the per-side changes a diff via the base computes anyway.
    """
    conflicts = MergeConflicts()
    batch = ObjectBatch()
    if not build:
        prime_sides(reader, base_root, ours_root, theirs_root)
    rb, rm, rd = _root_ids(reader, base_root), _root_ids(reader, ours_root), _root_ids(reader, theirs_root)
    aset_edits: dict[str, Any] = {}
    for name in sorted(rb.arraysets.keys() | rm.arraysets.keys() | rd.arraysets.keys()):
        at, mt, dt = rb.arraysets.get(name), rm.arraysets.get(name), rd.arraysets.get(name)
        if dt == at or mt == dt:
            continue
        if mt == at:
            aset_edits[name] = None if dt is None else (MODE_TREE, dt)
            continue
        ia, im, id_ = _arrayset_ids(reader, at), _arrayset_ids(reader, mt), _arrayset_ids(reader, dt)
        same_schema = im.schema == id_.schema and (mt is not None and dt is not None)
        if same_schema:
            base_samples = ia.samples
            if at is None or _depth(reader, ia) != _depth(reader, im):
                base_samples = None  # added on both sides, or re-created: no common samples
            tm = _TableMerge(reader, strategy, conflicts, "samples", name, batch)
            if not build:
                tm.classify(base_samples, im.samples, id_.samples, _depth(reader, im))
                continue
            merged = tm.merge(base_samples, im.samples, id_.samples, _depth(reader, im))
            if merged != im.samples:
                aset_edits[name] = {layout.SAMPLES: None if merged is None else (MODE_TREE, merged)}
            continue
        if strategy == "ours":
            continue
        if strategy == "theirs":
            aset_edits[name] = None if dt is None else (MODE_TREE, dt)
            continue
        conflicts.add(_conflict_class(at, mt, dt), "schema", name)
    edits: dict[str, Any] = {}
    if aset_edits:
        edits[layout.ARRAYSETS] = aset_edits
    tm = _TableMerge(reader, strategy, conflicts, "metadata", None, batch)
    if not build:
        tm.classify(rb.metadata, rm.metadata, rd.metadata, layout.METADATA_FANOUT_DEPTH)
        return MergePlan(edits, conflicts, None)
    meta = tm.merge(rb.metadata, rm.metadata, rd.metadata, layout.METADATA_FANOUT_DEPTH)
    if meta != rm.metadata:
        edits[layout.METADATA] = None if meta is None else (MODE_TREE, meta)
    return MergePlan(edits, conflicts, batch)


def write_merge_commit(git: GitRepo, ours_root: Oid, plan: MergePlan, parents: list[str], user: tuple[str, str],
                       message: str) -> str:
    """Write the merge result of ``plan`` over the master tree and its commit (parents
    ``parents``, by ``user`` = (name, email)) as one pack; return the commit id (no ref moved).

    One fsynced pack for trees and commit: a loose commit object cost one more file and
    directory fsync, ~0.3 to 15 ms on a shared disk, against a 10 ms goal for the merge."""
    batch = plan.batch if plan.batch is not None else ObjectBatch()
    if not plan.edits and ours_root is not None:
        root: bytes = ours_root
    else:
        got = apply_edits(git.repo, git.tree(ours_root), plan.edits, batch)
        root = got if got is not None else empty_tree_id(batch)
    commit = batch.add(OBJ_COMMIT, git.commit_data(root.hex(), parents, user[0], user[1], message))
    git.write_batch(batch)
    return commit.hex()


def write_merge_tree(git: GitRepo, ours_root: Oid, plan: MergePlan) -> str:
    """Apply ``plan`` to the master tree, write the new trees (one pack); return the tree id."""
    batch = plan.batch if plan.batch is not None else ObjectBatch()
    if not plan.edits and ours_root is not None:
        return ours_root.hex()
    root = apply_edits(git.repo, git.tree(ours_root), plan.edits, batch)
    if root is None:
        root = empty_tree_id(batch)
    git.write_batch(batch)
    return root.hex()
