"""The repository core: what every porcelain module needs of a repository, and nothing user-facing.

:class:`RepositoryCore` owns the on-disk layout (named in :mod:`hangar.plumbing.paths`), the
git repository, the tensor store (one factory for every store opened on the repository), the
:class:`~hangar.writer_lock.WriterLock`, the staging state, the command line's branch and the
user identity, plus the crash-recovery policy of a new writer's staging area. Checkouts, diff,
merge, integrity, remotes and the loaders take a core; :class:`hangar.repository.Repository`
is the user-facing facade over one.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from typing import Optional

from hangar._version import __version__
from hangar.errors import (
    BranchNotFoundError,
    BranchSwitchWarning,
    DirtyStagingAreaError,
    InvalidArgumentError,
    RepositoryExistsError,
    RepositoryNotInitializedError,
    StagingBaseMovedError,
    WriterLockError,
)
from hangar.plumbing import paths
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import ObjectBatch
from hangar.plumbing.regular import MAX_STATE_BYTES, read_regular
from hangar.plumbing.trees import empty_tree_id
from hangar.records.keys import validate_branch_name
from hangar.records.staging import StagingState
from hangar.store import TensorStore
from hangar.store.packs import LocalPackStorage
from hangar.writer_lock import WriterLock


class RepositoryCore:
    """The parts of the repository at ``path`` (an existing directory) that the porcelain shares.

    Parameters
    ----------
    path : str
        Absolute path of the repository's directory (the one holding ``.hangar``).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.hangar_dir = paths.hangar_dir(path)
        self.lock = WriterLock(self.hangar_dir, path)
        self._git: Optional[GitRepo] = None
        self._store: Optional[TensorStore] = None

    def __repr__(self) -> str:
        return f"RepositoryCore({self.path!r})"

    # ------------------------------------------------------------ handles
    @property
    def initialized(self) -> bool:
        """True when a hangar repository exists at ``path``."""
        return os.path.isfile(os.path.join(self.hangar_dir, "HEAD"))

    @property
    def git(self) -> GitRepo:
        """The repository's git directory (opened on first use).

        Raises
        ------
        RuntimeError
            (``RepositoryNotInitializedError``) If there is no repository yet.
        """
        if self._git is None:
            if not self.initialized:
                raise RepositoryNotInitializedError(
                    f"no hangar repository at {self.path!r}; call Repository.init() first")
            self._git = GitRepo(self.hangar_dir)
        return self._git

    def store(self) -> TensorStore:
        """The repository's shared tensor store (with its read cache), opened on first use."""
        if self._store is None:
            self.git  # noqa: B018 - raises when not initialized
            self._store = self.open_store(cached=True)
            from hangar.remote.objectdata import attach_lazy_reads  # deferred: obstore/zarr load on use

            attach_lazy_reads(self.git, self.hangar_dir, self._store)
        return self._store

    def open_store(self, cached: bool = False) -> TensorStore:
        """A new tensor store on the repository's data (the caller closes it).

        ``cached``: keep derived read caches (location tables) in ``.hangar/cache``. A transfer
        opens a store of its own, so a failed one discards only its own unflushed bytes.
        """
        return TensorStore(LocalPackStorage(paths.data_dir(self.hangar_dir),
                                            cache_dir=paths.cache_dir(self.hangar_dir) if cached else None))

    def drop_handles(self) -> None:
        """Close the cached git and store handles; the next use reopens them (after gc removed packs)."""
        if self._store is not None:
            self._store.storage.close()
        self._git = None
        self._store = None

    def user(self) -> tuple[str, str]:
        """``(name, email)`` recorded as the author of commits."""
        return self.git.config_get("user.name", "") or "", self.git.config_get("user.email", "") or ""

    @property
    def version(self) -> str:
        """Version of hangar that wrote the repository."""
        return self.git.config_get("hangar.version", __version__) or __version__

    # ------------------------------------------------------------- init
    def init(self, user_name: str, user_email: str, remove_old: bool) -> str:
        """Create the repository (built aside, then moved into place); see ``Repository.init``."""
        for what, value in (("user_name", user_name), ("user_email", user_email)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgumentError(f"{what} must be a non-empty str, not {value!r}")
            bad = sorted({c for c in value if c in "<>" or ord(c) < 32 or ord(c) == 127})
            if bad:  # git cannot record them in a commit signature (a newline corrupts every commit)
                raise InvalidArgumentError(f"{what} {value!r} contains {bad}; control characters, '<' and '>' "
                                 "cannot appear in a commit author")
        if self.initialized:
            if not remove_old:
                raise RepositoryExistsError(f"a hangar repository already exists at {self.hangar_dir!r}; "
                                      "pass remove_old=True to replace it")
            if self.lock.held:
                raise WriterLockError("cannot remove the repository while a writer checkout holds its lock")
        elif os.path.lexists(self.hangar_dir) and not remove_old:
            raise RepositoryExistsError(f"{self.hangar_dir!r} exists but holds no hangar repository; move it away "
                                  "or pass remove_old=True to replace it")
        self.drop_handles()
        # build the new repository aside; the old one (if any) is removed only once it is complete
        tmp = self.hangar_dir + f".init-{uuid.uuid4().hex[:8]}"
        try:
            git = GitRepo.init(tmp)
            git.config_set("user.name", user_name)
            git.config_set("user.email", user_email)
            git.config_set("hangar.version", __version__)
            git.config_set("core.logallrefupdates", "false")
            os.makedirs(paths.data_dir(tmp), exist_ok=True)
            trash = None
            if os.path.lexists(self.hangar_dir):
                trash = self.hangar_dir + f".old-{uuid.uuid4().hex[:8]}"
                os.replace(self.hangar_dir, trash)
            os.replace(tmp, self.hangar_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if trash is not None:
            if os.path.isdir(trash) and not os.path.islink(trash):
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.unlink(trash)
        return self.hangar_dir

    def remove_stale_ref_locks(self) -> None:
        """Remove git's ref lock files (``HEAD.lock``, ``packed-refs.lock``, ``refs/heads/**.lock``).

        Only the writer moves branches: once its lock is force-released, those a writer killed
        mid-update left behind are stale.
        """
        stale = [os.path.join(self.hangar_dir, n) for n in ("HEAD.lock", "packed-refs.lock")]
        for top, _, files in os.walk(os.path.join(self.hangar_dir, "refs", "heads")):
            stale += [os.path.join(top, f) for f in files if f.endswith(".lock")]
        for p in stale:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    # ---------------------------------------------------- staging state
    def staging_state(self) -> Optional[StagingState]:
        """The saved staging state (branch, base commit, tree), or None before the first writer."""
        return StagingState.load(self.hangar_dir)

    def save_staging_state(self, state: StagingState) -> None:
        """Save ``state`` durably as the staging state."""
        state.save(self.hangar_dir)

    def write_next_staging_state(self, state: StagingState) -> int:
        """Write ``state`` as the staging state a commit publishes once its branch has moved
        (:meth:`StagingState.write_next`): returns its open descriptor, for the caller to fsync
        and close."""
        return state.write_next(self.hangar_dir)

    def publish_next_staging_state(self) -> None:
        """Make the state of :meth:`write_next_staging_state` the staging state (:meth:`StagingState.publish_next`)."""
        StagingState.publish_next(self.hangar_dir)

    def discard_next_staging_state(self) -> None:
        """Remove an unpublished state of :meth:`write_next_staging_state`."""
        StagingState.discard_next(self.hangar_dir)

    def base_staging_on(self, branch: str, commit: Optional[str]) -> StagingState:
        """Save (and return) a clean staging state based on ``commit`` of ``branch``."""
        state = StagingState(branch, commit, self.git.commit_tree_id(commit) if commit else None)
        state.save(self.hangar_dir)
        return state

    def writer_branch(self) -> str:
        """Branch the staging area is based on; ``'master'`` before the first writer."""
        state = self.staging_state()
        return state.branch if state else "master"

    def empty_tree_id(self) -> str:
        """Hex id of git's empty tree."""
        return empty_tree_id(ObjectBatch()).hex()

    def cli_branch(self) -> Optional[str]:
        """The command line's current branch, or None when the command line never set one."""
        try:
            path = os.path.join(self.hangar_dir, paths.CLI_BRANCH_FILE)
            return read_regular(path, self.hangar_dir, MAX_STATE_BYTES).decode()
        except FileNotFoundError:
            return None

    def remember_cli_branch(self, branch: str) -> None:
        """Record ``branch`` as the command line's current branch."""
        path = os.path.join(self.hangar_dir, paths.CLI_BRANCH_FILE)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(branch)
        os.replace(tmp, path)

    def writer_state(self, branch: str) -> StagingState:
        """The staging state a new writer checkout of ``branch`` starts from (caller holds the lock).

        Crash recovery: a staging area left clean (or whose commit moved the branch but died
        before saving the state) is based anew on ``branch``'s head; one holding changes stays,
        or refuses the checkout with the way out.
        """
        git = self.git
        validate_branch_name(branch)
        head = git.branch_head(branch)
        if head is None and git.branches():
            raise BranchNotFoundError(f"no branch named {branch!r}; branches: {git.branches()}")
        state = self.staging_state()
        if state is not None and (state.branch != branch or state.base != head):
            clean = state.is_clean(git)
            if not clean:  # commits that moved their branch but died before saving the staging state
                clean = _tree_committed_since(git, state, git.branch_head(state.branch))
            if not clean and state.branch == branch:
                moved = git.branch_head(branch)
                raise StagingBaseMovedError(
                    f"the staging area holds changes based on commit {(state.base or '(none)')[:10]} of branch "
                    f"{branch!r}, which has moved to {(moved or '(none)')[:10]} since (a push or fetch into this "
                    "repository): they cannot be committed on the new head; drop them with "
                    "repo.reset_staging_area(), then redo them")
            if not clean:
                raise DirtyStagingAreaError(
                    f"the staging area holds uncommitted changes on branch {state.branch!r}; commit or "
                    f"reset them before checking out {branch!r} for writing")
            if state.branch != branch and state.branch == self.cli_branch():
                warnings.warn(
                    f"the writer checkout moves the staging area from branch {state.branch!r} to {branch!r}: "
                    f"commits go to {branch!r}, and {branch!r} becomes the current branch of the hangar "
                    f"command line (pass branch={state.branch!r} to stay on it)", BranchSwitchWarning,
                    stacklevel=3)
            state = None
        if state is None:
            state = self.base_staging_on(branch, head)
        return state

    def check_writer(self, owner: str, state: StagingState) -> None:
        """Raise ``WriterLockError`` unless writer ``owner`` (whose last saved state is ``state``) holds the lock."""

        def unchanged() -> bool:
            now = self.staging_state()
            return now is not None and (now.branch, now.base, now.tree) == (state.branch, state.base, state.tree)

        self.lock.check(owner, unchanged)

    # ---------------------------------------------------------- queries
    def branch_head(self, name: str) -> Optional[str]:
        """Head commit of local branch ``name``, else of fetched remote branch ``name``; None if neither."""
        return self.git.branch_or_remote_head(name) if isinstance(name, str) and name else None

    def held_elsewhere(self, ref: str, head: str) -> bool:
        """Whether a branch other than ``ref`` (local or fetched remote) contains commit ``head``."""
        git = self.git
        others = [h for prefix in ("refs/heads/", "refs/remotes/")
                  for b, h in git.refs(prefix).items() if prefix + b != ref]
        return any(git.is_ancestor(head, h) for h in others)


def _tree_committed_since(git: GitRepo, state: StagingState, head: Optional[str]) -> bool:
    """Whether ``state``'s tree is the tree of ``head`` or of a commit between it and
    ``state.base`` (first parents; ``head`` descends from the base): then nothing staged is
    uncommitted, and the staging area is re-based on ``head``.

    A commit saves its state after the branch moved by a rename without a directory fsync
    (``StagingState.publish_next``): a crash can lose several such renames in a row, leaving
    the state an earlier commit saved before its own ref moved (its base, and its tree, which
    a later commit of the same writer moved past), not just the last commit's.
    """
    if head is None or state.tree is None or (state.base is not None and not git.is_ancestor(state.base, head)):
        return False
    commit: Optional[str] = head
    while commit is not None and commit != state.base:
        info = git.commit_info(commit)
        if info.tree == state.tree:
            return True
        commit = info.parents[0] if info.parents else None
    return False
