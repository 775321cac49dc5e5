"""Diffs between commits, branches and the staging area."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hangar.session import CheckoutSession

if TYPE_CHECKING:
    from hangar.checkout import WriterCheckout
    from hangar.repository import Repository


class ReaderUserDiff:
    """Diff methods of a read-only checkout."""

    def __init__(self, repo: "Repository", session: CheckoutSession, commit: str) -> None:
        self._repo = repo
        self._session = session
        self._commit = commit


class WriterUserDiff:
    """Diff methods of the write-enabled checkout, aware of staged changes."""

    def __init__(self, repo: "Repository", session: CheckoutSession, checkout: "WriterCheckout") -> None:
        self._repo = repo
        self._session = session
        self._checkout = checkout

    def status(self) -> str:
        """``'CLEAN'`` when the staging area equals its base commit, else ``'DIRTY'``."""
        self._session.check()
        return "CLEAN" if self._checkout._is_clean() else "DIRTY"
