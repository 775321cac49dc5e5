"""A lazy ``dask.array`` over a fixed-shape arrayset at one commit, for a local or distributed scheduler.

Needs ``dask[array]`` (``pip install hangar[dask]``; ``dask[distributed]`` for a cluster).

The task graph carries no sample bytes: each chunk's task holds the *store address* (today the
repository's path; :func:`open_storage` is the one place that turns an address into pack
storage, so another kind of store plugs in there), the commit and arrayset (for naming and
error messages), dtype and shape, and the chunk's sample locations (pack id, offset, stored
length, codec, checksum: plain ints and strings, about 60 bytes a sample). A worker process
opens the store itself, once, and reads its chunk's bytes straight from the packs, checking
each sample's checksum as every read does.

Samples of a lazy clone whose bytes are not stored locally but in its data remote's bucket
are not downloaded when the array is built: their tasks hold the bucket's address instead
(:class:`BucketAddress`: ``s3://bucket/prefix`` and the endpoint URL, never a credential) and
their places in the bucket's packs (:class:`BucketLocations`, read from the pack indexes; with
the sample digest, about 130 bytes a sample). The worker opens the bucket itself
(:func:`open_bucket`, once per process), range-reads its samples, checks each one's stored-bytes
checksum and blake3 digest and decodes it. Workers take credentials from their own AWS
environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_REGION``, or the AWS config
files with boto3 installed), as ``fetch_data`` does.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from hangar.errors import (
    ArgumentTypeError,
    CorruptDataError,
    DataRemoteUnreachableError,
    InvalidArgumentError,
    LoaderRemoteDataError,
    MissingDependencyError,
    ObjectStoreError,
    RepositoryNotFoundError,
)

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
from hangar.remote.objectdata import LazyReads, check_index_claims, plan_ranges
from hangar.store.digest import byte_view
from hangar.store.index import Location
from hangar.store.objectstore import ObjectPackStorage, check_not_forked
from hangar.store.packs import LocalPackStorage
from hangar.store.tensorstore import verify_received

__all__ = ["dask_array", "open_storage", "open_bucket", "read_chunk", "read_bucket_chunk", "ChunkLocations",
           "BucketAddress", "BucketLocations"]

#: default chunk size (bytes) along the sample axis
_CHUNK_BYTES = 64 << 20

_opened: dict[str, LocalPackStorage] = {}
_buckets: dict[tuple[str, Optional[str]], ObjectPackStorage] = {}
_opened_lock = threading.Lock()


def _forget_buckets() -> None:
    # a forked child must not reuse the parent's object-store clients: their connection pools
    # and runtime threads belong to the parent (the transfer loop resets itself the same way)
    _buckets.clear()


os.register_at_fork(after_in_child=_forget_buckets)


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
    """Store addresses this process has opened (what a worker read from; for tests and monitoring):
    repository paths and the ``s3://`` URLs of buckets."""
    with _opened_lock:
        return sorted(_opened) + sorted({url for url, _ in _buckets})


class BucketAddress(NamedTuple):
    """Where a data remote's packs lie: what a task needs to open the bucket (no credentials)."""

    url: str
    endpoint_url: Optional[str]


def open_bucket(bucket: BucketAddress) -> ObjectPackStorage:
    """The packs in ``bucket``, opened once per process (workers call this).

    Credentials come from this process's AWS environment or config files, never from the graph.
    Worker processes must be spawned (dask.distributed's default) or forked before this
    process's first object-store request: obstore does not survive ``fork``
    (:func:`hangar.store.objectstore.check_not_forked` raises ``ObjectStoreError`` there).
    """
    key = (bucket.url, bucket.endpoint_url)
    with _opened_lock:
        storage = _buckets.get(key)
        if storage is None:
            storage = _buckets[key] = ObjectPackStorage(bucket.url, bucket.endpoint_url)
        return storage


@dataclass(frozen=True)
class ChunkLocations:
    """Where one chunk's samples lie: plain lists (a task holds no array and no sample bytes).

    Not a tuple: dask walks every list and tuple of a task's arguments item by item (and wraps
    named tuples into tasks of their own), which cost ~2 s of scheduler time for the five lists
    of one 60,000-sample chunk; an object of another class is passed as it is.
    """

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


#: the fix for a damaged pack in a bucket: its keys are content-addressed, so a push skips it while it is listed
_REPAIR = ("delete that pack's objects (packs/<id>/) from the bucket, then push again from a repository that "
           "holds its samples")


class BucketLocations(NamedTuple):
    """Where the samples of a chunk that lie in the bucket are: plain lists of ints and strings.

    ``rows`` are their positions in the chunk; ``digests`` are hex (each sample is checked
    against its digest after it is decoded).
    """

    rows: list[int]
    packs: tuple[str, ...]
    pack_idx: list[int]
    offsets: list[int]
    lengths: list[int]
    rawlens: list[int]
    codecs: list[int]
    checks: list[int]
    digests: list[str]


def read_bucket_chunk(address: str, bucket: BucketAddress, commit: str, arrayset: str, dtype: str,
                      shape: tuple[int, ...], n_rows: int, local: Optional[tuple[list[int], ChunkLocations]],
                      remote: BucketLocations) -> np.ndarray:
    """The ``n_rows`` samples of one chunk stacked on axis 0: those in ``remote`` range-read from
    ``bucket`` where the task runs, the others (``local``: rows and locations) from the store at
    ``address``.

    Every sample read from the bucket is checked twice before it is used: its stored bytes
    against the pack index's checksum, then the decoded bytes (with dtype and shape) against
    its blake3 digest (``CorruptDataError`` naming the sample, the bucket and the commit).
    """
    out = np.empty((n_rows, *shape), dtype=np.dtype(dtype))
    if local is not None:
        rows, locs = local
        out[rows] = read_chunk(address, commit, arrayset, dtype, shape, locs)
    where = [Location(remote.packs[p], o, n, r, c, k) for p, o, n, r, c, k in zip(
        remote.pack_idx, remote.offsets, remote.lengths, remote.rawlens, remote.codecs, remote.checks)]
    # the requests are sized by these records: checked against dtype x shape before any is made
    check_index_claims([(bytes.fromhex(d), dtype, shape) for d in remote.digests], where, f"bucket {bucket.url}")
    check_not_forked()  # a fork of a process that used the object store: an error, not a hang
    storage = open_bucket(bucket)
    ranges = plan_ranges(where)
    blobs = storage.iter_ranges((p, o, n) for p, o, n, _ in ranges)
    try:
        for (_, off, _, members), blob in zip(ranges, blobs):
            view = memoryview(blob)
            got = [where[m] for m in members]
            try:  # the verification every received sample passes (stored checksum, bounded decode, digest)
                verify_received([bytes.fromhex(remote.digests[m]) for m in members], [loc.codec for loc in got],
                                [loc.rawlen for loc in got], [loc.length for loc in got],
                                [view[loc.offset - off:loc.offset - off + loc.length] for loc in got], dtype, shape,
                                checks=[loc.check for loc in got],
                                into=[byte_view(out[remote.rows[m]]) for m in members])
            except CorruptDataError as exc:
                packs = sorted({loc.pack for loc in got})
                raise CorruptDataError(
                    f"arrayset {arrayset!r} at {commit[:10]}, read from {bucket.url} (pack {', '.join(packs)}): {exc}; "
                    f"the bucket's object was damaged or changed outside hangar; {_REPAIR}") from None
    except ObjectStoreError as exc:
        raise DataRemoteUnreachableError(
            f"reading {len(where)} samples of arrayset {arrayset!r} at {commit[:10]} from {storage.describe()} "
            f"failed: {exc}; a dask worker reads the bucket itself, with its own AWS credentials") from exc
    finally:
        blobs.close()  # type: ignore[attr-defined]  # a generator: stops requests still in flight
    return out


def _chunk_locations(source: SampleSource, start: int, stop: int,
                     rows: Optional[np.ndarray] = None) -> ChunkLocations:
    sel = np.arange(start, stop) if rows is None else rows + start
    idx = source.pack_idx[sel]
    used = sorted(set(idx.tolist()))
    renumber = {j: k for k, j in enumerate(used)}
    return ChunkLocations(tuple(source.packs[j] for j in used), [renumber[j] for j in idx.tolist()],
                          source.offsets[sel].tolist(), source.lengths[sel].tolist(),
                          source.codecs[sel].tolist(), source.checks[sel].tolist())


def _bucket_locations(rows: list[int], locs: list[Location], digests: list[bytes]) -> BucketLocations:
    used = sorted({loc.pack for loc in locs})
    renumber = {p: k for k, p in enumerate(used)}
    return BucketLocations(rows, tuple(used), [renumber[loc.pack] for loc in locs], [loc.offset for loc in locs],
                           [loc.length for loc in locs], [loc.rawlen for loc in locs], [loc.codec for loc in locs],
                           [loc.check for loc in locs], [d.hex() for d in digests])


def dask_array(aset: LoaderSource, keys: Optional[Sequence[Key]] = None,
               index_range: Optional[slice] = None, chunk_rows: Optional[int] = None) -> "da.Array":
    """Return a lazy ``dask.array.Array`` of shape ``(n_samples, *aset.shape)``.

    Row ``i`` is the sample named ``keys[i]`` (by default the arrayset's sample names in
    ``aset.keys()`` order). Nothing is read until the array is computed. Each chunk is one
    task that reads its samples straight from the pack files (:func:`read_chunk`); the graph
    holds only the repository's path, the commit and the chunks' sample locations, so it runs
    on a ``dask.distributed`` cluster whose workers see the repository's directory, and no
    sample bytes pass through the scheduler.

    In a lazy clone, samples whose bytes are only in the data remote's bucket are not
    downloaded: their tasks hold the bucket's address (URL and endpoint, no credentials) and
    the samples' places in its packs, and each worker range-reads them from the bucket itself
    (:func:`read_bucket_chunk`), with the AWS credentials of its own environment. Nothing is
    stored locally; ``repo.remote.fetch_data`` first makes the reads local.

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
        positive int; the choice selects no sample; or samples are remote references of a
        repository without a data remote (``LoaderRemoteDataError``).
    KeyError
        A name in ``keys`` is missing.
    RemoteDataError
        A sample is neither stored here nor in the data remote's bucket
        (``DataRemoteUnreachableError`` when the bucket's indexes cannot be read). At compute:
        ``CorruptDataError`` when bytes read from the bucket fail their checksum or digest.

    Examples
    --------
    >>> co = repo.checkout()
    >>> images = dask_array(co.arraysets['images'])
    >>> images.mean(axis=(1, 2, 3)).compute()   # one mean per sample
    """
    if isinstance(aset, (list, tuple)):
        raise ArgumentTypeError("dask_array takes one arrayset; call it once per arrayset")
    grouped = GroupedSamples(aset, keys, index_range, fetch=False)
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
    # samples whose bytes are in the data remote's bucket only: located there (indexes, no bytes)
    in_bucket = np.zeros(n, dtype=bool)
    bucket: Optional[BucketAddress] = None
    where: dict[int, tuple[Location, bytes]] = {}
    left = grouped.not_local[0]
    if left is not None:
        lazy = view.store.lazy_source
        if not isinstance(lazy, LazyReads):
            raise LoaderRemoteDataError(f"arrayset {aset.name!r} has samples not stored here and no data remote "
                                        "to read them from; fetch_data them first")
        positions, digests = left
        url, endpoint, placed = lazy.bucket_locations(digests)
        bucket = BucketAddress(url, endpoint)
        in_bucket[positions] = True
        where = {int(p): (loc, d) for p, loc, d in zip(positions.tolist(), placed, digests)}
    layer: dict[Any, Any] = {}
    for k, start in enumerate(range(0, n, chunk_rows)):
        stop = min(n, start + chunk_rows)
        remote_rows = np.flatnonzero(in_bucket[start:stop])
        if not len(remote_rows):
            locs = _chunk_locations(source, start, stop)
            layer[(name, k, *zeros)] = (read_chunk, address, commit, aset.name, dtype, shape, locs)
            continue
        local_rows = np.flatnonzero(~in_bucket[start:stop])
        local = ((local_rows.tolist(), _chunk_locations(source, start, stop, local_rows))
                 if len(local_rows) else None)
        here = [where[start + r] for r in remote_rows.tolist()]
        remote = _bucket_locations(remote_rows.tolist(), [loc for loc, _ in here], [d for _, d in here])
        layer[(name, k, *zeros)] = (read_bucket_chunk, address, bucket, commit, aset.name, dtype, shape,
                                    stop - start, local, remote)
    rows = tuple(min(chunk_rows, n - s) for s in range(0, n, chunk_rows))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks=(rows, *((d,) for d in shape)), dtype=source.dtype,
                    meta=np.empty((0,) * (len(shape) + 1), dtype=source.dtype))
