"""A lazy ``dask.array`` over a fixed-shape arrayset at one commit.

Needs ``dask[array]`` (``pip install hangar[dask]``).
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from hangar.errors import ArgumentTypeError, InvalidArgumentError, MissingDependencyError

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "hangar's dask loader needs dask: pip install 'hangar[dask]' (or pip install 'dask[array]')") from exc

from hangar.dataloaders.common import GroupedSamples, SampleSource
from hangar.loader_source import LoaderSource
from hangar.records.keys import Key

__all__ = ["dask_array"]

#: default chunk size (bytes) along the sample axis
_CHUNK_BYTES = 64 << 20


class _RowReader:
    """Array-like view (shape, dtype, ``__getitem__``) of a source's samples stacked on axis 0.

    Pickles without open files, so dask workers on other processes or machines (sharing the
    repository's file system) read the pack files themselves.
    """

    def __init__(self, source: SampleSource) -> None:
        self.source = source
        self.shape = (len(source), *source.shape)
        self.dtype = source.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: tuple) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        rows, rest = index[0], index[1:]
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(self.shape[0])
            block = self.source.read_rows(start, max(start, stop))
        else:
            idx = np.arange(self.shape[0])[rows]
            if idx.ndim == 0:
                return self.source.read(int(idx))[rest] if rest else self.source.read(int(idx))
            block = np.empty((len(idx), *self.source.shape), dtype=self.dtype)
            for j, i in enumerate(idx.tolist()):
                self.source.read_into(i, block[j])
        return block[(slice(None), *rest)] if rest else block


def dask_array(aset: LoaderSource, keys: Optional[Sequence[Key]] = None,
               index_range: Optional[slice] = None, chunk_rows: Optional[int] = None) -> "da.Array":
    """Return a lazy ``dask.array.Array`` of shape ``(n_samples, *aset.shape)``.

    Row ``i`` is the sample named ``keys[i]`` (by default the arrayset's sample names in
    ``aset.keys()`` order). Nothing is read until the array is computed; each chunk reads
    its samples straight from the pack files, so the graph can run on a dask cluster whose
    workers see the repository's directory.

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
    >>> images.mean(axis=0).compute()
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
    token = hashlib.blake2b(digest_size=16)
    view = aset.loader_view()
    token.update(f"{view.repo_path}\0{view.commit}\0{aset.name}\0".encode())
    token.update(f"{chunk_rows}\0{grouped.keys!r}".encode())
    reader = _RowReader(source)
    return da.from_array(reader, chunks=(chunk_rows, *source.shape), name=f"hangar-{aset.name}-{token.hexdigest()}",
                         lock=False, asarray=False, fancy=False, meta=np.empty((0,) * reader.ndim, dtype=source.dtype))
