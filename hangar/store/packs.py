"""Where sample packs live: a local directory (fast path) or any Zarr v3 store.

A pack is a 1-D uint8 Zarr v3 array with one chunk, ``packs/<id>/c/0``, holding many
samples back to back, plus ``packs/<id>/index``: one fixed-size record per sample
(digest, offset, stored length, raw length, codec, xxh3-64 of the stored bytes). The index
is written last: a pack without an index is unfinished and ignored, so a crash never exposes
half a pack.

Index format 2 starts with a 16-byte header (``INDEX_MAGIC``, version, record size); format 1
(hangar before the per-sample checksum) is the bare records without the checksum, and stays
readable (its samples are read unchecked, as before). Pack files are opened only as regular
files inside the repository (no symlinks, FIFOs or devices), and an index is checked against
its pack's size before any record is used.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Coroutine, Optional, Protocol, TypeVar

import numpy as np
import xxhash

from hangar._faults import crash_point
from hangar.errors import CorruptDataError, PackNotFoundError
from hangar.plumbing import paths, rowhash
from hangar.plumbing.durable import (
    TMP_SUFFIX,
    fsync_dirs,
    fsync_many,
    pwrite_all,
    replace_file,
    replace_file_durably,
    start_writeback,
    write_open,
)
from hangar.plumbing.mapping import address_space_limited, map_private
from hangar.plumbing.paths import pack_chunk_key, pack_chunk_path, pack_index_path, pack_partial_path, packs_dir
from hangar.plumbing.pids import pid_alive
from hangar.plumbing.regular import open_regular, read_regular
from hangar.plumbing.rowhash import stored_check as stored_check  # the one definition, re-exported
from hangar.store.codecs import LZ4, RAW, ZSTD, max_stored_length

T = TypeVar("T")

#: format 1 records (no checksum): read, never written
INDEX_DTYPE_V1 = np.dtype([("digest", "u1", (32,)), ("offset", "<u8"), ("length", "<u8"),
                           ("rawlen", "<u8"), ("codec", "u1")])
#: format 2 records: ``check`` is the xxh3-64 of the stored bytes (0: not recorded)
INDEX_DTYPE = np.dtype([("digest", "u1", (32,)), ("offset", "<u8"), ("length", "<u8"),
                        ("rawlen", "<u8"), ("codec", "u1"), ("check", "<u8")])
INDEX_MAGIC = b"HNGRPIDX"
INDEX_VERSION = 2
_HEADER = struct.Struct("<8sII")
#: bytes before the first record of a format 2 index
INDEX_HEADER_BYTES = _HEADER.size


def stored_checks(payloads: list[Any]) -> list[int]:
    """:func:`stored_check` of each of many payloads (xxh3 mapped in C: ~0.4 µs each less)."""
    checks = list(map(xxhash.xxh3_64_intdigest, payloads))
    if 0 in checks:  # one in 2**64: the rare zero is stored as 1, as stored_check does
        checks = [c or 1 for c in checks]
    return checks


class StoredCheck:
    """:func:`stored_check` of a sample's stored bytes read in pieces (``update`` each, in order)."""

    def __init__(self) -> None:
        self._hasher = xxhash.xxh3_64()

    def update(self, piece: bytes | bytearray | memoryview) -> None:
        self._hasher.update(piece)

    def value(self) -> int:
        return self._hasher.intdigest() or 1


def encode_index(recs: np.ndarray) -> bytes:
    """Bytes of an index file (format 2) holding ``recs`` (``INDEX_DTYPE``)."""
    return _HEADER.pack(INDEX_MAGIC, INDEX_VERSION, INDEX_DTYPE.itemsize) + recs.astype(INDEX_DTYPE).tobytes()


def parse_index(raw: bytes, where: str, pack_size: Optional[int] = None) -> np.ndarray:
    """Records of an index file (either format) as ``INDEX_DTYPE``, checked; ``CorruptDataError`` naming ``where``.

    Every record must lie inside the pack (when ``pack_size`` is known), name a known codec and
    store no more bytes than its codec can produce from its raw size.
    """
    if raw[:8] == INDEX_MAGIC:
        if len(raw) < _HEADER.size:
            raise CorruptDataError(f"pack index {where} is damaged: truncated header")
        _, version, size = _HEADER.unpack_from(raw)
        if version != INDEX_VERSION or size != INDEX_DTYPE.itemsize:
            raise CorruptDataError(f"pack index {where} has format {version} ({size}-byte records); this hangar "
                                   f"reads formats 1 and {INDEX_VERSION}: upgrade hangar")
        body, dtype = memoryview(raw)[_HEADER.size:], INDEX_DTYPE
    else:
        body, dtype = memoryview(raw), INDEX_DTYPE_V1
    if len(body) % dtype.itemsize:
        raise CorruptDataError(f"pack index {where} is damaged: {len(body)} bytes of records is not a whole number "
                               f"of {dtype.itemsize}-byte records; run `hangar fsck`")
    recs = np.frombuffer(body, dtype=dtype)
    if dtype is INDEX_DTYPE_V1:
        new = np.zeros(len(recs), dtype=INDEX_DTYPE)
        for f in INDEX_DTYPE_V1.names or ():
            new[f] = recs[f]
        recs = new
    codec, length, rawlen, offset = recs["codec"], recs["length"], recs["rawlen"], recs["offset"]
    bad = ~np.isin(codec, (RAW, LZ4, ZSTD))
    bad |= (codec == RAW) & (length != rawlen)
    # uint64 arithmetic: rawlen of a hostile record may be near 2**64; compare without overflow
    bound = rawlen + np.minimum(rawlen >> np.uint64(7), np.uint64(1 << 40)) + np.uint64(1024)
    bad |= (length > bound) | (bound < rawlen)
    if pack_size is not None:
        size = np.uint64(pack_size)
        bad |= (offset > size) | (length > size - np.minimum(offset, size))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        r = recs[i]
        raise CorruptDataError(
            f"pack index {where} is damaged: record {i} of {len(recs)} (offset {int(r['offset'])}, length "
            f"{int(r['length'])}, raw length {int(r['rawlen'])}, codec {int(r['codec'])}) does not fit its pack of "
            f"{pack_size} bytes or its codec (at most {max_stored_length(int(r['codec']), int(r['rawlen']))} "
            "stored bytes); run `hangar fsck`")
    return recs


_GROUP_META = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()


def array_metadata(nbytes: int) -> bytes:
    """zarr.json of a pack: a 1-D uint8 array of ``nbytes`` in one chunk."""
    return json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": [nbytes], "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [max(nbytes, 1)]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes"}],
        "attributes": {"hangar": "content-addressed sample pack; see index"},
    }).encode()


def new_pack_id() -> str:
    # the writer's pid first: remove_dead_partials tells an abandoned .partial from a live one by it
    return f"{os.getpid():x}{uuid.uuid4().hex[:20]}"


class PackWriter(Protocol):
    def append(self, data: bytes | memoryview) -> int: ...
    def read(self, offset: int, length: int) -> bytes: ...
    def finish(self, index: bytes, nbytes: int) -> None: ...
    def abort(self) -> None: ...


class PackStorage(Protocol):
    """Narrow interface the tensor store needs from where packs are kept."""

    def list_packs(self) -> list[str]: ...
    def read_index(self, pack_id: str) -> bytes: ...
    def pack_size(self, pack_id: str) -> Optional[int]: ...
    def replace_index(self, pack_id: str, index: bytes) -> None: ...
    def remove_dead_partials(self, min_age: float = 60.0) -> int: ...
    def read_range(self, pack_id: str, offset: int, length: int) -> bytes: ...
    def readinto(self, pack_id: str, offset: int, out: memoryview) -> None: ...
    def map_range(self, pack_id: str, offset: int, length: int) -> Optional[np.ndarray]: ...
    def mapped(self, pack_id: str, check_size: bool = True) -> Optional[np.ndarray]: ...

    def readinto_checked(self, pack_id: str, offset: int, out: memoryview, check: int) -> bool: ...
    def readinto_rows_checked(self, pack_id: str, offset: int, rows: np.ndarray, checks: np.ndarray) -> int: ...
    def open_writer(self, pack_id: str) -> PackWriter: ...
    def close(self) -> None: ...


class _BackgroundSync:
    """fdatasync a file in a thread while it is still being written.

    The disk then flushes while we hash and write the next samples, and the final
    fsync only waits for the tail (300 MB: ~0.11 s of final fsync becomes ~0.01 s).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.wake = threading.Event()
        self.stop = False
        #: the error of a failed fdatasync: Linux reports a write-back error once per open file, so
        #: one this thread swallowed would let the final fsync succeed over lost pages
        self.error: OSError | None = None
        #: a flush was asked for and not started yet: done even when ``close`` comes first, so
        #: a stop racing a request cannot skip it (its error would go unseen until the last fsync)
        self.requested = False
        self.thread = threading.Thread(target=self._run, name="hangar-pack-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.requested:
                self.requested = False
                try:
                    os.fdatasync(self.fd)
                except OSError as exc:
                    self.error = exc
                    return
            if self.stop:
                return

    def request(self) -> None:
        self.requested = True
        self.wake.set()

    def close(self) -> OSError | None:
        """Stop the thread; return the error of a failed background flush (None if none failed)."""
        self.stop = True
        self.wake.set()
        self.thread.join()
        return self.error


class _BackgroundWriteback:
    """:func:`~hangar.plumbing.durable.start_writeback` of a file's written ranges, in a thread.

    The call returns at once while the device keeps up, but blocks while its queue is full: here,
    under load, 0.03-0.29 s per 256 MiB written, time the writing thread would otherwise sit out.
    Ranges are asked for in order (``request(end)``: everything written up to ``end``); the thread
    starts write-back of what was asked and not yet started. An error is kept for :meth:`close`.
    """

    def __init__(self, fd: int, started: int) -> None:
        self.fd = fd
        self.cond = threading.Condition()
        self.started = started  # write-back started up to here
        self.asked = started  # write-back asked for up to here
        self.stop = False
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, name="hangar-pack-writeback", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.asked == self.started and not self.stop:
                    self.cond.wait()
                if self.asked == self.started:
                    return
                start, end = self.started, self.asked
            try:
                start_writeback(self.fd, start, end - start)
            except OSError as exc:
                self.error = exc
                return
            self.started = end

    def request(self, end: int) -> None:
        with self.cond:
            self.asked = end
            self.cond.notify()

    def close(self) -> OSError | None:
        """Stop the thread (after what was asked for); return the error of a failed call (None if none)."""
        with self.cond:
            self.stop = True
            self.cond.notify()
        self.thread.join()
        return self.error


class _LocalPackWriter:
    _BUFFER = 4 << 20
    #: samples this large are written straight from the caller's buffer (no copy)
    _DIRECT = 64 << 10
    #: ask for a background flush every time this much more is written (where early write-back
    #: is not available)
    _SYNC_EVERY = 64 << 20
    #: start write-back of every this many bytes written: the fsync at finish then waits for at most
    #: about this much. scripts/bench_writeback.py (256 MiB as 4 MiB pwrites, then fdatasync; MB/s of
    #: the median run, load 4 / load 11): fsync at the end only 746 / 385, an fdatasync thread every
    #: 64 MiB 846 / 530, write-back every 4 MiB 850 / 728, 8 MiB 1,197 / 778, 16 MiB 1,125 / 593,
    #: 32 MiB 1,102 / 692 (4 to 32 MiB within the noise of each other; 8 leaves the smaller tail)
    _WRITEBACK_EVERY = 8 << 20

    def __init__(self, root: str, pack_id: str, durable: bool) -> None:
        self.root = root
        self.pack_id = pack_id
        self.durable = durable
        self.tmp_path = pack_partial_path(root, pack_id)
        self.fd = os.open(self.tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.buf = bytearray()
        self.flushed = 0
        self.size = 0
        self._synced_at = 0
        self._syncer: _BackgroundSync | None = None
        #: early write-back (:func:`~hangar.plumbing.durable.start_writeback`) started up to here;
        #: False once the kernel or file system turned it down (then the background fdatasync)
        self._written_back = 0
        self._early_writeback = True
        self._writeback_error: OSError | None = None
        self._writeback: _BackgroundWriteback | None = None

    def append(self, data: bytes | memoryview) -> int:
        off = self.size
        n = len(data)
        if n >= self._DIRECT:
            self._drain()
            pwrite_all(self.fd, data, self.flushed)
            self.flushed += n
            self._maybe_sync()
        else:
            self.buf += data
            if len(self.buf) >= self._BUFFER:
                try:
                    self._drain()
                except BaseException:
                    # a failed append stores nothing: left in the buffer uncounted, these bytes
                    # would shift every later sample past the offset returned for it
                    # (a copy: the failed write's traceback may still hold a view of the buffer)
                    self.buf = self.buf[:len(self.buf) - n]
                    raise
        self.size += n
        return off

    def _drain(self) -> None:
        if self.buf:
            pwrite_all(self.fd, self.buf, self.flushed)
            self.flushed += len(self.buf)
            self.buf = bytearray()
            self._maybe_sync()

    def _maybe_sync(self) -> None:
        if not self.durable:
            return
        if self._early_writeback:
            if self.flushed - self._written_back < self._WRITEBACK_EVERY:
                return  # write-back covers the pack: the fdatasync below is only its fallback
            if self._writeback is not None:
                self._writeback.request(self.flushed)
                self._written_back = self.flushed
                return
            # the first range here: whether the call applies is known at once (then a thread for the rest)
            try:
                started = start_writeback(self.fd, self._written_back, self.flushed - self._written_back)
            except OSError as exc:
                # kept for finish(), which never publishes the index over it; raising here would
                # leave this append half counted (its bytes written, its offset not returned)
                self._writeback_error = self._writeback_error or exc
                started = False
            if started:
                self._written_back = self.flushed
                self._writeback = _BackgroundWriteback(self.fd, self.flushed)
                return
            self._early_writeback = False  # unsupported here: the background fdatasync below instead
        if self.flushed - self._synced_at >= self._SYNC_EVERY:
            self._synced_at = self.flushed
            if self._syncer is None:
                self._syncer = _BackgroundSync(self.fd)
            self._syncer.request()

    def _stop_syncer(self) -> OSError | None:
        syncer, self._syncer = self._syncer, None
        failed = syncer.close() if syncer is not None else None
        writeback, self._writeback = self._writeback, None
        if writeback is not None:
            stopped = writeback.close()  # always stopped (a thread never left waiting), first error kept
            failed = failed or stopped
        return failed or self._writeback_error

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.flushed:
            start = offset - self.flushed
            return bytes(self.buf[start:start + length])
        self._drain()
        return os.pread(self.fd, length, offset)

    def finish(self, index: bytes, nbytes: int) -> None:
        self._drain()
        failed = self._stop_syncer()
        if failed is not None:
            raise failed  # the pack's bytes may not be on disk: never publish its index
        pack_dir = paths.pack_dir(self.root, self.pack_id)
        os.makedirs(os.path.join(pack_dir, "c"), exist_ok=True)
        meta_path, index_path = os.path.join(pack_dir, "zarr.json"), os.path.join(pack_dir, "index")
        if not self.durable:
            os.close(self.fd)
            os.replace(self.tmp_path, pack_chunk_path(self.root, self.pack_id))
            replace_file(meta_path, [array_metadata(nbytes)])
            crash_point("datapack.before_index")
            replace_file(index_path, [index])  # the index is the commit point of a pack: last
            return
        # the chunk file, zarr.json and the index fsynced together (one journal commit, not three
        # in a row: ~26 + 1 + 18 ms of a 60,000-sample commit), every one before any is renamed into
        # place: the index, the commit point of a pack, still appears last, over durable bytes only
        synced: list[int] = []
        try:
            for path, data in ((meta_path, array_metadata(nbytes)), (index_path, index)):
                synced.append(write_open(path + TMP_SUFFIX, [data]))
            fsync_many([self.fd, *synced])
        except BaseException:
            for fd in synced:
                os.close(fd)
            for path in (meta_path, index_path):
                try:
                    os.unlink(path + TMP_SUFFIX)
                except FileNotFoundError:
                    pass
            raise  # self.fd stays open: abort() closes it and removes the partial pack
        for fd in (self.fd, *synced):
            os.close(fd)
        os.replace(self.tmp_path, pack_chunk_path(self.root, self.pack_id))
        os.replace(meta_path + TMP_SUFFIX, meta_path)
        crash_point("datapack.before_index")
        os.replace(index_path + TMP_SUFFIX, index_path)
        fsync_dirs([os.path.join(pack_dir, "c"), pack_dir, packs_dir(self.root)])

    def abort(self) -> None:
        self._stop_syncer()
        os.close(self.fd)
        os.unlink(self.tmp_path)


class LocalPackStorage:
    """Packs in a local directory, read with ``pread`` (no Zarr call per sample)."""

    def __init__(self, root: str, durable: bool = True, cache_dir: str | None = None) -> None:
        self.root = root
        self.durable = durable
        #: where derived, deletable read caches (location tables) are kept; None: none kept
        self.cache_dir = cache_dir
        os.makedirs(packs_dir(root), exist_ok=True)
        for meta in (os.path.join(root, "zarr.json"), os.path.join(packs_dir(root), "zarr.json")):
            if not os.path.exists(meta):
                replace_file(meta, [_GROUP_META])
        self._init_fds()

    #: most pack files held open at once (one pack per commit: a long-lived process would
    #: otherwise run out of file descriptors)
    MAX_OPEN = 64

    def _init_fds(self) -> None:
        #: whole finished packs mapped for single-sample reads (at most MAX_OPEN; see :meth:`mapped`)
        self._maps: dict[str, np.ndarray] = {}
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_lock = threading.Lock()
        self._in_flight = 0
        self._to_close: list[int] = []  # evicted fds, closed once no read is using any fd

    def list_packs(self) -> list[str]:
        base = packs_dir(self.root)
        return sorted(p for p in os.listdir(base) if os.path.exists(os.path.join(base, p, "index")))

    def index_path(self, pack_id: str) -> str:
        return pack_index_path(self.root, pack_id)

    def read_index(self, pack_id: str) -> bytes:
        return read_regular(self.index_path(pack_id), self.root)

    def remove_dead_partials(self, min_age: float = 60.0) -> int:
        """Remove ``*.partial`` pack data left by killed writers on this machine (a killed fetch); return how many.

        Only files whose writer pid (the start of the pack id) is no longer running and that were
        not modified for ``min_age`` seconds: a live writer's file, or one from a pid this machine
        cannot see, is kept (``hangar gc`` removes those after an hour).
        """
        base = packs_dir(self.root)
        removed = 0
        now = time.time()
        for name in os.listdir(base):
            pack_id = name[:-len(".partial")]
            if not name.endswith(".partial") or len(pack_id) <= 20:
                continue
            try:
                pid = int(pack_id[:-20], 16)
                path = os.path.join(base, name)
                if pid_alive(pid) or now - os.lstat(path).st_mtime < min_age:
                    continue
                os.unlink(path)
                removed += 1
            except (ValueError, FileNotFoundError):
                continue
        return removed

    def replace_index(self, pack_id: str, index: bytes) -> None:
        """Atomically and durably replace an existing pack's index (dropping damaged records)."""
        if not os.path.exists(self.index_path(pack_id)):
            raise PackNotFoundError(self.index_path(pack_id))
        replace_file_durably(self.index_path(pack_id), [index])

    def pack_size(self, pack_id: str) -> Optional[int]:
        """Bytes in a finished pack's data file; ``None`` when there is no such pack (never written,
        no index yet, or removed by gc); ``CorruptDataError`` if it is no regular file in the repository."""
        base = paths.pack_dir(self.root, pack_id)
        try:
            fd = open_regular(pack_chunk_path(self.root, pack_id), self.root)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        return size if os.path.exists(os.path.join(base, "index")) else None

    def _acquire(self, pack_id: str) -> int:
        with self._fd_lock:
            fd = self._fds.get(pack_id)
            if fd is None:
                fd = open_regular(pack_chunk_path(self.root, pack_id), self.root)
                self._fds[pack_id] = fd
                while len(self._fds) > self.MAX_OPEN:
                    self._to_close.append(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(pack_id)
            self._in_flight += 1
            return fd

    def _release(self) -> None:
        with self._fd_lock:
            self._in_flight -= 1
            if not self._in_flight and self._to_close:
                # no read holds any fd now: an evicted number cannot be reused under a reader
                for fd in self._to_close:
                    os.close(fd)
                self._to_close.clear()

    def read_range(self, pack_id: str, offset: int, length: int) -> bytes:
        fd = self._acquire(pack_id)
        try:
            data = os.pread(fd, length, offset)
        finally:
            self._release()
        if len(data) != length:
            raise CorruptDataError(f"short read in pack {pack_id} at {offset}: {len(data)} of {length} bytes")
        return data

    def _read_with(self, pack_id: str, read: Callable[[int], T]) -> T:
        """``read(fd)`` on the open descriptor of pack ``pack_id``: :meth:`_acquire` and
        :meth:`_release` inlined for an already open pack, as this runs once per single-sample read."""
        lock = self._fd_lock
        with lock:
            fd = self._fds.get(pack_id)
            if fd is not None:
                self._fds.move_to_end(pack_id)
                self._in_flight += 1
        if fd is None:
            fd = self._acquire(pack_id)
        try:
            return read(fd)
        finally:
            with lock:
                self._in_flight -= 1
                if not self._in_flight and self._to_close:
                    for old in self._to_close:
                        os.close(old)
                    self._to_close.clear()

    def readinto(self, pack_id: str, offset: int, out: memoryview) -> None:
        n = self._read_with(pack_id, lambda fd: os.preadv(fd, [out], offset))
        if n != len(out):
            raise CorruptDataError(f"short read in pack {pack_id} at {offset}: {n} of {len(out)} bytes")

    def map_range(self, pack_id: str, offset: int, length: int) -> Optional[np.ndarray]:
        """``length`` bytes at ``offset`` of finished pack ``pack_id`` as a writeable uint8 array over a
        private mapping of its file (no copy; writes to it never reach the pack); ``None`` when the
        pack file is shorter than that (read it with :meth:`readinto`, which names the short read)."""
        fd = self._acquire(pack_id)
        try:
            if os.fstat(fd).st_size < offset + length:  # a mapping past the end would SIGBUS on access
                return None
            return map_private(fd, offset, length)  # None under an address-space limit: the caller copies
        finally:
            self._release()

    def mapped(self, pack_id: str, check_size: bool = True) -> Optional[np.ndarray]:
        """The whole of finished pack ``pack_id`` (as long as it was when first asked) as a uint8
        array over a private mapping, kept for later calls: a single-sample read copies its bytes
        from it (~1 us) instead of a ``pread`` (~2-3 us with its locking). Callers copy out of it
        and never write to it. ``None`` where it is not mapped (under an address-space limit, or
        where mmap fails, or where the file is now shorter than its mapping: truncated by someone
        else, checked unless ``check_size`` is False): read with :meth:`readinto`.
        ``FileNotFoundError`` for a pack removed meanwhile."""
        maps = self._maps
        kept = maps.get(pack_id)  # one lookup: another thread may evict it between a test and a read
        if kept is not None:
            if not check_size:
                return kept
            # a finished pack is never shortened by hangar, but one truncated by someone else after
            # it was mapped turns an access past its new end into SIGBUS (the process dies): batch
            # reads check the file's size first (fstat in C through the pooled descriptor, ~1-5 us
            # a batch under load) and a short file's mapping is dropped: the caller's pread names
            # the short read. Single reads skip it (``check_size=False``): they copy with
            # rowhash.copy_checked_guarded, which survives the fault, where the check cost 10% of a
            # 3.1 us read
            fd = self._acquire(pack_id)
            try:
                size = rowhash.file_size(fd)
            finally:
                self._release()
            if size >= len(kept):
                return kept
            with self._fd_lock:
                if maps.get(pack_id) is kept:
                    del maps[pack_id]
            return None
        if address_space_limited():  # a whole pack kept mapped would eat the room of later allocations
            return None
        fd = self._acquire(pack_id)
        try:
            size = os.fstat(fd).st_size
            whole = map_private(fd, 0, size) if size else None  # None under an address-space limit
        finally:
            self._release()
        if whole is None:
            return None
        with self._fd_lock:
            while len(maps) >= self.MAX_OPEN:  # oldest first; arrays being read keep their mapping alive
                maps.pop(next(iter(maps)))
            maps[pack_id] = whole
        return whole

    def readinto_checked(self, pack_id: str, offset: int, out: memoryview, check: int) -> bool:
        """:meth:`readinto`, then whether the bytes read match ``check`` (their :func:`stored_check`;
        0: none recorded, True), read and hashed in one call without the GIL (one Python call less
        per sample than ``readinto`` + ``stored_check``)."""
        n = self._read_with(pack_id, lambda fd: rowhash.pread_checked(fd, offset, out, check))
        if n < 0:
            return False
        if n != len(out):
            raise CorruptDataError(f"short read in pack {pack_id} at {offset}: {n} of {len(out)} bytes")
        return True

    def readinto_rows_checked(self, pack_id: str, offset: int, rows: np.ndarray, checks: np.ndarray) -> int:
        """Fill ``rows`` (C-contiguous 2-d uint8, consecutive in the pack from ``offset``) and check
        each against ``checks`` (its :func:`stored_check`; 0: none recorded) as its piece lands
        (:func:`hangar.plumbing.rowhash.pread_rows_checked`); the first mismatching row, or -1.

        Where the pack is mapped (:meth:`mapped`), the rows are copied out of the mapping and each
        checked in the same pass (:func:`hangar.plumbing.rowhash.copy_rows_checked`): a pread then
        a hash of each row cost ~8% of a sequential read of 150 KB samples, the fused copy 0-5%
        (CPU time, unchecked / checked 0.95-1.0 under load) and the pass got ~1.2x faster."""
        whole = self.mapped(pack_id)
        if whole is not None and offset + rows.nbytes <= len(whole):
            return rowhash.copy_rows_checked(whole[offset:offset + rows.nbytes], rows, checks)
        fd = self._acquire(pack_id)
        try:
            n, bad = rowhash.pread_rows_checked(fd, offset, rows, checks)
        finally:
            self._release()
        if bad < 0 and n != rows.nbytes:
            raise CorruptDataError(f"short read in pack {pack_id} at {offset}: {n} of {rows.nbytes} bytes")
        return bad

    def open_writer(self, pack_id: str) -> _LocalPackWriter:
        return _LocalPackWriter(self.root, pack_id, self.durable)

    def close(self) -> None:
        """Close the open pack files (at once if no read is running, else when the last one ends)."""
        with self._fd_lock:
            self._maps.clear()  # each unmapped once no array read from it is in use
            self._to_close.extend(self._fds.values())
            self._fds.clear()
            if not self._in_flight:
                for fd in self._to_close:
                    os.close(fd)
                self._to_close.clear()

    def __getstate__(self) -> dict[str, object]:
        # worker processes reopen their own file descriptors
        return {"root": self.root, "durable": self.durable, "cache_dir": self.cache_dir}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._init_fds()


class _ZarrPackWriter:
    def __init__(self, storage: "ZarrPackStorage", pack_id: str) -> None:
        self.storage = storage
        self.pack_id = pack_id
        self.buf = bytearray()

    def append(self, data: bytes | memoryview) -> int:
        off = len(self.buf)
        self.buf += data
        return off

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.buf[offset:offset + length])

    def finish(self, index: bytes, nbytes: int) -> None:
        s = self.storage
        s._set(pack_chunk_key(self.pack_id), bytes(self.buf))
        s._set(f"packs/{self.pack_id}/zarr.json", array_metadata(nbytes))
        s._set(f"packs/{self.pack_id}/index", index)

    def abort(self) -> None:
        self.buf = bytearray()


class ZarrPackStorage:
    """Packs in any ``zarr.abc.store.Store`` (memory, fsspec/S3, local) via Zarr's API."""

    def __init__(self, store: Any) -> None:  # any zarr.abc.store.Store
        from zarr.core.buffer import default_buffer_prototype

        self.store = store
        self._proto = default_buffer_prototype()
        self._set("zarr.json", _GROUP_META)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        from zarr.core.sync import sync

        return sync(coro)

    def _set(self, key: str, data: bytes) -> None:
        self._run(self.store.set(key, self._proto.buffer.from_bytes(data)))

    def _get(self, key: str, byte_range: Any = None) -> bytes:  # a zarr ByteRequest
        buf = self._run(self.store.get(key, self._proto, byte_range=byte_range))
        if buf is None:
            raise PackNotFoundError(key)
        data: bytes = buf.to_bytes()
        return data

    def list_packs(self) -> list[str]:
        async def collect() -> list[str]:
            return [k async for k in self.store.list_prefix("packs/")]

        keys = self._run(collect())
        return sorted(k.split("/")[1] for k in keys if k.endswith("/index"))

    def index_path(self, pack_id: str) -> str:
        return f"packs/{pack_id}/index"

    def read_index(self, pack_id: str) -> bytes:
        return self._get(f"packs/{pack_id}/index")

    def pack_size(self, pack_id: str) -> Optional[int]:
        return None  # records are range requests: a short answer is caught on read

    def replace_index(self, pack_id: str, index: bytes) -> None:
        """Replace an existing pack's index; ``FileNotFoundError`` if there is no such pack (as on local disk:
        an index without its pack would publish records of bytes never written)."""
        key = f"packs/{pack_id}/index"
        if not self._run(self.store.exists(key)):
            raise PackNotFoundError(key)
        self._set(key, index)

    def remove_dead_partials(self, min_age: float = 60.0) -> int:
        return 0  # unfinished packs are kept in memory until finished

    def read_range(self, pack_id: str, offset: int, length: int) -> bytes:
        from zarr.abc.store import RangeByteRequest

        return self._get(pack_chunk_key(pack_id), RangeByteRequest(offset, offset + length))

    def readinto(self, pack_id: str, offset: int, out: memoryview) -> None:
        out[:] = self.read_range(pack_id, offset, len(out))

    def map_range(self, pack_id: str, offset: int, length: int) -> Optional[np.ndarray]:
        return None  # no local file to map: bulk reads copy

    def mapped(self, pack_id: str, check_size: bool = True) -> Optional[np.ndarray]:
        return None  # single reads go through readinto

    def readinto_checked(self, pack_id: str, offset: int, out: memoryview, check: int) -> bool:
        """:meth:`readinto`, then whether the bytes read match ``check`` (0: none recorded, True)."""
        self.readinto(pack_id, offset, out)
        return not check or stored_check(out) == check

    def readinto_rows_checked(self, pack_id: str, offset: int, rows: np.ndarray, checks: np.ndarray) -> int:
        """Fill ``rows`` from the pack at ``offset``; the first row not matching ``checks``, or -1."""
        self.readinto(pack_id, offset, memoryview(rows).cast("B"))
        return rowhash.check_rows(rows, np.arange(len(rows)), checks)

    def open_writer(self, pack_id: str) -> _ZarrPackWriter:
        return _ZarrPackWriter(self, pack_id)

    def close(self) -> None:
        pass
