"""The repository: entry point of every hangar operation."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
import warnings
from typing import Any, Optional, Union

from hangar import __version__
from hangar.checkout import ReaderCheckout, WriterCheckout
from hangar.errors import (
    BranchExistsError,
    BranchNotFoundError,
    BranchSwitchWarning,
    CommitNotFoundError,
    CurrentBranchError,
    DirtyStagingAreaError,
    InvalidArgumentError,
    NoCommitsYetError,
    NothingToCommitError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    RepositoryNotInitializedError,
    StagingBaseMovedError,
    UnmergedBranchError,
    WriterLockError,
)
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import ObjectBatch
from hangar.plumbing.pids import pid_alive
from hangar.plumbing.trees import empty_tree_id
from hangar.records.keys import validate_branch_name
from hangar.records.snapshot import Snapshot
from hangar.records.staging import StagingState
from hangar.store import TensorStore
from hangar.store.packs import LocalPackStorage

HANGAR_DIR = ".hangar"
LOCK_FILE = "writer.lock"
#: the branch the command line last worked on (``hangar checkout``); see :meth:`Repository.remember_cli_branch`
CLI_BRANCH_FILE = "cli_branch"


def _pid_namespace() -> Optional[str]:
    """This process's pid namespace (``pid:[inode]``), or None where /proc does not say (not Linux)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


class Repository:
    """Launching point for all user operations in a Hangar repository.

    Parameters
    ----------
    path : str or os.PathLike
        Existing directory holding (or to hold) the repository.
    exists : bool
        When True (default) a ``UserWarning`` is raised if no repository is there yet.
    """

    def __init__(self, path: Union[str, os.PathLike], exists: bool = True) -> None:
        path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(path):
            raise RepositoryNotFoundError(f"repository path {path!r} is not an existing directory")
        self._path = path
        self._hangar_dir = os.path.join(path, HANGAR_DIR)
        self._git_repo: Optional[GitRepo] = None
        self._store_obj: Optional[TensorStore] = None
        self._remote = None
        if not self.initialized and exists:
            warnings.warn(f"no hangar repository at {path!r}; call Repository.init() to create one",
                          UserWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"Repository(path={self._path!r}, initialized={self.initialized})"

    # ------------------------------------------------------------ internals
    @property
    def _git(self) -> GitRepo:
        if self._git_repo is None:
            if not self.initialized:
                raise RepositoryNotInitializedError(
                    f"no hangar repository at {self._path!r}; call Repository.init() first")
            self._git_repo = GitRepo(self._hangar_dir)
        return self._git_repo

    def _store(self) -> TensorStore:
        if self._store_obj is None:
            self._git  # noqa: B018 - raises when not initialized
            self._store_obj = TensorStore(LocalPackStorage(os.path.join(self._hangar_dir, "data"),
                                                              cache_dir=os.path.join(self._hangar_dir, "cache")))
            from hangar.remote.objectdata import attach_lazy_reads

            attach_lazy_reads(self._git, self._hangar_dir, self._store_obj)
        return self._store_obj

    def _user(self) -> tuple[str, str]:
        return self._git.config_get("user.name", "") or "", self._git.config_get("user.email", "") or ""

    def _empty_tree_id(self) -> str:
        return empty_tree_id(ObjectBatch()).hex()

    def _staging_state(self) -> Optional[StagingState]:
        return StagingState.load(self._hangar_dir)

    def _writer_branch(self) -> str:
        state = self._staging_state()
        return state.branch if state else "master"

    # ------------------------------------------------------------ properties
    @property
    def path(self) -> str:
        """Directory of the repository (without ``.hangar``). Read-only."""
        return self._path

    @property
    def initialized(self) -> bool:
        """True when a hangar repository exists at ``path``."""
        return os.path.isfile(os.path.join(self._hangar_dir, "HEAD"))

    @property
    def version(self) -> str:
        """Version of hangar that wrote the repository."""
        return self._git.config_get("hangar.version", __version__) or __version__

    @property
    def writer_branch(self) -> str:
        """Branch the staging area (the next writer checkout) is based on; ``'master'`` at first.

        The command line uses it as the "current branch", like git's ``HEAD``.
        """
        return self._writer_branch()

    def remember_cli_branch(self, branch: str) -> None:
        """Record ``branch`` as the command line's current branch (the ``hangar`` CLI calls this).

        A writer checkout that later moves the staging area away from that branch warns
        ``BranchSwitchWarning``. Scripts that never use the command line get no warning:
        moving the writer's branch is the Python API's documented behaviour (as in Hangar 0.3).
        """
        path = os.path.join(self._hangar_dir, CLI_BRANCH_FILE)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(branch)
        os.replace(tmp, path)

    def _cli_branch(self) -> Optional[str]:
        try:
            with open(os.path.join(self._hangar_dir, CLI_BRANCH_FILE)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    @property
    def writer_lock_held(self) -> bool:
        """True when a writer checkout holds the repository's writer lock."""
        self._git  # noqa: B018
        return os.path.exists(os.path.join(self._hangar_dir, LOCK_FILE))

    @property
    def remote(self):  # noqa: ANN201
        """Accessor for remote operations (:class:`hangar.remotes.Remotes`)."""
        from hangar.remotes import Remotes

        if self._remote is None:
            self._remote = Remotes(self)
        return self._remote

    # ------------------------------------------------------------------ init
    def init(self, user_name: str, user_email: str, *, remove_old: bool = False) -> str:
        """Create a repository at ``path``; return the path of its ``.hangar`` directory.

        The new repository is built in a temporary directory and moved into place only
        when complete, so a failed ``init`` leaves no ``.hangar`` (and, with
        ``remove_old=True``, leaves the old repository as it was).

        Parameters
        ----------
        user_name : str
            Name recorded as the author of every commit.
        user_email : str
            Email address recorded with it.
        remove_old : bool, keyword-only
            DEVELOPER USE ONLY: replace an existing repository at ``path``. Default False.

        Returns
        -------
        str
            Path of the ``.hangar`` directory created.

        Raises
        ------
        FileExistsError
            If a repository exists and ``remove_old`` is False.
        ValueError
            If ``user_name`` or ``user_email`` is not a non-empty str, or contains control
            characters, ``<`` or ``>`` (git cannot record them in a commit).
        PermissionError
            If ``remove_old`` is True and a writer checkout holds the writer lock.
        """
        for what, value in (("user_name", user_name), ("user_email", user_email)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgumentError(f"{what} must be a non-empty str, not {value!r}")
            bad = sorted({c for c in value if c in "<>" or ord(c) < 32 or ord(c) == 127})
            if bad:  # git cannot record them in a commit signature (a newline corrupts every commit)
                raise InvalidArgumentError(f"{what} {value!r} contains {bad}; control characters, '<' and '>' "
                                           "cannot appear in a commit author")
        if self.initialized:
            if not remove_old:
                raise RepositoryExistsError(f"a hangar repository already exists at {self._hangar_dir!r}; "
                                            "pass remove_old=True to replace it")
            if self.writer_lock_held:
                raise WriterLockError("cannot remove the repository while a writer checkout holds its lock")
        elif os.path.lexists(self._hangar_dir) and not remove_old:
            raise RepositoryExistsError(f"{self._hangar_dir!r} exists but holds no hangar repository; move it away "
                                        "or pass remove_old=True to replace it")
        self._git_repo = None
        self._store_obj = None
        # build the new repository aside; the old one (if any) is removed only once it is complete
        tmp = self._hangar_dir + f".init-{uuid.uuid4().hex[:8]}"
        try:
            git = GitRepo.init(tmp)
            git.config_set("user.name", user_name)
            git.config_set("user.email", user_email)
            git.config_set("hangar.version", __version__)
            git.config_set("core.logallrefupdates", "false")
            os.makedirs(os.path.join(tmp, "data"), exist_ok=True)
            trash = None
            if os.path.lexists(self._hangar_dir):
                trash = self._hangar_dir + f".old-{uuid.uuid4().hex[:8]}"
                os.replace(self._hangar_dir, trash)
            os.replace(tmp, self._hangar_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if trash is not None:
            if os.path.isdir(trash) and not os.path.islink(trash):
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.unlink(trash)
        return self._hangar_dir

    # ----------------------------------------------------------- writer lock
    def _acquire_writer_lock(self, timeout: Optional[float] = None, owner: Optional[str] = None) -> str:
        if timeout:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while True:
                try:
                    return self._acquire_writer_lock()
                except WriterLockError:
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.1)
        owner = owner or f"{uuid.uuid4().hex}"
        path = os.path.join(self._hangar_dir, LOCK_FILE)
        info = {"owner": owner, "pid": os.getpid(), "host": socket.gethostname(), "pidns": _pid_namespace(),
                "since": time.time()}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = self.writer_lock_holder
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
            alive = holder.get("alive") if holder else None
            if alive is False:
                err = WriterLockError(
                    f"the writer lock of {self._path!r} is held by {who}, which is no longer running (it died "
                    "without closing its writer checkout): release the stale lock with "
                    "repo.force_release_writer_lock()")
            elif alive:
                err = WriterLockError(
                    f"the writer lock of {self._path!r} is held by {who}, which is running: close that writer "
                    "checkout (or wait for it: repo.checkout(write=True, timeout=SECONDS))")
            else:
                err = WriterLockError(
                    f"the writer lock of {self._path!r} is held by {who}; close that writer checkout, or if it "
                    "is dead call repo.force_release_writer_lock()")
            err.holder_alive = alive  # type: ignore[attr-defined]  # an extra attribute the CLI reads
            raise err from None
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return owner

    def _check_writer_lock(self, owner: str, state: StagingState) -> None:
        """Raise ``WriterLockError`` unless the writer checkout ``owner`` still holds the writer lock.

        A lock force-released while its checkout stayed open is taken again when it is free
        and no other writer saved a staging state meanwhile (``state`` is the one the checkout
        last saved); else the old checkout must not save its staging state or move a branch
        over that writer's work, which it does not see.
        """
        path = os.path.join(self._hangar_dir, LOCK_FILE)
        try:
            with open(path) as f:
                held = json.load(f)
        except FileNotFoundError:
            self._acquire_writer_lock(owner=owner)
            now = self._staging_state()
            if now is not None and (now.branch, now.base, now.tree) == (state.branch, state.base, state.tree):
                return
            self._release_writer_lock(owner)
            held = {}
        except (OSError, ValueError):  # being written by a new holder
            held = {}
        if held.get("owner") != owner:
            raise WriterLockError(
                f"the writer lock of {self._path!r} was force-released while this writer checkout was open and "
                "another writer holds it or has used it; nothing was written (this checkout's staged changes are not "
                "saved). Close this checkout and open a new one when the other writer is done")

    def _release_writer_lock(self, owner: str) -> None:
        path = os.path.join(self._hangar_dir, LOCK_FILE)
        try:
            with open(path) as f:
                held = json.load(f)
        except (OSError, ValueError):
            return
        if held.get("owner") == owner:
            os.unlink(path)

    @property
    def writer_lock_holder(self) -> Optional[dict]:
        """Who holds the writer lock: ``{'pid', 'host', 'since', 'alive'}``, or None when it is free.

        ``alive`` is True or False when the holder runs on this host (its pid is checked), and
        None when that cannot be told (another host, or an unreadable lock file).
        """
        self._git  # noqa: B018
        path = os.path.join(self._hangar_dir, LOCK_FILE)
        try:
            with open(path) as f:
                held = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": None, "since": None, "alive": None}
        pid, host = held.get("pid"), held.get("host")
        alive: Optional[bool] = None
        # a pid names a process only in its pid namespace: a container with the host's hostname
        # (docker --network host) has its own, where os.kill would call a running writer dead
        if (host == socket.gethostname() and held.get("pidns") == _pid_namespace() and isinstance(pid, int)
                and pid > 0):
            alive = pid_alive(pid)
        return {"pid": pid, "host": host, "since": held.get("since"), "alive": alive}

    def force_release_writer_lock(self) -> bool:
        """Remove the writer lock left behind by an unclosed writer. Never use it while a
        writer is active. Returns True when the lock is released.

        Warns ``ResourceWarning`` (as Hangar 0.3 did): whoever held the lock loses it.

        Branch ref lock files (``refs/heads/*.lock``) a writer killed mid-update left behind
        are removed too: only the writer moves branches, so with its lock gone they are stale.
        """
        path = os.path.join(self._hangar_dir, LOCK_FILE)
        self._git  # noqa: B018
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        stale = [os.path.join(self._hangar_dir, n) for n in ("HEAD.lock", "packed-refs.lock")]
        for top, _, files in os.walk(os.path.join(self._hangar_dir, "refs", "heads")):
            stale += [os.path.join(top, f) for f in files if f.endswith(".lock")]
        for p in stale:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        warnings.warn("the writer lock was force-released", ResourceWarning, stacklevel=2)
        return True

    def reset_staging_area(self) -> str:
        """Drop every staged change, whatever commit they are based on; return the new base.

        Unlike :meth:`hangar.checkout.WriterCheckout.reset_staging_area` this needs no writer
        checkout, so it also works when none can be opened because the staging area is based
        on a commit its branch no longer points at (``StagingBaseMovedError``). The staging
        area is then based on the branch's current head.

        Returns
        -------
        str
            The commit the staging area is now based on ('' before the first commit).

        Raises
        ------
        RuntimeError
            (``NothingToCommitError``) If nothing is staged.
        PermissionError
            If a writer checkout holds the writer lock.
        """
        git = self._git
        owner = self._acquire_writer_lock()
        try:
            state = self._staging_state()
            head = git.branch_head(state.branch) if state is not None else None
            if state is None or state.is_clean(git) or (head is not None and state.tree == git.commit_tree_id(head)):
                raise NothingToCommitError("nothing to reset: the staging area has no changes")
            StagingState(state.branch, head, git.commit_tree_id(head) if head else None).save(self._hangar_dir)
            return head or ""
        finally:
            self._release_writer_lock(owner)

    # -------------------------------------------------------------- checkout
    def checkout(self, write: bool = False, *, branch: str = "master",
                 commit: str = "", timeout: Optional[float] = None) -> Union[ReaderCheckout, WriterCheckout]:
        """Check out the repository for reading (any commit or branch) or writing (a branch).

        Any number of readers may be open; only one writer (it holds the writer lock until
        ``close()``). The writer's staging area is based on the head of ``branch``.

        Parameters
        ----------
        write : bool
            True for the write-enabled checkout; default False (read-only).
        branch : str, keyword-only
            Branch whose head to check out; default ``'master'``. Readers also accept a
            fetched remote branch such as ``'origin/master'``.
        commit : str, keyword-only
            Commit (full or abbreviated hash) to read; takes precedence over ``branch``.
            Used only by read-only checkouts.
        timeout : float, optional, keyword-only
            With ``write=True``: seconds to wait for another writer to release the lock
            (polled); default ``None`` fails at once if the lock is held.

        Returns
        -------
        ReaderCheckout or WriterCheckout

        Raises
        ------
        ValueError
            If ``write`` is not a bool, the branch or commit does not exist, or ``timeout``
            is not a non-negative number.
        PermissionError
            If ``write`` is True and another writer holds the lock (past ``timeout``).
        """
        if not isinstance(write, bool):
            raise InvalidArgumentError(f"write must be a bool, not {write!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout >= 0):
            raise InvalidArgumentError(f"timeout must be a non-negative number of seconds or None, not {timeout!r}")
        git = self._git
        if not write:
            if commit:
                resolved = git.resolve_commit(commit)
                if resolved is None:
                    raise CommitNotFoundError(f"no commit {commit!r} in the repository")
                return ReaderCheckout(self, resolved)
            # a local branch, else a remote one such as 'origin/master'
            head = git.branch_or_remote_head(branch) if isinstance(branch, str) else None
            if head is None:
                if isinstance(branch, str) and branch in self.list_branches():  # unborn: listed, no commit
                    raise NoCommitsYetError(f"branch {branch!r} has no commits yet; nothing to read until "
                                            "the first commit")
                names = git.all_branches()
                raise BranchNotFoundError(f"no branch named {branch!r}; branches: {names}"
                                          if names else "the repository has no commits yet")
            return ReaderCheckout(self, head)
        owner = self._acquire_writer_lock(timeout)
        try:
            state = self._writer_state(branch)
            return WriterCheckout(self, state, owner)
        except BaseException:
            self._release_writer_lock(owner)
            raise

    def _writer_state(self, branch: str) -> StagingState:
        git = self._git
        validate_branch_name(branch)
        head = git.branch_head(branch)
        if head is None and git.branches():
            raise BranchNotFoundError(f"no branch named {branch!r}; branches: {git.branches()}")
        state = self._staging_state()
        if state is not None and (state.branch != branch or state.base != head):
            clean = state.is_clean(git)
            if not clean:  # a commit that moved its branch but died before saving the staging state
                moved = git.branch_head(state.branch)
                clean = moved is not None and state.tree == git.commit_tree_id(moved)
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
            if state.branch != branch and state.branch == self._cli_branch():
                warnings.warn(
                    f"the writer checkout moves the staging area from branch {state.branch!r} to {branch!r}: "
                    f"commits go to {branch!r}, and {branch!r} becomes the current branch of the hangar "
                    f"command line (pass branch={state.branch!r} to stay on it)", BranchSwitchWarning,
                    stacklevel=3)
            state = None
        if state is None:
            state = StagingState(branch, head, git.commit_tree_id(head) if head else None)
            state.save(self._hangar_dir)
        return state

    # --------------------------------------------------------------- branches
    def create_branch(self, name: str, base_commit: Optional[str] = None) -> str:
        """Create branch ``name`` at ``base_commit`` (default: the writer branch's head).

        Creating a branch checks nothing out; use :meth:`checkout` to work on it.

        Parameters
        ----------
        name : str
            Name of the new branch (ascii letters, digits, ``-._``, ``/`` between parts).
        base_commit : str, optional
            Commit (full or abbreviated hash) the branch starts at.

        Returns
        -------
        str
            Name of the branch created.

        Raises
        ------
        ValueError
            If the name is invalid or taken, or the base commit does not exist.
        RuntimeError
            (``NoCommitsYetError``, also a ``ValueError``) if the repository has no commits
            yet and no ``base_commit`` is given.
        """
        git = self._git
        validate_branch_name(name)
        if git.branch_head(name) is not None:
            raise BranchExistsError(f"branch {name!r} already exists")
        if name in git.remote_branches():
            raise BranchExistsError(f"branch name {name!r} is taken by a fetched remote branch; pick another name "
                                    f"(e.g. create_branch({name.split('/', 1)[1]!r}, base_commit=...))")
        if base_commit is None:
            base = git.branch_head(self._writer_branch())
            if base is None:
                raise NoCommitsYetError(f"cannot create branch {name!r}: the repository has no commits yet; "
                                        "commit first (repo.checkout(write=True) ... co.commit(message))")
        else:
            base = git.resolve_commit(base_commit)
            if base is None:
                raise CommitNotFoundError(f"no commit {base_commit!r} in the repository")
        git.set_branch(name, base)
        return name

    def list_branches(self) -> list[str]:
        """Names of every branch in the repository.

        Returns
        -------
        List[str]
            Local branch names and the fetched remote branches (as ``'<remote>/<branch>'``,
            what ``repo.remote.fetch`` returns), sorted by name together, as in Hangar 0.3:
            ``['master', 'origin/master', 'testbranch']``. Remote branches can be read,
            logged, diffed and merged from, but not written to. A local branch with the same
            name as a remote one (created before the fetch) shadows it and is listed once.
            Before the first commit the writer branch (``'master'`` after ``init``) is listed
            although git holds no ref for it yet, as in Hangar 0.3.
        """
        branches = self._git.all_branches()
        writer_branch = self._writer_branch()
        if writer_branch not in branches and self._git.branch_head(writer_branch) is None:
            # an unborn branch: no local branch can exist before the first commit
            branches = sorted([*branches, writer_branch])
        return branches

    def remove_branch(self, name: str, *, force_delete: bool = False) -> str:
        """Delete branch ``name``; return its name.

        Raises
        ------
        ValueError
            If no such branch exists, or its commits are not merged into another branch
            (pass ``force_delete=True`` to delete it anyway).
        PermissionError
            If it is the branch the staging area (writer) is based on.
        """
        git = self._git
        head = git.branch_head(name) if isinstance(name, str) else None
        if head is None and isinstance(name, str) and name in git.remote_branches():
            return self._remove_remote_branch(name, force_delete)
        if head is None:
            raise BranchNotFoundError(f"no branch named {name!r}; branches: {self.list_branches()}")
        if name == self._writer_branch():
            raise CurrentBranchError(f"branch {name!r} is the current branch (the writer's branch: the staging area "
                                     "and the next commit are based on it); make another branch current first: "
                                     "repo.checkout(write=True, branch=OTHER)")
        if not force_delete and not self._held_elsewhere(f"refs/heads/{name}", head):
            raise UnmergedBranchError(f"branch {name!r} has commits no other branch holds; merge it first "
                                      "or pass force_delete=True")
        git.delete_ref(f"refs/heads/{name}")
        return name

    def _remove_remote_branch(self, name: str, force_delete: bool) -> str:
        """Forget fetched remote branch ``name`` (``origin/dev``); the server is not touched."""
        ref = f"refs/remotes/{name}"
        if not force_delete and not self._held_elsewhere(ref, self._git.refs("refs/remotes/")[name]):
            raise UnmergedBranchError(f"remote branch {name!r} has commits no other branch holds; merge it "
                                      "first or pass force_delete=True")
        self._git.delete_ref(ref)
        return name

    def _held_elsewhere(self, ref: str, head: str) -> bool:
        """Whether a branch other than ``ref`` (local or fetched remote) contains commit ``head``."""
        git = self._git
        others = [h for prefix in ("refs/heads/", "refs/remotes/")
                  for b, h in git.refs(prefix).items() if prefix + b != ref]
        return any(git.is_ancestor(head, h) for h in others)

    # -------------------------------------------------------------------- log
    def _start_commit(self, branch: Optional[str], commit: Optional[str]) -> Optional[str]:
        git = self._git
        if commit:
            resolved = git.resolve_commit(commit)
            if resolved is None:
                raise CommitNotFoundError(f"no commit {commit!r} in the repository")
            return resolved
        name = branch or self._writer_branch()
        head = git.branch_or_remote_head(name) if isinstance(name, str) else None
        if head is None and branch:
            raise BranchNotFoundError(f"no branch named {branch!r}")
        return head

    def log(self, branch: Optional[str] = None, commit: Optional[str] = None, *,
            return_contents: bool = False, show_time: bool = False, show_user: bool = False) -> Optional[dict]:
        """Print the commit graph (like ``git log --graph --oneline``) from a branch or commit.

        Parameters
        ----------
        branch : str, optional
            Branch whose head starts the log; default: the writer branch.
        commit : str, optional
            Commit that starts the log (takes precedence over ``branch``).
        return_contents : bool, keyword-only
            Return the graph instead of printing it.
        show_time, show_user : bool, keyword-only
            When printing, show each commit's time / author.

        Returns
        -------
        dict or None
            With ``return_contents=True``: ``{'head', 'order', 'ancestors', 'specs'}`` (commit
            order newest first, each commit's parents, and each commit's message, time, user
            and email); otherwise None.

        Raises
        ------
        ValueError
            If the branch or commit does not exist.
        """
        from hangar.records.history import format_graph, history

        start = self._start_commit(branch, commit)
        if start is None:
            contents: dict[str, Any] = {"head": None, "order": [], "ancestors": {}, "specs": {}}
            if return_contents:
                return contents
            print("(no commits)")
            return None
        contents = history(self._git, start)
        if return_contents:
            return contents
        branch_heads: dict[str, list[str]] = {}
        for b, h in self._git.refs("refs/heads/").items():
            branch_heads.setdefault(h, []).append(b)
        for b, h in self._git.refs("refs/remotes/").items():
            branch_heads.setdefault(h, []).append(b)
        print(format_graph(contents, branch_heads, show_time=show_time, show_user=show_user))
        return None

    def summary(self, *, branch: str = "", commit: str = "") -> None:
        """Print a summary of the repository contents at a branch or commit.

        Parameters
        ----------
        branch : str, keyword-only
            Branch whose head to summarize; default: the writer branch.
        commit : str, keyword-only
            Commit to summarize (takes precedence over ``branch``).

        Raises
        ------
        ValueError
            If the branch or commit does not exist.
        """
        start = self._start_commit(branch or None, commit or None)
        lines = [f"Repository: {self._path}", f"hangar version: {self.version}",
                 f"branches: {', '.join(self.list_branches()) or '(none)'}"]
        if start is None:
            lines.append("(no commits)")
            print("\n".join(lines))
            return
        info = self._git.commit_info(start)
        snap = Snapshot(self._git, info.tree)
        lines += [f"commit: {start}", f"  author: {info.author} <{info.email}>",
                  f"  time: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(info.time))} UTC",
                  f"  message: {info.message}", f"arraysets: {len(snap.arrayset_names())}"]
        for name in snap.arrayset_names():
            s = snap.schema(name)
            assert s is not None
            lines.append(f"  {name}: {snap.samples(name).count()} samples, dtype {s.np_dtype}, "
                         f"{'max ' if s.variable_shape else ''}shape {s.shape}, "
                         f"named_samples={s.named_samples}, backend={s.backend}")
        lines.append(f"metadata: {snap.metadata.count()} keys")
        print("\n".join(lines))

    # ------------------------------------------------------------- integrity
    def verify(self):  # noqa: ANN201 - hangar.integrity.VerifyReport
        """Check every record and re-hash every sample reachable from any ref or the staging area.

        Reads every git object of every commit (libgit2 re-hashes each), parses every
        schema and pointer, and re-hashes each distinct sample's bytes once.

        Returns
        -------
        hangar.integrity.VerifyReport
            ``ok`` is True when nothing is wrong; ``corrupt``, ``missing`` and ``records``
            list each problem by arrayset, key and commit.
        """
        from hangar.integrity import verify

        return verify(self)

    def gc(self, *, dry_run: bool = False):  # noqa: ANN201 - hangar.integrity.GcReport
        """Remove git objects and sample bytes that no branch, remote branch or the staging area reaches.

        Reachable data is first rewritten into new packs (durably), then old packs are removed.
        Do not run it while a ``fetch``/``fetch_data``/``clone`` into this repository runs.

        Parameters
        ----------
        dry_run : bool, keyword-only
            Only count what would be removed.

        Returns
        -------
        hangar.integrity.GcReport

        Raises
        ------
        PermissionError
            If a writer checkout holds the writer lock.
        """
        from hangar.integrity import gc

        return gc(self, dry_run=dry_run)

    # ------------------------------------------------------------------ merge
    def merge(self, message: str, master_branch: str, dev_branch: str, *, strategy: Optional[str] = None) -> str:
        """Merge ``dev_branch`` into ``master_branch``; return the new head commit hash.

        Fast-forwards when possible (``message`` is then unused); otherwise writes a 3-way merge
        commit with both heads as parents. Works from records alone (no tensor bytes needed).

        Parameters
        ----------
        message : str
            Message of the merge commit.
        master_branch, dev_branch : str
            Branch to merge into, and branch to merge.
        strategy : {None, 'ours', 'theirs'}, keyword-only
            How to settle conflicts: None (default) refuses a conflicting merge; 'ours' keeps
            master's side of each conflict, 'theirs' takes dev's.

        Raises
        ------
        ValueError
            Unknown branch, uncommitted changes on ``master_branch``, or conflicts (the
            message lists them; nothing changes).
        PermissionError
            If a writer checkout holds the writer lock.
        """
        from hangar.merge import merge_branches

        return merge_branches(self, message, master_branch, dev_branch, strategy=strategy)

    # ----------------------------------------------------------------- clone
    def clone(self, user_name: str, user_email: str, remote_address: str, *,
              remove_old: bool = False, endpoint_url: Optional[str] = None) -> str:
        """Clone the repository served at ``remote_address`` (``IP:PORT``) into ``path``.

        Brings the commits (records only) of the server's ``master`` branch and their
        history, as remote branch ``origin/master``, and creates local ``master`` from it
        (as Hangar 0.3 did: fetch other branches with ``repo.remote.fetch``). Sample bytes
        stay on the server (remote references) until ``repo.remote.fetch_data`` brings them.

        Parameters
        ----------
        user_name, user_email : str
            Author recorded in the commits made in the clone.
        remote_address : str
            ``IP:PORT`` of a running ``hangar server``, or the git URL of a data remote's
            history (a bare repository's path, ``file://``, ``ssh://``, ``git://``, ``https://``):
            its data location (``s3://...``) is read from the history (ref ``refs/hangar/data``),
            and samples are read from there lazily or with ``fetch_data``.
        remove_old : bool, keyword-only
            DEVELOPER USE ONLY: replace a repository existing at ``path``. Default False.
        endpoint_url : str, optional, keyword-only
            For a data remote: the object store's URL (default: ``AWS_ENDPOINT_URL``, else the
            one recorded by the pusher, else AWS).

        Returns
        -------
        str
            Name of the master branch of the clone (``'master'``).

        Raises
        ------
        FileExistsError
            If a repository exists at ``path`` and ``remove_old`` is False.
        ValueError
            If ``remote_address`` is not ``IP:PORT`` or the user is invalid.
        ConnectionError
            If the server cannot be reached (nothing is created then).
        """
        from hangar.remotes import clone_into

        return clone_into(self, user_name, user_email, remote_address, remove_old=remove_old,
                          endpoint_url=endpoint_url)
