"""Repository checks and garbage collection: ``Repository.verify()`` and ``Repository.gc()``.

``verify`` walks every commit reachable from any ref (branches, remote branches) plus the
staging area, reads every git object on the way (libgit2 re-hashes each object it reads),
parses every schema and pointer blob, and re-hashes every distinct sample's bytes once.
Problems are reported by arrayset and key, never raised.

``gc`` takes the writer lock, finds what is reachable from every ref and the staging area
(base commit and tree), writes the reachable git objects into one new pack and the reachable
sample bytes of partly-dead tensor packs into a new tensor pack, durably, and only then
deletes the old packs and loose objects. See ``docs/reliability.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from hangar.core import RepositoryCore
from hangar.errors import InvalidArgumentError, RemoteDataError, TransferInProgressError, UnsafeToCollectError
from hangar.plumbing.gc import Reachable, collect_git_garbage, list_git_files, ref_heads, walk_reachable
from hangar.records import changes, layout
from hangar.records.keys import decode_key
from hangar.records.pointer import SamplePointer, decode_pointer
from hangar.records.schema import ArraysetSchema
from hangar.records.snapshot import decode_metadata
from hangar.store import TensorStore
from hangar.store.compact import compact_store
from hangar.store.digest import byte_view, digest_of_parts
from hangar.transfers import active_transfers

#: per digest, how many (arrayset, key, commit) places are remembered for the report
_MAX_PLACES = 5


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`verify`: what is wrong, and where (arrayset and key when known)."""

    kind: str  #: ``'corrupt'`` (bytes do not match), ``'missing'`` (bytes not stored), ``'record'``
    arrayset: Optional[str]
    key: object
    commit: Optional[str]
    detail: str

    def __str__(self) -> str:
        where = f"arrayset {self.arrayset!r} key {self.key!r}" if self.arrayset is not None else "records"
        at = f" (commit {self.commit[:12]})" if self.commit else " (staging area)"
        if self.kind == "corrupt" and self.arrayset is None:  # a damaged pack file: not in any commit
            where, at = "data", ""
        return f"{self.kind}: {where}{at}: {self.detail}"


@dataclass
class VerifyReport:
    """Result of :func:`verify`.

    Attributes
    ----------
    commits, trees, samples : int
        Commits walked, distinct trees read, sample pointers checked.
    digests, nbytes : int
        Distinct sample digests re-hashed, and their bytes.
    corrupt : list of Problem
        Samples whose stored bytes do not hash to their digest (or cannot be decoded).
    missing : list of Problem
        Samples whose bytes are not in the local store, in commits no remote branch holds:
        lost data.
    remote_only : list of Problem
        Samples whose bytes are not here yet but on a remote: those of commits a fetched
        remote branch holds (a clone, or a ``fetch`` without ``fetch_data``). Not damage:
        ``ok`` ignores them; ``fetch_data`` brings them.
    records : list of Problem
        Unreadable or missing git objects, malformed schema, pointer or metadata blobs.
    damaged : dict
        digest -> (dtype, shape) of every corrupt sample: what ``hangar fsck --repair``
        fetches again from a remote.
    """

    commits: int = 0
    trees: int = 0
    samples: int = 0
    digests: int = 0
    nbytes: int = 0
    corrupt: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    records: list = field(default_factory=list)
    remote_only: list = field(default_factory=list)
    damaged: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when nothing is corrupt, missing or malformed (remote-only samples are fine)."""
        return not (self.corrupt or self.missing or self.records)

    def problems(self) -> list[Problem]:
        return [*self.records, *self.corrupt, *self.missing]

    def __str__(self) -> str:
        head = (f"checked {self.commits} commits, {self.trees} trees, {self.samples} sample records, "
                f"{self.digests} distinct samples ({self.nbytes} bytes re-hashed)")
        fetchable = []
        if self.remote_only:
            by_aset: dict = {}
            for p in self.remote_only:
                by_aset[p.arrayset] = by_aset.get(p.arrayset, 0) + 1
            counts = ", ".join(f"{n} in {a}" for a, n in sorted(by_aset.items(), key=lambda x: str(x[0])))
            fetchable = [f"not fetched yet: {len(self.remote_only)} samples ({counts}) are on the remote only "
                         "(partial clone, not damage); fetch_data / hangar fetch-data REMOTE BRANCH brings them"]
        if self.ok:
            return "\n".join([head, *fetchable, "ok: no problems found"])
        lines = [head, f"{len(self.corrupt)} corrupt, {len(self.missing)} missing, "
                       f"{len(self.records)} record problems", *fetchable]
        lines += [str(p) for p in self.problems()]
        return "\n".join(lines)


@dataclass
class GcReport:
    """Result of :func:`gc` (with ``dry_run`` the counts say what would be removed)."""

    dry_run: bool
    reachable_objects: int = 0
    removed_objects: int = 0
    removed_git_files: int = 0
    reachable_samples: int = 0
    removed_samples: int = 0
    removed_sample_bytes: int = 0
    removed_packs: int = 0
    removed_temp_files: int = 0
    removed_cache_files: int = 0

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (f"git: {self.reachable_objects} reachable objects kept, {verb} {self.removed_objects} "
                f"unreachable objects ({self.removed_git_files} files)\n"
                f"data: {self.reachable_samples} reachable samples kept, {verb} {self.removed_samples} "
                f"unreachable samples ({self.removed_sample_bytes} bytes, {self.removed_packs} packs)\n"
                f"temporary files of interrupted writes: {verb} {self.removed_temp_files}\n"
                f"diff caches (change records, rebuilt when needed): {verb} {self.removed_cache_files}")


# ---------------------------------------------------------------- reachability
class _Collector:
    """Interprets the blobs of a reachability walk: schemas, sample pointers, metadata."""

    def __init__(self, report: Optional[VerifyReport]) -> None:
        self.report = report
        # digest -> (dtype, shape, places [(arrayset, key, commit)])
        self.digests: dict[bytes, tuple[str, tuple[int, ...], list]] = {}
        self.samples = 0

    def problem(self, commit: Optional[str], detail: str, arrayset: Optional[str] = None,
                key: object = None) -> None:
        if self.report is None:
            raise UnsafeToCollectError(f"cannot collect garbage: {detail}; run `hangar fsck` for details")
        self.report.records.append(Problem("record", arrayset, key, commit, detail))

    def tree(self, path: tuple, commit: Optional[str]) -> None:
        if len(path) >= 4 and path[0] == layout.ARRAYSETS and path[2] == layout.SAMPLES and (
                len(path[-1]) != 1 or path[-1] not in _FAN_DIGITS):
            # fan-out directories are one hex digit; a key's entry is a pointer blob, never a directory
            self.problem(commit, f"samples tree holds a directory {path[-1]!r} where only fan-out directories (one "
                                 "hex digit) and sample pointer blobs belong (written with plain git, not by hangar)",
                         path[1], _key(path[-1]))

    def blob(self, path: tuple, data: bytes, commit: Optional[str]) -> None:
        if len(path) >= 2 and path[0] == layout.METADATA:
            try:
                decode_metadata(path[-1], data)
            except ValueError as exc:
                self.problem(commit, str(exc), None, _key(path[-1]))
            return
        if len(path) < 3 or path[0] != layout.ARRAYSETS:
            return
        aset = path[1]
        if path[2] == layout.SCHEMA and len(path) == 3:
            try:
                ArraysetSchema.from_json(data, f"schema record of arrayset {aset!r}")
            except ValueError as exc:
                self.problem(commit, f"schema blob is malformed: {exc}", aset)
            return
        if path[2] != layout.SAMPLES:
            return
        self.samples += 1
        key = _key(path[-1])
        try:
            ptr = decode_pointer(data)
        except ValueError as exc:
            self.problem(commit, str(exc), aset, key)
            return
        entry = self.digests.get(ptr.digest)
        if entry is None:
            entry = self.digests[ptr.digest] = (ptr.dtype, ptr.shape, [])
        if len(entry[2]) < _MAX_PLACES:
            entry[2].append((aset, key, commit))


_FAN_DIGITS = frozenset("0123456789abcdef")


def _key(entry_name: str) -> object:
    try:
        return decode_key(entry_name)
    except ValueError:
        return entry_name


def _walk(core: RepositoryCore, report: Optional[VerifyReport]) -> tuple[_Collector, Reachable]:
    """Walk everything reachable from every ref and the staging area (base commit and tree)."""
    git = core.git
    heads = ref_heads(git)
    trees = []
    state = core.staging_state()
    if state is not None:
        if state.base:
            heads.append(state.base)
        if state.tree:
            trees.append(state.tree)
    col = _Collector(report)
    found = walk_reachable(git, sorted(set(heads)), trees, col.blob, col.problem, col.tree)
    return col, found


def reachable(core: RepositoryCore) -> Reachable:
    """Everything reachable from every ref and the staging area: what :func:`gc` keeps."""
    return _walk(core, None)[1]


def _remote_digests(core: RepositoryCore) -> set:
    """Digests of every sample the fetched remote branches (``refs/remotes/*``) reach.

    A walk of its own: the full walk reads each shared subtree once, under whichever commit
    it met first, so its places cannot tell whether a remote branch holds a sample.
    """
    heads = sorted(set(core.git.refs("refs/remotes/").values()))
    if not heads:
        return set()
    col = _Collector(VerifyReport())  # record problems were reported by the full walk already
    walk_reachable(core.git, heads, [], col.blob, col.problem)
    return set(col.digests)


# ---------------------------------------------------------------------- verify
def verify(core: RepositoryCore) -> VerifyReport:
    """Check every record and re-hash every sample reachable in the repository; see :class:`VerifyReport`."""
    report = VerifyReport()
    col, found = _walk(core, report)
    report.commits, report.trees, report.samples = found.commits, found.trees, col.samples
    store = core.store()
    store.refresh()
    for pack, why in sorted(store.damaged().items()):
        # skipped when loaded, so the rest of the repository stays readable; its samples show as missing
        report.corrupt.append(Problem("corrupt", None, None, None, f"pack {pack} skipped: {why}"))
    on_remote: Optional[set] = None  # digests a fetched remote branch reaches (walked when first needed)
    for digest, (dtype, shape, places) in col.digests.items():
        aset, key, commit = places[0]
        more = f" (also {len(places) - 1} more places)" if len(places) > 1 else ""
        try:
            store.location(digest)
        except RemoteDataError:
            if on_remote is None:
                on_remote = _remote_digests(core)
            if digest in on_remote:  # a remote branch holds it: not fetched yet
                report.remote_only.append(Problem("remote", aset, key, commit, "not fetched yet"))
            else:
                report.missing.append(Problem("missing", aset, key, commit,
                                              f"bytes of digest {digest.hex()[:16]}... not stored here{more}"))
            continue
        try:
            arr = store.read(digest, dtype, shape, check=False)
            good = digest_of_parts(byte_view(arr), dtype, shape) == digest
            detail = "stored bytes do not match the digest"
        except Exception as exc:  # any failure to decode is damage to report
            good, detail = False, f"stored bytes cannot be read: {type(exc).__name__}: {exc}"
        report.digests += 1
        if good:
            report.nbytes += arr.nbytes
        else:
            report.damaged[digest] = (dtype, shape)
            report.corrupt.append(Problem("corrupt", aset, key, commit,
                                          f"{detail} (digest {digest.hex()[:16]}...){more}"))
    return report


def repair(core: RepositoryCore, report: VerifyReport, fetch: Callable[[TensorStore, list], object]) -> int:
    """Replace the damaged samples of ``report`` with good bytes; return how many were dropped.

    Under the writer lock: the index records of the damaged samples are dropped (their packs'
    data are untouched; the bytes are already wrong), then ``fetch(store, pointers)`` stores
    them anew (``hangar.remote.client.download_into`` with a remote's client: it verifies every
    digest). A sample the remote lacks stays a remote reference (``missing``), never wrong data.
    """
    if not report.damaged:
        return 0
    with core.lock:
        store = core.store()
        dropped = store.forget(report.damaged)
        pointers = [SamplePointer(d, dtype, tuple(shape)) for d, (dtype, shape) in report.damaged.items()]
        fetch(store, pointers)
        return dropped


# -------------------------------------------------------------------------- gc
def gc(core: RepositoryCore, *, dry_run: bool = False, temp_age: float = 3600.0) -> GcReport:
    """Remove git objects and sample bytes no ref, remote ref or staging area reaches.

    Holds the writer lock throughout (raises ``PermissionError`` while a writer is open).
    Temporary files of interrupted writes are removed once older than ``temp_age`` seconds.
    """
    if not isinstance(dry_run, bool):
        raise InvalidArgumentError(f"dry_run must be a bool, not {dry_run!r}")
    with core.lock:
        # order matters (see hangar.transfers): list what may go, then make sure no fetch is
        # between writing objects and moving its refs, then walk what is reachable
        files = list_git_files(core.git)
        store = core.store()
        store.flush()
        data_packs = store.storage.list_packs()
        busy = active_transfers(core.hangar_dir)
        if busy:
            raise TransferInProgressError(
                f"{len(busy)} transfer(s) are writing into the repository now ("
                + ", ".join(f"{b.get('what')} by pid {b.get('pid')}" for b in busy)
                + "); run gc again when they have finished")
        col, found = _walk(core, None)
        report = GcReport(dry_run=dry_run)
        git_stats = collect_git_garbage(core.git, found.seen, files, dry_run=dry_run, temp_age=temp_age)
        report.reachable_objects = len(found.seen)
        report.removed_objects = git_stats.removed_objects
        report.removed_git_files = git_stats.removed_files
        report.removed_temp_files += git_stats.removed_temp
        data_stats = compact_store(store.storage, set(col.digests), data_packs, dry_run=dry_run, temp_age=temp_age)
        report.reachable_samples = len(col.digests)
        report.removed_samples = data_stats.removed_samples
        report.removed_sample_bytes = data_stats.removed_bytes
        report.removed_packs = data_stats.removed_packs
        report.removed_temp_files += data_stats.removed_temp
        report.removed_cache_files = changes.remove_records(core.hangar_dir, dry_run=dry_run)
        if not dry_run:
            # drop cached handles of the packs just removed; the next use reopens them
            core.drop_handles()
        return report
