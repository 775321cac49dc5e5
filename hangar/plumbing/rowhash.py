"""Public face of the optional C extension ``_rowhash`` (built by ``pip install -e .``).

``available`` says whether it was built; callers keep a numpy path for when it was not.
The read checks (:func:`check_spans`, :func:`check_rows`, :func:`pread_checked`) keep their
pure-Python path here and take it when ``available`` is False (tests set it so).
"""

from __future__ import annotations

import faulthandler
import hashlib
import os
import sys
from typing import TYPE_CHECKING, Callable, NoReturn, Optional, Sequence, TypeVar

import numpy as np
from xxhash import xxh3_64_intdigest as _xxh3

from hangar.errors import ArgumentTypeError, InvalidArgumentError, MissingDependencyError

try:  # the C module's one importer: this module is its public face (as _faults is for crash points)
    import hangar.plumbing._rowhash as _ext
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _ext = None  # type: ignore[assignment]  # the extension is optional

available = _ext is not None

if TYPE_CHECKING:
    from hangar.plumbing._rowhash import RowHold as _RowHold

F = TypeVar("F", bound=Callable[..., object])


def _not_built() -> NoReturn:
    """The error of a call needing the C module where it was not built (callers check
    :data:`available` first and keep a numpy path)."""
    raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                 "check rowhash.available first")


def hex_rows(digests: object, prefix: bytes, tail: bytes) -> bytes:
    """``prefix + hex(digest) + tail`` for each 32-byte row of ``digests`` (a C-contiguous
    buffer), back to back. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.hex_rows(digests, prefix, tail)


def tree_entry_rows(names: object, width: int, lens: object, ids: object, mode: bytes) -> bytes:
    """``mode + name + NUL + id`` for each row: ``names`` rows of ``width`` bytes (``lens``
    int64 of them used), ``ids`` rows of 20 bytes; back to back. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.tree_entry_rows(names, width, lens, ids, mode)


def blob_rows(buf: object, width: int, head: bytes, prefix: bytes) -> tuple[bytes, bytes, bytes]:
    """``(git ids, pack entries, their crc32s)`` of the blobs that are the ``width``-byte rows of
    ``buf``: entries are ``prefix + row + adler32``. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.blob_rows(buf, width, head, prefix)


def object_spans(data: object, bounds: object, head: bytes, obj_type: int) -> tuple[bytes, bytes, bytes, bytes]:
    """``(git ids, pack entries, entry offsets, crc32s)`` of the objects ``data[bounds[i]:bounds[i + 1]]``
    (``bounds`` n + 1 int64 offsets; ``head`` the type name, ``b"tree"``; ``obj_type`` its pack
    number): ids 20 bytes each, entries back to back, offsets n + 1 int64, crcs native uint32.
    Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.object_spans(data, bounds, head, obj_type)


def align_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of the 2-d uint8 array ``a``, the number of the row of ``b`` (same width) it is
    matched with in one in-order walk (row ``i`` of ``a`` takes the next unmatched row of ``b`` when
    equal), ``-1`` for the rows passed over; int64. The walk stops matching once more than
    ``len(a) - len(b)`` rows were passed over (``b`` can no longer be matched whole). In C when
    :data:`available`, else in numpy (a run of equal rows at a time)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidArgumentError(f"align_rows: rows of one width, not {a.shape} and {b.shape}")
    n, width = a.shape
    if _ext is not None and available and width:
        return np.frombuffer(_ext.align_rows(np.ascontiguousarray(a), np.ascontiguousarray(b), width),
                             dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    i = j = 0
    while i < n and j < len(b) and i - j <= n - len(b):  # a run of equal rows at a time, one step past each mismatch
        k = min(n - i, len(b) - j)
        same = (a[i:i + k] == b[j:j + k]).all(axis=1)
        run = k if bool(same.all()) else int(np.argmin(same))
        out[i:i + run] = np.arange(j, j + run)
        i, j = i + run + 1, j + run
    return out


def fan_entries(names: list[str], ids: object, depth: int, mode: bytes, live: object
                ) -> Optional[tuple[bytes, bytes, bytes, bytes]]:
    """``(order, fan, entries, starts)`` of a list of names in fan-out tree order (see
    :func:`hangar.plumbing.trees.fan_entries`, the public form with its numpy path); ``None`` when a
    name is not an ASCII str. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.fan_entries(names, ids, depth, mode, live)


def leaf_merge(base: bytes, entries: bytes, deleted: list[bytes]) -> Optional[bytes]:
    """The bytes of the leaf tree ``base`` with ``entries`` (tree entries in git order) set and the
    names of ``deleted`` (sorted) removed, as :meth:`hangar.plumbing.trees.LeafEdits.apply` gives
    them; ``None`` when ``base`` holds a subtree, a list is out of order or an entry is malformed
    (the caller's Python path). Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.leaf_merge(base, entries, deleted)


def crc32_rows(buf: object, width: int) -> bytes:
    """``zlib.crc32`` of each ``width``-byte row of ``buf``, as native uint32. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.crc32_rows(buf, width)


LeafEntry = tuple[bytes, bytes]  # (mode as git writes it, raw id)


def leaf_diff(a: bytes, b: bytes) -> Optional[list[tuple[bytes, Optional[LeafEntry], Optional[LeafEntry]]]]:
    """``(name, old (mode, id), new (mode, id))`` of each entry that differs between the git tree
    bytes ``a`` and ``b`` (``None`` on the side where it is absent), in name order; ``None`` when
    either tree holds a subtree or is malformed. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.leaf_diff(a, b)


MergedTable = tuple[Optional[bytes], list[tuple[bytes, bytes]], list[tuple[str, bytes]]]


def merge3(read: Callable[[bytes], bytes], a: Optional[bytes], m: Optional[bytes], d: Optional[bytes],
           depth: int, strategy: int, cache: Optional[dict[bytes, bytes]] = None) -> Optional[MergedTable]:
    """3-way merge of a fanned-out table ``depth`` levels deep by subtree ids (raw ids of the
    base ``a``, master ``m`` and dev ``d`` tables, ``None`` when absent), its trees read by
    ``read(id) -> bytes``. ``strategy``: 0 records conflicts, 1 keeps master's side, 2 takes
    dev's. Returns ``(merged id or None when empty, [(id, tree bytes) of the new trees],
    [(class, entry name) of the conflicts]``, or ``None`` when a tree is not of the table's
    shape (the caller's general path). ``cache`` (id -> tree bytes) is looked up before ``read``
    is called. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.merge3(read, a, m, d, depth, strategy, cache)


#: the new trees of a merged table, pack-ready (the arrays of a ``plumbing.pack.ObjectBlock`` of
#: trees): ids (n, 20) uint8, their pack entries back to back (uint8), the entries' n + 1 int64
#: starts, their crc32s (uint32), the trees' bytes back to back (uint8) and their n + 1 int64 bounds
PackedTrees = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: buffers that :func:`merge3_packed` fills and hands out views of; one is reused only once no
#: view of it is alive (a fresh ~1.7 MB buffer per merge at 1,000,000 samples cost ~420 page
#: faults, ~1 ms of CPU on the dev machine)
_PACK_POOL: list[np.ndarray] = []
_POOL_SIZE = 4
_POOL_MAX_BYTES = 8 << 20  # at most 4 x 8 MiB kept (a 600 + 600 merge at 1,000,000 samples fills ~1.7 MB)
_DTYPES = (np.uint8, np.uint8, np.int64, np.uint32, np.uint8, np.int64)


def _free_buffer() -> Optional[np.ndarray]:
    for buf in _PACK_POOL:
        if sys.getrefcount(buf) <= 3:  # the pool's list, ``buf`` and getrefcount's argument: no view
            return buf
    return None


def merge3_packed(read: Callable[[bytes], bytes], a: Optional[bytes], m: Optional[bytes], d: Optional[bytes],
                  depth: int, strategy: int, cache: Optional[dict[bytes, bytes]] = None
                  ) -> Optional[tuple[Optional[bytes], PackedTrees, list[tuple[str, bytes]]]]:
    """:func:`merge3`, with the new trees returned ready to be packed (:data:`PackedTrees`):
    their pack entries are built in the pass that hashes them. The arrays may be views of a
    pooled buffer, which is filled again only once no view of it is alive. Only when
    :data:`available`."""
    if _ext is None:
        _not_built()
    buf = _free_buffer()
    got = _ext.merge3(read, a, m, d, depth, strategy, cache, True if buf is None else buf)
    if got is None:
        return None
    root, parts, conflicts = got
    arrays = []
    need = 0
    for part, dtype in zip(parts, _DTYPES):
        if isinstance(part, bytes):
            arrays.append(np.frombuffer(part, dtype=dtype))
            need += len(part) + 8
        else:
            at, n = part
            assert buf is not None
            arrays.append(buf[at:at + n].view(dtype))
    if need and need <= _POOL_MAX_BYTES and len(_PACK_POOL) < _POOL_SIZE:
        _PACK_POOL.append(np.empty(need + need // 4, dtype=np.uint8))  # filled from the next merge on
    elif need and buf is not None and need <= _POOL_MAX_BYTES:  # too small: a larger one in its place
        _PACK_POOL[[b is buf for b in _PACK_POOL].index(True)] = np.empty(need + need // 4, dtype=np.uint8)
    arrays[0] = arrays[0].reshape(-1, 20)
    return root, (arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], arrays[5]), conflicts


def pack_checksums(buf: object, portable: bool = False) -> tuple[int, int]:
    """``(zlib.adler32(buf), zlib.crc32(buf))`` as :func:`merge3_packed` computes them for its
    pack entries (with the CPU's vector instructions where it has them; ``portable``: without).
    Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.m3_checksum(buf, 0, portable), _ext.m3_checksum(buf, 1, portable)


def diff2(read: Callable[[bytes], bytes], a: Optional[bytes], b: Optional[bytes], depth: int,
          cache: Optional[dict[bytes, bytes]] = None) -> Optional[list[tuple[bytes, Optional[bytes], Optional[bytes]]]]:
    """``(entry name, old id, new id)`` (``None`` where absent) of the entries that differ between
    two fanned-out tables ``depth`` levels deep (raw ids, ``None`` when absent), by subtree ids,
    their trees read by ``read(id) -> bytes``; ``None`` when a tree is not of the table's shape
    (the caller's general path); ``cache`` as for :func:`merge3`. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.diff2(read, a, b, depth, cache)


def blake3_rows(buf: object, width: int, suffix: bytes) -> bytes:
    """``blake3(row + suffix)`` of each ``width``-byte row of ``buf`` (a C-contiguous buffer),
    32 bytes each, back to back. Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.blake3_rows(buf, width, suffix)


def fsync_all(fds: Sequence[int]) -> bool:
    """fsync every descriptor of ``fds`` at once in C, a POSIX thread each but the first, without
    the GIL (i14c); False (nothing done) where the extension is not built or holds no such call.
    Raises ``OSError`` of the first fsync that failed, once all have returned. Public use:
    :func:`hangar.plumbing.durable.fsync_many`."""
    call = getattr(_ext, "fsync_all", None) if available else None
    if call is None:
        return False
    failed: Optional[OSError] = None
    for at in range(0, len(fds), 64):  # the C call takes up to 64 at once; every part is synced
        try:
            call(list(fds[at:at + 64]))
        except OSError as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
    return True


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing ``length`` bytes of ``fd`` from ``offset`` back to disk without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``); True when started, False where unsupported or the
    extension is not built (i14d). Public use: :func:`hangar.plumbing.durable.start_writeback`."""
    if offset < 0 or length < 0:
        raise InvalidArgumentError(f"start_writeback of {length} bytes at offset {offset}: both must be >= 0 "
                                   "(pass the byte range just written)")
    if _ext is None or not available:  # tests turn ``available`` off to take the fallback
        return False
    started: bool = _ext.start_writeback(fd, offset, length)
    return started


def row_holder(stack: np.ndarray, keys: list[object], dtype: np.dtype, shape: tuple[int, ...],
               strides: tuple[int, ...]) -> Optional[_RowHold]:
    """The ``RowHold`` object behind :func:`row_hold` (what :class:`WriterSlot`'s ``_fast_hold``
    takes), or None where :func:`row_hold` gives None."""
    if _ext is None or not available:
        return None
    try:
        return _ext.RowHold(stack, keys, np.ndarray, dtype, shape, strides)
    except (ValueError, TypeError, BufferError):  # a layout it does not take (no rows of >= 1 byte):
        return None  # the caller's Python path serves


def row_hold(stack: np.ndarray, keys: list[object], dtype: np.dtype, shape: tuple[int, ...],
             strides: tuple[int, ...]) -> Optional[Callable[[object, object], int]]:
    """A writer loop's add in one C call (i14i), or None where the extension is not built (or
    :data:`available` is turned off) or does not take this stack.

    The callable ``hold(key, value)`` copies ``value`` into row ``len(keys)`` of ``stack`` (a
    writable C-contiguous array of rows of ``shape``) and appends ``key`` to ``keys``, returning
    ``len(keys)`` then, when ``key`` is a plain int >= 0 and ``value`` an exact ``numpy.ndarray``
    whose dtype is the object ``dtype`` and whose shape and strides are ``shape`` and ``strides``
    and a row is free; otherwise it returns -1 and changes nothing (the caller's full checks run).
    """
    holder = row_holder(stack, keys, dtype, shape, strides)
    return None if holder is None else holder.hold


class _PyWriterSlot:
    """:class:`WriterSlot` where the extension is not built: the same attributes, no C add."""

    _fast_hold: Optional[_RowHold] = None
    _fast_rows = 0
    _detached = False

    def _add_held(self, key: object, value: object) -> bool:
        """Never taken here (``_fast_hold`` stays None): the caller's Python path serves."""
        return False


#: base class of the writer arrayset (i14l). With the extension: a C type holding what a loop's
#: ``aset[k] = v`` reads on every call (``_session``, ``_detached``, ``_fast_hold``: the armed
#: :func:`row_holder` object, ``_fast_rows``: the held bound at which ``flush_pending()`` runs)
#: as C fields, whose ``_add_held(key, value)`` is the C add (True: taken; False: nothing done,
#: the caller's checks run) and which :func:`install_add_slot` makes the class's ``aset[k] = v``.
if TYPE_CHECKING or _ext is None:
    WriterSlot = _PyWriterSlot
else:
    WriterSlot = _ext.WriterSlot


def fast_add(func: F) -> F:
    """The writer arrayset's ``add`` method ``func`` (``add(self, data, name=None, **kwargs)``)
    with :class:`WriterSlot`'s C add tried first when called as ``x.add(data, name)`` (``name``
    positional or by keyword): ``name`` is returned when it was taken, else ``func`` runs with
    the same arguments (i14l). Read from the class it is ``func`` (its signature and docstring).
    ``func`` itself where the extension is not built.
    """
    if _ext is None:
        return func
    wrapped: F = _ext.FastAdd(func)  # type: ignore[assignment]  # a descriptor standing in for func
    return wrapped


def install_add_slot(cls: type) -> bool:
    """Make ``x[k] = v`` on instances ``x`` of ``cls`` (a subclass of :class:`WriterSlot` defining
    ``__setitem__`` and ``__delitem__`` in Python) run the C add of ``_add_held`` first and its
    Python ``__setitem__`` only when that leaves it, with no Python call for the common case
    (i14l); ``del x[k]`` calls its ``__delitem__``. False (nothing done) where the extension
    is not built: ``cls``'s Python methods serve as before. Whether the C add is used per call
    follows :data:`available` when the stack is armed (:func:`row_holder`).
    """
    if _ext is None:
        return False
    done: bool = _ext.install_add_slot(cls)
    return done

# ------------------------------------------------------------------ stored checks on reads
# A pack index keeps, per sample, the xxh3-64 of its stored bytes with 0 kept as 1 (0 there
# means "none recorded": such samples are not checked). These check many samples in one call
# (the C code without the GIL), with a pure-Python path for when the extension is not built.


def stored_check(data: object) -> int:
    """Checksum of a sample's stored bytes, as kept in the pack index (never 0: 0 means none).

    xxh3-64: ~25 GB/s here at 256 KiB (crc32c 8-15 GB/s, zlib.crc32 ~4 GB/s, blake3 ~6 GB/s),
    so checking it on every read costs less than the read's own copy. The C functions below
    compute the same value.
    """
    return _xxh3(data) or 1  # type: ignore[arg-type]  # any C-contiguous buffer


def int_names(keys: list[int], prefix: str) -> list[str]:
    """``prefix + str(k)`` of each ``k`` of ``keys`` (a list of plain non-negative ints below 2**63;
    anything else raises ``TypeError``, ``ValueError`` or ``OverflowError``). Only when :data:`available`."""
    if _ext is None:
        _not_built()
    return _ext.int_names(keys, prefix)


def stored_check_rows(buf: object, width: int) -> np.ndarray:
    """:func:`stored_check` of each ``width``-byte row of ``buf`` (C-contiguous), as a uint64 array.

    One C call when the extension is built (no Python object per row); else one xxh3 call per row.
    """
    mv = memoryview(buf).cast("B")  # type: ignore[arg-type]  # any C-contiguous buffer
    if width <= 0 or len(mv) % width:
        raise InvalidArgumentError(f"stored_check_rows: a buffer of {len(mv)} bytes is not rows of {width} bytes; "
                                   "give a positive width dividing its length")
    if _ext is not None and available:
        return np.frombuffer(_ext.stored_check_rows(mv, width), dtype=np.uint64)
    return np.fromiter((stored_check(mv[i:i + width]) for i in range(0, len(mv), width)), dtype=np.uint64,
                       count=len(mv) // width)


def check_spans(buf: object, offsets: np.ndarray, lengths: np.ndarray, checks: np.ndarray) -> int:
    """The position ``k`` of the first span ``buf[offsets[k]:offsets[k] + lengths[k]]`` whose
    stored check (xxh3-64, 0 kept as 1) is not ``checks[k]``; ``-1`` when all match.

    Parameters
    ----------
    buf : buffer
        C-contiguous bytes holding the spans.
    offsets, lengths : numpy.ndarray
        int64 (any integer dtype is converted), one per span, each span inside ``buf``.
    checks : numpy.ndarray
        uint64 expected checks; ``0`` marks a span with none recorded (not checked).

    Returns
    -------
    int
        ``-1``, or the position of the first mismatching span.

    Raises
    ------
    InvalidArgumentError
        (a ``ValueError``) when the arrays differ in length or a span lies outside ``buf``.
    """
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    lens = np.ascontiguousarray(lengths, dtype=np.int64)
    sums = np.ascontiguousarray(checks, dtype=np.uint64)
    mv = memoryview(buf).cast("B")  # type: ignore[arg-type]  # any C-contiguous buffer
    if not (len(offs) == len(lens) == len(sums)):
        raise InvalidArgumentError(f"check_spans: {len(offs)} offsets, {len(lens)} lengths and {len(sums)} "
                                   "checks; give one of each per span")
    outside = np.flatnonzero((offs < 0) | (lens < 0) | (offs > len(mv) - lens))
    if len(outside):
        k = int(outside[0])
        raise InvalidArgumentError(f"check_spans: span {k} (offset {offs[k]}, length {lens[k]}) is outside the "
                                   f"buffer of {len(mv)} bytes; give spans inside it")
    if _ext is not None and available:
        return int(_ext.check_spans(mv, offs, lens, sums))
    for k, (o, n, c) in enumerate(zip(offs.tolist(), lens.tolist(), sums.tolist())):
        if c and stored_check(mv[o:o + n]) != c:
            return k
    return -1


def check_rows(flat: np.ndarray, which: np.ndarray, checks: np.ndarray) -> int:
    """:func:`check_spans` over whole rows ``flat[which[k]]`` of a C-contiguous 2-d uint8 array:
    the position ``k`` of the first row whose stored check is not ``checks[k]``, or ``-1``."""
    size = flat.shape[1]
    which = np.asarray(which, dtype=np.int64)
    return check_spans(flat, which * size, np.full(len(which), size, dtype=np.int64), checks)


def pread_checked(fd: int, offset: int, out: memoryview, check: int) -> int:
    """``pread`` ``len(out)`` bytes at ``offset`` of ``fd`` into ``out`` and compare their stored
    check with ``check`` (0: none recorded, not compared), in one call without the GIL.

    Returns
    -------
    int
        the bytes read (fewer than ``len(out)``: a short read, not checked), or ``-1`` when all
        were read and their check did not match.
    """
    if _ext is not None and available:
        return int(_ext.pread_checked(fd, offset, out, check))
    n = os.preadv(fd, [out], offset)
    if n == len(out) and check and stored_check(out) != check:
        return -1
    return n



def copy_checked(src: object, out: object, check: int) -> bool:
    """Copy the bytes of ``src`` into ``out`` (a writable buffer of the same length, not
    overlapping it) and say whether the stored check of the bytes written (xxh3-64, 0 kept as 1)
    is ``check`` (0: none recorded, not compared: True).

    The C path copies and hashes in one pass (each 64-byte stripe is hashed from the registers
    it was stored from, so what is checked is exactly what ``out`` holds): a 150 KB sample read
    from a mapped pack cost 0-0.8 us more than the copy alone (~18 us a read through
    ``aset[key]``), against ~4 us for a copy and then a hash of it. Without the GIL from 4 KiB.

    Raises
    ------
    InvalidArgumentError
        (a ``ValueError``) when the lengths differ.
    """
    if _ext is not None and available:
        try:
            return bool(_ext.copy_checked(src, out, check))
        except ValueError as e:  # lengths differ, or the buffers overlap
            raise InvalidArgumentError(f"{e}; give a destination of the source's length") from None
    s = memoryview(src).cast("B")  # type: ignore[arg-type]  # any C-contiguous buffer
    o = memoryview(out).cast("B")  # type: ignore[arg-type]  # any writable C-contiguous buffer
    if len(s) != len(o):
        raise InvalidArgumentError(f"copy_checked: source of {len(s)} bytes and destination of {len(o)} bytes "
                                   "must have the same length; give a destination of the source's length")
    o[:] = s
    return not check or stored_check(o) == check


def copy_rows_checked(src: object, rows: np.ndarray, checks: np.ndarray) -> int:
    """Copy the bytes of ``src`` into ``rows`` (a C-contiguous 2-d uint8 array of as many bytes),
    row by row, each copied and checked in one pass as :func:`copy_checked` does (``checks``:
    uint64, one per row; 0: none recorded, copied only).

    Returns
    -------
    int
        ``-1``, or the first row whose stored check did not match (rows after it are not copied).

    Raises
    ------
    InvalidArgumentError
        (a ``ValueError``) when the sizes disagree.
    """
    n, width = rows.shape
    sums = np.ascontiguousarray(checks, dtype=np.uint64)
    s = memoryview(src).cast("B")  # type: ignore[arg-type]  # any C-contiguous buffer
    if len(sums) != n or len(s) != rows.nbytes:
        raise InvalidArgumentError(f"copy_rows_checked: {len(s)} bytes for {n} rows of {width} bytes and "
                                   f"{len(sums)} checks; give one check per row and the rows' bytes")
    if not n:
        return -1
    if _ext is not None and available:
        return int(_ext.copy_rows_checked(s, rows, width, sums))
    rows.reshape(-1)[:] = np.frombuffer(s, dtype=np.uint8)
    which = np.flatnonzero(sums)
    k = check_rows(rows, which, sums[which])
    return -1 if k < 0 else int(which[k])

#: :func:`pread_rows_checked` reads this much at a time and checks it while it is in L2: CPU
#: time of values() over 60,000 x 784 B, unchecked/checked, 128 KiB 0.93-0.97, 256-512 KiB
#: 0.91-0.96, 1 MiB 0.88-0.92, one 16 MiB read then the hashes 0.87-0.88 (2-core box under load)
ROWS_PIECE = 128 << 10


def pread_rows_checked(fd: int, offset: int, rows: np.ndarray, checks: np.ndarray,
                       piece: int | None = None) -> tuple[int, int]:
    """Fill ``rows`` (a C-contiguous 2-d uint8 array, its rows consecutive in the file) from
    ``fd`` at ``offset``, checking each row's stored check against ``checks[i]`` (uint64; 0: not
    checked) right after the piece of about ``piece`` bytes (default :data:`ROWS_PIECE`) holding
    it is read.

    Returns
    -------
    tuple of int
        ``(bytes read, first mismatching row or -1)``; fewer bytes than ``rows.nbytes`` is a
        short read (the rows past it are not checked).
    """
    n, width = rows.shape
    piece = ROWS_PIECE if piece is None else piece
    sums = np.ascontiguousarray(checks, dtype=np.uint64)
    if len(sums) != n or piece <= 0:
        raise InvalidArgumentError(f"pread_rows_checked: {n} rows, {len(sums)} checks, piece {piece}; give one "
                                   "check per row and a positive piece")
    if _ext is not None and available:
        return _ext.pread_rows_checked(fd, offset, rows, width, sums, piece)
    per = max(1, piece // width) if width else n
    total = 0
    for r in range(0, n, per):
        part = rows[r:r + per]
        got = os.preadv(fd, [memoryview(part).cast("B")], offset + r * width)
        total += got
        if got < part.nbytes:
            return total, -1
        k = check_rows(rows, np.arange(r, r + len(part)), sums[r:r + per])
        if k >= 0:
            return total, r + k
    return total, -1


def int_keys(keys: object) -> Optional[np.ndarray]:
    """The keys of a batch as an int64 array when ``keys`` is a list or tuple of plain ints only
    (no bools, no int subclasses) within int64; ``None`` otherwise (look them up one by one).

    One C pass (~0.15 ms for 60,000 keys) where ``np.asarray`` plus a scan for bools cost ~3-4 ms.
    """
    if not isinstance(keys, (list, tuple)):
        return None
    out = np.empty(len(keys), dtype=np.int64)
    c_int_keys = getattr(_ext, "int_keys", None)  # None in a build older than this function: not rebuilt yet
    if c_int_keys is not None and available:
        return out if c_int_keys(keys, out) else None
    if any(type(k) is not int for k in keys):
        return None
    try:
        out[:] = keys
    except OverflowError:
        return None
    return out


def gather_rows_checked(src: object, offsets: np.ndarray, rows: np.ndarray, checks: np.ndarray) -> int:
    """Copy row ``k`` of ``rows`` (a C-contiguous 2-d uint8 array) from ``src[offsets[k]:]`` (a
    buffer) and check the copy against ``checks[k]`` (its :func:`stored_check`; 0: not checked)
    while it is in cache, all in one call without the GIL.

    Returns
    -------
    int
        the first mismatching row, or ``-1``.

    Raises
    ------
    InvalidArgumentError
        (a ``ValueError``) when ``offsets`` or ``checks`` do not hold one item per row, or a row's
        bytes lie outside ``src``.
    """
    n, width = rows.shape
    if not width:
        return -1
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    sums = np.ascontiguousarray(checks, dtype=np.uint64)
    mv = memoryview(src).cast("B")  # type: ignore[arg-type]  # any C-contiguous buffer
    if len(offs) != n or len(sums) != n:
        raise InvalidArgumentError(f"gather_rows_checked: {n} rows, {len(offs)} offsets and {len(sums)} checks; "
                                   "give one offset and one check per row")
    outside = np.flatnonzero((offs < 0) | (offs > len(mv) - width))
    if len(outside):
        k = int(outside[0])
        raise InvalidArgumentError(f"gather_rows_checked: row {k} (offset {offs[k]}, {width} bytes) is outside the "
                                   f"source of {len(mv)} bytes; give rows inside it")
    c_gather = getattr(_ext, "gather_rows_checked", None)  # None in a build older than this function
    if c_gather is not None and available:
        return int(c_gather(mv, offs, rows, width, sums))
    for k, (o, c) in enumerate(zip(offs.tolist(), sums.tolist())):
        rows[k] = np.frombuffer(mv[o:o + width], dtype=np.uint8)
        if c and stored_check(rows[k]) != c:
            return k
    return -1


def file_size(fd: int) -> int:
    """The size of the open file ``fd`` (``fstat``; ``OSError`` on failure): in C without building
    a ``stat_result`` (~0.2-0.4 us instead of ~1.2-1.4 us a call here under load)."""
    if _ext is not None and available:
        size: int = _ext.file_size(fd)
        return size
    return os.fstat(fd).st_size


#: faulthandler's state when the SIGBUS guard's handler was last installed (None: not yet)
_guard_under_faulthandler: Optional[bool] = None
_faulthandler_on = faulthandler.is_enabled


def _keep_bus_guard() -> None:
    """Before a guarded copy: note whether faulthandler was on when the guard was installed (by
    the first guarded copy), and re-install the guard if faulthandler was turned off since."""
    global _guard_under_faulthandler
    if _guard_under_faulthandler is None:  # the guard is installed by this first call
        _guard_under_faulthandler = _faulthandler_on()
    elif _guard_under_faulthandler and not _faulthandler_on():
        # installed while faulthandler was on, which was turned off since: its disable() put
        # back the handler it had found, removing the guard's; re-installed (one sigaction;
        # faulthandler turned on after the guard needs nothing: it passes faults on to it)
        _ext.bus_rearm()
        _guard_under_faulthandler = False


def copy_checked_guarded(src: object, out: object, check: int) -> int:
    """:func:`copy_checked` from a memory mapping that someone else may have truncated: 1 copied and
    matching, 0 not matching, -1 a page of ``src`` could not be read (SIGBUS caught in C; the
    process goes on). Without the extension nothing is caught (check the file's size first)."""
    if _ext is not None and available:
        _keep_bus_guard()
        try:
            got: int = _ext.copy_checked_guarded(src, out, check)
            return got
        except ValueError as e:  # lengths differ, or the buffers overlap
            raise InvalidArgumentError(f"{e}; give a destination of the source's length") from None
    return int(copy_checked(src, out, check))


def copy_checked_at(src: np.ndarray, offset: int, out: np.ndarray, check: int) -> int:
    """:func:`copy_checked_guarded` of ``src[offset:offset + out.nbytes]`` (a 1-d uint8 array: a
    pack's mapping) into ``out`` (a C-contiguous array of any dtype), without making the slice or
    a byte view of ``out`` (~0.3-0.4 us of a ~3 us single read)."""
    if _ext is not None and available:
        _keep_bus_guard()  # the same guard as copy_checked_guarded's (this is its offset form)
        try:
            got: int = _ext.copy_checked_at(src, offset, out, check)
            return got
        except ValueError as e:  # outside the source, or overlapping it
            raise InvalidArgumentError(f"{e}; give an offset and a destination inside the source") from None
        except OverflowError:  # an offset past Py_ssize_t (rC: as the Python path says)
            raise InvalidArgumentError(f"copy_checked_at: offset {offset} is outside the source of {len(src)} "
                                       "bytes; give an offset and a destination inside the source") from None
    if not out.flags.c_contiguous:  # (a reshape would fill a copy: rC) as the C path, which cannot take it
        raise ArgumentTypeError(f"copy_checked_at: out of shape {out.shape} and strides {out.strides} is not "
                                "C-contiguous; give a C-contiguous array (np.empty(shape, dtype))")
    n = out.nbytes
    if offset < 0 or offset + n > len(src):
        raise InvalidArgumentError(f"copy_checked_at: {n} bytes at {offset} of a source of {len(src)} bytes is "
                                   "outside the source; give an offset and a destination inside it")
    return int(copy_checked(src[offset:offset + n], out.reshape(-1).view(np.uint8), check))



T = TypeVar("T")


def check_rows_beside(flat: np.ndarray, which: Optional[np.ndarray], checks: np.ndarray,
                      fn: Callable[[], T]) -> tuple[T, int]:
    """Call ``fn()`` while another thread checks rows ``flat[which[k]]`` (``flat[k]`` when
    ``which`` is None) of a C-contiguous 2-d uint8 array against ``checks[k]`` (their
    :func:`stored_check`; 0: none recorded), then check what that thread has not.

    The C path keeps one helper thread (a plain thread, started on first use, that never holds
    the GIL): it starts hashing as soon as it runs, while ``fn`` holds the GIL, and both take
    chunks of rows from one cursor once ``fn`` returns. Every row is checked (or a mismatch
    found) before this returns, and no thread reads ``flat`` afterwards. Without the extension:
    ``fn()``, then the checks, in this thread.

    Returns
    -------
    tuple
        ``(fn(), bad)``: ``bad`` the position ``k`` of a mismatching row (the first one found),
        or ``-1``.

    Raises
    ------
    InvalidArgumentError
        (a ``ValueError``) when ``checks`` does not hold one item per row of ``which`` (at most
        one per row of ``flat`` when None), or a row of ``which`` is outside ``flat``.
    """
    n, width = flat.shape
    sums = np.ascontiguousarray(checks, dtype=np.uint64)
    rows = None if which is None else np.ascontiguousarray(which, dtype=np.int64)
    m = len(sums)
    if (m > n if rows is None else len(rows) != m) or (rows is not None and m and
                                                        (int(rows.min()) < 0 or int(rows.max()) >= n)):
        raise InvalidArgumentError(f"check_rows_beside: {m} checks for {n if rows is None else len(rows)} rows "
                                   f"of a {n}-row array; give one check per row, rows inside the array")
    c_beside = getattr(_ext, "check_rows_beside", None)  # None in a build older than this function
    if c_beside is not None and available and width:
        got, bad = c_beside(flat, width, rows, sums, fn)
        return got, int(bad)
    got = fn()
    return got, check_rows(flat, np.arange(m) if rows is None else rows, sums) if m else -1


def sha1_rows(buf: object, width: int, prefix: bytes) -> bytes:
    """sha1 of ``prefix + row`` for each ``width``-byte row of ``buf`` (a C-contiguous buffer), 20
    bytes each, back to back: git ids of equal-sized objects when ``prefix`` is ``b"blob <width>\\0"``.
    In C when :data:`available` (~0.2 us a 100-byte row), else one hashlib call a row."""
    if _ext is not None and available:
        return _ext.sha1_rows(buf, width, prefix)
    mv = memoryview(buf).cast("B")  # type: ignore[arg-type]  # any C-contiguous buffer
    if width <= 0 or len(mv) % width:
        raise InvalidArgumentError(f"sha1_rows: a buffer of {len(mv)} bytes is not rows of {width} bytes; "
                                   "give whole rows")
    return b"".join(hashlib.sha1(prefix + mv[i:i + width]).digest() for i in range(0, len(mv), width))
