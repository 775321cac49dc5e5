"""Tensor store tests beyond the backend contract (tests/test_store_contracts.py runs that on every
backend): transfers between backends, the local layout on disk, the digest index."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from zarr.storage import MemoryStore

from hangar.errors import CorruptDataError
from hangar.store import TensorStore, sample_digest
from hangar.store.codecs import CodecChooser
from hangar.store.digest import byte_view
from hangar.store.packs import LocalPackStorage, ZarrPackStorage


@pytest.fixture(params=["local", "zarr-memory"])
def storage_factory(request, tmp_path):
    if request.param == "local":
        return lambda: LocalPackStorage(str(tmp_path / "data"))
    mem = MemoryStore()
    return lambda: ZarrPackStorage(mem)


def put(store, arr, backend="auto"):
    d = sample_digest(arr)
    store.put(d, byte_view(arr), CodecChooser(backend))
    return d





def test_digest_depends_on_dtype_and_shape():
    a = np.arange(16, dtype=np.uint8)
    assert sample_digest(a) != sample_digest(a.reshape(4, 4))
    assert sample_digest(a) != sample_digest(a.view(np.int8))
    assert sample_digest(a) == sample_digest(a.copy())




@pytest.mark.parametrize("backend", ["raw", "lz4", "zstd"])
def test_stored_form_transfer_between_backends_verifies_digest(storage_factory, backend):
    src = TensorStore(storage_factory())
    a = np.tile(np.arange(100, dtype=np.int32), 10)
    d = put(src, a, backend)
    src.flush()
    sample = src.read_stored(d)
    dst = TensorStore(ZarrPackStorage(MemoryStore()))
    assert dst.put_stored(sample, a.dtype.str, a.shape) is True
    dst.flush()
    np.testing.assert_array_equal(dst.read(d, a.dtype, a.shape), a)
    bad = sample._replace(digest=b"\x00" * 32)
    with pytest.raises(CorruptDataError):
        dst.put_stored(bad, a.dtype.str, a.shape)
    assert b"\x00" * 32 not in dst


def test_verify_detects_corrupted_bytes_on_disk(tmp_path):
    s = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    a = np.random.default_rng(1).integers(0, 255, 4096, dtype=np.uint8)
    d = put(s, a, "raw")
    s.flush()
    assert s.verify(d, a.dtype, a.shape)
    pack = s.storage.list_packs()[0]
    chunk = tmp_path / "data" / "packs" / pack / "c" / "0"
    os.chmod(chunk, 0o644)
    raw = bytearray(chunk.read_bytes())
    raw[10] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    fresh = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    assert not fresh.verify(d, a.dtype, a.shape)


def test_packs_are_readable_zarr_arrays(tmp_path):
    s = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    a = np.arange(1000, dtype=np.uint8)
    d = put(s, a, "raw")
    s.flush()
    loc = s.location(d)
    z = zarr.open_array(str(tmp_path / "data" / "packs" / loc.pack), mode="r")
    assert z.dtype == np.uint8
    np.testing.assert_array_equal(z[loc.offset:loc.offset + loc.length], a)
    root = zarr.open_group(str(tmp_path / "data"), mode="r")
    assert "packs" in root


def test_unfinished_pack_is_ignored(tmp_path):
    s = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    put(s, np.ones(100))
    s._writer._drain()  # bytes are on disk, but the pack has no index yet
    assert TensorStore(LocalPackStorage(str(tmp_path / "data"))).storage.list_packs() == []


@pytest.mark.slow
def test_many_small_samples_make_few_files(tmp_path):
    s = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    rng = np.random.default_rng(2)
    for _ in range(5000):
        put(s, rng.integers(0, 255, (28, 28), dtype=np.uint8))
    s.flush()
    files = sum(len(f) for _, _, f in os.walk(tmp_path / "data"))
    assert files <= 6 and len(s) == 5000


def _records(digests, pack_offset=0):
    from hangar.store.packs import INDEX_DTYPE

    recs = np.zeros(len(digests), dtype=INDEX_DTYPE)
    recs["digest"] = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    recs["offset"] = np.arange(len(digests)) * 10 + pack_offset
    recs["length"] = 10
    recs["rawlen"] = 10
    return recs  # add_pack takes parsed records (packs.parse_index) since the index has a header


def test_digest_index_over_large_small_and_recent_packs():
    from hangar.store import index as index_mod
    from hangar.store.index import DigestIndex, Location

    rng = np.random.default_rng(5)
    big = [rng.bytes(32) for _ in range(5000)]
    big[1] = big[0][:8] + rng.bytes(24)  # two digests sharing the 64-bit prefix
    small = [rng.bytes(32) for _ in range(10)]
    idx = DigestIndex()
    idx.add_pack("big", _records(big))
    idx.add_pack("small", _records(small, 7))
    recent = {rng.bytes(32): Location("new", 1, 2, 3, 0) for _ in range(5)}
    idx.update(recent)
    assert idx.get(big[1]) == Location("big", 10, 10, 10, 0)
    assert idx.get(big[0]) == Location("big", 0, 10, 10, 0)
    assert idx.get(big[4999]).offset == 49990
    assert idx.get(small[3]) == Location("small", 37, 10, 10, 0)
    assert all(d in idx for d in recent) and rng.bytes(32) not in idx
    assert len(idx) == 5015 and set(idx) == set(big) | set(small) | set(recent)
    # folding the recent dict into the sorted arrays keeps every answer
    old = index_mod._MERGE_AT
    index_mod._MERGE_AT = 3
    try:
        idx.update({rng.bytes(32): Location("newer", 5, 5, 5, 1)})
    finally:
        index_mod._MERGE_AT = old
    assert idx.get(small[3]) == Location("small", 37, 10, 10, 0)
    assert all(idx.get(d) == v for d, v in recent.items()) and len(idx) == 5016



def test_failed_pack_finish_is_never_retried_and_discard_recovers(tmp_path):
    s = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    d1 = put(s, np.arange(10))
    blocker = tmp_path / "data" / "packs" / s._pending_pack
    blocker.write_text("a file where the pack directory must go")  # makes finish() fail
    with pytest.raises(OSError):
        s.flush()
    assert s.failed is not None
    with pytest.raises(OSError, match="earlier write"):
        s.flush()  # not retried: a second fsync may falsely report success
    with pytest.raises(OSError, match="earlier write"):
        put(s, np.arange(11))
    s.discard()
    blocker.unlink()
    d2 = put(s, np.arange(12))
    s.flush()
    fresh = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    assert d2 in fresh and d1 not in fresh


def test_a_failed_background_flush_fails_the_pack_instead_of_publishing_it(tmp_path):
    """fdatasync errors are reported once per open file on Linux: one the background flush thread
    swallowed would let the final fsync succeed over lost pages. The writer raises it and never
    writes the pack's index (the commit point). A pipe makes fdatasync fail for real (EINVAL)."""
    from hangar.store.packs import _BackgroundSync

    storage = LocalPackStorage(str(tmp_path / "data"))
    writer = storage.open_writer("deadbeef")
    writer.append(b"x" * 1024)
    r, w = os.pipe()
    try:
        writer._syncer = _BackgroundSync(w)
        writer._syncer.request()
        # the thread ends after its failed fdatasync: wait for that (a finish() that came first
        # would stop the thread before it synced, and rightly publish: its own fsync succeeds)
        writer._syncer.thread.join(timeout=60)
        assert isinstance(writer._syncer.error, OSError)
        with pytest.raises(OSError):
            writer.finish(b"", 1024)
        assert not os.path.exists(tmp_path / "data" / "packs" / "deadbeef" / "index")
        assert "deadbeef" not in storage.list_packs()
        writer.abort()
    finally:
        os.close(r)
        os.close(w)


def test_may_hold_any_sees_every_digest_added_since_its_last_answer(monkeypatch):
    """may_hold_any keeps the sorted prefixes of recently added digests between calls (a fetch asks
    once per received run); each update, add_pack and fold must still be seen by the next call."""
    from hangar.store import index as index_mod
    from hangar.store.digest import digest_prefixes
    from hangar.store.index import DigestIndex, Location

    monkeypatch.setattr(index_mod, "_MERGE_AT", 5)  # folds after a few updates
    rng = np.random.default_rng(7)
    idx = DigestIndex()
    added: list[bytes] = []
    for step in range(12):
        new = [rng.bytes(32) for _ in range(step % 3 + 1)]
        unseen = digest_prefixes(np.frombuffer(b"".join(new), dtype=np.uint8).reshape(-1, 32))
        assert not idx.may_hold_any(np.sort(unseen))  # asked before they are added: the cache is built
        idx.update({d: Location("p", i, 1, 1, 0, 1) for i, d in enumerate(new)})
        added += new
        for d in added:  # each digest added so far, found after the update (and after folds)
            assert idx.may_hold_any(digest_prefixes(np.frombuffer(d, dtype=np.uint8).reshape(1, 32)))
