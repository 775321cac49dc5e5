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
    dtype: str
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
        return np.dtype(self.dtype)
