"""Location tables left by a commit, so the first read of a new commit needs no pointer reads.

A reader resolves ``aset[key]`` and ``get_batch`` through a per-commit name -> location table
(:mod:`hangar.store.readtable`). Built by a reader, it costs a read of every pointer blob (W1,
60,000 samples: ~0.8 s, which made the first ``get_batch`` epoch 0.04 GB/s). The commit already
holds every staged pointer in memory, so it builds the table of each arrayset it changed with
array operations (a new arrayset) or from the parent's cached table plus the changes, and keeps
it in the store's cache. The table is a cache: a commit that cannot write it loses nothing.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import numpy as np

from hangar.errors import InvalidRecordError
from hangar.records.pointer import SamplePointer, validate_pointer_for
from hangar.store.readtable import LocationTable

_DIGEST, _SHAPE, _KIND = itemgetter(0), itemgetter(2), itemgetter(1, 2)  # fields of a SamplePointer


def capture(staging: Any) -> list[tuple[str, Any, dict, bool, Any]]:  # records.staging.StagingArea
    """What :func:`keep_tables` needs of the staging area, taken before it is flushed (a flush
    re-points the staged arraysets at the new tree and starts new edit dicts)."""
    return [(name, st.base, st.edits, st.replaced, st.schema) for name, st in staging.asets.items()
            if st.replaced or st.edits]


def keep_tables(store: Any, captured: list[tuple[str, Any, dict, bool, Any]], snapshot: Any) -> None:
    """Build and keep (``store.keep_table``) the location table of every arrayset the commit
    changed, as of ``snapshot`` (the committed tree). An arrayset whose parent table is not
    cached and that is not new is left to its readers (a full build reads every pointer)."""
    for name, base, edits, replaced, schema in captured:
        samples = snapshot.samples(name)
        if samples.root is None or not _valid(edits, schema, name):
            continue
        key = samples.tree_key()
        if store.cached_table(key) is not None:
            continue
        try:
            if replaced or base.root is None:
                table = _new_table(store, edits)
            else:
                base_table = store.cached_table(base.tree_key())
                if base_table is None or len(edits) > max(1024, len(base_table) // 4):
                    continue
                changes = [(n, None, ()) if p is None else (n, p.digest, p.shape) for n, p in edits.items()]
                table = base_table.derive(changes, store.locate_durable)
        except OverflowError:  # an int key beyond int64 has no row in a table: readers read by pointer
            continue
        if table is not None:
            store.keep_table(key, table)


def _valid(edits: dict, schema: Any, name: str) -> bool:
    """True when every staged pointer passes the schema check of a read (a record set around the
    API: the table is then left to readers, whose reads raise ``InvalidRecordError``)."""
    kinds = set(map(_KIND, filter(None, edits.values())))  # C loops: ~3 ms at 60,000 where a dict took 25
    try:
        for dtype, shape in kinds:
            validate_pointer_for(SamplePointer(b"", dtype, shape), schema, f"arrayset {name!r}")
    except InvalidRecordError:
        return False
    return True


def _new_table(store: Any, edits: dict) -> LocationTable | None:
    names = list(edits)
    ptrs = list(edits.values())
    if None in ptrs:
        names = [n for n, p in zip(names, ptrs) if p is not None]
        ptrs = [p for p in ptrs if p is not None]
    if not ptrs:
        return None
    digests = np.frombuffer(b"".join(map(_DIGEST, ptrs)), dtype=np.uint8).reshape(-1, 32)
    shape = ptrs[0].shape
    if len(set(map(_SHAPE, ptrs))) == 1:
        shapes = np.broadcast_to(np.array(shape, dtype=np.int64), (len(ptrs), len(shape)))
    else:
        shapes = np.array([p.shape for p in ptrs], dtype=np.int64)
    return LocationTable.from_columns(names, digests, shapes, store.locate_columns(digests))
