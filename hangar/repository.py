"""The repository: entry point of every hangar operation."""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, NamedTuple, Optional, Union

from hangar.checkout import ReaderCheckout, WriterCheckout
from hangar.core import RepositoryCore
from hangar.errors import (
    BranchExistsError,
    BranchNotFoundError,
    CommitNotFoundError,
    CurrentBranchError,
    InvalidArgumentError,
    NoCommitsYetError,
    NothingToCommitError,
    RepositoryNotFoundError,
    RepositoryNotInitializedError,
    UnmergedBranchError,
)
from hangar.integrity import GcReport, VerifyReport, gc, repair, verify
from hangar.merge import merge_branches
from hangar.plumbing.paths import CLI_BRANCH_FILE, HANGAR_DIR, WRITER_LOCK_FILE
from hangar.records.history import commit_summary_lines, format_graph, history
from hangar.records.keys import validate_branch_name
from hangar.remotes import Remotes, clone_into
from hangar.store import TensorStore

#: re-exported names (they moved to hangar.core, hangar.errors and hangar.plumbing.paths)
LOCK_FILE = WRITER_LOCK_FILE
__all__ = ["CLI_BRANCH_FILE", "HANGAR_DIR", "LOCK_FILE", "Repository", "RepositoryNotInitializedError",
           "StagingStatus"]


class StagingStatus(NamedTuple):
    """What :meth:`Repository.staging_status` reports of the staging area."""

    branch: str
    base: Optional[str]
    tree: Optional[str]
    status: str


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
        self._core = RepositoryCore(path)
        self._remote: Optional[Remotes] = None
        if not self.initialized and exists:
            warnings.warn(f"no hangar repository at {path!r}; call Repository.init() to create one",
                          UserWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"Repository(path={self.path!r}, initialized={self.initialized})"

    # ------------------------------------------------------------ properties
    @property
    def path(self) -> str:
        """Directory of the repository (without ``.hangar``). Read-only."""
        return self._core.path

    @property
    def initialized(self) -> bool:
        """True when a hangar repository exists at ``path``."""
        return self._core.initialized

    @property
    def version(self) -> str:
        """Version of hangar that wrote the repository."""
        return self._core.version

    @property
    def writer_branch(self) -> str:
        """Branch the staging area (the next writer checkout) is based on; ``'master'`` at first.

        The command line uses it as the "current branch", like git's ``HEAD``.
        """
        return self._core.writer_branch()

    def remember_cli_branch(self, branch: str) -> None:
        """Record ``branch`` as the command line's current branch (the ``hangar`` CLI calls this).

        A writer checkout that later moves the staging area away from that branch warns
        ``BranchSwitchWarning``. Scripts that never use the command line get no warning:
        moving the writer's branch is the Python API's documented behaviour (as in Hangar 0.3).
        """
        self._core.remember_cli_branch(branch)

    @property
    def writer_lock_held(self) -> bool:
        """True when a writer checkout holds the repository's writer lock."""
        self._core.git  # noqa: B018
        return self._core.lock.held

    @property
    def remote(self) -> Remotes:
        """Accessor for remote operations (:class:`hangar.remotes.Remotes`)."""
        if self._remote is None:
            self._remote = Remotes(self._core)
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
        self._core.init(user_name, user_email, remove_old)
        return self._core.hangar_dir

    # ----------------------------------------------------------- writer lock
    @property
    def writer_lock_holder(self) -> Optional[dict]:
        """Who holds the writer lock: ``{'pid', 'host', 'since', 'alive'}``, or None when it is free.

        ``alive`` is True or False when the holder runs on this host (its pid is checked), and
        None when that cannot be told (another host, or an unreadable lock file).
        """
        self._core.git  # noqa: B018
        return self._core.lock.holder()

    def force_release_writer_lock(self, *, holder: Optional[dict] = None) -> bool:
        """Remove the writer lock left behind by an unclosed writer. Never use it while a
        writer is active. Returns True when the lock is released.

        Warns ``ResourceWarning`` (as Hangar 0.3 did): whoever held the lock loses it.

        Branch ref lock files (``refs/heads/*.lock``) a writer killed mid-update left behind
        are removed too: only the writer moves branches, so with its lock gone they are stale.

        Parameters
        ----------
        holder : dict, optional, keyword-only
            What :attr:`writer_lock_holder` returned when the caller decided to release the
            lock (e.g. because its pid is dead). The lock is then removed only while that
            holder still has it, in one step with the check: a writer that took the lock
            since keeps it, and False is returned (nothing removed, no warning).

        Returns
        -------
        bool
            True when the lock was released; False when ``holder`` no longer holds it.
        """
        core = self._core
        core.git  # noqa: B018
        # the stale ref locks go under the lock's guard: a writer acquiring meanwhile could
        # otherwise have its own fresh ref lock removed mid-update
        if not core.lock.force_release(holder, cleanup=core.remove_stale_ref_locks):
            return False
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
        core = self._core
        git = core.git
        with core.lock:
            state = core.staging_state()
            head = git.branch_head(state.branch) if state is not None else None
            if state is None or state.is_clean(git) or (head is not None and state.tree == git.commit_tree_id(head)):
                raise NothingToCommitError("nothing to reset: the staging area has no changes")
            core.base_staging_on(state.branch, head)
            return head or ""

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
        core = self._core
        git = core.git
        if not write:
            if commit:
                resolved = git.resolve_commit(commit)
                if resolved is None:
                    raise CommitNotFoundError(f"no commit {commit!r} in the repository")
                return ReaderCheckout(core, resolved)
            # a local branch, else a remote one such as 'origin/master'
            head = git.branch_or_remote_head(branch) if isinstance(branch, str) else None
            if head is None:
                if isinstance(branch, str) and branch in self.list_branches():  # unborn: listed, no commit
                    raise NoCommitsYetError(f"branch {branch!r} has no commits yet; nothing to read until "
                                            "the first commit")
                names = git.all_branches()
                raise BranchNotFoundError(f"no branch named {branch!r}; branches: {names}"
                                          if names else "the repository has no commits yet")
            return ReaderCheckout(core, head)
        owner = core.lock.acquire(timeout)
        try:
            state = core.writer_state(branch)
            return WriterCheckout(core, state, owner)
        except BaseException:
            core.lock.release(owner)
            raise

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
        git = self._core.git
        validate_branch_name(name)
        if git.branch_head(name) is not None:
            raise BranchExistsError(f"branch {name!r} already exists")
        if name in git.remote_branches():
            raise BranchExistsError(f"branch name {name!r} is taken by a fetched remote branch; pick another name "
                                    f"(e.g. create_branch({name.split('/', 1)[1]!r}, base_commit=...))")
        if base_commit is None:
            base = git.branch_head(self._core.writer_branch())
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
        git = self._core.git
        branches = git.all_branches()
        writer_branch = self._core.writer_branch()
        if writer_branch not in branches and git.branch_head(writer_branch) is None:
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
        git = self._core.git
        head = git.branch_head(name) if isinstance(name, str) else None
        if head is None and isinstance(name, str) and name in git.remote_branches():
            return self._remove_remote_branch(name, force_delete)
        if head is None:
            raise BranchNotFoundError(f"no branch named {name!r}; branches: {self.list_branches()}")
        if name == self._core.writer_branch():
            raise CurrentBranchError(f"branch {name!r} is the current branch (the writer's branch: the staging area "
                                     "and the next commit are based on it); make another branch current first: "
                                     "repo.checkout(write=True, branch=OTHER)")
        if not force_delete and not self._core.held_elsewhere(f"refs/heads/{name}", head):
            raise UnmergedBranchError(f"branch {name!r} has commits no other branch holds; merge it first "
                                      "or pass force_delete=True")
        git.delete_ref(f"refs/heads/{name}")
        return name

    def _remove_remote_branch(self, name: str, force_delete: bool) -> str:
        """Forget fetched remote branch ``name`` (``origin/dev``); the server is not touched."""
        ref = f"refs/remotes/{name}"
        git = self._core.git
        if not force_delete and not self._core.held_elsewhere(ref, git.refs("refs/remotes/")[name]):
            raise UnmergedBranchError(f"remote branch {name!r} has commits no other branch holds; merge it "
                                      "first or pass force_delete=True")
        git.delete_ref(ref)
        return name

    # ---------------------------------------------------------------- queries
    def branch_head(self, branch: str) -> Optional[str]:
        """Head commit of ``branch``: a local branch, else a fetched remote one (``'origin/master'``).

        Not in Hangar 0.3's API: a query for scripts and the command line, so they need not
        open a checkout to learn a head.

        Parameters
        ----------
        branch : str
            Branch name.

        Returns
        -------
        str or None
            Full hash of the head commit; None when no such branch exists or it has no
            commits yet (the writer branch before the first commit).
        """
        return self._core.branch_head(branch)

    def merge_base(self, a: str, b: str) -> Optional[str]:
        """The best common ancestor of two branches or commits (as ``git merge-base``).

        Not in Hangar 0.3's API; ``merge`` uses it to find what both sides changed.

        Parameters
        ----------
        a, b : str
            Each a branch (local, or fetched remote such as ``'origin/master'``) or a commit
            (full or abbreviated hash); a branch name wins over a hash prefix.

        Returns
        -------
        str or None
            Full hash of the merge base; None when the histories share no commit.

        Raises
        ------
        ValueError
            If ``a`` or ``b`` names no branch with commits and no commit.
        """
        git = self._core.git
        heads = []
        for what in (a, b):
            head = self._core.branch_head(what) or (git.resolve_commit(what) if isinstance(what, str) else None)
            if head is None:
                raise BranchNotFoundError(f"{what!r} names no branch with commits and no commit; branches: "
                                          f"{git.all_branches()}")
            heads.append(head)
        return git.merge_base(*heads)

    def staging_status(self) -> StagingStatus:
        """Summary of the staging area as last saved: its branch, base commit and tree, and whether it is clean.

        Needs no writer checkout (so it answers while another process holds the writer
        lock), but sees only what a writer has saved: an open writer checkout saves its
        changes on ``commit``, ``close`` and ``merge``.

        Returns
        -------
        StagingStatus
            ``(branch, base, tree, status)``: ``branch`` the writer branch; ``base`` the commit
            the staging area is based on (None before the first commit); ``tree`` the staged
            tree's hash (None when nothing was ever staged); ``status`` ``'CLEAN'`` (equal to
            ``base``), ``'DIRTY'`` (changes staged) or ``'STALE'`` (changes staged on a commit
            the branch has moved away from: see :meth:`reset_staging_area`).
        """
        core = self._core
        git = core.git
        state = core.staging_state()
        if state is None:
            return StagingStatus(core.writer_branch(), None, None, "CLEAN")
        head = git.branch_head(state.branch)
        if state.is_clean(git) or (head is not None and state.tree == git.commit_tree_id(head)):
            status = "CLEAN"
        else:
            status = "DIRTY" if head == state.base else "STALE"
        return StagingStatus(state.branch, state.base, state.tree, status)

    # -------------------------------------------------------------------- log
    def _start_commit(self, branch: Optional[str], commit: Optional[str]) -> Optional[str]:
        git = self._core.git
        if commit:
            resolved = git.resolve_commit(commit)
            if resolved is None:
                raise CommitNotFoundError(f"no commit {commit!r} in the repository")
            return resolved
        name = branch or self._core.writer_branch()
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
        start = self._start_commit(branch, commit)
        if start is None:
            contents: dict[str, Any] = {"head": None, "order": [], "ancestors": {}, "specs": {}}
            if return_contents:
                return contents
            print("(no commits)")
            return None
        git = self._core.git
        contents = history(git, start)
        if return_contents:
            return contents
        branch_heads: dict[str, list[str]] = {}
        for b, h in git.refs("refs/heads/").items():
            branch_heads.setdefault(h, []).append(b)
        for b, h in git.refs("refs/remotes/").items():
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
        lines = [f"Repository: {self.path}", f"hangar version: {self.version}",
                 f"branches: {', '.join(self.list_branches()) or '(none)'}"]
        if start is None:
            lines.append("(no commits)")
            print("\n".join(lines))
            return
        lines += commit_summary_lines(self._core.git, start)
        print("\n".join(lines))

    # ------------------------------------------------------------- integrity
    def repair(self, report: VerifyReport, fetch: Callable[[TensorStore, list], object]) -> int:
        """Replace the damaged samples of a :meth:`verify` report with good bytes; return how many were dropped.

        Not in Hangar 0.3's API (``hangar fsck --repair`` uses it). Under the writer lock the
        index records of the damaged samples are dropped, then ``fetch(store, pointers)``
        stores them anew (e.g. :func:`hangar.remote.client.download_into`, which verifies
        every digest). A sample the remote lacks stays a remote reference, never wrong data.

        Raises
        ------
        PermissionError
            If a writer checkout holds the writer lock.
        """
        return repair(self._core, report, fetch)


    def verify(self) -> VerifyReport:
        """Check every record and re-hash every sample reachable from any ref or the staging area.

        Reads every git object of every commit (libgit2 re-hashes each), parses every
        schema and pointer, and re-hashes each distinct sample's bytes once.

        Returns
        -------
        hangar.integrity.VerifyReport
            ``ok`` is True when nothing is wrong; ``corrupt``, ``missing`` and ``records``
            list each problem by arrayset, key and commit.
        """
        return verify(self._core)

    def gc(self, *, dry_run: bool = False) -> GcReport:
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
        return gc(self._core, dry_run=dry_run)

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
        return merge_branches(self._core, message, master_branch, dev_branch, strategy=strategy)

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
        return clone_into(self._core, user_name, user_email, remote_address, remove_old=remove_old,
                          endpoint_url=endpoint_url)
