"""What every loader shares: argument checks, sample selection and a picklable sample reader.

A loader resolves its samples once, in the calling process: key -> pointer (git) ->
location in the tensor store (pack, offset, length, codec). Reading a sample afterwards
touches neither git nor Zarr, only the pack files (``preadv``, or a read-only memory map for
small samples), so a loader object can be pickled to spawned workers (they reopen their own
file handles and maps) and is safe in forked ones (finished packs never change).
"""

from __future__ import annotations

import keyword
import mmap
import os
import re
import warnings
from collections import namedtuple
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from hangar.errors import (
    ArgumentTypeError,
    ClosedArraysetArgumentError,
    CorruptDataError,
    HandleClosedError,
    InvalidArgumentError,
    LoaderRemoteDataError,
    SampleIndexError,
    SampleNotFoundError,
    WriteEnabledArraysetError,
)
from hangar.loader_source import LoaderSource
from hangar.plumbing import rowhash
from hangar.plumbing.paths import pack_chunk_path
from hangar.plumbing.regular import open_regular
from hangar.records.keys import Key, decode_key, encode_key, sorted_keys
from hangar.store import codecs
from hangar.store.digest import byte_view
from hangar.store.index import Location
from hangar.store.packs import LocalPackStorage, stored_check

__all__ = ["SampleSource", "GroupedSamples", "batch_tuple"]

#: samples stored in fewer bytes than this are read through a memory map of their pack
_MMAP_BELOW = 64 << 10

#: ``read_many`` of at least this many samples copies and checks them in one C call
_GATHER_FROM = 8

#: the location a source holds for a sample left in the data remote (``GroupedSamples(fetch=False)``)
_PLACEHOLDER = Location("", 0, 0, 0, 0, 0)

_FETCH_HINT = ("fetch them first with repo.remote.fetch_data(remote, branch=..., arrayset_names=[...]) "
               "or pick local samples with keys=")


class SampleSource:
    """Reads a fixed, ordered list of samples of one arrayset straight from the pack storage.

    Holds no git objects, open files or memory maps when pickled (the receiving process
    opens its own, lazily).
    """

    def __init__(self, name: str, storage, dtype: np.dtype, shape: tuple[int, ...],  # noqa: ANN001
                 variable_shape: bool, locations: list, shapes: list) -> None:
        self.name = name
        self.storage = storage
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.variable_shape = variable_shape
        packs: dict[str, int] = {}
        self.packs: list[str] = []
        n = len(locations)
        self.pack_idx = np.empty(n, dtype=np.int32)
        self.offsets = np.empty(n, dtype=np.uint64)
        self.lengths = np.empty(n, dtype=np.uint64)
        self.codecs = np.empty(n, dtype=np.uint8)
        #: checksum of each sample's stored bytes (0: none recorded): checked on every read, as by ``get``
        self.checks = np.empty(n, dtype=np.uint64)
        for i, loc in enumerate(locations):
            idx = packs.get(loc.pack)
            if idx is None:
                idx = packs[loc.pack] = len(self.packs)
                self.packs.append(loc.pack)
            self.pack_idx[i] = idx
            self.offsets[i] = loc.offset
            self.lengths[i] = loc.length
            self.codecs[i] = loc.codec
            self.checks[i] = loc.check
        # per-sample shapes are kept only when they can differ
        self.shapes: Optional[list[tuple[int, ...]]] = list(shapes) if variable_shape else None
        self._rows: Optional[list[tuple[str, int, int, int, int]]] = None
        self._maps: dict[str, Optional[memoryview]] = {}

    @classmethod
    def from_table(cls, name: str, storage, dtype: np.dtype, shape: tuple[int, ...],  # noqa: ANN001
                   variable_shape: bool, table, rows: np.ndarray) -> "SampleSource":  # noqa: ANN001
        """The samples ``rows`` of a location table (all located): columns taken as arrays."""
        src = cls(name, storage, dtype, shape, variable_shape, [], [])
        src.packs = list(table.packs)
        src.pack_idx = table.pack_col[rows].astype(np.int32)
        src.offsets = table.offsets[rows]
        src.lengths = table.lengths[rows]
        src.codecs = table.codecs[rows]
        src.checks = table.checks[rows]
        if variable_shape:
            src.shapes = [tuple(s) for s in table.shapes[rows].tolist()]
        return src

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_rows"] = None  # rebuilt on first read in the receiving process
        state["_maps"] = {}  # memory maps are per process
        return state

    def _build_rows(self) -> list[tuple[str, int, int, int, int]]:
        packs = self.packs
        self._rows = list(zip([packs[j] for j in self.pack_idx.tolist()], self.offsets.tolist(),
                              self.lengths.tolist(), self.codecs.tolist(), self.checks.tolist()))
        return self._rows

    def _check(self, i: int, stored: bytes | memoryview | np.ndarray, pack: str, offset: int, check: int) -> None:
        """Raise ``CorruptDataError`` unless sample ``i``'s stored bytes match their checksum (as ``get`` does)."""
        if check and stored_check(stored) != check:
            raise self._damaged(i, pack, offset)

    def _damaged(self, i: int, pack: str, offset: int) -> CorruptDataError:
        return CorruptDataError(
            f"stored bytes of sample {i} of the loader over arrayset {self.name!r} do not match their checksum "
            f"(damaged, in pack {pack} at offset {offset}); run `hangar fsck --repair` to fetch them again")

    def sample_shape(self, i: int) -> tuple[int, ...]:
        return self.shapes[i] if self.shapes is not None else self.shape

    def storage_order(self) -> np.ndarray:
        """Positions sorted by where their bytes lie (pack, then offset): the cheapest read order."""
        names = np.asarray(self.packs, dtype=object)
        pack_rank = np.argsort(np.argsort(names))[self.pack_idx] if len(self.packs) else self.pack_idx
        return np.lexsort((self.offsets, pack_rank)).astype(np.int64)

    def read(self, i: int) -> np.ndarray:
        """Sample ``i`` (position in the source's order) as a new writeable array."""
        return self.read_many([i])[0]

    def read_into(self, i: int, out: np.ndarray) -> None:
        """Read sample ``i`` into the C-contiguous array ``out`` of its shape and dtype."""
        pack, offset, length, codec, check = (self._rows or self._build_rows())[i]
        if codec == codecs.RAW:
            self.storage.readinto(pack, offset, byte_view(out))
            self._check(i, byte_view(out), pack, offset, check)
        else:
            stored = self.storage.read_range(pack, offset, length)
            self._check(i, stored, pack, offset, check)
            codecs.decode_into(codec, stored, byte_view(out))

    def _map(self, pack: str) -> Optional[memoryview]:
        """Read-only memory map of a finished (immutable) local pack; None for other storages."""
        if pack not in self._maps:
            view = None
            if isinstance(self.storage, LocalPackStorage):
                # no FIFO (a plain open would wait for ever), no link out of the repository
                fd = open_regular(pack_chunk_path(self.storage.root, pack), self.storage.root)
                try:
                    view = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
                finally:
                    os.close(fd)  # the map keeps its own descriptor
            self._maps[pack] = view
        return self._maps[pack]

    def read_many(self, positions: list[int]) -> list[np.ndarray]:
        """Samples at ``positions`` (checked by the caller), each a new writeable array.

        Small samples are copied out of a memory map of their pack (no system call per
        sample); large ones are read with ``preadv`` straight into their array.
        """
        if len(positions) >= _GATHER_FROM and self.shapes is None:
            got = self._gather(positions)
            if got is not None:
                return got
        rows = self._rows or self._build_rows()
        maps = self._maps
        readinto, read_range = self.storage.readinto, self.storage.read_range
        decode, raw = codecs.decode_into, codecs.RAW
        empty, dtype, shape, shapes = np.empty, self.dtype, self.shape, self.shapes
        checked = self._check
        out = []
        for i in positions:
            arr = empty(shape if shapes is None else shapes[i], dtype=dtype)
            pack, offset, length, codec, check = rows[i]
            view = (maps[pack] if pack in maps else self._map(pack)) if length < _MMAP_BELOW else None
            if codec == raw:
                if view is not None:
                    byte_view(arr)[:] = view[offset:offset + length]
                else:
                    readinto(pack, offset, byte_view(arr))
                checked(i, byte_view(arr), pack, offset, check)
            else:
                stored = view[offset:offset + length] if view is not None else read_range(pack, offset, length)
                checked(i, stored, pack, offset, check)
                decode(codec, stored, byte_view(arr))
            out.append(arr)
        return out

    def _gather(self, positions: list[int]) -> Optional[list[np.ndarray]]:
        """Fixed-shape samples ``positions`` as the rows of one new array, copied out of the memory
        map of their one pack and checked in one C call (:func:`rowhash.gather_rows_checked`), when
        they are all raw, small and in one local pack; else ``None``. Rows of one array share no
        bytes: each is the caller's to change."""
        if not rowhash.available:
            return None
        pos = np.asarray(positions, dtype=np.int64)
        n = len(pos)
        size = self.dtype.itemsize * int(np.prod(self.shape))
        if not size or size >= _MMAP_BELOW:
            return None
        pc = self.pack_idx[pos]
        p = int(pc[0])
        if not bool((pc == p).all()) or not bool((self.codecs[pos] == codecs.RAW).all()) \
                or not bool((self.lengths[pos] == size).all()):
            return None
        pack = self.packs[p]
        view = self._maps[pack] if pack in self._maps else self._map(pack)
        if view is None:
            return None
        out = np.empty((n, *self.shape), dtype=self.dtype)
        offs = self.offsets[pos]
        bad = rowhash.gather_rows_checked(view, offs, np.frombuffer(byte_view(out), dtype=np.uint8).reshape(n, size),
                                           self.checks[pos])
        if bad >= 0:
            raise self._damaged(int(pos[bad]), pack, int(offs[bad]))
        return list(out)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` stacked into one array (fixed-shape sources only).

        Runs of raw samples lying back to back in one pack (a chunk of a sequentially written
        arrayset is one run) are read with one call each, every sample checked as its piece
        lands (``readinto_rows_checked``); other samples one at a time. A dask chunk of 60,000
        x 784 B read sample by sample spent ~0.9 s here (a ``preadv`` and an xxh3 call each).
        """
        n = stop - start
        out = np.empty((n, *self.shape), dtype=self.dtype)
        size = out[0].nbytes if n else 0
        if not n or not size:
            return out
        flat = np.frombuffer(byte_view(out), dtype=np.uint8).reshape(n, size)
        pc = self.pack_idx[start:stop]
        offs = self.offsets[start:stop].astype(np.int64)
        run = (self.codecs[start:stop] == codecs.RAW) & (self.lengths[start:stop] == size)
        new_run = np.ones(n, dtype=bool)  # True where a run (or a sample read alone) starts
        new_run[1:] = (pc[1:] != pc[:-1]) | (offs[1:] != offs[:-1] + size) | ~run[1:] | ~run[:-1]
        bounds = np.flatnonzero(new_run).tolist() + [n]
        checks = self.checks[start:stop]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if not run[a]:
                for i in range(a, b):
                    self.read_into(start + i, out[i])
                continue
            pack = self.packs[int(pc[a])]
            bad = self.storage.readinto_rows_checked(pack, int(offs[a]), flat[a:b], checks[a:b])
            if bad >= 0:
                raise self._damaged(start + a + bad, pack, int(offs[a + bad]))
        return out


# ------------------------------------------------------------------ namedtuples
_TUPLE_PREFIX = "BatchTuple_"
_TUPLES: dict[str, type] = {}


def batch_tuple(field_names: Sequence[str]) -> type:
    """The namedtuple class ``BatchTuple`` with ``field_names``, picklable across processes.

    The class is registered in this module under a name that encodes its fields, so a
    worker process (spawned or forked) and the main process resolve it to the same class.
    """
    qualname = _TUPLE_PREFIX + ",".join(field_names).encode().hex()
    cls = _TUPLES.get(qualname)
    if cls is None:
        made = namedtuple("BatchTuple", list(field_names))  # type: ignore[misc]  # fields known at run time
        made.__qualname__ = qualname
        made.__module__ = __name__
        cls = _TUPLES[qualname] = made
    return cls


def __getattr__(name: str) -> type:
    # lets pickle find a BatchTuple class in a process that has not built it yet
    if name.startswith(_TUPLE_PREFIX):
        try:
            fields = bytes.fromhex(name[len(_TUPLE_PREFIX):]).decode().split(",")
        except ValueError:
            pass
        else:
            return batch_tuple(fields)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_field(name: str) -> str:
    field = re.sub(r"\W", "_", name)
    return field


def field_names_for(asets: list[LoaderSource], field_names: Optional[Sequence[str]]) -> list[str]:
    """Field names of the returned namedtuples (arrayset names by default), checked."""
    if field_names is None:
        names = [_default_field(a.name) for a in asets]
        given = False
    else:
        if isinstance(field_names, str) or not isinstance(field_names, (list, tuple)):
            raise ArgumentTypeError(f"field_names must be a list or tuple of str, not {field_names!r}")
        names = list(field_names)
        given = True
        if len(names) != len(asets):
            raise InvalidArgumentError(f"field_names {names!r} has {len(names)} names for {len(asets)} arraysets "
                                       f"{[a.name for a in asets]}")
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_"):
            what = "field name" if given else "arrayset name (pass field_names=)"
            raise InvalidArgumentError(f"{what} {n!r} is not a valid namedtuple field name: use a python identifier "
                                       "that does not start with '_'")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        hint = "" if given else " (arraysets of the same name; pass field_names=)"
        raise InvalidArgumentError(f"duplicate field names {dup}{hint}")
    return names


# -------------------------------------------------------------- sample choice
def as_arrayset_list(arraysets: object) -> list[LoaderSource]:
    """Check the ``arraysets`` argument: one read-only arrayset or a non-empty list/tuple of them."""
    if isinstance(arraysets, LoaderSource):
        asets = [arraysets]
    elif isinstance(arraysets, (list, tuple)):
        asets = list(arraysets)
    else:
        raise ArgumentTypeError(f"arraysets must be an arrayset or a list/tuple of arraysets, not "
                                f"{type(arraysets).__name__}")
    if not asets:
        raise InvalidArgumentError("arraysets is empty: pass at least one arrayset")
    for a in asets:
        if not isinstance(a, LoaderSource):
            raise ArgumentTypeError(f"arraysets must hold arrayset objects, not {type(a).__name__} ({a!r})")
        try:
            writeable = a.iswriteable
        except HandleClosedError as exc:  # a TypeError too: Hangar 0.3 saw a dead proxy, not an arrayset
            raise ClosedArraysetArgumentError(
                f"{exc} (an arrayset passed to a loader must belong to an open read checkout)") from None
        if writeable:
            raise WriteEnabledArraysetError(
                f"arrayset {a.name!r} is write-enabled; loaders read committed data: commit, then "
                "use the arraysets of a read checkout (repo.checkout())")
    return asets


def _warn_unshared(asets: list, sizes: list[int], shared: int, stacklevel: int) -> None:
    """Warn that the arraysets do not hold the same sample names and only ``shared`` are used."""
    # Hangar 0.3 warned "Arraysets do not contain equal number of samples"; code filtering
    # on that text keeps working where it is true
    unequal = "Arraysets do not contain equal number of samples: " if len(set(sizes)) > 1 else ""
    warnings.warn(
        f"{unequal}the arraysets {[a.name for a in asets]} do not hold the same samples "
        f"(sizes {sizes}); using the {shared} sample names they share",
        UserWarning, stacklevel=stacklevel)


def _all_pointers(aset: LoaderSource) -> dict[Key, object]:
    return {decode_key(n): p for n, p in aset.loader_view().pointers()}


class GroupedSamples:
    """The samples a loader yields: one ``SampleSource`` per arrayset over the same keys.

    Parameters
    ----------
    arraysets :
        One read-only arrayset or a non-empty list/tuple of them.
    keys : Sequence[Union[str, int]], optional
        Sample names to yield, in this order; every arrayset must hold each (``KeyError``).
    index_range : slice, optional
        Slice of the sorted common sample names; ignored when ``keys`` is given.

    fetch : bool, optional
        ``True`` (default): samples whose bytes are not stored here are read from the
        repository's lazy data remote into the local store now. ``False``: those samples are
        left where they are (a reader of the data remote's bucket reads them itself); each
        source's entry in :attr:`not_local` lists them and their locations in the source are
        placeholders (``pack_idx`` -1). Without a lazy data remote both refuse them
        (``LoaderRemoteDataError``).

    When ``keys`` is not given and the arraysets do not hold the same sample names, only the
    names all of them hold are used and a ``UserWarning`` says how many were left out.
    """

    def __init__(self, arraysets: object, keys: Optional[Iterable[Key]] = None,
                 index_range: Optional[slice] = None, fetch: bool = True) -> None:
        asets = as_arrayset_list(arraysets)
        self.arraysets = asets
        self.fetch = fetch
        #: per source: ``(positions, digests)`` of the samples left in the data remote (``fetch=False``), or None
        self.not_local: list[Optional[tuple[np.ndarray, list[bytes]]]] = []
        for arg, value in (("keys", keys), ("index_range", index_range)):
            if isinstance(value, LoaderSource):  # Hangar 0.3 code passing arraysets positionally
                raise ArgumentTypeError(
                    f"arrayset {value.name!r} was passed as {arg}: pass several arraysets as one list "
                    "or tuple in the first argument (e.g. [images, labels]), not as separate arguments")
        if keys is not None:
            if isinstance(keys, (str, int)) or not isinstance(keys, Iterable):
                raise ArgumentTypeError(f"keys must be a sequence of sample names, not {keys!r}")
            chosen = list(keys)
            if not chosen:
                raise InvalidArgumentError("keys is empty: pass sample names, or keys=None for all samples")
        for a in asets:
            # a loader reads packs itself, without the reload on a missing pack that ``get`` makes:
            # catch up with a gc that compacted packs away since the checkout's store loaded them
            a.loader_view().store.refresh()
        if self._from_tables(asets, chosen if keys is not None else None, index_range):
            return
        if keys is not None:
            ptrs = []
            for a in asets:
                col = []
                for k in chosen:
                    ptr = a.loader_view().pointer(encode_key(k)) if isinstance(k, (str, int)) and not isinstance(
                        k, bool) else None
                    if ptr is None:
                        raise SampleNotFoundError(f"arrayset {a.name!r} has no sample with key {k!r}")
                    col.append(ptr)
                ptrs.append(col)
        else:
            if index_range is not None and not isinstance(index_range, slice):
                raise ArgumentTypeError(f"index_range must be a slice, not {index_range!r}")
            tables = [_all_pointers(a) for a in asets]
            common = set(tables[0])
            for t in tables[1:]:
                common &= t.keys()
            largest = max(len(t) for t in tables)
            if not common:
                raise InvalidArgumentError(f"the arraysets {[a.name for a in asets]} have no sample names in common")
            if len(common) < largest:
                _warn_unshared(asets, [len(t) for t in tables], len(common), stacklevel=4)
            chosen = sorted_keys(common)
            if index_range is not None:
                chosen = chosen[index_range]
                if not chosen:
                    raise InvalidArgumentError(f"index_range {index_range!r} selects no samples out of {len(common)}")
            ptrs = [[t[k] for k in chosen] for t in tables]
        self.keys: list[Key] = chosen
        self.sources = [self._source(a, col) for a, col in zip(asets, ptrs)]

    def _from_tables(self, asets: list[LoaderSource], chosen: Optional[list],
                     index_range: Optional[slice]) -> bool:
        """Resolve the samples through the arraysets' location tables (one vectorised lookup, no
        pointer reads: 60,000 samples in ~10 ms instead of ~0.7 s); False when an arrayset has none.

        A loader reads every sample it chooses, so it asks for that many reads: a table is
        built (and cached for the next run) when that pays, as ``get_batch`` does.
        """
        if index_range is not None and not isinstance(index_range, slice):
            return False  # the pointer path raises the TypeError
        reads = len(chosen) if chosen is not None else 1 << 62
        views = [a.loader_view() for a in asets]
        tables = [v.locations(reads) for v in views]
        for i, (v, t) in enumerate(zip(views, tables)):
            if t is not None and not v.store.holds_packs(t.packs):  # a gc removed one: rebuilt
                v.drop_locations()
                tables[i] = v.locations(reads)
        if any(t is None for t in tables):
            return False
        if chosen is None:
            names = [t.ikeys.tolist() + t.snames for t in tables]  # each already in sorted_keys order
            common = set(names[0]).intersection(*names[1:]) if len(names) > 1 else None
            largest = max(len(n) for n in names)
            if common is not None and len(common) < largest:
                if not common:
                    raise InvalidArgumentError(
                        f"the arraysets {[a.name for a in asets]} have no sample names in common")
                _warn_unshared(asets, [len(n) for n in names], len(common), stacklevel=5)
            chosen = sorted_keys(common) if common is not None else names[0]
            if not chosen:
                raise InvalidArgumentError(f"the arraysets {[a.name for a in asets]} have no sample names in common")
            if index_range is not None:
                total = len(chosen)
                chosen = chosen[index_range]
                if not chosen:
                    raise InvalidArgumentError(f"index_range {index_range!r} selects no samples out of {total}")
        probe = [k if isinstance(k, (str, int)) and not isinstance(k, bool) else None for k in chosen]
        sources = []
        for a, v, t in zip(asets, views, tables):
            rows = t.rows(probe)  # None (no str or int: as on the pointer path) is never found
            bad = np.flatnonzero(rows < 0)
            if len(bad):
                raise SampleNotFoundError(f"arrayset {a.name!r} has no sample with key {chosen[int(bad[0])]!r}")
            missing = int((t.pack_col[rows] < 0).sum())
            if missing and self.fetch and v.store.lazy_source is not None:  # read from the data remote, in bulk
                t = v.fetch_lazily(t, rows)
                missing = int((t.pack_col[rows] < 0).sum())
            if missing:  # fetched since the table was built?
                t = v.located_now(t)
                missing = int((t.pack_col[rows] < 0).sum())
            left: Optional[tuple[np.ndarray, list[bytes]]] = None
            if missing and not self.fetch and v.store.lazy_source is not None:
                pos = np.flatnonzero(t.pack_col[rows] < 0)
                left = (pos, [t.digests[r].tobytes() for r in rows[pos].tolist()])
            elif missing:
                raise LoaderRemoteDataError(
                    f"{missing} of the {len(rows)} chosen samples of arrayset {a.name!r} are remote "
                    f"references (their bytes are not in this repository); {_FETCH_HINT}")
            sources.append(SampleSource.from_table(a.name, v.store.storage, a.dtype, a.shape,
                                                   a.variable_shape, t, rows))
            self.not_local.append(left)
        self.keys = chosen
        self.sources = sources
        return True

    def _source(self, aset: LoaderSource, ptrs: list) -> SampleSource:
        store = aset.loader_view().store
        locs = store.locations([p.digest for p in ptrs])  # one vectorised index search
        if None in locs and self.fetch and store.fetch_missing([(p.digest, p.dtype, p.shape) for p in ptrs]):
            locs = store.locations([p.digest for p in ptrs])  # read from the data remote, in bulk
        missing = locs.count(None)
        left: Optional[tuple[np.ndarray, list[bytes]]] = None
        if missing and not self.fetch and store.lazy_source is not None:
            pos = np.asarray([i for i, loc in enumerate(locs) if loc is None], dtype=np.int64)
            left = (pos, [ptrs[i].digest for i in pos.tolist()])
            locs = [_PLACEHOLDER if loc is None else loc for loc in locs]
        elif missing:
            raise LoaderRemoteDataError(
                f"{missing} of the {len(ptrs)} chosen samples of arrayset {aset.name!r} are remote "
                f"references (their bytes are not in this repository); {_FETCH_HINT}")
        self.not_local.append(left)
        src = SampleSource(aset.name, store.storage, aset.dtype, aset.shape, aset.variable_shape,
                           locs, [p.shape for p in ptrs])
        if left is not None:
            src.pack_idx[left[0]] = -1
        return src

    def __len__(self) -> int:
        return len(self.keys)


def check_index(i: Union[int, np.integer], n: int) -> int:
    """Position ``i`` (negative counts from the end) in a sequence of ``n``; ``IndexError`` outside."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise ArgumentTypeError(f"index must be an int, not {type(i).__name__}")
    j = int(i) + n if i < 0 else int(i)
    if not 0 <= j < n:
        raise SampleIndexError(f"index {int(i)} is out of range for {n} samples")
    return j


def check_positions(indices: list, n: int) -> list[int]:
    """``check_index`` for a whole batch of positions; fast when all are plain ints in range."""
    if indices and all(type(i) is int for i in indices) and min(indices) >= 0 and max(indices) < n:
        return indices
    return [check_index(i, n) for i in indices]
