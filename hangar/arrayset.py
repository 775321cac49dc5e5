"""Arraysets: named collections of tensors sharing a schema (reader and writer)."""

from __future__ import annotations

import gc
import multiprocessing
import uuid
from contextlib import contextmanager
from itertools import repeat
from math import prod
from operator import is_
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

import numpy as np

from hangar.core import RepositoryCore
from hangar.errors import (
    ArgumentTypeError,
    ArraysetExistsError,
    ArraysetNotFoundError,
    HandleClosedError,
    IndexFormError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidSchemaError,
    InvalidSelectionError,
    NotPicklableError,
    ReadOnlyCheckoutError,
    SampleNotFoundError,
    SchemaMismatchError,
    UnsupportedOperationError,
)
from hangar.loader_source import LoaderSource
from hangar.plumbing import rowhash
from hangar.plumbing.mapping import address_space_limited
from hangar.processes import pool_start_method
from hangar.records.keys import (
    Key,
    decode_key,
    encode_key,
    encode_keys,
    int_key_names,
    is_key_type,
    sort_key,
    sorted_keys,
    validate_arrayset_name,
    validate_key,
    validate_keys,
)
from hangar.records.pointer import SamplePointer
from hangar.records.schema import (
    BACKEND_ALIASES,
    BACKENDS,
    MAX_RANK,
    ArraysetSchema,
    codec_backend,
    dtype_to_descr,
    valid_backends_text,
)
from hangar.records.snapshot import Snapshot
from hangar.session import CheckoutHandle, CheckoutSession
from hangar.store import TensorStore, sample_digest
from hangar.store.codecs import CodecChooser
from hangar.store.digest import byte_view

_is_key = is_key_type


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a bulk write.

    A bulk write allocates a few small tuples per sample (pointers, index entries) and no
    reference cycles; with the collector running, its repeated full passes over the growing
    heap took 40% of the time of a 60,000-sample write. The previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ArraysetDataReader(CheckoutHandle, LoaderSource):
    """Read access to the samples of one arrayset at one commit."""

    _detached = False  # set when the arrayset is removed from (or re-created in) the checkout
    _loc_table = None  # the commit's location table, once resolved (see _locations)

    def __init__(self, session: CheckoutSession, schema: ArraysetSchema, table) -> None:  # noqa: ANN001
        self._session = session
        self._schema = schema
        self._table = table  # SampleTable (commit) or StagedSamples (writer)
        self._dtype = schema.np_dtype

    def _check_alive(self) -> None:
        """Raise ``HandleClosedError`` (a ``ReferenceError``) once this handle is no longer valid."""
        self._session.check()
        if self._detached:
            raise HandleClosedError(f"arrayset {self._schema.name!r} was removed from this checkout; writes "
                                    "through this handle would be lost: get it again from co.arraysets")

    def _check(self) -> None:
        """:meth:`_check_alive`, then store writes a ``with`` block holds back, so reads see them."""
        self._check_alive()
        self._session.sync()

    def _guarded(self, items: Iterable) -> Iterator:
        """Yield ``items`` while the handle stays valid; ``ReferenceError`` on the next step after."""
        check = self._check_alive
        for item in items:
            check()
            yield item


    def __repr__(self) -> str:
        s = self._schema
        return (f"{type(self).__name__}(name={s.name!r}, dtype={self._dtype}, shape={s.shape}, "
                f"variable_shape={s.variable_shape}, named_samples={s.named_samples})")

    # ----------------------------------------------------------- properties
    @property
    def name(self) -> str:
        """Name of the arrayset. Read-only attribute."""
        self._check_alive()
        return self._schema.name

    @property
    def dtype(self) -> np.dtype:
        """Datatype of the arrayset schema. Read-only attribute."""
        self._check_alive()
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape (or max shape, when ``variable_shape``) of the samples. Read-only attribute."""
        self._check_alive()
        return self._schema.shape

    @property
    def variable_shape(self) -> bool:
        """True when samples may be smaller than ``shape`` in any dimension."""
        self._check_alive()
        return self._schema.variable_shape

    @property
    def named_samples(self) -> bool:
        """True when samples are given names by the user."""
        self._check_alive()
        return self._schema.named_samples

    @property
    def backend(self) -> str:
        """How sample bytes are compressed in the store, as given to ``init_arrayset``.

        ``auto``, ``raw``, ``lz4`` or ``zstd``; or one of Hangar 0.3's codes, reported as
        given: ``'00'`` (stored as ``lz4``), ``'01'`` (``zstd``), ``'10'`` (``raw``).
        """
        self._check_alive()
        return self._schema.backend

    @property
    def _backend(self) -> str:
        # Hangar 0.3's name for backend, read by code written against it
        return self.backend

    @property
    def _asetn(self) -> str:
        # Hangar 0.3's name for name, read by code written against it
        return self.name

    @property
    def iswriteable(self) -> bool:
        """True for arraysets of a write-enabled checkout."""
        self._check_alive()
        return False

    # ------------------------------------------------------------ container
    def __len__(self) -> int:
        """Number of samples in the arrayset."""
        self._check()
        return self._table.count()

    def __contains__(self, key: object) -> bool:
        """True when ``key`` (a str or int) names a sample of the arrayset; False otherwise."""
        self._check()
        if not _is_key(key):
            return False
        return encode_key(key) in self._table  # type: ignore[arg-type]  # key was checked by _is_key

    def __iter__(self) -> Iterator[Key]:
        return self.keys()

    def __getitem__(self, key: Key) -> np.ndarray:
        """Return the sample ``key`` (dict-style :meth:`get`; ``KeyError`` if absent)."""
        return self.get(key)

    def _pointer(self, key: object) -> SamplePointer:
        # key was checked by _is_key
        ptr = self._table.pointer(encode_key(key)) if _is_key(key) else None  # type: ignore[arg-type]
        if ptr is None:
            raise SampleNotFoundError(f"arrayset {self.name!r} has no sample with key {key!r}")
        return ptr

    def get(self, name: Key) -> np.ndarray:
        """Return the sample stored under ``name``.

        Raises
        ------
        KeyError
            If the arrayset has no sample with that name.
        """
        s = self._session
        if s.closed or self._detached or s.batch.pending:  # what _check does, tested inline: ~1 us a read
            self._check()
        table = self._loc_table
        if table is None:
            table = self._locations()
        if table is not None:
            row = table.row(name)
            if row < 0:
                raise SampleNotFoundError(f"arrayset {self.name!r} has no sample with key {name!r}")
            try:
                arr = self._session.store.read_row(table, row, self._dtype)
            except FileNotFoundError:  # its pack was compacted away (gc): the path by digest reloads
                self._drop_locations()
                arr = None
            if arr is not None:
                return arr
        ptr = self._pointer(name)
        return self._session.store.read(ptr.digest, self._dtype, ptr.shape)

    def _locations(self, reads: int = 1):  # noqa: ANN202 - LocationTable or None
        """The name -> location table of a commit's arrayset, for a read of ``reads`` samples;
        ``None`` (read by pointer) for write-enabled arraysets, whose samples change.

        A table in memory, cached on disk or derived from the parent commit's is used at once.
        Building one from scratch reads every pointer (~12 us a sample), so it is built only
        once the reads asked of this object add up to the arrayset's size (and 4,096): a
        fresh process reading a few thousand samples of a 60,000-sample commit nobody has
        opened yet reads them by pointer instead of spending ~0.75 s on the table.
        """
        if self._session.writable:
            return None
        table = self._loc_table
        if table is not None:
            return table
        src, store = self._table, self._session.store
        if not self.__dict__.get("_loc_probed"):
            self._loc_probed = True
            table = store.location_table(src.tree_key(), src.entries, self._derive_locations, build=False)
            if table is not None:
                self._loc_table = table
                return table
        asked = self._loc_asked = self.__dict__.get("_loc_asked", 0) + reads
        if asked < _BUILD_TABLE_AFTER or (_BUILD_TABLE_SHARE and asked < _BUILD_TABLE_SHARE * src.count()):
            return None
        # not None: the table is built here, not looked up
        table = self._loc_table = store.location_table(src.tree_key(), src.entries)
        return table

    def _derive_locations(self):  # noqa: ANN202 - LocationTable or None
        """The parent commit's table of this arrayset plus the changes since (O(changed)), when the
        parent's table is cached and the schema is the same; else None (build from scratch)."""
        from hangar.records.snapshot import Snapshot  # the reader's records view of the parent

        git, store, commit = self._session.git, self._session.store, self._session.commit
        if commit is None:
            return None
        parents = git.commit_info(commit).parents
        if not parents:
            return None
        snap = Snapshot(git, git.commit_tree_id(parents[0]))
        if snap.schema(self.name) != self._schema:
            return None
        base = snap.samples(self.name)
        base_table = store.cached_table(base.tree_key())
        if base_table is None:
            return None
        changes = self._table.changes_since(base)
        if len(changes) > max(1024, len(base_table) // 4):  # reading every pointer costs about the same
            return None
        return base_table.derive(changes, store.locate_durable)

    def _located_now(self, table):  # noqa: ANN001, ANN202 - LocationTable
        """``table`` (this arrayset's) with the samples fetched since it was built located: what a
        loader asks before it refuses samples as remote references."""
        table = self._loc_table = self._session.store.complete_table(self._table.tree_key(), table)
        return table

    def _fetch_lazily(self, table, rows: np.ndarray):  # noqa: ANN001, ANN202 - LocationTable
        """``table`` after the store's lazy source brought the bytes of ``rows`` not stored here
        (one bulk read from the data remote for a whole batch)."""
        lacking = rows[table.pack_col[rows] < 0].tolist()
        items = [(table.digests[r].tobytes(), self._dtype.str, tuple(table.shapes[r].tolist())) for r in lacking]
        if self._session.store.fetch_missing(items):
            table = self._located_now(table)
        return table

    def _drop_locations(self) -> None:
        table = self.__dict__.pop("_loc_table", None)
        self.__dict__.pop("_loc_probed", None)
        if table is not None:
            self._session.store.drop_table(self._table.tree_key())

    def _read_located(self, names: list, out: Optional[np.ndarray]) -> Optional[list]:
        """get_batch through the location table: one vectorised lookup, coalesced reads into one
        array. ``None`` when the table cannot serve the batch (writer, or a pack removed by gc)."""
        table = self._locations(len(names))
        if table is None:
            return None
        rows = table.rows(names)
        if len(rows) and int(rows.min()) < 0:
            missing = np.flatnonzero(rows < 0)
            raise SampleNotFoundError(f"arrayset {self.name!r} has no sample with key {names[int(missing[0])]!r}")
        store, dtype, shape = self._session.store, self._dtype, self.shape
        if store.lazy_source is not None and not table.complete and bool((table.pack_col[rows] < 0).any()):
            table = self._fetch_lazily(table, rows)
        try:
            # a complete table of one shape answers both without gathering two columns (~1 ms at 60,000)
            if (not self.variable_shape and (table.complete or bool((table.pack_col[rows] >= 0).all()))
                    and (table.uniform_shape() == shape if table.uniform_shape() is not None
                         else bool((table.shapes[rows] == shape).all()))):
                if out is None:
                    mapped = store.map_samples(table, rows, shape, dtype)
                    if mapped is not None:  # back to back in a pack: rows of a private mapping, no copy
                        return mapped
                dest = np.empty((len(rows), *shape), dtype=dtype) if out is None else out
                store.read_rows_into(table, rows, dest)
                # a list, or the caller's out array
                return dest if out is not None else list(dest)  # type: ignore[return-value]
            arrays = []
            for r in rows.tolist():
                arr = store.read_row(table, r, dtype)
                if arr is None:  # bytes not here (yet): by digest, which raises the usual RemoteDataError
                    arr = store.read(table.digests[r].tobytes(), dtype, tuple(table.shapes[r].tolist()))
                arrays.append(arr)
            return arrays
        except FileNotFoundError:
            self._drop_locations()
            return None

    def _check_out(self, out: object, n: int) -> np.ndarray:
        want = (n, *self.shape)
        if not isinstance(out, np.ndarray) or out.dtype != self._dtype or out.shape != want \
                or not out.flags.c_contiguous or not out.flags.writeable:
            got = (f"{type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}"
                   if isinstance(out, np.ndarray) else type(out).__name__)
            raise InvalidArgumentError(
                f"out must be a writeable C-contiguous numpy array of dtype {self._dtype} and shape "
                f"{want} (one row per name) for arrayset {self.name!r}; got {got}")
        if self.variable_shape:
            raise InvalidArgumentError(f"out= needs a fixed-shape arrayset; {self.name!r} has variable_shape=True")
        return out

    def get_batch(self, names: Iterable[Key], *, n_cpus: Optional[int] = None,
                  start_method: str = "spawn", out: Optional[np.ndarray] = None) -> list[np.ndarray]:
        """Return the samples named in ``names``, in the order given.

        Samples of a read checkout are located with one vectorised lookup and read with a few
        large reads, sorted by pack and offset, into one array (the returned arrays are rows
        of it): at page-cache speed in this process. Reads run in a process pool (each worker
        opens its own file handles) only when ``n_cpus`` is greater than 1 (and never for a
        write-enabled arrayset); starting one costs about a second with ``spawn``.

        Parameters
        ----------
        names : Iterable[Union[str, int]]
            Sample names to read (or one sample name).
        n_cpus : int, kwarg-only
            Number of worker processes; None (default) or 1 reads in this process.
        start_method : str, kwarg-only
            ``'spawn'``, ``'fork'`` or ``'forkserver'`` (as offered by the platform).
        out : np.ndarray, kwarg-only
            A C-contiguous array of shape ``(len(names), *shape)`` and the arrayset's dtype
            (fixed-shape arraysets only) to read into, for callers that reuse one buffer.

        Returns
        -------
        List[np.ndarray]
            One array per name, in the order of ``names``. If ``names`` is a single sample
            name (a str or int) instead, that sample's array. With ``out``: ``out`` itself.

        Raises
        ------
        KeyError
            If the arrayset does not contain a sample with one of the names (checked before
            anything is read).
        ValueError
            If ``n_cpus`` is not a positive int, ``start_method`` is not available or
            ``out`` does not fit.
        FileNotFoundError
            (``RemoteDataError``) if a sample's bytes are only on a remote (``fetch_data``).
        """
        self._check()
        if n_cpus is not None and (not isinstance(n_cpus, int) or isinstance(n_cpus, bool) or n_cpus < 1):
            raise InvalidArgumentError(f"n_cpus must be a positive int or None, not {n_cpus!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise InvalidArgumentError(f"start_method {start_method!r} is not available; choose one of "
                                       f"{multiprocessing.get_all_start_methods()}")
        if _is_key(names):
            if out is not None:
                raise InvalidArgumentError("out= needs a list of names, not a single sample name")
            # without out=, get returns the list this method returns
            return self.get(names)  # type: ignore[arg-type,return-value]
        if type(names) is not list and not isinstance(names, np.ndarray):  # a list is read as given (a
            names = list(names)  # copy of W1's 60,000 keys cost ~0.2 ms of a ~13 ms sequential batch)
        if out is not None:
            out = self._check_out(out, len(names))
        if n_cpus is None or n_cpus == 1:
            # coalesced reads run at page-cache speed in this process (W1: ~1 GB/s), where a
            # spawned pool costs about a second to start
            got = self._read_located(names, out)  # type: ignore[arg-type]
            if got is not None:
                return got
        result = self._get_batch_by_pointer(list(names), n_cpus, start_method)
        if out is None:
            return result
        for dst, arr in zip(out, result):
            dst[...] = arr
        return out  # type: ignore[return-value]  # filled in place: the caller's array

    def _get_batch_by_pointer(self, names: list, n_cpus: Optional[int], start_method: str) -> list[np.ndarray]:
        ptrs = [self._pointer(n) for n in names]
        store, dtype = self._session.store, self._dtype
        if self.iswriteable or n_cpus is None or n_cpus == 1 or len(ptrs) < 2:
            return list(store.read_many(((p.digest, p.shape) for p in ptrs), dtype))
        store.fetch_missing([(p.digest, p.dtype, p.shape) for p in ptrs])  # lazy reads: in bulk, here
        for p in ptrs:  # fail before starting workers
            store.location(p.digest)
        n_jobs = min(n_cpus, len(ptrs))
        size = -(-len(ptrs) // (n_jobs * 4))
        chunks = [(dtype, ptrs[i:i + size]) for i in range(0, len(ptrs), size)]
        ctx = multiprocessing.get_context(pool_start_method(start_method))  # an unguarded script: fork
        with ctx.Pool(n_jobs, initializer=_init_batch_worker, initargs=(store,)) as pool:
            parts = pool.map(_read_batch_chunk, chunks, chunksize=1)
        return [arr for part in parts for arr in part]

    def __reduce__(self):  # noqa: ANN204
        # a reader pickles as (repository path, commit, arrayset name); the receiving process
        # opens its own checkout (and so its own file handles) on first use, once per process
        self._check()
        return _open_reader, (self._session.repo_path, self._session.commit, self.name)

    def keys(self) -> Iterator[Key]:
        """Iterator over every sample key (ints in numeric order, then strs in lexical order).

        The keys are listed when ``keys()`` is called; the iterator raises ``ReferenceError``
        once the checkout is closed.
        """
        self._check()
        return self._guarded(sorted_keys(decode_key(n) for n in self._table.names()))

    def values(self) -> Iterator[np.ndarray]:
        """Iterator over every sample array, in ``keys()`` order."""
        return (v for _, v in self.items())

    def items(self) -> Iterator[tuple[Key, np.ndarray]]:
        """Iterator over ``(key, array)`` for every sample, in ``keys()`` order."""
        self._check()
        return self._items()

    def _items(self) -> Iterator[tuple[Key, np.ndarray]]:
        table = None
        if not self._session.writable and not self.variable_shape:
            table = self._locations(self._table.count())
        if table is not None and table.complete and bool((table.shapes == self.shape).all()):
            yield from self._items_located(table)
            return
        ptrs = sorted(((decode_key(n), p) for n, p in self._table.pointers()), key=lambda kp: sort_key(kp[0]))
        arrays = self._session.store.read_many(((p.digest, p.shape) for _, p in ptrs), self._dtype)
        for (k, _), arr in zip(ptrs, arrays):
            self._check_alive()
            yield k, arr

    def _items_located(self, table) -> Iterator[tuple[Key, np.ndarray]]:  # noqa: ANN001 - LocationTable
        """``items()`` through the location table (rows are in ``keys()`` order): chunks of ~16 MiB
        read with :meth:`TensorStore.read_rows_into` (coalesced, checksums checked), the next chunk
        read in a second thread while this one is consumed (pread and xxh3 release the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        keys = table.ikeys.tolist() + list(table.snames)
        n, shape, dtype, store = len(keys), self.shape, self._dtype, self._session.store
        per = max(1, _ITEMS_CHUNK // max(1, dtype.itemsize * int(np.prod(shape))))

        def read(a: int) -> np.ndarray:
            dest = np.empty((min(n, a + per) - a, *shape), dtype=dtype)
            store.read_rows_into(table, np.arange(a, a + len(dest)), dest)
            return dest

        with ThreadPoolExecutor(1, thread_name_prefix="hangar-items") as pool:
            ahead = pool.submit(read, 0) if n else None
            for a in range(0, n, per):
                try:
                    chunk = ahead.result()  # type: ignore[union-attr]
                except FileNotFoundError:  # a pack compacted away (gc): the rest by pointer
                    self._drop_locations()
                    for k in keys[a:]:
                        self._check_alive()
                        yield k, self.get(k)
                    return
                if a + per < n:
                    ahead = pool.submit(read, a + per)
                for k, arr in zip(keys[a:a + per], chunk):
                    self._check_alive()
                    yield k, arr

    # ------------------------------------------------------------- remotes
    def _remote_keys(self) -> list[Key]:
        named = list(self._table.pointers())
        missing = set(self._session.store.missing(p.digest for _, p in named))
        return sorted_keys(decode_key(n) for n, p in named if p.digest in missing)

    @property
    def contains_remote_references(self) -> bool:
        """True when some samples' bytes are only on a remote (see ``fetch_data``)."""
        self._check()
        return bool(self._session.store.missing(p.digest for _, p in self._table.pointers()))

    @property
    def remote_reference_sample_keys(self) -> list[Key]:
        """Keys of the samples whose bytes are only on a remote."""
        self._check()
        return self._remote_keys()

    def loader_view(self) -> LoaderView:
        """The records and store behind this arrayset, as hangar's data loaders read them."""
        self._check()  # samples held back are stored: the view reads the staging area and store
        return LoaderView(self)

    def to_dask(self, keys: Optional[Iterable[Key]] = None, index_range: Optional[slice] = None,
                chunk_rows: Optional[int] = None) -> Any:  # a dask.array.Array (an optional dependency)
        """A lazy ``dask.array`` of shape ``(n_samples, *shape)`` over this fixed-shape arrayset.

        Same as :func:`hangar.dataloaders.dask_array` (needs ``pip install hangar[dask]``);
        nothing is read until it is computed.
        """
        from hangar.dataloaders.daskarray import dask_array

        return dask_array(self, keys=None if keys is None else list(keys), index_range=index_range,
                          chunk_rows=chunk_rows)


#: a reader builds its location table from scratch only once the samples asked of it reach this
#: many and this share of the arrayset's size (a build costs about one read by pointer a sample)
_BUILD_TABLE_AFTER = 4096
_BUILD_TABLE_SHARE = 1.0
#: items()/values() read this many bytes of samples at a time
_ITEMS_CHUNK = 16 << 20
_worker_store = None
_reopened: dict[tuple[str, str], "Arraysets"] = {}


def _init_batch_worker(store) -> None:  # noqa: ANN001
    global _worker_store
    _worker_store = store


def _read_batch_chunk(chunk: tuple[np.dtype, list[SamplePointer]]) -> list[np.ndarray]:
    dtype, ptrs = chunk
    read = _worker_store.read  # type: ignore[union-attr]  # set by _init_batch_worker before any task runs
    return [read(p.digest, dtype, p.shape) for p in ptrs]


def _open_reader(repo_path: str, commit: str, name: str) -> ArraysetDataReader:
    """Unpickle a reader: the arrayset ``name`` at ``commit``; one session per process and commit."""
    asets = _reopened.get((repo_path, commit))
    if asets is None:  # a session of its own, never closed: it lives as long as the process
        core = RepositoryCore(repo_path)
        session = CheckoutSession(core.git, core.store(), False, repo_path, commit)
        session.store.refresh()
        asets = Arraysets(session, Snapshot(core.git, core.git.commit_tree_id(commit)))
        _reopened[(repo_path, commit)] = asets
    return asets[name]


class ArraysetDataWriter(rowhash.WriterSlot, ArraysetDataReader):
    """Read and write access to one arrayset in the staging area."""

    # rowhash.WriterSlot (first base: its C fields _session, _detached, _fast_hold, _fast_rows are
    # found before the reader's class attributes) gives ``aset[k] = v`` a C mapping slot
    # (rowhash.install_add_slot, below the class): a loop's add of a held sample runs with no
    # Python frame, anything else calls __setitem__ below. Where the extension is not built it
    # is a plain class and __setitem__ serves every add.

    #: CheckoutHandle's ``__dict__`` (refused once the checkout is closed): a class with a C base
    #: gets an instance-dict descriptor of its own, which would shadow it
    __dict__ = vars(CheckoutHandle)["__dict__"]

    def __reduce__(self):  # noqa: ANN204
        raise NotPicklableError(f"the write-enabled arrayset {self.name!r} cannot be pickled; commit and pickle the "
                                "arrayset of a read checkout (repo.checkout()) instead")

    def __init__(self, session: CheckoutSession, schema: ArraysetSchema, table) -> None:  # noqa: ANN001
        super().__init__(session, schema, table)
        self._chooser = CodecChooser(codec_backend(schema.backend))
        self._held: Optional[_HeldSamples] = None  # samples a ``with`` block (or _hold_always) holds back
        #: the stack of the last held samples stored, reused by the next: fresh memory costs a page
        #: fault every few rows (a loop of 784-byte adds: ~4.5 us a sample with a new stack per
        #: 16,384 samples, ~1.5 us reusing it)
        self._spare_stack: Optional[np.ndarray] = None
        fixed = not schema.variable_shape
        #: shape and C strides a valid fixed-shape sample has (None: variable shape), for add's fast check
        self._fixed_shape = schema.shape if fixed else None
        self._c_strides = np.empty(schema.shape, dtype=self._dtype).strides if fixed else None
        #: small fixed-shape samples are held back outside ``with`` blocks too: stored one by one
        #: each cost ~30 us of per-sample store work (W1: 60,000 adds took 2.2 s, held and
        #: stored in bulk ~0.5 s); every read and operation but an add stores them first, as for
        #: a ``with`` block, and they were never durable before the commit either
        self._hold_always = fixed and self._dtype.itemsize * prod(schema.shape) <= _HOLD_ALWAYS_UPTO
        #: the held stack's add in one C call (``rowhash.row_holder``: ~0.2 us where the checks and
        #: row copy below cost ~1.7 us a sample; rowhash.WriterSlot's C slot and ``_add_held`` run
        #: it), armed on ``_fast_stack``, the held stack it writes; None when nothing is held, the
        #: extension is not built, or the held keys' ``in`` set is kept (the C call does not add
        #: to it). ``_fast_rows``: the held stack's bound (store the held samples at this many).
        self._fast_hold = None
        self._fast_stack: Optional[np.ndarray] = None
        self._fast_rows = 0

    # -------------------------------------------------------------- batching
    def _stage(self, key: Key, arr: np.ndarray) -> Key:
        """Store one validated sample now, or hold it back while a ``with`` block is open."""
        held = self._held
        if held is None:
            if not (self._hold_always or self._session.batch.open):
                raw = byte_view(arr)
                return self._write(key, arr, raw, sample_digest(arr, raw))
            held = self._held = _HeldSamples(self._schema, self._dtype, self._spare_stack)
            self._spare_stack = None
            self._session.batch.hold(self)
        if held.append(key, arr):
            self.flush_pending()
        elif held.stack is not self._fast_stack:
            self._arm_fast_hold(held)
        return key

    def _arm_fast_hold(self, held: _HeldSamples) -> None:
        """Point the C add (``_fast_hold``) at the current stack of ``held`` (a new or grown one)."""
        self._fast_hold = self._fast_stack = None
        if held.stack is None or held._names is not None:  # (same module)
            return
        self._fast_hold = rowhash.row_holder(held.stack, held.keys, self._dtype, self._fixed_shape,  # type: ignore[arg-type]
                                             self._c_strides)  # type: ignore[arg-type]  # fixed shape: both set
        self._fast_stack = held.stack
        self._fast_rows = held.max_rows

    def __contains__(self, key: object) -> bool:
        """True when ``key`` (a str or int) names a sample of the arrayset; False otherwise."""
        # answered without storing held-back samples: a ``with`` loop that asks ``key in aset``
        # before each add stays as fast as without the test (20,000 samples: 0.6 s, 2.1 s when
        # it stored them each time; the loop without `with` 0.4-0.5 s). Correct
        # because held samples are only adds: a remove stores them first.
        self._check_alive()
        if not _is_key(key):
            return False
        name = encode_key(key)  # type: ignore[arg-type]  # validated by _check_name
        held = self._held
        if held is not None:
            self._fast_hold = self._fast_stack = None  # the C add would not keep the ``in`` set
            if name in held.names():
                return True
        return name in self._table

    def flush_pending(self) -> None:
        """Store the samples held back by a ``with`` block (one bulk write); no-op if none.

        Called by the checkout's :class:`~hangar.session.WriteBatch`; users never need it.
        """
        held, self._held = self._held, None
        self._fast_hold = self._fast_stack = None
        if held is None or not held.keys:
            return
        if held.stack is not None:
            self._write_stack(held.keys, held.stack[:len(held.keys)])
            self._spare_stack = held.stack  # its rows were copied into the pack (nothing keeps a view)
        else:
            self._write_many(held.keys, held.arrays)

    @property
    def iswriteable(self) -> bool:
        """True: this arrayset belongs to the write-enabled checkout."""
        self._check_alive()
        return True

    def _check_data(self, data: object) -> np.ndarray:
        s = self._schema
        if not isinstance(data, np.ndarray):
            raise SchemaMismatchError(f"sample data must be a numpy.ndarray, not {type(data).__name__}")
        if not data.flags.c_contiguous:
            raise SchemaMismatchError(
                f"sample data must be C contiguous; pass np.ascontiguousarray(data) (shape {data.shape})")
        if data.dtype != self._dtype:
            raise SchemaMismatchError(
                f"sample dtype {data.dtype} does not match arrayset {s.name!r} dtype {self._dtype}")
        if data.ndim != len(s.shape):
            raise SchemaMismatchError(
                f"sample rank {data.ndim} (shape {data.shape}) does not match arrayset {s.name!r} "
                f"rank {len(s.shape)} (shape {s.shape})")
        if s.variable_shape:
            if any(d > m for d, m in zip(data.shape, s.shape)):
                raise SchemaMismatchError(
                    f"sample shape {data.shape} exceeds the max shape {s.shape} of arrayset {s.name!r}")
            if 0 in data.shape:
                raise SchemaMismatchError(f"sample shape {data.shape} has a zero-sized dimension")
        elif data.shape != s.shape:
            raise SchemaMismatchError(f"sample shape {data.shape} does not match arrayset {s.name!r} shape {s.shape}")
        return data

    def _check_name(self, name: object) -> Key:
        if name is None:
            if self._schema.named_samples:
                raise InvalidNameError(f"arrayset {self.name!r} has named samples: add(data, name) needs a name")
            return uuid.uuid4().hex
        return validate_key(name)

    def _check_names(self, names: list) -> list[Key]:
        """:meth:`_check_name` of each of ``names`` (none is ``None``), vectorised where they are ints."""
        return validate_keys(names)

    def _validate(self, data: object, name: object) -> tuple[Key, np.ndarray]:
        """``(key, array)`` of a sample checked against the schema, ready for ``_stage``."""
        arr = self._check_data(data)
        return self._check_name(name), arr

    def _write(self, key: Key, arr: np.ndarray, raw: memoryview, digest: bytes) -> Key:
        self._session.store.put(digest, raw, self._chooser)
        self._table.set(encode_key(key), SamplePointer(digest, arr.dtype.str, arr.shape))
        return key

    def _check_stack(self, data: np.ndarray, n: int) -> np.ndarray:
        """A stacked array of ``n`` samples (first axis = samples), validated as a whole."""
        if data.ndim == 0 or len(data) != n:  # e.g. one sample given for n keys: Hangar 0.3 said TypeError
            raise IndexFormError(f"{n} targets but the stacked array holds {len(data) if data.ndim else 0} samples "
                             f"(shape {data.shape})")
        # every row has the stack's dtype and shape: check one (``data[0, ...]`` is always an
        # ndarray, also for 0-d rows and object stacks; an empty stack checks a blank row)
        self._check_data(data[0, ...] if n else np.empty(data.shape[1:], dtype=data.dtype))
        if not data.flags.c_contiguous:
            raise SchemaMismatchError(f"stacked sample data must be C contiguous; pass np.ascontiguousarray(data) "
                                      f"(shape {data.shape})")
        return data

    def _write_many(self, keys: list[Key], arrays: list[np.ndarray]) -> None:
        """Store validated samples: one vectorised store lookup, one staging update."""
        with _gc_paused():
            raws = [byte_view(a) for a in arrays]
            digests = [sample_digest(a, r) for a, r in zip(arrays, raws)]
            self._session.store.put_many(digests, raws, self._chooser)
            self._table.set_many([(encode_key(k), SamplePointer(d, a.dtype.str, a.shape))
                                  for k, d, a in zip(keys, digests, arrays)])

    def _write_stack(self, keys: list[Key], stack: np.ndarray) -> None:
        """``_write_many`` of the rows of a validated C-contiguous stack: dtype, shape and
        digest suffix are worked out once, and rows are slices of one buffer."""
        self._write_stack_named(encode_keys(keys), stack)

    def _write_stack_named(self, names: list[str], stack: np.ndarray) -> None:
        """:meth:`_write_stack` of keys given as their entry names (``encode_keys``)."""
        dtype, shape = stack.dtype.str, stack.shape[1:]
        with _gc_paused():
            digests = self._session.store.put_stack_array(byte_view(stack), len(stack), dtype, shape, self._chooser)
            # staged as columns: no pointer, location or digest object per sample until a read asks
            self._table.add_stack(names, digests, dtype, shape)

    def add(self, data: np.ndarray, name: Optional[Key] = None, **kwargs) -> Key:  # noqa: ANN003
        """Store ``data`` as the sample ``name`` (a generated name for unnamed arraysets).

        Parameters
        ----------
        data : np.ndarray
            C-contiguous array of the arrayset's dtype and shape (for variable-shape
            arraysets: same rank, each dimension at most the max shape).
        name : Union[str, int], optional
            Sample name: a str of ascii letters, digits, ``-._``, or an int >= 0. Required
            for arraysets with named samples; generated when omitted otherwise.

        Returns
        -------
        Union[str, int]
            Name the sample is stored under.

        Raises
        ------
        ValueError
            If the name is missing or invalid, or ``data`` is not a C-contiguous ndarray of
            the arrayset's dtype and (max) shape.
        """
        if kwargs:
            self._check_alive()
            raise ArgumentTypeError(f"add() got unexpected keyword arguments {sorted(kwargs)}")
        if self._fast_hold is not None and self._add_held(name, data):  # the C add (see __setitem__)
            return name  # type: ignore[return-value]  # taken: name is a plain int >= 0
        return self.__setitem__(name, data)

    def __setitem__(self, key: Optional[Key], value: np.ndarray) -> Key:
        """Store ``value`` as the sample ``key`` (dict-style :meth:`add`); return the key."""
        # ``aset[k] = v`` first tries the same C add in the class's C slot (rowhash.install_add_slot)
        # and calls this only when it was not taken; a direct call (and ``add``) tries it here
        if self._fast_hold is not None and self._add_held(key, value):  # checked and copied in one C call
            return key  # type: ignore[return-value]  # taken: key is a plain int >= 0
        # the common case checked inline, every check of _check_data and _check_name kept (a
        # fixed-shape C-contiguous ndarray of the arrayset's dtype, an int key >= 0): ~1.5 us
        # of the ~4 us a sample of a ``with`` loop cost; anything else takes the full checks
        if (self._session.closed or self._detached or type(value) is not np.ndarray or type(key) is not int
                or key < 0 or value.shape != self._fixed_shape or value.strides != self._c_strides
                or value.dtype is not self._dtype):  # an equal, not identical dtype: the full checks
            self._check_alive()
            arr = self._check_data(value)
            return self._stage(self._check_name(key), arr)
        held = self._held
        if held is None:
            return self._stage(key, value)
        # _HeldSamples.append's common case inline (a free row of the stack, no ``in`` set to keep):
        # one Python call less per sample of a loop
        keys, stack = held.keys, held.stack
        n = len(keys)
        if stack is None or n == len(stack) or held._names is not None:  # (same module)
            if held.append(key, value):
                self.flush_pending()
            elif held.stack is not self._fast_stack:  # grown: the C add writes the new stack
                self._arm_fast_hold(held)
            return key
        stack[n] = value
        keys.append(key)
        if n + 1 >= held.max_rows:
            self.flush_pending()
        return key

    def remove(self, name: Key) -> Key:
        """Remove the sample ``name`` from the staging area; return ``name``.

        Committed data is never deleted: earlier commits still hold it.

        Raises
        ------
        KeyError
            If the arrayset has no sample with that name.
        """
        self._check()
        if not _is_key(name) or not self._table.remove(encode_key(name)):
            raise SampleNotFoundError(f"arrayset {self.name!r} has no sample with key {name!r}")
        return name

    def __delitem__(self, key: Key) -> Key:
        """Remove the sample ``key`` (dict-style :meth:`remove`); return the key."""
        return self.remove(key)


#: ``aset[k] = v`` through rowhash.WriterSlot's C add (the methods above keep serving explicit
#: calls, ``add`` and everything the C add leaves). A ``with`` loop of 60,000 ``x[i] = data[i]``
#: of uint8 (28, 28), thread CPU a sample (scripts/bench_loop_add.py, minima): ~330 ns, ~440 ns
#: through CPython's generic slot (this class's Python __setitem__ calling the same C add), of
#: which ~110 ns are the caller's loop and ~100 ns the row's copy out of memory
rowhash.install_add_slot(ArraysetDataWriter)
#: ``x.add(data, name)`` tries the same C add before the Python method (~450 -> ~360 ns a sample)
ArraysetDataWriter.add = rowhash.fast_add(ArraysetDataWriter.add)  # type: ignore[method-assign]


#: a ``with`` block stores the samples it holds back once they reach this many bytes or
#: this many samples (whichever comes first), bounding the memory of a long loop. Measured
#: with scripts/bench_compat.py --chunks (60,000 x (28, 28) uint8, write phase): 512 to
#: 65,536 samples per bulk write all took 1.2-2.0 s, within the noise of a shared machine,
#: so the bound only caps memory; each bulk write does one vectorised index lookup, which
#: favours the larger chunks in repositories with big indexes.
HOLD_MAX_BYTES = 16 << 20
HOLD_MAX_SAMPLES = 16384
#: fixed-shape samples up to this size are held back outside ``with`` blocks too (larger ones
#: cost more to copy into the held stack than their store call saves)
_HOLD_ALWAYS_UPTO = 64 << 10


class _HeldSamples:
    """Validated samples of one arrayset held back by a ``with`` block, copied (the caller may
    reuse its array as soon as ``add`` returns, as when nothing is held back).

    Fixed-shape samples are copied into rows of one stacked array, written with
    ``_write_stack``; variable-shape ones are kept as copies for ``_write_many``. The stack
    is made at the bound at once: ``np.empty`` maps it without touching it, so only the rows
    written cost memory, and the writer reuses it for the next samples (``spare``), so a
    block that adds a sample and reads (which stores it) in turn allocates it once. (It
    started at 64 rows and doubled: a cProfile of a W1 loop at load ~6 showed the growths'
    copies and fresh pages at 0.12 s of wall time, more than the 60,000 adds.) A
    smaller ``spare`` (another bound when it was made) still grows by doubling.
    """

    def __init__(self, schema: ArraysetSchema, dtype: np.dtype, spare: Optional[np.ndarray] = None) -> None:
        self.keys: list[Key] = []
        self.arrays: list[np.ndarray] = []
        self.stack: Optional[np.ndarray] = None
        self.nbytes = 0
        self._names: Optional[set[str]] = None  # encoded keys, built on the first ``in`` test
        self.max_rows = HOLD_MAX_SAMPLES
        if not schema.variable_shape:
            row = dtype.itemsize * int(np.prod(schema.shape))
            self.max_rows = max(1, min(HOLD_MAX_SAMPLES, HOLD_MAX_BYTES // max(row, 1)))
            # under an address-space limit the bound's reservation (up to 16 MiB per arrayset, untouched
            # but counted: 100 arraysets of (256,) float32 reserved 1.6 GiB and a 1.2 GiB limit failed)
            # is not made up front: 64 rows, grown by doubling as before
            rows = min(64, self.max_rows) if address_space_limited() else self.max_rows
            self.stack = spare if spare is not None else np.empty((rows, *schema.shape), dtype=dtype)

    def names(self) -> set[str]:
        """Encoded keys of the held samples."""
        if self._names is None:
            self._names = {encode_key(k) for k in self.keys}
        return self._names

    def append(self, key: Key, arr: np.ndarray) -> bool:
        """Hold a copy of ``arr`` under ``key``; True when the bound is reached (store now)."""
        if self._names is not None:
            self._names.add(encode_key(key))
        n = len(self.keys)
        stack = self.stack
        if stack is not None:
            if n == len(stack):
                grown = np.empty((min(2 * n, self.max_rows), *stack.shape[1:]), dtype=stack.dtype)
                grown[:n] = stack
                self.stack = stack = grown
            stack[n] = arr
            self.keys.append(key)
            return n + 1 >= self.max_rows
        self.arrays.append(arr.copy())
        self.keys.append(key)
        self.nbytes += arr.nbytes
        return n + 1 >= self.max_rows or self.nbytes >= HOLD_MAX_BYTES


def _schema_from_args(name: object, shape: object, dtype: object, prototype: object,
                      named_samples: bool, variable_shape: bool, backend: Optional[str]) -> ArraysetSchema:
    name = validate_arrayset_name(name)
    if prototype is not None:
        if shape is not None or dtype is not None:
            raise InvalidSchemaError(f"arrayset {name!r}: give either prototype or shape and dtype, not both "
                                     f"(got shape={shape!r}, dtype={dtype!r} with a prototype)")
        if not isinstance(prototype, np.ndarray):
            raise InvalidSchemaError(f"prototype must be a numpy.ndarray, not {type(prototype).__name__}")
        if not prototype.flags.c_contiguous:
            raise InvalidSchemaError(f"prototype of arrayset {name!r} must be a C contiguous ndarray (shape "
                                     f"{prototype.shape}, strides {prototype.strides}); pass np.ascontiguousarray(...)")
        shape, dtype = prototype.shape, prototype.dtype
    elif shape is None or dtype is None:
        raise InvalidSchemaError(f"arrayset {name!r} needs shape and dtype when no prototype is given "
                                 f"(got shape={shape!r}, dtype={dtype!r})")
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape):
        raise InvalidSchemaError(f"arrayset {name!r}: shape {shape!r} must be an int or a tuple of ints")
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_RANK:
        raise InvalidSchemaError(
            f"arrayset {name!r}: shape {shape} has rank {len(shape)}; the maximum rank is {MAX_RANK}")
    if any(d <= 0 for d in shape):
        raise InvalidSchemaError(f"arrayset {name!r}: shape {shape} has a zero-sized or negative dimension")
    try:
        np_dtype = np.dtype(dtype)  # type: ignore[call-overload]  # any dtype-like; numpy raises on a bad one
    except TypeError as exc:
        raise InvalidSchemaError(f"arrayset {name!r}: dtype {dtype!r} is not a numpy dtype") from exc
    if np_dtype.hasobject:
        raise InvalidSchemaError(f"arrayset {name!r}: dtype {np_dtype} holds python objects; only fixed-size dtypes "
                                 "can be stored")
    if backend is None:
        backend = "auto"
    if not isinstance(backend, str) or (backend not in BACKENDS and backend not in BACKEND_ALIASES):
        raise InvalidSchemaError(f"arrayset {name!r}: backend {backend!r} is not valid; choose {valid_backends_text()}")
    if not isinstance(named_samples, bool) or not isinstance(variable_shape, bool):
        raise InvalidSchemaError(f"named_samples and variable_shape must be bool, not {named_samples!r} and "
                                 f"{variable_shape!r}")
    return ArraysetSchema(name=name, dtype=dtype_to_descr(np_dtype), shape=shape, variable_shape=variable_shape,
                          named_samples=named_samples, backend=backend)


class Arraysets(CheckoutHandle):
    """The arraysets of a checkout: access, creation and removal."""

    def __init__(self, session: CheckoutSession, source) -> None:  # noqa: ANN001
        # source: Snapshot (reader) or StagingArea (writer)
        self._session = session
        self._source = source
        self._cache: dict[str, ArraysetDataReader] = {}

    def __repr__(self) -> str:
        return f"Arraysets(writeable={self.iswriteable}, names={self.keys()})"

    def _detach(self, name: str) -> None:
        """Forget the accessor of an arrayset that was removed (or replaced): held handles stop working."""
        aset = self._cache.pop(name, None)
        if aset is not None:
            aset._detached = True

    @property
    def iswriteable(self) -> bool:
        """True when the checkout is write-enabled."""
        self._session.check()
        return self._session.writable

    def _get(self, name: object) -> ArraysetDataReader:
        self._session.check()
        if isinstance(name, str):
            aset = self._cache.get(name)
            if aset is not None:
                return aset
            if self._session.writable:
                table = self._source.arrayset(name)
                if table is not None:
                    aset = ArraysetDataWriter(self._session, table.schema, table)
            else:
                schema = self._source.schema(name)
                if schema is not None:
                    aset = ArraysetDataReader(self._session, schema, self._source.samples(name))
            if aset is not None:
                self._cache[name] = aset
                return aset
        raise ArraysetNotFoundError(f"no arrayset named {name!r}; arraysets: {self.keys()}")

    def __getitem__(self, key: str) -> ArraysetDataReader:
        """Return the arrayset ``key``: a writer in a write-enabled checkout, else a reader.

        Raises
        ------
        KeyError
            If no arrayset with that name exists in the checkout.
        """
        return self._get(key)

    def get(self, name: str) -> ArraysetDataReader:
        """Return the arrayset ``name`` (same as ``arraysets[name]``).

        Raises
        ------
        KeyError
            If no arrayset with that name exists in the checkout.
        """
        return self._get(name)

    def __setitem__(self, key: str, value: object) -> None:
        """Always refused: create arraysets with :meth:`init_arrayset`.

        Raises
        ------
        PermissionError
            In every case.
        """
        raise UnsupportedOperationError("arraysets cannot be set by item; use init_arrayset()")

    def __contains__(self, key: object) -> bool:
        """True when an arrayset named ``key`` exists in the checkout."""
        self._session.check()
        return isinstance(key, str) and key in self._source.arrayset_names()

    def __len__(self) -> int:
        """Number of arraysets in the checkout."""
        self._session.check()
        return len(self._source.arrayset_names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Names of the arraysets in the checkout."""
        self._session.check()
        return self._source.arrayset_names()

    def values(self) -> Iterator[ArraysetDataReader]:
        """Iterator over every arrayset object (``ReferenceError`` once the checkout is closed)."""
        return (self._get(name) for name in self.keys())

    def items(self) -> Iterator[tuple[str, ArraysetDataReader]]:
        """Iterator over ``(name, arrayset)`` pairs (``ReferenceError`` once the checkout is closed)."""
        return ((name, self._get(name)) for name in self.keys())

    @property
    def contains_remote_references(self) -> dict[str, bool]:
        """For each arrayset, True when some sample bytes are only on a remote."""
        return {name: aset.contains_remote_references for name, aset in self.items()}

    @property
    def remote_sample_keys(self) -> dict[str, list[Key]]:
        """For each arrayset, the keys of samples whose bytes are only on a remote."""
        return {name: aset.remote_reference_sample_keys for name, aset in self.items()}

    # --------------------------------------------------------------- writing
    def _require_write(self, what: str) -> None:
        self._session.check()
        if not self._session.writable:
            raise ReadOnlyCheckoutError(f"{what} needs a write-enabled checkout: repo.checkout(write=True)")


    def init_arrayset(self, name: str, shape: Union[int, tuple[int, ...], None] = None,
                      dtype: Optional[np.dtype] = None, prototype: Optional[np.ndarray] = None,
                      named_samples: bool = True, variable_shape: bool = False, *,
                      backend: Optional[str] = None) -> ArraysetDataWriter:
        """Create an arrayset and return its writer.

        Parameters
        ----------
        name : str
            ascii letters, digits, ``-``, ``.``, ``_``.
        shape, dtype :
            Sample shape (max shape when ``variable_shape``) and dtype; or give ``prototype``.
        prototype : np.ndarray
            An example sample whose shape and dtype are used.
        named_samples : bool
            False to let hangar generate sample names.
        variable_shape : bool
            Samples may be smaller than ``shape`` in any dimension (same rank).
        backend : str
            ``auto`` (compress where it pays, default), ``raw``, ``lz4`` or ``zstd``; Hangar
            0.3's codes are accepted as aliases: ``'00'`` = ``lz4``, ``'01'`` = ``zstd``,
            ``'10'`` = ``raw`` (``aset.backend`` reports the code given).

        Raises
        ------
        ValueError
            Bad name, missing shape/dtype, non-contiguous prototype, rank > 31, zero-sized
            dimension, object dtype or unknown backend.
        LookupError
            If an arrayset with that name exists.
        """
        self._require_write("init_arrayset")
        self._session.sync()
        schema = _schema_from_args(name, shape, dtype, prototype, named_samples, variable_shape, backend)
        if schema.name in self._source.arrayset_names():
            raise ArraysetExistsError(f"arrayset {schema.name!r} already exists")
        self._detach(schema.name)
        table = self._source.init_arrayset(schema)
        aset = ArraysetDataWriter(self._session, schema, table)
        self._cache[schema.name] = aset
        return aset

    def remove_aset(self, aset_name: str) -> str:
        """Remove an arrayset and its samples from the staging area; return its name.

        Earlier commits keep the arrayset and its data.

        Raises
        ------
        KeyError
            If no arrayset with that name exists.
        PermissionError
            In a read-only checkout.
        """
        self._require_write("remove_aset")
        self._session.sync()
        if aset_name not in self._source.arrayset_names():
            raise ArraysetNotFoundError(f"no arrayset named {aset_name!r}; arraysets: {self.keys()}")
        self._source.remove_arrayset(aset_name)
        self._detach(aset_name)
        return aset_name

    def __delitem__(self, key: str) -> str:
        """Remove the arrayset ``key`` (dict-style :meth:`remove_aset`); return its name.

        Raises
        ------
        PermissionError
            In a read-only checkout.
        KeyError
            If no arrayset with that name exists.
        """
        self._require_write("deleting an arrayset")
        self._session.sync()
        return self.remove_aset(key)

    def multi_add(self, mapping: Mapping[str, np.ndarray]) -> str:
        """Add one sample to each of several unnamed arraysets under one generated key.

        Raises
        ------
        KeyError
            If an arrayset named in ``mapping`` does not exist.
        ValueError
            If an arrayset has named samples or a sample is invalid; nothing is written.
        """
        self._require_write("multi_add")
        asets = [(self._get(name), data) for name, data in mapping.items()]
        for aset, _ in asets:
            if aset.named_samples:
                raise InvalidArgumentError(f"multi_add needs arraysets without named samples; {aset.name!r} has them")
        key = uuid.uuid4().hex
        # writer arraysets (multi_add checks)
        prepared = [(aset, aset._validate(data, key)) for aset, data in asets]  # type: ignore[attr-defined]
        for aset, args in prepared:
            aset._stage(*args)  # type: ignore[attr-defined]  # writer arraysets (multi_add checks)
        return key


# ------------------------------------------------ for the checkout and the loaders
def detach_arrayset(arraysets: Arraysets, name: str) -> None:
    """Forget the accessor of arrayset ``name`` (removed or re-created): handles held on it stop working."""
    arraysets._detach(name)


def set_across(asets: list[ArraysetDataWriter], key: Key, values: Iterable[object]) -> None:
    """``co[['a', 'b'], key] = [arr_a, arr_b]``: validate every value first, then stage each."""
    prepared = [(aset, aset._validate(v, key)) for aset, v in zip(asets, values)]
    for aset, args in prepared:
        aset._stage(*args)


def set_samples(aset: ArraysetDataWriter, keys: list, values: object) -> None:
    """``co[aset, [k1, k2, ...]] = values``: validate everything, then store in bulk.

    ``values`` is a list or tuple of arrays, or one array stacked over the keys (first axis).
    """
    # plain ints >= 0 (``list(range(n))``, the usual keys): checked and encoded in one C pass, the
    # None test, validation and encoding below skipped (~3 ms of a 60,000-sample add; no key
    # error is possible then, so the checks' order is kept)
    encoded = int_key_names(keys) if isinstance(values, np.ndarray) else None
    if encoded is None and any(map(is_, keys, repeat(None))):  # in C: ~5 ms less than a generator at 60,000
        raise InvalidSelectionError("a sample key is needed for dict-style setting")
    if isinstance(values, np.ndarray):
        stack = aset._check_stack(values, len(keys))
        if encoded is None:
            encoded = encode_keys(aset._check_names(keys))
        aset._session.sync()  # samples held back by a ``with`` block were added earlier: store them first
        aset._write_stack_named(encoded, stack)
        return
    if not isinstance(values, (list, tuple)):
        raise IndexFormError(f"several keys need a list or tuple of arrays (or one stacked array) as the value, "
                             f"not {type(values).__name__}")
    if len(values) != len(keys):
        raise InvalidSelectionError(f"{len(keys)} targets but {len(values)} values")
    arrays = [aset._check_data(v) for v in values]
    names = [aset._check_name(k) for k in keys]
    aset._session.sync()
    aset._write_many(names, arrays)


class LoaderView:
    """What the data loaders read of an arrayset reader beyond its public API: its records and store.

    Parameters
    ----------
    aset : ArraysetDataReader
        The arrayset handle (the view does not check that it is still open; the loader did).
    """

    def __init__(self, aset: ArraysetDataReader) -> None:
        self._aset = aset

    @property
    def store(self) -> TensorStore:
        """The checkout's tensor store."""
        return self._aset._session.store

    @property
    def repo_path(self) -> str:
        """Directory of the repository the arrayset belongs to."""
        return self._aset._session.repo_path

    @property
    def commit(self) -> Optional[str]:
        """Commit of a reader checkout (None for the writer)."""
        return self._aset._session.commit

    def pointers(self) -> Iterator[tuple[str, SamplePointer]]:
        """``(encoded name, pointer)`` of every sample (held-back adds stored first)."""
        self._aset._session.sync()
        return self._aset._table.pointers()

    def pointer(self, name: str) -> Optional[SamplePointer]:
        """Pointer of the sample whose encoded name is ``name``, or None (held-back adds stored first)."""
        self._aset._session.sync()
        return self._aset._table.pointer(name)

    def locations(self, reads: int = 1):  # noqa: ANN201 - LocationTable or None
        """The arrayset's location table, built when ``reads`` samples make it pay; None without one."""
        return self._aset._locations(reads)

    def fetch_lazily(self, table, rows: np.ndarray):  # noqa: ANN001, ANN201 - LocationTable
        """``table`` after the store's lazy source brought the bytes of ``rows`` (one bulk read)."""
        return self._aset._fetch_lazily(table, rows)

    def drop_locations(self) -> None:
        """Forget the location table (a gc removed one of its packs)."""
        self._aset._drop_locations()

    def located_now(self, table):  # noqa: ANN001, ANN201 - LocationTable
        """``table`` with the samples fetched since it was built located."""
        return self._aset._located_now(table)
