"""Diff and merge fast paths give the results of the walking paths (issue 14).

The C extension merges a fanned-out table 3-way (``rowhash.merge3``) and lists the changes
between two tables (``rowhash.diff2``) in one call each; the change records let a diff skip
the walk. Each is compared here with the pure-Python walk (``rowhash.available`` off) on
random histories written through the public API: samples changed, added and removed on both
sides (conflicts of every class), arraysets created (with equal or different schemas) and
removed, metadata changed; every merge strategy.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

from hangar import Repository
from hangar.diff import diff_commits
from hangar.plumbing import rowhash
from hangar.plumbing.pack import OBJ_BLOB, OBJ_TREE, ObjectBatch
from hangar.plumbing.trees import MODE_BLOB, MODE_TREE, serialize_tree
from hangar.records import changes
from hangar.records.treediff import (
    MergeConflicts,
    TreeReader,
    _TableMerge,
    fan_changes,
    three_way,
    write_merge_tree,
)
from tests.repo_parts import git_of

needs_ext = pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")

KEYS = 400  # enough for full upper fan-out levels and partly empty leaves (depth 3: 4,096 leaves)


def _base(repo: Repository) -> str:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    co.arraysets.init_arrayset("b", shape=(3,), dtype=np.uint8)
    co["a", list(range(KEYS))] = np.stack([np.array([k % 256, 0], dtype=np.uint8) for k in range(KEYS)])
    co["b", [f"s{k}" for k in range(40)]] = np.zeros((40, 3), dtype=np.uint8)
    for k in range(20):
        co.metadata[f"m{k}"] = "0"
    head = co.commit("base")
    co.close()
    return head


def _edit(repo: Repository, branch: str, rng: random.Random, side: int) -> str:
    """Random changes on ``branch``; keys drawn from one pool so both sides meet."""
    co = repo.checkout(write=True, branch=branch)
    try:
        a = co.arraysets["a"]
        for k in rng.sample(range(KEYS), rng.randrange(5, 60)):
            roll = rng.random()
            if roll < 0.2:
                if k in a:
                    del a[k]
            elif roll < 0.3:  # the same value on both sides: no conflict
                a[k] = np.array([7, 7], dtype=np.uint8)
            else:
                a[k] = np.array([side, rng.randrange(3)], dtype=np.uint8)
        for k in rng.sample(range(KEYS, KEYS + 8), 3):  # added, here and maybe on the other side
            a[k] = np.array([side, 1], dtype=np.uint8)
        for k in rng.sample(range(40), rng.randrange(0, 4)):
            if rng.random() < 0.5 and "b" in co.arraysets:
                co["b", f"s{k}"] = np.full(3, side, dtype=np.uint8)
        for k in rng.sample(range(25), rng.randrange(2, 8)):
            if rng.random() < 0.3:
                if f"m{k}" in co.metadata:
                    del co.metadata[f"m{k}"]
            else:
                co.metadata[f"m{k}"] = str(rng.choice([side, 9]))
        roll = rng.random()
        if roll < 0.15 and "b" in co.arraysets:
            co.arraysets.remove_aset("b")
        elif roll < 0.6:  # created on one or both sides, with the same or another schema
            c = co.arraysets.init_arrayset("c", shape=(rng.choice([1, 2]),), dtype=np.uint8)
            for k in rng.sample(range(30), rng.randrange(1, 20)):
                c[k] = np.full(c.shape, rng.choice([side, 5]), dtype=np.uint8)
        return co.commit(f"edit {branch}")
    finally:
        co.close()


def _histories(repo: Repository, count: int, seed: int) -> list[tuple[str, str, str]]:
    base = _base(repo)
    rng = random.Random(seed)
    out = []
    for i in range(count):
        repo.create_branch(f"m{i}", base_commit=base)
        repo.create_branch(f"d{i}", base_commit=base)
        out.append((base, _edit(repo, f"m{i}", rng, 1), _edit(repo, f"d{i}", rng, 2)))
    return out


def _merge_results(git, trees: tuple[bytes, bytes, bytes]) -> list[tuple[dict, str]]:
    out = []
    for strategy in (None, "ours", "theirs"):
        plan = three_way(TreeReader(git), *trees, strategy)
        conflicts = {c: {k: sorted(v, key=repr) for k, v in kinds.items()}
                     for c, kinds in plan.conflicts.by_class.items()}
        out.append((conflicts, write_merge_tree(git, trees[1], plan)))
    return out


def _diffs(git, pairs: list[tuple[str, str]]) -> list:
    return [diff_commits(git, x, y) for x, y in pairs]


@needs_ext
@pytest.mark.slow
def test_fast_paths_match_the_walk_on_random_histories(repo, monkeypatch) -> None:
    git = git_of(repo)
    histories = _histories(repo, 10, seed=3)

    def tree(commit: str) -> bytes:
        return bytes.fromhex(git.commit_tree_id(commit))

    pairs = [p for b, m, d in histories for p in ((m, d), (d, m), (b, m), (m, b))]
    changes.remove_records(git.git_dir)
    fast_merges = [_merge_results(git, (tree(b), tree(m), tree(d))) for b, m, d in histories]
    fast_walked = _diffs(git, pairs)  # C walks, keeping change records
    from_records = _diffs(git, pairs)
    monkeypatch.setattr(rowhash, "available", False)
    changes.remove_records(git.git_dir)
    slow_merges = [_merge_results(git, (tree(b), tree(m), tree(d))) for b, m, d in histories]
    slow_walked = _diffs(git, pairs)
    assert fast_merges == slow_merges
    assert fast_walked == slow_walked == from_records
    # the histories reach what the fast paths must handle
    kinds = {(c, k) for r in slow_merges for conflicts, _ in r
             for c, by in conflicts.items() for k, v in by.items() if v}
    assert {("t1", "samples"), ("t3", "samples"), ("t21", "samples"), ("t22", "samples")} <= kinds
    assert any(k == "metadata" for _, k in kinds) and any(k == "schema" for _, k in kinds)
    assert any(not any(v for by in conflicts.values() for v in by.values())
               for r in slow_merges for conflicts, _ in r[:1])  # some merge without conflicts


@needs_ext
def test_merge_of_one_history_matches_the_walk(repo, monkeypatch) -> None:
    git = git_of(repo)
    (b, m, d), = _histories(repo, 1, seed=11)
    trees = tuple(bytes.fromhex(git.commit_tree_id(c)) for c in (b, m, d))
    fast = _merge_results(git, trees)  # type: ignore[arg-type]
    monkeypatch.setattr(rowhash, "available", False)
    assert _merge_results(git, trees) == fast  # type: ignore[arg-type]


def _reader(objects: dict[bytes, bytes]):
    return objects.__getitem__


@needs_ext
def test_merge3_and_diff2_decline_trees_not_of_the_table_shape() -> None:
    oid = bytes(range(20))
    leaf = serialize_tree({"i:1": (MODE_BLOB, oid)})
    leaf2 = serialize_tree({"i:1": (MODE_BLOB, bytes(20)), "i:2": (MODE_BLOB, oid)})
    with_sub = serialize_tree({"i:1": (MODE_BLOB, oid), "d": (MODE_TREE, oid)})
    ids = {bytes([i]) * 20: t for i, t in enumerate((leaf, leaf2, with_sub, leaf[:-1], b"x" + leaf), start=1)}
    a, b, sub, cut, junk = ids
    read = _reader(ids)
    assert rowhash.diff2(read, a, b, 0) == [(b"i:1", oid, bytes(20)), (b"i:2", None, oid)]
    assert rowhash.diff2(read, a, a, 0) == []
    for bad in (sub, cut, junk):
        assert rowhash.diff2(read, a, bad, 0) is None
        assert rowhash.merge3(read, a, b, bad, 0, 0) is None
    # a leaf where a fan-out directory belongs (depth 1), and the reverse
    assert rowhash.diff2(read, a, b, 1) is None
    fan_a, fan_b = serialize_tree({"0": (MODE_TREE, a)}), serialize_tree({"0": (MODE_TREE, b)})
    ids2 = {**ids, b"\xaa" * 20: fan_a, b"\xbb" * 20: fan_b}
    assert rowhash.diff2(_reader(ids2), b"\xaa" * 20, b"\xbb" * 20, 0) is None
    assert rowhash.diff2(_reader(ids2), b"\xaa" * 20, b"\xbb" * 20, 1) == rowhash.diff2(read, a, b, 0)


def _raw_tree(*entries: tuple[bytes, bytes]) -> bytes:
    """A leaf's bytes with its entries in the order given (plain git writes any order)."""
    return b"".join(b"100644 %s\0%s" % (name, oid) for name, oid in entries)


@needs_ext
def test_merge3_and_diff2_decline_trees_out_of_git_order() -> None:
    """The merge-join assumes git's order: a crafted leaf out of order, or naming an entry twice
    (plain git writes either; a hostile remote can push them), is left to the general path, not
    diffed into repeated names nor merged into a tree out of order. Found by a fuzz comparing
    merges of crafted tables in C and in Python (reviewer rC)."""
    x, y, z = (bytes([i]) * 20 for i in (1, 2, 3))
    ids = {b"\x01" * 20: _raw_tree((b"i:1", x), (b"i:2", x), (b"i:5", x)),
           b"\x02" * 20: _raw_tree((b"i:2", x), (b"i:1", x), (b"i:5", x)),  # out of order
           b"\x03" * 20: _raw_tree((b"i:1", x), (b"i:1", y), (b"i:5", x)),  # i:1 twice
           b"\x04" * 20: _raw_tree((b"i:2", x), (b"i:1", x), (b"i:5", y)),  # as 2, one change at the end
           b"\x05" * 20: _raw_tree((b"i:2", x), (b"i:1", x), (b"i:6", z))}  # as 2, another change
    read = _reader(ids)
    good, unsorted, twice, m, d = ids
    for bad in (unsorted, twice):
        assert rowhash.diff2(read, good, bad, 0) is None
        assert rowhash.diff2(read, bad, good, 0) is None
        assert rowhash.merge3(read, good, bad, m, 0, 0) is None
        assert rowhash.merge3(read, good, m, bad, 0, 1) is None
    # the entries out of order are equal on all three sides: taken as one run of bytes
    assert rowhash.merge3(read, unsorted, m, d, 0, 0) is None
    assert rowhash.diff2(read, m, d, 0) is None


@needs_ext
def test_merge3_classifies_and_resolves_a_leaf() -> None:
    x, y, z = (bytes([i]) * 20 for i in (1, 2, 3))
    base = serialize_tree({"k1": (MODE_BLOB, x), "k2": (MODE_BLOB, x), "k3": (MODE_BLOB, x)})
    ours = serialize_tree({"k1": (MODE_BLOB, y), "k2": (MODE_BLOB, x), "k4": (MODE_BLOB, y)})  # k3 removed
    theirs = serialize_tree({"k1": (MODE_BLOB, z), "k2": (MODE_BLOB, z), "k3": (MODE_BLOB, z), "k4": (MODE_BLOB, z)})
    ids = {b"\x0a" * 20: base, b"\x0b" * 20: ours, b"\x0c" * 20: theirs}
    read = _reader(ids)
    root, objects, conflicts = rowhash.merge3(read, b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20, 0, 0)  # type: ignore[misc]
    assert conflicts == [("t3", b"k1"), ("t21", b"k3"), ("t1", b"k4")]
    for strategy, side in ((1, {"k1": y, "k4": y}), (2, {"k1": z, "k3": z, "k4": z})):
        root, objects, conflicts = rowhash.merge3(read, b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20, 0,  # type: ignore[misc]
                                                  strategy)
        want = serialize_tree({k: (MODE_BLOB, v) for k, v in {"k2": z, **side}.items()})
        assert conflicts == [] and objects == [(root, want)]
    # one side's table is taken by id, nothing read or written
    assert rowhash.merge3({}.__getitem__, b"\x0a" * 20, b"\x0a" * 20, b"\x0c" * 20, 0, 0) == (b"\x0c" * 20, [], [])


@needs_ext
def test_fan_changes_in_c_and_python_agree_on_an_arrayset(repo, monkeypatch) -> None:
    git = git_of(repo)
    (b, m, _), = _histories(repo, 1, seed=5)
    reader = TreeReader(git)
    ta, tb = (reader.entries(reader.child(bytes.fromhex(git.commit_tree_id(c)), b"arraysets"))[b"a"] for c in (b, m))
    sa, sb = reader.child(ta, b"samples"), reader.child(tb, b"samples")
    fast = fan_changes(reader, sa, sb, 3)
    monkeypatch.setattr(rowhash, "available", False)
    assert fan_changes(TreeReader(git), sa, sb, 3) == fast and fast


@needs_ext
def test_kept_trees_are_read_from_the_cache_before_calling_back() -> None:
    x, y = bytes([1]) * 20, bytes([2]) * 20
    trees = {b"\x0a" * 20: serialize_tree({"k1": (MODE_BLOB, x)}),
             b"\x0b" * 20: serialize_tree({"k1": (MODE_BLOB, y)}),
             b"\x0c" * 20: serialize_tree({"k1": (MODE_BLOB, x), "k2": (MODE_BLOB, y)})}

    def nothing(oid: bytes) -> bytes:
        raise KeyError(oid)

    got = rowhash.merge3(nothing, b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20, 0, 0, trees)
    assert got is not None and got[2] == []
    assert got[1] == [(got[0], serialize_tree({"k1": (MODE_BLOB, y), "k2": (MODE_BLOB, y)}))]
    assert rowhash.diff2(nothing, b"\x0a" * 20, b"\x0c" * 20, 0, trees) == [(b"k2", None, y)]
    with pytest.raises(KeyError):
        rowhash.diff2(nothing, b"\x0a" * 20, b"\x0c" * 20, 0)
    with pytest.raises(TypeError):
        rowhash.diff2(nothing, b"\x0a" * 20, b"\x0c" * 20, 0, [])  # type: ignore[arg-type]


def _digit(name: str) -> str:
    return "0123456789abcdef"[zlib.crc32(name.encode()) & 15]  # a name's leaf, as the layout places it


def _random_tables(rng: random.Random, batch: ObjectBatch) -> list[tuple[bytes, bytes, bytes]]:
    """(base, master, dev) tables of one fan-out level over big leaves (~120 entries each, the
    shape of a 1,000,000-sample arrayset's leaves), changed in a few entries on each side."""
    blobs = [batch.add(OBJ_BLOB, b"v%d" % i) for i in range(6)]
    out = []
    for _ in range(12):
        digits = rng.sample("0123456789abcdef", rng.randrange(1, 6))
        base: dict[str, dict] = {d: {} for d in digits}
        while sum(map(len, base.values())) < 120 * len(digits):
            name = f"i:{rng.randrange(10**6)}"
            if _digit(name) in base:
                base[_digit(name)][name] = (MODE_BLOB, rng.choice(blobs))
        sides = []
        for _side in range(2):
            table = {d: dict(leaf) for d, leaf in base.items()}
            for _ in range(rng.randrange(1, 8)):
                names = sorted(n for leaf in table.values() for n in leaf)
                name = rng.choice(names + [f"i:{rng.randrange(10**6)}", "i:5"])
                leaf = table.setdefault(_digit(name), {})
                roll = rng.random()
                if roll < 0.25:
                    leaf.pop(name, None)
                else:
                    leaf[name] = (MODE_BLOB, rng.choice(blobs))
            sides.append(table)
        out.append(tuple(_write_table(batch, t) for t in (base, *sides)))  # type: ignore[misc]
    return out


def _write_table(batch: ObjectBatch, table: dict) -> bytes:
    leaves = {d: (MODE_TREE, batch.add(OBJ_TREE, serialize_tree(leaf))) for d, leaf in table.items() if leaf}
    return batch.add(OBJ_TREE, serialize_tree(leaves))


def _table_merges(git, tables: list[tuple[bytes, bytes, bytes]]) -> list:
    out = []
    for a, m, d in tables:
        for strategy in (None, "ours", "theirs"):
            reader, conflicts, batch = TreeReader(git), MergeConflicts(), ObjectBatch()
            merged = _TableMerge(reader, strategy, conflicts, "samples", "x", batch).merge(a, m, d, 1)
            git.write_batch(batch)
            out.append((merged, conflicts.by_class))
        out.append((fan_changes(TreeReader(git), a, m, 1), fan_changes(TreeReader(git), m, d, 1)))
    return out


@needs_ext
def test_merge3_and_diff2_match_the_walk_on_big_leaves(repo, monkeypatch) -> None:
    git = git_of(repo)
    batch = ObjectBatch()
    tables = _random_tables(random.Random(8), batch)
    git.write_batch(batch)
    fast = _table_merges(git, tables)
    monkeypatch.setattr(rowhash, "available", False)
    assert _table_merges(git, tables) == fast
    assert any(any(v for v in by.values()) for merged, by in fast[::4])  # some conflict


def _batch_reader(batch: ObjectBatch):
    def read(oid: bytes) -> bytes:
        got = batch.get(oid)
        assert got is not None
        return got[1]
    return read


def _entry_object(entry: bytes) -> tuple[int, bytes]:
    """(type, content) of one pack entry (type/size header, then a zlib stream)."""
    obj_type, size, at = (entry[0] >> 4) & 7, entry[0] & 15, 1
    shift = 4
    while entry[at - 1] & 0x80:
        size |= (entry[at] & 0x7F) << shift
        shift += 7
        at += 1
    data = zlib.decompress(entry[at:])  # checks the stream's adler32
    assert len(data) == size
    return obj_type, data


@needs_ext
def test_merge3_packed_gives_merge3s_trees_as_pack_entries() -> None:
    batch = ObjectBatch()
    tables = _random_tables(random.Random(3), batch)
    # a leaf over 64 KiB: its zlib stream holds two stored blocks
    blob = batch.add(OBJ_BLOB, b"v")
    big = {f"i:{k}": (MODE_BLOB, blob) for k in range(2500)}
    sides = [big, {**big, "i:1": (MODE_BLOB, bytes(20))}, {**big, "i:2": (MODE_BLOB, bytes(20))}]
    tables.append(tuple(batch.add(OBJ_TREE, serialize_tree(t)) for t in sides))  # type: ignore[arg-type]
    read = _batch_reader(batch)
    seen_big = False
    for (a, m, d), depth in zip(tables, [1] * (len(tables) - 1) + [0]):
        for strategy in (0, 1, 2):
            plain = rowhash.merge3(read, a, m, d, depth, strategy)
            packed = rowhash.merge3_packed(read, a, m, d, depth, strategy)
            assert plain is not None and packed is not None
            assert packed[0] == plain[0] and packed[2] == plain[2]
            ids, entries, starts, crcs, data, bounds = packed[1]
            objects = [(ids[i].tobytes(), data[bounds[i]:bounds[i + 1]].tobytes()) for i in range(len(ids))]
            assert objects == plain[1]
            assert starts[0] == 0 and starts[-1] == len(entries) and len(crcs) == len(ids)
            for i, (_oid, tree) in enumerate(objects):
                entry = entries[starts[i]:starts[i + 1]].tobytes()
                assert zlib.crc32(entry) == crcs[i]
                assert _entry_object(entry) == (OBJ_TREE, tree)
                seen_big |= len(tree) > 0xFFFF
    assert seen_big


@needs_ext
def test_merge3_packed_results_stay_intact_while_held() -> None:
    """The arrays may be views of a reused buffer: one still held is never written over."""
    batch = ObjectBatch()
    tables = _random_tables(random.Random(4), batch)
    read = _batch_reader(batch)
    held = []
    for rounds in range(3):
        for a, m, d in tables:
            got = rowhash.merge3_packed(read, a, m, d, 1, 2)
            assert got is not None
            held.append((got[1], [arr.copy() for arr in got[1]]))
        for arrays, copies in held:
            assert all(np.array_equal(x, y) for x, y in zip(arrays, copies))
        if rounds == 1:
            held.clear()  # the buffers are free again: later calls may fill them


@needs_ext
@pytest.mark.parametrize("portable", [False, True])
def test_merge3_checksums_equal_zlibs(portable: bool) -> None:
    rng = random.Random(6)
    data = rng.randbytes(300_000)
    lengths = list(range(0, 200)) + [rng.randrange(200, 200_000) for _ in range(60)] + [5535, 5536, 5537, 11_072]
    for n in lengths:
        for skew in (0, 1, 13):
            buf = data[skew:skew + n]
            assert rowhash.pack_checksums(buf, portable) == (zlib.adler32(buf), zlib.crc32(buf)), (n, skew)
    worst = b"\xff" * 1_000_000  # the largest sums between two reductions
    assert rowhash.pack_checksums(worst, portable) == (zlib.adler32(worst), zlib.crc32(worst))


_BASELINE_MERGE = """
import json, random, sys
from hangar.plumbing import rowhash
from hangar.plumbing.pack import ObjectBatch
from tests.test_merge_fast_paths import _batch_reader, _random_tables
batch = ObjectBatch()
tables = _random_tables(random.Random(5), batch)
out = []
for a, m, d in tables:
    got = rowhash.merge3_packed(_batch_reader(batch), a, m, d, 1, 2)
    out.append([got[0].hex(), [arr.tobytes().hex() for arr in got[1]]])
json.dump(out, sys.stdout)
"""


@needs_ext
@pytest.mark.slow  # a child process: ~1-3 s
def test_merge3_packed_hashes_alike_without_the_sha_instructions() -> None:
    """merge3_packed hashes its new trees two at a time with the SHA instructions interleaved; with
    HANGAR_ROWHASH_BASELINE=1 (as on a CPU without them) one at a time: the same ids and entries."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, HANGAR_ROWHASH_BASELINE="1")
    got = subprocess.run([sys.executable, "-c", _BASELINE_MERGE], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert got.returncode == 0, got.stderr
    batch = ObjectBatch()
    tables = _random_tables(random.Random(5), batch)
    here = []
    for a, m, d in tables:
        merged = rowhash.merge3_packed(_batch_reader(batch), a, m, d, 1, 2)
        assert merged is not None and merged[0] is not None
        here.append([merged[0].hex(), [arr.tobytes().hex() for arr in merged[1]]])
    assert json.loads(got.stdout) == here
    assert sum(len(ids) // 40 for _root, (ids, *_rest) in here) > len(here)  # pairs were hashed


@needs_ext
def test_merge3_packed_ids_at_every_message_length() -> None:
    """Two new leaves hashed together (their lengths differ: one message runs on alone) and their
    parent alone, at tree lengths around every 64-byte block boundary of the sha1 message."""
    import hashlib

    x, y = bytes([1]) * 20, bytes([2]) * 20
    for extra in range(0, 140, 1):
        trees = {}
        sides = []
        for side in ("a", "m", "d"):
            leaves = {}
            for digit, pad in (("0", extra), ("1", 2 * extra % 97)):
                leaf = {"i:1": (MODE_BLOB, x)}
                if side != "a":  # each side adds a name of its own: the leaf changed on both sides
                    leaf[f"i:{side}{'9' * pad}"] = (MODE_BLOB, y)
                data = serialize_tree(leaf)
                oid = hashlib.sha1(b"tree %d\0" % len(data) + data).digest()
                trees[oid] = data
                leaves[digit] = (MODE_TREE, oid)
            data = serialize_tree(leaves)
            oid = hashlib.sha1(b"tree %d\0" % len(data) + data).digest()
            trees[oid] = data
            sides.append(oid)
        got = rowhash.merge3_packed(trees.__getitem__, *sides, 1, 0)
        assert got is not None and got[2] == []
        ids, _entries, _starts, _crcs, data, bounds = got[1]
        assert len(ids) == 3
        for i in range(3):
            tree = data[bounds[i]:bounds[i + 1]].tobytes()
            assert ids[i].tobytes() == hashlib.sha1(b"tree %d\0" % len(tree) + tree).digest(), extra
        assert got[0] == ids[2].tobytes()
