"""Opening the files a repository holds: only regular files inside it, of bounded size.

A repository directory can come from anyone (a tarball, a shared disk), so every file hangar
reads under ``.hangar`` (packs, indexes, caches, state files) is opened here. What a crafted
repository could plant in place of such a file, and what :func:`open_regular` does about it:

- a symlink (to ``/dev/zero``, ``/etc/passwd``, another repository): refused (``O_NOFOLLOW``
  for the last component, a real-path check for the directories above it);
- a FIFO: refused without waiting (``O_NONBLOCK``: a plain open of a FIFO blocks until a
  writer appears, i.e. for ever);
- a device, socket or directory: refused (``S_ISREG`` on the opened descriptor);
- a file larger than its caller's bound: refused before a byte is read.

Refusals raise ``CorruptDataError`` (also an ``OSError``). Callers reading data the repository
cannot do without let it propagate; callers reading a cache (rebuilt when missing or damaged)
catch ``OSError`` and rebuild: one function, both uses.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from hangar.errors import CorruptDataError

#: bound of hangar's small state files (staging state, writer lock, command line branch, transfer
#: markers): each holds well under 1 KiB of JSON or a branch name
MAX_STATE_BYTES = 64 << 10


def open_regular(path: str, root: str, max_size: Optional[int] = None) -> int:
    """An ``O_RDONLY`` file descriptor of ``path``, only if it is a regular file inside ``root``.

    Parameters
    ----------
    path
        The file to open.
    root
        The directory it must lie in (the repository's ``.hangar``, a store root, a cache).
    max_size
        Largest size accepted, in bytes; ``None`` for no bound.

    Returns
    -------
    int
        An open descriptor (``O_CLOEXEC``); the caller closes it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (passed through: a pack compacted away meanwhile).
    CorruptDataError
        (an ``OSError``) If ``path`` is a symlink, leads outside ``root``, is no regular file
        (FIFO, device, socket, directory) or is larger than ``max_size``.
    """
    real = os.path.realpath(path)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise CorruptDataError(f"{path} leads outside the repository (to {real}); a repository holds no links")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptDataError(f"{path} cannot be opened as a regular file: {exc}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (max_size is not None and st.st_size > max_size):
        os.close(fd)
        what = ("is not a regular file" if not stat.S_ISREG(st.st_mode)
                else f"holds {st.st_size} bytes (at most {max_size})")
        raise CorruptDataError(f"{path} {what}; a repository holds only regular files: remove it and run `hangar fsck`")
    return fd


def read_regular(path: str, root: str, max_size: Optional[int] = None) -> bytes:
    """All bytes of a regular file inside ``root``: its size, read once.

    Raises what :func:`open_regular` raises, and ``CorruptDataError`` if the file changed size
    while it was read.
    """
    fd = open_regular(path, root, max_size)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if len(data) != size:
        raise CorruptDataError(f"{path} changed size while read ({len(data)} of {size} bytes)")
    return data


def read_cache(path: str, root: str, max_size: int) -> Optional[bytes]:
    """All bytes of the cache file ``path``, or ``None`` when it is absent, refused (see
    :func:`open_regular`) or unreadable: a cache is rebuilt then, never trusted blindly."""
    try:
        return read_regular(path, root, max_size)
    except OSError:
        return None


def own_directory(path: str, root: str) -> str:
    """Make ``path`` a real directory inside ``root`` for a cache to write in, and return it.

    Each component below ``root`` is created when missing; one that is a symlink (a crafted
    repository's link out of it) or not a directory is removed - the link itself, never what
    it points to - and made a directory: a cache is rebuilt inside the repository instead of
    writing where a link leads. ``root`` itself is the caller's to trust.

    Raises
    ------
    OSError
        If a component cannot be made a directory (the caller skips its cache write).
    """
    rel = os.path.relpath(path, root)
    if rel == os.curdir:
        return path
    if rel.startswith(os.pardir):
        raise CorruptDataError(f"{path} is not inside {root}")
    at = root
    for part in rel.split(os.sep):
        at = os.path.join(at, part)
        try:
            st = os.lstat(at)
        except FileNotFoundError:
            try:
                os.mkdir(at)
            except FileExistsError:  # made by another process meanwhile: checked below
                pass
            st = os.lstat(at)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            os.unlink(at)  # a link or a file in a cache's place: removed, its target untouched
            os.mkdir(at)
    return path
