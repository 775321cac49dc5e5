"""The ``pre-receive`` hook a hangar server installs for ``git http-backend``.

It refuses two kinds of push (reads ``<old> <new> <ref>`` lines on stdin, git's protocol,
and exits non-zero to refuse; git relays our stderr to the pusher):

- a push to a branch on which the served repository has work in progress (staged changes,
  or an open writer checkout): moving the branch under them would leave the staging area
  based on an old commit, unable to commit (git's ``receive.denyCurrentBranch``, for the
  same reason);
- a push whose new commits point at samples the server does not store: ``hangar push``
  uploads sample bytes before it moves refs, a plain ``git push`` carries none, and the
  server never holds a commit without its data.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from hangar.plumbing.gitrepo import GitRepo
from hangar.records.staging import StagingState
from hangar.remote.client import commit_pointers, new_commits
from hangar.store import TensorStore
from hangar.store.packs import LocalPackStorage

_ZERO = "0" * 40


def missing_samples(git_dir: str, updates: list[tuple[str, str, str]]) -> int:
    """How many samples of the pushed commits have no bytes in the server's store."""
    git = GitRepo(git_dir, from_env=True)
    known = sorted(set(git.refs("refs/heads/").values()))
    commits: list[str] = []
    for _, new, _ in updates:
        if new != _ZERO:
            commits += new_commits(git, new, known)
    if not commits:
        return 0
    pointers = commit_pointers(git, dict.fromkeys(commits), known=known)
    store = TensorStore(LocalPackStorage(os.path.join(git_dir, "data")))
    try:
        digests = list(pointers)
        return sum(loc is None for loc in store.locations(digests))
    finally:
        store.storage.close()


WRITER_LOCK_FILE = "writer.lock"  # hangar.repository.LOCK_FILE (the hook may not import the porcelain)


def work_in_progress(git_dir: str, updates: list[tuple[str, str, str]]) -> Optional[str]:
    """Why a push of ``updates`` would strand work in progress in the served repository, or None.

    The staging area is based on the head of one branch; moving that branch while changes
    are staged (or a writer checkout is open on it, whose changes may not be saved yet) leaves
    them based on a commit the branch no longer points at.
    """
    state = StagingState.load(git_dir)
    if state is None or not any(ref == f"refs/heads/{state.branch}" for _, _, ref in updates):
        return None
    path = os.path.dirname(git_dir.rstrip(os.sep))
    if os.path.exists(os.path.join(git_dir, WRITER_LOCK_FILE)):
        what = "a writer checkout is open on it"
    elif not state.is_clean(GitRepo(git_dir, from_env=True)):
        what = "it has changes staged but not committed"
    else:
        return None
    return (f"branch {state.branch!r} is the current branch of the served repository {path} and {what}; "
            f"the push would move the branch under that work (git refuses to update a checked-out branch "
            f"for the same reason). In {path}: commit the work (hangar commit -m MSG) or drop it "
            f"(hangar reset), then push again; or push to another branch (hangar push REMOTE BRANCH) "
            "and merge it there")


def main() -> int:
    git_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    updates = [tuple(line.split()) for line in sys.stdin.read().splitlines() if line.strip()]
    busy = work_in_progress(git_dir, updates)  # type: ignore[arg-type]
    if busy:
        sys.stderr.write(f"hangar server: refused: {busy}\n")
        return 1
    missing = missing_samples(git_dir, updates)  # type: ignore[arg-type]
    if missing:
        sys.stderr.write(f"hangar server: {missing} samples of the pushed commits have no bytes here; push with "
                         "`hangar push` / repo.remote.push(...), which uploads the data before the commits\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
