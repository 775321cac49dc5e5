"""Remotes: talk to a ``hangar server`` (clone, fetch, fetch_data, push).

History moves with git (smart HTTP, through libgit2), so remotes are real git remotes in
``.hangar/config`` and remote branches are ``refs/remotes/<remote>/<branch>``. Sample bytes
move separately: ``fetch``/``clone`` bring records only, and samples whose bytes are not
local are *remote references* until :meth:`Remotes.fetch_data` brings them. ``push`` sends
the bytes the server lacks first and moves the server's branch only once they are durable.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import List, NamedTuple, Optional, Sequence

from hangar import datastore
from hangar.core import RepositoryCore
from hangar.errors import (
    BranchNotFoundError,
    CommitNotFoundError,
    DataRemoteAddressError,
    DivergedHistoryError,
    InvalidArgumentError,
    RemoteAddressError,
    RemoteDataError,
    RemoteExistsError,
    RemoteNotFoundError,
    RemoteNotFoundKeyError,
    RepositoryExistsError,
)
from hangar.plumbing.gitrepo import GitRepo
from hangar.remote import client as _client
from hangar.remote import objectdata
from hangar.transfers import transfer_marker

_ADDRESS_FORMS = "IP:PORT (e.g. '127.0.0.1:50051'), or https://IP:PORT for a server with TLS"


class RemoteInfo(NamedTuple):
    """Name and address (``IP:PORT``, ``https://IP:PORT``, or whatever was added) of a remote."""

    name: str
    address: str


class Remotes:
    """Class which governs access to remote interactor objects (``repo.remote``)."""

    def __init__(self, core: RepositoryCore) -> None:
        self._core = core

    def __repr__(self) -> str:
        return f"Remotes({self.list_all()!r})"

    @property
    def _git(self) -> GitRepo:
        return self._core.git

    def _recorded_address(self, name: str) -> str:
        """The address remote ``name`` was added with (``ValueError`` if there is no such remote)."""
        url = _client.remote_url(self._git, name) if isinstance(name, str) else None
        if url is None:
            raise RemoteNotFoundError(f"no remote named {name!r}; remotes: {[r.name for r in self.list_all()]}")
        return _as_address(url)

    def _address(self, name: str) -> str:
        """The address of remote ``name``, checked for use: a malformed one fails here, at first use."""
        address = self._recorded_address(name)
        try:
            _client.parse_address(address)
        except ValueError:
            raise RemoteAddressError(
                f"remote {name!r} has address {address!r}, which is not of the form {_ADDRESS_FORMS}; "
                f"remove it (repo.remote.remove({name!r})) and add it again with one of those forms") from None
        return address

    # ------------------------------------------------------------- registry
    def add(self, name: str, address: str, *, data: Optional[str] = None, endpoint_url: Optional[str] = None,
            lazy: bool = True) -> RemoteInfo:
        """Add a remote to the repository accessible by ``name`` at ``address``.

        Parameters
        ----------
        name : str
            Name used to refer to the remote server (e.g. ``'origin'``).
        address : str
            ``IP:PORT`` (or ``https://IP:PORT``) where the hangar server runs. Any other
            non-empty string is recorded as given, as ``git remote add`` does (and Hangar
            0.3 did); it fails at first use (``ping``, ``fetch``, ``fetch_data``, ``push``)
            with a :class:`~hangar.errors.RemoteAddressError` naming the expected forms.
            With ``data``: any git URL (a bare repository's path, ``file://``, ``ssh://``,
            ``git://``, ``https://`` of any git host), which holds the history.
        data : str, optional, keyword-only
            ``s3://BUCKET/PREFIX``: make this a *data remote*, whose sample bytes live in that
            bucket prefix of an S3-compatible object store (credentials from the standard AWS
            environment variables or config files; never stored). ``push`` records the location
            in the history (ref ``refs/hangar/data``), so ``Repository.clone`` of the git URL
            alone finds it. See docs/remotes.md.
        endpoint_url : str, optional, keyword-only
            With ``data``: the object store's URL for S3-compatible servers (default: the
            ``AWS_ENDPOINT_URL`` environment variable, else AWS). Recorded (it is no secret).
        lazy : bool, keyword-only
            With ``data``: read samples that are not local from the bucket on first access
            (verified, then kept locally). Default True; False keeps ``fetch_data`` the only way.

        Returns
        -------
        RemoteInfo
            ``(name, address)`` of the remote added.

        Raises
        ------
        ValueError
            If a remote with that name exists already (remove it first to change its
            address), the name is malformed, or the address is not a non-empty str.
        """
        _client.validate_remote_name(name)
        if not isinstance(address, str) or not address:
            raise RemoteAddressError(f"remote address {address!r} is not a non-empty str; use {_ADDRESS_FORMS}")
        if name in _client.remote_names(self._git):
            raise RemoteExistsError(f"a remote named {name!r} already exists at {self._recorded_address(name)}; "
                                    "remove it first to change its address")
        try:
            url = _client.address_url(address)
        except ValueError:  # not one hangar can reach: kept verbatim, refused at first use
            url = address
        if data is not None:
            objectdata.parse_data_url(data)  # checked before anything is recorded
            if os.path.isdir(address):  # a local path: absolute, as git records it for a clone
                url = os.path.abspath(address)
        self._git.add_remote(name, url)
        if data is not None:
            objectdata.record_remote(self._git, name, data, endpoint_url, lazy)
            objectdata.attach_lazy_reads(self._git, self._core.hangar_dir, self._core.store())
        return RemoteInfo(name, self._recorded_address(name))

    def data_location(self, name: str) -> Optional[str]:
        """The data location (``s3://BUCKET/PREFIX``) of remote ``name``; ``None`` for a hangar server.

        Raises
        ------
        ValueError
            If no remote with that name exists.
        """
        self._recorded_address(name)
        return objectdata.data_url(self._git, name)

    def set_lazy_reads(self, name: str, enabled: bool) -> None:
        """Turn lazy reads from data remote ``name`` on or off (``ValueError`` if it is no data remote)."""
        if self.data_location(name) is None:
            raise DataRemoteAddressError(f"remote {name!r} is a hangar server, not a data remote: it serves no "
                                         "lazy reads")
        self._git.config_set(f"remote.{name}.hangarlazy", "true" if enabled else "false")
        objectdata.attach_lazy_reads(self._git, self._core.hangar_dir, self._core.store())

    def remove(self, name: str) -> RemoteInfo:
        """Remove the remote ``name`` (and its remote branches); return what was removed.

        Raises
        ------
        ValueError
            If no remote with that name exists.
        """
        info = RemoteInfo(name, self._recorded_address(name))
        _client.delete_remote(self._git, name)
        return info

    def list_all(self) -> List[RemoteInfo]:
        """Every remote recorded in the repository, as ``RemoteInfo(name, address)``.

        Remotes whose address hangar cannot use (added as any string, or by hand with git)
        are listed too, with the address as recorded.
        """
        return [RemoteInfo(name, _as_address(_client.remote_url(self._git, name) or ""))
                for name in _client.remote_names(self._git)]

    def ping(self, name: str) -> float:
        """Round trip time in seconds of one request to the remote's server.

        Raises
        ------
        KeyError
            If no remote with that name is recorded.
        hangar.errors.RemoteAddressError
            (a ``ValueError``) If the remote's address is not ``IP:PORT`` / ``https://IP:PORT``.
        ConnectionError
            If the server could not be reached.
        """
        try:
            self._recorded_address(name)
        except ValueError as exc:
            raise RemoteNotFoundKeyError(str(exc)) from None
        address = self._address(name)
        with _client.DataClient(address, timeout=10) as dc:
            return _client.timed_ping(dc)

    # --------------------------------------------------------------- fetch
    def fetch(self, remote: str, branch: str) -> str:
        """Retrieve the commits (records only) of ``branch`` on ``remote``.

        They land on the remote branch ``'<remote>/<branch>'``; merge it into a local branch
        to unify histories. Sample bytes are not fetched (see :meth:`fetch_data`).

        Returns
        -------
        str
            Name of the remote branch holding the fetched commits, ``'<remote>/<branch>'``.
            A fetch that has nothing to bring (the server's head is already in local branch
            ``branch``, or already the remote branch's head) changes nothing, warns
            ``UserWarning`` and returns the name of the branch that holds that head:
            ``branch`` itself (as Hangar 0.3 did), else ``'<remote>/<branch>'``.

        Raises
        ------
        ValueError
            If the remote is unknown or the server has no such branch.
        hangar.errors.RemoteAddressError
            (a ``ValueError``) If the remote's address is not ``IP:PORT`` / ``https://IP:PORT``.
        ConnectionError
            If the server could not be reached.
        """
        git = self._git
        data_remote = self._data_url(remote) is not None
        address = None if data_remote else self._address(remote)
        if not isinstance(branch, str) or not branch:
            raise InvalidArgumentError(f"branch must be a non-empty str, not {branch!r}")
        if address is None:  # history on any git URL, data in a bucket
            heads = datastore.remote_heads(git, remote)
        else:
            heads = _client.list_remote_heads(git, remote, address)
        if branch not in heads:
            raise BranchNotFoundError(f"remote {remote!r} has no branch {branch!r}; its branches: {sorted(heads)}")
        theirs = heads[branch]
        local = git.branch_head(branch)
        if local is not None and git.has_object(theirs) and git.is_ancestor(theirs, local):
            warnings.warn(f"fetch changed nothing: the head {theirs[:10]} of branch {branch!r} on remote "
                          f"{remote!r} is already in local branch {branch!r}", UserWarning, stacklevel=2)
            return branch
        if git.remote_branch_head(f"{remote}/{branch}") == theirs:
            warnings.warn(f"fetch changed nothing: remote branch '{remote}/{branch}' is already at the "
                          f"{'remote' if address is None else 'server'}'s head {theirs[:10]}", UserWarning,
                          stacklevel=2)
            return f"{remote}/{branch}"
        with transfer_marker(self._core.hangar_dir, f"fetch {remote}/{branch}"):
            if address is None:
                objectdata.fetch_branches(git, remote, [branch])
            else:
                _client.fetch_branches(git, remote, address, [branch])
        return f"{remote}/{branch}"

    def _data_url(self, remote: str) -> Optional[str]:
        return objectdata.data_url(self._git, remote) if isinstance(remote, str) and remote else None

    def _resolve_start(self, branch: Optional[str], commit: Optional[str]) -> str:
        git = self._git
        if branch and commit:
            raise InvalidArgumentError(f"give a branch or a commit, not both (branch={branch!r}, commit={commit!r})")
        if commit:
            resolved = git.resolve_commit(commit)
            if resolved is None:
                raise CommitNotFoundError(f"no commit {commit!r} in the repository; fetch it first")
            return resolved
        if branch:
            head = git.branch_or_remote_head(branch) if isinstance(branch, str) else None
            if head is None:
                raise BranchNotFoundError(
                    f"no branch {branch!r} in the repository (local or remote, e.g. 'origin/master')")
            return head
        raise InvalidArgumentError("give the branch (e.g. 'origin/master') or the commit whose data to fetch")

    def fetch_data(self, remote: str, branch: Optional[str] = None, commit: Optional[str] = None, *,
                   arrayset_names: Optional[Sequence[str]] = None, max_num_bytes: Optional[int] = None,
                   retrieve_all_history: bool = False) -> List[str]:
        """Retrieve the sample bytes of a commit whose samples are remote references.

        Parameters
        ----------
        remote : str
            Name of the remote to pull the data from.
        branch : str, optional
            Branch (local, or remote such as ``'origin/master'``) whose head is the fetch point.
        commit : str, optional
            Commit whose data to fetch (instead of ``branch``).
        arrayset_names : Sequence[str], optional
            Only fetch samples of these arraysets (default: all).
        max_num_bytes : int, optional
            Fetch at most this many bytes of sample data (counted as uncompressed bytes);
            samples are taken in commit order until the next would exceed the budget.
        retrieve_all_history : bool
            Also fetch the data of every ancestor of the fetch point.

        Returns
        -------
        List[str]
            Hashes of the commits whose data was fetched (newest first).

        Raises
        ------
        ValueError
            If both or neither of ``branch`` and ``commit`` are given, the commit or branch
            does not exist, the remote is unknown, or ``max_num_bytes`` is not a positive int.
        hangar.errors.RemoteAddressError
            (a ``ValueError``) If the remote's address is not ``IP:PORT`` / ``https://IP:PORT``.
        ConnectionError
            If the server could not be reached.
        hangar.errors.CorruptDataError
            If received bytes do not match their digest (nothing of that batch is stored).
        """
        data_url = self._data_url(remote)
        address = self._address(remote) if data_url is None else ""
        start = self._resolve_start(branch, commit)
        if max_num_bytes is not None and (not isinstance(max_num_bytes, int) or isinstance(max_num_bytes, bool)
                                          or max_num_bytes <= 0):
            raise InvalidArgumentError(f"max_num_bytes must be a positive int, not {max_num_bytes!r}")
        names: Optional[set[str]] = None
        if arrayset_names is not None:
            names = {arrayset_names} if isinstance(arrayset_names, str) else set(arrayset_names)
            if not all(isinstance(n, str) for n in names):
                raise InvalidArgumentError(f"arrayset_names must be a sequence of str, not {arrayset_names!r}")
        git = self._git
        commits = [c.id for c in git.walk([start])] if retrieve_all_history else [start]
        if data_url is not None:
            datastore.fetch_data(git, self._core.hangar_dir, self._core.store(), remote, commits, names,
                                 max_num_bytes)
            return commits
        local = self._core.store()
        wanted = _client.missing_pointers(git, local, commits, names, max_num_bytes)
        if wanted:
            # a store of its own: a failed transfer discards only its own unflushed bytes,
            # never what a writer checkout of this repository has staged
            store = self._core.open_store()
            try:
                with transfer_marker(self._core.hangar_dir, f"fetch_data {remote}"), \
                        _client.DataClient(address) as dc:
                    _client.download_into(store, dc, wanted)
                    store.flush()
            finally:
                store.close()
                local.refresh()
        return commits

    # ----------------------------------------------------------------- push
    def push(self, remote: str, branch: str, *, username: str = "", password: str = "") -> str:
        """Push ``branch`` (its commits and the sample bytes they need) to ``remote``.

        Sample bytes the server lacks are uploaded first (the server verifies and stores
        them durably), then the server's branch is created or fast-forwarded.

        Returns
        -------
        str
            Name of the branch pushed. A push that changes nothing (the server's branch
            is already at the local head) warns ``UserWarning`` and returns it too, as
            Hangar 0.3 did.

        Raises
        ------
        ValueError
            If the remote or branch is unknown.
        hangar.errors.RemoteAddressError
            (a ``ValueError``) If the remote's address is not ``IP:PORT`` / ``https://IP:PORT``.
        DivergedHistoryError
            (a ``ValueError``) If the server's branch holds commits the local branch lacks:
            ``fetch`` and merge them, then push again. Nothing on the server changes.
        PermissionError
            If the server restricts push and the credentials are wrong.
        hangar.errors.RemoteDataError
            If the server lacks the bytes of a sample that is only a remote reference here.
        ConnectionError
            If the server could not be reached or dropped the connection.
        """
        git = self._git
        if self._data_url(remote) is not None:
            return datastore.push(git, self._core.hangar_dir, self._core.store(), remote, branch,
                                  username=username, password=password)
        address = self._address(remote)
        head = git.branch_head(branch) if isinstance(branch, str) else None
        if head is None:
            raise BranchNotFoundError(f"no local branch named {branch!r}; branches: {git.branches()}")
        with _client.DataClient(address) as dc:
            dc.check_push_auth(username, password)
            heads = _client.list_remote_heads(git, remote, address)
            theirs = heads.get(branch)
            if theirs is not None and not (git.has_object(theirs) and git.is_ancestor(theirs, head)):
                raise DivergedHistoryError(
                    f"branch {branch!r} on remote {remote!r} ({theirs[:10]}) holds commits not in the local "
                    f"branch ({head[:10]}); fetch it (repo.remote.fetch({remote!r}, {branch!r})), merge, "
                    "then push again")
            if theirs == head:
                git.set_ref(f"refs/remotes/{remote}/{branch}", head)
                warnings.warn(f"push changed nothing: branch {branch!r} on remote {remote!r} is already at "
                              f"{head[:10]}", UserWarning, stacklevel=2)
                return branch
            known = [h for h in heads.values() if git.has_object(h)]
            commits = _client.new_commits(git, head, known)
            # samples in subtrees the server's commits already hold are not even looked at
            pointers = list(_client.commit_pointers(git, commits, known=known).values())
            on_server = dc.have([p.digest for p in pointers])
            to_send = [p for p, has in zip(pointers, on_server) if not has]
            store = self._core.store()
            store.refresh()
            lacking = [p.digest for p, loc in zip(to_send, store.locations([p.digest for p in to_send]))
                       if loc is None]
            if lacking:
                raise RemoteDataError(
                    f"{len(lacking)} samples of branch {branch!r} are remote references here and remote "
                    f"{remote!r} lacks their bytes (e.g. {lacking[0].hex()[:16]}...); fetch_data them first")
            if to_send:
                _client.upload_from(store, dc, to_send, username, password)
        refused = _client.push_branch(git, remote, address, branch, username, password)
        for wait in (0.05, 0.2, 0.8, 2.0):
            if not refused:
                break
            # the server may still be finishing an earlier push of these commits (an interrupted
            # client's receive-pack runs to its end), or hold the branch's lock for a moment
            now = _client.list_remote_heads(git, remote, address).get(branch)
            if now == head:
                refused = None
                break
            if now is not None and not (git.has_object(now) and git.is_ancestor(now, head)):
                break  # really diverged
            time.sleep(wait)
            refused = _client.push_branch(git, remote, address, branch, username, password)
        if refused:  # the branch moved on the server since we looked
            raise DivergedHistoryError(f"remote {remote!r} refused to update branch {branch!r} ({refused}); "
                                       f"fetch it (repo.remote.fetch({remote!r}, {branch!r})), merge, then push again")
        git.set_ref(f"refs/remotes/{remote}/{branch}", head)
        return branch


def _as_address(url: str) -> str:
    """The address a git remote URL was added with: ``IP:PORT`` / ``https://IP:PORT`` for the
    URLs hangar records, else the URL itself (an address added as any string)."""
    try:
        return _client.url_address(url)
    except ValueError:
        return url


def clone_into(core: RepositoryCore, user_name: str, user_email: str, remote_address: str, *,
               remove_old: bool = False, endpoint_url: Optional[str] = None) -> str:
    """Initialize ``repo`` and fill it with the records of the server at ``remote_address``.

    Adds remote ``origin``, fetches the server's ``master`` branch as ``origin/master`` (its
    commits and their history: as the spec and Hangar 0.3 say, other branches are fetched
    with ``repo.remote.fetch``) and creates local ``master`` from it. No sample bytes are
    fetched: they are remote references until ``repo.remote.fetch_data('origin', ...)``
    brings them.

    Raises
    ------
    ValueError
        If ``remote_address`` is not ``IP:PORT`` (or the user name/email are invalid).
    FileExistsError
        If a repository exists there and ``remove_old`` is False.
    ConnectionError
        If the server cannot be reached (nothing is created then).
    """
    if isinstance(remote_address, str) and datastore.looks_like_git_url(remote_address):
        return _clone_data_remote(core, user_name, user_email, remote_address, remove_old, endpoint_url)
    _client.parse_address(remote_address)
    if core.initialized and not remove_old:
        raise RepositoryExistsError(f"a hangar repository already exists at {core.path!r}; "
                                    "pass remove_old=True to replace it")
    with _client.DataClient(remote_address, timeout=10) as dc:
        dc.ping()
    existed = core.initialized
    core.init(user_name, user_email, remove_old)
    git = core.git
    Remotes(core).add("origin", remote_address)
    with transfer_marker(core.hangar_dir, f"clone {remote_address}"):
        # one listing of the server's refs for both questions below (each listing is a round
        # trip and a git process on the server)
        refs = _client.list_remote_refs(git, "origin", remote_address)
        # a server can host the history of a data remote (bytes in a bucket): follow its record
        try:
            data_remote = objectdata.DATA_REF in refs and \
                datastore.adopt_location(git, "origin", endpoint_url)
        except DataRemoteAddressError:  # e.g. an endpoint the user did not choose: refused, nothing left
            if not existed:
                import shutil

                shutil.rmtree(core.hangar_dir, ignore_errors=True)
                core.drop_handles()
            raise
        if "refs/heads/master" in refs:
            _client.fetch_branches(git, "origin", remote_address, ["master"])
        head = git.remote_branch_head("origin/master")
        if head is not None:
            git.set_branch("master", head)
            core.base_staging_on("master", head)
    if data_remote:
        objectdata.attach_lazy_reads(git, core.hangar_dir, core.store())
    return "master"


def _clone_data_remote(core: RepositoryCore, user_name: str, user_email: str, address: str, remove_old: bool,
                       endpoint_url: Optional[str]) -> str:
    """``clone_into`` of a git URL whose history records a data location (``refs/hangar/data``)."""
    import shutil

    if core.initialized and not remove_old:
        raise RepositoryExistsError(f"a hangar repository already exists at {core.path!r}; "
                                    "pass remove_old=True to replace it")
    if os.path.isdir(address):
        address = os.path.abspath(address)
    existed = core.initialized
    core.init(user_name, user_email, remove_old)
    git = core.git
    try:
        head = datastore.clone(git, core.hangar_dir, address, endpoint_url)
    except BaseException:
        if not existed:  # nothing is left behind by a clone that failed
            shutil.rmtree(core.hangar_dir, ignore_errors=True)
            core.drop_handles()
        raise
    if head is not None:
        git.set_branch("master", head)
        core.base_staging_on("master", head)
    objectdata.attach_lazy_reads(git, core.hangar_dir, core.store())
    return "master"
