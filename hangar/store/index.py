"""digest -> location of every stored sample, across many packs.

Loading a million-entry index into a dict of tuples costs seconds; this keeps pack
indexes as numpy arrays sorted by a 64-bit digest prefix (one ``searchsorted`` per
lookup, ~0.1 s to load a million entries) plus a small dict of recent entries.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

from hangar.store.packs import INDEX_DTYPE

#: fold the recent-entries dict into the sorted arrays beyond this size
_MERGE_AT = 100_000
#: packs with fewer records than this go straight into the dict
_SMALL_PACK = 2_048


class Location(NamedTuple):
    pack: str
    offset: int
    length: int
    rawlen: int
    codec: int


class DigestIndex:
    """Membership and location lookups by 32-byte digest."""

    def __init__(self) -> None:
        self._packs: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._prefix = np.empty(0, dtype=np.uint64)
        self._digests = np.empty((0, 32), dtype=np.uint8)
        # per-record columns, kept as plain native arrays (gathering a packed
        # structured array of a million records takes ~1 s, these ~20 ms)
        self._cols = [np.empty(0, dtype=np.uint64) for _ in range(3)] + [np.empty(0, dtype=np.uint8)]
        self._pack_col = np.empty(0, dtype=np.int32)
        self._unsorted: list[tuple[np.ndarray, np.ndarray]] = []
        self._recent: dict[bytes, Location] = {}

    def _number(self, pack: str) -> int:
        n = self._pack_no.get(pack)
        if n is None:
            n = self._pack_no[pack] = len(self._packs)
            self._packs.append(pack)
        return n

    def add_pack(self, pack: str, raw_index: bytes) -> None:
        """Add the records of one pack's ``index`` file."""
        recs = np.frombuffer(raw_index, dtype=INDEX_DTYPE)
        if len(recs) < _SMALL_PACK:
            d = recs["digest"].tobytes()
            for i, (off, ln, raw, codec) in enumerate(zip(recs["offset"].tolist(), recs["length"].tolist(),
                                                          recs["rawlen"].tolist(), recs["codec"].tolist())):
                self._recent.setdefault(d[32 * i:32 * i + 32], Location(pack, off, ln, raw, codec))
        else:
            self._unsorted.append((recs, np.full(len(recs), self._number(pack), dtype=np.int32)))

    def update(self, entries: dict[bytes, Location]) -> None:
        """Add entries just written by this process."""
        self._recent.update(entries)
        if len(self._recent) > _MERGE_AT:
            self._fold_recent()

    def _fold_recent(self) -> None:
        items = list(self._recent.items())
        recs = np.zeros(len(items), dtype=INDEX_DTYPE)
        recs["digest"] = np.frombuffer(b"".join(k for k, _ in items), dtype=np.uint8).reshape(-1, 32)
        recs["offset"] = [v.offset for _, v in items]
        recs["length"] = [v.length for _, v in items]
        recs["rawlen"] = [v.rawlen for _, v in items]
        recs["codec"] = [v.codec for _, v in items]
        packs = np.array([self._number(v.pack) for _, v in items], dtype=np.int32)
        self._unsorted.append((recs, packs))
        self._recent = {}

    def _sort(self) -> None:
        parts = self._unsorted
        self._unsorted = []
        digests = np.concatenate([self._digests, *(np.ascontiguousarray(r["digest"]) for r, _ in parts)])
        cols = [np.concatenate([self._cols[i], *(r[f].astype(self._cols[i].dtype) for r, _ in parts)])
                for i, f in enumerate(("offset", "length", "rawlen", "codec"))]
        packs = np.concatenate([self._pack_col, *(p for _, p in parts)])
        prefix = digests[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        order = np.argsort(prefix, kind="stable")
        self._digests, self._prefix, self._pack_col = digests[order], prefix[order], packs[order]
        self._cols = [c[order] for c in cols]

    def get(self, digest: bytes) -> Optional[Location]:
        loc = self._recent.get(digest)
        if loc is not None:
            return loc
        if self._unsorted:
            self._sort()
        prefix = self._prefix
        n = len(prefix)
        if not n:
            return None
        p = int.from_bytes(digest[:8], "big")
        i = int(prefix.searchsorted(np.uint64(p)))
        digests, (offs, lens, raws, codecs) = self._digests, self._cols
        # .item() and bytes comparison keep this at ~2 us (numpy scalars cost more than the search)
        while i < n and prefix.item(i) == p:
            if digests[i].tobytes() == digest:
                return Location(self._packs[self._pack_col.item(i)], offs.item(i), lens.item(i), raws.item(i),
                                codecs.item(i))
            i += 1
        return None

    def get_many(self, digests: list[bytes]) -> list[Optional[Location]]:
        """``get`` for many digests at once: one vectorised search instead of one per digest."""
        out = [self._recent.get(d) for d in digests]
        if self._unsorted:
            self._sort()
        todo = [i for i, loc in enumerate(out) if loc is None]
        n = len(self._prefix)
        if not todo or not n:
            return out
        want = np.frombuffer(b"".join(digests[i] for i in todo), dtype=np.uint8).reshape(-1, 32)
        prefix = want[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        pos = np.minimum(self._prefix.searchsorted(prefix), n - 1)
        same_prefix = self._prefix[pos] == prefix
        hit = same_prefix & (self._digests[pos] == want).all(axis=1)
        rows = pos[hit]
        cols = [c[rows].tolist() for c in self._cols]
        packs = [self._packs[k] for k in self._pack_col[rows].tolist()]
        for j, loc in zip(np.flatnonzero(hit).tolist(), map(Location, packs, *cols)):
            out[todo[j]] = loc
        for j in np.flatnonzero(same_prefix & ~hit).tolist():  # 64-bit prefix shared by other digests
            out[todo[j]] = self.get(digests[todo[j]])
        return out

    def __contains__(self, digest: bytes) -> bool:
        return self.get(digest) is not None

    def __len__(self) -> int:
        # a digest stored in two packs counts once per pack; rare (concurrent writers)
        return len(self._recent) + len(self._prefix) + sum(len(r) for r, _ in self._unsorted)

    def __iter__(self) -> Iterator[bytes]:
        if self._unsorted:
            self._sort()
        yield from self._recent
        d = self._digests.tobytes()
        for i in range(len(self._digests)):
            yield d[32 * i:32 * i + 32]
