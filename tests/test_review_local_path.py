"""Review of the local data path (stacked/loop staging, commit, reads): defects found by reviewer rA."""

from __future__ import annotations

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.store import sample_digest
from tests.test_review_store import _flip_last_byte, _to_format1


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    """Small arraysets: build a location table on the first read (as tests/test_bulk_reads.py)."""
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


def test_verify_reads_rehashes_a_scattered_batch_gathered_from_the_mapped_packs(repo):
    """A batch of small samples scattered over a pack (one range each: more than 64 KiB apart) is
    gathered from the pack's mapping (TensorStore._gather_mapped). With verify_reads on, its
    samples must be re-hashed like every other batch read: a repository written before the stored
    checksum (index format 1) has nothing else to catch a damaged sample."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(200, 4096), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("big", shape=(4096,), dtype=np.uint8)
    co["big", list(range(200))] = data
    co.commit("first")
    co.close()
    _to_format1(repo)
    _flip_last_byte(repo, data[100])
    keys = list(range(0, 200, 20))  # every 20th sample: 80 KiB apart, so ten scattered ranges
    with Repository(repo.path).checkout() as co:
        aset = co.arraysets["big"]
        store = aset.loader_view().store
        store.verify_reads = True
        with pytest.raises(CorruptDataError):
            store.read(sample_digest(data[100]), "|u1", (4096,))  # the path by digest
        got = aset.get_batch([k for k in keys if k != 100])  # healthy ones read (and the table built)
        assert all(np.array_equal(g, data[k]) for g, k in zip(got, [k for k in keys if k != 100]))
        with pytest.raises(CorruptDataError):
            aset.get_batch(keys)
