"""Tensor bytes: a content-addressed, append-only, packed store laid out as Zarr v3 arrays."""

from hangar.store.digest import sample_digest
from hangar.store.tensorstore import TensorStore

__all__ = ["TensorStore", "sample_digest"]
