"""A push to a served working repository must not strand its staged work (issue 11, point 1)."""

from __future__ import annotations

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import PushRefusedError
from tests import remote_fixtures
from tests.cli_helpers import fails, ok

pytestmark = pytest.mark.slow  # every test here starts a hangar server or runs the CLI in subprocesses

start_server = remote_fixtures.start_server


@pytest.fixture
def served(aset_repo, start_server, tmp_path):
    """(served repository, a clone of it with one new commit on master)."""
    srv = start_server(path=aset_repo.path)
    (tmp_path / "clone").mkdir()
    clone = Repository(tmp_path / "clone", exists=False)
    clone.clone("B", "b@example.com", srv.address)
    co = clone.checkout(write=True)
    co.metadata["from-clone"] = "yes"
    co.commit("clone's change")
    co.close()
    return aset_repo, clone


def test_push_to_a_branch_with_staged_work_is_refused_with_the_reason_and_the_fix(served):
    repo, clone = served
    co = repo.checkout(write=True)
    co.metadata["local"] = "staged"
    co.close()
    head = repo.log(return_contents=True)["head"]
    with pytest.raises(PushRefusedError, match="changes staged but not committed") as info:
        clone.remote.push("origin", "master")
    assert "hangar commit -m MSG" in str(info.value) and "hangar reset" in str(info.value)
    assert repo.log(return_contents=True)["head"] == head  # the served branch did not move
    # the served repository can still commit its work, then the clone fetches, merges, pushes
    assert ok(repo.path, "commit", "-m", "local work").startswith("[master ")
    err = fails(clone.path, "push", "origin", "master")
    assert "fetch" in err


def test_push_to_a_branch_with_an_open_writer_is_refused(served):
    repo, clone = served
    co = repo.checkout(write=True)
    try:
        with pytest.raises(PushRefusedError, match="a writer checkout is open on it"):
            clone.remote.push("origin", "master")
        co["foo", 99] = np.zeros(5, np.int64)
        co.commit("the writer commits as if nothing happened")
    finally:
        co.close()


def test_push_to_a_branch_with_staged_work_fails_in_the_cli_with_one_error_line(served):
    repo, clone = served
    ok(repo.path, "arrayset", "create", "new", "--shape", "2", "--dtype", "int8")
    err = fails(clone.path, "push", "origin", "master")
    assert "refused to update branch 'master'" in err and "hangar reset" in err
    assert len(err.strip().splitlines()) == 1


def test_push_to_another_branch_or_a_clean_one_is_accepted(served):
    repo, clone = served
    clone.create_branch("side")
    ok(repo.path, "arrayset", "create", "new", "--shape", "2", "--dtype", "int8")
    clone.remote.push("origin", "side")  # not the served repository's current branch
    assert "side" in repo.list_branches()
    ok(repo.path, "reset")
    clone.remote.push("origin", "master")  # clean now: accepted
    assert repo.log(return_contents=True)["head"] == clone.log(return_contents=True)["head"]
    assert "status: CLEAN" in ok(repo.path, "status")


def _move_master_under_staged_work(repo, run_git):
    """Stage a change on master, then move master with plain git (what a hookless push does)."""
    repo.create_branch("ahead")
    co = repo.checkout(write=True, branch="ahead")
    co.metadata["ahead"] = "1"
    co.commit("ahead")
    co.close()
    co = repo.checkout(write=True)
    co.metadata["staged"] = "work"
    co.close()
    ahead = repo.log(branch="ahead", return_contents=True)["head"]
    assert run_git(repo, "update-ref", "refs/heads/master", ahead).returncode == 0
    return ahead


def test_status_reports_a_stale_staging_area_and_reset_gets_out_of_it(aset_repo, run_git):
    ahead = _move_master_under_staged_work(aset_repo, run_git)
    lines = ok(aset_repo.path, "status").splitlines()
    assert lines[:3] == ["branch: master", f"head: {ahead}", "status: STALE"]
    assert "hangar reset" in lines[3]
    assert "hangar reset" in fails(aset_repo.path, "commit", "-m", "x")
    assert ok(aset_repo.path, "reset").strip() == f"staging area reset to {ahead}"
    assert ok(aset_repo.path, "status").splitlines()[2] == "status: CLEAN"
    assert ok(aset_repo.path, "reset").strip() == "nothing to reset: the staging area is clean"


def test_repository_reset_staging_area_drops_stale_changes_without_a_writer(aset_repo, run_git):
    from hangar.errors import NothingToCommitError, StagingBaseMovedError

    ahead = _move_master_under_staged_work(aset_repo, run_git)
    with pytest.raises(StagingBaseMovedError, match="reset_staging_area"):
        aset_repo.checkout(write=True)
    assert not aset_repo.writer_lock_held  # the failed checkout left no lock
    assert aset_repo.reset_staging_area() == ahead
    co = aset_repo.checkout(write=True)
    try:
        assert co.commit_hash == ahead and "staged" not in co.metadata and co.metadata["ahead"] == "1"
    finally:
        co.close()
    with pytest.raises(NothingToCommitError):
        aset_repo.reset_staging_area()
