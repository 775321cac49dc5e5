"""The writer checkout's staging area, with what diff and merge need of it.

:class:`WriterStage` holds one writer checkout's staging state (branch, base commit, tree),
its in-memory :class:`~hangar.records.staging.StagingArea`, its arraysets and its writer-lock
token. The checkout, its differ and a merge into it share one, so none reaches into another's
private state.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

from hangar.arrayset import Arraysets, detach_arrayset
from hangar.core import RepositoryCore
from hangar.plumbing.pack import ObjectBatch
from hangar.records.staging import StagingArea, StagingState
from hangar.session import CheckoutSession


class WriterStage:
    """Staging state, staging area and lock token of one writer checkout.

    Parameters
    ----------
    core : RepositoryCore
        The repository.
    session : CheckoutSession
        The writer checkout's session (its write batch is stored before the area is read).
    state : StagingState
        The saved staging state the checkout starts from.
    owner : str
        The writer-lock token the checkout holds.
    """

    def __init__(self, core: RepositoryCore, session: CheckoutSession, state: StagingState, owner: str) -> None:
        self.core = core
        self.session = session
        self.state = state
        self.owner = owner
        self._area = StagingArea(core.git, state.tree)
        self.arraysets = Arraysets(session, self._area)

    @property
    def area(self) -> StagingArea:
        """The staging area, with every sample a ``with`` block holds back stored in it."""
        self.session.sync()
        return self._area

    @property
    def area_unsynced(self) -> StagingArea:
        """The staging area as it is (the metadata accessor reads it; it stores no samples)."""
        return self._area

    def check_lock(self) -> None:
        """Raise ``WriterLockError`` unless this writer still holds the writer lock."""
        self.core.check_writer(self.owner, self.state)

    def base_tree(self) -> Optional[str]:
        """Tree of the base commit (None before the first commit)."""
        return self.core.git.commit_tree_id(self.state.base) if self.state.base else None

    def staged_tree(self) -> tuple[Optional[str], ObjectBatch]:
        """The staging tree and the unwritten objects it needs (nothing is written)."""
        area = self.area
        if area.has_edits():
            return area.build()
        return area.snapshot.tree_id, ObjectBatch()

    def is_clean(self) -> bool:
        """True when the staging area equals its base commit."""
        tree, _ = self.staged_tree()
        base_tree = self.base_tree()
        if base_tree is None:
            return tree is None or tree == self.core.empty_tree_id()
        return tree == base_tree

    def flush(self) -> str:
        """Make the staging area durable: store bytes first, then records, then the state file."""
        self.check_lock()  # a force-released lock taken by another writer
        area = self.area  # stores held-back samples first
        self.session.store.flush()
        tree = area.flush()
        if tree != self.state.tree:
            self.state.tree = tree
            self.core.save_staging_state(self.state)
        return tree

    def commit_records(self, commit_data: Callable[[str], bytes], before_records: Callable[[], None],
                       after_data: Optional[Callable[[], None]] = None) -> Optional[tuple[str, str]]:
        """Write a commit's records over durable data; return the tree and commit ids, or None
        when the staging area equals its base (nothing written). The branch is not moved, and
        the caller saves the staging state (base and tree) once it has moved it.

        The data pack is fsynced in a thread (then ``after_data`` runs there once the data is
        durable: the commit's location tables, :class:`hangar.commit_tables.CommitTables`; not run
        when there was nothing to flush or the flush failed) while this thread builds the trees,
        runs ``before_records`` (the caller's checks: it raises to stop) and writes and fsyncs
        the records pack (the trees and the commit object ``commit_data(tree id)``) under
        temporary names. The pack is renamed into place only once the data is durable, so
        records are still never visible over data that is not (a failed data flush discards the
        pack). At 60,000 samples the records pack's write and fsync (~25-30 ms) ran after the
        data fsync (~26 ms, idle); now they overlap, and the pack's file is written as the trees
        are built (``StagingArea.build`` with ``spill=True``), so most of it is on disk when it is
        fsynced. The rename waits for the data flush only, not for ``after_data`` (a 1%-update
        commit waited ~5 ms for its table): when ``after_data`` is still running on return, the
        caller waits for it (it is safe to call twice, as ``CommitTables.prepare`` is) before it
        touches the store again.

        The staging state is saved here (the new tree, before the branch moves) only when the
        saved one holds staged changes (a :meth:`flush` wrote a tree other than its base's): a
        crash after the branch moved and before the caller's save then finds the state's tree
        on the branch's head and re-bases it there (``RepositoryCore.writer_state``). A saved
        state equal to its base needs no save: after such a crash it is clean and is re-based on
        the head all the same, and before the branch moves there is nothing durable to keep (the
        staged changes were never flushed). That save cost two journal commits in a row (the
        file's fsync and its directory's) on every commit. The state the caller publishes once
        the branch has moved (base: the new commit) is written here and fsynced with the
        records pack (``RepositoryCore.write_next_staging_state``); it is removed on a failure.
        """
        area = self.area  # stores held-back samples first
        store = self.session.store
        flush_data = area.has_edits() and store.has_unflushed()
        self.check_lock()  # never write after losing the lock
        staged = None
        written: Optional[tuple[str, str]] = None
        next_state: list[int] = []

        def write_next_state(tree: str, commit: str) -> list[int]:  # fsynced with the records pack
            next_state.append(self.core.write_next_staging_state(StagingState(self.state.branch, commit, tree)))
            return next_state

        pool = ThreadPoolExecutor(1, thread_name_prefix="hangar-data-flush")
        try:
            data_durable = pool.submit(store.flush) if flush_data else None
            if data_durable is not None and after_data is not None:
                pool.submit(_if_done_ok, data_durable, after_data)  # queued: runs after the flush
            try:
                if area.has_edits():
                    area.build(spill=True)  # the records pack written as it is built (PackSpill)
                if self.is_clean():
                    return None
                before_records()
                tree, commit, staged = area.stage_commit(commit_data, write_next_state)
            finally:
                area.drop_spill()  # unless staged (then handed over already)
                for fd in next_state:
                    os.close(fd)
                if data_durable is not None:
                    try:
                        data_durable.result()  # a failed flush raises here, before any record is visible
                    except BaseException:
                        self.core.git.discard(staged)
                        raise
            area.finish_commit(tree, staged)
            if tree != self.state.tree and not self.state.is_clean(self.core.git):
                self.state.tree = tree
                self.core.save_staging_state(self.state)
            written = tree, commit
            return written
        except BaseException:
            if next_state:
                self.core.discard_next_staging_state()
            raise
        finally:
            # after_data may still run on success (the caller waits for it); on a failure or
            # nothing to commit, nothing is left running beside the caller's next store call
            pool.shutdown(wait=written is None)

    def reset(self) -> None:
        """Drop every staged change: the staging area is its base commit again."""
        self.session.store.discard()
        self.state.tree = self.base_tree()
        self.core.save_staging_state(self.state)
        self._area = StagingArea(self.core.git, self.state.tree)

    def move_to(self, commit: str) -> None:
        """Base the (clean) staging area on ``commit`` (after a commit or merge moved the branch there).

        The checkout's arrayset and metadata objects stay valid and read ``commit``'s records;
        handles on arraysets the merge removed or re-created stop working.
        """
        tree = self.core.git.commit_tree_id(commit)
        self.state.base = commit
        self.state.tree = tree
        self.core.save_staging_state(self.state)
        area = self.area
        area.rebase(tree)
        snapshot = area.snapshot
        for name, staged in list(area.asets.items()):
            if snapshot.schema(name) != staged.schema:  # removed or re-created by the merge
                del area.asets[name]
                detach_arrayset(self.arraysets, name)


def _if_done_ok(first: Future, then: Callable[[], None]) -> None:
    """``then()`` unless the finished ``first`` failed: what needs the data durable runs after the flush."""
    if first.exception() is None:
        then()
