"""PyTorch loader: a map-style ``torch.utils.data.Dataset`` over hangar arraysets.

Needs ``torch`` (``pip install hangar[torch]``).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

try:
    import torch.utils.data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("hangar's torch loader needs PyTorch: pip install 'hangar[torch]' (or pip install torch)"
                      ) from exc

from hangar.arrayset import ArraysetDataReader
from hangar.dataloaders.common import (
    GroupedSamples,
    as_arrayset_list,
    batch_tuple,
    check_index,
    check_positions,
    field_names_for,
)
from hangar.records.keys import Key

__all__ = ["TorchDataset", "make_torch_dataset", "pad_collate"]


class TorchDataset(torch.utils.data.Dataset):
    """Samples of one or more arraysets as namedtuples of numpy arrays, by position.

    Item ``i`` is ``BatchTuple(field_0=array, field_1=array, ...)`` for the sample name
    ``keys[i]``. ``DataLoader``'s default collate turns a batch of them into a namedtuple of
    stacked tensors. The dataset pickles without open files or git objects, so it works with
    ``DataLoader(num_workers > 0)`` under both ``fork`` and ``spawn``, and it keeps working
    after the checkout it was made from is closed (committed bytes never change).
    """

    def __init__(self, grouped: GroupedSamples, field_names: Sequence[str]) -> None:
        self._keys = grouped.keys
        self._sources = grouped.sources
        self._fields = tuple(field_names)
        self._cls = batch_tuple(self._fields)

    def __repr__(self) -> str:
        return f"TorchDataset(fields={self._fields}, samples={len(self._keys)})"

    @property
    def keys(self) -> list[Key]:
        """Sample names in item order: item ``i`` holds the samples named ``keys[i]``."""
        return list(self._keys)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field names of the namedtuples returned."""
        return self._fields

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: Union[int, np.integer]):  # noqa: ANN204
        i = check_index(index, len(self._keys))
        return self._cls(*[s.read(i) for s in self._sources])

    def __getitems__(self, indices: list[int]) -> list:
        """Items at ``indices`` (what ``DataLoader`` asks for, one batch at a time)."""
        n = len(self._keys)
        positions = check_positions(indices, n)
        cls = self._cls
        return [cls(*row) for row in zip(*[s.read_many(positions) for s in self._sources])]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_cls")  # rebuilt from the field names (pickle finds it by name as well)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cls = batch_tuple(self._fields)


def make_torch_dataset(arraysets: Union[ArraysetDataReader, Sequence[ArraysetDataReader]],
                       keys: Optional[Sequence[Key]] = None, index_range: Optional[slice] = None,
                       field_names: Optional[Sequence[str]] = None) -> TorchDataset:
    """Return a ``torch.utils.data.Dataset`` over hangar arraysets, for a ``DataLoader``.

    Parameters
    ----------
    arraysets : ArraysetDataReader or Sequence
        An arrayset of a read checkout, or a list/tuple of them.
    keys : Sequence[Union[str, int]], optional
        Sample names to use, in this order. Every arrayset must hold each of them.
    index_range : slice, optional
        Slice of the sorted sample names (ints in numeric order, then strs). Ignored when
        ``keys`` is given.
    field_names : list or tuple of str, optional
        Field names of the returned namedtuples, one per arrayset. Default: the arrayset
        names (with characters that are not valid in identifiers replaced by ``_``).

    Returns
    -------
    TorchDataset
        ``dset[i]`` is a namedtuple of numpy arrays for the sample name ``dset.keys[i]``.

    Raises
    ------
    ValueError
        ``arraysets`` is empty; an arrayset is write-enabled; ``field_names`` has another
        length than ``arraysets`` (or is not valid); ``keys`` or ``index_range`` select no
        sample; the arraysets share no sample name; or chosen samples are remote references
        (use ``repo.remote.fetch_data`` first).
    KeyError
        A name in ``keys`` is missing from an arrayset.
    TypeError
        ``arraysets`` does not hold arraysets, or ``index_range`` is not a slice.

    Warns
    -----
    UserWarning
        When ``keys`` is not given and the arraysets hold different sample names: only the
        names all of them hold are used.

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> co = repo.checkout()
    >>> dset = make_torch_dataset([co.arraysets['images'], co.arraysets['labels']],
    ...                           index_range=slice(0, 50000))
    >>> for batch in DataLoader(dset, batch_size=256, shuffle=True, num_workers=2):
    ...     train_step(batch.images, batch.labels)
    """
    asets = as_arrayset_list(arraysets)
    fields = field_names_for(asets, field_names)
    grouped = GroupedSamples(asets, keys, index_range)
    return TorchDataset(grouped, fields)


def pad_collate(batch: list, pad_value: float = 0):  # noqa: ANN201 - a namedtuple of torch tensors
    """``collate_fn`` for variable-shape arraysets: pads each field to the batch's largest shape.

    ``DataLoader(dset, batch_size=32, collate_fn=pad_collate)`` yields namedtuples (the
    dataset's field names) of tensors shaped ``(batch, *max_shape_in_batch)``; samples are
    placed at the origin and the rest is filled with ``pad_value``.
    """
    if not batch:
        raise ValueError("pad_collate needs a non-empty batch")
    first = batch[0]
    fields = []
    for f in range(len(first)):
        arrays = [np.asarray(sample[f]) for sample in batch]
        shape = tuple(max(dims) for dims in zip(*(a.shape for a in arrays)))
        out = np.full((len(arrays), *shape), pad_value, dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            out[(i, *(slice(0, d) for d in a.shape))] = a
        fields.append(torch.from_numpy(out))
    return type(first)(*fields)
