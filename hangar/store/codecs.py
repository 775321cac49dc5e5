"""Per-sample compression with numcodecs, used only where it pays.

Decoding is bounded by the sample's expected raw size: a stored frame that declares another
size (a decompression bomb: 64 KiB of zstd RLE blocks declaring 2 GiB) is refused before
anything is allocated, and every decoder error is a ``CorruptDataError``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hangar.errors import CorruptDataError

RAW, LZ4, ZSTD = 0, 1, 2
_BACKEND_CODEC = {"raw": RAW, "lz4": LZ4, "zstd": ZSTD}
#: compress only when it saves at least this share of the bytes
_WORTH_IT = 0.85
_PROBE_EVERY = 64
_COPY_BELOW = 64 << 10
# numcodecs is imported on first use: importing it (and the entry points its registry scans)
# took ~60 ms of the ~0.4 s of ``import hangar``, and raw samples never need it
_CODECS: dict[int, Any] = {}
#: numcodecs' module-level decompressors: lz4 ``(src) -> bytes``, zstd ``(src, dest)``
_DECOMPRESS: dict[int, Callable[..., bytes]] = {}
#: LZ4 compression called directly: the bytes of ``numcodecs.lz4.LZ4(acceleration=1).encode``, without
#: its argument checks (~2.5 us instead of ~20 us for a 784-byte sample; auto probes one in 64)
_COMPRESS_LZ4: list[Callable[[Any], bytes]] = []


def _load() -> None:
    import numcodecs.lz4
    import numcodecs.zstd

    _DECOMPRESS.update({LZ4: numcodecs.lz4.decompress, ZSTD: numcodecs.zstd.decompress})
    _COMPRESS_LZ4[:] = [lambda raw: numcodecs.lz4.compress(raw, 1)]
    _CODECS.update({LZ4: numcodecs.lz4.LZ4(acceleration=1), ZSTD: numcodecs.zstd.Zstd(level=1)})


def _codec(codec: int) -> Any:  # a numcodecs Codec
    if not _CODECS:
        _load()
    return _CODECS[codec]


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def max_stored_length(codec: int, rawlen: int) -> int:
    """Most bytes a sample of ``rawlen`` raw bytes can take stored under ``codec``.

    Over-approximates LZ4_compressBound (+ numcodecs' 4-byte size header) and ZSTD_compressBound;
    a stored length above it is damage, refused before reading that many bytes.
    """
    if codec == RAW:
        return rawlen
    return rawlen + (rawlen >> 7) + 1024


def zstd_content_size(stored: bytes | memoryview) -> int:
    """The content size a zstd frame header declares (-1 when it declares none)."""
    head = bytes(stored[:18])
    if head[:4] != _ZSTD_MAGIC or len(head) < 6:
        raise CorruptDataError(f"stored sample is not a zstd frame (starts {head[:8].hex()})")
    fhd = head[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if not size:
        return -1
    if len(head) < pos + size:
        raise CorruptDataError("stored zstd frame header is truncated")
    value = int.from_bytes(head[pos:pos + size], "little")
    return value + 256 if size == 2 else value


def declared_size(codec: int, stored: bytes | memoryview) -> int:
    """Raw size the stored form says it decodes to (-1: not declared)."""
    if codec == RAW:
        return len(stored)
    if codec == LZ4:
        if len(stored) < 4:
            raise CorruptDataError(f"stored lz4 sample of {len(stored)} bytes has no size header")
        return int.from_bytes(bytes(stored[:4]), "little", signed=True)
    if codec == ZSTD:
        return zstd_content_size(stored)
    raise CorruptDataError(f"unknown codec {codec} (known: {RAW} raw, {LZ4} lz4, {ZSTD} zstd)")


def encode(codec: int, raw: memoryview) -> bytes | memoryview:
    """Stored form of ``raw`` bytes under ``codec``."""
    if codec == RAW:
        return raw
    if codec == LZ4:
        if not _COMPRESS_LZ4:
            _load()
        return _COMPRESS_LZ4[0](raw)
    stored: bytes = _codec(codec).encode(raw)
    return stored


def decode_into(codec: int, stored: bytes | memoryview, out: memoryview) -> None:
    """Decode ``stored`` into the preallocated byte buffer ``out``, allocating at most ``len(out)``.

    Raises ``CorruptDataError`` when the stored form declares another size than ``len(out)``
    (checked from its header before decoding) or does not decode.
    """
    n = len(out)
    declared = declared_size(codec, stored)
    if declared != n:
        # every frame hangar writes declares its size (numcodecs' lz4 header, zstd's content size)
        raise CorruptDataError(f"stored sample declares {declared} raw bytes (codec {codec}), its record says {n}"
                               + ("; a frame without a declared size is not one hangar writes" if declared < 0 else ""))
    if codec != RAW and not _DECOMPRESS:
        _load()
    try:
        if codec == RAW:
            out[:] = stored
        elif codec == LZ4 and n <= _COPY_BELOW:
            # small samples: the module-level decompressor plus a copy takes ~0.5 us, the
            # Codec object's decode(out=...) ~4 us of argument checks (a loader's hot path);
            # the allocation is the header's size, checked equal to len(out) above
            out[:] = _DECOMPRESS[LZ4](stored)
        elif codec == ZSTD:
            # into ``out`` directly: as fast as decompress-and-copy, and zstd stops at its end
            _DECOMPRESS[ZSTD](stored, out)
        else:
            _codec(codec).decode(stored, out=np.frombuffer(out, dtype=np.uint8))
    except CorruptDataError:
        raise
    except (ValueError, RuntimeError, TypeError, MemoryError) as exc:
        raise CorruptDataError(f"stored sample does not decode (codec {codec}, {n} raw bytes): {exc}") from exc


class CodecChooser:
    """Chooses a codec per sample for one arrayset backend.

    ``auto`` probes LZ4 on one sample in every 64 and keeps compressing only while
    it saves at least 15%; random data is stored raw at no cost.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._count = 0
        self._auto_codec = RAW

    def encode_many(self, raws: list[memoryview]) -> tuple[list[int], list[bytes | memoryview]]:
        """``encode`` of each sample in order (codecs and stored forms as two lists).

        The same choices as one ``encode`` call per sample, but runs between two ``auto``
        probes are handled as slices: raw samples cost nothing per sample.
        """
        n = len(raws)
        if self.backend != "auto":
            codec = _BACKEND_CODEC[self.backend]
            return [codec] * n, list(raws) if codec == RAW else [encode(codec, r) for r in raws]
        codec_ids: list[int] = []
        payloads: list[bytes | memoryview] = []
        i = 0
        while i < n:
            if self._count % _PROBE_EVERY == 0:
                codec, payload = self.encode(raws[i])
                codec_ids.append(codec)
                payloads.append(payload)
                i += 1
                continue
            run = min(n - i, _PROBE_EVERY - self._count % _PROBE_EVERY)
            codec = self._auto_codec
            part = raws[i:i + run]
            payloads.extend(part if codec == RAW else [encode(codec, r) for r in part])
            codec_ids.extend([codec] * run)
            self._count += run
            i += run
        return codec_ids, payloads

    def encode_rows(self, flat: memoryview, width: int) -> tuple[list[int], list[bytes | memoryview]] | None:
        """:meth:`encode_many` of the ``width``-byte rows of ``flat``, the same choices made; ``None``
        when every row stays raw, then without building a row slice or list entry per row (a stack
        appended as it lies needs none: 60,000 rows of 784 bytes cost ~15 ms of slices here)."""
        n = len(flat) // width if width else 0
        if self.backend != "auto":
            if _BACKEND_CODEC[self.backend] == RAW:
                return None
            return self.encode_many([flat[i * width:(i + 1) * width] for i in range(n)])
        runs: list[tuple[int, int, int, bytes | memoryview | None]] = []  # (start, end, codec, probe's payload)
        i = 0
        while i < n:
            if self._count % _PROBE_EVERY == 0:
                probe_codec, probed = self.encode(flat[i * width:(i + 1) * width])
                runs.append((i, i + 1, probe_codec, probed))
                i += 1
                continue
            run = min(n - i, _PROBE_EVERY - self._count % _PROBE_EVERY)
            runs.append((i, i + run, self._auto_codec, None))
            self._count += run
            i += run
        if all(codec == RAW for _, _, codec, _ in runs):
            return None
        codec_ids: list[int] = []
        payloads: list[bytes | memoryview] = []
        for a, b, codec, given in runs:
            codec_ids.extend([codec] * (b - a))
            if given is not None:
                payloads.append(given)
            else:
                part = [flat[k * width:(k + 1) * width] for k in range(a, b)]
                payloads.extend(part if codec == RAW else [encode(codec, r) for r in part])
        return codec_ids, payloads

    def encode(self, raw: memoryview) -> tuple[int, bytes | memoryview]:
        if self.backend != "auto":
            codec = _BACKEND_CODEC[self.backend]
            return codec, encode(codec, raw)
        probe = self._count % _PROBE_EVERY == 0
        self._count += 1
        if probe:
            packed = encode(LZ4, raw)
            self._auto_codec = LZ4 if len(packed) <= _WORTH_IT * len(raw) else RAW
            return (LZ4, packed) if self._auto_codec == LZ4 else (RAW, raw)
        return self._auto_codec, encode(self._auto_codec, raw)


def decode_many(codec_ids: list[int], stored: list[Any], rawlen: int) -> list[Any]:
    """Raw bytes of many stored samples that all decode to ``rawlen`` bytes (received ones, to re-hash).

    Each decode is bounded as in :func:`decode_into`: a stored form declaring another size is
    refused (``CorruptDataError``) before anything is allocated. Small LZ4 samples skip the
    per-sample output buffer: the decompressor's own result, of the checked size, is returned
    (measured: 60,000 MNIST-like samples received at ~8 us a sample through decode_into, ~3 us here).
    """
    if not _DECOMPRESS:
        _load()
    lz4 = _DECOMPRESS[LZ4]
    small = rawlen <= _COPY_BELOW
    out: list[Any] = []
    for codec, s in zip(codec_ids, stored):
        if codec == RAW and len(s) == rawlen:
            out.append(s)
        elif codec == LZ4 and small and len(s) >= 4:
            declared = int.from_bytes(s[:4], "little", signed=True)
            if declared != rawlen:
                raise CorruptDataError(f"stored sample declares {declared} raw bytes (codec {codec}), its record "
                                       f"says {rawlen}")
            try:
                raw = lz4(s)
            except (ValueError, RuntimeError, TypeError, MemoryError) as exc:
                raise CorruptDataError(f"stored sample does not decode (codec {codec}, {rawlen} raw bytes): {exc}"
                                       ) from exc
            if len(raw) != rawlen:
                raise CorruptDataError(f"stored sample decoded to {len(raw)} bytes, its record says {rawlen}")
            out.append(raw)
        else:
            buf = memoryview(np.empty(rawlen, dtype=np.uint8))
            decode_into(codec, s, buf)
            out.append(buf)
    return out


def decode_spans(codec_ids: np.ndarray, block: memoryview, starts: np.ndarray, lengths: np.ndarray,
                 rawlen: int) -> list[Any]:
    """:func:`decode_many` of samples stored back to back in ``block`` (``starts``/``lengths`` int64,
    one per sample), each to decode to ``rawlen`` bytes.

    When every sample is a small LZ4 frame (a received range of MNIST-like samples), the sizes
    the frames declare are checked against ``rawlen`` in one vectorised pass before anything is
    decoded, and the decoder is mapped over the spans in C: 60,000 x 784 B in ~0.1 s against
    ~0.3 s through :func:`decode_many` (a Python loop per sample). Otherwise :func:`decode_many`.
    Bounded as it is: a frame declaring another size is refused before anything is allocated.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    spans = list(map(block.__getitem__, map(slice, starts.tolist(), (starts + lengths).tolist())))
    codec_ids = np.asarray(codec_ids)
    if not len(spans) or rawlen > _COPY_BELOW or not bool((codec_ids == LZ4).all()) or int(lengths.min()) < 4:
        return decode_many(codec_ids.tolist(), spans, rawlen)
    if not _DECOMPRESS:
        _load()
    head = np.frombuffer(block, dtype=np.uint8)[starts[:, None] + np.arange(4)]
    declared = np.ascontiguousarray(head).view("<i4").ravel()
    if bool((declared != rawlen).any()):
        k = int(np.flatnonzero(declared != rawlen)[0])
        raise CorruptDataError(f"stored sample declares {int(declared[k])} raw bytes (codec {LZ4}), its record "
                               f"says {rawlen}")
    try:
        out = list(map(_DECOMPRESS[LZ4], spans))
    except (ValueError, RuntimeError, TypeError, MemoryError):
        return decode_many(codec_ids.tolist(), spans, rawlen)  # its error for the frame that does not decode
    if any(len(raw) != rawlen for raw in out):
        return decode_many(codec_ids.tolist(), spans, rawlen)  # its error for the wrong size
    return out
