"""CLI remote verbs (``remote add|list|ping|remove``, ``clone``, ``fetch``, ``fetch-data``, ``push``)
against a real ``hangar server`` process."""

from __future__ import annotations

import numpy as np
import pytest

from hangar import Repository
from tests import remote_fixtures
from tests.cli_helpers import fails, ok

pytestmark = pytest.mark.slow  # every test here starts a hangar server or runs the CLI in subprocesses

start_server = remote_fixtures.start_server


def test_remote_add_list_ping_remove(aset_repo, start_server):
    srv = start_server()
    path = aset_repo.path
    assert ok(path, "remote", "add", "origin", srv.address).strip() == f"added remote origin\t{srv.address}"
    assert ok(path, "remote", "list").splitlines() == [f"origin\t{srv.address}"]
    name, millis, unit = ok(path, "remote", "ping", "origin").split()  # issue 11: the unit is printed
    assert name == "origin" and 0 < float(millis) < 5000 and unit == "ms"
    assert "already exists" in fails(path, "remote", "add", "origin", srv.address)
    ok(path, "remote", "remove", "origin")
    assert ok(path, "remote", "list") == ""
    assert "nope" in fails(path, "remote", "remove", "nope")


def test_push_clone_fetch_data_round_trip(aset_repo, start_server, tmp_path):
    srv = start_server(username="ann", password="pw")
    path = aset_repo.path
    ok(path, "remote", "add", "origin", srv.address)
    assert "credentials" in fails(path, "push", "origin", "master", "--username", "ann", "--password", "bad")
    assert Repository(srv.path).log(return_contents=True)["order"] == []  # nothing pushed
    assert "pushed master to origin" in ok(path, "push", "origin", "master", "--username", "ann", "--password", "pw")

    dst = tmp_path / "dst"
    ok(tmp_path, "clone", srv.address, "dst", "--name", "B", "--email", "b@example.com")
    clone = Repository(dst)
    co = clone.checkout()
    assert co.arraysets["foo"].contains_remote_references
    co.close()
    commits = ok(dst, "fetch-data", "origin", "master", "--arrayset", "foo").split()
    assert commits == [clone.log(return_contents=True)["head"]]
    co = clone.checkout()
    assert co.arraysets.contains_remote_references == {"foo": False, "bar": True}
    np.testing.assert_array_equal(co.arraysets["foo"][2], np.arange(5, dtype=np.int64) + 2)
    co.close()
    # issue 10: a fetch with nothing new returns the local branch holding the head (Hangar 0.3)
    assert "origin master -> master (up to date)" in ok(dst, "fetch", "origin", "master")


def test_ping_of_stopped_server_fails_with_one_error_line(aset_repo, start_server):
    srv = start_server()
    ok(aset_repo.path, "remote", "add", "origin", srv.address)
    srv.stop()
    assert "could not be reached" in fails(aset_repo.path, "remote", "ping", "origin")
