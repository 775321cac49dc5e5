"""Public face of the optional C extension ``_rowhash`` (built by ``pip install -e .``).

``available`` says whether it was built; callers keep a numpy path for when it was not.
"""

from __future__ import annotations

from typing import Optional

from hangar.errors import MissingDependencyError

try:  # the C module's one importer: this module is its public face (as _faults is for crash points)
    import hangar.plumbing._rowhash as _ext
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _ext = None  # type: ignore[assignment]  # the extension is optional

available = _ext is not None


def hex_rows(digests: object, prefix: bytes, tail: bytes) -> bytes:
    """``prefix + hex(digest) + tail`` for each 32-byte row of ``digests`` (a C-contiguous
    buffer), back to back. Only when :data:`available`."""
    if _ext is None:
        raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                     "check rowhash.available first")
    return _ext.hex_rows(digests, prefix, tail)


def tree_entry_rows(names: object, width: int, lens: object, ids: object, mode: bytes) -> bytes:
    """``mode + name + NUL + id`` for each row: ``names`` rows of ``width`` bytes (``lens``
    int64 of them used), ``ids`` rows of 20 bytes; back to back. Only when :data:`available`."""
    if _ext is None:
        raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                     "check rowhash.available first")
    return _ext.tree_entry_rows(names, width, lens, ids, mode)


def blob_rows(buf: object, width: int, head: bytes, prefix: bytes) -> tuple[bytes, bytes, bytes]:
    """``(git ids, pack entries, their crc32s)`` of the blobs that are the ``width``-byte rows of
    ``buf``: entries are ``prefix + row + adler32``. Only when :data:`available`."""
    if _ext is None:
        raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                     "check rowhash.available first")
    return _ext.blob_rows(buf, width, head, prefix)


def crc32_rows(buf: object, width: int) -> bytes:
    """``zlib.crc32`` of each ``width``-byte row of ``buf``, as native uint32. Only when :data:`available`."""
    if _ext is None:
        raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                     "check rowhash.available first")
    return _ext.crc32_rows(buf, width)


LeafEntry = tuple[bytes, bytes]  # (mode as git writes it, raw id)


def leaf_diff(a: bytes, b: bytes) -> Optional[list[tuple[bytes, Optional[LeafEntry], Optional[LeafEntry]]]]:
    """``(name, old (mode, id), new (mode, id))`` of each entry that differs between the git tree
    bytes ``a`` and ``b`` (``None`` on the side where it is absent), in name order; ``None`` when
    either tree holds a subtree or is malformed. Only when :data:`available`."""
    if _ext is None:
        raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                     "check rowhash.available first")
    return _ext.leaf_diff(a, b)


def blake3_rows(buf: object, width: int, suffix: bytes) -> bytes:
    """``blake3(row + suffix)`` of each ``width``-byte row of ``buf`` (a C-contiguous buffer),
    32 bytes each, back to back. Only when :data:`available`."""
    if _ext is None:
        raise MissingDependencyError("hangar.plumbing._rowhash is not built (pip install -e . builds it); "
                                     "check rowhash.available first")
    return _ext.blake3_rows(buf, width, suffix)
