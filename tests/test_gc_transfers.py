"""gc and in-flight transfers: objects a fetch wrote before moving its refs are never collected."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hangar.errors import TransferInProgressError
from hangar.plumbing.gc import collect_git_garbage, list_git_files
from hangar.plumbing.pack import OBJ_BLOB, ObjectBatch
from hangar.transfers import MARKER_DIR, active_transfers, transfer_marker
from tests import remote_fixtures
from tests.repo_parts import git_of, hangar_dir_of

start_server = remote_fixtures.start_server


def _unreferenced_commit(repo) -> str:
    """What a fetch has done before it moves its ref: objects written, no ref to them yet."""
    git = git_of(repo)
    batch = ObjectBatch()
    batch.add(OBJ_BLOB, b"fetched but not yet referenced\n")
    git.write_batch(batch)
    head = git.branch_head("master")
    return git.create_commit(git.commit_tree_id(head), [head], "x", "x@y", "fetched")


def _pack_files(repo) -> set[str]:
    return set(os.listdir(os.path.join(repo.path, ".hangar", "objects", "pack")))


def test_gc_refuses_while_a_transfer_is_in_flight_and_deletes_nothing(aset_repo):
    with transfer_marker(hangar_dir_of(aset_repo), "fetch origin/dev"):
        commit = _unreferenced_commit(aset_repo)
        before = _pack_files(aset_repo)
        with pytest.raises(TransferInProgressError, match="fetch origin/dev") as info:
            aset_repo.gc()
        assert isinstance(info.value, RuntimeError)
        assert _pack_files(aset_repo) == before and not aset_repo.writer_lock_held
        git_of(aset_repo).set_ref("refs/remotes/origin/dev", commit)  # the fetch finishes
    assert active_transfers(hangar_dir_of(aset_repo)) == []
    aset_repo.gc()
    r = aset_repo.checkout(branch="origin/dev")
    assert r.commit_hash == commit and r["foo", 3][0] == 3
    r.close()
    assert aset_repo.verify().ok


@pytest.mark.slow
def test_marker_of_a_dead_process_is_ignored_and_removed(aset_repo):
    d = os.path.join(hangar_dir_of(aset_repo), MARKER_DIR)
    os.makedirs(d, exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    with open(os.path.join(d, f"{pid}-stale.json"), "w") as f:
        json.dump({"what": "fetch", "pid": pid, "host": os.uname().nodename, "since": 0}, f)
    assert active_transfers(hangar_dir_of(aset_repo)) == []
    assert os.listdir(d) == []
    report = aset_repo.gc()
    assert report.reachable_samples == 20


def test_packs_written_after_gc_listed_its_files_are_kept(aset_repo):
    from hangar.core import RepositoryCore
    from hangar.integrity import reachable

    git = git_of(aset_repo)
    files = list_git_files(git)  # gc's first step
    found = reachable(RepositoryCore(aset_repo.path))  # ... and its walk, before the new commit exists
    co = aset_repo.checkout(write=True)
    co["foo", 77] = np.full(5, 77, np.int64)
    c = co.commit("written while gc was walking")  # new objects in a new pack, after the listing
    co.close()
    collect_git_garbage(git, found.seen, files)
    r = aset_repo.checkout(commit=c)
    assert r["foo", 77][0] == 77
    r.close()
    fsck = subprocess.run(["git", "--git-dir", hangar_dir_of(aset_repo), "fsck", "--strict"], capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stderr


@pytest.mark.slow
def test_gc_refuses_on_a_repository_a_server_is_serving(start_server, aset_repo):
    from hangar import Repository

    srv = start_server()
    aset_repo.remote.add("origin", srv.address)
    aset_repo.remote.push("origin", "master")
    served = Repository(srv.path)
    with pytest.raises(TransferInProgressError, match="hangar server"):
        served.gc()
    srv.stop()  # a clean stop removes the marker
    report = served.gc()
    assert report.reachable_samples == 20 and served.verify().ok
