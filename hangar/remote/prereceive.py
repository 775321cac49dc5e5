"""The ``pre-receive`` hook a hangar server installs for ``git http-backend``.

``hangar push`` uploads sample bytes before it moves refs; a plain ``git push`` carries no
bytes. The hook refuses a push whose new commits point at samples the server does not
store, so the server never holds a commit without its data; it also refuses refs outside
``refs/heads/`` (but for ``refs/hangar/data``, see below), deletions, non-fast-forward updates,
and a push to the branch on which the served repository has work in progress (staged changes
or an open writer checkout: moving the branch under them would strand them, git's
``receive.denyCurrentBranch`` for the same reason) (:data:`REF_CHECKS`). The dulwich
fallback runs the same :func:`refusals` for each ref it is asked to move. It reads ``<old> <new> <ref>``
lines on stdin (git's protocol) and exits non-zero to refuse; git shows our stderr.

A served repository can also be the *history host of a data remote* (issue 15: history on any
git URL, sample bytes in an S3 bucket): the one ref outside ``refs/heads`` it accepts is
``refs/hangar/data``, the data-location record ``hangar push`` writes. Its content is checked as
a client checks it (:func:`hangar.remote.objectdata.location_refusal`); it can be created only
in a repository with no branches yet (a server holding its own sample bytes does not turn into
a history host) and never moved (a location commit has no parents: a move is never a fast
forward) nor deleted. Once a repository records a data location, the bytes of its commits live
in that bucket: the server then checks the pushed commits' samples against the bucket's pack
indexes (:func:`bucket_refusal`; ``hangar push`` uploads every pack, index last, before it moves
a ref), with its own credentials, and refuses a push it cannot check.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

import pygit2

from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.paths import data_dir, writer_lock_path
from hangar.records.staging import StagingState
from hangar.remote.client import commit_pointers, new_commits
from hangar.remote.objectdata import DATA_REF, bucket_index, endpoint_to_record, location_refusal, read_location
from hangar.store import TensorStore
from hangar.store.objectstore import ObjectPackStorage
from hangar.store.packs import LocalPackStorage

_ZERO = "0" * 40


def _pushed_digests(git: GitRepo, updates: list[tuple[str, str, str]]) -> list[bytes]:
    """Digests of the samples of the commits ``updates`` add (subtrees the branches hold skipped)."""
    known = sorted(set(git.refs("refs/heads/").values()))
    commits: list[str] = []
    for _, new, ref in updates:
        if new != _ZERO and ref != DATA_REF:
            commits += new_commits(git, new, known)
    if not commits:
        return []
    return list(commit_pointers(git, dict.fromkeys(commits), known=known))


def missing_samples(git_dir: str, updates: list[tuple[str, str, str]]) -> int:
    """How many samples of the pushed commits have no bytes in the server's store."""
    git = GitRepo(git_dir, from_env=True)
    digests = _pushed_digests(git, updates)
    if not digests:
        return 0
    store = TensorStore(LocalPackStorage(data_dir(git_dir)))
    try:
        return sum(loc is None for loc in store.locations(digests))
    finally:
        store.storage.close()


def bucket_refusal(git_dir: str, updates: list[tuple[str, str, str]],
                   pushed: list[tuple[str, str, str]]) -> Optional[str]:
    """Why the push is refused for samples of its commits that are not in the data remote's
    bucket (``None`` when every one is listed by a pack index there): the check
    :func:`missing_samples` makes of the server's own store, for a repository hosting the
    history of a data remote.

    The bucket is the one the data-location record names (the repository's, or the one this push
    creates); it is read with the server's own AWS credentials and endpoint
    (``AWS_ENDPOINT_URL``), and a recorded endpoint is followed only where a client would follow
    it (:func:`~hangar.remote.objectdata.endpoint_to_record`: AWS's own). A bucket the server
    cannot read refuses the push (the server cannot tell the bytes are there); the pack indexes
    read are kept under ``.hangar/cache`` so each is read once.
    """
    git = GitRepo(git_dir, from_env=True)
    digests = _pushed_digests(git, updates)
    if not digests:
        return None
    if DATA_REF in git.repo.references:
        where = str(git.repo.references[DATA_REF].target)
    else:
        where = next(new for old, new, ref in pushed if ref == DATA_REF and new != _ZERO)
    url, recorded = read_location(git, where)
    try:
        endpoint = endpoint_to_record("origin", url, recorded, None)
        index = bucket_index(ObjectPackStorage(url, endpoint), git_dir)
        missing = sum(loc is None for loc in index.locations(digests))
    except (OSError, ValueError, ImportError) as exc:  # unreachable, refused endpoint, no obstore, damaged index
        return (f"cannot check that the {len(digests)} samples of the pushed commits are in the data remote {url}: "
                f"{exc}; give the server read access to it (AWS credentials and AWS_ENDPOINT_URL in its environment)")
    if missing:
        return (f"{missing} samples of the pushed commits are not in the data remote {url}; push with `hangar push` "
                "/ repo.remote.push(...), which uploads the data before the commits")
    return None


def _outside_heads(git: GitRepo, old: str, new: str, ref: str) -> Optional[str]:
    if ref == DATA_REF:
        return None  # checked by _data_location
    if not ref.startswith("refs/heads/") or ref == "refs/heads/":
        return f"{ref}: only branches (refs/heads/*) and the data location ({DATA_REF}) can be pushed here"
    return None


def _data_location(git: GitRepo, old: str, new: str, ref: str) -> Optional[str]:
    """The data-location record: valid content, and created only where no branch exists yet."""
    if ref != DATA_REF or new == _ZERO:
        return None  # a deletion: _deletion's
    why = location_refusal(git, new)
    if why is not None:
        return why
    # the served repository's real state, not the ``old`` the pusher claims: a crafted push
    # claiming old == new (or any non-zero old) would otherwise skip this and, through
    # records_data_location, the missing-bytes check of the branches pushed alongside
    if DATA_REF not in git.repo.references and git.refs("refs/heads/"):
        return (f"{DATA_REF}: this server's repository holds branches whose sample bytes it stores; it cannot "
                "become the history host of a data remote (serve an empty repository for that)")
    return None


def _deletion(git: GitRepo, old: str, new: str, ref: str) -> Optional[str]:
    if new == _ZERO:
        return f"{ref}: deleting a branch on the server is refused (committed history is never dropped)"
    return None


def _non_fast_forward(git: GitRepo, old: str, new: str, ref: str) -> Optional[str]:
    if old == _ZERO or new == _ZERO or old == new:
        return None
    try:
        ok = git.repo.descendant_of(new, old)
    except (KeyError, ValueError, pygit2.GitError):
        ok = False
    if not ok:
        return (f"{ref}: {new[:12]} does not descend from the server's {old[:12]} (a non-fast-forward "
                "push rewrites history and is refused; fetch and merge first)")
    return None




def _work_in_progress(git: GitRepo, old: str, new: str, ref: str) -> Optional[str]:
    """Why moving ``ref`` would strand work in progress in the served repository, or None.

    The staging area is based on the head of one branch; moving that branch while changes
    are staged (or a writer checkout is open on it, whose changes may not be saved yet) leaves
    them based on a commit the branch no longer points at.
    """
    git_dir = git.git_dir
    state = StagingState.load(git_dir)
    if state is None or ref != f"refs/heads/{state.branch}":
        return None
    path = os.path.dirname(git_dir.rstrip(os.sep))
    if os.path.exists(writer_lock_path(git_dir)):
        what = "a writer checkout is open on it"
    elif not state.is_clean(git):
        what = "it has changes staged but not committed"
    else:
        return None
    return (f"refused: branch {state.branch!r} is the current branch of the served repository {path} and {what}; "
            f"the push would move the branch under that work (git refuses to update a checked-out branch "
            f"for the same reason). In {path}: commit the work (hangar commit -m MSG) or drop it "
            f"(hangar reset), then push again; or push to another branch (hangar push REMOTE BRANCH) "
            "and merge it there")


#: refusals of single ref updates, ``check(git, old, new, ref) -> message or None``; both
#: transports (``git http-backend``'s pre-receive hook, dulwich's update hook) run every one
REF_CHECKS: list[Callable[[GitRepo, str, str, str], Optional[str]]] = [
    _outside_heads, _data_location, _deletion, _non_fast_forward, _work_in_progress]


def records_data_location(git: GitRepo, pushed: list[tuple[str, str, str]]) -> bool:
    """Whether the repository records a data location, or the push ``pushed`` creates a valid one."""
    if DATA_REF in git.repo.references:
        return True
    return any(ref == DATA_REF and new != _ZERO and _data_location(git, old, new, ref) is None
               for old, new, ref in pushed)


def refusals(git_dir: str, updates: list[tuple[str, str, str]],
             pushed: Optional[list[tuple[str, str, str]]] = None) -> list[str]:
    """Why the push of ``updates`` (``(old, new, ref)`` hex/hex/name) is refused; empty when it is not.

    ``pushed``: every update of the push ``updates`` belong to (default: ``updates``); dulwich
    asks about one ref at a time, and a branch pushed with a new data location is checked as one
    of a data remote.
    """
    git = GitRepo(git_dir, from_env=True)
    out = [msg for old, new, ref in updates for check in REF_CHECKS if (msg := check(git, old, new, ref))]
    whole = updates if pushed is None else pushed
    if not out and not records_data_location(git, whole):
        missing = missing_samples(git_dir, updates)
        if missing:
            out.append(f"{missing} samples of the pushed commits have no bytes here; push with `hangar push` / "
                       "repo.remote.push(...), which uploads the data before the commits")
    elif not out and (why := bucket_refusal(git_dir, updates, whole)):
        out.append(why)
    return out


def main() -> int:
    git_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    updates = [tuple(line.split()) for line in sys.stdin.read().splitlines() if line.strip()]
    refused = refusals(git_dir, updates)
    for msg in refused:
        sys.stderr.write(f"hangar server: {msg}\n")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
