"""Repeated sequential get_batch passes (epochs): each pass checked, private and equal to the data.

A pass over back-to-back samples hands out rows of a fresh private mapping of the pack, building
the views while another thread checks every sample's stored checksum. These pin what a second
(and later) pass must keep: the values, that no returned array shares bytes with another one or
with the pack, that damage done to a pack after a clean pass is caught on the next, the ``out=``
form, and the int-key fast path of the location lookup.
"""

from __future__ import annotations

import enum

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.plumbing import rowhash
from hangar.store import sample_digest, tensorstore
from tests.repo_parts import flip_stored_byte

# (samples, shape): small samples (with threads, the other thread checks them all) and large ones
# (each thread checks about half); both over the 1 MiB from which back-to-back samples are mapped
SMALL = (3000, (28, 28))
LARGE = (400, (64, 64))


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


@pytest.fixture(params=["threads", "inline"])
def overlap(request, monkeypatch):
    """Mapped batches of these sizes are checked inline (under 4 MiB); ``threads`` makes them take
    the path of larger ones, views built while another thread checks."""
    if request.param == "threads":
        monkeypatch.setattr(tensorstore, "_OVERLAP_FROM", 0)
    return request.param


def _make(repo: Repository, n: int, shape: tuple[int, ...]) -> np.ndarray:
    data = np.random.default_rng(n).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=shape, dtype=np.uint8)
    co["x", list(range(n))] = data
    co.commit("one pack")
    co.close()
    return data


@pytest.mark.parametrize("n, shape", [SMALL, LARGE])
def test_later_epochs_return_the_data_and_no_two_arrays_share_bytes(repo, n, shape, overlap):
    data = _make(repo, n, shape)
    keys = list(range(n))
    with Repository(repo.path).checkout() as co:
        x = co.arraysets["x"]
        first = x.get_batch(keys)
        second = x.get_batch(keys)
        for got in (first, second):
            assert isinstance(got, list) and len(got) == n
            np.testing.assert_array_equal(np.stack(got), data)
            assert all(a.flags.writeable and a.shape == shape for a in got[:5])
        assert not np.shares_memory(first[0], second[0])  # a fresh mapping each pass
        assert not np.shares_memory(second[3], second[4])
        second[3][...] = 0  # the caller's own copy of that page: nothing else changes
        second[4] += 1
        np.testing.assert_array_equal(second[2], data[2])
        np.testing.assert_array_equal(second[5], data[5])
        np.testing.assert_array_equal(first[3], data[3])
        np.testing.assert_array_equal(x[3], data[3])
        third = x.get_batch(keys)
        np.testing.assert_array_equal(np.stack(third), data)


@pytest.mark.parametrize("n, shape", [SMALL, LARGE])
@pytest.mark.parametrize("where", ["first", "quarter", "last"])  # with LARGE: this thread's half, the other's
def test_a_byte_damaged_after_a_clean_epoch_is_caught_on_the_next(repo, n, shape, where, overlap):
    data = _make(repo, n, shape)
    k = {"first": 0, "quarter": n // 4, "last": n - 1}[where]
    keys = list(range(n))
    with Repository(repo.path).checkout() as co:
        x = co.arraysets["x"]
        np.testing.assert_array_equal(np.stack(x.get_batch(keys)), data)
        flip_stored_byte(repo, data[k])  # in the page cache too: the next mapping sees it
        with pytest.raises(CorruptDataError, match=sample_digest(data[k]).hex()[:16]):
            x.get_batch(keys)
        out = np.empty((n, *shape), dtype=np.uint8)
        with pytest.raises(CorruptDataError, match=sample_digest(data[k]).hex()[:16]):
            x.get_batch(keys, out=out)
        ok = [i for i in keys if i != k]
        np.testing.assert_array_equal(np.stack(x.get_batch(ok)), data[ok])


def test_out_is_refilled_on_every_epoch(repo):
    n, shape = SMALL
    data = _make(repo, n, shape)
    keys = list(range(n))
    out = np.zeros((n, *shape), dtype=np.uint8)
    with Repository(repo.path).checkout() as co:
        x = co.arraysets["x"]
        for _ in range(2):
            assert x.get_batch(keys, out=out) is out
            np.testing.assert_array_equal(out, data)
            out[:] = 0  # the caller reuses its buffer; the next pass fills it again
        assert not np.shares_memory(out, x.get_batch(keys)[0])


class _Key(enum.IntEnum):
    SEVEN = 7


@pytest.mark.parametrize("built", [True, False])
def test_int_keys_reads_plain_ints_only(monkeypatch, built):
    if built and not rowhash.available:
        pytest.skip("the C extension is not built")
    monkeypatch.setattr(rowhash, "available", built)
    got = rowhash.int_keys([3, -1, 2**63 - 1, -(2**63)])
    assert got is not None and got.dtype == np.int64
    assert got.tolist() == [3, -1, 2**63 - 1, -(2**63)]
    assert rowhash.int_keys((5, 6)).tolist() == [5, 6]  # type: ignore[union-attr]
    assert rowhash.int_keys([]).tolist() == []  # type: ignore[union-attr]
    for keys in ([1, True], [False], [2**63], [-(2**63) - 1], [1, "1"], [_Key.SEVEN], [np.int64(1)], [1.0]):
        assert rowhash.int_keys(keys) is None, keys
    assert rowhash.int_keys(iter([1, 2])) is None
    assert rowhash.int_keys(np.arange(3)) is None


def test_batches_of_any_key_form_read_the_same_rows(repo):
    """Plain ints go through int_keys; bools, int subclasses and numpy ints through the per-key
    lookup: same rows, and bools are no keys."""
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(3,), dtype=np.int64)
    data = {k: np.full(3, k, dtype=np.int64) for k in range(0, 40, 5)}  # not 0..n-1: a searched table
    for k, v in data.items():
        co["x", k] = v
    co.commit("gaps")
    co.close()
    with Repository(repo.path).checkout() as co:
        x = co.arraysets["x"]
        for keys in ([10, 5, 35], (10, 5, 35), [np.int64(10), 5, _Key.SEVEN.value * 5]):
            got = x.get_batch(keys)
            np.testing.assert_array_equal(np.stack(got), np.stack([data[int(k)] for k in keys]))
        with pytest.raises(KeyError, match="7"):
            x.get_batch([5, _Key.SEVEN])
        with pytest.raises(KeyError, match="True"):
            x.get_batch([5, True])
        with pytest.raises(KeyError, match="6"):
            x.get_batch([5, 6])


# ------------------------------------------------------------------ loaders: batched reads
@pytest.mark.parametrize("built", [True, False])
def test_gather_rows_checked_copies_checks_and_bounds(monkeypatch, built):
    if built and not rowhash.available:
        pytest.skip("the C extension is not built")
    monkeypatch.setattr(rowhash, "available", built)
    src = np.random.default_rng(3).integers(0, 256, size=4096, dtype=np.uint8)
    offs = np.array([100, 0, 4096 - 16, 100], dtype=np.int64)
    checks = np.array([rowhash.stored_check(src[o:o + 16]) for o in offs], dtype=np.uint64)
    rows = np.zeros((4, 16), dtype=np.uint8)
    assert rowhash.gather_rows_checked(src, offs, rows, checks) == -1
    np.testing.assert_array_equal(rows, np.stack([src[o:o + 16] for o in offs]))
    checks[2] ^= np.uint64(1)
    assert rowhash.gather_rows_checked(src, offs, rows, checks) == 2
    checks[2] = 0  # none recorded: not checked
    assert rowhash.gather_rows_checked(src, offs, rows, checks) == -1
    with pytest.raises(ValueError, match="outside"):
        rowhash.gather_rows_checked(src, np.array([0, 0, 0, 4096 - 15]), rows, checks)
    with pytest.raises(ValueError, match="one offset and one check per row"):
        rowhash.gather_rows_checked(src, offs[:3], rows, checks)


def _two_packs(repo: Repository, dtype: type = np.uint8) -> np.ndarray:
    """'x': 300 random (16, 16) samples, 0..199 in one commit (pack), 200..299 in a second."""
    rng = np.random.default_rng(11)  # random bytes either way: stored raw
    data = (rng.integers(0, 256, size=(300, 16, 16)) if dtype == np.uint8 else rng.standard_normal((300, 16, 16))
            ).astype(dtype)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(16, 16), dtype=dtype)
    co["x", list(range(200))] = data[:200]
    co.commit("first")
    co["x", list(range(200, 300))] = data[200:]
    co.commit("second")
    co.close()
    return data


@pytest.mark.slow  # imports torch (~1-2 s the first time in a process)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_torch_batches_are_gathered_checked_and_unaliased(repo, dtype):
    pytest.importorskip("torch")
    from hangar.dataloaders import make_torch_dataset

    data = _two_packs(repo, dtype)
    with Repository(repo.path).checkout() as co:
        ds = make_torch_dataset(co.arraysets["x"])
        order = np.random.default_rng(1).permutation(200).tolist()
        batch = ds.__getitems__(order[:64])  # one pack: one gather
        np.testing.assert_array_equal(np.stack([b.x for b in batch]), data[order[:64]])
        batch[0].x[...] = 0  # the caller's row: no other row, nor the pack, changes
        np.testing.assert_array_equal(batch[1].x, data[order[1]])
        np.testing.assert_array_equal(ds[order[0]].x, data[order[0]])
        mixed = [5, 250, 7, 299, 0, 1, 2, 3, 4]  # two packs: sample by sample, same values
        np.testing.assert_array_equal(np.stack([b.x for b in ds.__getitems__(mixed)]), data[mixed])
        flip_stored_byte(repo, data[order[10]])
        with pytest.raises(CorruptDataError, match="checksum"):
            ds.__getitems__(order[:64])
        np.testing.assert_array_equal(np.stack([b.x for b in ds.__getitems__(order[11:40])]), data[order[11:40]])


@pytest.mark.slow  # imports dask
@pytest.mark.parametrize("damaged, dtype", [(None, np.uint8), (None, np.float32), (3, np.uint8),
                                            (150, np.float32), (250, np.uint8)])
def test_dask_chunks_read_by_runs_and_check_every_sample(repo, damaged, dtype):
    pytest.importorskip("dask.array")
    from hangar.dataloaders import dask_array

    data = _two_packs(repo, dtype)
    if damaged is not None:
        flip_stored_byte(repo, data[damaged])
    with Repository(repo.path).checkout() as co:
        keys = list(range(100, 300)) + [4, 3, 2]  # a run in each pack, then samples out of order
        arr = dask_array(co.arraysets["x"], keys=keys, chunk_rows=150)
        if damaged is None:
            np.testing.assert_array_equal(arr.compute(scheduler="synchronous"), data[keys])
        else:
            with pytest.raises(CorruptDataError, match="checksum"):
                arr.compute(scheduler="synchronous")


@pytest.mark.parametrize("n_packs", [3, 40])  # a masked max per pack, or np.maximum.at beyond 16 packs
def test_table_extents_are_the_end_of_the_last_range_read_in_each_pack(n_packs):
    from hangar.store.readtable import LocationTable

    n = 500
    rng = np.random.default_rng(n_packs)
    pack_col = rng.integers(-1, n_packs - 1, size=n).astype(np.int32)  # -1: not stored here; the last pack unused
    offsets = rng.integers(0, 1 << 40, size=n).astype(np.uint64)
    lengths = rng.integers(0, 1 << 20, size=n).astype(np.uint64)
    table = LocationTable(np.arange(n, dtype=np.int64), [], np.zeros((n, 32), dtype=np.uint8),
                          np.ones((n, 1), dtype=np.int64), [f"p{i}" for i in range(n_packs)], pack_col, offsets,
                          lengths, lengths.copy(), np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.uint64))
    want = {f"p{i}": max([int(offsets[r] + lengths[r]) for r in range(n) if pack_col[r] == i], default=0)
            for i in range(n_packs)}
    assert table.extents() == want


def test_back_to_back_answers_what_comparing_the_columns_answers():
    """``LocationTable.back_to_back`` (map_samples' test of a consecutive batch, from a running
    count) against the column compares it replaced, for every range of a table with runs broken
    by another pack, a gap, a compressed row, a wrong length and a row not stored here."""
    from hangar.store.readtable import LocationTable

    size, n = 16, 40
    pack_col = np.zeros(n, dtype=np.int32)
    offsets = np.arange(n, dtype=np.uint64) * size
    rawlens = np.full(n, size, dtype=np.uint64)
    codec_col = np.zeros(n, dtype=np.uint8)
    pack_col[10:15] = 1  # another pack (its offsets continue: only the pack breaks the run)
    offsets[20:] += 8  # a gap before row 20
    codec_col[25] = 1  # compressed
    rawlens[30] = size + 1  # another length
    pack_col[35] = -1  # not stored here
    table = LocationTable(np.arange(n, dtype=np.int64), [], np.zeros((n, 32), dtype=np.uint8),
                          np.ones((n, 1), dtype=np.int64), ["p0", "p1"], pack_col, offsets, rawlens.copy(), rawlens,
                          codec_col, np.zeros(n, dtype=np.uint64))

    def compared(a: int, b: int) -> bool:
        pc, offs = pack_col[a:b], offsets[a:b]
        return bool(pc[0] >= 0 and (pc == pc[0]).all() and (np.diff(offs.astype(np.int64)) == size).all()
                    and (codec_col[a:b] == 0).all() and (rawlens[a:b] == size).all())

    got = {(a, b): table.back_to_back(a, b, size, 0) for a in range(n) for b in range(a + 1, n + 1)}
    assert got == {(a, b): compared(a, b) for a in range(n) for b in range(a + 1, n + 1)}
    assert got[0, 10] and got[10, 15] and got[15, 20] and not got[9, 11] and not got[19, 21]
    assert not table.back_to_back(0, 10, size + 1, 0)  # another size: the count is rebuilt for it
    assert table.back_to_back(30, 31, size + 1, 0)
