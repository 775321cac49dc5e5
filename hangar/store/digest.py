"""The one definition of a sample's digest."""

from __future__ import annotations

from functools import lru_cache

import blake3
import numpy as np

_THREADED_ABOVE = 4 << 20


def byte_view(arr: np.ndarray) -> memoryview:
    """The raw bytes of a C-contiguous array, without a copy."""
    try:
        return memoryview(arr).cast("B")
    except (TypeError, ValueError):  # dtypes the buffer protocol cannot express
        return memoryview(arr.reshape(-1).view(np.uint8))


@lru_cache(maxsize=1024)
def _suffix(dtype: str, shape: tuple[int, ...]) -> bytes:
    return f"|{dtype}|{','.join(map(str, shape))}".encode()


def _digest(data: bytes | memoryview, suffix: bytes) -> bytes:
    h = blake3.blake3(data, max_threads=blake3.blake3.AUTO) if len(data) > _THREADED_ABOVE else blake3.blake3(data)
    return h.update(suffix).digest()


def sample_digest(arr: np.ndarray, data: memoryview | None = None) -> bytes:
    """blake3 over the sample bytes plus its dtype and shape (32 bytes).

    Equal bytes with another dtype or shape are another sample. ``data`` may pass
    ``byte_view(arr)`` when the caller has it already.
    """
    return _digest(byte_view(arr) if data is None else data, _suffix(arr.dtype.str, arr.shape))


def digest_of_parts(raw: bytes | memoryview, dtype: str, shape: tuple[int, ...]) -> bytes:
    """Digest of a sample given as raw bytes (used to verify bytes received or read)."""
    return _digest(raw, _suffix(np.dtype(dtype).str, tuple(shape)))


def digests_of_parts(raws: list[memoryview], dtype: str, shape: tuple[int, ...]) -> list[bytes]:
    """:func:`digest_of_parts` of many samples that share one dtype and shape."""
    suffix = _suffix(np.dtype(dtype).str, tuple(shape))
    if raws and len(raws[0]) <= _THREADED_ABOVE:  # equal sizes: one hasher call chain per row, no size test
        new = blake3.blake3
        return [new(raw).update(suffix).digest() for raw in raws]
    return [_digest(raw, suffix) for raw in raws]
