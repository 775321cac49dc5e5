"""A lazy ``dask.array`` over a fixed-shape arrayset at one commit, for a local or distributed scheduler.

Needs ``dask[array]`` (``pip install hangar[dask]``; ``dask[distributed]`` for a cluster).

The task graph carries no sample bytes: each chunk's task holds the *store address* (today the
repository's path; :func:`open_storage` is the one place that turns an address into pack
storage, so another kind of store plugs in there), the commit and arrayset (for naming and
error messages), dtype and shape, and the chunk's sample locations (pack id, offset, stored
length, codec, checksum: plain ints and strings, about 60 bytes a sample). A worker process
opens the store itself, once, and reads its chunk's bytes straight from the packs, checking
each sample's checksum as every read does.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from hangar.errors import ArgumentTypeError, InvalidArgumentError, MissingDependencyError, RepositoryNotFoundError

try:
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "hangar's dask loader needs dask: pip install 'hangar[dask]' (or pip install 'dask[array]')") from exc

from hangar.dataloaders.common import GroupedSamples, SampleSource
from hangar.loader_source import LoaderSource
from hangar.plumbing import paths
from hangar.records.keys import Key
from hangar.store.packs import LocalPackStorage

__all__ = ["dask_array", "open_storage", "read_chunk", "ChunkLocations"]

#: default chunk size (bytes) along the sample axis
_CHUNK_BYTES = 64 << 20

_opened: dict[str, LocalPackStorage] = {}
_opened_lock = threading.Lock()


def open_storage(address: str) -> LocalPackStorage:
    """The pack storage at store ``address``, opened once per process (workers call this).

    ``address`` is a repository directory (its ``.hangar/data`` holds the packs). This is
    the one function that opens a store from an address, so an object-store address can be
    added here without touching the graph.

    Raises
    ------
    FileNotFoundError
        If ``address`` holds no hangar repository (e.g. a worker on a machine without it).
    """
    with _opened_lock:
        storage = _opened.get(address)
        if storage is None:
            root = paths.data_dir(paths.hangar_dir(address))
            if not os.path.isdir(os.path.join(root, "packs")):
                raise RepositoryNotFoundError(f"no hangar repository with data at {address!r} on this machine: "
                                              "a dask worker reads the packs itself, so it needs the repository's "
                                              "directory")
            storage = _opened[address] = LocalPackStorage(root, durable=False)
        return storage


def opened_addresses() -> list[str]:
    """Store addresses this process has opened (what a worker read from; for tests and monitoring)."""
    with _opened_lock:
        return sorted(_opened)


class ChunkLocations(NamedTuple):
    """Where one chunk's samples lie: plain lists (a task holds no array and no sample bytes)."""

    packs: tuple[str, ...]
    pack_idx: list[int]
    offsets: list[int]
    lengths: list[int]
    codecs: list[int]
    checks: list[int]


def read_chunk(address: str, commit: str, arrayset: str, dtype: str, shape: tuple[int, ...],
               locs: ChunkLocations) -> np.ndarray:
    """The samples of one chunk stacked on axis 0, read where the task runs from the store at ``address``.

    ``commit`` and ``arrayset`` name what is read (in errors); every sample's checksum is checked.
    """
    src = SampleSource(f"{arrayset}@{commit[:10]}", open_storage(address), np.dtype(dtype), shape, False, [], [])
    src.packs = list(locs.packs)
    src.pack_idx = np.asarray(locs.pack_idx, dtype=np.int32)
    src.offsets = np.asarray(locs.offsets, dtype=np.uint64)
    src.lengths = np.asarray(locs.lengths, dtype=np.uint64)
    src.codecs = np.asarray(locs.codecs, dtype=np.uint8)
    src.checks = np.asarray(locs.checks, dtype=np.uint64)
    return src.read_rows(0, len(locs.offsets))


def _chunk_locations(source: SampleSource, start: int, stop: int) -> ChunkLocations:
    idx = source.pack_idx[start:stop]
    used = sorted(set(idx.tolist()))
    renumber = {j: k for k, j in enumerate(used)}
    return ChunkLocations(tuple(source.packs[j] for j in used), [renumber[j] for j in idx.tolist()],
                          source.offsets[start:stop].tolist(), source.lengths[start:stop].tolist(),
                          source.codecs[start:stop].tolist(), source.checks[start:stop].tolist())


def dask_array(aset: LoaderSource, keys: Optional[Sequence[Key]] = None,
               index_range: Optional[slice] = None, chunk_rows: Optional[int] = None) -> "da.Array":
    """Return a lazy ``dask.array.Array`` of shape ``(n_samples, *aset.shape)``.

    Row ``i`` is the sample named ``keys[i]`` (by default the arrayset's sample names in
    ``aset.keys()`` order). Nothing is read until the array is computed. Each chunk is one
    task that reads its samples straight from the pack files (:func:`read_chunk`); the graph
    holds only the repository's path, the commit and the chunks' sample locations, so it runs
    on a ``dask.distributed`` cluster whose workers see the repository's directory, and no
    sample bytes pass through the scheduler.

    Parameters
    ----------
    aset : ArraysetDataReader
        A fixed-shape arrayset of a read checkout (the data of its commit).
    keys : Sequence[Union[str, int]], optional
        Sample names, one per row, in this order.
    index_range : slice, optional
        Slice of the sorted sample names; ignored when ``keys`` is given.
    chunk_rows : int, optional
        Samples per chunk along axis 0 (default: about 64 MiB per chunk).

    Returns
    -------
    dask.array.Array

    Raises
    ------
    ValueError
        The arrayset is write-enabled or has ``variable_shape``; ``chunk_rows`` is not a
        positive int; the choice selects no sample; or samples are remote references.
    KeyError
        A name in ``keys`` is missing.

    Examples
    --------
    >>> co = repo.checkout()
    >>> images = dask_array(co.arraysets['images'])
    >>> images.mean(axis=(1, 2, 3)).compute()   # one mean per sample
    """
    if isinstance(aset, (list, tuple)):
        raise ArgumentTypeError("dask_array takes one arrayset; call it once per arrayset")
    grouped = GroupedSamples(aset, keys, index_range)
    source = grouped.sources[0]
    if source.variable_shape:
        raise InvalidArgumentError(f"arrayset {aset.name!r} has variable_shape samples; dask_array needs a fixed shape")
    if chunk_rows is None:
        per_row = max(1, source.dtype.itemsize * int(np.prod(source.shape)))
        chunk_rows = max(1, _CHUNK_BYTES // per_row)
    elif isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidArgumentError(f"chunk_rows must be a positive int, not {chunk_rows!r}")
    view = aset.loader_view()
    address = os.path.abspath(view.repo_path)
    commit = view.commit
    token = hashlib.blake2b(digest_size=16)
    token.update(f"{address}\0{commit}\0{aset.name}\0".encode())
    token.update(f"{chunk_rows}\0{grouped.keys!r}".encode())
    name = f"hangar-{aset.name}-{token.hexdigest()}"
    n = len(source)
    dtype, shape = source.dtype.str, tuple(source.shape)
    zeros = (0,) * len(shape)
    layer: dict[Any, Any] = {}
    for k, start in enumerate(range(0, n, chunk_rows)):
        locs = _chunk_locations(source, start, min(n, start + chunk_rows))
        layer[(name, k, *zeros)] = (read_chunk, address, commit, aset.name, dtype, shape, locs)
    rows = tuple(min(chunk_rows, n - s) for s in range(0, n, chunk_rows))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks=(rows, *((d,) for d in shape)), dtype=source.dtype,
                    meta=np.empty((0,) * (len(shape) + 1), dtype=source.dtype))
