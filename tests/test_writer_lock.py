"""The writer lock on its own (hangar.writer_lock.WriterLock), and force-release racing an acquire."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

from hangar.errors import WriterLockError
from hangar.plumbing.paths import writer_lock_path
from hangar.writer_lock import WriterLock, pid_namespace


@pytest.fixture
def lock(tmp_path) -> WriterLock:
    git_dir = tmp_path / ".hangar"
    git_dir.mkdir()
    return WriterLock(str(git_dir))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_dead_holder(git_dir: str, since: float = 1.0) -> None:
    """A lock file left by a writer that died (its pid no longer runs)."""
    with open(writer_lock_path(git_dir), "w") as f:
        json.dump({"owner": "dead", "pid": _dead_pid(), "host": socket.gethostname(), "pidns": pid_namespace(),
                   "since": since}, f)


def test_acquire_records_the_holder_and_release_frees_it(lock):
    assert not lock.held and lock.holder() is None
    owner = lock.acquire()
    holder = lock.holder()
    assert lock.held and lock.owns(owner)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["alive"] is True
    lock.release(owner)
    assert not lock.held and lock.holder() is None


def test_a_second_acquire_fails_naming_the_holder_and_whether_it_runs(lock):
    owner = lock.acquire()
    with pytest.raises(WriterLockError, match=f"pid {os.getpid()}") as err:
        lock.acquire()
    assert isinstance(err.value, PermissionError) and err.value.holder_alive is True
    lock.release(owner)


def test_a_dead_holder_is_reported_as_such(lock):
    _plant_dead_holder(lock.git_dir)
    assert lock.holder()["alive"] is False
    with pytest.raises(WriterLockError, match="no longer running") as err:
        lock.acquire()
    assert err.value.holder_alive is False


def test_release_by_another_owner_changes_nothing(lock):
    owner = lock.acquire()
    lock.release("not-the-owner")
    assert lock.owns(owner)
    lock.release(owner)


def test_the_lock_is_a_context_manager_and_nests(lock):
    with lock as outer:
        assert lock.owns(outer)
        with pytest.raises(WriterLockError):
            with lock:
                pass  # pragma: no cover - the inner acquire fails
        assert lock.owns(outer)  # the failed inner block released nothing
    assert not lock.held


def test_a_block_that_raises_still_releases(lock):
    with pytest.raises(KeyError):
        with lock:
            raise KeyError("boom")
    assert not lock.held


def test_acquire_with_timeout_waits_for_the_release(lock):
    owner = lock.acquire()
    timer = threading.Timer(0.2, lock.release, args=(owner,))
    timer.start()
    try:
        second = lock.acquire(timeout=30)
    finally:
        timer.join()
    assert lock.owns(second)


def test_acquire_with_timeout_gives_up(lock):
    lock.acquire()
    with pytest.raises(WriterLockError):
        lock.acquire(timeout=0.05)


def test_check_retakes_a_force_released_lock_only_when_nothing_changed(lock):
    owner = lock.acquire()
    assert lock.force_release()
    lock.check(owner, lambda: True)  # free and unchanged: taken again
    assert lock.owns(owner)
    assert lock.force_release()
    with pytest.raises(WriterLockError, match="force-released"):
        lock.check(owner, lambda: False)  # another writer worked meanwhile
    assert not lock.held  # not kept either


def test_check_refuses_when_another_writer_holds_it(lock):
    owner = lock.acquire()
    lock.force_release()
    other = lock.acquire()
    with pytest.raises(WriterLockError, match="force-released"):
        lock.check(owner, lambda: True)
    assert lock.owns(other)


def test_force_release_with_the_holder_seen_removes_that_holder(lock):
    _plant_dead_holder(lock.git_dir)
    seen = lock.holder()
    assert lock.force_release(seen) is True
    assert not lock.held


def test_force_release_never_removes_a_lock_taken_after_the_holder_was_read(lock):
    # `hangar writer-lock --force-release` reads the holder (dead), decides, then releases: a
    # writer that took the lock in between (after another release of the dead lock) must keep it
    _plant_dead_holder(lock.git_dir)
    seen = lock.holder()
    assert seen["alive"] is False
    assert lock.force_release()  # someone else released the stale lock ...
    owner = lock.acquire()  # ... and a new writer took it
    assert lock.force_release(seen) is False
    assert lock.owns(owner)


def test_force_release_of_a_lock_already_free_reports_it(lock):
    _plant_dead_holder(lock.git_dir)
    seen = lock.holder()
    lock.force_release()
    assert lock.force_release(seen) is False
    assert lock.force_release() is True  # without a holder: free is free


def test_force_release_waits_for_an_acquire_in_progress(lock):
    # every change of the lock file happens under the guard (an flock of .hangar): while one
    # is in progress (the guard is held here), force-release neither reads nor removes anything
    import fcntl

    _plant_dead_holder(lock.git_dir)
    seen = lock.holder()
    fd = os.open(lock.git_dir, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    result: list = []
    t = threading.Thread(target=lambda: result.append(lock.force_release(seen)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and lock.held  # blocked on the guard: nothing removed
    # what an acquire does under the guard: the stale lock replaced by a new holder's
    os.unlink(lock.path)
    with open(lock.path, "w") as f:
        json.dump({"owner": "new", "pid": os.getpid(), "host": socket.gethostname(), "pidns": pid_namespace(),
                   "since": 2.0}, f)
    os.close(fd)  # the guard is free
    t.join(30)
    assert result == [False] and lock.owns("new")


def test_repository_force_release_with_a_stale_holder_keeps_a_new_writer(aset_repo):
    git_dir = os.path.join(aset_repo.path, ".hangar")
    _plant_dead_holder(git_dir)
    seen = aset_repo.writer_lock_holder
    with pytest.warns(ResourceWarning):
        assert aset_repo.force_release_writer_lock() is True  # another user released it ...
    co = aset_repo.checkout(write=True)  # ... and a writer started
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing released: no warning either
            assert aset_repo.force_release_writer_lock(holder=seen) is False
        co["foo", 42] = np.full(5, 42, np.int64)
        assert co.commit("the writer kept its lock")
    finally:
        co.close()
    assert aset_repo.writer_lock_holder is None


def test_cli_force_release_removes_a_dead_writers_lock(aset_repo):
    from tests.cli_helpers import ok

    _plant_dead_holder(os.path.join(aset_repo.path, ".hangar"))
    assert "released" in ok(aset_repo.path, "writer-lock", "--force-release")
    assert aset_repo.writer_lock_holder is None


def test_force_release_cleanup_runs_before_another_writer_can_acquire(lock, tmp_path):
    """The stale ref locks of a dead writer are removed under the guard: a writer acquiring at
    the same moment waits for the cleanup, so it never loses a ref lock it has just taken."""
    import fcntl

    _plant_dead_holder(lock.git_dir)
    seen = []

    def cleanup() -> None:
        # another process's view: the guard (an flock of .hangar) is held while cleanup runs
        fd = os.open(lock.git_dir, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        seen.append(lock.held)

    assert lock.force_release(cleanup=cleanup) is True
    assert seen == [False]  # the lock file was already gone when cleanup ran
    owner = lock.acquire(timeout=0)
    assert lock.owns(owner)


def test_force_release_of_a_changed_holder_runs_no_cleanup(lock):
    _plant_dead_holder(lock.git_dir, since=1.0)
    stale = lock.holder()
    _plant_dead_holder(lock.git_dir, since=2.0)  # another writer died since the caller looked
    called = []
    assert lock.force_release(stale, cleanup=lambda: called.append(1)) is False
    assert called == [] and lock.held
