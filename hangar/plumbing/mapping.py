"""Private (copy-on-write) memory mappings of file ranges, as numpy arrays, without a file descriptor.

A bulk read of samples that lie back to back in a pack can hand out rows of a mapping of the
pack instead of copying them: the pages come straight from the page cache. Copying 47 MB
into a fresh ``np.empty`` cost ~27 ms here (about half of it faulting in and zeroing the new
pages), mapping it well under 1 ms. ``MAP_PRIVATE`` makes the arrays writeable without any
write reaching the file: a caller that edits a returned sample in place changes its own copy
of that page only, never the stored data, and each call maps afresh, so the edit is not seen
by a later read either.

``mmap.mmap`` (Python 3.11) keeps a duplicate of the file descriptor open for the life of the
mapping, so a caller holding a thousand batches would hold a thousand descriptors; this maps
through libc (ctypes) instead, and the mapping is released when the last array over it is
garbage collected.
"""

from __future__ import annotations

import mmap
import os
import weakref
from typing import Any, Optional

import numpy as np

_libc: Optional[Any] = None
_PAGE = mmap.ALLOCATIONGRANULARITY
#: libc mmap with a 64-bit offset (POSIX); elsewhere every read copies
_POSIX = os.name == "posix" and hasattr(mmap, "MAP_PRIVATE")


def _load_libc() -> Any:
    global _libc
    if _libc is None:
        import ctypes  # ~2 ms: imported on the first bulk read, not with hangar

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int64]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = (ctypes, libc)
    return _libc


_limited: Optional[bool] = None


def address_space_limited() -> bool:
    """Whether this process runs under an address-space limit (``RLIMIT_AS``): there a mapping
    kept for later reads takes room its next allocations may need, so callers read instead."""
    global _limited
    if _limited is None:
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_AS)[0]
            _limited = soft != resource.RLIM_INFINITY
        except (ImportError, OSError, ValueError):  # no resource module (Windows)
            _limited = True
    return _limited


def map_private(fd: int, offset: int, length: int) -> Optional[np.ndarray]:
    """``length`` bytes of the file ``fd`` from ``offset`` as a writeable 1-D uint8 array over a
    private mapping (writes stay in this process). ``fd`` may be closed afterwards.

    The caller makes sure the file holds ``offset + length`` bytes and is never truncated
    (an access past the end of a mapped file raises SIGBUS): packs are append-only and
    immutable once finished. ``None`` when the kernel refuses the mapping (ENOMEM under an
    address-space limit, a file system without mmap): the caller reads a copy instead.
    """
    if not _POSIX:
        return None
    if length <= 0:
        return np.empty(0, dtype=np.uint8)
    ctypes, libc = _load_libc()
    start = offset - offset % _PAGE
    span = length + (offset - start)
    addr = libc.mmap(None, span, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, start)
    if addr is None or addr == ctypes.c_void_p(-1).value:  # MAP_FAILED
        return None
    holder = (ctypes.c_ubyte * span).from_address(addr)
    # the mapping lives as long as the ctypes array over it, which every view's .base chain keeps;
    # not unmapped at interpreter exit (finalize's default): exit handlers registered before it
    # still read the arrays over it (that read unmapped memory, SIGSEGV), the OS unmaps at exit
    weakref.finalize(holder, libc.munmap, addr, span).atexit = False
    return np.frombuffer(holder, dtype=np.uint8)[offset - start:]
