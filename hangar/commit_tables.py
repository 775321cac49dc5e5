"""Location tables left by a commit, so the first read of a new commit needs no pointer reads.

A reader resolves ``aset[key]`` and ``get_batch`` through a per-commit name -> location table
(:mod:`hangar.store.readtable`). Built by a reader, it costs a read of every pointer blob (W1,
60,000 samples: ~0.8 s, which made the first ``get_batch`` epoch 0.04 GB/s). The commit already
holds every staged pointer in memory, so it builds the table of each arrayset it changed with
array operations (a new arrayset) or from the parent's cached table plus the changes, and keeps
it in the store's cache. The table is a cache: a commit that cannot write it loses nothing.
"""

from __future__ import annotations

import threading
from operator import itemgetter
from typing import Any

import numpy as np

from hangar.errors import InvalidRecordError
from hangar.records.pointer import SamplePointer, validate_pointer_for
from hangar.store.readtable import LocationTable

_KIND = itemgetter(1, 2)  # (dtype, shape) of a SamplePointer


def capture(staging: Any) -> list[tuple[str, Any, dict, bool, Any, Any]]:  # records.staging.StagingArea
    """What :class:`CommitTables` needs of the staging area, taken before it is flushed (a flush
    re-points the staged arraysets at the new tree and starts new edit dicts): per changed
    arrayset ``(name, base samples, edits, replaced, schema, columns)``; ``columns``
    (:meth:`~hangar.records.staging.StagedSamples.columns`, shared with the tree build) only
    for a new arrayset, whose table is built from them."""
    out = []
    for name, st in staging.asets.items():
        if not (st.replaced or st.has_edits()):
            continue
        cols = st.columns() if st.replaced or st.base.root is None else None
        # with columns, the edits dict is not read (_valid and _new_table use the columns):
        # not asking for it keeps stacked adds columnar (no fold into a dict of pointers)
        out.append((name, st.base, st.edits if cols is None else {}, st.replaced, st.schema, cols))
    return out


class CommitTables:
    """The location tables of the arraysets a commit changes, built while the commit writes records.

    Made from the staging area before the commit flushes it (:func:`capture`). :meth:`prepare`
    builds the tables (it needs only the staged pointers and the durable data, not the tree ids),
    so the commit runs it in the thread that waits for the data pack's fsyncs, beside the tree
    build; :meth:`keep` then names each table by its samples tree id and keeps it (and raises
    what :meth:`prepare` raised, in the commit's thread). A table left out is built by readers.
    """

    def __init__(self, store: Any, staging: Any) -> None:
        self.store = store
        self.captured = capture(staging)
        self.prepared: dict[str, LocationTable] | None = None
        self._error: BaseException | None = None
        # held while building: a second call (keep(), in the commit's thread) waits for a build
        # running in the data flush's thread instead of building the tables a second time
        self._building = threading.Lock()

    def prepare(self) -> None:
        """Build the tables (once); safe to call from another thread than the commit's, and
        from two at once (the second waits for the first's build)."""
        with self._building:
            if self.prepared is None:
                self._prepare()

    def _prepare(self) -> None:
        tables: dict[str, LocationTable] = {}
        try:
            for name, base, edits, replaced, schema, cols in self.captured:
                table = _build_table(self.store, base, edits, replaced, schema, cols, name)
                if table is not None:
                    tables[name] = table
        except BaseException as exc:  # raised by keep(), in the commit's thread, as if built there
            self._error = exc
        self.prepared = tables

    def keep(self, snapshot: Any) -> None:
        """Keep (``store.keep_table``) every prepared table under its samples tree id in ``snapshot``
        (the committed tree)."""
        self.prepare()
        if self._error is not None:
            raise self._error
        for name, table in (self.prepared or {}).items():
            samples = snapshot.samples(name)
            if samples.root is None:
                continue
            key = samples.tree_key()
            if self.store.cached_table(key) is None:
                self.store.keep_table(key, table)


def _build_table(store: Any, base: Any, edits: dict, replaced: bool, schema: Any, cols: Any, name: str
                 ) -> LocationTable | None:
    """The table of one arrayset after the commit: new (``replaced`` or no base tree: from the
    staged ``cols``), or derived from the parent's cached table; None when left to readers."""
    if not _valid(edits, schema, name, cols):
        return None
    try:
        if cols is not None:
            return _new_table(store, cols)
        base_table = store.cached_table(base.tree_key())
        if base_table is None or len(edits) > max(1024, len(base_table) // 4):
            return None
        changes = [(n, None, ()) if p is None else (n, p.digest, p.shape) for n, p in edits.items()]
        return base_table.derive(changes, store.locate_durable)
    except OverflowError:  # an int key beyond int64 has no row in a table: readers read by pointer
        return None


def _valid(edits: dict, schema: Any, name: str, cols: Any) -> bool:
    """True when every staged pointer passes the schema check of a read (a record set around the
    API: the table is then left to readers, whose reads raise ``InvalidRecordError``)."""
    if cols is not None and len(cols.dtypes) <= 1 and len(cols.shapes) <= 1:  # the sets the tree build uses
        kinds = set(zip(cols.dtypes, cols.shapes))
    else:  # C loops: ~3 ms at 60,000 where a dict took 25
        kinds = set(map(_KIND, cols.pointers if cols is not None else filter(None, edits.values())))
    try:
        for dtype, shape in kinds:
            validate_pointer_for(SamplePointer(b"", dtype, shape), schema, f"arrayset {name!r}")
    except InvalidRecordError:
        return False
    return True


def _new_table(store: Any, cols: Any) -> LocationTable | None:
    """The table of a new arrayset from its staged columns (``StagedColumns``)."""
    ptrs, digests = cols.pointers, cols.digests
    if not ptrs:
        return None
    names = cols.names if cols.live is None else [n for n, keep in zip(cols.names, cols.live.tolist()) if keep]
    if len(cols.shapes) == 1:
        shape = ptrs[0].shape
        shapes = np.broadcast_to(np.array(shape, dtype=np.int64), (len(ptrs), len(shape)))
    else:
        shapes = np.array([p.shape for p in ptrs], dtype=np.int64)
    located = store.take_flushed_columns(digests)  # a stacked add's samples, just flushed: no search
    return LocationTable.from_columns(names, digests, shapes,
                                      located if located is not None else store.locate_columns(digests))
