"""Content-addressed tensor store: digest -> sample bytes, packed, append-only."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import compress, repeat
from math import prod
from operator import itemgetter, not_
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Union

import numpy as np
from xxhash import xxh3_64_intdigest as _xxh3

from hangar.errors import CorruptDataError, NotPicklableError, RemoteDataError, StoreFailedError
from hangar.plumbing import rowhash
from hangar.store import codecs
from hangar.store.digest import (
    any_shared,
    byte_view,
    digest_array_of_rows,
    digest_of_parts,
    digest_prefixes,
    digests_of_parts,
    digests_of_rows,
)
from hangar.store.index import DigestIndex, Location
from hangar.store.packs import (
    INDEX_DTYPE,
    PackStorage,
    PackWriter,
    encode_index,
    new_pack_id,
    parse_index,
    stored_check,
    stored_checks,
)
from hangar.store.readtable import LocationTable, prune_cache

_LOCATION_FIELD = {f: itemgetter(Location._fields.index(f)) for f in Location._fields}
#: finish the open pack once it holds this many bytes
PACK_TARGET_BYTES = 1 << 30
#: re-hash every sample read (costs 2-3x a page-cache read: blake3 ~3 us per 784 B, ~40 us per 256 KiB)
VERIFY_READS = os.environ.get("HANGAR_VERIFY_READS", "") not in ("", "0")
#: location tables kept in memory per store (one per arrayset and samples tree read)
_TABLES_IN_MEMORY = 16
#: bulk reads of at least this many bytes lying back to back in a pack are mapped, not copied
#: (copying 47 MB into fresh memory: ~27 ms; mapping it: <1 ms; below ~1 MiB the mmap and munmap
#: calls and page-table setup cost about what the copy does)
_MAP_FROM = 1 << 20
#: :meth:`TensorStore._views_checked` hashes beside the views in another thread from batches of this
#: many bytes (below, the views and hashes take well under a ms)
_OVERLAP_FROM = 4 << 20
#: a received run of at least this many samples is recorded as columns (:meth:`TensorStore._append_new_range`)
_COLUMNS_FROM = 32
#: a batch read coalesces samples whose pack ranges are at most this far apart into one read
_GAP = 64 << 10
#: and reads at most this much in one call
_SPAN = 16 << 20
#: bulk reads check the stored checksums of samples at least this large in two threads
_THREADED_CHECK_FROM = 32 << 10
#: and reads them in ranges of at most this much, checking one while reading the next
_PIPELINE_SPAN = 4 << 20
#: a batch of samples up to this size scattered over their packs (more than one coalesced range per
#: four samples) is gathered from the packs' kept mappings (TensorStore._gather_mapped) ...
_GATHER_UPTO = 64 << 10
#: ... when it has at least this many samples
_GATHER_FROM_ROWS = 8


def _nothing() -> None:
    """What :func:`hangar.plumbing.rowhash.check_rows_beside` runs beside the helper where the
    caller has nothing else to do: both threads hash."""


def check_stored(loc: Location, data: bytes | memoryview | np.ndarray, digest: bytes) -> None:
    """Raise ``CorruptDataError`` unless ``data`` (a sample's stored bytes) match the checksum of ``loc``.

    The one check every read path makes (single reads, bulk reads, transfers): a flipped bit in a
    pack is an error, never returned as data. Records of format-1 packs carry no checksum.
    """
    check = loc.check
    if check and (_xxh3(data) or 1) != check:  # stored_check, inlined: this runs once per sample read
        raise damaged_sample(digest, loc.pack, loc.offset)


def damaged_sample(digest: bytes, pack: str, offset: int) -> CorruptDataError:
    """The error of stored bytes that do not match their recorded checksum."""
    return CorruptDataError(
        f"stored bytes of sample digest {digest.hex()[:16]}... do not match their checksum (damaged, in pack "
        f"{pack} at offset {offset}); run `hangar fsck --repair` to fetch them again from a remote")


class StoredSample(NamedTuple):
    """A sample as kept in the store: what the remote protocol moves."""

    digest: bytes
    codec: int
    rawlen: int
    payload: bytes


#: a dtype as its numpy string (``"<f4"``) or a ``numpy.dtype``
DTypeArg = Union[str, np.dtype]


class PendingBlock(NamedTuple):
    """Raw rows of one width appended back to back to the open pack, their locations as columns
    (what :meth:`TensorStore.put_stack_array` keeps instead of a ``Location`` per row)."""

    pack: str
    digests: np.ndarray  #: (n, 32) uint8
    start: int  #: pack offset of the first row
    width: int  #: bytes per row (raw: stored length = raw length)
    checks: np.ndarray  #: uint64 stored checks
    #: a received range (:meth:`TensorStore.put_verified`): each row's uint64 offset, stored length,
    #: raw length and uint8 codec as columns (``start`` and ``width`` then unused); None: raw rows
    columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
class VerifiedRun(NamedTuple):
    """Received samples whose bytes :func:`verify_received` checked against their digests."""

    digests: list[bytes]
    codecs: list[int]
    rawlens: list[int]
    lengths: list[int]
    payloads: list[Any]
    #: the payloads back to back (a received pack range), or None
    block: memoryview | None


def verify_received(digests: list[bytes], codec_ids: list[int], rawlens: list[int], lengths: list[int],
                    payloads: list[Any], dtype: str, shape: tuple[int, ...],
                    block: memoryview | None = None, *, checks: list[int] | None = None,
                    into: list[memoryview] | None = None) -> VerifiedRun:
    """Check received samples of one dtype and shape before any of them is stored or used: the
    one verification of bytes from a remote (hangar server, bucket fetch, dask workers).

    Each must claim the raw size dtype x shape makes (checked before anything is allocated),
    a known codec, decode into a buffer of exactly that size, and re-hash to its digest;
    otherwise ``CorruptDataError`` naming the sample. Runs without the GIL-bound store lock,
    so parallel transfer streams hash at once.

    Parameters
    ----------
    block
        The payloads back to back, in order (optional; kept in the result for one write).
    checks
        The pack index's stored-bytes checksums: each payload is checked first (as
        :func:`check_stored`). A fetch that stores the bytes compares the checksum its store
        computes instead of hashing twice.
    into
        Byte buffers of the raw size, one per sample: the samples are decoded there (a reader
        that uses them without storing them) instead of into temporary buffers.
    """
    try:
        expected = np.dtype(dtype).itemsize * prod(shape)
    except TypeError as exc:
        raise CorruptDataError(f"received samples have an invalid dtype {dtype!r}") from exc
    raw_codec = codecs.RAW
    for d, codec, rawlen, length, payload in zip(digests, codec_ids, rawlens, lengths, payloads):
        if rawlen != expected or codec not in (codecs.RAW, codecs.LZ4, codecs.ZSTD) \
                or (codec == raw_codec and length != expected) or len(payload) != length:
            raise CorruptDataError(f"received sample {d.hex()[:16]}... claims {rawlen} raw bytes (codec {codec}, "
                                   f"{length} stored), its dtype {dtype} and shape {shape} make {expected}")
    if checks is not None:
        for d, check, payload in zip(digests, checks, payloads):
            if check and (_xxh3(payload) or 1) != check:
                raise CorruptDataError(f"received sample {d.hex()[:16]}... does not match its stored-bytes checksum "
                                       "(damaged in the remote's pack)")
    if into is not None:
        for d, codec, payload, row in zip(digests, codec_ids, payloads, into):
            try:
                codecs.decode_into(codec, payload, row)
            except CorruptDataError as exc:
                raise CorruptDataError(f"received sample {d.hex()[:16]}...: {exc}") from None
        raws: list[Any] = list(into)
    else:
        raws = payloads if all(c == raw_codec for c in codec_ids) else codecs.decode_many(codec_ids, payloads, expected)
    for d, got in zip(digests, digests_of_parts(raws, dtype, shape)):
        if got != d:
            raise CorruptDataError(f"received sample {d.hex()[:16]}... does not match its digest")
    return VerifiedRun(digests, codec_ids, rawlens, lengths, payloads, block)


def verify_range(digests: list[bytes], codec_ids: np.ndarray, rawlens: np.ndarray, lengths: np.ndarray,
                 block: memoryview, dtype: str, shape: tuple[int, ...]) -> VerifiedRun:
    """:func:`verify_received` of samples whose stored bytes lie back to back in ``block``
    (a received pack range), given as columns: one vectorised check of the claims and, for
    rows of up to ~1 KiB, one C call hashing every row.

    ``codec_ids``, ``rawlens`` and ``lengths`` hold one entry per digest. The same checks as
    :func:`verify_received`, in the same order: every sample must claim the raw size dtype x
    shape makes and a known codec, the lengths must add up to ``len(block)`` (checked before
    anything is decoded or allocated), each must decode into exactly that size and re-hash to
    its digest; otherwise ``CorruptDataError`` naming the sample and nothing is returned.

    Measured (60,000 x (28, 28) LZ4 samples in runs of ~1 MiB): ~2 us a sample, against
    ~4-6 us through :func:`verify_received` (a per-sample blake3 call and payload view).
    """
    try:
        expected = np.dtype(dtype).itemsize * prod(shape)
    except TypeError as exc:
        raise CorruptDataError(f"received samples have an invalid dtype {dtype!r}") from exc
    n = len(digests)
    codec_ids = np.asarray(codec_ids)
    rawlens = np.asarray(rawlens, dtype=np.uint64)
    lengths = np.asarray(lengths, dtype=np.uint64)
    if not (len(codec_ids) == len(rawlens) == len(lengths) == n):
        raise CorruptDataError(f"a received range names {n} samples but describes {len(lengths)}")
    raw = codec_ids == codecs.RAW
    bad = (rawlens != expected) | ~np.isin(codec_ids, (codecs.RAW, codecs.LZ4, codecs.ZSTD)) \
        | (raw & (lengths != expected))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CorruptDataError(f"received sample {digests[k].hex()[:16]}... claims {int(rawlens[k])} raw bytes "
                               f"(codec {int(codec_ids[k])}, {int(lengths[k])} stored), its dtype {dtype} and "
                               f"shape {shape} make {expected}")
    length_list = lengths.tolist()
    # summed as Python ints (a uint64 sum wraps: lengths of 2**64 - k and k + len(block) passed
    # while the int64 spans cut from them were the true ones, and ~2**64 was recorded)
    if sum(length_list) != len(block):
        raise CorruptDataError(f"a received range holds {len(block)} bytes; its {n} samples claim "
                               f"{sum(length_list)}")
    starts = (np.cumsum(lengths) - lengths).astype(np.int64)
    if bool(raw.all()):  # the block is the rows themselves
        got = digests_of_rows(block, expected, dtype, shape) if n else []
        payloads = list(map(block.__getitem__, map(slice, starts.tolist(), (starts + expected).tolist())))
    else:
        raws = codecs.decode_spans(codec_ids, block, starts, lengths, expected)
        payloads = list(map(block.__getitem__, map(slice, starts.tolist(), np.cumsum(lengths).tolist())))
        if expected <= _ROWS_JOINED_UPTO:  # joined (a copy of ~1 KiB a row) for one hashing call
            got = digests_of_rows(memoryview(b"".join(raws)), expected, dtype, shape)
        else:
            got = digests_of_parts(raws, dtype, shape)
    if got != digests:
        k = next(i for i, (a, b) in enumerate(zip(got, digests)) if a != b)
        raise CorruptDataError(f"received bytes do not match digest {digests[k].hex()}")
    return VerifiedRun(digests, codec_ids.tolist(), rawlens.tolist(), length_list, payloads, block)


#: decoded rows up to this size are joined and hashed in one C call by :func:`verify_range`
#: (larger ones are hashed one by one: the copy would cost more than the calls it saves)
_ROWS_JOINED_UPTO = 1 << 10


class TensorStore:
    """Digest -> bytes, with dedup, compression where it pays and durable packs.

    New samples go to one open pack; ``flush()`` finishes it (fsync, index written
    last). Until then they are readable from this object but from no other.
    With ``verify_reads`` (default: env ``HANGAR_VERIFY_READS=1``) every ``read`` re-hashes.
    """

    verify_reads: bool = VERIFY_READS

    def __init__(self, storage: PackStorage) -> None:
        self.storage = storage
        self._index: DigestIndex | None = None
        self._loaded_packs: set[str] = set()
        self._index_lock = threading.RLock()  # readers may share a store across threads
        #: pack id -> why its index was skipped (damaged, not a regular file): fsck reports these
        self.damaged_packs: dict[str, str] = {}
        #: a failed pack write or fsync: the open pack's samples may not be durable, so nothing
        #: more is written or flushed into it until ``discard()``
        self.failed: BaseException | None = None
        self._writer: PackWriter | None = None
        self._pending_map: dict[bytes, Location] = {}
        #: rows appended by put_stack_array, as columns; folded into ``_pending_map`` on first
        #: use of :attr:`_pending` (reads, lookups, other writes), so map entries always come first
        self._pending_blocks: list[PendingBlock] = []
        self._blocks_ranked = np.empty(0, dtype=np.uint64)  #: the blocks' digest prefixes, sorted
        self._pending_pack = ""
        self._pending_bytes = 0
        #: (pack, index records) of the last flush, until taken (:meth:`take_flushed_columns`)
        self._last_flush: tuple[str, np.ndarray] | None = None
        self._tables: dict[str, LocationTable] = {}
        #: the threads writing kept tables to the on-disk cache (see :meth:`keep_table`)
        self._saving: list[threading.Thread] = []
        #: called with ``[(digest, dtype, shape), ...]`` of samples a read lacks, to store them
        #: (lazy reads from a data remote); ``None``: a missing sample raises ``RemoteDataError``
        #: and returns the ids of the packs it wrote
        self.lazy_source: Callable[[list[tuple[bytes, str, tuple[int, ...]]]], list[str]] | None = None

    def fetch_missing(self, items: list[tuple[bytes, str, tuple[int, ...]]]) -> bool:
        """Have :attr:`lazy_source` store the samples of ``items`` not stored here; True when it ran
        (the index then knows them), False when there is no lazy source or nothing was missing."""
        if self.lazy_source is None:
            return False
        locs = self.locations([d for d, _, _ in items], durable_only=True)
        lacking = [it for it, loc in zip(items, locs) if loc is None]
        if not lacking:
            return False
        packs = self.lazy_source(list({d: (d, dt, s) for d, dt, s in lacking}.values()))
        self.adopt_packs(packs)
        return True

    def adopt_packs(self, packs: Iterable[str]) -> None:
        """Add packs written by another store object into this store's index, without listing the
        store (one lazy read writes one small pack: relisting thousands of packs after each would cost
        more than the read)."""
        with self._index_lock:
            if self._index is None:
                return  # loaded with them on first use
            for pack in packs:
                if pack not in self._loaded_packs:
                    self._add_pack(self._index, pack)
                    self._loaded_packs.add(pack)

    @property
    def _pending(self) -> dict[bytes, Location]:
        """Digest -> location of every sample written since the last flush (blocks folded in)."""
        if self._pending_blocks:
            self._fold_blocks()
        return self._pending_map

    @_pending.setter
    def _pending(self, value: dict[bytes, Location]) -> None:
        self._pending_blocks = []
        self._blocks_ranked = np.empty(0, dtype=np.uint64)
        self._pending_map = value

    def _fold_blocks(self) -> None:
        blocks, self._pending_blocks = self._pending_blocks, []
        self._blocks_ranked = np.empty(0, dtype=np.uint64)
        for b in blocks:
            n = len(b.digests)
            raw = b.digests.tobytes()
            if b.columns is not None:
                offsets, lengths, rawlens, codec_ids = (c.tolist() for c in b.columns)
                self._pending_map.update(zip((raw[i:i + 32] for i in range(0, 32 * n, 32)), map(
                    tuple.__new__, repeat(Location), zip(repeat(b.pack), offsets, lengths, rawlens, codec_ids,
                                                         b.checks.tolist()))))
                continue
            self._pending_map.update(zip((raw[i:i + 32] for i in range(0, 32 * n, 32)), map(
                tuple.__new__, repeat(Location), zip(repeat(b.pack), range(b.start, b.start + n * b.width, b.width),
                                                     repeat(b.width), repeat(b.width), repeat(codecs.RAW),
                                                     b.checks.tolist()))))

    # ----------------------------------------------------------------- index
    def _load_index(self) -> DigestIndex:
        index = self._index
        if index is None:
            with self._index_lock:
                if self._index is None:
                    fresh, loaded = DigestIndex(), set()
                    self.damaged_packs = {}
                    for pack in self.storage.list_packs():
                        self._add_pack(fresh, pack)
                        loaded.add(pack)
                    self._loaded_packs = loaded
                    self._index = fresh  # published only once complete
                index = self._index
        return index

    def _load_new_packs(self) -> bool:
        """Pick up packs other processes wrote; rebuild when some vanished (gc compacted them)."""
        with self._index_lock:
            index = self._load_index()
            packs = self.storage.list_packs()
            open_pack = {self._pending_pack} if self._writer is not None else set()
            if not self._loaded_packs <= set(packs) | open_pack:
                # a gc elsewhere removed packs: digests we think we have may be gone, so an add
                # must not be deduplicated against them
                self._index = None
                self._load_index()
                self._tables.clear()  # and tables in memory may name the removed packs
                return True
            new = [p for p in packs if p not in self._loaded_packs]
            for pack in new:
                self._add_pack(index, pack)
                self._loaded_packs.add(pack)
            return bool(new)

    def _add_pack(self, index: DigestIndex, pack: str) -> None:
        """Load one pack's index, checked; a damaged one is skipped (and listed) so the rest stays readable."""
        where = getattr(self.storage, "index_path", lambda p: p)(pack)
        try:
            recs = parse_index(self.storage.read_index(pack), where, self.storage.pack_size(pack))
        except FileNotFoundError:
            return  # removed by a gc since listed
        except CorruptDataError as exc:
            self.damaged_packs[pack] = str(exc)
            return
        index.add_pack(pack, recs)

    def damaged(self) -> dict[str, str]:
        """Pack id -> why its index was skipped (not a regular file, records outside the pack, ...)."""
        self._load_index()
        self.refresh()
        return dict(self.damaged_packs)

    def forget(self, digests: Iterable[bytes]) -> int:
        """Drop the index records of ``digests`` (damaged bytes) so they count as not stored; return how many.

        Each pack index holding one is replaced atomically without it (the pack's data file is
        untouched); a later ``fetch_data`` or ``put_stored`` then stores good bytes anew.
        """
        drop = set(digests)
        if not drop:
            return 0
        dropped = 0
        with self._index_lock:
            for pack in self.storage.list_packs():
                if pack in self.damaged_packs:
                    continue
                try:
                    recs = parse_index(self.storage.read_index(pack), pack)
                except (FileNotFoundError, CorruptDataError):
                    continue
                raw = recs["digest"].tobytes()
                gone = np.fromiter((raw[i:i + 32] in drop for i in range(0, len(raw), 32)), bool, len(recs))
                if gone.any():
                    self.storage.replace_index(pack, encode_index(recs[~gone]))
                    dropped += int(gone.sum())
            self._index = None  # reloaded without them on next use
            if dropped:
                self.drop_tables()  # they locate the dropped (damaged) records, in packs still present
        return dropped

    def refresh(self) -> None:
        """Catch up with packs written or removed (by any process) since the index was loaded."""
        if self._index is not None:
            self._load_new_packs()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._pending or digest in self._load_index()

    def missing(self, digests: Iterable[bytes]) -> list[bytes]:
        """The digests of ``digests`` that are not stored here (order kept, no repeats)."""
        unique = list(dict.fromkeys(digests))
        return [d for d, loc in zip(unique, self.locations(unique)) if loc is None]

    def digests(self) -> Iterator[bytes]:
        yield from self._load_index()
        yield from self._pending

    def __len__(self) -> int:
        return len(self._load_index()) + len(self._pending)

    # ----------------------------------------------------------------- write
    def _open_writer(self) -> PackWriter:
        if self._writer is None:
            self._pending_pack = new_pack_id()
            self._writer = self.storage.open_writer(self._pending_pack)
        return self._writer

    def _check_failed(self) -> None:
        if self.failed is not None:
            raise StoreFailedError(
                f"an earlier write to the tensor store failed ({self.failed!r}); the samples "
                "staged since the last commit were not saved: reset the staging area") from self.failed

    def _append(self, digest: bytes, codec: int, rawlen: int, payload: bytes | memoryview) -> None:
        self._check_failed()
        writer = self._open_writer()
        off = writer.append(payload)
        # tuple.__new__ builds the Location in C (its NamedTuple constructor is a Python function)
        self._pending[digest] = tuple.__new__(
            Location, (self._pending_pack, off, len(payload), rawlen, codec, stored_check(payload)))
        self._pending_bytes += len(payload)
        if self._pending_bytes >= PACK_TARGET_BYTES:
            self.flush()

    def put(self, digest: bytes, raw: memoryview, chooser: codecs.CodecChooser) -> bool:
        """Store a sample's raw bytes (``byte_view(arr)``) under its digest; False if already stored."""
        if digest in self._pending or digest in self._load_index():
            return False
        codec, payload = chooser.encode(raw)
        self._append(digest, codec, len(raw), payload)
        return True

    def put_many(self, digests: list[bytes], raws: list[memoryview], chooser: codecs.CodecChooser) -> int:
        """:meth:`put` for many samples with one vectorised index search; returns how many were new.

        The new samples are found, encoded (:meth:`CodecChooser.encode_many`) and appended in
        chunks of ~16 MiB as one joined write each, their locations entered with one
        ``dict.update``: ~2 µs per small sample less than a :meth:`put` each.
        """
        missing = list(compress(range(len(digests)), map(not_, self.locations(digests))))
        # a digest repeated within the batch is stored once: keep each one's first row
        first = dict(zip(map(digests.__getitem__, reversed(missing)), reversed(missing)))
        rows = missing if len(first) == len(missing) else sorted(first.values())
        if not rows:
            return 0
        per = max(1, self._BATCH_BYTES // max(len(raws[rows[0]]), 1))
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            chosen = list(map(raws.__getitem__, chunk))
            codec_ids, payloads = chooser.encode_many(chosen)
            self._append_many(list(map(digests.__getitem__, chunk)), payloads, list(map(len, chosen)), codec_ids)
        return len(rows)

    def put_rows(self, raws: list[memoryview], dtype: str, shape: tuple[int, ...],
                 chooser: codecs.CodecChooser) -> list[bytes]:
        """Digest and :meth:`put_many` samples of one dtype and shape; returns their digests.

        Large samples are hashed a chunk ahead in a second thread (blake3 releases the GIL)
        while this one writes the previous chunk, so hashing hides behind the disk writes.
        """
        size = len(raws[0]) if raws else 0
        per = max(1, self._BATCH_BYTES // max(size, 1))
        if size < self._OVERLAP_FROM or len(raws) <= per:
            digests = digests_of_parts(raws, dtype, shape)
            self.put_many(digests, raws, chooser)
            return digests
        chunks = [raws[i:i + per] for i in range(0, len(raws), per)]
        out: list[bytes] = []
        with ThreadPoolExecutor(1, thread_name_prefix="hangar-hash") as pool:
            ahead = pool.submit(digests_of_parts, chunks[0], dtype, shape)
            for k, chunk in enumerate(chunks):
                digests = ahead.result()
                if k + 1 < len(chunks):
                    ahead = pool.submit(digests_of_parts, chunks[k + 1], dtype, shape)
                self.put_many(digests, chunk, chooser)
                out += digests
        return out

    def put_stack(self, flat: memoryview, n: int, dtype: str, shape: tuple[int, ...],
                  chooser: codecs.CodecChooser) -> list[bytes]:
        """Digest and store the ``n`` equal rows of ``flat`` (the bytes of a C-contiguous stack of
        samples of one dtype and shape); returns their digests, in order.

        Small rows are hashed in one C call (:func:`digests_of_rows`); when every row is new,
        distinct and stored raw (random data: ``auto``'s probes find nothing to gain), each
        ~16 MiB of the stack is appended as it lies, without a per-row payload or a joined
        copy. Otherwise the rows go through :meth:`put_many` (large ones: :meth:`put_rows`).
        """
        width = len(flat) // n if n else 0
        if width >= self._OVERLAP_FROM and len(flat) > self._BATCH_BYTES and rowhash.available:
            return self._put_large_rows(flat, n, width, dtype, shape, chooser)
        if width >= self._OVERLAP_FROM or not width:  # large rows, no rows, or rows of 0 bytes
            return self.put_rows([flat[i * width:(i + 1) * width] for i in range(n)], dtype, shape, chooser)
        digests = digests_of_rows(flat, width, dtype, shape)
        raws = [flat[i * width:(i + 1) * width] for i in range(n)]
        if any(self.locations(digests)) or len(set(digests)) != n:
            self.put_many(digests, raws, chooser)
            return digests
        per = max(1, self._BATCH_BYTES // width)
        for a in range(0, n, per):
            b = min(n, a + per)
            codec_ids, payloads = chooser.encode_many(raws[a:b])
            if codec_ids.count(codecs.RAW) == b - a:
                self._append_block(digests[a:b], flat[a * width:b * width], width, stored_checks(raws[a:b]))
            else:
                self._append_many(digests[a:b], payloads, [width] * (b - a), codec_ids)
        return digests

    def put_stack_array(self, flat: memoryview, n: int, dtype: str, shape: tuple[int, ...],
                        chooser: codecs.CodecChooser) -> np.ndarray:
        """:meth:`put_stack`, returning the digests as one ``(n, 32)`` uint8 array.

        When the rows are small, new (not indexed, not written since the last flush), distinct
        and stored raw, no Python object is made per row: digests, membership tests, stored
        checks and locations stay arrays (:class:`PendingBlock`) until something looks one up.
        Otherwise it is :meth:`put_stack`.
        """
        width = len(flat) // n if n else 0
        if 0 < width < self._OVERLAP_FROM and rowhash.available:
            digests = digest_array_of_rows(flat, width, dtype, shape)
            prefixes = digest_prefixes(digests)
            ranked = np.sort(prefixes)  # distinct test: ~1 ms at 60,000 (np.unique's hashing took ~20)
            if not bool((ranked[1:] == ranked[:-1]).any()) and not self._may_hold_any(ranked):
                self._put_new_rows(flat, width, digests, chooser)
                # two sorted runs: the stable sort (timsort) merges them in one pass
                merged = np.concatenate([self._blocks_ranked, ranked])
                merged.sort(kind="stable")
                self._blocks_ranked = merged
                return digests
            # repeated rows, or rows stored already: the per-row path dedups them exactly
            self.put_many(self._rows_as_bytes(digests), [flat[i * width:(i + 1) * width] for i in range(n)], chooser)
            return digests
        listed = self.put_stack(flat, n, dtype, shape, chooser)
        return np.frombuffer(b"".join(listed), dtype=np.uint8).reshape(n, 32)

    def _put_large_rows(self, flat: memoryview, n: int, width: int, dtype: str, shape: tuple[int, ...],
                        chooser: codecs.CodecChooser) -> list[bytes]:
        """:meth:`put_stack` of large rows (``width >= _OVERLAP_FROM``, several ~16 MiB chunks of them).

        A second thread computes a chunk's digests (blake3) and stored checks (xxh3 of the rows, one C
        call without the GIL) while this one writes the chunk before: W3's 268 MB is ~56 ms of blake3
        and ~25 ms of xxh3 CPU here, against ~66 ms of CPU in the writes (the page-cache copy), so the
        two threads carry about equal shares instead of 56 : 91. When a chunk's rows are new, distinct
        and stored raw, they are recorded with the checks computed ahead; otherwise the chunk goes the
        per-row way (:meth:`put_many`, or the codec's payloads), as :meth:`put_rows` does. Same bytes,
        digests, offsets and checks as :meth:`put_rows`.
        """
        per = max(1, self._BATCH_BYTES // width)
        bounds = [(a, min(n, a + per)) for a in range(0, n, per)]

        def digest_and_check(a: int, b: int) -> tuple[list[bytes], np.ndarray]:
            block = flat[a * width:b * width]
            return digests_of_rows(block, width, dtype, shape), rowhash.stored_check_rows(block, width)

        out: list[bytes] = []
        with ThreadPoolExecutor(1, thread_name_prefix="hangar-hash") as pool:
            ahead = pool.submit(digest_and_check, *bounds[0])
            for k, (a, b) in enumerate(bounds):
                digests, checks = ahead.result()
                if k + 1 < len(bounds):
                    ahead = pool.submit(digest_and_check, *bounds[k + 1])
                raws = [flat[i * width:(i + 1) * width] for i in range(a, b)]
                out += digests
                if len(set(digests)) != b - a or any(self.locations(digests)):
                    self.put_many(digests, raws, chooser)  # repeats or stored rows: deduplicated row by row
                    continue
                codec_ids, payloads = chooser.encode_many(raws)
                if codec_ids.count(codecs.RAW) == b - a:
                    self._append_block(digests, flat[a * width:b * width], width, checks.tolist(), pieces=True)
                else:
                    self._append_many(digests, payloads, [width] * (b - a), codec_ids)
        return out

    @staticmethod
    def _rows_as_bytes(digests: np.ndarray) -> list[bytes]:
        raw = digests.tobytes()
        return [raw[i:i + 32] for i in range(0, len(raw), 32)]

    def _may_hold_any(self, prefixes: np.ndarray) -> bool:
        """False when none of the digests with these prefixes is stored or pending (vectorised)."""
        index = self._load_index()
        if index.may_hold_any(prefixes) or (self._load_new_packs() and self._index is not None
                                            and self._index.may_hold_any(prefixes)):
            return True
        if any_shared(prefixes, self._blocks_ranked):
            return True
        if self._pending_map:
            known = np.frombuffer(b"".join(d[:8] for d in self._pending_map), dtype=">u8").astype(np.uint64)
            return any_shared(prefixes, np.sort(known))
        return False

    def _put_new_rows(self, flat: memoryview, width: int, digests: np.ndarray, chooser: codecs.CodecChooser) -> None:
        """Append the new, distinct rows of ``flat`` in ~16 MiB writes, raw ones as :class:`PendingBlock`."""
        n = len(digests)
        per = max(1, self._BATCH_BYTES // width)
        for a in range(0, n, per):
            b = min(n, a + per)
            block = flat[a * width:b * width]
            encoded = chooser.encode_rows(block, width)
            if encoded is not None:  # compressible rows: stored one by one
                self._append_many(self._rows_as_bytes(digests[a:b]), encoded[1], [width] * (b - a), encoded[0])
                continue
            self._check_failed()
            start = self._open_writer().append(block)
            self._pending_blocks.append(PendingBlock(self._pending_pack, digests[a:b], start, width,
                                                     rowhash.stored_check_rows(block, width)))
            self._pending_bytes += len(block)
            if self._pending_bytes >= PACK_TARGET_BYTES:
                self.flush()

    def _append_block(self, digests: list[bytes], block: memoryview, width: int, checks: list[int],
                      pieces: bool = False) -> None:
        """Append raw rows lying back to back in ``block`` as one write, with their stored checks
        (``checks[i]``: row ``i``'s).

        ``pieces``: in writes of :attr:`_WRITE_PIECE` bytes instead, each straight from the caller's
        array (large rows; rows may straddle pieces: the bytes in the pack are the same).
        scripts/bench_disk.py, 301 MB of W2r's rows made durable with write-back every 8 MiB (7 rounds,
        load 12): a pwrite per 150,528-byte row took 0.153 / 0.178 s CPU (min / median) and ran at
        790 / 401 MB/s (best / median); 4 MiB pieces 0.086 / 0.098 s and 1,241 / 789 MB/s; 1 and 16 MiB
        pieces 0.086-0.099 s. (Whole 16.7 MB blocks had measured worse than rows before, in runs this
        VM's first touch of returned memory inflated: see scripts/bench_peers.py ``settle``.)
        """
        self._check_failed()
        writer = self._open_writer()
        if pieces:
            piece = self._WRITE_PIECE
            start = writer.append(block[:piece])
            for at in range(piece, len(block), piece):
                writer.append(block[at:at + piece])
        else:
            start = writer.append(block)
        self._pending.update(zip(digests, map(tuple.__new__, repeat(Location), zip(
            repeat(self._pending_pack), range(start, start + len(block), width), repeat(width), repeat(width),
            repeat(codecs.RAW), checks))))
        self._pending_bytes += len(block)
        if self._pending_bytes >= PACK_TARGET_BYTES:
            self.flush()

    #: put_rows overlaps hashing with writing for samples at least this large (below it the
    #: per-chunk thread hand-off costs more than it hides)
    _OVERLAP_FROM = 64 << 10

    #: large rows stacked in the caller's array reach the pack writer in writes of this many bytes
    #: (:meth:`_append_block`)
    _WRITE_PIECE = 4 << 20

    #: put_many hands the pack writer this many bytes at a time (large samples are written
    #: without a copy by the writer anyway; small ones are joined into writes of this size)
    _BATCH_BYTES = 16 << 20

    def _append_many(self, digests: list[bytes], payloads: list[bytes | memoryview], rawlens: list[int],
                     codec_ids: list[int]) -> None:
        self._check_failed()
        writer = self._open_writer()
        lengths = list(map(len, payloads))
        if len(payloads) == 1 or min(lengths) >= self._DIRECT_BYTES:
            offsets = [writer.append(p) for p in payloads]
        else:
            start = writer.append(b"".join(payloads))
            offsets = np.cumsum([start, *lengths[:-1]]).tolist()
        # Locations built by tuple.__new__ in C (the NamedTuple constructor is a Python function)
        self._pending.update(zip(digests, map(tuple.__new__, repeat(Location), zip(
            repeat(self._pending_pack), offsets, lengths, rawlens, codec_ids, stored_checks(payloads)))))
        self._pending_bytes += sum(lengths)
        if self._pending_bytes >= PACK_TARGET_BYTES:
            self.flush()

    #: payloads at least this large are appended one by one (the writer writes them in place)
    _DIRECT_BYTES = 64 << 10

    def put_stored(self, sample: StoredSample, dtype: str, shape: tuple[int, ...]) -> bool:
        """Store bytes received in stored form after re-hashing them; False if present.

        Raises ``CorruptDataError`` (and stores nothing) when the digest does not match.
        """
        if sample.digest in self:
            return False
        try:
            expected = np.dtype(dtype).itemsize * prod(shape)
        except TypeError as exc:
            raise CorruptDataError(f"received sample has an invalid dtype {dtype!r}") from exc
        if sample.rawlen != expected or sample.codec not in (codecs.RAW, codecs.LZ4, codecs.ZSTD):
            # checked before allocating anything: a hostile record may claim any size
            raise CorruptDataError(f"received sample {sample.digest.hex()[:16]}... claims {sample.rawlen} raw bytes "
                                   f"(codec {sample.codec}), its dtype {dtype} and shape {shape} make {expected}")
        if sample.codec == codecs.RAW:  # hash the payload itself: no copy
            raw = memoryview(sample.payload) if len(sample.payload) == sample.rawlen else None
        else:
            raw = memoryview(np.empty(sample.rawlen, dtype=np.uint8))
            codecs.decode_into(sample.codec, sample.payload, raw)
        if raw is None or digest_of_parts(raw, dtype, shape) != sample.digest:
            raise CorruptDataError(f"received bytes do not match digest {sample.digest.hex()}")
        self._append(sample.digest, sample.codec, sample.rawlen, sample.payload)
        return True

    def put_stored_many(self, samples: list[StoredSample], dtype: str, shape: tuple[int, ...]) -> int:
        """:meth:`put_stored` for many received samples of one dtype and shape; returns how many were new.

        Every sample is checked (:func:`verify_received`) before any of them is written: one
        mismatch raises ``CorruptDataError`` and stores none of them.
        """
        payloads = [s.payload for s in samples]
        return self.put_verified(verify_received(
            [s.digest for s in samples], [s.codec for s in samples], [s.rawlen for s in samples],
            list(map(len, payloads)), payloads, dtype, shape))

    def put_verified(self, run: "VerifiedRun") -> int:
        """Append samples :func:`verify_received` checked; returns how many were new.

        When all are new and their stored bytes lie back to back in ``run.block`` (a received
        pack range), they are appended as one write. They become visible at :meth:`flush`.
        """
        if self._append_new_range(run):
            return len(run.digests)
        # no rescan of the packs directory for digests not found (``locations`` does one): that
        # cost ~0.3 ms a run, a third of a 1 MiB run's write; a sample another process stored
        # meanwhile is stored twice, which content addressing allows (gc keeps one)
        found = self._load_index().get_many(run.digests)
        if self._pending:
            found = [self._pending.get(d, loc) for d, loc in zip(run.digests, found)]
        if run.block is not None and not any(found) and len(set(run.digests)) == len(run.digests):
            return self._append_run(run, run.block, stored_checks(run.payloads))  # payloads: block's spans
        first: dict[bytes, int] = {}
        for i, (d, loc) in enumerate(zip(run.digests, found)):
            if loc is None:
                first.setdefault(d, i)
        rows = sorted(first.values())
        if rows:
            self._append_many([run.digests[i] for i in rows], [run.payloads[i] for i in rows],
                              [run.rawlens[i] for i in rows], [run.codecs[i] for i in rows])
        return len(rows)

    def put_verified_checked(self, run: "VerifiedRun", checks: list[int]) -> int:
        """:meth:`put_verified` for samples whose stored-bytes checks (``checks``, one per sample,
        in ``run`` order) the caller has compared with the bytes already: they are recorded as
        given instead of hashed a second time; returns how many were new.

        A bucket fetch checks each received range in one C call before handing it over (xxh3 of
        every sample again on the writer thread was ~0.06 s of a 1.05 s fetch_data of 301 MB
        here). A ``0`` check (none recorded), a block with samples stored already, or no block:
        :meth:`put_verified`, which hashes.
        """
        if run.block is None or not all(checks) or len(checks) != len(run.digests) \
                or len(set(run.digests)) != len(run.digests):
            return self.put_verified(run)
        found = self._load_index().get_many(run.digests)
        if any(found) or any(d in self._pending for d in run.digests):
            return self.put_verified(run)
        return self._append_run(run, run.block, checks)

    def _append_new_range(self, run: "VerifiedRun") -> bool:
        """Append a verified received range whose samples are distinct and certainly new (their
        digest prefixes in neither the index, the pending blocks nor the pending map) as one write,
        its locations kept as columns (a :class:`PendingBlock` with ``columns``): no ``Location``
        or dict entry per sample until something looks one up. False (nothing done) otherwise.

        60,000 received MNIST-like samples: the per-sample lookups, ``Location`` tuples and dict
        entries of :meth:`_append_run` and the flush's per-field walk over them took ~0.1-0.2 s.
        """
        n = len(run.digests)
        block = run.block
        # runs of a few large samples (a 1 MiB run holds ~7 of (224,224,3)): the ~12 numpy calls
        # here cost more than the per-sample records they save (588 such runs: ~0.07 s more CPU)
        if block is None or n < _COLUMNS_FROM or len(run.lengths) != n:
            return False
        digests = np.frombuffer(b"".join(run.digests), dtype=np.uint8).reshape(n, 32)
        ranked = np.sort(digest_prefixes(digests))
        if bool((ranked[1:] == ranked[:-1]).any()) or self._load_index().may_hold_any(ranked) \
                or any_shared(ranked, self._blocks_ranked) \
                or (self._pending_map and any(d in self._pending_map for d in run.digests)):
            return False  # the exact per-sample path dedups
        # no rescan of the packs directory (put_verified's reason): a sample another process
        # stored meanwhile is stored twice, which content addressing allows
        checks = np.asarray(stored_checks(run.payloads), dtype=np.uint64)
        self._check_failed()
        start = self._open_writer().append(block)
        lengths = np.asarray(run.lengths, dtype=np.uint64)
        offsets = np.cumsum(lengths) - lengths + np.uint64(start)
        self._pending_blocks.append(PendingBlock(
            self._pending_pack, digests, start, 0, checks,
            (offsets, lengths, np.asarray(run.rawlens, dtype=np.uint64), np.asarray(run.codecs, dtype=np.uint8))))
        merged = np.concatenate([self._blocks_ranked, ranked])
        merged.sort(kind="stable")
        self._blocks_ranked = merged
        self._pending_bytes += len(block)
        if self._pending_bytes >= PACK_TARGET_BYTES:
            self.flush()
        return True

    def _append_run(self, run: "VerifiedRun", block: memoryview, checks: list[int]) -> int:
        """Append ``block`` (all of ``run``'s samples, new, back to back) with one write and record
        each sample with its stored check ``checks[i]``; returns how many were added."""
        self._check_failed()
        start = self._open_writer().append(block)
        lengths = np.asarray(run.lengths, dtype=np.int64)
        offsets = (np.cumsum(lengths) - lengths + start).tolist()
        self._pending.update(zip(run.digests, map(tuple.__new__, repeat(Location), zip(
            repeat(self._pending_pack), offsets, run.lengths, run.rawlens, run.codecs, checks))))
        self._pending_bytes += len(block)
        if self._pending_bytes >= PACK_TARGET_BYTES:
            self.flush()
        return len(run.digests)

    def has_unflushed(self) -> bool:
        """True when samples were written since the last :meth:`flush` (a pack is open)."""
        return self._writer is not None

    def flush(self) -> str | None:
        """Make every sample written so far durable and visible to other processes; return the id
        of the pack finished (``None`` when nothing was pending)."""
        if self._writer is None:
            return None
        self._check_failed()
        self._last_flush = None
        pending, blocks = self._pending_map, self._pending_blocks  # map entries first (see _pending)
        recs = np.zeros(len(pending) + sum(len(b.digests) for b in blocks), dtype=INDEX_DTYPE)
        nbytes = 0
        if pending:
            recs["digest"][:len(pending)] = np.frombuffer(b"".join(pending), dtype=np.uint8).reshape(-1, 32)
            locs = pending.values()
            for field in ("offset", "length", "rawlen", "codec", "check"):  # C loops: 3x faster than list-building
                recs[field][:len(pending)] = np.fromiter(map(_LOCATION_FIELD[field], locs), dtype=recs.dtype[field],
                                                         count=len(locs))
        at = len(pending)
        for b in blocks:  # columns as they are: no Location per row
            k = len(b.digests)
            part = recs[at:at + k]
            part["digest"] = b.digests
            if b.columns is not None:
                part["offset"], part["length"], part["rawlen"], part["codec"] = b.columns
            else:
                part["offset"] = np.arange(b.start, b.start + k * b.width, b.width, dtype=np.uint64)
                part["length"] = b.width
                part["rawlen"] = b.width
                part["codec"] = codecs.RAW
            part["check"] = b.checks
            at += k
        if len(recs):
            nbytes = int((recs["offset"] + recs["length"]).max())
        try:
            self._writer.finish(encode_index(recs), nbytes)
        except BaseException as exc:
            # never retry: after a failed fsync the kernel may report success for lost pages
            self.failed = exc
            raise
        if self._index is not None:
            # the index learns the pack from the records just written, as another process would
            # (a big pack as one array: folding 1,000,000 Locations from the dict took ~5 s)
            self._index.add_pack(self._pending_pack, recs)
            self._loaded_packs.add(self._pending_pack)
        self._writer = None
        self._pending = {}
        self._pending_bytes = 0
        self._last_flush = (self._pending_pack, recs)
        return self._pending_pack

    def take_flushed_columns(self, digests: np.ndarray) -> tuple[Any, ...] | None:
        """:meth:`locate_columns` of ``digests`` (an ``(n, 32)`` uint8 array) when they are the samples
        the last :meth:`flush` made durable, in the order written, with repeats of them anywhere (a
        commit after a stacked add of new samples): read off that flush's index records in one
        in-order walk (:func:`~hangar.plumbing.rowhash.align_rows`), no search; ``None`` otherwise
        (a sample stored before, another order). One use per flush.

        At 1,000,000 samples the search (and the index sort it needs) took ~0.9 s of the commit.
        """
        last, self._last_flush = self._last_flush, None
        if last is None or len(digests) < len(last[1]):
            return None
        pack, recs = last
        flushed = recs["digest"]
        row = rowhash.align_rows(digests, flushed)
        missed = np.flatnonzero(row < 0)
        if len(missed) != len(digests) - len(flushed):  # not every flushed record matched in order
            return None
        if len(missed):  # repeats (written once): each found among the flushed records by its digest
            want = np.ascontiguousarray(digests[missed])
            wanted = np.sort(want[:, :8].copy().view(">u8").ravel())
            heads = np.ascontiguousarray(flushed[:, :8]).view(">u8").ravel()
            at = np.minimum(np.searchsorted(wanted, heads), len(wanted) - 1)
            first: dict[bytes, int] = {}
            for r in np.flatnonzero(wanted[at] == heads).tolist():  # rows sharing a wanted 8-byte prefix
                first.setdefault(flushed[r].tobytes(), r)
            rows = [first.get(d, -1) for d in map(bytes, want)]
            if -1 in rows:
                return None
            row = row.copy()
            row[missed] = rows
        return ([pack], np.zeros(len(row), dtype=np.int32), *(recs[f][row].astype(np.uint64) for f in (
            "offset", "length", "rawlen")), recs["codec"][row].astype(np.uint8), recs["check"][row].astype(np.uint64))

    def discard(self) -> None:
        """Drop samples written since the last flush (a reset of the staging area)."""
        self._last_flush = None
        if self._writer is not None:
            try:
                self._writer.abort()
            except OSError:
                if self.failed is None:
                    raise
        self.failed = None
        self._writer = None
        self._pending = {}
        self._pending_bytes = 0

    # ------------------------------------------------------------------ read
    def location(self, digest: bytes) -> Location:
        loc = self._pending.get(digest)
        if loc is None:
            loc = self._load_index().get(digest)
            if loc is None and self._load_new_packs():  # written by another process since we loaded
                loc = self._index.get(digest)  # type: ignore[union-attr]  # loaded by _ensure_index above
            if loc is None:
                damaged = ""
                if self.damaged_packs:
                    damaged = (f" ({len(self.damaged_packs)} pack index(es) are damaged and skipped: "
                               f"{next(iter(self.damaged_packs.values()))}; run `hangar fsck`)")
                raise RemoteDataError(
                    f"the bytes of sample digest {digest.hex()[:16]}... are not in this repository; "
                    f"use repo.remote.fetch_data(...) to retrieve them{damaged}"
                )
        return loc

    def locations(self, digests: list[bytes], durable_only: bool = False) -> list[Location | None]:
        """``location`` of many digests at once (``None`` where not stored here), vectorised.

        With ``durable_only``, samples written but not yet flushed count as absent.
        """
        out = self._load_index().get_many(digests)
        if None in out and self._load_new_packs():
            out = self._index.get_many(digests)  # type: ignore[union-attr]  # loaded by _ensure_index above
        if self._pending and not durable_only:
            out = list(map(self._pending.get, digests, out))  # mapped in C: ~0.3 µs per digest less
        return out

    def _stored_bytes(self, loc: Location) -> bytes:
        if loc.pack == self._pending_pack and self._writer is not None:
            return self._writer.read(loc.offset, loc.length)
        return self.storage.read_range(loc.pack, loc.offset, loc.length)

    def read(self, digest: bytes, dtype: DTypeArg, shape: tuple[int, ...], check: bool | None = None) -> np.ndarray:
        """The sample stored under ``digest``, as a new writeable array.

        With ``check`` (default: ``self.verify_reads``) the bytes are re-hashed and a mismatch
        raises ``CorruptDataError`` instead of returning wrong data.
        """
        try:
            return self._read(digest, dtype, shape, check)
        except RemoteDataError:
            if self.lazy_source is None or not self.fetch_missing([(digest, np.dtype(dtype).str, tuple(shape))]):
                raise
            return self._read(digest, dtype, shape, check)
        except FileNotFoundError:  # its pack was compacted away (gc): reload the index once
            if self._index is None:
                raise
            self._index = None
            return self._read(digest, dtype, shape, check)

    def read_many(self, items: Iterable[tuple[bytes, tuple[int, ...]]], dtype: DTypeArg,
                  check: bool | None = None, batch: int = 4096) -> Iterator[np.ndarray]:
        """Yield the samples named by ``(digest, shape)`` pairs, in order.

        Locations are looked up in vectorised batches, which makes reading a whole arrayset
        about twice as fast as one :meth:`read` per sample.
        """
        chunk: list[tuple[bytes, tuple[int, ...]]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == batch:
                yield from self._read_chunk(chunk, dtype, check)
                chunk = []
        if chunk:
            yield from self._read_chunk(chunk, dtype, check)

    def _read_chunk(self, chunk: list[tuple[bytes, tuple[int, ...]]], dtype: DTypeArg,
                    check: bool | None) -> Iterator[np.ndarray]:
        locs = self.locations([d for d, _ in chunk])
        if self.lazy_source is not None and None in locs:  # one bulk fetch for the whole chunk
            dstr = np.dtype(dtype).str
            if self.fetch_missing([(d, dstr, tuple(s)) for (d, s), loc in zip(chunk, locs) if loc is None]):
                locs = self.locations([d for d, _ in chunk])
        for (digest, shape), loc in zip(chunk, locs):
            if loc is None:  # raises the usual RemoteDataError
                yield self.read(digest, dtype, shape, check)
                continue
            try:
                yield self._read(digest, dtype, shape, check, loc)
            except FileNotFoundError:  # pack compacted away meanwhile: the slow path reloads
                yield self.read(digest, dtype, shape, check)

    def _read(self, digest: bytes, dtype: DTypeArg, shape: tuple[int, ...], check: bool | None,
              loc: Location | None = None) -> np.ndarray:
        if loc is None:
            loc = self.location(digest)
        nbytes = np.dtype(dtype).itemsize * prod(shape)
        if nbytes != loc.rawlen:  # checked before allocating: a hostile pointer may claim any shape
            raise CorruptDataError(
                f"sample digest {digest.hex()[:16]}... holds {loc.rawlen} bytes, pointer says "
                f"{nbytes} ({dtype} {shape})"
            )
        out = np.empty(shape, dtype=dtype)
        buf = byte_view(out)
        if loc.codec == codecs.RAW and not (loc.pack == self._pending_pack and self._writer is not None):
            if not self.storage.readinto_checked(loc.pack, loc.offset, buf, loc.check):  # check_stored, fused
                raise damaged_sample(digest, loc.pack, loc.offset)
        else:
            stored = self._stored_bytes(loc)
            check_stored(loc, stored, digest)
            codecs.decode_into(loc.codec, stored, buf)
        self.check_sample(digest, buf, out.dtype.str, shape, loc.pack, check)
        return out

    def check_sample(self, digest: bytes, buf: memoryview, dtype: str, shape: tuple[int, ...], pack: str,
                     check: bool | None = None) -> None:
        """The one check every sample read passes (single and batch reads alike): with ``check``
        (default: ``self.verify_reads``) re-hash ``buf`` and raise ``CorruptDataError`` on a mismatch."""
        if (self.verify_reads if check is None else check) and digest_of_parts(buf, dtype, shape) != digest:
            raise CorruptDataError(f"stored bytes of sample digest {digest.hex()[:16]}... do not match the digest "
                                   f"(pack {pack}); run `hangar fsck` to list the damage")

    # ------------------------------------------------------- location tables
    def cached_table(self, key: str) -> LocationTable | None:
        """The table named ``key`` if in memory or validly cached on disk; never builds one."""
        table = self._tables.get(key)
        if table is not None:
            return table
        cache_dir = getattr(self.storage, "cache_dir", None)
        if not cache_dir:
            return None
        self.wait_saved()
        table = LocationTable.load(os.path.join(cache_dir, "readtables", key + ".tbl"), cache_dir)
        if table is not None and not self._table_matches_packs(table):
            return None
        return table

    def locate_durable(self, digests: list[bytes]) -> list[Location | None]:
        """:meth:`locations` of flushed samples only (what a commit's readers may use)."""
        return self.locations(digests, durable_only=True)

    def location_table(self, key: str, entries: Callable[[], Iterable[tuple[str, bytes, tuple[int, ...]]]],
                       derive: Callable[[], LocationTable | None] | None = None, build: bool = True
                       ) -> LocationTable | None:
        """The :class:`LocationTable` named ``key`` (a samples tree id): from memory, else from the
        on-disk cache (when the storage has a ``cache_dir`` and the table still matches the packs),
        else from ``derive()`` (e.g. the parent commit's table plus the changes) when it gives one,
        else built from ``entries()`` (``(entry name, digest, shape)`` of every sample); then cached.
        With ``build=False``: ``None`` instead of a build from scratch."""
        table = self.cached_table(key)
        if table is not None:
            self._tables[key] = table
            return table
        cache_dir = getattr(self.storage, "cache_dir", None)
        path = os.path.join(cache_dir, "readtables", key + ".tbl") if cache_dir else None
        table = derive() if derive is not None else None
        if table is None:
            if not build:
                return None
            table = LocationTable.build(entries(), self.locate_durable)
            if path is not None and table.complete:
                try:  # a cache: failing to write it costs the next open a rebuild, nothing else
                    self._save_table(table, path)
                    prune_cache(os.path.dirname(path))
                except OSError:
                    pass
        while len(self._tables) >= _TABLES_IN_MEMORY:
            self._tables.pop(next(iter(self._tables)), None)
        self._tables[key] = table
        return table

    def locate_columns(self, digests: np.ndarray) -> tuple[Any, ...]:
        """Locations of flushed samples as columns (``DigestIndex.locate_columns``) for
        :meth:`LocationTable.from_columns`: an ``(n, 32)`` uint8 digest array, no Location each."""
        index = self._load_index()
        located = index.locate_columns(digests)
        if bool((located[1] < 0).any()) and self._load_new_packs():
            located = self._index.locate_columns(digests)  # type: ignore[union-attr]
        return located

    def keep_table(self, key: str, table: LocationTable) -> None:
        """Keep ``table`` as the location table named ``key`` (a samples tree id), in memory and in
        the on-disk cache when complete: what a commit calls so a later reader (in any process)
        loads the table instead of reading every pointer (W1: ~5 ms instead of ~0.8 s).

        The file is written by a thread (a cache: nothing waits for it but
        a cache read, :meth:`wait_saved` and :meth:`close`): at 1,000,000 samples writing
        it cost ~0.25 s of the commit, at 60,000 ~10 ms."""
        while len(self._tables) >= _TABLES_IN_MEMORY:
            self._tables.pop(next(iter(self._tables)), None)
        self._tables[key] = table
        cache_dir = getattr(self.storage, "cache_dir", None)
        if cache_dir and table.complete:
            self._saving = [t for t in self._saving if t.is_alive()]
            path = os.path.join(cache_dir, "readtables", key + ".tbl")
            saving = threading.Thread(target=self._save_quietly, args=(table, path), name="hangar-table-save")
            saving.start()
            self._saving.append(saving)

    def _save_quietly(self, table: LocationTable, path: str) -> None:
        try:  # a cache, as in location_table
            self._save_table(table, path)
            prune_cache(os.path.dirname(path))
        except OSError:
            pass

    def wait_saved(self) -> None:
        """Wait until the tables :meth:`keep_table` is writing to the on-disk cache are written."""
        # every caller joins every save it sees (joining twice is harmless): popping them one by
        # one let a second reader return while the first was still waiting on a save (review A)
        for saving in list(self._saving):
            saving.join()
        self._saving = [t for t in self._saving if t.is_alive()]

    def complete_table(self, key: str, table: LocationTable) -> LocationTable:
        """``table`` (named ``key``) with its rows that were not stored when it was built located now
        (their bytes fetched since, by this process or another); ``table`` itself when none are."""
        if table.complete:
            return table
        self.refresh()
        missing = np.flatnonzero(table.pack_col < 0).tolist()
        found = [(r, loc) for r, loc in zip(missing, self.locate_durable([table.digests[r].tobytes() for r in missing]))
                 if loc is not None]
        if not found:
            return table
        table = table.located([r for r, _ in found], [loc for _, loc in found])
        self._tables[key] = table
        cache_dir = getattr(self.storage, "cache_dir", None)
        if cache_dir and table.complete:
            try:  # a cache, as in location_table
                self._save_table(table, os.path.join(cache_dir, "readtables", key + ".tbl"))
            except OSError:
                pass
        return table

    def holds_packs(self, packs: Iterable[str]) -> bool:
        """True when every pack of ``packs`` is still in the store as last refreshed (:meth:`refresh`);
        a gc compaction removes packs."""
        self._load_index()
        return set(packs) <= self._loaded_packs | ({self._pending_pack} if self._writer is not None else set())

    def _index_stamp(self, pack: str) -> list[int] | None:
        index_path = getattr(self.storage, "index_path", None)
        try:
            st = os.stat(index_path(pack)) if index_path is not None else None
        except OSError:
            return None
        return None if st is None else [st.st_size, st.st_mtime_ns, st.st_ino]

    def _save_table(self, table: LocationTable, path: str) -> None:
        # the cache directory's parent (.hangar) is the root: a link at cache/ or readtables/ is replaced
        table.save(path, {p: s for p in table.packs if (s := self._index_stamp(p)) is not None},
                   os.path.dirname(os.path.dirname(os.path.dirname(path))))

    def _table_matches_packs(self, table: LocationTable) -> bool:
        size_of = getattr(self.storage, "pack_size", None)
        if size_of is None:
            return False
        for pack in table.packs:  # an index rewritten since the save (fsck --repair, forget, an author)
            if table.stamps.get(pack) != self._index_stamp(pack):
                return False
        for pack, end in table.extents().items():
            try:
                size = size_of(pack)
            except CorruptDataError:  # not a regular file: the read by digest reports it
                return False
            if size is None or size < end:
                return False
        return True

    def drop_table(self, key: str) -> None:
        """Forget a table (its packs were compacted away): the next ``location_table`` rebuilds it."""
        self.wait_saved()
        self._tables.pop(key, None)
        cache_dir = getattr(self.storage, "cache_dir", None)
        if cache_dir:
            try:
                os.unlink(os.path.join(cache_dir, "readtables", key + ".tbl"))
            except OSError:
                pass

    def drop_tables(self) -> None:
        """Forget every location table, in memory and cached on disk (records were dropped from packs)."""
        self.wait_saved()
        self._last_flush = None
        self._tables.clear()
        cache_dir = getattr(self.storage, "cache_dir", None)
        if cache_dir:
            d = os.path.join(cache_dir, "readtables")
            try:
                names = os.listdir(d)
            except OSError:
                return
            for n in names:
                if n.endswith(".tbl"):
                    try:
                        os.unlink(os.path.join(d, n))
                    except OSError:
                        pass

    def read_row(self, table: LocationTable, row: int, dtype: np.dtype, check: bool | None = None
                 ) -> np.ndarray | None:
        """Sample ``row`` of ``table``: one lookup and one ``pread``; ``None`` when its bytes are
        not located in the table (read it by digest instead)."""
        p, offset, length, raw, codec, sum_ = table.row_location(row)
        if p < 0:
            return None
        shape = table.shape_of(row)
        if dtype.itemsize * prod(shape) != raw:
            raise CorruptDataError(f"sample digest {table.digests[row].tobytes().hex()[:16]}... holds {raw} bytes, "
                                   f"pointer says {dtype.itemsize * prod(shape)} ({dtype} {shape})")
        out = np.empty(shape, dtype=dtype)
        # ``sum_`` is not ``check``: that names the re-hash asked for (verify_reads), a different check
        pack = table.packs[p]
        # the copy survives a pack truncated under its mapping (SIGBUS) where the extension is built;
        # elsewhere the mapping is checked against the file's size first
        whole = self.storage.mapped(pack, not rowhash.available) if codec == codecs.RAW else None
        if whole is not None and offset + raw <= len(whole):
            # copied from the mapped pack, no syscall (~2 us a read less), and checked in the same
            # pass (check_stored, on a table row): a 150 KB sample cost 0-0.8 us more than the copy,
            # not ~4 us for a copy then a hash (the bytes checked are the bytes copied into ``out``);
            # from the offset into ``out`` itself: no slice, no byte view (~0.3 us of a ~3 us read)
            got = rowhash.copy_checked_at(whole, offset, out, sum_)
            if got < 0:
                raise CorruptDataError(f"pack {pack} could not be read at {offset} ({raw} bytes): truncated or "
                                       "unreadable since it was mapped; run `hangar fsck`")
            if not got:
                raise damaged_sample(table.digests[row].tobytes(), pack, offset)
            if check or (check is None and self.verify_reads):
                self.check_sample(table.digests[row].tobytes(), byte_view(out), out.dtype.str, shape, pack, check)
            return out
        buf = byte_view(out)
        if codec == codecs.RAW:  # read and checked in one call (check_stored, on a table row)
            if not self.storage.readinto_checked(pack, offset, buf, sum_):
                raise damaged_sample(table.digests[row].tobytes(), pack, offset)
        else:
            stored = self.storage.read_range(pack, offset, length)
            if sum_ and (_xxh3(stored) or 1) != sum_:  # check_stored, on a table row
                raise damaged_sample(table.digests[row].tobytes(), pack, offset)
            codecs.decode_into(codec, stored, buf)
        if check or (check is None and self.verify_reads):
            self.check_sample(table.digests[row].tobytes(), buf, out.dtype.str, shape, pack, check)
        return out

    def map_samples(self, table: LocationTable, rows: np.ndarray, shape: tuple[int, ...], dtype: np.dtype,
                    check: bool | None = None) -> list[np.ndarray] | None:
        """Samples ``rows`` of ``table`` as writeable ``shape`` arrays, the rows of one array over a
        private mapping of their pack, without copying them, when they lie back to back, in that
        order, uncompressed, in one local pack, and take at least :data:`_MAP_FROM` bytes (what a
        sequential pass over freshly written samples asks); else ``None`` (read a copy with
        :meth:`read_rows_into`). Every sample's stored checksum is checked, as on every read.

        Writes to an array stay in this process (copy-on-write) and in that array: each call maps
        afresh, and no two arrays share a byte.
        """
        n = len(rows)
        size = dtype.itemsize * prod(shape)
        if not n or not size or n * size < _MAP_FROM:
            return None
        r0 = int(rows[0])
        # consecutive rows (a sequential pass over keys 0..n-1): the columns are sliced, not gathered
        # (each fancy-indexed column of 60,000 rows cost ~0.1-0.3 ms a call)
        if int(rows[-1]) - r0 == n - 1 and bool((rows[1:] - rows[:-1] == 1).all()):
            sel: slice | np.ndarray = slice(r0, r0 + n)
            # one lookup in the table's running count, not four column compares (~0.3 ms at 60,000)
            if not table.back_to_back(r0, r0 + n, size, codecs.RAW):
                return None
            p = table.pack_col.item(r0)
            lo = table.offsets.item(r0)
            if lo % dtype.alignment:
                return None
        else:
            sel = rows
            pc = table.pack_col[sel]
            p = int(pc[0])
            if p < 0 or not bool((pc == p).all()):
                return None
            offs = table.offsets[sel]
            lo = int(offs[0])
            if lo % dtype.alignment or int(offs[-1]) != lo + (n - 1) * size \
                    or not bool((offs[1:] - offs[:-1] == size).all()):
                return None
            if not bool((table.codecs[sel] == codecs.RAW).all()) or not bool((table.rawlens[sel] == size).all()):
                return None
        flat = self.storage.map_range(table.packs[p], lo, n * size)
        if flat is None:
            return None
        flat = flat.reshape(n, size)
        samples = self._views_checked(table, rows, flat, table.checks[sel], flat.view(dtype).reshape(n, *shape))
        if check or (check is None and self.verify_reads):
            for i, r in enumerate(rows.tolist()):
                self.check_sample(table.digests[r].tobytes(), memoryview(flat[i]), dtype.str, shape,
                                  table.packs[p], check)
        return samples

    def _views_checked(self, table: LocationTable, rows: np.ndarray, flat: np.ndarray, checks: np.ndarray,
                       arr: np.ndarray) -> list[np.ndarray]:
        """``list(arr)`` (one view per sample of ``arr``, which is ``flat`` read as samples), once the
        stored checksum of every row of ``flat`` (raw stored bytes of ``rows``) matches ``checks``.

        The views are made (holding the GIL, ~90 ns each) while the extension's helper thread
        hashes, then this thread hashes too until no row is left
        (:func:`hangar.plumbing.rowhash.check_rows_beside`): W1's 60,000 x 784 B took 5.4 ms for
        the views and 4.8 ms for the hashes one after the other.
        """
        n, size = flat.shape
        if n * size < _OVERLAP_FROM:  # handing rows to the other thread costs more than it hides
            self._check_rows(table, rows, flat, np.flatnonzero(checks), checks)
            return list(arr)
        all_checked = bool(checks.all())  # else some rows have no check recorded (format-1 packs)
        which = None if all_checked else np.flatnonzero(checks)
        samples, bad = rowhash.check_rows_beside(flat, which, checks if which is None else checks[which],
                                                 lambda: list(arr))
        if bad >= 0:
            r = int(rows[bad if which is None else int(which[bad])])
            raise damaged_sample(table.digests[r].tobytes(), table.packs[table.pack_col[r]], table.offsets.item(r))
        return samples

    def read_rows_into(self, table: LocationTable, rows: np.ndarray, out: np.ndarray,
                       check: bool | None = None) -> None:
        """Read samples ``rows`` of ``table`` (all located, all of ``out``'s sample shape) into
        ``out[i]``, in order: reads sorted by pack and offset and coalesced into a few large
        ``pread`` calls (straight into ``out`` where the rows are consecutive in both)."""
        n = len(rows)
        if not n:
            return
        shape = out.shape[1:]
        dtype = out.dtype
        size = dtype.itemsize * prod(shape)
        flat = np.frombuffer(byte_view(out), dtype=np.uint8).reshape(n, size)
        raws = table.rawlens[rows]
        bad = np.flatnonzero(raws != size)
        if len(bad):
            r = int(rows[bad[0]])
            raise CorruptDataError(f"sample digest {table.digests[r].tobytes().hex()[:16]}... holds "
                                   f"{int(raws[bad[0]])} bytes, pointer says {size} ({dtype} {shape})")
        pc = table.pack_col[rows]
        offs = table.offsets[rows].astype(np.int64)
        lens = table.lengths[rows].astype(np.int64)
        raw_codec = table.codecs[rows] == codecs.RAW
        if n > 1 and bool((pc[1:] == pc[:-1]).all()) and bool((offs[1:] > offs[:-1]).all()):
            order = np.arange(n)  # already in pack order (a sequential batch): no sort
        else:
            order = np.lexsort((offs, pc))
        so, sl, sp, sraw = offs[order], lens[order], pc[order], raw_codec[order]
        ends = so + sl
        brk = np.ones(n, dtype=bool)  # True where a new read starts
        brk[1:] = (sp[1:] != sp[:-1]) | (so[1:] - ends[:-1] > _GAP) | ~sraw[1:] | ~sraw[:-1]
        if (size and size <= _GATHER_UPTO and n >= _GATHER_FROM_ROWS and bool(raw_codec.all())
                and int(brk.sum()) * 4 > n and self._gather_mapped(table, rows, flat, size, pc, offs)):
            self._verify_rows(table, rows, flat, dtype, shape, check)  # as every other batch read
            return
        seg = np.cumsum(brk) - 1
        seg_start = so[brk]
        # large samples: reads of at most _PIPELINE_SPAN; a range read straight into ``out`` is
        # checked piece by piece as it lands (_read_segment), any other one's checksums in a
        # second thread while the next is read (pread and xxh3 both release the GIL)
        piped = size >= _THREADED_CHECK_FROM and n * size > _PIPELINE_SPAN
        span = _PIPELINE_SPAN if piped else _SPAN
        brk[1:] |= ((so[1:] - seg_start[seg[1:]]) // span) != ((so[:-1] - seg_start[seg[:-1]]) // span)
        starts = np.flatnonzero(brk).tolist() + [n]
        checks = table.checks[rows]
        checked = raw_codec & (checks != 0)
        pool = ThreadPoolExecutor(1, thread_name_prefix="hangar-check") if piped else None
        pending: list[Any] = []
        done = np.zeros(n, dtype=bool)  # rows checked as they were read (_read_segment)
        try:
            self._read_segments(table, rows, flat, size, starts, order, so, sl, sp, sraw, ends, pool, pending,
                                checked, checks, done)
            for f in pending:
                f.result()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if not piped:
            # the stored checksum of every raw sample (compressed ones were checked before decoding)
            self._check_rows(table, rows, flat, np.flatnonzero(checked & ~done), checks)
        self._verify_rows(table, rows, flat, dtype, shape, check)

    def _verify_rows(self, table: LocationTable, rows: np.ndarray, flat: np.ndarray, dtype: np.dtype,
                     shape: tuple[int, ...], check: bool | None) -> None:
        """With ``check`` (default: ``self.verify_reads``) re-hash each sample read into ``flat``
        (:meth:`check_sample`): the digest check asked for, beyond the stored checksums."""
        if check or (check is None and self.verify_reads):
            dstr = dtype.str
            for i, r in enumerate(rows.tolist()):
                self.check_sample(table.digests[r].tobytes(), memoryview(flat[i]), dstr, shape,
                                  table.packs[table.pack_col[r]], check)

    def _gather_mapped(self, table: LocationTable, rows: np.ndarray, flat: np.ndarray, size: int,
                       pc: np.ndarray, offs: np.ndarray) -> bool:
        """Copy raw samples ``rows`` scattered over their packs into ``flat`` from each pack's kept
        mapping (:meth:`~hangar.store.packs.PackStorage.mapped`), each checked against its stored
        checksum while the copy is in cache (:func:`hangar.plumbing.rowhash.gather_rows_checked`,
        one call per pack). ``False`` (nothing copied) where a pack is not mapped or is shorter than
        its rows need: read another way.

        A shuffled batch of small samples otherwise costs one coalesced range per sample: 256 of
        60,000 x (28, 28) made ~185 ranges, ~18 us of Python each (64k samples/s into a pinned
        buffer on an H200 host, against 2.0M/s for ``np.take`` from memory).
        """
        packs = np.unique(pc).tolist()
        maps = []
        for p in packs:
            m = self.storage.mapped(table.packs[p])
            if m is None:
                return False
            sel = np.flatnonzero(pc == p) if len(packs) > 1 else None
            o = offs if sel is None else offs[sel]
            if int(o.max()) + size > len(m):  # past the end it was mapped with: read it the other way
                return False
            maps.append((m, sel, o))
        checks = table.checks[rows]
        for m, sel, o in maps:
            dest = flat if sel is None else np.empty((len(sel), size), dtype=np.uint8)
            bad = rowhash.gather_rows_checked(m, o, dest, checks if sel is None else checks[sel])
            if bad >= 0:
                r = int(rows[bad if sel is None else sel[bad]])
                raise damaged_sample(table.digests[r].tobytes(), table.packs[int(table.pack_col[r])],
                                     table.offsets.item(r))
            if sel is not None:
                flat[sel] = dest
        return True

    def _read_segments(self, table: LocationTable, rows: np.ndarray, flat: np.ndarray, size: int,
                       starts: list[int], order: np.ndarray, so: np.ndarray, sl: np.ndarray, sp: np.ndarray,
                       sraw: np.ndarray, ends: np.ndarray, pool: ThreadPoolExecutor | None, pending: list[Any],
                       checked: np.ndarray, checks: np.ndarray, done: np.ndarray) -> None:
        """The reads of :meth:`read_rows_into`, one coalesced range ``starts[k]:starts[k + 1]`` at a
        time; with ``pool``, the checksums of each raw range not checked as it was read (``done``)
        are checked there while the next is read."""
        for a, b in zip(starts[:-1], starts[1:]):
            self._read_segment(table, rows, flat, size, a, b, order, so, sl, sp, sraw, ends, checks, done)
            if pool is not None and sraw[a]:
                dest = order[a:b]
                which = dest[checked[dest] & ~done[dest]]
                if len(which):
                    pending.append(pool.submit(self._check_rows, table, rows, flat, np.sort(which), checks,
                                               False))

    def _read_segment(self, table: LocationTable, rows: np.ndarray, flat: np.ndarray, size: int, a: int, b: int,
                      order: np.ndarray, so: np.ndarray, sl: np.ndarray, sp: np.ndarray, sraw: np.ndarray,
                      ends: np.ndarray, checks: np.ndarray, done: np.ndarray) -> None:
        pack = table.packs[int(sp[a])]
        dest = order[a:b]
        if not sraw[a]:
            for j in range(a, b):
                i = int(order[j])
                r = int(rows[i])
                stored = self.storage.read_range(pack, int(so[j]), int(sl[j]))
                sum_ = table.checks.item(r)  # not ``check``: the re-hash asked for, checked below
                if sum_ and (_xxh3(stored) or 1) != sum_:  # check_stored, on a table row
                    raise damaged_sample(table.digests[r].tobytes(), pack, int(so[j]))
                codecs.decode_into(int(table.codecs[r]), stored, memoryview(flat[i]))
            return
        lo, hi = int(so[a]), int(ends[b - 1])
        packed = hi - lo == (b - a) * size and bool((so[a:b] == lo + size * np.arange(b - a)).all())
        d0 = int(dest[0])
        if packed and int(dest[-1]) - d0 == b - a - 1 and bool((np.diff(dest) == 1).all()):
            if size:  # read and check each piece while it is in L2 (checks: 0 where none recorded)
                bad = self.storage.readinto_rows_checked(pack, lo, flat[d0:d0 + b - a], checks[d0:d0 + b - a])
                done[d0:d0 + b - a] = True
                if bad >= 0:
                    r = int(rows[d0 + bad])
                    raise damaged_sample(table.digests[r].tobytes(), pack, table.offsets.item(r))
            else:
                self.storage.readinto(pack, lo, memoryview(flat[d0:d0 + b - a]).cast("B"))
            return
        # a large range is gathered straight from a mapping of the pack: no scratch copy (a shuffled
        # W1 epoch read 47 MB into a fresh scratch array first)
        mapped = self.storage.map_range(pack, lo, hi - lo) if hi - lo >= _MAP_FROM else None
        if mapped is not None:
            scratch = mapped
        else:
            scratch = np.empty(hi - lo, dtype=np.uint8)
            self.storage.readinto(pack, lo, memoryview(scratch))
        if packed:
            flat[dest] = scratch.reshape(b - a, size)
        else:
            for j, i in zip(range(a, b), dest.tolist()):
                rel = int(so[j]) - lo
                flat[i] = scratch[rel:rel + size]

    @staticmethod
    def _check_rows(table: LocationTable, rows: np.ndarray, flat: np.ndarray, which: np.ndarray,
                    checks: np.ndarray, threads: bool = True) -> None:
        """Raise ``CorruptDataError`` unless ``flat[i]`` (raw stored bytes of ``rows[i]``) matches its
        stored checksum, for each ``i`` of ``which``.

        All of ``which`` in one :func:`hangar.plumbing.rowhash.check_rows` call (C, without the
        GIL): one Python-level xxh3 call per sample held the GIL against the consumer of
        ``values()``. Most rows are checked as they are read (``readinto_rows_checked``, while in
        cache); these are the rest (rows gathered from a scratch range, reordered batches).
        Large samples are hashed in two threads (no thread started per call).
        """
        m = len(which)
        if not m:
            return
        size = flat.shape[1]
        expected = checks[which]
        if threads and size >= _THREADED_CHECK_FROM and m >= 4:  # this thread and the extension's helper
            bad = rowhash.check_rows_beside(flat, which, expected, _nothing)[1]
        else:
            bad = rowhash.check_rows(flat, which, expected)
        if bad >= 0:
            i = int(which[bad])
            r = int(rows[i])
            raise damaged_sample(table.digests[r].tobytes(), table.packs[table.pack_col[r]], table.offsets.item(r))

    def read_stored(self, digest: bytes) -> StoredSample:
        """The stored (possibly compressed) form of a sample, for transfer."""
        loc = self.location(digest)
        stored = self._stored_bytes(loc)
        check_stored(loc, stored, digest)
        return StoredSample(digest, loc.codec, loc.rawlen, stored)

    def verify(self, digest: bytes, dtype: str, shape: tuple[int, ...]) -> bool:
        """Re-hash a stored sample; True when its bytes match its digest."""
        try:
            arr = self.read(digest, dtype, shape, check=False)
        except CorruptDataError:  # checksum mismatch, or the stored form does not decode
            return False
        return digest_of_parts(byte_view(arr), dtype, shape) == digest

    def close(self) -> None:
        self.wait_saved()
        self.flush()
        self.storage.close()

    def __getstate__(self) -> dict[str, object]:
        if self._writer is not None:
            raise NotPicklableError("a TensorStore with unflushed writes cannot be pickled")
        # a lazy source stays with its repository: worker processes read what was fetched for them
        return {"storage": self.storage, "lazy_source": None, "_index": None, "_loaded_packs": set(),
                "damaged_packs": {}, "_writer": None,
                "_pending_map": {}, "_pending_blocks": [], "_blocks_ranked": np.empty(0, dtype=np.uint64),
                "_pending_pack": "", "_pending_bytes": 0}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._index_lock = threading.RLock()
        self._tables = {}
        self._saving = []
        self._last_flush = None
