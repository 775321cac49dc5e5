"""PyTorch loader: a map-style ``torch.utils.data.Dataset`` over hangar arraysets.

Needs ``torch`` (``pip install hangar[torch]``).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from hangar.errors import ArgumentTypeError, InvalidArgumentError, MissingDependencyError

try:
    import torch.utils.data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "hangar's torch loader needs PyTorch: pip install 'hangar[torch]' (or pip install torch)") from exc

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

__all__ = ["BlockShuffleSampler", "TorchDataset", "make_torch_dataset", "pad_collate"]


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

    def storage_order(self) -> np.ndarray:
        """Item positions sorted by where the first field's bytes lie on disk (pack, offset)."""
        return self._sources[0].storage_order()

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
        raise InvalidArgumentError("pad_collate needs a non-empty batch")
    first = batch[0]
    fields = []
    for f in range(len(first)):
        arrays = [np.asarray(sample[f]) for sample in batch]
        shape = tuple(max(dims) for dims in zip(*(a.shape for a in arrays)))
        out = np.full((len(arrays), *shape), pad_value, dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            out[(i, *(slice(0, d) for d in a.shape))] = a  # type: ignore[index]  # a tuple of an int and slices
        fields.append(torch.from_numpy(out))
    return type(first)(*fields)


class BlockShuffleSampler(torch.utils.data.Sampler):
    """A shuffling sampler that reads in storage order, for one process or ``DistributedDataParallel``.

    Item positions are sorted by where their bytes lie in the packs and cut into blocks of
    ``block_size`` neighbours. Each epoch the blocks are put in a random order and each block
    is shuffled inside, so every read touches a few neighbouring pages (cold caches, network
    disks) while batches still mix samples from far-apart parts of the dataset. With
    ``num_replicas > 1`` every rank computes the same permutation (seeded by ``seed`` and the
    epoch) and takes its own contiguous share of it, as ``DistributedSampler`` does: the
    shares are disjoint and together cover every item (padded with repeats to equal length,
    or trimmed with ``drop_last``).

    Parameters
    ----------
    dataset : TorchDataset
        What ``make_torch_dataset`` returned.
    num_replicas, rank : int, optional
        Number of processes and this one's rank; default: from ``torch.distributed`` when it
        is initialized, else 1 and 0.
    shuffle : bool
        False yields the storage order itself (split between ranks).
    seed : int
        Base seed; the permutation of epoch ``e`` depends on ``(seed, e)`` only.
    block_size : int
        Neighbouring samples kept together; 1 is a plain shuffle.
    drop_last : bool
        Drop the tail so that ranks get equal shares without repeats.

    Call :meth:`set_epoch` at the start of each epoch, as with ``DistributedSampler``.

    Examples
    --------
    >>> dset = make_torch_dataset(co.arraysets['images'])
    >>> sampler = BlockShuffleSampler(dset, block_size=64)
    >>> loader = DataLoader(dset, batch_size=256, sampler=sampler, num_workers=2)
    >>> for epoch in range(10):
    ...     sampler.set_epoch(epoch)
    ...     for batch in loader: ...
    """

    def __init__(self, dataset: TorchDataset, *, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, block_size: int = 64, drop_last: bool = False) -> None:
        if not isinstance(dataset, TorchDataset):
            raise ArgumentTypeError(f"dataset must be what make_torch_dataset returned, not {type(dataset).__name__}")
        if num_replicas is None or rank is None:
            dist = torch.distributed
            initialized = dist.is_available() and dist.is_initialized()
            if num_replicas is None:
                num_replicas = dist.get_world_size() if initialized else 1
            if rank is None:
                rank = dist.get_rank() if initialized else 0
        for name, value, low in (("num_replicas", num_replicas, 1), ("block_size", block_size, 1),
                                 ("rank", rank, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidArgumentError(f"{name} must be an int >= {low}, not {value!r}")
        if rank >= num_replicas:
            raise InvalidArgumentError(f"rank {rank!r} is out of range for num_replicas={num_replicas}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidArgumentError(f"seed must be an int >= 0, not {seed!r}")
        n = len(dataset)
        if drop_last and n < num_replicas:
            raise InvalidArgumentError(
                f"drop_last with {n} samples and {num_replicas} replicas leaves every rank nothing")
        self._order = dataset.storage_order()
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.block_size, self.drop_last = bool(shuffle), int(seed), int(block_size), \
            bool(drop_last)
        self.epoch = 0
        self.num_samples = n // self.num_replicas if drop_last else -(-n // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` (an int >= 0; every rank must pass the same value)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise InvalidArgumentError(f"epoch must be an int >= 0, not {epoch!r}")
        self.epoch = int(epoch)

    def permutation(self) -> np.ndarray:
        """Every item position in this epoch's order, before it is split between ranks."""
        order = self._order
        if not self.shuffle:
            return order.copy()
        rng = np.random.default_rng([self.seed, self.epoch])
        bs = self.block_size
        blocks = [order[i:i + bs] for i in range(0, len(order), bs)]
        return np.concatenate([rng.permutation(blocks[b]) for b in rng.permutation(len(blocks))])

    def __iter__(self):  # noqa: ANN204 - Iterator[int]
        perm = self.permutation()
        total = self.num_samples * self.num_replicas
        if total > len(perm):  # pad with repeats from the start, as DistributedSampler does
            perm = np.resize(perm, total)
        share = perm[self.rank * self.num_samples:(self.rank + 1) * self.num_samples]
        return iter(share.tolist())

    def __len__(self) -> int:
        return self.num_samples
