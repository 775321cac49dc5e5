"""``rowhash.check_rows_beside``: a batch of mapped rows is checked by the extension's helper thread
while the caller makes the arrays, then by both (issue 14, W1 get_batch 2nd epoch). Every row must
be checked before it returns, a flip anywhere (first, last, chunk edges) found, on the C and the
pure-Python path; through ``get_batch`` too, and in a forked child (which starts its own helper)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import hangar.store.tensorstore
from hangar import Repository
from hangar.errors import CorruptDataError, InvalidArgumentError
from hangar.plumbing import rowhash
from tests.repo_parts import c_and_python, flip_stored_byte  # noqa: F401  (c_and_python: the "path" fixture)

needs_ext = pytest.mark.skipif(not rowhash.available, reason="the _rowhash extension is not built")
has_tasks = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc/self/task")


def _rows(n: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    flat = np.random.default_rng(seed).integers(0, 256, (n, width), dtype=np.uint8)
    return flat, np.frombuffer(rowhash.stored_check_rows(flat, width), dtype=np.uint64).copy()


def _helper_threads() -> int:
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().strip() == "hangar-check"
        except OSError:  # a thread that ended meanwhile
            pass
    return n


# 784 B rows: the C path's chunks are 83 rows; 5,000 rows is ~60 chunks
@pytest.mark.parametrize("at", [0, 1, 82, 83, 84, 2500, 4998, 4999])
def test_a_flipped_row_is_found_wherever_it_is_and_fn_result_comes_back(path, at):
    flat, checks = _rows(5000, 784)
    marker = object()
    got, bad = rowhash.check_rows_beside(flat, None, checks, lambda: marker)
    assert got is marker and bad == -1
    flat[at, 391] ^= 0x20
    assert rowhash.check_rows_beside(flat, None, checks, lambda: marker) == (marker, at)
    # the same row, named through which (reversed order: its position is what comes back)
    which = np.arange(5000)[::-1].copy()
    assert rowhash.check_rows_beside(flat, which, checks[which], list)[1] == 4999 - at


def test_rows_without_a_recorded_check_are_not_checked_and_large_rows_work(path):
    flat, checks = _rows(40, 150_528, seed=1)  # one row a chunk
    flat[7, 0] ^= 1
    assert rowhash.check_rows_beside(flat, None, checks, list)[1] == 7
    checks[7] = 0  # none recorded: not compared
    assert rowhash.check_rows_beside(flat, None, checks, list)[1] == -1
    empty = np.zeros((0, 784), dtype=np.uint8)
    assert rowhash.check_rows_beside(empty, None, np.zeros(0, dtype=np.uint64), tuple) == ((), -1)


def test_an_error_in_fn_comes_back_and_the_next_call_still_checks(path):
    flat, checks = _rows(3000, 784, seed=2)

    def boom():
        raise KeyError("made up")

    for _ in range(3):
        with pytest.raises(KeyError, match="made up"):
            rowhash.check_rows_beside(flat, None, checks, boom)
    flat[1234, 5] ^= 4
    assert rowhash.check_rows_beside(flat, None, checks, list)[1] == 1234


def test_bad_arguments_are_refused(path):
    flat, checks = _rows(10, 784, seed=3)
    with pytest.raises(InvalidArgumentError, match="one check per row"):
        rowhash.check_rows_beside(flat, None, np.zeros(11, dtype=np.uint64), list)
    with pytest.raises(InvalidArgumentError, match="one check per row"):
        rowhash.check_rows_beside(flat, np.arange(3), checks, list)
    with pytest.raises(InvalidArgumentError, match="inside the array"):
        rowhash.check_rows_beside(flat, np.array([0, 10]), checks[:2], list)
    with pytest.raises(InvalidArgumentError, match="inside the array"):
        rowhash.check_rows_beside(flat, np.array([-1, 0]), checks[:2], list)


@needs_ext
@has_tasks
def test_the_helper_is_one_thread_started_once():
    flat, checks = _rows(3000, 784, seed=4)
    for _ in range(5):
        assert rowhash.check_rows_beside(flat, None, checks, list)[1] == -1
    assert _helper_threads() == 1


@pytest.fixture
def w1(repo) -> tuple[Repository, np.ndarray]:
    data = np.random.default_rng(6).integers(0, 256, size=(3000, 28, 28), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(28, 28), dtype=np.uint8)
    co["x", list(range(3000))] = data
    co.commit("first")
    co.close()
    return Repository(repo.path), data


@pytest.fixture
def beside_from_1_mib(monkeypatch):
    """Batches of 3,000 x 784 B (2.35 MB, mapped) take the path of W1's 47 MB ones."""
    monkeypatch.setattr(hangar.store.tensorstore, "_OVERLAP_FROM", 1 << 20)


@pytest.mark.parametrize("where", [0, 1500, 2999])
def test_get_batch_of_mapped_rows_checks_every_row(w1, beside_from_1_mib, path, where):
    repo, data = w1
    keys = list(range(3000))
    with repo.checkout() as co:
        got = co.arraysets["x"].get_batch(keys)
        np.testing.assert_array_equal(np.stack(got), data)
        got[0][0, 0] ^= 1  # the arrays are the caller's: an edit stays in that one
        np.testing.assert_array_equal(np.stack(co.arraysets["x"].get_batch(keys)), data)
    flip_stored_byte(repo, data[where], 300)
    with repo.checkout() as co:
        with pytest.raises(CorruptDataError, match="do not match"):
            co.arraysets["x"].get_batch(keys)


@needs_ext
@has_tasks
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_helper_and_checks(w1, beside_from_1_mib):
    """The child of a parent whose helper ran has no helper thread (fork copies one thread): its
    first batch starts one, reads the good rows and refuses a flipped one; it must not hang."""
    repo, data = w1
    keys = list(range(3000))
    with repo.checkout() as co:
        x = co.arraysets["x"]
        np.testing.assert_array_equal(np.stack(x.get_batch(keys)), data)
        assert _helper_threads() == 1
        flip_stored_byte(repo, data[2000], 100)
        pid = os.fork()
        if pid == 0:  # exit 0 only when the child's helper started and the flip was caught
            code = 1
            try:
                signal.alarm(30)  # a hang ends the child (status: killed), not the test run
                before = _helper_threads()
                try:
                    x.get_batch(keys)
                    code = 2
                except CorruptDataError:
                    code = 0 if (before, _helper_threads()) == (0, 1) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def _helper_runtime_ns() -> int:
    """CPU time the helper thread has run (its /proc schedstat), 0 when there is none."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() != "hangar-check":
                    continue
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended, or no schedstat
            pass
    return total


@needs_ext
@has_tasks
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fn_that_forks_while_the_helper_works_does_not_hang_the_child():
    """fn forks (os.fork, no exec) while the helper is inside the job: the child returns through
    check_rows_beside without that thread. It waited for the helper to leave the job (a thread the
    child does not have) and hung for ever; it must check every row itself and find a bad one."""
    width, n = 4096, 100_000  # 400 MB of never-written zero pages (read as the zero page: no RSS)
    flat = np.zeros((n, width), dtype=np.uint8)
    checks = np.full(n, rowhash.stored_check(bytes(width)), dtype=np.uint64)
    checks[-1] ^= 1  # the last row mismatches, wherever the parent's helper had got to
    rowhash.check_rows_beside(flat[:1], None, checks[:1], lambda: None)  # the helper is started
    start = _helper_runtime_ns()

    def fn() -> int:
        deadline = time.monotonic() + 2
        while _helper_runtime_ns() - start < 2_000_000 and time.monotonic() < deadline:
            pass  # until the helper has hashed for 2 ms: inside the job (~40 ms of hashing)
        return os.fork()

    pid, bad = rowhash.check_rows_beside(flat, None, checks, fn)
    if pid == 0:
        os._exit(0 if bad == n - 1 else 2)
    assert bad == n - 1
    deadline = time.monotonic() + 30  # the child hangs inside the call: the parent ends it
    while not (got := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a child's exit, not papering over a race
    if not got[0]:
        os.kill(pid, signal.SIGKILL)
        got = os.waitpid(pid, 0)
    assert os.WIFEXITED(got[1]) and os.WEXITSTATUS(got[1]) == 0, f"the child hung or failed: {got[1]}"


@needs_ext
def test_checks_and_rows_at_odd_addresses_are_read(path):
    """checks and which may be views at any byte offset (get_batch passes the mapped pack index's
    checks column itself): read as uint64/int64 through unaligned loads (the -fsanitize=undefined
    build reported 'load of misaligned address' in beside_run), and every row still checked."""
    flat, checks = _rows(400, 784)
    for off in (1, 3, 4):
        raw = bytearray(8 * 2 * len(checks) + 8)
        c = np.frombuffer(raw, dtype=np.uint64, count=len(checks), offset=off)
        w = np.frombuffer(raw, dtype=np.int64, count=len(checks), offset=off + 8 * len(checks))
        c[:] = checks[::-1]
        w[:] = np.arange(len(checks))[::-1]
        assert not c.flags.aligned and not w.flags.aligned
        assert rowhash.check_rows_beside(flat, w, c, lambda: 7) == (7, -1)
        c[123] ^= 1
        assert rowhash.check_rows_beside(flat, w, c, lambda: 7) == (7, 123)
        c[123] ^= 1
        assert rowhash.check_rows_beside(flat, None, checks[::-1].copy(), lambda: 0)[1] != -1


# rows under 4 KiB are prefetched ~4 KiB ahead of the one checked (check_spans and the helper's
# loop): the prefetch must never change what is found, least of all near the end, where the row
# ahead is past the last one (and, through which, a row named anywhere in flat)
@pytest.mark.parametrize("width", [1, 64, 784, 4095, 4096])
def test_a_flip_in_the_last_rows_is_found_with_rows_prefetched_ahead(path, width):
    n = 300
    flat, checks = _rows(n, width, seed=width)
    which = np.random.default_rng(width).permutation(n)
    for at in (n - 1, n - 2, n - 7, 0):
        flat[at, width // 2] ^= 0x40
        assert rowhash.check_rows(flat, np.arange(n), checks) == at
        assert rowhash.check_rows_beside(flat, None, checks, list)[1] == at
        pos = int(np.flatnonzero(which == at)[0])
        assert rowhash.check_rows(flat, which, checks[which]) == pos
        assert rowhash.check_rows_beside(flat, which, checks[which], list)[1] == pos
        flat[at, width // 2] ^= 0x40
    assert rowhash.check_rows(flat, which, checks[which]) == -1
    assert rowhash.check_rows_beside(flat, which, checks[which], list)[1] == -1
