"""hangar.plumbing.durable: the one temp-write-fsync-rename(-fsync dir) implementation."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hangar.errors import CorruptDataError
from hangar.plumbing import durable
from hangar.plumbing.durable import fsync_dir, pwrite_all, replace_file, replace_file_durably, write_synced


def _chunks_then_fail(*chunks: bytes):
    yield from chunks
    raise RuntimeError("producer failed mid-write")


def test_replace_file_durably_replaces_content_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    replace_file_durably(str(path), [b"ne", bytearray(b"w "), np.frombuffer(b"data", np.uint8), memoryview(b"!")])
    assert path.read_bytes() == b"new data!"
    assert os.listdir(tmp_path) == ["f"]


def test_replace_file_creates_a_new_file_with_the_given_mode(tmp_path):
    path = tmp_path / "new"
    old = os.umask(0)
    try:
        replace_file(str(path), [b"x"], mode=0o600)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"x"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_failing_producer_leaves_the_old_file_intact_and_no_temp_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="producer failed"):
        replace_file_durably(str(path), _chunks_then_fail(b"new ", b"partial"))
    assert path.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["f"]


def test_write_synced_removes_its_partial_file_on_failure(tmp_path):
    path = tmp_path / "p"
    with pytest.raises(TypeError):
        write_synced(str(path), [b"ok", object()])  # type: ignore[list-item]
    assert not path.exists()


def test_a_failed_rename_removes_the_temp_file(tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")  # os.replace cannot put a file over a non-empty directory
    with pytest.raises(OSError):
        replace_file(str(target), [b"x"])
    assert sorted(os.listdir(tmp_path)) == ["dir"]
    assert (target / "inside").read_bytes() == b"keep"


def test_a_full_disk_leaves_the_old_file_intact_and_no_temp_file(tmp_path):
    """A real write failure: the file size limit (RLIMIT_FSIZE) makes the kernel refuse the write."""
    path = tmp_path / "f"
    path.write_bytes(b"old content")
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from hangar.plumbing.durable import replace_file_durably
        try:
            replace_file_durably({str(path)!r}, [b"n" * 3000, b"m" * 3000])
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert path.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["f"]


def test_pwrite_all_writes_at_the_offset(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDWR)
    try:
        pwrite_all(fd, np.frombuffer(b"abc", np.uint8), 4)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123abc789"


def test_fsync_dir_of_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        fsync_dir(str(tmp_path / "missing"))



def test_fsync_many_syncs_every_descriptor_and_raises_the_failure_after_all_return(tmp_path):
    from hangar.plumbing.durable import fsync_dirs, fsync_many, write_open

    fds = [write_open(str(tmp_path / f"f{i}"), [b"x" * i, np.frombuffer(b"yz", np.uint8)]) for i in range(3)]
    try:
        fsync_many(fds)
        fsync_many([])
        r, w = os.pipe()  # fsync of a pipe fails (EINVAL): raised once the files' fsyncs are done
        try:
            with pytest.raises(OSError):
                fsync_many([*fds, r])
            with pytest.raises(OSError):
                fsync_many([r, *fds])
        finally:
            os.close(r)
            os.close(w)
    finally:
        for fd in fds:
            os.close(fd)
    assert [(tmp_path / f"f{i}").read_bytes() for i in range(3)] == [b"yz", b"xyz", b"xxyz"]
    fsync_dirs([str(tmp_path), str(tmp_path)])
    with pytest.raises(FileNotFoundError):
        fsync_dirs([str(tmp_path), str(tmp_path / "missing")])


def test_write_open_removes_a_partly_written_file(tmp_path):
    from hangar.plumbing.durable import write_open

    with pytest.raises(RuntimeError, match="mid-write"):
        write_open(str(tmp_path / "f"), _chunks_then_fail(b"part"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("write", [durable.write_synced, durable.write_open])
def test_a_link_planted_at_a_file_name_is_refused_and_its_target_untouched(tmp_path, write):
    victim = tmp_path / "outside.txt"
    victim.write_bytes(b"keep me")
    link = tmp_path / "repo-file.tmp"
    os.symlink(victim, link)
    with pytest.raises(CorruptDataError, match="symbolic link"):
        write(str(link), [b"hostile"])
    assert victim.read_bytes() == b"keep me"


def test_fsync_dir_of_a_fifo_fails_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "not-a-dir"
    os.mkfifo(fifo)
    code = ("import sys\nfrom hangar.plumbing import durable\n"
            "for f in (durable.fsync_dir, lambda p: durable.fsync_dirs([p])):\n"
            "    try:\n        f(sys.argv[1])\n    except NotADirectoryError:\n        pass\n"
            "    else:\n        sys.exit('no error')\n")
    done = subprocess.run([sys.executable, "-c", code, str(fifo)], timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("in_c", [True, False])
def test_fsync_many_in_c_threads_and_in_python_threads_alike(tmp_path, monkeypatch, in_c):
    """i14c: fsync_many runs its fsyncs on POSIX threads in C (rowhash.fsync_all) where the
    extension is built, else on Python threads: the same result, 64 descriptors a C call."""
    from hangar.plumbing import rowhash
    from hangar.plumbing.durable import fsync_many, write_open

    if in_c and not rowhash.available:
        pytest.skip("the C extension is not built")
    monkeypatch.setattr(rowhash, "available", in_c)
    assert rowhash.fsync_all([]) is in_c
    fds = [write_open(str(tmp_path / f"f{i}"), [b"%d" % i]) for i in range(70)]
    r, w = os.pipe()
    try:
        fsync_many(fds)
        with pytest.raises(OSError) as failed:  # the pipe's EINVAL, after all the files' fsyncs
            fsync_many([*fds[:66], r, *fds[66:]])
        assert failed.value.errno == errno.EINVAL
    finally:
        for fd in (*fds, r, w):
            os.close(fd)
    assert [(tmp_path / f"f{i}").read_bytes() for i in range(70)] == [b"%d" % i for i in range(70)]


_MUTATED_FDS = """
import os, sys
from hangar.plumbing import rowhash

fds = [os.open(sys.argv[1], os.O_RDONLY) for _ in range(4)]
listed = []

class Clears:  # its __index__ empties the list fsync_all reads
    def __index__(self):
        listed.clear()
        return fds[0]

listed[:] = [Clears(), *fds[1:]]
rowhash._ext.fsync_all(listed)  # the items as they were when called, or an error: never freed memory
print("ok")
"""


def test_fsync_all_reads_a_list_changed_by_an_items_index(tmp_path):
    """rC: fsync_all read its items from the caller's list while converting them; an item's
    __index__ that emptied the list left it reading freed memory (a segfault; AddressSanitizer:
    SEGV in fsync_all). In a child process: the failure is a crash."""
    from hangar.plumbing import rowhash

    if rowhash._ext is None or not hasattr(rowhash._ext, "fsync_all"):
        pytest.skip("the C extension is not built")
    (tmp_path / "f").write_bytes(b"x")
    got = subprocess.run([sys.executable, "-c", _MUTATED_FDS, str(tmp_path / "f")], capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == "ok", (got.returncode, got.stderr[-2000:])
