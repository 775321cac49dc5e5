"""Records built in bulk (pointer blobs, their ids, leaf trees and pack entries as arrays)
are byte for byte what the object-by-object path builds, and git reads them."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import zlib

import numpy as np
import pytest

from hangar.core import RepositoryCore
from hangar.plumbing import pack, rowhash
from hangar.plumbing.pack import OBJ_BLOB, OBJ_TREE, ObjectBatch, blob_block, object_id, write_pack
from hangar.plumbing.trees import MODE_BLOB, MODE_TREE, apply_edits, serialize_tree
from hangar.records import layout
from hangar.records.keys import encode_key
from hangar.records.pointer import SamplePointer, encode_pointer, encode_pointers
from hangar.records.staging import StagedEntries


@pytest.fixture(params=["extension", "numpy"])
def pointer_rows(request, monkeypatch):
    """Each way of building pointer rows: the C extension (skipped where not built) and numpy."""
    if request.param == "extension":
        if not rowhash.available:
            pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    else:
        monkeypatch.setattr(rowhash, "available", False)
    return request.param


@pytest.mark.parametrize("dtype,shape", [("|u1", (28, 28)), ("<f4", (1024, 1024)), ("<i8", ()), ("<U3", (7,))])
def test_encode_pointers_matches_encode_pointer(dtype, shape, pointer_rows):
    digests = np.random.default_rng(1).integers(0, 256, size=(50, 32), dtype=np.uint8)
    rows = encode_pointers(digests, dtype, shape)
    assert [r.tobytes() for r in rows] == [encode_pointer(SamplePointer(d.tobytes(), dtype, shape)) for d in digests]


@pytest.fixture(params=["extension", "python"])
def row_sums(request, monkeypatch):
    """Each implementation of the per-row checksums: the optional C extension ``_rowhash``
    (skipped where it is not built) and the pure-Python fallback."""
    if request.param == "extension":
        if not rowhash.available:
            pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    else:
        monkeypatch.setattr(rowhash, "available", False)
    return request.param


@pytest.mark.parametrize("width", [1, 3, 7, 8, 9, 47, 55, 56, 57, 63, 64, 65, 119, 120, 128, 5553, 6000])
def test_rowhash_matches_hashlib_and_zlib(width):
    ext = pytest.importorskip("hangar.plumbing._rowhash", reason="not built (pip install -e . builds it)")
    rows = np.random.default_rng(width).integers(0, 256, size=(9, width), dtype=np.uint8)
    rows[0] = 255  # the largest sums: adler32's deferred modulo must not overflow
    head = b"blob %d\x00" % width
    expected = [hashlib.sha1(head + r.tobytes()).digest() for r in rows]
    for portable in (False, True):  # the CPU's SHA instructions where it has them, and the portable code
        ids = ext.sha1_rows(rows, width, head, portable)
        assert [ids[20 * i:20 * i + 20] for i in range(9)] == expected
    crcs = np.frombuffer(ext.crc32_rows(rows, width), dtype=np.uint32).tolist()
    assert crcs == [zlib.crc32(r.tobytes()) for r in rows]
    adlers = np.frombuffer(ext.adler32_rows(rows, width), dtype=np.uint32).tolist()
    assert adlers == [zlib.adler32(r.tobytes()) for r in rows]
    with pytest.raises(ValueError, match="not rows of"):
        ext.crc32_rows(b"abc", 2)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 83, 2047, 2048, 5000])
def test_blob_block_ids_entries_and_crcs_match_one_by_one(tmp_path, size, row_sums):
    rng = np.random.default_rng(size)
    data = rng.integers(0, 256, size=(20, size), dtype=np.uint8)
    block = blob_block(data)
    assert [o.tobytes() for o in block.oids] == [object_id(OBJ_BLOB, r.tobytes()) for r in data]
    assert [int(c) for c in block.crcs] == [zlib.crc32(e.tobytes()) for e in block.entries]
    # each entry is what the object-by-object writer puts in a pack: compare with a pack of one
    pack_dir = tmp_path / "p"
    pack_dir.mkdir()
    for row, entry in zip(data[:3], block.entries[:3]):
        name = write_pack(str(pack_dir), {object_id(OBJ_BLOB, row.tobytes()): (OBJ_BLOB, row.tobytes())})
        body = (pack_dir / f"{name}.pack").read_bytes()
        assert body[12:-20] == entry.tobytes()


@pytest.mark.parametrize("n", [1, 2, 3, 21])
@pytest.mark.parametrize("size", [55, 56, 119, 5552, 5553, 11200])
def test_blob_block_pairs_odd_counts_and_long_rows(n, size):
    """The C loop hashes rows two at a time (an odd last row alone) and sums adler32 16 bytes a
    step (reduced every 5,552 bytes): ids, adler32 tails and crcs equal hashlib's and zlib's, for
    message lengths around sha1's 55/56-byte padding split and rows of all-255 bytes (the largest sums)."""
    rng = np.random.default_rng(n * size)
    data = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    data[-1] = 255
    block = blob_block(data)
    assert [o.tobytes() for o in block.oids] == [object_id(OBJ_BLOB, r.tobytes()) for r in data]
    assert [e[-4:].tobytes() for e in block.entries] == [zlib.adler32(r.tobytes()).to_bytes(4, "big") for r in data]
    assert [int(c) for c in block.crcs] == [zlib.crc32(e.tobytes()) for e in block.entries]


def test_pack_of_blocks_with_repeats_is_accepted_by_git(tmp_path, row_sums):
    git_dir = tmp_path / "g.git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    data = np.random.default_rng(0).integers(0, 256, size=(3000, 83), dtype=np.uint8)
    data[10] = data[20] = data[2999]  # repeated blobs inside a block
    other = np.concatenate([data[:5], np.zeros((4, 83), np.uint8)])  # and across blocks
    batch = ObjectBatch()
    batch.add_block(blob_block(data))
    batch.add_block(blob_block(other))
    batch.add(OBJ_BLOB, data[7].tobytes())  # and one also added object by object
    entries = {f"{i}": (MODE_BLOB, object_id(OBJ_BLOB, r.tobytes())) for i, r in enumerate(data)}
    root = batch.add(OBJ_TREE, serialize_tree({"d": (MODE_TREE, batch.add(OBJ_TREE, serialize_tree(entries)))}))
    write_pack(str(git_dir / "objects" / "pack"), batch.objects, batch.blocks)
    env = {**os.environ, "GIT_DIR": str(git_dir)}
    fsck = subprocess.run(["git", "fsck", "--strict", "--full", "--unreachable"], env=env, capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stderr
    pack_dir = git_dir / "objects" / "pack"
    verify = subprocess.run(["git", "verify-pack", "-v", *map(str, pack_dir.glob("*.idx"))], env=env,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    n_objects = len({r.tobytes() for r in np.concatenate([data, other])}) + 2
    assert f"non delta: {n_objects} objects" in verify.stdout
    out = subprocess.run(["git", "cat-file", "-p", f"{root.hex()}:d/2999"], env=env, capture_output=True, check=True)
    assert out.stdout == data[2999].tobytes()


def _aset_tree(co, name: str, bulk: bool) -> bytes:
    """Arrayset tree with the staged samples, built in bulk or by the per-entry path (the reference)."""
    st = co._staging.asets[name]
    batch = ObjectBatch()
    edits = st.sample_edits(batch) if bulk else StagedEntries.nested_edits(
        st, st.schema.fanout_depth, encode_pointer, batch)
    base = None if st.replaced else co._staging.snapshot.aset_tree(name)
    return apply_edits(RepositoryCore(co._session.repo_path).git.repo, base, {layout.SAMPLES: edits}, batch)


@pytest.mark.slow
def test_bulk_built_trees_equal_the_per_entry_build_and_git_reads_them(repo, run_git):
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 256, size=(3000, 4, 4), dtype=np.uint8)
    stack[5] = stack[6] = stack[7]  # equal samples share one pointer blob
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4, 4), dtype=np.uint8)
    co.arraysets.init_arrayset("v", shape=(9,), dtype=np.float64, variable_shape=True)
    co["x", list(range(3000))] = stack
    co["x", [f"name-{i}" for i in range(50)]] = stack[:50]
    v = co.arraysets["v"]
    for i in range(40):
        v[i] = np.arange(1 + i % 9, dtype=np.float64)  # nine shapes: nine pointer groups
    assert _aset_tree(co, "x", True) == _aset_tree(co, "x", False)
    assert _aset_tree(co, "v", True) == _aset_tree(co, "v", False)
    co.commit("first")
    # on a base: changes, deletions, new keys and a deleted-then-re-added key in touched leaves
    x = co.arraysets["x"]
    for i in range(0, 3000, 7):
        del x[i]
    co["x", list(range(3000, 3400))] = rng.integers(0, 256, size=(400, 4, 4), dtype=np.uint8)
    co["x", list(range(1, 300, 3))] = rng.integers(0, 256, size=(100, 4, 4), dtype=np.uint8)
    x[7] = stack[0]
    del v[3]
    assert _aset_tree(co, "x", True) == _aset_tree(co, "x", False)
    assert _aset_tree(co, "v", True) == _aset_tree(co, "v", False)
    expect = {k: x[k] for k in x.keys()}
    co.commit("second")
    co.close()
    fsck = run_git(repo, "fsck", "--strict", "--full")
    assert fsck.returncode == 0, fsck.stderr
    lines = run_git(repo, "ls-tree", "-r", "master").stdout.splitlines()
    x_lines = [ln for ln in lines if "\tarraysets/x/samples/" in ln]
    names = {ln.rsplit("/", 1)[1] for ln in x_lines}
    assert names == {f"i:{k}" if isinstance(k, int) else f"s:{k}" for k in expect}
    r = repo.checkout()
    for k, val in expect.items():
        assert np.array_equal(r["x", k], val)
    ptr = r.arraysets["x"].loader_view().pointer(encode_key(3001))
    blob = [ln.split()[2] for ln in x_lines if ln.endswith("/i:3001")][0]
    assert run_git(repo, "cat-file", "-p", blob).stdout.encode() == encode_pointer(ptr)
    r.close()


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_bulk_trees_at_other_fanout_depths(repo, depth):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(3,), dtype=np.int16)
    co["x", list(range(500))] = np.arange(1500, dtype=np.int16).reshape(500, 3)
    st = co._staging.asets["x"]
    st.schema = dataclasses.replace(st.schema, fanout_depth=depth)
    assert _aset_tree(co, "x", True) == _aset_tree(co, "x", False)
    co.close()


def test_stacked_large_samples_hashed_ahead_are_stored_once_each(repo):
    # 256 KiB samples: put_rows hashes 64-sample chunks in a thread while writing the last
    rng = np.random.default_rng(5)
    stack = rng.integers(0, 256, size=(150, 256, 1024), dtype=np.uint8)
    stack[3] = stack[100] = stack[149]  # repeats inside a chunk and across chunks
    co = repo.checkout(write=True)
    store = co.arraysets.init_arrayset("big", shape=(256, 1024), dtype=np.uint8).loader_view().store
    before = len(store)
    co["big", list(range(150))] = stack
    assert len(store) - before == 148
    co.commit("large")
    co.close()
    r = repo.checkout()
    for i in (0, 3, 63, 64, 100, 128, 149):
        assert np.array_equal(r["big", i], stack[i])
    big = r.arraysets["big"].loader_view()
    assert big.pointer(encode_key(3)).digest == big.pointer(encode_key(149)).digest
    r.close()


@pytest.mark.parametrize("backend", ["auto", "raw", "lz4", "zstd"])
def test_encode_many_chooses_as_encode_one_by_one(backend):
    from hangar.store.codecs import CodecChooser

    rng = np.random.default_rng(7)
    # runs of compressible and random samples, so the auto probes switch codec on the way
    samples = [memoryview(np.zeros(512, np.uint8) if (i // 50) % 2 else rng.integers(0, 256, 512, np.uint8))
               for i in range(300)]
    one, many = CodecChooser(backend), CodecChooser(backend)
    for c in (one, many):
        c.encode(samples[0])  # start between two probes
    expect = [one.encode(s) for s in samples[1:200]] + [one.encode(s) for s in samples[200:]]
    codecs_a, payloads_a = many.encode_many(samples[1:200])
    codecs_b, payloads_b = many.encode_many(samples[200:])
    assert [c for c, _ in expect] == codecs_a + codecs_b
    assert [bytes(p) for _, p in expect] == [bytes(p) for p in payloads_a + payloads_b]
    assert backend != "auto" or len(set(codecs_a + codecs_b)) == 2


def test_a_block_whose_blobs_are_all_repeats_writes_a_valid_pack(tmp_path, repo, run_git):
    # every pointer of the second stack equals one of the first: its block drops out entirely
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(2,), dtype=np.uint8)
    co.arraysets.init_arrayset("y", shape=(2,), dtype=np.uint8)
    stack = np.arange(20, dtype=np.uint8).reshape(10, 2)
    co["x", list(range(10))] = stack
    co["y", list(range(10))] = stack[::-1].copy()
    co.commit("same pointers in two arraysets")
    co.close()
    fsck = run_git(repo, "fsck", "--strict", "--full")
    assert fsck.returncode == 0, fsck.stderr


def test_validate_keys_is_validate_key_of_each():
    from hangar.records.keys import validate_key, validate_keys

    for keys in ([0, 5, 2], [3, "a", 7], ["x", "y"], [np.int64(4), 1], []):
        assert validate_keys(keys) == [validate_key(k) for k in keys]
    for bad in ([0, -1, 2], [1, True], [1, "a/b"], [2.0]):
        with pytest.raises(ValueError):
            validate_keys(bad)


def test_stored_checks_are_stored_check_of_each():
    from hangar.store.packs import stored_check, stored_checks

    payloads = [b"", b"a", memoryview(b"xyz" * 1000), np.arange(10, dtype=np.uint8)]
    assert stored_checks(payloads) == [stored_check(p) for p in payloads]


def test_blob_entries_are_serialize_tree_bytes(pointer_rows):
    from hangar.plumbing.trees import blob_entries

    names = sorted(f"{i}" for i in range(0, 3000, 7)) + ["a", "bb_-.x", "z" * 40]
    ranked = np.array([n.encode() for n in names])
    oids = np.random.default_rng(3).integers(0, 256, size=(len(names), 20), dtype=np.uint8)
    entries, starts = blob_entries(ranked, oids)
    expected = [b"100644 %s\x00%s" % (n.encode(), o.tobytes()) for n, o in zip(names, oids)]
    assert entries.tobytes() == b"".join(expected)
    assert np.diff(starts).tolist() == [len(e) for e in expected]


def test_id_order_sorts_bytewise_when_ids_share_their_first_8_bytes():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 256, size=(200, 20), dtype=np.uint8)
    ids[10:20, :8] = ids[0, :8]  # same first 8 bytes, different ids: the full sort
    ids[30] = ids[40] = ids[50]  # exact repeats
    order, tied = pack._id_order(ids)
    ranked = [bytes(r) for r in ids[order]]
    assert ranked == sorted(ranked)
    equal_next = [i for i in range(len(ranked) - 1) if ranked[i][:8] == ranked[i + 1][:8]]
    assert tied.tolist() == equal_next


@pytest.mark.parametrize("sizes", [[0], [1, 15, 16, 2047, 2048], [0xFFFE, 0xFFFF, 0x10000, 0x1FFFF, 3 * 0xFFFF + 5]])
def test_object_block_is_object_id_and_the_pack_entry_of_each(tmp_path, sizes, row_sums):
    # spans over and under the 64 KiB of one stored zlib block, empty ones included
    rng = np.random.default_rng(len(sizes))
    objs = [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in sizes]
    bounds = np.concatenate([[0], np.cumsum([len(o) for o in objs])]).astype(np.int64)
    block = pack.object_block(OBJ_TREE, b"".join(objs), bounds)
    assert [o.tobytes() for o in block.oids] == [object_id(OBJ_TREE, o) for o in objs]
    entries = [block.entries[a:b].tobytes() for a, b in zip(block.starts[:-1], block.starts[1:])]
    assert [int(c) for c in block.crcs] == [zlib.crc32(e) for e in entries]
    for obj, entry in zip(objs, entries):
        assert zlib.decompress(entry[entry.index(b"\x78\x01"):]) == obj
        name = write_pack(str(tmp_path), {object_id(OBJ_TREE, obj): (OBJ_TREE, obj)})
        assert (tmp_path / f"{name}.pack").read_bytes()[12:-20] == entry  # as the object-by-object writer
    batch = ObjectBatch()
    batch.add_block(block)
    assert batch.get(block.oids[-1].tobytes()) == (OBJ_TREE, objs[-1])


def test_object_block_refuses_bounds_outside_the_data():
    with pytest.raises(ValueError, match="bounds"):
        pack.object_block(OBJ_TREE, b"abc", np.array([0, 4], dtype=np.int64))
    with pytest.raises(ValueError, match="bounds"):
        pack.object_block(OBJ_TREE, b"abc", np.array([2, 1], dtype=np.int64))


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_fanout_tree_equals_apply_edits_and_git_reads_it(tmp_path, depth, row_sums):
    from hangar.plumbing.trees import blob_entries, fanout_tree
    from hangar.records.keys import fan_path

    names = [f"i:{i}" for i in range(700)]
    rng = np.random.default_rng(depth)
    oids = rng.integers(0, 256, size=(len(names), 20), dtype=np.uint8)
    nested: dict = {}
    for name, oid in zip(names, oids):
        d = nested
        for f in fan_path(name, depth):
            d = d.setdefault(f, {})
        d[name] = (MODE_BLOB, oid.tobytes())
    ref_batch = ObjectBatch()
    expected = apply_edits(None, None, nested, ref_batch)
    order = sorted(range(len(names)), key=lambda i: ([int(c, 16) for c in fan_path(names[i], depth)], names[i]))
    paths = [[int(c, 16) for c in fan_path(names[i], depth)] for i in order]
    leaf_starts = [k for k in range(len(order)) if k == 0 or paths[k] != paths[k - 1]]
    entries, starts = blob_entries(np.array([names[i].encode() for i in order]), oids[order])
    batch = ObjectBatch()
    root = fanout_tree(entries, starts, np.array([*leaf_starts, len(order)]),
                       np.array([paths[k] for k in leaf_starts], dtype=np.uint8).reshape(len(leaf_starts), depth),
                       batch)
    assert root == expected
    git_dir = tmp_path / "g.git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    write_pack(str(git_dir / "objects" / "pack"), batch.objects, batch.blocks)
    env = {**os.environ, "GIT_DIR": str(git_dir)}
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", root.hex()], env=env, capture_output=True,
                            text=True, check=True).stdout.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in listed) == sorted(names)
    assert len(batch) == len(ref_batch)
    assert fanout_tree(entries[:0], starts[:1], np.array([0]), np.zeros((0, depth), np.uint8), batch) is None


@pytest.mark.parametrize("case", ["same", "repeats", "reordered", "short", "empty"])
def test_align_rows_matches_in_order_in_c_and_numpy(case, row_sums):
    b = np.random.default_rng(4).integers(0, 256, size=(50, 32), dtype=np.uint8)
    a = {"same": b, "repeats": np.concatenate([b[:1], b[:20], b[5:6], b[20:], b[49:], b[:1]]),
         "reordered": b[::-1], "short": b[:10], "empty": b[:0]}[case]
    got = rowhash.align_rows(np.ascontiguousarray(a), b).tolist()
    expected, j = [], 0
    for row in a:  # the walk as documented: stop matching past len(a) - len(b) skips
        if expected.count(-1) <= len(a) - len(b) and j < len(b) and (row == b[j]).all():
            expected.append(j)
            j += 1
        else:
            expected.append(-1)
    assert got == expected
    if case == "repeats":
        assert got.count(-1) == 4 and max(got) == 49
