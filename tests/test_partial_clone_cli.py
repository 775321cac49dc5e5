"""Partial clones from the command line (issue 11, points 5 and 7): records first, bytes on demand."""

from __future__ import annotations

import numpy as np
import pytest

from hangar import Repository
from tests import remote_fixtures
from tests.cli_helpers import fails, hangar, ok

start_server = remote_fixtures.start_server


@pytest.fixture
def clone(aset_repo, start_server, tmp_path):
    srv = start_server(path=aset_repo.path)
    ok(tmp_path, "clone", srv.address, "dst", "--name", "B", "--email", "b@example.com")
    return Repository(tmp_path / "dst")


@pytest.mark.slow
def test_fsck_of_a_partial_clone_reports_not_fetched_samples_apart_and_exits_0(clone):
    result = hangar(clone.path, "fsck")
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("not fetched yet: 20 samples (10 in bar, 10 in foo)") for line in lines)
    assert lines[-1] == "ok: no problems found"
    assert len(lines) == 3  # no line per sample
    report = clone.verify()
    assert report.ok and len(report.remote_only) == 20 and report.missing == []


@pytest.mark.slow
def test_fsck_still_fails_for_samples_lost_from_local_commits(clone):
    co = clone.checkout(write=True)
    co["foo", 50] = np.full(5, 50, np.int64)
    co.commit("local sample")
    co.close()
    import shutil

    shutil.rmtree(clone.path + "/.hangar/data/packs")  # lose the local bytes
    result = hangar(clone.path, "fsck")
    assert result.exit_code == 1
    assert "1 missing" in result.stdout and "not fetched yet: 20 samples" in result.stdout


@pytest.mark.slow
def test_reading_a_remote_only_sample_names_the_fetch_data_command(clone):
    err = fails(clone.path, "view", "foo", "3")
    assert "not fetched yet" in err and "hangar fetch-data origin master --arrayset foo" in err
    head = clone.log(return_contents=True)["head"]
    err = fails(clone.path, "export", "foo", str(clone.path) + "/out", "--commit", head)
    assert f"hangar fetch-data origin --commit {head} --arrayset foo" in err
    ok(clone.path, "fetch-data", "origin", "master", "--arrayset", "foo")
    assert "dtype: int64" in ok(clone.path, "view", "foo", "3")


@pytest.mark.slow
def test_fetch_data_says_how_many_samples_and_bytes_it_brought(clone):
    result = hangar(clone.path, "fetch-data", "origin", "master", "--arrayset", "foo")
    assert result.exit_code == 0
    head = clone.log(return_contents=True)["head"]
    assert result.stdout.split() == [head]
    assert result.stderr.startswith(f"fetched 10 samples of {head[:12]} (")
    assert "stored); 10 still on the remote only" in result.stderr


def test_clone_help_says_records_only():
    out = hangar(".", "clone", "--help").stdout
    assert "records only" in out and "master branch data" not in out
