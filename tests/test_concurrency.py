"""One writer and many readers in separate processes; the writer lock between writers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import WriterLockError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (64, 256)  # 64 KiB float32 samples: a torn read would show


def spawn(code: str, *args: str, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})


HOLDER = """
    import sys
    from hangar import Repository
    co = Repository(sys.argv[1]).checkout(write=True)
    print("locked", flush=True)
    sys.stdin.readline()
    co.close()
    print("released", flush=True)
"""


@pytest.fixture
def lock_holder(aset_repo):
    with spawn(HOLDER, aset_repo.path, stdin=True) as proc:  # closes its pipes at the end
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
        yield proc
        if proc.poll() is None:
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_second_writer_gets_permission_error_naming_pid_and_host(aset_repo, lock_holder):
    with pytest.raises(PermissionError) as err:
        aset_repo.checkout(write=True)
    assert isinstance(err.value, WriterLockError)
    assert f"pid {lock_holder.pid} on {socket.gethostname()}" in str(err.value)


@pytest.mark.slow
def test_writer_timeout_gives_up_after_the_deadline(aset_repo, lock_holder):
    t0 = time.monotonic()
    with pytest.raises(PermissionError, match=f"pid {lock_holder.pid}"):
        aset_repo.checkout(write=True, timeout=0.3)
    assert time.monotonic() - t0 >= 0.3


@pytest.mark.slow
def test_writer_timeout_waits_for_the_lock_to_be_released(aset_repo, lock_holder):
    lock_holder.stdin.write("\n")
    lock_holder.stdin.flush()
    co = aset_repo.checkout(write=True, timeout=30)
    try:
        assert co.branch_name == "master"
    finally:
        co.close()
    assert lock_holder.wait(timeout=30) == 0


@pytest.mark.slow
@pytest.mark.parametrize("bad", [-1, "1", True, float("nan")])
def test_writer_timeout_must_be_a_non_negative_number(aset_repo, bad):
    with pytest.raises(ValueError, match="timeout"):
        aset_repo.checkout(write=True, timeout=bad)
    assert not aset_repo.writer_lock_held


WRITER = """
    import sys, numpy as np
    from hangar import Repository
    repo = Repository(sys.argv[1])
    for k in range(1, int(sys.argv[2]) + 1):
        co = repo.checkout(write=True)
        a = co.arraysets["big"]
        for i in range(8):
            a[i] = np.full((64, 256), k * 100 + i, dtype=np.float32)
        co.metadata["k"] = str(k)
        co.commit(f"k={k}")
        co.close()
    open(sys.argv[3], "w").close()
"""

READER = """
    import json, os, sys, numpy as np
    from hangar import Repository
    repo = Repository(sys.argv[1])
    seen, reads = set(), 0
    while True:
        done = os.path.exists(sys.argv[2])
        co = repo.checkout(branch="master")
        k = int(co.metadata["k"])
        a = co.arraysets["big"]
        assert sorted(a.keys()) == list(range(8)), sorted(a.keys())
        for i in range(8):
            arr = a[i]
            if not (arr == k * 100 + i).all():
                raise SystemExit(f"commit k={k} sample {i} holds {np.unique(arr)[:5]}")
        co.close()
        seen.add(k)
        reads += 1
        if reads == 1:
            print("ready", flush=True)  # the writer starts once every reader has read once
        if done:
            break
    print(json.dumps({"seen": sorted(seen), "reads": reads}))
"""


@pytest.mark.slow
def test_readers_in_other_processes_see_only_whole_committed_states(aset_repo, tmp_path):
    co = aset_repo.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=SHAPE, dtype=np.float32, backend="raw")
    for i in range(8):
        big[i] = np.full(SHAPE, i, dtype=np.float32)
    co.metadata["k"] = "0"
    co.commit("k=0")
    co.close()
    done = str(tmp_path / "writer-done")
    commits = 25
    readers = [spawn(READER, aset_repo.path, done) for _ in range(3)]
    for r in readers:  # each has read k=0 before the writer starts, however slow its start was
        assert r.stdout.readline().strip() == "ready", r.stderr.read()
    writer = spawn(WRITER, aset_repo.path, str(commits), done)
    _, werr = writer.communicate(timeout=240)
    assert writer.returncode == 0, werr
    seen: set[int] = set()
    for r in readers:
        out, err = r.communicate(timeout=240)
        assert r.returncode == 0, err
        got = json.loads(out)
        assert got["reads"] >= 1
        seen.update(got["seen"])
    assert seen <= set(range(commits + 1))
    assert 0 in seen  # the first read of each reader comes before the writer started
    assert commits in seen  # the last read of each reader comes after the writer finished


@pytest.mark.slow
def test_a_reader_keeps_its_commit_while_the_writer_moves_on(aset_repo):
    old = aset_repo.checkout(branch="master")
    before = {k: v.copy() for k, v in old.arraysets["foo"].items()}
    w = spawn(textwrap.dedent("""
        import sys, numpy as np
        from hangar import Repository
        co = Repository(sys.argv[1]).checkout(write=True)
        for i in range(10):
            co.arraysets["foo"][i] = np.full(5, -i, dtype=np.int64)
        co.arraysets["foo"][77] = np.zeros(5, dtype=np.int64)
        co.commit("overwrite")
        co.close()
    """), aset_repo.path)
    _, err = w.communicate(timeout=120)
    assert w.returncode == 0, err
    try:
        assert {k: v for k, v in old.arraysets["foo"].items()}.keys() == before.keys()
        for k, v in old.arraysets["foo"].items():
            np.testing.assert_array_equal(v, before[k])
    finally:
        old.close()
    new = Repository(aset_repo.path).checkout(branch="master")
    try:
        np.testing.assert_array_equal(new.arraysets["foo"][3], np.full(5, -3, dtype=np.int64))
        assert 77 in new.arraysets["foo"]
    finally:
        new.close()


def test_sample_readded_after_gc_elsewhere_is_stored_again(aset_repo):
    """A process whose store index predates a gc must not dedup against bytes gc removed."""
    x = np.arange(5, dtype=np.int64) * 1000
    co = aset_repo.checkout(write=True)
    co["foo", 900] = x
    co.close()  # x's bytes are flushed into a pack
    co = aset_repo.checkout(write=True)
    co.reset_staging_area()  # ... and now unreachable
    Repository(aset_repo.path).gc()  # another process/object removes them
    co = aset_repo.checkout(write=True)
    co["foo", 900] = x
    c = co.commit("re-add after gc")
    co.close()
    r = Repository(aset_repo.path).checkout(commit=c)
    np.testing.assert_array_equal(r["foo", 900], x)
    r.close()
    assert Repository(aset_repo.path).verify().ok


def _read_every_97th(aset, offset, start, errors, wrong):
    start.wait()
    try:
        for k in range(offset, 5000, 97):
            if aset[k][0] != k:
                wrong.append(k)
    except Exception as exc:  # collected and asserted by the caller
        errors.append(repr(exc))


@pytest.mark.slow
def test_threads_reading_a_fresh_checkout_all_get_their_samples(repo):
    import threading

    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("t", shape=(4,), dtype=np.int64)
    for i in range(5000):  # one pack large enough for the sorted (not dict) index path
        a[i] = np.full(4, i, np.int64)
    co.commit("5000")
    co.close()
    for _ in range(3):
        r = Repository(repo.path).checkout()  # fresh store: the index is built lazily
        errors, wrong = [], []
        start = threading.Barrier(4)
        threads = [threading.Thread(target=_read_every_97th, args=(r.arraysets["t"], o, start, errors, wrong))
                   for o in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        r.close()
        assert errors == [] and wrong == []
