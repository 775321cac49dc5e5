"""Lower-layer views of a repository for tests that check or change git refs, objects and stored bytes.

Each opens the repository's parts afresh through the public :class:`hangar.core.RepositoryCore`
(what a second process would see), never through the ``Repository``'s private state.
"""

from __future__ import annotations

from hangar import Repository
from hangar.core import RepositoryCore
from hangar.plumbing import paths
from hangar.plumbing.gitrepo import GitRepo
from hangar.store import TensorStore


def git_of(repo: Repository) -> GitRepo:
    """The repository's git directory (plumbing)."""
    return RepositoryCore(repo.path).git


def store_of(repo: Repository) -> TensorStore:
    """A tensor store on the repository's data (with its read cache, as checkouts use)."""
    return RepositoryCore(repo.path).store()


def hangar_dir_of(repo: Repository) -> str:
    """The repository's ``.hangar`` directory."""
    return paths.hangar_dir(repo.path)
