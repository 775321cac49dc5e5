"""Where sample packs live: a local directory (fast path) or any Zarr v3 store.

A pack is a 1-D uint8 Zarr v3 array with one chunk, ``packs/<id>/c/0``, holding many
samples back to back, plus ``packs/<id>/index``: one fixed-size record per sample
(digest, offset, stored length, raw length, codec). The index is written last: a pack
without an index is unfinished and ignored, so a crash never exposes half a pack.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import OrderedDict
from typing import Protocol

import numpy as np

from hangar._faults import crash_point

INDEX_DTYPE = np.dtype([("digest", "u1", (32,)), ("offset", "<u8"), ("length", "<u8"),
                        ("rawlen", "<u8"), ("codec", "u1")])
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
    def read_range(self, pack_id: str, offset: int, length: int) -> bytes: ...
    def readinto(self, pack_id: str, offset: int, out: memoryview) -> None: ...
    def open_writer(self, pack_id: str) -> PackWriter: ...
    def close(self) -> None: ...


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``: a short write (disk full) is retried, no progress raises.

    Callers advance their own offsets only after this returns, so a failed write leaves
    their state as it was (the next write covers the same range again).
    """
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"no progress writing {len(view)} bytes at offset {offset}")
        view = view[n:]
        offset += n


def _fsync_file(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _pwrite_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _BackgroundSync:
    """fdatasync a file in a thread while it is still being written.

    The disk then flushes while we hash and write the next samples, and the final
    fsync only waits for the tail (300 MB: ~0.11 s of final fsync becomes ~0.01 s).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.wake = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="hangar-pack-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stop:
                return
            os.fdatasync(self.fd)

    def request(self) -> None:
        self.wake.set()

    def close(self) -> None:
        self.stop = True
        self.wake.set()
        self.thread.join()


class _LocalPackWriter:
    _BUFFER = 4 << 20
    #: samples this large are written straight from the caller's buffer (no copy)
    _DIRECT = 64 << 10
    #: ask for a background flush every time this much more is written
    _SYNC_EVERY = 64 << 20

    def __init__(self, root: str, pack_id: str, durable: bool) -> None:
        self.root = root
        self.pack_id = pack_id
        self.durable = durable
        self.tmp_path = os.path.join(root, "packs", f"{pack_id}.partial")
        self.fd = os.open(self.tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.buf = bytearray()
        self.flushed = 0
        self.size = 0
        self._synced_at = 0
        self._syncer: _BackgroundSync | None = None

    def append(self, data: bytes | memoryview) -> int:
        off = self.size
        n = len(data)
        if n >= self._DIRECT:
            self._drain()
            _pwrite_all(self.fd, data, self.flushed)
            self.flushed += n
            self._maybe_sync()
        else:
            self.buf += data
            if len(self.buf) >= self._BUFFER:
                self._drain()
        self.size += n
        return off

    def _drain(self) -> None:
        if self.buf:
            _pwrite_all(self.fd, self.buf, self.flushed)
            self.flushed += len(self.buf)
            self.buf = bytearray()
            self._maybe_sync()

    def _maybe_sync(self) -> None:
        if self.durable and self.flushed - self._synced_at >= self._SYNC_EVERY:
            self._synced_at = self.flushed
            if self._syncer is None:
                self._syncer = _BackgroundSync(self.fd)
            self._syncer.request()

    def _stop_syncer(self) -> None:
        if self._syncer is not None:
            self._syncer.close()
            self._syncer = None

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.flushed:
            start = offset - self.flushed
            return bytes(self.buf[start:start + length])
        self._drain()
        return os.pread(self.fd, length, offset)

    def finish(self, index: bytes, nbytes: int) -> None:
        self._drain()
        self._stop_syncer()
        if self.durable:
            os.fsync(self.fd)
        os.close(self.fd)
        pack_dir = os.path.join(self.root, "packs", self.pack_id)
        os.makedirs(os.path.join(pack_dir, "c"), exist_ok=True)
        os.replace(self.tmp_path, os.path.join(pack_dir, "c", "0"))
        _fsync_file(os.path.join(pack_dir, "zarr.json"), array_metadata(nbytes))
        crash_point("datapack.before_index")
        # the index is the commit point of a pack: written (durably) last
        _fsync_file(os.path.join(pack_dir, "index"), index)
        if self.durable:
            for d in (os.path.join(pack_dir, "c"), pack_dir, os.path.join(self.root, "packs")):
                _fsync_dir(d)

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
        os.makedirs(os.path.join(root, "packs"), exist_ok=True)
        for meta in (os.path.join(root, "zarr.json"), os.path.join(root, "packs", "zarr.json")):
            if not os.path.exists(meta):
                _fsync_file(meta, _GROUP_META)
        self._init_fds()

    #: most pack files held open at once (one pack per commit: a long-lived process would
    #: otherwise run out of file descriptors)
    MAX_OPEN = 64

    def _init_fds(self) -> None:
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_lock = threading.Lock()
        self._in_flight = 0
        self._to_close: list[int] = []  # evicted fds, closed once no read is using any fd

    def list_packs(self) -> list[str]:
        base = os.path.join(self.root, "packs")
        return sorted(p for p in os.listdir(base) if os.path.exists(os.path.join(base, p, "index")))

    def read_index(self, pack_id: str) -> bytes:
        with open(os.path.join(self.root, "packs", pack_id, "index"), "rb") as f:
            return f.read()

    def _acquire(self, pack_id: str) -> int:
        with self._fd_lock:
            fd = self._fds.get(pack_id)
            if fd is None:
                fd = os.open(os.path.join(self.root, "packs", pack_id, "c", "0"), os.O_RDONLY)
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

    def pack_size(self, pack_id: str) -> int | None:
        """Bytes in a finished pack; ``None`` when there is no such pack (never written, or removed by gc)."""
        base = os.path.join(self.root, "packs", pack_id)
        try:
            size = os.stat(os.path.join(base, "c", "0")).st_size
        except OSError:
            return None
        return size if os.path.exists(os.path.join(base, "index")) else None

    def read_range(self, pack_id: str, offset: int, length: int) -> bytes:
        fd = self._acquire(pack_id)
        try:
            return os.pread(fd, length, offset)
        finally:
            self._release()

    def readinto(self, pack_id: str, offset: int, out: memoryview) -> None:
        fd = self._acquire(pack_id)
        try:
            n = os.preadv(fd, [out], offset)
        finally:
            self._release()
        if n != len(out):
            raise OSError(f"short read in pack {pack_id} at {offset}: {n} of {len(out)} bytes")

    def open_writer(self, pack_id: str) -> _LocalPackWriter:
        return _LocalPackWriter(self.root, pack_id, self.durable)

    def close(self) -> None:
        """Close the open pack files (at once if no read is running, else when the last one ends)."""
        with self._fd_lock:
            self._to_close.extend(self._fds.values())
            self._fds.clear()
            if not self._in_flight:
                for fd in self._to_close:
                    os.close(fd)
                self._to_close.clear()

    def __getstate__(self) -> dict:
        # worker processes reopen their own file descriptors
        return {"root": self.root, "durable": self.durable, "cache_dir": self.cache_dir}

    def __setstate__(self, state: dict) -> None:
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
        s._set(f"packs/{self.pack_id}/c/0", bytes(self.buf))
        s._set(f"packs/{self.pack_id}/zarr.json", array_metadata(nbytes))
        s._set(f"packs/{self.pack_id}/index", index)

    def abort(self) -> None:
        self.buf = bytearray()


class ZarrPackStorage:
    """Packs in any ``zarr.abc.store.Store`` (memory, fsspec/S3, local) via Zarr's API."""

    def __init__(self, store) -> None:  # noqa: ANN001 - any zarr Store
        from zarr.core.buffer import default_buffer_prototype

        self.store = store
        self._proto = default_buffer_prototype()
        self._set("zarr.json", _GROUP_META)

    def _run(self, coro):  # noqa: ANN001, ANN202
        from zarr.core.sync import sync

        return sync(coro)

    def _set(self, key: str, data: bytes) -> None:
        self._run(self.store.set(key, self._proto.buffer.from_bytes(data)))

    def _get(self, key: str, byte_range=None) -> bytes:  # noqa: ANN001
        buf = self._run(self.store.get(key, self._proto, byte_range=byte_range))
        if buf is None:
            raise FileNotFoundError(key)
        return buf.to_bytes()

    def list_packs(self) -> list[str]:
        async def collect() -> list[str]:
            return [k async for k in self.store.list_prefix("packs/")]

        keys = self._run(collect())
        return sorted(k.split("/")[1] for k in keys if k.endswith("/index"))

    def read_index(self, pack_id: str) -> bytes:
        return self._get(f"packs/{pack_id}/index")

    def read_range(self, pack_id: str, offset: int, length: int) -> bytes:
        from zarr.abc.store import RangeByteRequest

        return self._get(f"packs/{pack_id}/c/0", RangeByteRequest(offset, offset + length))

    def readinto(self, pack_id: str, offset: int, out: memoryview) -> None:
        out[:] = self.read_range(pack_id, offset, len(out))

    def open_writer(self, pack_id: str) -> _ZarrPackWriter:
        return _ZarrPackWriter(self, pack_id)

    def close(self) -> None:
        pass
