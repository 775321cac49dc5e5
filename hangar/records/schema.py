"""Arrayset schema: the JSON blob at ``arraysets/<name>/schema``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from hangar.errors import InvalidRecordError, InvalidSchemaError
from hangar.records.keys import validate_arrayset_name

MAX_RANK = 31
#: deepest sample fan-out a schema may ask for (every writer uses SAMPLE_FANOUT_DEPTH; a
#: loaded record asking for millions of levels would make every lookup build a huge path)
MAX_FANOUT_DEPTH = 8
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

    def __post_init__(self) -> None:
        # the one rule set of a schema: the writer (init_arrayset) and every loader (from_json)
        # construct through here, so a record built with plain git cannot hold what the API refuses
        validate_schema(self)

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, so equal schemas are equal blobs)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return (json.dumps(d, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str = "schema record") -> "ArraysetSchema":
        """Parse and validate a schema blob; raise ``InvalidRecordError`` naming ``where``."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise InvalidSchemaError(f"a schema is a JSON object, not {type(d).__name__}")
            unknown = set(d) - {f.name for f in fields(cls)}
            if unknown:
                raise InvalidSchemaError(f"unknown schema fields {sorted(unknown)}")
            if not isinstance(d.get("shape"), list):
                raise InvalidSchemaError(f"shape {d.get('shape')!r} must be a list of ints")
            d["shape"] = tuple(d["shape"])
            return cls(**d)
        except InvalidRecordError:
            raise
        except (ValueError, TypeError, RecursionError) as exc:  # json errors are ValueErrors
            raise InvalidRecordError(f"{where} is invalid: {exc}; the repository (or the remote it came "
                                     "from) holds a record the hangar API never writes") from exc

    @property
    def np_dtype(self) -> np.dtype:
        return descr_to_dtype(self.dtype)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate_dtype(dtype: object, what: str) -> np.dtype:
    """``dtype`` as a numpy dtype, refusing dtypes that hold python objects (``ValueError``).

    Reading raw bytes into an object array makes numpy dereference them as pointers.
    """
    try:
        np_dtype = descr_to_dtype(dtype) if isinstance(dtype, (str, list)) else np.dtype(dtype)  # type: ignore[call-overload]  # any dtype-like
    except (TypeError, ValueError, IndexError, KeyError, RecursionError) as exc:
        raise InvalidSchemaError(f"{what}: dtype {dtype!r} is not a numpy dtype") from exc
    if np_dtype.hasobject:
        raise InvalidSchemaError(f"{what}: dtype {np_dtype} holds python objects; only fixed-size dtypes can be stored")
    return np_dtype


def validate_shape(shape: object, what: str) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints of rank at most ``MAX_RANK`` (else ``ValueError``)."""
    if not isinstance(shape, (tuple, list)) or not all(_is_int(d) for d in shape):
        raise InvalidSchemaError(f"{what}: shape {shape!r} must be an int or a tuple of ints")
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_RANK:
        raise InvalidSchemaError(f"{what}: shape {shape} has rank {len(shape)}; the maximum rank is {MAX_RANK}")
    if any(d <= 0 for d in shape):
        raise InvalidSchemaError(f"{what}: shape {shape} has a zero-sized or negative dimension")
    return shape


def validate_schema(schema: "ArraysetSchema") -> None:
    """Raise ``ValueError`` unless ``schema`` is one ``init_arrayset`` could have written."""
    name = validate_arrayset_name(schema.name)
    what = f"arrayset {name!r}"
    validate_dtype(schema.dtype, what)
    if not isinstance(schema.dtype, (str, list)):
        raise InvalidSchemaError(f"{what}: dtype {schema.dtype!r} must be a numpy descr (str or list of fields)")
    validate_shape(schema.shape, what)
    if not isinstance(schema.shape, tuple):
        raise InvalidSchemaError(f"{what}: shape {schema.shape!r} must be a tuple")
    if not isinstance(schema.backend, str) or (schema.backend not in BACKENDS
                                               and schema.backend not in BACKEND_ALIASES):
        raise InvalidSchemaError(f"{what}: backend {schema.backend!r} is not valid; choose {valid_backends_text()}")
    if not isinstance(schema.named_samples, bool) or not isinstance(schema.variable_shape, bool):
        raise InvalidSchemaError(f"named_samples and variable_shape must be bool, not {schema.named_samples!r} and "
                                 f"{schema.variable_shape!r}")
    if not _is_int(schema.fanout_depth) or not 0 <= schema.fanout_depth <= MAX_FANOUT_DEPTH:
        raise InvalidSchemaError(
            f"{what}: fanout_depth {schema.fanout_depth!r} must be an int in 0..{MAX_FANOUT_DEPTH}")


def dtype_to_descr(dtype: np.dtype) -> object:
    """JSON-able description of a dtype (keeps the fields of structured dtypes)."""
    descr = np.lib.format.dtype_to_descr(dtype)
    return descr if isinstance(descr, str) else json.loads(json.dumps(descr))


def descr_to_dtype(descr: object) -> np.dtype:
    if isinstance(descr, str):
        return np.dtype(descr)
    return np.dtype([tuple(_fields(f)) for f in descr])  # type: ignore[attr-defined]  # a list of fields


def _fields(field: list[Any]) -> list[Any]:
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
