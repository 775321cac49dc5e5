"""The verbs of a data remote (history on a git URL, bytes in an S3 bucket): what
:class:`hangar.remotes.Remotes` runs for a remote added with ``data=``.

Each function takes the repository's git, its ``.hangar`` directory and its tensor store, so
this module holds no repository state; see :mod:`hangar.remote.objectdata` for the layout in
the bucket and in the history.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, List, Optional, Sequence

from hangar.errors import (
    BranchNotFoundError,
    DataRemoteAddressError,
    DivergedHistoryError,
)
from hangar.remote import client as _client
from hangar.remote import objectdata
from hangar.transfers import transfer_marker

if TYPE_CHECKING:
    from hangar.plumbing.gitrepo import GitRepo
    from hangar.store import TensorStore


def remote_heads(git: "GitRepo", remote: str) -> dict[str, str]:
    """Branch name -> head commit in the remote's git repository."""
    refs = objectdata.remote_refs(git, remote)
    return {r[len("refs/heads/"):]: oid for r, oid in refs.items() if r.startswith("refs/heads/")}


def fetch_data(git: "GitRepo", hangar_dir: str, store: "TensorStore", remote: str, commits: List[str],
               names: Optional[set[str]], max_num_bytes: Optional[int]) -> None:
    """Bring the bytes of the samples of ``commits`` not stored locally from the remote's bucket."""
    wanted = _client.missing_pointers(git, store, commits, names, max_num_bytes)
    if not wanted:
        return
    storage = objectdata.open_storage(git, remote)
    index = objectdata.bucket_index(storage, hangar_dir)
    try:
        with transfer_marker(hangar_dir, f"fetch_data {remote}"):
            objectdata.fetch_samples(hangar_dir, storage, index, objectdata.pointers_items(wanted), remote)
    finally:
        store.refresh()


def push(git: "GitRepo", hangar_dir: str, store: "TensorStore", remote: str, branch: str, *,
         username: str = "", password: str = "") -> str:
    """``Remotes.push`` for a data remote: samples the bucket lacks (packs, index last), then the
    data-location ref and the branch in one git push (``username``/``password``: for a git host
    that asks for them, e.g. a ``hangar server`` restricting push)."""
    head = git.branch_head(branch) if isinstance(branch, str) else None
    if head is None:
        raise BranchNotFoundError(f"no local branch named {branch!r}; branches: {git.branches()}")
    refs = objectdata.remote_refs(git, remote)
    theirs = refs.get(f"refs/heads/{branch}")
    if theirs is not None and not (git.has_object(theirs) and git.is_ancestor(theirs, head)):
        raise DivergedHistoryError(
            f"branch {branch!r} on remote {remote!r} ({theirs[:10]}) holds commits not in the local branch "
            f"({head[:10]}); fetch it (repo.remote.fetch({remote!r}, {branch!r})), merge, then push again")
    url, endpoint = objectdata.data_url(git, remote), objectdata.endpoint_url(git, remote)
    location = objectdata.location_commit(git, url, endpoint)  # type: ignore[arg-type]
    recorded = refs.get(objectdata.DATA_REF)
    if recorded is not None and recorded != location:
        if not git.has_object(recorded):
            objectdata.fetch_location(git, remote)
        there = objectdata.read_location(git, recorded)[0]
        if there != url:
            raise DataRemoteAddressError(f"the history at remote {remote!r} records its data at {there}, not {url}; "
                             f"add the remote with data={there!r}")
    if theirs == head and recorded is not None:
        git.set_ref(f"refs/remotes/{remote}/{branch}", head)
        warnings.warn(f"push changed nothing: branch {branch!r} on remote {remote!r} is already at {head[:10]}",
                      UserWarning, stacklevel=3)
        return branch
    known = [h for r, h in refs.items() if r.startswith("refs/heads/") and git.has_object(h)]
    commits = _client.new_commits(git, head, known)
    pointers = list(_client.commit_pointers(git, commits, known=known).values())
    storage = objectdata.open_storage(git, remote)
    index = objectdata.bucket_index(storage, hangar_dir)
    objectdata.push_samples(store, storage, index, pointers, remote)
    specs = [f"refs/heads/{branch}:refs/heads/{branch}"]
    if recorded is None:
        git.set_ref(f"refs/hangar/remotes/{remote}/data", location)
        specs.insert(0, f"refs/hangar/remotes/{remote}/data:{objectdata.DATA_REF}")
    refused = objectdata.push_refs(git, remote, specs, username, password)
    if refused:
        raise DivergedHistoryError(f"remote {remote!r} refused to update {sorted(refused)} ({refused}); "
                                   f"fetch it (repo.remote.fetch({remote!r}, {branch!r})), merge, then push again")
    git.set_ref(f"refs/remotes/{remote}/{branch}", head)
    return branch


def looks_like_git_url(address: str) -> bool:
    """True for an address ``clone``/``add`` treat as a git URL rather than a hangar server's
    ``IP:PORT``: a URL with a scheme other than http(s) to ``IP:PORT``, an scp-like
    ``user@host:path``, or a local path."""
    try:
        _client.parse_address(address)
        return False
    except ValueError:
        pass
    return "://" in address or address.startswith(("/", ".", "~")) or ("@" in address and ":" in address)


def adopt_location(git: "GitRepo", remote: str, endpoint_url: Optional[str], branches: Sequence[str] = ()) -> bool:
    """Make ``remote`` a data remote of the location its history records (``refs/hangar/data``);
    False when it records none. The endpoint: see :func:`objectdata.endpoint_to_record` (the
    pusher's recorded one only where the user would send signed requests anyway). ``branches``
    the remote has are fetched along (into ``refs/remotes/<remote>/``)."""
    found = objectdata.fetch_location(git, remote, branches)
    if found is None:
        return False
    url, hint = found
    endpoint_url = objectdata.endpoint_to_record(remote, url, hint, endpoint_url)
    objectdata.record_remote(git, remote, url, endpoint_url, lazy=True)
    return True


def clone(git: "GitRepo", hangar_dir: str, address: str, endpoint_url: Optional[str]) -> Optional[str]:
    """Fill a freshly initialised repository from the git repository at ``address``: remote
    ``origin``, its data location (read from the history's ``refs/hangar/data``), ``origin/master``;
    return the head of ``master`` (``None`` when the remote has none).

    Raises ``ValueError`` when the history records no data location (it is not a data remote).
    """
    git.add_remote("origin", address)
    with transfer_marker(hangar_dir, f"clone {address}"):  # master comes with the location, in one fetch
        if not adopt_location(git, "origin", endpoint_url, ["master"]):
            raise DataRemoteAddressError(f"the git repository at {address!r} records no data location "
                                         f"({objectdata.DATA_REF}); clone a hangar server by IP:PORT, or push to "
                                         "this one with a data remote first")
    return git.remote_branch_head("origin/master")
