"""Arrayset schema: the JSON blob at ``arraysets/<name>/schema``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

MAX_RANK = 31
#: backend -> how sample bytes are compressed in the tensor store
BACKENDS = ("auto", "raw", "lz4", "zstd")
SAMPLE_FANOUT_DEPTH = 3


@dataclass(frozen=True)
class ArraysetSchema:
    """Everything fixed about an arrayset at ``init_arrayset`` time."""

    name: str
    dtype: object  # numpy descr: a str like '<f4', or a list of fields for structured dtypes
    shape: tuple[int, ...]
    variable_shape: bool
    named_samples: bool
    backend: str
    fanout_depth: int = SAMPLE_FANOUT_DEPTH

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, so equal schemas are equal blobs)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return (json.dumps(d, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ArraysetSchema":
        d = json.loads(data)
        d["shape"] = tuple(d["shape"])
        return cls(**d)

    @property
    def np_dtype(self) -> np.dtype:
        return descr_to_dtype(self.dtype)


def dtype_to_descr(dtype: np.dtype) -> object:
    """JSON-able description of a dtype (keeps the fields of structured dtypes)."""
    descr = np.lib.format.dtype_to_descr(dtype)
    return descr if isinstance(descr, str) else json.loads(json.dumps(descr))


def descr_to_dtype(descr: object) -> np.dtype:
    if isinstance(descr, str):
        return np.dtype(descr)
    return np.dtype([tuple(_fields(f)) for f in descr])  # type: ignore[union-attr]


def _fields(field: list) -> list:
    # nested structured fields come back from JSON as lists of lists
    if len(field) >= 2 and isinstance(field[1], list):
        return [field[0], descr_to_dtype(field[1]), *field[2:]]
    return [field[0], field[1], *(tuple(x) if isinstance(x, list) else x for x in field[2:])]
