"""Contract suites every pack storage backend (and the tensor store over it) must pass.

Two pytest mixins, in the style of ``zarr.testing.store.StoreTests``: a backend's test module
subclasses them and supplies one fixture, ``storage_factory``, returning a callable that opens
a *new handle* onto one shared place (a directory, a Zarr store, a bucket prefix)::

    class TestMyPackStorage(PackStorageContract, TensorStoreContract):
        @pytest.fixture
        def storage_factory(self, tmp_path):
            return lambda: MyPackStorage(str(tmp_path / "data"))

Every test then runs against that backend. Handles the factory opens are closed after each test.
Separate handles stand in for separate processes: what one handle writes but has not finished
must be invisible through another. The suites use only the public ``PackStorage`` protocol
(``hangar.store.packs``) and ``TensorStore`` API, so they hold for any backend that honours them.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator

import numpy as np
import pytest

from hangar.errors import CorruptDataError, RemoteDataError
from hangar.store import TensorStore, sample_digest
from hangar.store.codecs import LZ4, RAW, ZSTD, CodecChooser
from hangar.store.digest import byte_view
from hangar.store.packs import INDEX_DTYPE, PackStorage, encode_index, new_pack_id, parse_index, stored_check

__all__ = ["PackStorageContract", "TensorStoreContract", "flip_stored_byte", "write_pack"]

#: each explicit arrayset backend and the codec it stores with
CODECS = {"raw": RAW, "lz4": LZ4, "zstd": ZSTD}


def write_pack(storage: PackStorage, payloads: list[bytes], pack_id: str | None = None) -> tuple[str, np.ndarray]:
    """Write ``payloads`` as one finished pack (raw records, digests made up); return its id and records."""
    pack_id = pack_id or new_pack_id()
    writer = storage.open_writer(pack_id)
    recs = np.zeros(len(payloads), dtype=INDEX_DTYPE)
    for i, payload in enumerate(payloads):
        recs[i]["digest"] = np.frombuffer(i.to_bytes(4, "little") + pack_id.encode()[:28].ljust(28, b"-"), np.uint8)
        recs[i]["offset"] = writer.append(payload)
        recs[i]["length"] = recs[i]["rawlen"] = len(payload)
        recs[i]["codec"] = RAW
        recs[i]["check"] = stored_check(payload)
    writer.finish(encode_index(recs), sum(map(len, payloads)))
    return pack_id, recs


def flip_stored_byte(storage: PackStorage, pack_id: str, offset: int) -> None:
    """Damage a finished pack in place: flip one stored byte and keep its index (a bad disk sector).

    Done through the protocol itself (the pack is rewritten under the same id), so it works on any
    backend; handles opened before may still read the old bytes: open a new one.
    """
    index = storage.read_index(pack_id)
    recs = parse_index(index, pack_id)
    nbytes = int((recs["offset"] + recs["length"]).max())
    data = bytearray(storage.read_range(pack_id, 0, nbytes))
    data[offset] ^= 0xFF
    writer = storage.open_writer(pack_id)
    writer.append(bytes(data))
    writer.finish(index, nbytes)


class _Handles:
    """The backend's ``storage_factory``, with every handle it opened closed at teardown."""

    @pytest.fixture
    def storage_factory(self) -> Callable[[], PackStorage]:
        raise NotImplementedError("a backend's contract test class defines the storage_factory fixture")

    @pytest.fixture
    def open_storage(self, storage_factory: Callable[[], PackStorage]) -> Iterator[Callable[[], PackStorage]]:
        opened: list[PackStorage] = []

        def open_one() -> PackStorage:
            opened.append(storage_factory())
            return opened[-1]

        yield open_one
        for handle in opened:
            handle.close()


class PackStorageContract(_Handles):
    """What the tensor store relies on from a ``PackStorage``: finished packs only, index last, ranges exact."""

    def test_pack_round_trip_through_a_new_handle(self, open_storage: Callable[[], PackStorage]) -> None:
        payloads = [b"first sample", bytes(range(256)) * 3, b"", b"last"]
        pack_id, recs = write_pack(open_storage(), payloads)
        for storage in (open_storage(), open_storage()):
            assert pack_id in storage.list_packs()
            got = parse_index(storage.read_index(pack_id), pack_id, storage.pack_size(pack_id))
            assert got.tobytes() == recs.tobytes()
            assert storage.pack_size(pack_id) in (None, sum(map(len, payloads)))  # None: not known cheaply
            for rec, payload in zip(recs, payloads):
                assert storage.read_range(pack_id, int(rec["offset"]), len(payload)) == payload
                out = bytearray(len(payload))
                storage.readinto(pack_id, int(rec["offset"]), memoryview(out))
                assert bytes(out) == payload

    def test_pack_without_index_is_invisible(self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        pack_id = new_pack_id()
        writer = storage.open_writer(pack_id)
        offset = writer.append(b"not finished")
        assert writer.read(offset, 12) == b"not finished"  # the writer reads its own open pack
        for handle in (storage, open_storage()):
            assert pack_id not in handle.list_packs()
            assert handle.pack_size(pack_id) is None
            with pytest.raises(FileNotFoundError):
                handle.read_index(pack_id)
            assert TensorStore(handle).damaged() == {}
        writer.finish(encode_index(np.zeros(0, INDEX_DTYPE)), 12)
        assert pack_id in open_storage().list_packs()

    def test_aborted_pack_leaves_nothing_visible(self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        writer = storage.open_writer(new_pack_id())
        writer.append(b"x" * 1000)
        writer.abort()
        assert storage.list_packs() == [] and open_storage().list_packs() == []
        assert storage.remove_dead_partials(min_age=0) == 0  # abort cleaned up after itself
        pack_id, _ = write_pack(storage, [b"after the abort"])
        assert open_storage().list_packs() == [pack_id]

    def test_listing_is_sorted_and_complete(self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        ids = [write_pack(storage, [bytes([i]) * 10])[0] for i in range(5)]
        assert storage.list_packs() == sorted(ids)
        assert open_storage().list_packs() == sorted(ids)

    def test_missing_pack_errors(self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        write_pack(storage, [b"something"])
        with pytest.raises(FileNotFoundError):
            storage.read_index("0" * 28)
        with pytest.raises(FileNotFoundError):
            storage.read_range("0" * 28, 0, 1)
        assert storage.pack_size("0" * 28) is None

    def test_replace_index_only_of_an_existing_pack(self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        pack_id, recs = write_pack(storage, [b"keep", b"drop"])
        storage.replace_index(pack_id, encode_index(recs[:1]))
        assert parse_index(open_storage().read_index(pack_id), pack_id).tobytes() == recs[:1].tobytes()
        # an index without its pack would publish records of bytes that were never written
        with pytest.raises(FileNotFoundError):
            storage.replace_index("0" * 28, encode_index(recs))
        assert open_storage().list_packs() == [pack_id]

    def test_dead_partials_sweep_keeps_live_writers_and_finished_packs(
            self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        done, _ = write_pack(storage, [b"finished"])
        live = storage.open_writer(new_pack_id())  # this process's pid: alive
        live.append(b"still being written")
        assert open_storage().remove_dead_partials(min_age=0) == 0
        live.finish(encode_index(np.zeros(0, INDEX_DTYPE)), 19)
        assert len(open_storage().list_packs()) == 2 and done in storage.list_packs()

    def test_close_twice_and_reopen(self, open_storage: Callable[[], PackStorage]) -> None:
        storage = open_storage()
        pack_id, _ = write_pack(storage, [b"durable"])
        assert storage.read_range(pack_id, 0, 7) == b"durable"
        storage.close()
        storage.close()
        assert open_storage().read_range(pack_id, 0, 7) == b"durable"

    def test_concurrent_readers_see_only_complete_packs(self, open_storage: Callable[[], PackStorage]) -> None:
        """Readers listing while a writer finishes packs: every pack they list is whole (index
        parses, every record reads back with its checksum), never half written."""
        writer_storage = open_storage()
        readers = [open_storage() for _ in range(2)]
        stop = threading.Event()
        errors: list[BaseException] = []
        seen: list[set[str]] = [set() for _ in readers]

        def read_all(storage: PackStorage, seen_here: set[str]) -> None:
            try:
                while True:
                    last = stop.is_set()  # one more full pass after the writer is done
                    for pack in storage.list_packs():
                        recs = parse_index(storage.read_index(pack), pack, storage.pack_size(pack))
                        for rec in recs:
                            data = storage.read_range(pack, int(rec["offset"]), int(rec["length"]))
                            assert stored_check(data) == int(rec["check"]), f"pack {pack} read back damaged"
                        seen_here.add(pack)
                    if last:
                        return
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=read_all, args=(r, s)) for r, s in zip(readers, seen)]
        for t in threads:
            t.start()
        rng = np.random.default_rng(0)
        try:
            written = {write_pack(writer_storage, [rng.bytes(int(n)) for n in rng.integers(1, 50_000, 8)])[0]
                       for _ in range(12)}
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        assert all(s == written for s in seen)


def _put(store: TensorStore, arr: np.ndarray, backend: str = "auto") -> bytes:
    digest = sample_digest(arr)
    store.put(digest, byte_view(arr), CodecChooser(backend))
    return digest


class TensorStoreContract(_Handles):
    """The tensor store's behaviour over the backend: round trips, dedup, visibility, damage detection."""

    @pytest.mark.parametrize("backend", ["raw", "lz4", "zstd", "auto"])
    def test_store_round_trip_every_codec(self, open_storage: Callable[[], PackStorage], backend: str) -> None:
        s = TensorStore(open_storage())
        arrays: list[np.ndarray] = [np.random.default_rng(0).random((3, 4)), np.zeros((64, 64), np.uint8),
                  np.arange(1000, dtype=np.int32), np.array(7.5)]  # empty samples: refused above
        digests = [_put(s, a, backend) for a in arrays]
        for when in ("pending", "flushed"):
            for d, a in zip(digests, arrays):
                got = s.read(d, a.dtype.str, a.shape)
                np.testing.assert_array_equal(got, a, err_msg=when)
                assert got.flags.writeable and got.dtype == a.dtype
            s.flush()
        if backend != "auto":
            assert {s.location(d).codec for d in digests} == {CODECS[backend]}
        fresh = TensorStore(open_storage())
        assert len(fresh) == len(arrays)
        for d, a in zip(digests, arrays):
            np.testing.assert_array_equal(fresh.read(d, a.dtype.str, a.shape, check=True), a)

    def test_store_unflushed_writes_are_invisible_to_other_stores(
            self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        d = _put(s, np.zeros(4))
        assert d in s and d not in TensorStore(open_storage())
        s.discard()
        assert d not in s and len(s) == 0
        s.flush()  # nothing pending: no empty pack
        assert open_storage().list_packs() == []

    def test_store_put_is_idempotent(self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        a = np.arange(10)
        assert s.put(sample_digest(a), byte_view(a), CodecChooser("auto")) is True
        assert s.put(sample_digest(a), byte_view(a), CodecChooser("zstd")) is False
        s.flush()
        assert s.put(sample_digest(a), byte_view(a), CodecChooser("auto")) is False
        other = TensorStore(open_storage())
        assert other.put(sample_digest(a), byte_view(a), CodecChooser("raw")) is False
        digests = [sample_digest(a), sample_digest(a + 1), sample_digest(a)]
        raws = [byte_view(a), byte_view(a + 1), byte_view(a)]
        assert other.put_many(digests, raws, CodecChooser("auto")) == 1  # one new, stored once
        other.flush()
        assert len(TensorStore(open_storage())) == 2

    def test_store_listing_and_sizes(self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        rnd = np.random.default_rng(3).integers(0, 255, 100_000, dtype=np.uint8)
        zeros = np.zeros(100_000, dtype=np.uint8)
        small = np.arange(6, dtype=np.float64).reshape(2, 3)
        flushed = [_put(s, rnd), _put(s, zeros)]
        s.flush()
        pending = _put(s, small, "raw")
        assert set(s.digests()) == {*flushed, pending} and len(s) == 3
        assert s.location(flushed[0]).length == 100_000 and s.location(flushed[0]).codec == RAW  # random: raw
        assert s.location(flushed[1]).length < 2_000  # compressible: compressed
        assert s.location(pending).rawlen == s.location(pending).length == small.nbytes
        assert set(TensorStore(open_storage()).digests()) == set(flushed)

    def test_store_missing_and_absent_reads(self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        d1 = _put(s, np.ones(3))
        s.flush()
        other = [bytes([i]) * 32 for i in range(3)]
        assert s.missing([other[2], d1, other[0], other[2]]) == [other[2], other[0]]
        with pytest.raises(RemoteDataError, match="fetch_data"):
            s.read(b"\x01" * 32, "<f8", (3,))
        with pytest.raises(RemoteDataError, match="fetch_data"):
            list(s.read_many([(d1, (3,)), (b"\x09" * 32, (3,))], np.dtype("<f8")))
        with pytest.raises(CorruptDataError, match="pointer says"):  # a shape that does not fit the bytes
            s.read(d1, "<f8", (4,))

    @pytest.mark.parametrize("backend", ["raw", "lz4", "zstd"])
    def test_store_flipped_byte_is_an_error_never_data(self, open_storage: Callable[[], PackStorage],
                                                       backend: str) -> None:
        s = TensorStore(open_storage())
        a = np.tile(np.arange(100, dtype=np.int32), 10)
        keep = np.arange(5, dtype=np.int8)
        d, d_keep = _put(s, a, backend), _put(s, keep, "raw")
        s.flush()
        loc = s.location(d)
        flip_stored_byte(open_storage(), loc.pack, loc.offset + loc.length // 2)
        fresh = TensorStore(open_storage())
        with pytest.raises(CorruptDataError, match="checksum"):
            fresh.read(d, a.dtype.str, a.shape)
        with pytest.raises(CorruptDataError, match="checksum"):
            list(fresh.read_many([(d, a.shape)], a.dtype))
        with pytest.raises(CorruptDataError, match="checksum"):
            fresh.read_stored(d)
        assert fresh.verify(d, a.dtype.str, a.shape) is False
        np.testing.assert_array_equal(fresh.read(d_keep, keep.dtype.str, keep.shape), keep)  # the rest reads

    def test_store_forget_then_store_again(self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        a, b = np.arange(7), np.arange(8)
        da, db = _put(s, a), _put(s, b)
        s.flush()
        sample = s.read_stored(da)
        assert s.forget([da]) == 1
        fresh = TensorStore(open_storage())
        assert da not in fresh and db in fresh
        assert fresh.put_stored(sample, a.dtype.str, a.shape) is True
        fresh.flush()
        np.testing.assert_array_equal(TensorStore(open_storage()).read(da, a.dtype.str, a.shape), a)

    def test_store_damaged_index_is_skipped_and_reported(self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        good = _put(s, np.arange(3))
        s.flush()
        bad = _put(s, np.arange(4))
        s.flush()
        bad_pack = s.location(bad).pack
        open_storage().replace_index(bad_pack, b"HNGRPIDX" + b"\x02\x00\x00\x00" + b"\x01")  # truncated header
        fresh = TensorStore(open_storage())
        assert list(fresh.damaged()) == [bad_pack]
        np.testing.assert_array_equal(fresh.read(good, np.arange(3).dtype.str, (3,)), np.arange(3))
        with pytest.raises(RemoteDataError, match="damaged"):
            fresh.read(bad, np.arange(4).dtype.str, (4,))

    @pytest.mark.parametrize("backend", ["raw", "lz4", "zstd"])
    def test_store_stored_form_transfer_checks_the_digest(self, open_storage: Callable[[], PackStorage],
                                                          backend: str) -> None:
        src, dst = TensorStore(open_storage()), TensorStore(open_storage())
        a = np.tile(np.arange(100, dtype=np.int32), 10)
        d = _put(src, a, backend)
        src.flush()
        src_copy = TensorStore(open_storage())
        sample = src_copy.read_stored(d)
        assert sample.codec == CODECS[backend] and sample.rawlen == a.nbytes
        assert dst.put_stored(sample, a.dtype.str, a.shape) is False  # one place: already there
        wrong = sample._replace(digest=b"\x00" * 32)
        with pytest.raises(CorruptDataError):
            dst.put_stored(wrong, a.dtype.str, a.shape)
        assert b"\x00" * 32 not in dst

    def test_store_read_many_matches_read(self, open_storage: Callable[[], PackStorage]) -> None:
        s = TensorStore(open_storage())
        rng = np.random.default_rng(7)
        arrays = [rng.integers(0, 255, (i % 4 + 1, 3), dtype=np.uint8) for i in range(25)]
        digests = [_put(s, a, "raw") for a in arrays[:10]]
        s.flush()
        digests += [_put(s, a) for a in arrays[10:]]  # some still pending in the open pack
        got = list(s.read_many(((d, a.shape) for d, a in zip(digests, arrays)), np.dtype(np.uint8), batch=4))
        assert len(got) == 25 and all((g == a).all() for g, a in zip(got, arrays))

    def test_store_sees_packs_other_handles_flush_later(self, open_storage: Callable[[], PackStorage]) -> None:
        reader, writer = TensorStore(open_storage()), TensorStore(open_storage())
        assert len(reader) == 0  # index loaded (empty) before the writer flushes
        a = np.arange(12, dtype=np.int16)
        d = _put(writer, a)
        writer.flush()
        np.testing.assert_array_equal(reader.read(d, a.dtype.str, a.shape), a)
        assert reader.missing([d]) == []

    def test_store_concurrent_readers_read_only_whole_samples(
            self, open_storage: Callable[[], PackStorage]) -> None:
        """Stores over other handles read while one flushes: every sample they find reads back whole."""
        writer = TensorStore(open_storage())
        readers = [TensorStore(open_storage()) for _ in range(2)]
        rng = np.random.default_rng(11)
        arrays = {}
        for _ in range(40):
            a = rng.integers(0, 1000, int(rng.integers(1, 5000)), dtype=np.int64)
            arrays[sample_digest(a)] = a
        stop = threading.Event()
        errors: list[BaseException] = []
        counts = [0 for _ in readers]

        def read_all(i: int) -> None:
            try:
                while True:
                    last = stop.is_set()
                    reader = readers[i]
                    reader.refresh()
                    found = [d for d in arrays if d in reader]
                    for d in found:
                        np.testing.assert_array_equal(reader.read(d, "<i8", arrays[d].shape, check=True), arrays[d])
                    counts[i] = len(found)
                    if last:
                        return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read_all, args=(i,)) for i in range(len(readers))]
        for t in threads:
            t.start()
        try:
            for i, (d, a) in enumerate(arrays.items()):
                writer.put(d, byte_view(a), CodecChooser("auto"))
                if i % 5 == 4:
                    writer.flush()
            writer.flush()
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        assert counts == [len(arrays)] * len(readers)
