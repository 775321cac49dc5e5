"""State shared by a checkout and every accessor object it hands out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from hangar.errors import HandleClosedError

if TYPE_CHECKING:
    from hangar.plumbing.gitrepo import GitRepo
    from hangar.store import TensorStore


class PendingWrites(Protocol):
    """Something holding validated writes that a :class:`WriteBatch` stores on ``flush``."""

    def flush_pending(self) -> None: ...


class WriteBatch:
    """The open ``with`` blocks of one checkout and the writes they hold back (writer only).

    ``with co:``, ``with co.arraysets:`` and ``with aset:`` each ``begin()`` on entry and
    ``end()`` on exit; nested blocks share one batch, which is stored when the outermost
    block ends (the count returns to 0). While the batch is open, arrayset writers keep
    validated samples in memory and register here; ``flush()`` makes them store their
    samples through the bulk path. Every read and every operation other than adding a
    sample flushes first, so nothing ever sees the staging area without the batch.
    """

    def __init__(self) -> None:
        self.depth = 0
        self._holders: dict[int, PendingWrites] = {}

    @property
    def open(self) -> bool:
        """True while at least one ``with`` block is open."""
        return self.depth > 0

    @property
    def pending(self) -> bool:
        """True when some writes are held back."""
        return bool(self._holders)

    def begin(self) -> None:
        self.depth += 1

    def end(self) -> None:
        """Close one block; the last one stores everything held back (also after an exception:
        every held write was validated when it was made, as Hangar 0.3 kept them)."""
        self.depth = max(0, self.depth - 1)
        if self.depth == 0:
            self.flush()

    def hold(self, holder: PendingWrites) -> None:
        """Register ``holder`` until the next :meth:`flush`."""
        self._holders[id(holder)] = holder

    def flush(self) -> None:
        """Store every held-back write now."""
        while self._holders:
            _, holder = self._holders.popitem()
            holder.flush_pending()

    def drop(self) -> None:
        """Forget held-back writes without storing them (the staging area is being reset)."""
        self._holders.clear()
        self.depth = 0


class _InstanceDict:
    """Owner of the instance ``__dict__`` descriptor that :class:`CheckoutHandle` shadows."""


_INSTANCE_DICT = _InstanceDict.__dict__["__dict__"]


class BatchBlock:
    """``with`` support shared by checkouts and their handles: a block is a write batch.

    Subclasses provide ``_session`` and ``_check_alive()`` (which raises once the checkout
    is closed: ``CheckoutClosedError`` on a checkout, ``HandleClosedError`` on a handle).
    """

    _session: "CheckoutSession"

    def _check_alive(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # noqa: ANN204
        """Start a write batch (writer) or nothing (reader); leaving the block closes nothing.

        ``with co:``, ``with co.arraysets:``, ``with aset:``, ``with co.metadata:`` (Hangar
        0.3's forms). In a write-enabled checkout the samples added inside the block are held
        back and stored together through the bulk path when the outermost block ends (or when
        a read needs them, or the held bytes reach a bound), so a per-sample loop costs about
        what one stacked ``co[aset, keys] = array`` costs. Reads inside the block see every
        sample added. When the block ends with an exception, the samples added before it are
        kept (each was validated when it was added).

        Raises
        ------
        PermissionError, ReferenceError
            (``CheckoutClosedError`` / ``HandleClosedError``) if the checkout was closed.
        """
        self._check_alive()
        self._session.batch.begin()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._session.closed:
            self._session.batch.end()

    @property
    def _is_conman(self) -> bool:
        # Hangar 0.3's flag, read by code written against it: inside a ``with`` block
        self._check_alive()
        return self._session.batch.open


class CheckoutHandle(BatchBlock, _InstanceDict):
    """Base of the objects a checkout hands out (arraysets, an arrayset, metadata).

    A handle is the object itself, not a ``weakref.proxy`` (which cannot be used in a
    ``with`` statement), and behaves like Hangar 0.3's proxies once its checkout is closed:
    its methods, properties and even ``__dict__`` raise ``HandleClosedError`` (a
    ``ReferenceError``). Shadowing ``__dict__`` costs nothing on attribute access, which
    goes through the instance dict slot, not this property. In a write-enabled checkout a
    ``with`` block on a handle is a write batch (see :class:`WriteBatch`).
    """

    _session: "CheckoutSession"

    def _check_alive(self) -> None:
        self._session.check()

    @property
    def __dict__(self) -> dict:  # type: ignore[override]  # a property standing in for the instance dict
        self._check_alive()
        return _INSTANCE_DICT.__get__(self)


class CheckoutSession:
    """Git repository, tensor store, open/closed state and write batch of one checkout."""

    def __init__(self, git: "GitRepo", store: "TensorStore", writable: bool, repo_path: str,
                 commit: str | None) -> None:
        self.git = git
        self.store = store
        self.writable = writable
        self.repo_path = repo_path  # lets readers be re-opened in worker processes
        self.commit = commit  # the commit a reader reads (None for the writer)
        self.closed = False
        self.batch = WriteBatch()

    def check(self) -> None:
        """Raise ``HandleClosedError`` (a ``ReferenceError``) once the checkout is closed.

        Called by the handles a checkout hands out (arraysets, metadata, diff, iterators).
        """
        if self.closed:
            raise HandleClosedError(
                "this handle belongs to a checkout that was closed; open a new checkout with "
                "repo.checkout() and get the handle from it again")

    def sync(self) -> None:
        """:meth:`check`, then store any writes a ``with`` block holds back, so a read sees them."""
        if self.closed:
            self.check()
        if self.batch.pending:
            self.batch.flush()
