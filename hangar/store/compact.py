"""Rewrite tensor packs so they hold only reachable samples.

Packs holding any unreachable (or duplicate) sample are rewritten: their reachable samples
are copied, in stored form, into one new pack, which is finished durably (fsync, index last)
*before* an old pack is deleted. An old pack is deleted index first, so it disappears from
every new listing at once; a reader that has its data file open keeps reading the same
(unlinked) bytes, and one that has not gets ``FileNotFoundError``, never other bytes.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from hangar._faults import crash_point
from hangar.errors import IncompleteIOError, UnsupportedStorageError
from hangar.plumbing.durable import fsync_dir
from hangar.plumbing.paths import packs_dir
from hangar.store.packs import INDEX_DTYPE, LocalPackStorage, PackStorage, encode_index, new_pack_id, parse_index


@dataclass
class CompactStats:
    removed_samples: int = 0
    removed_bytes: int = 0
    removed_packs: int = 0
    kept_samples: int = 0
    removed_temp: int = 0


def _temp_files(storage: LocalPackStorage, temp_age: float) -> list[str]:
    """Leftovers of interrupted writes: ``*.partial`` data, ``*.tmp`` files, packs without index."""
    base = packs_dir(storage.root)
    cutoff = time.time() - temp_age
    out = []
    for n in os.listdir(base):
        p = os.path.join(base, n)
        stale = n.endswith(".partial") or (os.path.isdir(p) and not os.path.exists(os.path.join(p, "index")))
        if not stale and os.path.isdir(p) and os.path.exists(os.path.join(p, "index.tmp")):
            out_tmp = os.path.join(p, "index.tmp")
            if os.stat(out_tmp).st_mtime < cutoff:
                out.append(out_tmp)
            continue
        if stale:
            try:
                if os.stat(p).st_mtime < cutoff:
                    out.append(p)
            except FileNotFoundError:
                pass
    return out


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def compact_store(storage: PackStorage, reachable: set[bytes], packs: list[str], *, dry_run: bool = False,
                  temp_age: float = 3600.0) -> CompactStats:
    """Keep exactly the samples whose digests are in ``reachable``; return what went.

    Only ``packs`` (listed before ``reachable`` was walked) are considered: a pack written
    after the listing, e.g. by a transfer, is kept whatever it holds.
    """
    if not isinstance(storage, LocalPackStorage):
        raise UnsupportedStorageError(f"compaction of {type(storage).__name__} is not supported")
    stats = CompactStats()
    kept: set[bytes] = set()
    rewrite: list[tuple[str, np.ndarray]] = []  # (pack, records to copy)
    for pack in packs:
        recs = parse_index(storage.read_index(pack), storage.index_path(pack), storage.pack_size(pack))
        keep = np.zeros(len(recs), dtype=bool)
        raw = recs["digest"].tobytes()
        for i in range(len(recs)):
            d = raw[32 * i:32 * i + 32]
            if d in reachable and d not in kept:
                kept.add(d)
                keep[i] = True
        if keep.all() and len(recs):
            continue
        stats.removed_samples += int((~keep).sum())
        stats.removed_bytes += int(recs["length"][~keep].sum())
        stats.removed_packs += 1
        rewrite.append((pack, recs[keep]))
    stats.kept_samples = len(kept)
    temps = _temp_files(storage, temp_age)
    stats.removed_temp = len(temps)
    if dry_run:
        return stats
    if any(len(r) for _, r in rewrite):
        new_id = new_pack_id()
        writer = storage.open_writer(new_id)
        try:
            out = []
            for pack, recs in rewrite:
                for rec in recs:
                    payload = storage.read_range(pack, int(rec["offset"]), int(rec["length"]))
                    if len(payload) != int(rec["length"]):
                        raise IncompleteIOError(f"short read in pack {pack}: cannot compact it safely")
                    new = rec.copy()
                    new["offset"] = writer.append(payload)
                    out.append(new)
            index = np.array(out, dtype=INDEX_DTYPE)
            nbytes = int((index["offset"] + index["length"]).max()) if len(index) else 0
        except BaseException:
            writer.abort()
            raise
        writer.finish(encode_index(index), nbytes)  # durable before anything is deleted
        crash_point("gc.data_pack_written")
    storage.close()
    base = packs_dir(storage.root)
    for pack, _ in rewrite:
        pack_dir = os.path.join(base, pack)
        os.unlink(os.path.join(pack_dir, "index"))  # invisible first
        crash_point("gc.data_pack_removed")
        shutil.rmtree(pack_dir, ignore_errors=True)
    for p in temps:
        _remove(p)
    if rewrite or temps:
        fsync_dir(base)
    return stats
