"""Change records: the table-level changes between two root trees, kept beside the git directory.

A diff between two commits walks their trees and, where a fan-out leaf differs, reads both
leaves: at 600 changes in 60,000 samples that is ~1,100 leaf trees and ~17 ms of CPU, most of
it in libgit2's per-leaf tree diff. The result of that walk is small (one entry per changed
sample), so it is kept: a *change record* names the two root tree ids it was computed from and
lists, per compared table (a samples or metadata table), the ids of both table trees, their
fan-out depth and the entries that differ. The next diff of the same two trees reads the record
instead of the leaves.

A record is a cache, never a source of truth:

- it lives in ``<git dir>/hangar-changes/`` (ordinary git ignores the directory; clones, pushes
  and fetches do not carry it); a repository without records, such as a clone or a history
  written by the original Hangar, diffs by walking its trees, and writes the records then;
- each table's changes are keyed by the ids of both table trees and the fan-out depth, so they
  are only used for exactly the tables they were computed from (tree ids name their content);
- the file ends with a BLAKE2b digest of everything before it and names both root tree ids; a
  torn, truncated or foreign file is ignored (and rewritten by the next walk).
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from typing import Optional

from hangar.plumbing.regular import own_directory, read_cache

Oid = Optional[bytes]
#: entry name -> (old id, new id); ``None`` where the entry is absent
EntryChanges = dict[str, tuple[Oid, Oid]]
#: (old table id, new table id, fan-out depth) -> the entries that differ
TableChanges = dict[tuple[Oid, Oid, int], EntryChanges]

_DIR = "hangar-changes"
#: version 2 keeps a table's names as one NUL-separated block and its old and new ids as two
#: blocks of 20 bytes each: decoded with one split and two slicing passes, where version 1's
#: length-prefixed entries took a struct call and five slices each (~0.42 ms for 600 entries,
#: ~20% of a 3-way diff read from records; version 1 files fail the magic and are rewritten)
_MAGIC = b"HANGAR-CHANGES 2\n"
_DIGEST = 16
_ZERO = bytes(20)
_TABLE = struct.Struct("<20s20sBII")  # old id, new id, depth, entries, bytes of the names block
#: records above this many entries are not kept: a diff that large costs more to build into
#: Python objects than to walk, and the file would be tens of MB
MAX_ENTRIES = 100_000
#: no record this module writes is larger (MAX_ENTRIES entries of names up to 65,535 bytes is
#: more, but such a record is refused when written); a larger file is not read
MAX_RECORD_BYTES = 64 << 20


def record_path(git_dir: str, a_root: bytes, b_root: bytes) -> str:
    """Where the change record from root tree ``a_root`` to ``b_root`` (raw ids) is kept."""
    return os.path.join(git_dir, _DIR, a_root.hex()[:2], a_root.hex()[2:] + b_root.hex())


def remove_records(git_dir: str, *, dry_run: bool = False) -> int:
    """Remove every kept change record (gc: they are caches, rebuilt by the next walk, and a
    record is kept per pair of trees ever diffed); the number of files removed (or, with
    ``dry_run``, that would be)."""
    top = os.path.join(git_dir, _DIR)
    count = 0
    for sub, _, names in os.walk(top):
        for name in names:
            count += 1
            if not dry_run:
                try:
                    os.unlink(os.path.join(sub, name))
                except OSError:
                    count -= 1
    return count


def encode_record(a_root: bytes, b_root: bytes, tables: TableChanges) -> bytes:
    """The bytes of a change record (see the module docstring); names hold no NUL (git's tree entry
    names cannot), see :func:`save_record`."""
    parts = [_MAGIC, a_root, b_root, struct.pack("<I", len(tables))]
    for (a, b, depth), entries in tables.items():
        names = "\0".join(entries).encode()
        parts += (_TABLE.pack(a or _ZERO, b or _ZERO, depth, len(entries), len(names)), names,
                  b"".join([old or _ZERO for old, _ in entries.values()]),
                  b"".join([new or _ZERO for _, new in entries.values()]))
    body = b"".join(parts)
    return body + hashlib.blake2b(body, digest_size=_DIGEST).digest()


def _ids(block: bytes, n: int) -> list[Oid]:
    out: list[Oid] = [block[i:i + 20] for i in range(0, 20 * n, 20)]
    if _ZERO in block:  # an entry absent on this side (added or removed: fewer than the changed ones)
        out = [None if x == _ZERO else x for x in out]
    return out


def decode_record(data: bytes, a_root: bytes, b_root: bytes) -> Optional[TableChanges]:
    """The tables of record ``data`` when it is whole and was computed from ``a_root`` to
    ``b_root``; ``None`` otherwise (a cache miss: the caller walks the trees)."""
    head = len(_MAGIC) + 44
    if len(data) < head + _DIGEST or not data.startswith(_MAGIC):
        return None
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        return None
    at = len(_MAGIC)
    if body[at:at + 20] != a_root or body[at + 20:at + 40] != b_root:
        return None
    (count,) = struct.unpack_from("<I", body, at + 40)
    at = head
    out: TableChanges = {}
    try:
        for _ in range(count):
            a, b, depth, n, size = _TABLE.unpack_from(body, at)
            at += _TABLE.size
            names = body[at:at + size].decode().split("\0") if n else []
            at += size
            ids = body[at:at + 40 * n]
            at += 40 * n
            if len(names) != n or len(ids) != 40 * n:
                return None
            out[(None if a == _ZERO else a, None if b == _ZERO else b, depth)] = dict(
                zip(names, zip(_ids(ids[:20 * n], n), _ids(ids[20 * n:], n))))
    except (struct.error, UnicodeDecodeError):  # a digest-valid file of another layout
        return None
    return out if at == len(body) else None


def load_record(git_dir: str, a_root: bytes, b_root: bytes) -> Optional[TableChanges]:
    """The kept change record from ``a_root`` to ``b_root``, or ``None`` (absent or not valid)."""
    # only a regular file of bounded size is read: a crafted repository could put a symlink to
    # /dev/zero or a FIFO here (refused without reading or waiting, like a damaged record)
    data = read_cache(record_path(git_dir, a_root, b_root), git_dir, MAX_RECORD_BYTES)
    if data is None:
        return None
    return decode_record(data, a_root, b_root)


def save_record(git_dir: str, a_root: bytes, b_root: bytes, tables: TableChanges) -> bool:
    """Keep the change record from ``a_root`` to ``b_root``; False when it was not kept (too
    large, or the directory is not writable: a cache, so a failure is no error).

    Written to a temporary file and renamed into place, without fsync: a file lost or torn by
    a crash fails its digest and is rebuilt by the next walk."""
    if sum(len(e) for e in tables.values()) > MAX_ENTRIES or any("\0" in n for e in tables.values() for n in e):
        return False
    data = encode_record(a_root, b_root, tables)
    if len(data) > MAX_RECORD_BYTES:
        return False
    path = record_path(git_dir, a_root, b_root)
    try:
        own_directory(os.path.dirname(path), git_dir)  # a planted link is replaced, never written through
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False
    return True
