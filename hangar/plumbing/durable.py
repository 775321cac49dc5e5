"""Durable file writes: the one implementation of "temp file, write, fsync, rename, fsync dir".

A file replaced through :func:`replace_file_durably` holds either its old or its new content
after a crash or power loss, never a mix, and the rename itself survives (its directory is
fsynced). Every durable write in hangar goes through here: git packs (``plumbing.pack``),
data packs and their indexes (``store.packs``, ``store.compact``) and the staging state
(``records.staging``).
"""

from __future__ import annotations

import os
import threading
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from hangar._faults import crash_point
from hangar.errors import CorruptDataError, IncompleteIOError
from hangar.plumbing import rowhash

Chunk = Union[bytes, bytearray, memoryview, np.ndarray]

#: suffix of the temporary file :func:`replace_file` writes next to its target (the store's
#: sweep of interrupted writes removes leftovers by it)
TMP_SUFFIX = ".tmp"


def pwrite_all(fd: int, data: Chunk, offset: int) -> None:
    """Write all of ``data`` at ``offset``: a short write (disk full) is retried, no progress raises.

    Callers advance their own offsets only after this returns, so a failed write leaves
    their state as it was (the next write covers the same range again).

    Raises
    ------
    hangar.errors.IncompleteIOError
        (an ``OSError``) If a write makes no progress.
    """
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise IncompleteIOError(f"no progress writing {len(view)} bytes at offset {offset}")
        view = view[n:]
        offset += n


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` to disk, without waiting.

    Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` through the C extension. It makes nothing
    durable (no wait, no metadata, no disk-cache flush: the fsync that follows still does that); it
    moves the disk's work earlier, so a file written in pieces is mostly on disk by the time it is
    fsynced (a 268 MB pack: the fsync at commit waits for the last piece instead of all of it). A
    write-back error it causes is reported by that later fsync. A no-op returning False where the
    call does not exist or does not apply (other systems, the extension not built, pipes, file
    systems without it).

    Parameters
    ----------
    fd : int
        A descriptor open for writing.
    offset, length : int
        The byte range just written (``length`` 0: nothing is done).

    Returns
    -------
    bool
        True when write-back was started.

    Raises
    ------
    OSError
        A bad descriptor or an I/O error reported at once (EBADF, EIO, ENOSPC, ENOMEM).
    hangar.errors.InvalidArgumentError
        (a ``ValueError``) A negative ``offset`` or ``length``.
    """
    return rowhash.start_writeback(fd, offset, length)


#: how directories are opened to be fsynced: a FIFO planted where a directory should be fails at
#: once (ENOTDIR) instead of blocking the open until someone writes to it
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

#: how files are created to be written: never through a symbolic link planted at the name (a crafted
#: repository could otherwise have our bytes written over a file outside it)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def _create(path: str, mode: int) -> int:
    """``path`` created (or truncated) for writing; ``CorruptDataError`` when it is a symbolic link."""
    try:
        return os.open(path, _CREATE_FLAGS, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise CorruptDataError(f"{path} is a symbolic link; a repository holds no links: remove it "
                                   "and run `hangar fsck`") from exc
        raise


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename (or a removal) inside it is durable."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(paths: Sequence[str]) -> None:
    """:func:`fsync_dir` of every directory of ``paths``, together (:func:`fsync_many`)."""
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, _DIR_FLAGS))
        fsync_many(fds)
    finally:
        for fd in fds:
            os.close(fd)


def write_synced(path: str, chunks: Iterable[Chunk], mode: int = 0o644) -> None:
    """Create (or truncate) ``path``, write ``chunks`` to it and fsync it.

    On any failure the partly written file is removed, so no half-written file is left under
    ``path``; the caller renames it into place.
    """
    fd = write_open(path, chunks, mode)
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def write_open(path: str, chunks: Iterable[Chunk], mode: int = 0o644) -> int:
    """:func:`write_synced` without the fsync: create (or truncate) ``path``, write ``chunks`` and
    return the open descriptor, for the caller to fsync with others (:func:`fsync_many`) and close.
    On failure the partly written file is removed."""
    fd = _create(path, mode)
    try:
        offset = 0
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            pwrite_all(fd, view, offset)
            offset += len(view)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    return fd


def fsync_many(fds: Sequence[int]) -> None:
    """fsync every descriptor of ``fds`` at the same time, one thread each but the first.

    ext4 commits concurrent fsyncs in one journal transaction: a data pack's chunk file, its
    ``zarr.json`` and its index fsynced one after the other waited for three commits (a
    60,000-sample commit: 26 + 1 + 18 ms here), together for about the largest. Only what may
    be durable in any order goes in one call; what must follow waits for it to return.

    In C where the extension is built (:func:`~hangar.plumbing.rowhash.fsync_all`: a POSIX thread
    per descriptor, no GIL): a Python thread per fsync waited in ``Thread.start()`` for the thread
    to be scheduled and took the GIL twice, a few ms each on the loaded 2-core box while another
    thread ran Python code (a commit's location tables beside its fsyncs).

    Raises
    ------
    OSError
        The first fsync that failed, once all have returned.
    """
    if len(fds) > 1 and rowhash.fsync_all(fds):
        return
    errors: list[OSError] = []

    def sync(fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync, args=(fd,), name="hangar-fsync") for fd in fds[1:]]
    for t in threads:
        t.start()
    if fds:
        sync(fds[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def replace_file(path: str, chunks: Iterable[Chunk], mode: int = 0o644, fault: Optional[str] = None) -> None:
    """Atomically replace ``path`` with ``chunks``: write and fsync ``path + '.tmp'``, rename it over ``path``.

    Readers see the old or the new content, never a mix, and the new content is on disk before
    the rename. The rename itself is durable only once the directory is fsynced: see
    :func:`replace_file_durably` (or call :func:`fsync_dir` after several replacements in one
    directory). On failure before the rename the temporary file is removed and ``path`` keeps
    its old content.

    Parameters
    ----------
    path : str
        The file to write.
    chunks : iterable of bytes-like
        Its new content.
    mode : int
        Permission bits of a newly created file.
    fault : str, optional
        Name of a crash point (``hangar._faults``) between the fsync and the rename, for crash tests.
    """
    tmp = path + TMP_SUFFIX
    write_synced(tmp, chunks, mode)
    try:
        if fault is not None:
            crash_point(fault)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def replace_file_durably(path: str, chunks: Iterable[Chunk], mode: int = 0o644, fault: Optional[str] = None) -> None:
    """:func:`replace_file`, then fsync the directory so the replacement survives a crash."""
    replace_file(path, chunks, mode, fault)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
