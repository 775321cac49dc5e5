"""The ``pre-receive`` hook a hangar server installs for ``git http-backend``.

``hangar push`` uploads sample bytes before it moves refs; a plain ``git push`` carries no
bytes. The hook refuses a push whose new commits point at samples the server does not
store, so the server never holds a commit without its data. It reads ``<old> <new> <ref>``
lines on stdin (git's protocol) and exits non-zero to refuse; git shows our stderr.
"""

from __future__ import annotations

import os
import sys

from hangar.plumbing.gitrepo import GitRepo
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


def main() -> int:
    git_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    updates = [tuple(line.split()) for line in sys.stdin.read().splitlines() if line.strip()]
    missing = missing_samples(git_dir, updates)  # type: ignore[arg-type]
    if missing:
        sys.stderr.write(f"hangar server: {missing} samples of the pushed commits have no bytes here; push with "
                         "`hangar push` / repo.remote.push(...), which uploads the data before the commits\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
