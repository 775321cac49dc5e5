"""The writer lock: at most one writer (checkout, merge, gc, repair) changes a repository at a time.

The lock is a file, ``.hangar/writer.lock``, created with ``O_EXCL`` and holding JSON
(``owner``, ``pid``, ``host``, ``pidns``, ``since``). Every change of the file (acquire,
release, force-release) happens under an exclusive ``flock`` of the ``.hangar`` directory,
so a force-release reads the holder and removes the file in one step: a writer that takes
the lock in between keeps it (the force-release then finds another holder and stops).

Use it as a context manager (``with WriterLock(git_dir, path) as owner: ...``) or with
:meth:`WriterLock.acquire` / :meth:`WriterLock.release` when the lock outlives a block (a
writer checkout holds it until ``close()``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from hangar.errors import WriterLockError
from hangar.plumbing.paths import writer_lock_path
from hangar.plumbing.pids import pid_alive
from hangar.plumbing.regular import MAX_STATE_BYTES, read_regular


def pid_namespace() -> Optional[str]:
    """This process's pid namespace (``pid:[inode]``), or None where /proc does not say (not Linux)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


class WriterLock:
    """The writer lock of the repository whose ``.hangar`` directory is ``git_dir``.

    Parameters
    ----------
    git_dir : str
        The repository's ``.hangar`` directory (it must exist).
    repo_path : str, optional
        The repository's directory, named in error messages (default: ``git_dir``'s parent).
    """

    def __init__(self, git_dir: str, repo_path: Optional[str] = None) -> None:
        self.git_dir = git_dir
        self.path = writer_lock_path(git_dir)
        self.repo_path = repo_path if repo_path is not None else os.path.dirname(git_dir.rstrip(os.sep))
        self._held: list[str] = []  # owners taken by ``with`` blocks, innermost last

    def __repr__(self) -> str:
        return f"WriterLock({self.path!r})"

    # ------------------------------------------------------------- guard
    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Exclusive ``flock`` of the ``.hangar`` directory: lock-file changes happen one at a time."""
        fd = os.open(self.git_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def _read(self) -> Optional[dict[str, Any]]:
        """The lock file's JSON; None when there is none, ``{}`` when it cannot be read."""
        try:
            held = json.loads(read_regular(self.path, self.git_dir, MAX_STATE_BYTES))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return held if isinstance(held, dict) else {}

    # ----------------------------------------------------------- queries
    @property
    def held(self) -> bool:
        """True when someone holds the lock."""
        return os.path.exists(self.path)

    def holder(self) -> Optional[dict[str, Any]]:
        """Who holds the lock: ``{'pid', 'host', 'since', 'alive'}``, or None when it is free.

        ``alive`` is True or False when the holder runs on this host (its pid is checked), and
        None when that cannot be told (another host, or an unreadable lock file).
        """
        held = self._read()
        if held is None:
            return None
        if not held:
            return {"pid": None, "host": None, "since": None, "alive": None}
        pid, host = held.get("pid"), held.get("host")
        alive: Optional[bool] = None
        # a pid names a process only in its pid namespace: a container with the host's hostname
        # (docker --network host) has its own, where os.kill would call a running writer dead
        if (host == socket.gethostname() and held.get("pidns") == pid_namespace() and isinstance(pid, int)
                and pid > 0):
            alive = pid_alive(pid)
        return {"pid": pid, "host": host, "since": held.get("since"), "alive": alive}

    # ----------------------------------------------------------- acquire
    def acquire(self, timeout: Optional[float] = None, owner: Optional[str] = None) -> str:
        """Take the lock; return the owner token that releases it.

        Parameters
        ----------
        timeout : float, optional
            Seconds to keep trying while another holder has it (polled, backing off to 0.1 s);
            default: fail at once.
        owner : str, optional
            Owner token to record (a writer checkout retaking its force-released lock).

        Raises
        ------
        PermissionError
            (``WriterLockError``) If another holder has the lock (past ``timeout``); its
            ``holder_alive`` attribute says whether that holder runs (True/False) or cannot be told.
        """
        if timeout:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while True:
                try:
                    return self.acquire(owner=owner)
                except WriterLockError:
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.1)
        owner = owner or f"{uuid.uuid4().hex}"
        info = {"owner": owner, "pid": os.getpid(), "host": socket.gethostname(), "pidns": pid_namespace(),
                "since": time.time()}
        with self._guard():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                fd = None
            if fd is not None:
                with os.fdopen(fd, "w") as f:
                    json.dump(info, f)
                return owner
        raise self._held_error() from None

    def _held_error(self) -> WriterLockError:
        holder = self.holder()
        who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
        alive = holder.get("alive") if holder else None
        if alive is False:
            err = WriterLockError(
                f"the writer lock of {self.repo_path!r} is held by {who}, which is no longer running (it died "
                "without closing its writer checkout): release the stale lock with "
                "repo.force_release_writer_lock()")
        elif alive:
            err = WriterLockError(
                f"the writer lock of {self.repo_path!r} is held by {who}, which is running: close that writer "
                "checkout (or wait for it: repo.checkout(write=True, timeout=SECONDS))")
        else:
            err = WriterLockError(
                f"the writer lock of {self.repo_path!r} is held by {who}; close that writer checkout, or if it "
                "is dead call repo.force_release_writer_lock()")
        err.holder_alive = alive  # type: ignore[attr-defined]
        return err

    def owns(self, owner: str) -> bool:
        """True when ``owner`` holds the lock now."""
        held = self._read()
        return bool(held) and held.get("owner") == owner  # type: ignore[union-attr]

    def check(self, owner: str, unchanged: Callable[[], bool]) -> None:
        """Raise ``WriterLockError`` unless ``owner`` still holds the lock.

        A lock force-released while its holder stayed open is taken again when it is free and
        ``unchanged()`` says no other writer worked meanwhile (a writer checkout compares the
        staging state with the one it last saved); else the old holder must not write over that
        writer's work, which it does not see.
        """
        held = self._read()
        if held is None:
            self.acquire(owner=owner)
            if unchanged():
                return
            self.release(owner)
            held = {}
        if held.get("owner") != owner:
            raise WriterLockError(
                f"the writer lock of {self.repo_path!r} was force-released while this writer checkout was open "
                "and another writer holds it or has used it; nothing was written (this checkout's staged changes "
                "are not saved). Close this checkout and open a new one when the other writer is done")

    # ----------------------------------------------------------- release
    def release(self, owner: str) -> None:
        """Release the lock if ``owner`` holds it (a no-op otherwise: it was force-released)."""
        with self._guard():
            held = self._read()
            if held and held.get("owner") == owner:
                os.unlink(self.path)

    def force_release(self, holder: Optional[dict[str, Any]] = None,
                      cleanup: Optional[Callable[[], None]] = None) -> bool:
        """Remove the lock whoever holds it; with ``holder``, only while that holder still has it.

        Parameters
        ----------
        holder : dict, optional
            What :meth:`holder` returned when the caller decided to release (e.g. a dead pid):
            the lock is removed only if its ``pid``, ``host`` and ``since`` still match, read
            and removed under the guard, so a writer that took the lock meanwhile keeps it.
        cleanup : callable, optional
            Called after the lock file is removed, still under the guard (e.g. removing the git
            ref locks the dead writer left): no new writer can acquire the lock and start its own
            ref update until it returns, so it never removes a live writer's files.

        Returns
        -------
        bool
            True when the lock is free now because of this call or was free already (without
            ``holder``); False when ``holder`` no longer holds it (nothing removed).
        """
        with self._guard():
            if holder is not None:
                now = self.holder()
                if now is None:
                    return False
                if any(now.get(k) != holder.get(k) for k in ("pid", "host", "since")):
                    return False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            if cleanup is not None:
                cleanup()
        return True

    # ------------------------------------------------------ with-blocks
    def __enter__(self) -> str:
        owner = self.acquire()
        self._held.append(owner)
        return owner

    def __exit__(self, *exc: object) -> None:
        self.release(self._held.pop())
