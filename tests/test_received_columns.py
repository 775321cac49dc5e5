"""Received ranges recorded as columns (``TensorStore.put_verified`` of a new, distinct range).

Samples appended this way must read back (before and after the flush, from this store and a
fresh one), be stored once when the same range (or part of it) arrives again, and leave
nothing visible when discarded.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar.store import codecs
from hangar.store.packs import LocalPackStorage
from hangar.store.tensorstore import TensorStore, VerifiedRun, verify_range
from tests.test_range_verify import SHAPE, samples


def _run(n: int, codec: int, seed: int = 0) -> VerifiedRun:
    digests, codec_ids, rawlens, lengths, block = samples(n, codec, seed)
    return verify_range(digests, codec_ids, rawlens, lengths, memoryview(block), "|u1", SHAPE)


def _arrays(n: int, seed: int = 0) -> list[np.ndarray]:
    block = samples(n, codecs.RAW, seed)[4]
    return [np.frombuffer(block[i * 784:(i + 1) * 784], dtype=np.uint8).reshape(SHAPE) for i in range(n)]


@pytest.mark.parametrize("codec", [codecs.RAW, codecs.LZ4, codecs.ZSTD])
def test_a_received_range_reads_back_before_and_after_the_flush(tmp_path, codec):
    store = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    run = _run(40, codec)
    assert store.put_verified(run) == 40
    assert store._pending_map == {} and len(store._pending_blocks) == 1  # columns, no Location per sample
    want = _arrays(40)
    for d, a in zip(run.digests, want):
        assert np.array_equal(store.read(d, "|u1", SHAPE), a)
    store.flush()
    fresh = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    locs = fresh.locations(run.digests)
    assert [loc.codec for loc in locs] == run.codecs and [loc.length for loc in locs] == run.lengths
    for d, a in zip(run.digests, want):
        assert np.array_equal(fresh.read(d, "|u1", SHAPE), a)


def test_a_range_received_twice_or_overlapping_is_stored_once(tmp_path):
    store = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    assert store.put_verified(_run(30, codecs.LZ4)) == 30
    assert store.put_verified(_run(30, codecs.LZ4)) == 0  # the same samples again: pending already
    store.flush()
    assert store.put_verified(_run(30, codecs.LZ4)) == 0  # indexed now
    bigger = _run(45, codecs.LZ4)  # the same 30 first, then 15 new
    assert store.put_verified(bigger) == 15
    store.flush()
    fresh = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    assert all(loc is not None for loc in fresh.locations(bigger.digests))
    packs = {loc.pack for loc in fresh.locations(bigger.digests)}
    assert len(packs) == 2


def test_a_discarded_range_leaves_nothing(tmp_path):
    store = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    run = _run(20, codecs.LZ4)
    store.put_verified(run)
    store.discard()
    assert store.locations(run.digests) == [None] * 20
    store.flush()
    assert TensorStore(LocalPackStorage(str(tmp_path / "data"))).locations(run.digests) == [None] * 20
