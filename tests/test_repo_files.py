"""Files planted in a crafted repository in place of the caches and state files under ``.hangar``
(issue 12 point 7): a FIFO, a directory, a symlink (to a valid copy outside the repository, to
/dev/zero) or an oversized file. Each is refused (a clear ``CorruptDataError``) or, for a cache,
treated as damaged and rebuilt; nothing hangs and nothing reads without bound.

A plain ``open`` of a FIFO blocks until a writer appears: each call runs in a thread that the
test releases (by opening the FIFO's write end) when it has not returned in time, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from typing import Any, Callable

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.plumbing import pack as gitpack
from hangar.plumbing.regular import open_regular, read_cache
from hangar.store import readtable
from hangar.store.readtable import LocationTable
from tests.repo_parts import hangar_dir_of
from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import clone, expected, pushed  # noqa: F401 - fixtures and builders

#: planted in-process; a link to /dev/zero is tried only in a child under RLIMIT_AS (the code
#: before the fix read it until the machine ran out of memory)
KINDS = ["fifo", "directory", "link_outside"]


def plant(path: str, kind: str, outside: str) -> None:
    """Replace the file at ``path`` by a thing of ``kind`` (a copy of it goes to ``outside``)."""
    if os.path.isfile(path) and not os.path.islink(path):
        shutil.copyfile(path, outside)
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "link_outside":
        os.symlink(outside, path)
    elif kind == "link_dev_zero":
        os.symlink("/dev/zero", path)
    else:
        raise AssertionError(kind)


def bounded(fn: Callable[[], Any], fifo: str, timeout: float = 20) -> Any:
    """``fn()``'s result (or its exception, raised here); fails the test if it hung on ``fifo``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a waiting reader lets this open succeed
        os.close(fd)
        t.join(timeout)
        pytest.fail(f"the call blocked on the FIFO at {fifo}")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _committed(repo: Repository) -> np.ndarray:
    co = repo.checkout(write=True)
    data = np.arange(600 * 4, dtype=np.int32).reshape(600, 4)
    aset = co.arraysets.init_arrayset("a", prototype=data[0])
    with aset:
        for i, row in enumerate(data):
            aset[i] = row
    co.commit("one")
    co.close()
    return data


def _read(path: str, key: int | str, aset: str = "a") -> np.ndarray:
    co = Repository(path).checkout()
    try:
        return co.arraysets[aset][key]
    finally:
        co.close()


# ------------------------------------------------------------ location table cache
@pytest.mark.parametrize("kind", [*KINDS, "oversized"])
def test_a_location_table_cache_that_is_no_valid_regular_file_is_rebuilt(repo, kind, tmp_path, monkeypatch):
    data = _committed(repo)
    assert (_read(repo.path, 7) == data[7]).all()  # builds and saves the table
    tables = glob.glob(os.path.join(hangar_dir_of(repo), "cache", "readtables", "*.tbl"))
    assert len(tables) == 1
    path = tables[0]
    root = os.path.join(hangar_dir_of(repo), "cache")
    assert LocationTable.load(path, root) is not None
    if kind == "oversized":
        monkeypatch.setattr(readtable, "MAX_TABLE_BYTES", os.path.getsize(path) - 1)
    else:
        plant(path, kind, str(tmp_path / "copy.tbl"))
    assert bounded(lambda: LocationTable.load(path, root), path) is None
    assert (bounded(lambda: _read(repo.path, 9), path) == data[9]).all()


# ------------------------------------------------------------ state files
@pytest.mark.parametrize("kind", KINDS)
def test_a_staging_state_that_is_no_regular_file_is_refused_by_name(repo, kind, tmp_path):
    _committed(repo)
    path = os.path.join(hangar_dir_of(repo), "staging.json")
    plant(path, kind, str(tmp_path / "staging.json"))
    with pytest.raises(CorruptDataError, match="staging.json"):
        bounded(lambda: Repository(repo.path).checkout(write=True), path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_writer_lock_that_is_no_regular_file_is_an_unreadable_lock_not_a_hang(repo, kind, tmp_path):
    _committed(repo)
    path = os.path.join(hangar_dir_of(repo), "writer.lock")
    plant(path, kind, str(tmp_path / "writer.lock"))
    # an unreadable lock file is held by an unknown owner: refused with the usual lock error
    with pytest.raises(PermissionError):
        bounded(lambda: Repository(repo.path).checkout(write=True), path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_cli_branch_file_that_is_no_regular_file_is_refused_by_name(repo, kind, tmp_path):
    _committed(repo)
    repo.create_branch("dev")
    repo.remember_cli_branch("master")
    path = os.path.join(hangar_dir_of(repo), "cli_branch")
    plant(path, kind, str(tmp_path / "cli_branch"))
    # moving the staging area to another branch asks which branch the command line is on
    with pytest.raises(CorruptDataError, match="cli_branch"):
        bounded(lambda: Repository(repo.path).checkout(write=True, branch="dev"), path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_transfer_marker_that_is_no_regular_file_does_not_hang_gc(repo, kind, tmp_path):
    _committed(repo)
    d = os.path.join(hangar_dir_of(repo), "transfers")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "1-abc.json")
    plant(path, kind, str(tmp_path / "marker.json"))
    report = bounded(lambda: repo.gc(dry_run=True), path)
    assert report is not None


# ------------------------------------------------------------ git packs and helpers
def test_a_git_pack_index_that_is_a_fifo_is_refused(tmp_path):
    path = str(tmp_path / "pack-x.idx")
    os.mkfifo(path)
    with pytest.raises(CorruptDataError, match="not a regular file"):
        bounded(lambda: gitpack.pack_object_ids(path), path)


def test_open_regular_refuses_each_planted_kind_and_read_cache_gives_none(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "outside").write_bytes(b"x" * 10)
    for kind in [*KINDS, "link_dev_zero"]:  # open_regular reads nothing: safe in-process
        path = str(root / f"f-{kind}")
        with open(path, "wb") as f:
            f.write(b"x" * 10)
        plant(path, kind, str(tmp_path / "outside"))
        with pytest.raises(CorruptDataError):
            os.close(open_regular(path, str(root)))
        assert read_cache(path, str(root), 1 << 20) is None
    path = str(root / "big")
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # sparse: nothing is allocated on disk
    with pytest.raises(CorruptDataError, match="at most 100"):
        open_regular(path, str(root), 100)
    assert read_cache(path, str(root), 100) is None
    with pytest.raises(FileNotFoundError):
        open_regular(str(root / "absent"), str(root))
    (root / "ok").write_bytes(b"abc")
    assert read_cache(str(root / "ok"), str(root), 3) == b"abc"


@pytest.mark.slow
def test_dev_zero_links_in_place_of_state_files_read_nothing_in_a_limited_child(repo):
    """A link to /dev/zero would be read until out of memory: checked under RLIMIT_AS."""
    _committed(repo)
    hd = hangar_dir_of(repo)
    os.unlink(os.path.join(hd, "staging.json"))
    os.symlink("/dev/zero", os.path.join(hd, "staging.json"))
    limit = 1 << 30
    code = textwrap.dedent(f"""
        import os, resource
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
        from hangar import Repository
        from hangar.errors import CorruptDataError
        try:
            Repository({repo.path!r}).checkout(write=True)
        except CorruptDataError as exc:
            print("staging refused", exc)
        os.symlink("/dev/zero", os.path.join({hd!r}, "writer.lock"))
        try:
            Repository({repo.path!r}).checkout(write=True)
        except PermissionError as exc:
            print("lock refused", exc)
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "staging refused" in r.stdout and "staging.json" in r.stdout and "lock refused" in r.stdout, r.stdout


# ------------------------------------------------------------ kept copies of bucket pack indexes
def test_a_kept_bucket_index_that_is_no_regular_file_is_fetched_again(pushed, tmp_path):  # noqa: F811
    """Lazy reads keep each bucket pack index under .hangar/cache/bucket-indexes; a FIFO or a
    directory there is ignored (the index is read from the bucket again), never waited on."""
    _, url, _ = pushed
    c = clone(tmp_path, url)
    co = c.checkout()
    assert (co.arraysets["img"]["1"] == expected()["1"]).all()
    co.close()
    kept = glob.glob(os.path.join(hangar_dir_of(c), "cache", "bucket-indexes", "*", "*.index"))
    assert kept
    for i, path in enumerate(kept):
        plant(path, "fifo" if i % 2 == 0 else "directory", str(tmp_path / f"copy-{i}"))
    fifo = next(p for i, p in enumerate(kept) if i % 2 == 0)
    got = bounded(lambda: _read(c.path, "2", "img"), fifo)
    assert (got == expected()["2"]).all()
