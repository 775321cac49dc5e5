"""The add path before commit: stacked and per-sample adds, their digests, validation and pack writes."""

from __future__ import annotations

import blake3
import numpy as np
import pytest

from hangar import Repository
from hangar.errors import IndexFormError, InvalidSelectionError, SchemaMismatchError
from hangar.plumbing import rowhash
from hangar.store import digest


@pytest.fixture(params=["c", "python"])
def row_digests(request, monkeypatch):
    """Each implementation of ``digests_of_rows``: the C extension's and the blake3 package's."""
    if request.param == "c":
        if not rowhash.available:
            pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    else:
        monkeypatch.setattr(rowhash, "available", False)
    return digest.digests_of_rows


# widths around blake3's block (64) and chunk (1024) bounds, with the 10-byte suffix of (28, 28) uint8
@pytest.mark.parametrize("width", [1, 53, 54, 63, 64, 65, 784, 1014, 1015, 1024, 2048, 3000, 9000])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 17])
def test_blake3_rows_is_the_blake3_package_of_each_row(width, n):
    ext = pytest.importorskip("hangar.plumbing._rowhash", reason="not built (pip install -e . builds it)")
    rng = np.random.default_rng(width * 31 + n)
    buf = rng.integers(0, 256, size=n * width, dtype=np.uint8).tobytes()
    for suffix in (b"", b"||u1|28,28", bytes(range(80))):
        want = b"".join(blake3.blake3(buf[i * width:(i + 1) * width]).update(suffix).digest() for i in range(n))
        assert ext.blake3_rows(buf, width, suffix) == want


def test_blake3_rows_refuses_a_buffer_that_is_not_whole_rows():
    ext = pytest.importorskip("hangar.plumbing._rowhash", reason="not built (pip install -e . builds it)")
    with pytest.raises(ValueError, match="not rows of 10 bytes"):
        ext.blake3_rows(b"x" * 25, 10, b"")


@pytest.mark.parametrize(("dtype", "shape"), [("uint8", (28, 28)), ("float32", (3, 5)), ("int64", (200,))])
def test_digests_of_rows_are_the_sample_digest_of_each_row(row_digests, dtype, shape):
    stack = np.random.default_rng(3).integers(0, 100, size=(11, *shape)).astype(dtype)
    flat = memoryview(stack).cast("B")
    got = row_digests(flat, stack[0].nbytes, stack.dtype.str, shape)
    assert got == [digest.sample_digest(stack[i]) for i in range(len(stack))]


def _add(co, x, data, how):
    if how == "stacked":
        co["x", list(range(len(data)))] = data
    elif how == "with":
        with x:
            for i in range(len(data)):
                x[i] = data[i]
    else:
        for i in range(len(data)):
            x[i] = data[i]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random", "repeats", "compressible", "stored before"])
def test_stacked_loop_and_with_loop_give_the_same_records_and_data(tmp_path, run_git, kind):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    if kind == "repeats":
        data[5] = data[17] = data[299]
    elif kind == "compressible":  # auto's LZ4 probes pay off: stored compressed
        data[:] = 0
        data[:, 0, :] = np.arange(300, dtype=np.uint8)[:, None]
    trees = {}
    for how in ("stacked", "loop", "with"):
        (tmp_path / how).mkdir()
        repo = Repository(tmp_path / how, exists=False)
        repo.init(user_name="T", user_email="t@example.com")
        co = repo.checkout(write=True)
        x = co.arraysets.init_arrayset("x", shape=(28, 28), dtype=np.uint8)
        if kind == "stored before":  # every other sample is stored (and committed) already
            x[0] = data[0]
            co["x", list(range(0, 300, 2))] = np.ascontiguousarray(data[::2])
            co.commit("half")
        _add(co, x, data, how)
        commit = co.commit(how)
        co.close()
        r = repo.checkout(commit=commit)
        assert np.array_equal(np.stack(r.arraysets["x"].get_batch(list(range(len(data))))), data)
        r.close()
        trees[how] = run_git(repo, "rev-parse", f"{commit}^{{tree}}").stdout.strip()
        assert run_git(repo, "fsck", "--strict").returncode == 0
    assert trees["stacked"] == trees["loop"] == trees["with"]


BAD_STACKS = {
    "dtype": (np.zeros((4, 28, 28), dtype=np.int16), SchemaMismatchError),
    "shape": (np.zeros((4, 28, 27), dtype=np.uint8), SchemaMismatchError),
    "rank": (np.zeros((4, 784), dtype=np.uint8), SchemaMismatchError),
    "count": (np.zeros((3, 28, 28), dtype=np.uint8), IndexFormError),
    "not contiguous": (np.zeros((4, 28, 56), dtype=np.uint8)[:, :, ::2], SchemaMismatchError),
    "list, one bad": ([np.zeros((28, 28), dtype=np.uint8)] * 3 + [np.zeros((28, 28), dtype=np.int8)],
                      SchemaMismatchError),
    "list, too short": ([np.zeros((28, 28), dtype=np.uint8)] * 3, InvalidSelectionError),
    "not a sequence": ({0: np.zeros((28, 28), dtype=np.uint8)}, IndexFormError),
}


@pytest.mark.parametrize("bad", sorted(BAD_STACKS))
def test_a_bad_stacked_add_raises_and_stages_nothing(repo, bad):
    value, error = BAD_STACKS[bad]
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=(28, 28), dtype=np.uint8)
    x[100] = np.ones((28, 28), dtype=np.uint8)
    co.commit("one")
    store = x.loader_view().store
    with pytest.raises(error):
        co["x", [0, 1, 2, 3]] = value
    assert list(x.keys()) == [100]
    assert not store.has_unflushed()  # no sample bytes were written either
    assert co.diff.status() == "CLEAN"
    co.close()


def test_a_bad_sample_in_a_with_block_raises_at_once_and_the_good_ones_stay(repo):
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=(28, 28), dtype=np.uint8)
    with pytest.raises(SchemaMismatchError, match="dtype"), x:
        x[0] = np.ones((28, 28), dtype=np.uint8)
        x[1] = np.ones((28, 28), dtype=np.float32)
    assert list(x.keys()) == [0]
    co.close()


def test_a_stack_larger_than_a_pack_write_reads_back(repo):
    # rows of 4 KiB: more than one ~16 MiB block append, the block boundary inside the stack
    rng = np.random.default_rng(11)
    data = rng.integers(0, 256, size=(4100, 64, 64), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(64, 64), dtype=np.uint8)
    co["x", list(range(len(data)))] = data
    co.commit("big")
    co.close()
    r = repo.checkout()
    assert np.array_equal(np.stack(r.arraysets["x"].get_batch(list(range(len(data))))), data)
    r.close()


def test_adds_outside_a_with_block_are_seen_by_every_read_and_kept_by_close(repo):
    # small fixed-shape samples are held back outside ``with`` blocks too: reads store them first
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.int64)
    x[0] = np.arange(4)
    assert 0 in x and len(x) == 1
    x[1] = np.arange(4) + 1
    assert np.array_equal(x[1], np.arange(4) + 1)
    x[2] = np.arange(4) + 2
    assert list(x.keys()) == [0, 1, 2]
    x[3] = np.arange(4) + 3
    assert dict(x.loader_view().pointers()).keys() == {"i:0", "i:1", "i:2", "i:3"}
    x[4] = np.arange(4) + 4
    assert co.diff.status() == "DIRTY"
    x[5] = np.arange(4) + 5
    co.close()  # never committed: close makes the staging area durable, held samples included
    co = repo.checkout(write=True)
    x = co.arraysets["x"]
    assert sorted(x.keys()) == list(range(6))
    assert np.array_equal(x[5], np.arange(4) + 5)
    co.close()


def test_a_bad_sample_in_a_plain_loop_raises_and_the_earlier_ones_stay(repo):
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=(28, 28), dtype=np.uint8)
    for i in range(3):
        x[i] = np.full((28, 28), i, dtype=np.uint8)
    for bad_key, bad_value, error in [(3, np.zeros((28, 28), dtype=np.int8), SchemaMismatchError),
                                      (3, np.zeros((28, 27), dtype=np.uint8), SchemaMismatchError),
                                      (3, np.zeros((28, 56), dtype=np.uint8)[:, ::2], SchemaMismatchError),
                                      (-1, np.zeros((28, 28), dtype=np.uint8), ValueError),
                                      (True, np.zeros((28, 28), dtype=np.uint8), ValueError)]:
        with pytest.raises(error):
            x[bad_key] = bad_value
    assert sorted(x.keys()) == [0, 1, 2]
    co.commit("three")
    co.close()
    r = repo.checkout()
    assert [int(r["x", i][0, 0]) for i in range(3)] == [0, 1, 2]
    r.close()
