"""Arrayset schema: the JSON blob at ``arraysets/<name>/schema``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

MAX_RANK = 31
#: backend -> how sample bytes are compressed in the tensor store
BACKENDS = ("auto", "raw", "lz4", "zstd")
#: Hangar 0.3's backend codes, accepted as aliases of ours (the schema keeps the code given,
#: so ``aset.backend`` reads back what Hangar 0.3 code passed): '00' was blosc-compressed
#: HDF5 -> lz4; '01' (Hangar 0.4's second, compressed HDF5 layout) -> zstd; '10' was
#: uncompressed numpy memmap files -> raw. '50' (a remote placeholder, never chosen by a
#: user) and the reserved '20'/'60' have no meaning here and are refused.
BACKEND_ALIASES = {"00": "lz4", "01": "zstd", "10": "raw"}
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


def codec_backend(backend: str) -> str:
    """Our backend name for ``backend``, which may be one of Hangar 0.3's codes."""
    return BACKEND_ALIASES.get(backend, backend)


def valid_backends_text() -> str:
    """The backends ``init_arrayset`` accepts, for error messages."""
    aliases = ", ".join(f"{code!r} (= {ours!r})" for code, ours in BACKEND_ALIASES.items())
    return f"one of {', '.join(repr(b) for b in BACKENDS)}, or a Hangar 0.3 code: {aliases}"
