"""ArraysetDataReader.get_batch (process pools) and pickling of arrayset readers."""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository


def _sample(i: int) -> np.ndarray:
    return (np.arange(64, dtype=np.float32) * 0.5 + i).reshape(8, 8)


@pytest.fixture
def batch_repo(repo) -> Repository:
    """Arrayset 'raw' (random, stored raw) and 'packed' (compressible, lz4), int keys 0..39."""
    co = repo.checkout(write=True)
    raw = co.arraysets.init_arrayset("raw", shape=(8, 8), dtype=np.float32, backend="raw")
    packed = co.arraysets.init_arrayset("packed", shape=(8, 8), dtype=np.float32, backend="lz4")
    for i in range(40):
        raw[i] = _sample(i)
        packed[i] = np.zeros((8, 8), dtype=np.float32) + i
    co.commit("forty samples")
    co.close()
    return repo


def _no_pool(*args, **kwargs):
    raise AssertionError("a process pool was started")


def _first_value(aset, key):  # runs in a spawned process
    return float(aset[key].ravel()[0]), aset.name


@pytest.mark.slow
def test_get_batch_spawn_pool_keeps_the_order_of_names(batch_repo):
    co = batch_repo.checkout()
    names = [7, 39, 0, 7, 21, 3, 38, 1]
    for aset_name in ("raw", "packed"):
        aset = co.arraysets[aset_name]
        out = aset.get_batch(names, n_cpus=2, start_method="spawn")
        assert len(out) == len(names)
        for name, arr in zip(names, out):
            np.testing.assert_array_equal(arr, aset[name])
            assert arr.dtype == np.float32 and arr.shape == (8, 8)
    co.close()


def test_get_batch_fork_pool_after_parent_reads(batch_repo):
    co = batch_repo.checkout()
    aset = co.arraysets["raw"]
    expected = [aset[i] for i in range(40)]  # parent has open, cached file descriptors now
    out = aset.get_batch(list(range(39, -1, -1)), n_cpus=2, start_method="fork")
    for got, want in zip(out, reversed(expected)):
        np.testing.assert_array_equal(got, want)
    co.close()


def test_get_batch_missing_name_raises_keyerror_before_any_pool(batch_repo, monkeypatch):
    co = batch_repo.checkout()
    monkeypatch.setattr(hangar.arrayset.multiprocessing, "get_context", _no_pool)
    with pytest.raises(KeyError, match="'nope'"):
        co.arraysets["raw"].get_batch([1, 2, "nope"], n_cpus=2)
    co.close()


def test_get_batch_single_cpu_and_small_default_batches_read_in_process(batch_repo, monkeypatch):
    monkeypatch.setattr(hangar.arrayset.multiprocessing, "get_context", _no_pool)
    co = batch_repo.checkout()
    aset = co.arraysets["packed"]
    one = aset.get_batch([5, 4], n_cpus=1)
    default = aset.get_batch([5, 4])  # 512 bytes: far below the pool threshold
    for out in (one, default):
        assert [float(a[0, 0]) for a in out] == [5.0, 4.0]
    co.close()


def test_writer_get_batch_uses_one_process_and_sees_staged_samples(batch_repo, monkeypatch):
    monkeypatch.setattr(hangar.arrayset.multiprocessing, "get_context", _no_pool)
    co = batch_repo.checkout(write=True)
    raw = co.arraysets["raw"]
    raw[100] = _sample(100)
    out = raw.get_batch([100, 2], n_cpus=4)
    np.testing.assert_array_equal(out[0], _sample(100))
    np.testing.assert_array_equal(out[1], _sample(2))
    co.close()


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, match", [
    ({"n_cpus": 0}, "n_cpus"), ({"n_cpus": 1.5}, "n_cpus"), ({"n_cpus": True}, "n_cpus"),
    ({"start_method": "teleport"}, "teleport"),
])
def test_get_batch_rejects_bad_pool_arguments(batch_repo, kwargs, match):
    co = batch_repo.checkout()
    with pytest.raises(ValueError, match=match):
        co.arraysets["raw"].get_batch([1], **kwargs)
    co.close()


def test_reader_pickles_and_reopens_at_its_commit(batch_repo):
    co = batch_repo.checkout()
    aset = co.arraysets["raw"]
    blob = pickle.dumps(aset)
    assert len(blob) < 1000  # path, commit and name only: no open files, no data
    # move master on: the pickled reader still reads its own commit
    w = batch_repo.checkout(write=True)
    w.arraysets["raw"][0] = np.full((8, 8), -1, dtype=np.float32)
    w.commit("change sample 0")
    w.close()
    clone = pickle.loads(blob)
    assert clone is not aset and clone.name == "raw" and not clone.iswriteable
    np.testing.assert_array_equal(clone[0], _sample(0))
    assert len(clone) == 40
    co.close()
    assert batch_repo.checkout().arraysets["raw"][0][0, 0] == -1


@pytest.mark.slow
def test_reader_crosses_into_a_spawned_process(batch_repo):
    co = batch_repo.checkout()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_first_value, (co.arraysets["packed"], 17))
    assert got == (17.0, "packed")
    co.close()


def test_writer_arrayset_refuses_to_pickle(batch_repo):
    co = batch_repo.checkout(write=True)
    with pytest.raises(TypeError, match="write-enabled arrayset 'raw'"):
        pickle.dumps(co.arraysets["raw"])
    co.close()
