"""Shuffled batches of small samples gathered from the packs' kept mappings: right values in
the asked order, every stored checksum checked on the bytes returned, other paths unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import hangar.arrayset
import hangar.store.tensorstore as tensorstore
from hangar import Repository
from hangar.errors import CorruptDataError
from tests.repo_parts import flip_stored_byte

N, SHAPE = 2000, (128, 128)  # 16 KiB samples: 256 random keys of 2,000 lie > 64 KiB apart (scattered)


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


@pytest.fixture
def two_packs(repo) -> tuple[Repository, np.ndarray, np.ndarray]:
    """'x': N samples over two commits (two packs); the second commit interleaves 'x' with
    'y' samples of another size, so its 'x' offsets are not a multiple of the sample size."""
    rng = np.random.default_rng(11)
    data = rng.integers(0, 256, size=(N, *SHAPE), dtype=np.uint8)
    other = rng.integers(0, 256, size=(N, 5), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)
    co.arraysets.init_arrayset("y", shape=(5,), dtype=np.uint8)
    co["x", list(range(N // 2))] = data[:N // 2]
    co.commit("first")
    with co.arraysets["x"] as x, co.arraysets["y"] as y:
        for k in range(N // 2, N):
            x[k] = data[k]
            y[k] = other[k]
    co.commit("second")
    co.close()
    return Repository(repo.path), data, other


def _gathers(monkeypatch) -> list[int]:
    """Count the batches served by TensorStore._gather_mapped (calls that returned True)."""
    served: list[int] = []
    real = tensorstore.TensorStore._gather_mapped

    def counting(self, table, rows, flat, size, pc, offs):
        done = real(self, table, rows, flat, size, pc, offs)
        if done:
            served.append(len(rows))
        return done

    monkeypatch.setattr(tensorstore.TensorStore, "_gather_mapped", counting)
    return served


def test_shuffled_batches_over_two_packs_are_gathered_in_order(two_packs, monkeypatch):
    repo, data, _ = two_packs
    served = _gathers(monkeypatch)
    rng = np.random.default_rng(3)
    with repo.checkout() as co:
        x = co.arraysets["x"]
        for size in (8, 256):
            keys = rng.permutation(N)[:size].tolist()
            got = x.get_batch(keys)
            assert np.array_equal(np.stack(got), data[keys])
            out = np.empty((size, *SHAPE), np.uint8)
            assert x.get_batch(keys, out=out) is out
            assert np.array_equal(out, data[keys])
        one_pack = rng.permutation(N // 2)[:100].tolist()  # only the first (back-to-back) pack
        assert np.array_equal(np.stack(x.get_batch(one_pack)), data[one_pack])
    assert served == [8, 8, 256, 256, 100]


def test_a_flipped_byte_in_a_gathered_sample_is_an_error(two_packs, monkeypatch):
    repo, data, _ = two_packs
    served = _gathers(monkeypatch)
    for victim in (7, N - 3):  # one in each pack (the second: unaligned offsets)
        flip_stored_byte(repo, data[victim], at=-1)
        keys = [k for k in np.random.default_rng(victim).permutation(N)[:64].tolist() if k != victim] + [victim]
        with repo.checkout() as co:
            with pytest.raises(CorruptDataError):
                co.arraysets["x"].get_batch(keys)
            with pytest.raises(CorruptDataError):
                co.arraysets["x"].get_batch(keys, out=np.empty((len(keys), *SHAPE), np.uint8))
            fine = keys[:-1]
            assert np.array_equal(np.stack(co.arraysets["x"].get_batch(fine)), data[fine])
        flip_stored_byte(repo, data[victim], at=-1)  # repaired for the next victim
    assert served == [64, 64]  # the failing batches raised inside the gather; the clean ones were served


def test_written_arrays_do_not_reach_the_pack_or_each_other(two_packs):
    repo, data, _ = two_packs
    keys = np.random.default_rng(9).permutation(N)[:64].tolist()
    with repo.checkout() as co:
        got = co.arraysets["x"].get_batch(keys)
        got[0][...] = 0
        assert np.array_equal(got[1], data[keys[1]])
        again = co.arraysets["x"].get_batch(keys)
        assert np.array_equal(np.stack(again), data[keys])


def test_batches_that_are_not_scattered_or_too_small_use_the_range_reads(two_packs, monkeypatch):
    repo, data, _ = two_packs
    served = _gathers(monkeypatch)
    with repo.checkout() as co:
        x = co.arraysets["x"]
        assert np.array_equal(np.stack(x.get_batch(list(range(100, 400)))), data[100:400])  # one range
        everything = np.random.default_rng(4).permutation(N).tolist()  # shuffled, but dense: few ranges
        assert np.array_equal(np.stack(x.get_batch(everything)), data[everything])
        keys = [5, 900, 17, 1500]  # fewer than _GATHER_FROM_ROWS
        assert np.array_equal(np.stack(x.get_batch(keys)), data[keys])
    assert served == []
