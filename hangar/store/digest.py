"""The one definition of a sample's digest."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import blake3
import numpy as np

from hangar.plumbing import rowhash

_THREADED_ABOVE = 4 << 20
#: rows (with their suffix) up to one blake3 chunk are hashed eight at a time by the C
#: extension (60,000 rows of 784 bytes: 0.03 s, 0.12-0.3 s through the blake3 package);
#: larger rows amortise the package's per-call cost and get its SIMD over chunks
_ROWS_IN_C_UPTO = 1024
#: stacks of at least this many bytes are hashed in two threads (below it the thread start-up,
#: ~0.1 ms, is a noticeable share)
_SPLIT_FROM = 4 << 20


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


def digests_of_rows(flat: memoryview, width: int, dtype: str, shape: tuple[int, ...]) -> list[bytes]:
    """:func:`digest_of_parts` of each ``width``-byte row of ``flat`` (the bytes of a
    C-contiguous stack of samples of one dtype and shape), in order."""
    suffix = _suffix(np.dtype(dtype).str, tuple(shape))
    n = len(flat) // width if width else 0
    if rowhash.available and 0 < width and width + len(suffix) <= _ROWS_IN_C_UPTO:
        out = rowhash.blake3_rows(flat, width, suffix)
        return [out[i:i + 32] for i in range(0, 32 * n, 32)]
    return digests_of_parts([flat[i * width:(i + 1) * width] for i in range(n)], dtype, shape)


def digest_array_of_rows(flat: memoryview, width: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`digests_of_rows` as one ``(n, 32)`` uint8 array (row ``i``: the digest of row ``i``),
    without a bytes object per row where the C extension hashes them."""
    suffix = _suffix(np.dtype(dtype).str, tuple(shape))
    n = len(flat) // width if width else 0
    if rowhash.available and 0 < width and width + len(suffix) <= _ROWS_IN_C_UPTO:
        if len(flat) < _SPLIT_FROM or (os.cpu_count() or 1) < 2:
            return np.frombuffer(rowhash.blake3_rows(flat, width, suffix), dtype=np.uint8).reshape(n, 32)
        # two halves on two cores (the C call releases the GIL): W1's 47 MB hash in ~half the time
        half = (n // 2 + 7) // 8 * 8 * width  # whole groups of 8 rows (the C code's lanes) in the first
        with ThreadPoolExecutor(1, thread_name_prefix="hangar-hash") as pool:
            second = pool.submit(rowhash.blake3_rows, flat[half:], width, suffix)
            first = rowhash.blake3_rows(flat[:half], width, suffix)
            return np.frombuffer(first + second.result(), dtype=np.uint8).reshape(n, 32)
    return np.frombuffer(b"".join(digests_of_rows(flat, width, dtype, shape)), dtype=np.uint8).reshape(n, 32)


def digest_prefixes(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each row of an ``(n, 32)`` uint8 digest array, as big-endian uint64
    (the key :class:`~hangar.store.index.DigestIndex` sorts by)."""
    return np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)


def any_shared(values: np.ndarray, ranked: np.ndarray) -> bool:
    """True when some element of ``values`` is in ``ranked`` (sorted, same dtype): one binary search
    per element (``np.isin`` hashes both arrays: ~40 ms for 16,384 against 60,000 here, this ~1 ms)."""
    if not len(values) or not len(ranked):
        return False
    pos = np.minimum(ranked.searchsorted(values), len(ranked) - 1)
    return bool((ranked[pos] == values).any())
