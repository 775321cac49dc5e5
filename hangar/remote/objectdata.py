"""Data remotes in an object store: history on any git URL, sample bytes in an S3 bucket prefix.

A remote added with ``data='s3://bucket/prefix'`` keeps its git URL as ``remote.<name>.url`` and
the data location as ``remote.<name>.hangardata`` in ``.hangar/config``. The location also
travels with the history, so a clone of the git URL alone finds the data: ``push`` writes the
ref ``refs/hangar/data`` (the same name in every repository: one data location per history),
a commit whose tree holds one blob ``data.json`` = ``{"data": url, "endpoint_url": hint}``.
The commit is deterministic (fixed author and time) so every pusher of a location writes the
same commit and never races another into a non-fast-forward. A ref outside ``refs/heads`` is
moved by plain ``git push``/``git fetch`` with an explicit refspec and survives every git host,
and, unlike a file in the branches, it does not touch any commit of the user's history. No
credential is ever written there or in the config: they come from the AWS environment.

Order of a push: missing samples are packed and uploaded (each pack's data before its index),
then the data ref and the branch move in one git push: data before records before refs.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator, Optional, Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pygit2

from hangar.errors import (
    CorruptDataError,
    DataRemoteAddressError,
    DataRemoteUnreachableError,
    ObjectStoreError,
    PushAuthenticationError,
    RemoteDataError,
    ServerUnreachableError,
)
from hangar.plumbing import rowhash
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pids import remove_stale_temps
from hangar.plumbing.regular import own_directory, read_cache
from hangar.records.pointer import SamplePointer
from hangar.store import TensorStore
from hangar.store.codecs import max_stored_length
from hangar.store.index import DigestIndex, Location
from hangar.store.objectstore import REMOTE_PACK_BYTES, REMOTE_PACK_RECORDS, ObjectPackStorage, parse_data_url
from hangar.store.packs import INDEX_DTYPE, LocalPackStorage, encode_index, parse_index
from hangar.store.tensorstore import VerifiedRun, damaged_sample, verify_received

DATA_REF = "refs/hangar/data"
_DATA_FILE = "data.json"
_SIG = ("hangar", "hangar@localhost")
#: samples fetched per durable batch (each batch is flushed as one local pack)
FETCH_BATCH_BYTES = 256 << 20
#: ranges of one pack closer than this are read as one request
_GAP = 1 << 20
#: and one request reads at most this much. Reading 301 MB of packs from SeaweedFS here
#: (16 requests in flight, ranges as views, not copies):
#: 2 MiB 0.88-0.98 s, 8 MiB 0.69-0.82 s, 16 MiB (8 in flight) 0.67-0.99 s; with a copy of each
#: range 2 MiB had been the best (fetch_data of 1,000 x 150 KB: 1.0 s vs 1.9-2.0 s with 16 MiB)
_SPAN = 8 << 20


# ----------------------------------------------------------------- config
def data_url(git: GitRepo, remote: str) -> Optional[str]:
    """The data location of ``remote`` (``s3://...``), ``None`` for a hangar-server remote."""
    return git.config_get(f"remote.{remote}.hangardata")


def endpoint_url(git: GitRepo, remote: str) -> Optional[str]:
    return git.config_get(f"remote.{remote}.hangarendpoint")


def lazy_reads(git: GitRepo, remote: str) -> bool:
    return (git.config_get(f"remote.{remote}.hangarlazy", "true") or "true").lower() not in ("false", "0", "no")


def record_remote(git: GitRepo, remote: str, url: str, endpoint: Optional[str], lazy: bool) -> None:
    """Write the data settings of ``remote`` (the git remote exists already) to the local config."""
    parse_data_url(url)
    git.config_set(f"remote.{remote}.hangardata", url)
    if endpoint:
        git.config_set(f"remote.{remote}.hangarendpoint", endpoint)
    git.config_set(f"remote.{remote}.hangarlazy", "true" if lazy else "false")


def open_storage(git: GitRepo, remote: str) -> ObjectPackStorage:
    """The bucket storage of ``remote`` (endpoint: the recorded one, else ``AWS_ENDPOINT_URL``)."""
    url = data_url(git, remote)
    if url is None:
        raise DataRemoteAddressError(f"remote {remote!r} has no data location")
    return ObjectPackStorage(url, endpoint_url(git, remote))


def lazy_remote(git: GitRepo) -> Optional[str]:
    """The data remote lazy reads come from: ``origin`` when it is one, else the first by name."""
    names = sorted(git.repo.remotes.names(), key=lambda n: (n != "origin", n))
    for name in names:
        if name is not None and data_url(git, name) is not None and lazy_reads(git, name):
            return name
    return None


# ------------------------------------------------------ location in history
def location_commit(git: GitRepo, url: str, endpoint: Optional[str]) -> str:
    """The (deterministic) commit recording the data location; written to the object database."""
    repo = git.repo
    body = json.dumps({"data": url, "endpoint_url": endpoint}, sort_keys=True).encode() + b"\n"
    tb = repo.TreeBuilder()
    tb.insert(_DATA_FILE, repo.create_blob(body), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature(*_SIG, 0, 0)
    oid = repo.create_commit(None, sig, sig, "hangar data location\n", tb.write(), [])
    return str(oid)


def read_location(git: GitRepo, commit: str) -> tuple[str, Optional[str]]:
    """``(url, endpoint hint)`` recorded in a data-location commit (checked)."""
    repo = git.repo
    try:
        blob = repo[commit].tree[_DATA_FILE]
        info = json.loads(blob.data)  # type: ignore[union-attr]  # a tree: AttributeError, caught below
        url, endpoint = info["data"], info.get("endpoint_url")
        parse_data_url(url)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptDataError(f"the data location ref {DATA_REF} ({commit[:10]}) does not hold a valid "
                               f"{_DATA_FILE}: {exc}") from None
    return url, endpoint if isinstance(endpoint, str) and endpoint else None


#: a data-location blob is a few hundred bytes; anything far larger is not one (and is not parsed)
_LOCATION_MAX_BYTES = 64 << 10
#: largest kept copy of a bucket pack index read back (65 bytes a sample: a 64 MiB pack of
#: 1 KiB samples has a ~4 MiB index); a larger file is ignored and the index fetched again
INDEX_CACHE_BYTES = 1 << 30


#: AWS's own S3 endpoints (``https://s3.amazonaws.com``, ``https://s3.eu-west-1.amazonaws.com``,
#: ``https://s3-eu-west-1.amazonaws.com``, China's ``.amazonaws.com.cn``): where the AWS default
#: would send the same requests, so a recorded one is followed without asking
_AWS_ENDPOINT = re.compile(r"https://s3([.-][a-z0-9-]+)?\.amazonaws\.com(\.cn)?/?")


def endpoint_to_record(remote: str, url: str, recorded: Optional[str], given: Optional[str]) -> Optional[str]:
    """The S3 endpoint a clone of ``remote`` (data at ``url``) keeps in its config: the one place
    that decides whether the endpoint recorded in the remote's history is followed.

    The history comes from whoever controls the git URL, and every request hangar sends to the
    endpoint is signed with the user's credentials (the access key id travels with it), so a
    recorded endpoint is used only where the user would send those requests anyway:

    1. ``given`` (``endpoint_url=`` / ``--endpoint-url``): the user's choice, always kept;
    2. else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` set: nothing is kept (the
       environment is read on every use, as for any AWS tool);
    3. else no recorded endpoint, or one of AWS's own S3 endpoints: AWS (nothing kept, or the
       recorded AWS endpoint);
    4. else: refused, naming the recorded endpoint and the two ways to accept it.

    Raises
    ------
    DataRemoteAddressError
        (a ``ValueError``) In case 4.
    """
    if given:
        return given
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    if recorded is None or _AWS_ENDPOINT.fullmatch(recorded):
        return recorded
    raise DataRemoteAddressError(
        f"the history of remote {remote!r} records its data at {url} on the S3 endpoint {recorded}, which is not "
        "AWS and not an endpoint you configured; hangar sends signed requests (with your access key id) only to "
        f"an endpoint you chose. If you trust it, clone again with endpoint_url={recorded!r} (command line: "
        f"--endpoint-url {recorded}) or with AWS_ENDPOINT_URL={recorded} set")


def location_refusal(git: GitRepo, commit: str) -> Optional[str]:
    """Why ``commit`` is not a data-location commit as :func:`location_commit` writes one (the check
    a server runs before it lets ``refs/hangar/data`` point there); ``None`` when it is one.

    The rules: a commit with no parents whose tree holds exactly one blob, ``data.json``, of at
    most 64 KiB that :func:`read_location` accepts (an ``s3://`` URL, an optional endpoint string).
    """
    repo = git.repo
    try:
        obj = repo[commit]
    except (KeyError, ValueError):
        return f"{DATA_REF}: {commit[:12]} is not an object here"
    if not isinstance(obj, pygit2.Commit):
        return f"{DATA_REF}: {commit[:12]} is a {type(obj).__name__.lower()}, not a data-location commit"
    if obj.parent_ids:
        return f"{DATA_REF}: {commit[:12]} has parents; a data-location commit has none (hangar push writes it)"
    entries = [(e.name, e.type_str) for e in obj.tree]
    if entries != [(_DATA_FILE, "blob")]:
        return (f"{DATA_REF}: the tree of {commit[:12]} holds {[n for n, _ in entries]}; a data-location commit "
                f"holds exactly one file, {_DATA_FILE}")
    if repo[obj.tree[_DATA_FILE].id].size > _LOCATION_MAX_BYTES:
        return f"{DATA_REF}: {_DATA_FILE} of {commit[:12]} is over {_LOCATION_MAX_BYTES} bytes"
    try:
        read_location(git, commit)
    except CorruptDataError as exc:
        return str(exc)
    return None


def remote_refs(git: GitRepo, remote: str) -> dict[str, str]:
    """Every ref the remote's git repository advertises (name -> id)."""
    try:
        heads = git.repo.remotes[remote].list_heads(callbacks=pygit2.RemoteCallbacks())
    except pygit2.GitError as exc:
        raise ServerUnreachableError(f"listing the refs of remote {remote!r} ({git.repo.remotes[remote].url}) failed: "
                              f"{exc}") from exc
    return {h.name: str(h.oid) for h in heads if h.name}


def _local_repository(url: str) -> Optional[str]:
    """The absolute directory of a git URL that names a repository on this machine (a path or a
    ``file://`` URL), else ``None``."""
    if url.startswith("file://"):
        path = unquote(urlparse(url).path)
    elif "://" in url:
        return None
    else:
        path = url
    return os.path.abspath(path) if path and os.path.isdir(path) else None


def _fetch_local(git: GitRepo, remote: str, refspecs: list[str]) -> bool:
    """Fetch ``refspecs`` from a remote on this machine with the ``git`` binary, objects and refs
    fsynced (``core.fsync=committed``, as libgit2 does here); False when the remote is not local,
    there is no ``git`` or it failed (the caller then fetches through libgit2, which reports errors).

    libgit2's local transport builds the pack in this process, deltas searched: a clone of the
    history of 2,000 samples (4,057 objects) took 0.13-0.3 s and 0.16 s of CPU here; ``git fetch``
    (upload-pack reuses the source's packs) 0.04-0.06 s with fsync. That was a quarter of
    clone + fetch_data of 301 MB against a bucket (scripts/bench_s3.py)."""
    path = _local_repository(git.repo.remotes[remote].url or "")
    if path is None:
        return False
    return git.fetch_with_git_binary(path, refspecs, "file", ["--upload-pack=git-upload-pack"])


def fetch_location(git: GitRepo, remote: str, branches: Sequence[str] = ()) -> Optional[tuple[str, Optional[str]]]:
    """Fetch ``refs/hangar/data`` of the remote (into ``refs/hangar/remotes/<remote>/data``) and
    return the location it records; ``None`` when the remote's history records none.

    ``branches`` the remote has are fetched in the same fetch (into ``refs/remotes/<remote>/``):
    a clone's one listing of the refs and one ``git fetch`` instead of two of each (a ``git``
    process and a listing were ~0.05-0.1 s of a 1.2-1.4 s clone + fetch_data of 301 MB here)."""
    refs = remote_refs(git, remote)
    if DATA_REF not in refs:
        return None
    local = f"refs/hangar/remotes/{remote}/data"
    specs = [f"+{DATA_REF}:{local}"] + [f"+refs/heads/{b}:refs/remotes/{remote}/{b}" for b in branches
                                        if f"refs/heads/{b}" in refs]
    if not _fetch_local(git, remote, specs):
        try:
            git.repo.remotes[remote].fetch(specs, callbacks=pygit2.RemoteCallbacks(),
                                           prune=pygit2.enums.FetchPrune.NO_PRUNE)
        except pygit2.GitError as exc:
            raise ServerUnreachableError(f"fetching {DATA_REF} of remote {remote!r} failed: {exc}") from exc
    return read_location(git, str(git.repo.references[local].target))


def fetch_branches(git: GitRepo, remote: str, branches: list[str]) -> None:
    """Fetch ``branches`` of the remote's git repository into ``refs/remotes/<remote>/``."""
    specs = [f"+refs/heads/{b}:refs/remotes/{remote}/{b}" for b in branches]
    if _fetch_local(git, remote, specs):
        return
    try:
        git.repo.remotes[remote].fetch(specs, callbacks=pygit2.RemoteCallbacks(),
                                       prune=pygit2.enums.FetchPrune.NO_PRUNE)
    except pygit2.GitError as exc:
        raise ServerUnreachableError(f"fetch from remote {remote!r} ({git.repo.remotes[remote].url}) failed: "
                                     f"{exc}") from exc


def push_refs(git: GitRepo, remote: str, refspecs: list[str], username: str = "",
              password: str = "") -> dict[str, str]:
    """Push ``refspecs`` in one git push; return ``{ref: reason}`` of those the remote refused.

    ``username``/``password`` answer a git host's HTTP authentication (once: wrong ones raise
    ``PushAuthenticationError``)."""
    rejected: dict[str, str] = {}
    asked: list[str] = []

    class Callbacks(pygit2.RemoteCallbacks):
        def push_update_reference(self, refname: str, message: Optional[str]) -> None:
            if message:
                rejected[refname] = message

        def credentials(self, url: str, username_from_url: Optional[str], allowed_types: int) -> pygit2.UserPass:
            asked.append(url)
            if len(asked) > 1 or not username or \
                    not allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT:
                raise PushAuthenticationError(f"remote {remote!r} ({url}) asks for credentials to push"
                                              + (" and refused the ones given" if username else
                                                 "; pass username= and password= to push"))
            return pygit2.UserPass(username, password)

    try:
        git.repo.remotes[remote].push(refspecs, callbacks=Callbacks())
    except pygit2.GitError as exc:
        msg = str(exc)
        if "fast-forward" in msg or "fastforward" in msg:
            return {refspecs[-1].rpartition(":")[2]: msg}
        raise ServerUnreachableError(f"push to remote {remote!r} ({git.repo.remotes[remote].url}) failed: "
                                     f"{msg}") from exc
    return rejected


# ------------------------------------------------------------ bucket index
class BucketIndex:
    """digest -> :class:`Location` of every sample in a bucket prefix, from the packs' indexes.

    Indexes are content-addressed (the pack id is their blake3), hence immutable: each is read
    once and kept under ``cache_dir`` (re-hashed against its id whenever loaded).
    """

    def __init__(self, storage: ObjectPackStorage, cache_dir: Optional[str], root: Optional[str] = None) -> None:
        self.storage = storage
        self.cache_dir = cache_dir
        #: the directory (``.hangar``) the cache must stay in: a link below it is replaced, never followed
        self.root = root
        self.index = DigestIndex()
        self.packs: set[str] = set()

    def refresh(self) -> None:
        """Pick up packs pushed since the last refresh (one LIST, then only the new indexes)."""
        try:
            listed = self.storage.list_packs()
        except ObjectStoreError as exc:
            raise DataRemoteUnreachableError(f"cannot list {self.storage.describe()}: {exc}") from exc
        new = [p for p in listed if p not in self.packs]
        if not new:
            return
        raws: dict[str, bytes] = {}
        fetch = []
        for pack in new:
            raw = self._cached(pack)
            if raw is None:
                fetch.append(pack)
            else:
                raws[pack] = raw
        if fetch:
            got = self.storage.read_indexes(fetch)
            raws.update(got)
            for pack, raw in got.items():
                self._save(pack, raw)
        for pack in new:
            recs = parse_index(raws[pack], f"{self.storage.url}/packs/{pack}/index")
            self.index.add_pack(pack, recs)
            self.packs.add(pack)

    def add_indexes(self, raws: Iterable[bytes]) -> None:
        """Add pack indexes this process wrote to the bucket itself (named by their blake3, cached)."""
        from hangar.store.objectstore import remote_pack_id

        for raw in raws:
            pack = remote_pack_id(raw)
            if pack not in self.packs:
                self._save(pack, raw)
                self.index.add_pack(pack, parse_index(raw, f"{self.storage.url}/packs/{pack}/index"))
                self.packs.add(pack)

    def _path(self, pack: str) -> Optional[str]:
        return os.path.join(self.cache_dir, pack + ".index") if self.cache_dir else None

    def _cached(self, pack: str) -> Optional[bytes]:
        from hangar.store.objectstore import remote_pack_id

        path = self._path(pack)
        if path is None:
            return None
        # a FIFO, link or oversized file planted here is ignored like a damaged copy (read again)
        raw = read_cache(path, self.cache_dir or "", INDEX_CACHE_BYTES)
        return raw if raw is not None and remote_pack_id(raw) == pack else None

    def _save(self, pack: str, raw: bytes) -> None:
        path = self._path(pack)
        if path is None:
            return
        try:  # a cache: failing to write it costs one more GET next time
            # .hangar is the root: a link at cache/, bucket-indexes/ or this bucket's directory is replaced
            own_directory(os.path.dirname(path), self.root or os.path.dirname(path))
            tmp = f"{path}.{os.getpid()}.tmp"
            # created afresh, never through what lies there: a crafted repository's link at this
            # name made the write land in the file it pointed to (tests/test_bucket_transfers.py)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.replace(tmp, path)
        except OSError:
            pass

    def locations(self, digests: list[bytes]) -> list[Optional[Location]]:
        return self.index.get_many(digests)


def bucket_index(storage: ObjectPackStorage, hangar_dir: str) -> BucketIndex:
    key = hashlib.sha256(f"{storage.url}|{storage.endpoint_url}".encode()).hexdigest()[:24]
    index = BucketIndex(storage, os.path.join(hangar_dir, "cache", "bucket-indexes", key), hangar_dir)
    try:  # cache copies a killed process was writing, in a directory made a real one first: a
        # crafted repository's link there had the link target's old *.tmp files removed
        remove_stale_temps(own_directory(index.cache_dir or "", hangar_dir))
    except OSError:
        pass
    index.refresh()
    return index


# -------------------------------------------------------------------- push
def _pack_stream(store: TensorStore, digests: list[bytes]) -> Iterator[tuple[memoryview, bytes]]:
    """``(data, index)`` of packs holding the stored form of ``digests``, ~REMOTE_PACK_BYTES each,
    read from the local packs in pack and offset order.

    Samples lying back to back in a local pack are read with one ``preadv`` straight into the
    pack being built, and their stored checksums are compared in one C call without the GIL
    (:func:`~hangar.plumbing.rowhash.check_spans`): a damaged local sample is never uploaded.
    A pread, an xxh3 call, a ``bytearray`` append per sample and a ``bytes`` copy of each pack
    took 0.88 of the 1.06 s spent building 301 MB of packs on the pushing thread here.
    """
    locs: list[Location] = store.locations(digests, durable_only=True)  # type: ignore[assignment]  # all local
    order = sorted(range(len(digests)), key=lambda i: (locs[i].pack, locs[i].offset))
    k = 0
    while k < len(order):
        chunk = [order[k]]
        size = locs[order[k]].length
        k += 1
        while k < len(order) and size < REMOTE_PACK_BYTES and len(chunk) < REMOTE_PACK_RECORDS:
            chunk.append(order[k])
            size += locs[order[k]].length
            k += 1
        yield _build_pack(store, [digests[i] for i in chunk], [locs[i] for i in chunk], size)


def _build_pack(store: TensorStore, digests: list[bytes], locs: list[Location], size: int) -> tuple[memoryview, bytes]:
    """One bucket pack of the samples ``digests`` (stored at ``locs``, in pack and offset order)."""
    out = memoryview(np.empty(size, np.uint8))  # every byte is read into it: no zero fill first
    recs = np.zeros(len(digests), dtype=INDEX_DTYPE)
    recs["digest"] = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
    lengths = np.fromiter((loc.length for loc in locs), np.int64, len(locs))
    offsets = np.cumsum(lengths) - lengths
    recs["offset"], recs["length"] = offsets, lengths
    recs["rawlen"] = np.fromiter((loc.rawlen for loc in locs), np.int64, len(locs))
    recs["codec"] = np.fromiter((loc.codec for loc in locs), np.uint8, len(locs))
    recs["check"] = np.fromiter((loc.check for loc in locs), np.uint64, len(locs))
    a = 0
    while a < len(locs):  # one read per run of samples lying back to back in one local pack
        b, end = a + 1, locs[a].offset + locs[a].length
        while b < len(locs) and locs[b].pack == locs[a].pack and locs[b].offset == end:
            end += locs[b].length
            b += 1
        at = int(offsets[a])
        store.storage.readinto(locs[a].pack, locs[a].offset, out[at:at + end - locs[a].offset])
        a = b
    bad = rowhash.check_spans(out, offsets, lengths, recs["check"])
    if bad >= 0:
        raise damaged_sample(digests[bad], locs[bad].pack, locs[bad].offset)
    return out, encode_index(recs)


def push_samples(store: TensorStore, storage: ObjectPackStorage, index: BucketIndex,
                 pointers: Sequence[SamplePointer], remote: str) -> int:
    """Upload the samples of ``pointers`` the bucket lacks (packs, index last); return how many.

    Raises ``RemoteDataError`` (nothing uploaded) when one is neither local nor in the bucket.
    """
    digests = [p.digest for p in pointers]
    in_bucket = index.locations(digests)
    wanted = [d for d, loc in zip(digests, in_bucket) if loc is None]
    if not wanted:
        return 0
    store.refresh()
    lacking = [d for d, loc in zip(wanted, store.locations(wanted, durable_only=True)) if loc is None]
    if lacking:
        raise RemoteDataError(f"{len(lacking)} samples to push are remote references here and remote {remote!r} "
                              f"({storage.url}) lacks their bytes (e.g. {lacking[0].hex()[:16]}...); fetch_data "
                              "them first")
    uploaded: list[bytes] = []

    def packs() -> Iterator[tuple[memoryview, bytes]]:
        for data, idx in _pack_stream(store, wanted):
            uploaded.append(idx)
            yield data, idx

    try:
        storage.put_packs(packs())
    except ObjectStoreError as exc:
        raise ObjectStoreError(f"pushing {len(wanted)} samples to data remote {remote!r} failed: {exc}") from exc
    index.add_indexes(uploaded)  # what was just uploaded: no LIST and no GET of each index again
    return len(wanted)


# -------------------------------------------------------------------- fetch
def check_index_claims(items: Sequence[tuple[bytes, str, tuple[int, ...]]], locs: Sequence[Location],
                       where: str) -> None:
    """Raise ``CorruptDataError`` unless the bucket index's record of each sample agrees with its
    pointer before a byte is requested: raw length = dtype x shape, stored length within what its
    codec can take for that. The ranges requested are sized by these records, so a hostile bucket
    could otherwise have a (28, 28) sample's read buffer gigabytes of its own bytes in memory
    before verification refused them (review B). ``where`` names the bucket in the message."""
    bound: dict[tuple[str, tuple[int, ...]], int] = {}
    for (digest, dtype, shape), loc in zip(items, locs):
        raw = bound.get((dtype, shape))
        if raw is None:
            raw = bound[dtype, shape] = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        if loc.rawlen != raw or not 0 <= loc.length <= max_stored_length(loc.codec, raw):
            raise CorruptDataError(
                f"the index of {where} records sample digest "
                f"{digest.hex()[:16]}... as "
                f"{loc.length} stored bytes holding {loc.rawlen} raw bytes, but its pointer says {raw} raw bytes "
                f"({dtype} {tuple(shape)}); the bucket's pack index {loc.pack} is damaged or hostile: nothing was "
                "read; push the repository again from a copy that holds the sample")


def _ranges(locs: list[Location]) -> list[tuple[str, int, int, list[int]]]:
    """Coalesce sample locations into ``(pack, offset, length, members)`` read requests."""
    order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].offset))
    out: list[tuple[str, int, int, list[int]]] = []
    for i in order:
        loc = locs[i]
        if out:
            pack, off, n, members = out[-1]
            end = off + n
            if pack == loc.pack and loc.offset - end <= _GAP and loc.offset + loc.length - off <= _SPAN:
                out[-1] = (pack, off, max(end, loc.offset + loc.length) - off, members + [i])
                continue
        out.append((loc.pack, loc.offset, loc.length, [i]))
    return out


def _verify_range(items: Sequence[tuple[bytes, str, tuple[int, ...]]], locs: list[Location], view: memoryview,
                  off: int, new: list[int]) -> list[tuple[VerifiedRun, list[int]]]:
    """Check the samples ``new`` of one range read at ``off`` (bytes ``view``); touches no store.

    First each sample's stored-bytes checksum against the bucket index's (one C call without the
    GIL, :func:`~hangar.plumbing.rowhash.check_spans`), then samples of one dtype and shape
    together (blake3 over bytes + dtype + shape, ``verify_received``). Returns each group's run
    with the checksums it was checked against: the writer records them as they are instead of
    hashing the bytes again. A range that holds a group back to back becomes one block, written
    with one write instead of one per sample (1,002 pwrites were 0.20 of 1.03 s of a fetch_data
    of 1,000 x 150 KB here).
    """
    if not new:
        return []
    bad = rowhash.check_spans(view, np.fromiter((locs[m].offset - off for m in new), np.int64, len(new)),
                              np.fromiter((locs[m].length for m in new), np.int64, len(new)),
                              np.fromiter((locs[m].check for m in new), np.uint64, len(new)))
    if bad >= 0:
        m = new[bad]
        raise damaged_sample(items[m][0], locs[m].pack, locs[m].offset)
    groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for m in new:
        groups.setdefault((items[m][1], tuple(items[m][2])), []).append(m)
    runs = []
    for (dtype, shape), ms in groups.items():
        payloads = [view[locs[m].offset - off:locs[m].offset - off + locs[m].length] for m in ms]
        lengths = [locs[m].length for m in ms]
        first = locs[ms[0]].offset - off
        back_to_back = all(locs[a].offset + locs[a].length == locs[b].offset for a, b in zip(ms, ms[1:]))
        block = view[first:first + sum(lengths)] if back_to_back else None
        run = verify_received([items[m][0] for m in ms], [locs[m].codec for m in ms],
                              [locs[m].rawlen for m in ms], lengths, payloads, dtype, shape, block)
        runs.append((run, [locs[m].check for m in ms]))
    return runs


def _write_range(store: TensorStore, runs: list[tuple[VerifiedRun, list[int]]]) -> None:
    """Store verified runs (their stored-bytes checksums compared already)."""
    for run, checks in runs:
        store.put_verified_checked(run, checks)


#: verified pieces waiting for the writer thread (each at most _SPAN bytes, most one received chunk)
_WRITE_AHEAD = 8


def _cuts(locs: Sequence[Location], off: int, n: int, members: list[int]) -> list[int]:
    """Where the samples ``members`` of the range ``[off, off + n)`` begin and end (sorted, inside
    it): the places a streamed range may be handed over in pieces without cutting a sample; none
    when samples overlap."""
    starts = np.fromiter((locs[m].offset for m in members), np.int64, len(members))
    ends = starts + np.fromiter((locs[m].length for m in members), np.int64, len(members))
    if len(members) > 1 and bool((starts[1:] < np.maximum.accumulate(ends)[:-1]).any()):
        # samples overlapping (an index hangar never writes, yet every byte may check): a piece
        # would hold a sample's end without its start; the range is handed over whole
        return []
    cuts = np.unique(np.concatenate([starts, ends]))
    return cuts[(cuts > off) & (cuts < off + n)].tolist()


def fetch_samples(hangar_dir: str, storage: ObjectPackStorage, index: BucketIndex,
                  items: Sequence[tuple[bytes, str, tuple[int, ...]]], remote: str,
                  store: Optional[TensorStore] = None) -> list[str]:
    """Read ``(digest, dtype, shape)`` samples from the bucket (concurrent range requests), verify
    each (the index checksum of the stored bytes, then blake3 of bytes + dtype + shape) and store
    them durably in the repository at ``hangar_dir``; return the ids of the local packs written.

    Raises ``RemoteDataError`` naming the remote and the sample when the bucket lacks one,
    ``DataRemoteUnreachableError`` when the bucket cannot be read, ``CorruptDataError`` when
    bytes fail their checks (nothing of that batch is stored).

    ``store`` (kept open by the caller) writes the packs; default: a durable store of its own,
    closed on return.
    """
    if not items:
        return []
    locs = index.locations([d for d, _, _ in items])
    if None in locs:
        index.refresh()
        locs = index.locations([d for d, _, _ in items])
    if None in locs:
        d = items[locs.index(None)][0]
        raise RemoteDataError(f"sample digest {d.hex()[:16]}... is neither in this repository nor in data remote "
                              f"{remote!r} ({storage.url}); push it from a repository that holds it")
    check_index_claims(items, locs, f"data remote {remote!r} ({storage.describe()})")  # type: ignore[arg-type]
    own = store is None
    if store is None:
        store = TensorStore(LocalPackStorage(os.path.join(hangar_dir, "data")))
    written: list[str] = []
    ranges = _ranges(locs)  # type: ignore[arg-type]
    is_new = [loc is None for loc in store.locations([d for d, _, _ in items])]
    # three stages overlap: pieces of ranges download on the transfer thread, this thread verifies them
    # (xxh3 and blake3, both without the GIL), one writer thread stores them (pwrite) and makes
    # each batch durable (fsync, index). Writing 301 MB into local packs took 1.28 of 3.2 s of a
    # fetch_data here (disk shared with other jobs) while the same thread hashed; a batch's flush
    # on this thread stopped verification for its fsync (0.04-0.1 s a batch)
    writer = ThreadPoolExecutor(1, thread_name_prefix="hangar-fetch-writer")
    queued: collections.deque[Future[Optional[str]]] = collections.deque()

    def wait(limit: int) -> None:
        while len(queued) > limit:
            pack = queued.popleft().result()  # a writer's error is raised here
            written.extend([pack] if pack is not None else [])

    def stop() -> None:
        # before the store is discarded the writer must be idle; what it was handed is verified, so
        # it runs to its end: a failure keeps every batch queued for a flush before it (at most
        # _WRITE_AHEAD + 1 pieces and their flushes)
        writer.shutdown(wait=True)

    blobs = storage.stream_pieces([(p, o, n, _cuts(locs, o, n, members)) for p, o, n, members in ranges],  # type: ignore[arg-type]
                                  _GAP)
    taken = [0] * len(ranges)  # members of each range verified so far (they lie in offset order)
    ends = [np.fromiter((locs[m].offset + locs[m].length for m in members), np.int64, len(members))  # type: ignore[union-attr]
            for _, _, _, members in ranges]
    unflushed = 0
    try:
        try:
            for r, at, blob, last in blobs:  # in the order they arrive; a range's pieces in order
                _, off, n, members = ranges[r]
                top = off + at + len(blob)
                # the members this piece holds: those ending in it (a piece ends only where samples do)
                a, b = taken[r], int(np.searchsorted(ends[r], top, "right"))
                taken[r] = b
                new = [m for m in members[a:b] if is_new[m]]
                runs = _verify_range(items, locs, blob, off + at, new)  # type: ignore[arg-type]
                queued.append(writer.submit(_write_range, store, runs))
                if last:
                    unflushed += n
                    if unflushed >= FETCH_BATCH_BYTES:  # durable in batches: a failure keeps what was flushed
                        queued.append(writer.submit(store.flush))
                        unflushed = 0
                wait(_WRITE_AHEAD)
            queued.append(writer.submit(store.flush))
            wait(0)
        except ObjectStoreError as exc:
            stop()
            store.discard()
            raise DataRemoteUnreachableError(
                f"reading sample digest {items[0][0].hex()[:16]}... and {len(items) - 1} more from data remote "
                f"{remote!r} ({storage.describe()}) failed: {exc}") from exc
        except BaseException:
            stop()
            store.discard()
            raise
        finally:
            stop()
            blobs.close()  # type: ignore[attr-defined]
    finally:
        if own:
            store.close()
    return written


# --------------------------------------------------------------- lazy reads
class LazyReads:
    """The callable a :class:`TensorStore` calls with samples it lacks: reads them from the data
    remote into the local store (verified), so the read that wanted them succeeds."""

    def __init__(self, git: GitRepo, hangar_dir: str, remote: str) -> None:
        self.git = git
        self.hangar_dir = hangar_dir
        self.remote = remote
        self._index: Optional[BucketIndex] = None
        self._storage: Optional[ObjectPackStorage] = None
        # one writer for every lazy read of this repository object: a fresh store per read would
        # load the whole local index each time (measured: 48 of 90 ms per single read with 1,800 packs).
        # Its packs are durable like every other (data fsynced before the index is written, then
        # the directories): skipping the data fsync let a power loss leave an index over lost
        # bytes. One flushed pack (6 fsyncs) per lazy read; a get_batch is one read. Measured on
        # the shared disk under load: scripts/bench_lazy_flush.py +6.7 ms min / +10 ms median a
        # flush; scripts/bench_s3.py's lazy-read rows (60,000 x (28,28), min of 2): lazy
        # single reads 80 -> 29 samples/s, a lazy get_batch of 5,000 6,552 -> 3,867 samples/s
        # (fsync waits on the other writers' journal here); cached reads unchanged (0.9x, noise)
        self._cache = TensorStore(LocalPackStorage(os.path.join(hangar_dir, "data")))
        # one lazy read at a time: reads from several threads (a loader's workers) shared the one
        # cache store, each with its own writer thread, and one's flush closed the pack the
        # other was appending to (OSError: Bad file descriptor, tests/test_lazy_threads.py)
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[tuple[bytes, str, tuple[int, ...]]]) -> list[str]:
        with self._lock:
            return self._read(items)

    def _read(self, items: Sequence[tuple[bytes, str, tuple[int, ...]]]) -> list[str]:
        try:
            if self._index is None:
                self._storage = open_storage(self.git, self.remote)
                self._index = bucket_index(self._storage, self.hangar_dir)
        except DataRemoteUnreachableError as exc:
            d = items[0][0].hex()[:16] if items else "?"
            raise DataRemoteUnreachableError(
                f"sample digest {d}... is not local and data remote {self.remote!r} cannot be reached: {exc}; "
                f"check the endpoint and credentials, or turn lazy reads off (hangar remote lazy "
                f"{self.remote} off) and fetch_data while connected") from exc
        return fetch_samples(self.hangar_dir, self._storage, self._index, items, self.remote,  # type: ignore[arg-type]
                             store=self._cache)

    def bucket_locations(self, digests: Sequence[bytes]) -> tuple[str, Optional[str], list[Location]]:
        """``(url, endpoint, locations)``: where each of ``digests`` lies in the data remote's bucket,
        read from the pack indexes only (no sample bytes move), for a reader that range-reads the
        bucket itself (a dask worker). The endpoint is the one this repository uses (recorded, else
        ``AWS_ENDPOINT_URL``); credentials are never part of the answer.

        Raises ``RemoteDataError`` naming the remote and the sample when the bucket lacks one,
        ``DataRemoteUnreachableError`` when its indexes cannot be read.
        """
        try:
            with self._lock:  # the bucket index is filled in place by refresh
                if self._index is None:
                    self._storage = open_storage(self.git, self.remote)
                    self._index = bucket_index(self._storage, self.hangar_dir)
                locs = self._index.locations(list(digests))
                if None in locs:
                    self._index.refresh()
                    locs = self._index.locations(list(digests))
        except DataRemoteUnreachableError as exc:
            d = digests[0].hex()[:16] if digests else "?"
            raise DataRemoteUnreachableError(
                f"sample digest {d}... is not local and data remote {self.remote!r} cannot be reached: {exc}; "
                "check the endpoint and credentials, or fetch_data while connected") from exc
        storage = self._storage
        assert storage is not None  # opened above
        if None in locs:
            lacking = digests[locs.index(None)]
            raise RemoteDataError(f"sample digest {lacking.hex()[:16]}... is neither in this repository nor in data "
                                  f"remote {self.remote!r} ({storage.url}); push it from a repository that holds it")
        return storage.url, storage.endpoint_url, locs  # type: ignore[return-value]  # no None left


def plan_ranges(locs: list[Location]) -> list[tuple[str, int, int, list[int]]]:
    """Sample locations in one bucket coalesced into ``(pack, offset, length, members)`` range
    requests (neighbours within 1 MiB, at most 8 MiB a request), as ``fetch_data`` reads them."""
    return _ranges(locs)


def attach_lazy_reads(git: GitRepo, hangar_dir: str, store: TensorStore) -> None:
    """Make ``store`` read missing samples from the repository's lazy data remote, if it has one."""
    remote = lazy_remote(git)
    store.lazy_source = LazyReads(git, hangar_dir, remote) if remote is not None else None


def pointers_items(pointers: Iterable[SamplePointer]) -> list[tuple[bytes, str, tuple[int, ...]]]:
    return [(p.digest, p.dtype, p.shape) for p in pointers]
