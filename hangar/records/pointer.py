"""The pointer blob: the git record of one sample, naming its bytes by digest.

Format (one line of ascii): ``blake3:<64 hex> <dtype.str> <dim,dim,...>``. Identical
samples have identical pointers, so git stores them once.
"""

from __future__ import annotations

from binascii import unhexlify
from functools import lru_cache
from itertools import repeat
from typing import NamedTuple

import numpy as np

from hangar.errors import InvalidRecordError, InvalidSchemaError
from hangar.plumbing import rowhash
from hangar.records.schema import MAX_RANK, ArraysetSchema, validate_dtype


class SamplePointer(NamedTuple):
    """Where a sample's bytes are (``digest``) and how to read them (dtype, shape)."""

    digest: bytes
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def many(cls, digests: list[bytes], dtype: str, shape: tuple[int, ...]) -> list["SamplePointer"]:
        """Pointers of many samples sharing a dtype and shape (built in C: ~0.3 µs each less)."""
        return list(map(tuple.__new__, repeat(cls), zip(digests, repeat(dtype), repeat(shape))))


@lru_cache(maxsize=4096)
def _tail(dtype: str, shape: tuple[int, ...]) -> bytes:
    return f" {dtype} {','.join(map(str, shape)) or '-'}\n".encode()


def encode_pointer(ptr: SamplePointer) -> bytes:
    """Bytes of the pointer blob."""
    return b"blake3:" + ptr.digest.hex().encode() + _tail(ptr.dtype, ptr.shape)


_PREFIX = np.frombuffer(b"blake3:", dtype=np.uint8)
#: the two hex digits of each byte value, as one uint16 in memory order: one lookup per byte
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % v for v in range(256)), dtype=np.uint16)


def encode_pointers(digests: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`encode_pointer` of many samples sharing a dtype and shape, as rows of a uint8 array.

    ``digests`` is an (n, 32) uint8 array; row ``i`` of the result holds the same bytes as
    ``encode_pointer(SamplePointer(bytes(digests[i]), dtype, shape))``.
    """
    tail_bytes = _tail(dtype, tuple(shape))
    if rowhash.available and len(digests):  # the optional C extension: one pass, ~10x the table lookups
        rows = rowhash.hex_rows(np.ascontiguousarray(digests, dtype=np.uint8), b"blake3:", tail_bytes)
        return np.frombuffer(rows, dtype=np.uint8).reshape(len(digests), 71 + len(tail_bytes))
    tail = np.frombuffer(tail_bytes, dtype=np.uint8)
    out = np.empty((len(digests), 71 + len(tail)), dtype=np.uint8)
    out[:, :7] = _PREFIX
    out[:, 7:71] = _HEX_PAIRS[digests].view(np.uint8).reshape(len(digests), 64)
    out[:, 71:] = tail
    return out


@lru_cache(maxsize=4096)
def _parse_tail(dtype: str, shape: str) -> tuple[str, tuple[int, ...]]:
    dims = () if shape == "-" else tuple(int(d) for d in shape.split(","))
    validate_pointer_parts(dtype, dims)
    return dtype, dims


def validate_pointer_parts(dtype: str, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``dtype`` and ``shape`` are what a stored sample can have.

    The rules of ``add``: a fixed-size dtype (no python objects), positive dims, rank at
    most ``MAX_RANK``. Cached with the pointer tail parse, so it costs nothing per read.
    """
    validate_dtype(dtype, "sample pointer")
    if len(shape) > MAX_RANK or any(d <= 0 for d in shape):
        raise InvalidSchemaError(f"sample pointer shape {shape} must have 0-{MAX_RANK} positive dims")


def validate_pointer_for(ptr: SamplePointer, schema: ArraysetSchema, where: str) -> SamplePointer:
    """``ptr`` if a sample of it could have been added to ``schema``'s arrayset, else ``InvalidRecordError``.

    The same rules as ``add`` (dtype equal, shape equal or within the max shape).
    """
    shape = ptr.shape
    if ptr.dtype != schema.np_dtype.str:
        bad = f"dtype {ptr.dtype} differs from the arrayset dtype {schema.np_dtype.str}"
    elif len(shape) != len(schema.shape):
        bad = f"shape {shape} has another rank than the arrayset shape {schema.shape}"
    elif schema.variable_shape and any(d > m for d, m in zip(shape, schema.shape)):
        bad = f"shape {shape} exceeds the max shape {schema.shape}"
    elif not schema.variable_shape and shape != schema.shape:
        bad = f"shape {shape} differs from the arrayset shape {schema.shape}"
    else:
        return ptr
    raise InvalidRecordError(f"{where}: pointer says {bad}; the repository (or the remote it came from) holds a record "
                             "the hangar API never writes")


@lru_cache(maxsize=4096)
def _parse_tail_bytes(tail: bytes) -> tuple[str, tuple[int, ...]]:
    dtype, shape = tail.decode("ascii").split()
    return _parse_tail(dtype, shape)


def decode_pointer(data: bytes) -> SamplePointer:
    """Parse and validate a pointer blob; raise ``InvalidRecordError`` (a ``ValueError``) when it is not one."""
    try:
        if data[:7] == b"blake3:" and data[71:72] == b" ":  # the form encode_pointer writes
            return SamplePointer(unhexlify(data[7:71]), *_parse_tail_bytes(bytes(data[72:])))
        algo_digest, dtype, shape = data.decode("ascii").split()
        algo, hexdigest = algo_digest.split(":")
        digest = bytes.fromhex(hexdigest)
        if algo != "blake3" or len(digest) != 32:
            raise InvalidRecordError(algo_digest)
        return SamplePointer(digest, *_parse_tail(dtype, shape))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise InvalidRecordError(f"not a hangar sample pointer: {data[:120]!r} ({exc})") from exc


def decode_pointers(blobs: list[bytes]) -> list[SamplePointer]:
    """:func:`decode_pointer` of many pointer blobs (e.g. one leaf tree's), in order.

    When every blob has the form :func:`encode_pointer` writes with one dtype and shape (the
    usual leaf tree), they are checked and their hex digests decoded as columns of one array:
    60,000 pointers in ~0.02 s instead of ~0.12 s one by one. Otherwise one by one, with the
    same errors.
    """
    if not blobs:
        return []
    first = blobs[0]
    width = len(first)
    if width <= 72 or first[:7] != b"blake3:" or first[71:72] != b" " or any(len(b) != width for b in blobs):
        return [decode_pointer(b) for b in blobs]
    rows = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), width)
    tail = np.frombuffer(first[71:], dtype=np.uint8)
    if not (bool((rows[:, :7] == _PREFIX).all()) and bool((rows[:, 71:] == tail).all())):
        return [decode_pointer(b) for b in blobs]
    try:
        digests = unhexlify(rows[:, 7:71].tobytes())  # unhexlify, unlike bytes.fromhex, skips no whitespace
        dtype, shape = _parse_tail_bytes(first[72:])
    except (ValueError, TypeError, UnicodeDecodeError):
        return [decode_pointer(b) for b in blobs]  # raises InvalidRecordError naming the bad one
    return SamplePointer.many([digests[i:i + 32] for i in range(0, len(digests), 32)], dtype, shape)
