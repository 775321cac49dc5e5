"""Per-sample compression with numcodecs, used only where it pays."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

RAW, LZ4, ZSTD = 0, 1, 2
_BACKEND_CODEC = {"raw": RAW, "lz4": LZ4, "zstd": ZSTD}
#: compress only when it saves at least this share of the bytes
_WORTH_IT = 0.85
_PROBE_EVERY = 64
_COPY_BELOW = 64 << 10
# numcodecs is imported on first use: importing it (and the entry points its registry scans)
# took ~60 ms of the ~0.4 s of ``import hangar``, and raw samples never need it
_CODECS: dict[int, Any] = {}
_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {}


def _load() -> None:
    import numcodecs.lz4
    import numcodecs.zstd

    _DECOMPRESS.update({LZ4: numcodecs.lz4.decompress, ZSTD: numcodecs.zstd.decompress})
    _CODECS.update({LZ4: numcodecs.lz4.LZ4(acceleration=1), ZSTD: numcodecs.zstd.Zstd(level=1)})


def _codec(codec: int) -> Any:  # noqa: ANN401 - a numcodecs Codec
    if not _CODECS:
        _load()
    return _CODECS[codec]


def encode(codec: int, raw: memoryview) -> bytes | memoryview:
    """Stored form of ``raw`` bytes under ``codec``."""
    if codec == RAW:
        return raw
    return _codec(codec).encode(raw)


def decode_into(codec: int, stored: bytes, out: memoryview) -> None:
    """Decode ``stored`` into the preallocated byte buffer ``out``."""
    if codec == RAW:
        out[:] = stored
    elif len(out) <= _COPY_BELOW:
        # small samples: the module-level decompressor plus a copy takes ~0.5 us, the
        # Codec object's decode(out=...) ~4 us of argument checks (a loader's hot path)
        if not _DECOMPRESS:
            _load()
        out[:] = _DECOMPRESS[codec](stored)
    else:
        _codec(codec).decode(stored, out=np.frombuffer(out, dtype=np.uint8))


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

    def encode(self, raw: memoryview) -> tuple[int, bytes | memoryview]:
        if self.backend != "auto":
            codec = _BACKEND_CODEC[self.backend]
            return codec, encode(codec, raw)
        probe = self._count % _PROBE_EVERY == 0
        self._count += 1
        if probe:
            packed = _codec(LZ4).encode(raw)
            self._auto_codec = LZ4 if len(packed) <= _WORTH_IT * len(raw) else RAW
            return (LZ4, packed) if self._auto_codec == LZ4 else (RAW, raw)
        return self._auto_codec, encode(self._auto_codec, raw)
