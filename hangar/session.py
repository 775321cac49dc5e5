"""State shared by a checkout and every accessor object it hands out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hangar.errors import CheckoutClosedError

if TYPE_CHECKING:
    from hangar.plumbing.gitrepo import GitRepo
    from hangar.store import TensorStore


class CheckoutSession:
    """Git repository, tensor store and open/closed state of one checkout."""

    def __init__(self, git: "GitRepo", store: "TensorStore", writable: bool, repo_path: str,
                 commit: str | None) -> None:
        self.git = git
        self.store = store
        self.writable = writable
        self.repo_path = repo_path  # lets readers be re-opened in worker processes
        self.commit = commit  # the commit a reader reads (None for the writer)
        self.closed = False

    def check(self) -> None:
        """Raise ``CheckoutClosedError`` (a ``ReferenceError``) once the checkout is closed."""
        if self.closed:
            raise CheckoutClosedError(
                "this checkout was closed; open a new one with repo.checkout()")
