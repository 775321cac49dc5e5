"""Checkouts: a reader at one commit, or the single writer over the staging area."""

from __future__ import annotations

import atexit
import warnings
from collections import namedtuple
from typing import Any, Callable, Iterable, Optional

from hangar import commit_tables
from hangar._faults import crash_point
from hangar.arrayset import Arraysets, set_across, set_samples
from hangar.core import RepositoryCore
from hangar.diff import ReaderUserDiff, WriterUserDiff
from hangar.errors import (
    CheckoutBaseMovedError,
    CheckoutClosedError,
    IndexFormError,
    InvalidArgumentError,
    InvalidSelectionError,
    NothingToCommitError,
)
from hangar.merge import merge_into_writer
from hangar.metadata import MetadataReader, MetadataWriter
from hangar.records.snapshot import Snapshot
from hangar.records.staging import StagingArea, StagingState
from hangar.session import BatchBlock, CheckoutSession
from hangar.writer_stage import WriterStage


def _is_multi(value: object) -> bool:
    return isinstance(value, (list, tuple))


def _is_selection(value: object) -> bool:
    """True for a collection of names/keys (any iterable but a str or bytes, e.g. a range or generator)."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes))


class _ClosedSession:
    """What ``_session`` reads as once ``close()`` has emptied a checkout's ``__dict__``."""

    closed = True


class _CheckoutBase(BatchBlock):
    # a closed checkout holds nothing (its __dict__ is emptied, as in Hangar 0.3, so the
    # repository, store and staging area can be freed); this class-level value answers then
    _session: Any = _ClosedSession()
    _arraysets: Arraysets
    _metadata: MetadataReader
    _diff: Any

    def __init__(self, session: CheckoutSession) -> None:
        self._session = session
        self._finalizer: Optional[Callable[[], None]] = None

    def _register_atexit(self) -> None:
        self._finalizer = self.close  # type: ignore[attr-defined]  # ReaderCheckout and WriterCheckout define close
        atexit.register(self._finalizer)

    def _check(self) -> None:
        """Raise ``CheckoutClosedError`` (a ``PermissionError``, as in Hangar 0.3) once closed."""
        if self._session.closed:
            raise CheckoutClosedError("this checkout was closed; no operation occurred. Open a new one with "
                                      "repo.checkout()")

    _check_alive = _check  # what BatchBlock's ``with`` support checks

    @property
    def arraysets(self) -> Arraysets:
        """The :class:`~hangar.arrayset.Arraysets` of this checkout (also a context manager).

        The handle raises ``ReferenceError`` (``HandleClosedError``) once the checkout is closed.
        """
        self._check()
        return self._arraysets

    @property
    def metadata(self) -> MetadataReader:
        """The metadata accessor of this checkout (also a context manager).

        The handle raises ``ReferenceError`` (``HandleClosedError``) once the checkout is closed.
        """
        self._check()
        return self._metadata

    @property
    def diff(self) -> Any:  # ReaderUserDiff or WriterUserDiff
        """The differ of this checkout; raises ``ReferenceError`` once the checkout is closed."""
        self._check()
        return self._diff

    # ------------------------------------------------------- dict-style get
    def _aset_names(self, spec: object) -> tuple[list[str], bool]:
        if spec is Ellipsis or (isinstance(spec, slice) and spec == slice(None)):
            return self._arraysets.keys(), True
        if isinstance(spec, slice):
            raise InvalidSelectionError(f"arrayset selector {spec!r}: only ':' or '...' (all arraysets) is allowed")
        if _is_selection(spec):
            return list(spec), True  # type: ignore[call-overload]  # a selection: a list or tuple of names
        return [spec], False  # type: ignore[list-item]  # one arrayset name

    def _get(self, index: object, missing_ok: bool) -> Any:
        self._check()
        if not isinstance(index, tuple) or len(index) != 2:
            if isinstance(index, str):
                return self._arraysets[index]
            if isinstance(index, tuple) and len(index) == 1:
                return self._get(index[0], missing_ok)
            raise IndexFormError(f"index {index!r}: use co[arrayset] or co[arraysets, samples]")
        aset_spec, sample_spec = index
        if isinstance(sample_spec, slice) or sample_spec is Ellipsis:
            raise InvalidSelectionError("slice syntax cannot be used to select samples")
        names, multi_aset = self._aset_names(aset_spec)
        asets = [self._arraysets[n] for n in names]
        multi_key = _is_selection(sample_spec)
        keys = list(sample_spec) if multi_key else [sample_spec]

        def one(aset, key):  # noqa: ANN001, ANN202
            if missing_ok and key not in aset:
                return None
            return aset.get(key)

        if multi_aset:
            # field names known only at run time
            ArraysetData = namedtuple("ArraysetData", names, rename=True)  # type: ignore[misc]
            rows = [ArraysetData(*[one(a, k) for a in asets]) for k in keys]
        else:
            rows = [one(asets[0], k) for k in keys]
        return rows if multi_key else rows[0]

    def __getitem__(self, index: object) -> Any:
        """Dict-style access to arraysets and samples.

        ``co['aset']`` is the arrayset; ``co['aset', key]`` one array; ``co['aset', [k1, k2]]``
        a list of arrays; ``co[('a', 'b'), key]`` an ``ArraysetData`` namedtuple (one field per
        arrayset); ``co[('a', 'b'), [k1, k2]]`` a list of them; ``co[:, ...]`` or ``co[..., ...]``
        selects every arrayset.

        Parameters
        ----------
        index
            An arrayset name, or ``(arraysets, samples)``: ``arraysets`` a name, an iterable of
            names, ``...`` or ``:``; ``samples`` a key or an iterable of keys (any iterable but a
            str, e.g. a list, tuple, range or generator), in the order results are returned.

        Returns
        -------
        ArraysetDataReader or ArraysetDataWriter, np.ndarray, List[np.ndarray], ArraysetData
        or List[ArraysetData]

        Raises
        ------
        KeyError
            If an arrayset, or a sample in any selected arrayset, does not exist.
        ValueError
            If slice syntax is used for samples, or a slice other than ``:`` for arraysets.
        """
        return self._get(index, missing_ok=False)

    def get(self, arraysets: object, samples: object, *, except_missing: bool = False) -> Any:
        """Like ``co[arraysets, samples]`` (see :meth:`__getitem__`) but a missing sample gives ``None``.

        Parameters
        ----------
        arraysets : str, Iterable[str], Ellipsis or slice(None)
            Name(s) of the arraysets to read; ``...`` or ``:`` for all.
        samples : str, int or Iterable of them
            Sample key(s) to read.
        except_missing : bool, keyword-only
            If True a missing sample raises ``KeyError`` instead of giving ``None``.

        Returns
        -------
        np.ndarray, List[np.ndarray], ArraysetData or List[ArraysetData]
            As :meth:`__getitem__`, with ``None`` in place of missing samples.
        """
        return self._get((arraysets, samples), missing_ok=not except_missing)

    def _close_common(self) -> None:
        if self._finalizer is not None:
            atexit.unregister(self._finalizer)
            self._finalizer = None
        self._session.closed = True  # every handle holds the session: they raise ReferenceError now
        vars(self).clear()


class ReaderCheckout(_CheckoutBase):
    """Read-only view of the repository at one commit. Any number may be open."""

    def __init__(self, core: RepositoryCore, commit: str) -> None:
        super().__init__(CheckoutSession(core.git, core.store(), False, core.path, commit))
        self._commit = commit
        self._session.store.refresh()
        snapshot = Snapshot(core.git, core.git.commit_tree_id(commit))
        self._snapshot = snapshot
        self._arraysets = Arraysets(self._session, snapshot)
        self._metadata = MetadataReader(self._session, lambda: snapshot.metadata)
        self._diff = ReaderUserDiff(core, self._session, commit)
        self._register_atexit()

    def __repr__(self) -> str:
        self._check()  # Hangar 0.3: every operation on a closed checkout is a PermissionError
        return f"ReaderCheckout(commit_hash={self._commit!r})"

    @property
    def commit_hash(self) -> str:
        """Commit hash this checkout reads from."""
        self._check()
        return self._commit

    def close(self) -> None:
        """Close the checkout; its arraysets, metadata and diff stop working."""
        if not self._session.closed:
            self._close_common()


class WriterCheckout(_CheckoutBase):
    """The write-enabled checkout of a branch, staging changes for the next commit.

    Only one may be open per repository (the writer lock); ``close()`` releases it.
    """

    def __init__(self, core: RepositoryCore, state: StagingState, lock_owner: str) -> None:
        super().__init__(CheckoutSession(core.git, core.store(), True, core.path, None))
        self._core = core
        if self._session.store.failed is not None:  # an earlier writer's pack write failed: unflushed,
            self._session.store.discard()  # so nothing in staging.json points at those bytes
        self._session.store.refresh()  # packs removed by a gc elsewhere must not be deduplicated against
        stage = self._stage = WriterStage(core, self._session, state, lock_owner)
        self._state = state
        self._arraysets = stage.arraysets
        self._metadata = MetadataWriter(self._session, lambda: stage.area_unsynced.metadata)
        self._diff = WriterUserDiff(core, self._session, stage)
        self._register_atexit()

    def __repr__(self) -> str:
        self._check()  # Hangar 0.3: every operation on a closed checkout is a PermissionError
        return f"WriterCheckout(branch_name={self._state.branch!r}, commit_hash={self._state.base!r})"

    @property
    def branch_name(self) -> str:
        """Branch whose HEAD the staging area is based on."""
        self._check()
        return self._state.branch

    @property
    def _branch_name(self) -> str:
        # Hangar 0.3's name for branch_name, read by code written against it
        return self.branch_name

    @property
    def commit_hash(self) -> str:
        """Commit the staging area is based on ('' before the first commit)."""
        self._check()
        return self._state.base or ""

    # ------------------------------------------------------------- writing
    def __setitem__(self, index: object, value: object) -> None:
        """Store samples dict-style; everything is validated before anything is written.

        ``co['aset', key] = arr`` stores one sample; ``co[['a', 'b'], key] = [arr_a, arr_b]``
        one sample in each of several arraysets; ``co['aset', [k1, k2, ...]] = [arr1, arr2, ...]``
        several samples of one arrayset. For the last form the value may also be one stacked
        array whose first axis runs over the keys (``co['images', list(range(n))] = batch``
        with ``batch.shape == (n, 28, 28)``): the fastest way to add many samples.

        Raises
        ------
        ValueError
            If the form is not one of these, the numbers of keys and values differ, a key is
            invalid or a sample does not fit its arrayset (dtype, shape, C order).
        KeyError
            If an arrayset does not exist.
        PermissionError
            If the checkout was closed.
        """
        self._check()
        if not isinstance(index, tuple) or len(index) != 2:
            raise InvalidSelectionError(f"index {index!r}: use co[arrayset, key] = array")
        aset_spec, key_spec = index
        multi_aset, multi_key = _is_multi(aset_spec), _is_multi(key_spec)
        if multi_aset and multi_key:
            raise InvalidSelectionError(
                "set several samples of one arrayset, or one sample of several arraysets, not both")
        if not (multi_aset or multi_key):
            self._arraysets[aset_spec][key_spec] = value  # type: ignore[index]  # one arrayset name and key here
            return
        if multi_key:
            self._set_samples(aset_spec, key_spec, value)
            return
        if not _is_multi(value):
            raise IndexFormError(f"several arraysets need a list or tuple of arrays as the value, not "
                                 f"{type(value).__name__}")
        if len(value) != len(aset_spec):  # type: ignore[arg-type]  # sequences here (multi_aset)
            # sequences here (multi_aset)
            raise InvalidSelectionError(f"{len(aset_spec)} targets but {len(value)} values")  # type: ignore[arg-type]
        if key_spec is None:
            raise InvalidSelectionError("a sample key is needed for dict-style setting")
        asets = [self._arraysets[a] for a in aset_spec]
        set_across(asets, key_spec, value)  # type: ignore[arg-type]

    def _set_samples(self, aset_name: str, keys: list, values: object) -> None:
        """``co[aset, [k1, k2, ...]] = values``: validate everything, then store in bulk."""
        set_samples(self._arraysets[aset_name], keys, values)  # type: ignore[arg-type]

    @property
    def _staging(self) -> StagingArea:
        """The staging area, with every sample a ``with`` block holds back stored in it."""
        return self._stage.area

    def commit(self, commit_message: str) -> str:
        """Commit the staging area to ``branch_name``; return the new commit hash.

        Sample bytes are made durable before the records, and the branch moves last.

        Parameters
        ----------
        commit_message : str
            Message recorded with the commit.

        Returns
        -------
        str
            Hash of the new commit.

        Raises
        ------
        RuntimeError
            If nothing changed since the base commit, or the branch moved since this
            checkout was opened.
        ValueError
            If ``commit_message`` is not a str.
        PermissionError
            If the checkout was closed.
        """
        self._check()
        if not isinstance(commit_message, str):
            raise InvalidArgumentError(f"commit message must be a str, not {type(commit_message).__name__}")
        stage = self._stage
        # the location tables are built in the data flush's thread, beside the records trees
        tables = commit_tables.CommitTables(self._session.store, stage.area)
        git = self._core.git
        parents = [self._state.base] if self._state.base else []

        def base_unmoved() -> None:
            head = git.branch_head(self._state.branch)
            if head != self._state.base:
                raise CheckoutBaseMovedError(
                    f"branch {self._state.branch!r} moved to {head} since this checkout was based on "
                    f"{self._state.base}; close and check out again")

        def commit_data(tree: str) -> bytes:
            name, email = self._core.user()
            return git.commit_data(tree, parents, name, email, commit_message)

        # records are written while the data is fsynced, and made visible only after (see commit_records)
        written = stage.commit_records(commit_data, base_unmoved, after_data=tables.prepare)
        if written is None:
            raise NothingToCommitError("nothing to commit: the staging area has no changes")
        tree, commit = written
        try:
            crash_point("commit.before_ref")
            try:
                git.set_branch(self._state.branch, commit)
            except BaseException:
                self._core.discard_next_staging_state()
                raise
            crash_point("commit.after_ref")
            # the state (base: commit, tree) was written and fsynced with the records pack:
            # renamed into place now, without a directory fsync (StagingState.publish_next)
            self._state.base, self._state.tree = commit, tree
            self._core.publish_next_staging_state()
        finally:
            tables.prepare()  # built in the data flush's thread: waited for before the store is used again
        # issue 14: the read cache of the new commit's arraysets (one call; a cache, never an error:
        # the branch already moved, so a failure here (a table build's error, no thread left to
        # save one) must not report a durable commit as failed; readers build what is missing)
        try:
            tables.keep(stage.area_unsynced.snapshot)
        except Exception as exc:
            warnings.warn(f"commit {commit[:8]} is done, but keeping its location tables failed ({type(exc).__name__}: "
                          f"{exc}); readers will build them", RuntimeWarning, stacklevel=2)
        try:
            git.consolidate_packs()
        except OSError as exc:  # the commit is done and durable; merging packs can wait for the next one
            warnings.warn(f"could not merge git packs after commit {commit[:8]}: {exc}", RuntimeWarning,
                          stacklevel=2)
        return commit

    def reset_staging_area(self) -> str:
        """Drop every staged change, close the checkout and return the base commit hash.

        Every handle obtained from the checkout stops working (``ReferenceError``), as after
        :meth:`close`.

        Raises
        ------
        RuntimeError
            If the staging area has no changes.
        PermissionError
            If the checkout was closed.
        """
        self._check()
        stage = self._stage
        stage.check_lock()
        if stage.is_clean():
            raise NothingToCommitError("nothing to reset: the staging area has no changes")
        stage.reset()
        base = self.commit_hash
        self.close()
        return base

    def merge(self, message: str, dev_branch: str, *, strategy: Optional[str] = None) -> str:
        """Merge ``dev_branch`` into this checkout's branch; return the new head commit.

        Fast-forwards when possible (``message`` unused), else writes a 3-way merge commit.
        Needs a clean staging area. ``strategy='ours'|'theirs'`` (keyword) settles conflicts
        instead of refusing; see :meth:`hangar.repository.Repository.merge`.
        """
        self._check()
        self._stage.check_lock()
        self._session.sync()
        return merge_into_writer(self._stage, message, dev_branch, strategy=strategy)

    def close(self) -> None:
        """Make staged changes durable, release the writer lock and close the checkout."""
        if self._session.closed:
            return
        core, owner = self._core, self._stage.owner
        try:
            self._stage.flush()
            self._session.store.wait_saved()  # the last commit's table file (keep_table writes it in a thread)
        finally:
            self._close_common()
            core.lock.release(owner)


