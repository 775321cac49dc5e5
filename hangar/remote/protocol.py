"""Wire format of hangar's data-sync endpoints (served beside git smart HTTP).

Endpoints (all under ``/hangar/v1/``):

``GET ping``
    JSON ``{"hangar": <version>, "push_auth": <bool>}``.
``POST auth``
    Empty body, HTTP Basic credentials; ``204`` when they allow pushing, ``401`` otherwise.
``POST have``
    Body: N digests of 32 bytes. Answer: N bytes, ``1`` where the server stores the digest.
``POST download``
    Body: N digests. Answer: a stream of N *download records*, in the order the server
    reads them best (by storage location), each naming its digest (``404`` before any
    byte is streamed when the server lacks one of them).
``POST upload``
    Body: a stream of *upload records*; HTTP Basic credentials when the server restricts
    push. The server re-hashes every sample; one mismatch rejects the whole request
    (``422``) and nothing of it is stored. Answer: JSON ``{"stored": n, "present": m}``.

``POST ranges`` / ``POST upload-runs`` / ``GET pack/<id>``
    Samples as *runs* (pack ranges): see the section "pack ranges" below. ``ping`` lists
    them under ``capabilities``; a client falls back to download/upload without them.

A download record is ``<digest:32><codec:u8><rawlen:u64><length:u64>`` then ``length``
payload bytes (the sample as stored: ``codec`` says how it is compressed). An upload
record adds what the receiver needs to re-hash the sample: ``<dtype_len:u8><ndim:u8>``
after the fixed header, then the ascii dtype string, ``ndim`` little-endian int64 dims,
then the payload. All integers are little-endian.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Callable, Iterator, NamedTuple, Optional

import numpy as np

from hangar.errors import ProtocolError, RecordTooLarge
from hangar.store.tensorstore import StoredSample

PREFIX = "/hangar/v1/"
PING = PREFIX + "ping"
AUTH = PREFIX + "auth"
HAVE = PREFIX + "have"
DOWNLOAD = PREFIX + "download"
UPLOAD = PREFIX + "upload"

DIGEST_LEN = 32
#: most digests one have/download request may name (2 MiB of digests): the server reads a
#: request body whole before answering, so this bounds what an anonymous request makes it hold
MAX_DIGESTS_PER_REQUEST = 1 << 16
#: largest upload request body the server accepts
MAX_UPLOAD_BYTES = 1 << 30
#: most stored bytes one download answer may carry (a request for a single larger sample is
#: still answered): clients ask for at most 256 MiB of raw bytes per request, so this only
#: stops a request from turning a few bytes of digests into an unbounded answer
MAX_DOWNLOAD_BYTES = 1 << 30

_DOWN = struct.Struct("<32sBQQ")
_UP = struct.Struct("<32sBQQBB")
_DIM = struct.Struct("<q")


class WireSample(NamedTuple):
    """One sample on the wire: its stored form, plus dtype and shape on upload."""

    digest: bytes
    codec: int
    rawlen: int
    payload: bytes | memoryview
    dtype: str = ""
    shape: tuple[int, ...] = ()


DOWNLOAD_HEADER_SIZE = _DOWN.size


def to_stored(s: "WireSample") -> StoredSample:
    # payload is bytes or a memoryview; both are read
    return StoredSample(bytes(s.digest), s.codec, s.rawlen, s.payload)  # type: ignore[arg-type]


def split_digests(body: bytes) -> list[bytes]:
    """The digests of a have/download request body, in order (repeats kept)."""
    if len(body) % DIGEST_LEN:
        raise ProtocolError(f"request body of {len(body)} bytes is not a whole number of 32-byte digests")
    n = len(body) // DIGEST_LEN
    if n > MAX_DIGESTS_PER_REQUEST:
        raise ProtocolError(f"{n} digests in one request; at most {MAX_DIGESTS_PER_REQUEST} allowed")
    return [body[i:i + DIGEST_LEN] for i in range(0, len(body), DIGEST_LEN)]


def download_header(digest: bytes, codec: int, rawlen: int, length: int) -> bytes:
    return _DOWN.pack(digest, codec, rawlen, length)


def upload_header(s: WireSample) -> bytes:
    dtype = s.dtype.encode("ascii")
    return (_UP.pack(s.digest, s.codec, s.rawlen, len(s.payload), len(dtype), len(s.shape)) + dtype
            + b"".join(_DIM.pack(d) for d in s.shape))


def upload_record_size(payload_len: int, dtype: str, ndim: int) -> int:
    return _UP.size + len(dtype) + _DIM.size * ndim + payload_len


class RecordReader:
    """Parses records from a byte stream, reading it in large blocks into one reused buffer.

    A yielded record's payload is a view into that buffer: it is valid until the next
    record is requested (consumers store or copy it at once). A record larger than the
    buffer gets a buffer of its own.
    """

    def __init__(self, stream: BinaryIO, block: int = 4 << 20, limit: int | None = None) -> None:
        self.stream = stream
        self.limit = limit  # most bytes a stream may carry; record sizes are checked against it
        self._ring = bytearray(block)
        self.buf: bytearray = self._ring
        self.view = memoryview(self._ring)
        self.pos = 0
        self.end = 0
        self.bytes_read = 0

    def _readinto(self, view: memoryview) -> int:
        readinto = getattr(self.stream, "readinto", None)
        if readinto is not None:
            return readinto(view) or 0
        chunk = self.stream.read(len(view))
        view[:len(chunk)] = chunk
        return len(chunk)

    def _fill(self, n: int) -> bool:
        """Make ``n`` bytes available at ``pos``; False at a clean end of stream.

        A record larger than the ring buffer gets a buffer that grows (doubling) as its
        bytes arrive: a header claiming a huge length costs memory only in proportion to
        what the peer really sent (a 162-byte upload claiming 1 GiB allocated 1 GiB).
        """
        avail = self.end - self.pos
        big = n > len(self._ring)
        if big:
            buf = bytearray(max(len(self._ring), 2 * avail))
        else:
            buf = self._ring
        if avail:  # the start of the record, moved to the front (less than one record)
            buf[:avail] = bytes(self.view[self.pos:self.end])
        have = avail
        while have < n:
            if have == len(buf):
                buf.extend(bytes(min(n, 2 * len(buf)) - len(buf)))
            with memoryview(buf) as view:
                got = self._readinto(view[have:min(len(buf), n if big else len(buf))])
            if not got:
                if have == 0:
                    return False
                raise ProtocolError(f"stream ended inside a record ({have} of {n} bytes)")
            have += got
            self.bytes_read += got
        self.buf, self.view, self.pos, self.end = buf, memoryview(buf), 0, have
        return True

    def _take(self, n: int) -> memoryview | None:
        if self.end - self.pos < n and not self._fill(n):
            return None
        view = self.view[self.pos:self.pos + n]
        self.pos += n
        return view

    def _exact(self, n: int) -> memoryview:
        view = self._take(n)
        if view is None:
            raise ProtocolError("stream ended inside a record")
        return view

    def downloads(self, bound: Callable[[bytes, int], int] | None = None) -> Iterator[StoredSample]:
        """Download records as the store's ``StoredSample`` (payload is a memoryview).

        ``bound(digest, codec)`` is the most payload bytes the reader expects for that record;
        a record claiming more raises ``RecordTooLarge`` before its buffer is allocated.
        """
        unpack = _DOWN.unpack_from
        size = _DOWN.size
        while True:
            if self.end - self.pos < size and not self._fill(size):
                return
            digest, codec, rawlen, length = unpack(self.buf, self.pos)
            self.pos += size
            if bound is not None and length > bound(digest, codec):
                raise RecordTooLarge(f"download record of {digest.hex()[:16]}... claims {length} payload bytes; "
                                     f"at most {bound(digest, codec)} were expected for it")
            if self.end - self.pos >= length:
                payload = self.view[self.pos:self.pos + length]
                self.pos += length
            else:
                payload = self._exact(length)
            # payload is bytes or a memoryview; both are read
            yield StoredSample(digest, codec, rawlen, payload)  # type: ignore[arg-type]

    def uploads(self) -> Iterator[WireSample]:
        while True:
            head = self._take(_UP.size)
            if head is None:
                return
            digest, codec, rawlen, length, dlen, ndim = _UP.unpack(head)
            if ndim > 64 or dlen > 4096:
                raise ProtocolError(f"upload record with {ndim} dims / a {dlen}-byte dtype is not a sample")
            if self.limit is not None and length > self.limit - self.bytes_read + (self.end - self.pos):
                raise RecordTooLarge(f"upload record claims {length} bytes; at most {self.limit} per request")
            try:
                dtype = bytes(self._exact(dlen)).decode("ascii") if dlen else ""
            except UnicodeDecodeError as exc:
                raise ProtocolError("dtype of an upload record is not ascii") from exc
            dims = bytes(self._exact(_DIM.size * ndim)) if ndim else b""
            shape = tuple(_DIM.unpack_from(dims, i * _DIM.size)[0] for i in range(ndim))
            yield WireSample(digest, codec, rawlen, self._exact(length) if length else memoryview(b""), dtype, shape)


# ------------------------------------------------------------------ pack ranges
#: ``POST ranges``: body N digests (as for ``download``); answer: a stream of *runs*
RANGES = PREFIX + "ranges"
#: ``POST upload-runs``: body a stream of upload runs (credentials as for ``upload``)
UPLOAD_RUNS = PREFIX + "upload-runs"
#: ``GET pack/<id>``: every sample of one pack, back to back in storage order, each checked
#: against its checksum as it is read (the raw transfer the benchmark measures as the ceiling)
PACK = PREFIX + "pack/"
#: what ``ping`` says a server speaks beside the per-sample endpoints
CAPABILITIES = ("ranges", "upload-runs", "pack")

_RUN_MAGIC = b"HRUN"
_RUN = struct.Struct("<4sIQ")  # magic, number of samples, payload bytes
_UPRUN = struct.Struct("<4sIQBB")  # the same, then dtype length and ndim (all samples share them)
#: one sample of a run: digest, stored length, raw length, codec (the payloads follow the table
#: back to back in this order, so a run carries no per-sample offsets)
RUN_ENTRY = np.dtype([("digest", "u1", (32,)), ("length", "<u8"), ("rawlen", "<u8"), ("codec", "u1")])
RUN_HEADER_SIZE = _RUN.size
#: most payload bytes of a run of several samples (a larger sample travels in a run of its own,
#: bounded by its expected size on download and by the bytes received on upload)
MAX_RUN_BYTES = 64 << 20
_FIRST_BUFFER = 4 << 20
#: most samples in one run: bounds a run's table (49 bytes each) before it is read
MAX_RUN_SAMPLES = 1 << 16


def run_header(n: int, nbytes: int) -> bytes:
    return _RUN.pack(_RUN_MAGIC, n, nbytes)


def upload_run_header(n: int, nbytes: int, dtype: str, shape: tuple[int, ...]) -> bytes:
    d = dtype.encode("ascii")
    return _UPRUN.pack(_RUN_MAGIC, n, nbytes, len(d), len(shape)) + d + b"".join(_DIM.pack(x) for x in shape)


def run_table(digests: list[bytes], lengths: list[int], rawlens: list[int], codecs: list[int]) -> bytes:
    t = np.zeros(len(digests), dtype=RUN_ENTRY)
    if digests:
        t["digest"] = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    t["length"], t["rawlen"], t["codec"] = lengths, rawlens, codecs
    return t.tobytes()


class Run(NamedTuple):
    """One run: its samples' table (``RUN_ENTRY``) and their stored bytes back to back."""

    table: np.ndarray
    payload: memoryview
    dtype: str = ""
    shape: tuple[int, ...] = ()

    def parts(self) -> tuple[list[bytes], list[int], list[int], list[int], list[memoryview]]:
        """``(digests, codecs, rawlens, lengths, payloads)`` of the run's samples, in order
        (payloads are views into the run's buffer)."""
        t = self.table
        blob = t["digest"].tobytes()
        digests = [blob[i:i + DIGEST_LEN] for i in range(0, len(blob), DIGEST_LEN)]
        lengths = t["length"].tolist()
        ends = np.cumsum(t["length"]).tolist()
        view = self.payload
        payloads = [view[e - n:e] for n, e in zip(lengths, ends)]
        return digests, t["codec"].tolist(), t["rawlen"].tolist(), lengths, payloads

    def samples(self) -> list[StoredSample]:
        """The run's samples (payloads are views into the run's buffer)."""
        return [StoredSample(*x) for x in zip(*(self.parts()[i] for i in (0, 1, 2, 4)))]


class RunReader:
    """Parses runs from a byte stream, checking each header and table before its payload is read.

    ``budget(table)`` (download side) returns the most payload bytes the run may carry (the sum
    of what its samples can take stored) or raises ``ProtocolError``; on the upload side
    ``limit`` bounds a run by the bytes the request really carries. Only then is a buffer of
    the run's size allocated, and a run is at most ``MAX_RUN_BYTES``.
    """

    def __init__(self, stream: BinaryIO, limit: Optional[int] = None) -> None:
        self.stream = stream
        self.limit = limit
        self.bytes_read = 0

    def _read_exact(self, n: int, eof_ok: bool = False) -> Optional[memoryview]:
        # the buffer grows (doubling) as bytes arrive: a header claiming a huge run costs memory
        # only in proportion to what the peer really sent
        buf = bytearray(min(n, _FIRST_BUFFER))
        have = 0
        readinto = getattr(self.stream, "readinto", None)
        while have < n:
            if have == len(buf):
                buf.extend(bytes(min(n, 2 * len(buf)) - len(buf)))
            with memoryview(buf) as view:
                if readinto is not None:
                    got = readinto(view[have:]) or 0
                else:
                    chunk = self.stream.read(len(buf) - have)
                    got = len(chunk)
                    view[have:have + got] = chunk
            if not got:
                if have == 0 and eof_ok:
                    return None
                raise ProtocolError(f"stream ended inside a run ({have} of {n} bytes)")
            have += got
            self.bytes_read += got
        return memoryview(buf)

    def _check_size(self, n: int, nbytes: int) -> None:
        if not 0 < n <= MAX_RUN_SAMPLES:
            raise ProtocolError(f"a run of {n} samples; runs hold 1 to {MAX_RUN_SAMPLES}")
        if nbytes > MAX_RUN_BYTES and n > 1:  # a larger sample travels alone
            raise RecordTooLarge(f"a run claims {nbytes} payload bytes; at most {MAX_RUN_BYTES} per run")
        if self.limit is not None and n * RUN_ENTRY.itemsize + nbytes > self.limit - self.bytes_read:
            raise RecordTooLarge(f"a run claims {nbytes} payload bytes, more than the request carries "
                                 f"(at most {self.limit} per request)")

    def _table(self, n: int, nbytes: int) -> np.ndarray:
        table = np.frombuffer(self._read_exact(n * RUN_ENTRY.itemsize), dtype=RUN_ENTRY)  # type: ignore[arg-type]
        # summed as Python ints: a uint64 sum wraps, and lengths of 2**64 - k and k + nbytes
        # "added up" to the header's size while every span cut from them was still the true one
        total = sum(table["length"].tolist())
        if total != nbytes:
            raise ProtocolError(f"a run's table sums to {total} bytes, its header says {nbytes}")
        return table

    def downloads(self, budget: Callable[[np.ndarray], int]) -> Iterator[Run]:
        while (head := self._read_exact(_RUN.size, eof_ok=True)) is not None:
            magic, n, nbytes = _RUN.unpack(head)
            if magic != _RUN_MAGIC:
                raise ProtocolError(f"a run starts with {bytes(magic)!r}, not {_RUN_MAGIC!r}")
            self._check_size(n, nbytes)
            table = self._table(n, nbytes)
            allowed = budget(table)
            if nbytes > allowed:
                raise RecordTooLarge(f"a run claims {nbytes} payload bytes; at most {allowed} were expected for it")
            yield Run(table, self._read_exact(nbytes))  # type: ignore[arg-type]

    def uploads(self) -> Iterator[Run]:
        while (head := self._read_exact(_UPRUN.size, eof_ok=True)) is not None:
            magic, n, nbytes, dlen, ndim = _UPRUN.unpack(head)
            if magic != _RUN_MAGIC:
                raise ProtocolError(f"an upload run starts with {bytes(magic)!r}, not {_RUN_MAGIC!r}")
            if ndim > 64 or dlen > 4096 or dlen == 0:
                raise ProtocolError(f"an upload run with {ndim} dims / a {dlen}-byte dtype is not a sample's")
            self._check_size(n, nbytes)
            try:
                dtype = bytes(self._read_exact(dlen)).decode("ascii")  # type: ignore[arg-type]
            except UnicodeDecodeError as exc:
                raise ProtocolError("the dtype of an upload run is not ascii") from exc
            dims = bytes(self._read_exact(_DIM.size * ndim)) if ndim else b""  # type: ignore[arg-type]
            shape = tuple(_DIM.unpack_from(dims, i * _DIM.size)[0] for i in range(ndim))
            table = self._table(n, nbytes)
            yield Run(table, self._read_exact(nbytes), dtype, shape)  # type: ignore[arg-type]

