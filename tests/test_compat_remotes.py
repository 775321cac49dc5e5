"""Remotes and branch listing as in Hangar 0.3 (issue 10, points 6 and 7), against a real server.

- ``list_branches()`` sorts local and fetched remote branches by name together.
- ``remote.add(name, address)`` takes any address string (as ``git remote add``); a malformed
  one fails at first use with an error naming the expected forms.
- A push or fetch that changes nothing warns ``UserWarning`` and returns the branch name.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import RemoteAddressError
from hangar.remotes import RemoteInfo
from tests import remote_fixtures

start_server = remote_fixtures.start_server

USER = ("Test User", "test@example.com")


def _repo(path) -> Repository:
    os.makedirs(path, exist_ok=True)
    r = Repository(path, exists=False)
    r.init(*USER)
    return r


def _commit(repo: Repository, branch: str, key: int, message: str = "commit") -> str:
    co = repo.checkout(write=True, branch=branch)
    try:
        if "x" not in co.arraysets:
            co.arraysets.init_arrayset("x", shape=(2,), dtype=np.int32)
        co["x", key] = np.full(2, key, np.int32)
        return co.commit(message)
    finally:
        co.close()


@pytest.fixture
def pushed(tmp_path, start_server):
    """A local repository with 'master' and 'testbranch' pushed to a fresh server ('origin')."""
    src = _repo(tmp_path / "src")
    _commit(src, "master", 0)
    src.create_branch("testbranch")
    _commit(src, "testbranch", 1)
    srv = start_server()
    src.remote.add("origin", srv.address)
    assert src.remote.push("origin", "master") == "master"
    assert src.remote.push("origin", "testbranch") == "testbranch"
    return src, srv


# --------------------------------------------------------------- branch listing
@pytest.mark.slow
def test_list_branches_sorts_local_and_fetched_remote_branches_together(pushed, tmp_path):
    _, srv = pushed
    os.makedirs(tmp_path / "clone")
    clone = Repository(tmp_path / "clone", exists=False)
    clone.clone(*USER, srv.address)
    assert clone.list_branches() == ["master", "origin/master"]  # clone brings master only (0.3, spec)
    assert clone.remote.fetch("origin", "testbranch") == "origin/testbranch"
    clone.create_branch("testbranch", clone.log(branch="origin/testbranch", return_contents=True)["head"])
    assert clone.list_branches() == ["master", "origin/master", "origin/testbranch", "testbranch"]
    clone.create_branch("aaa")
    clone.create_branch("zzz")
    assert clone.list_branches() == ["aaa", "master", "origin/master", "origin/testbranch", "testbranch", "zzz"]


def test_a_local_branch_named_like_a_remote_one_is_listed_once(repo, run_git):
    co = repo.checkout(write=True)
    co.metadata["k"] = "v"
    head = co.commit("one")
    co.close()
    repo.create_branch("origin/dev")  # made before any fetch brought a remote 'origin/dev'
    assert run_git(repo, "update-ref", "refs/remotes/origin/dev", head).returncode == 0
    assert run_git(repo, "update-ref", "refs/remotes/origin/aaa", head).returncode == 0
    assert repo.list_branches() == ["master", "origin/aaa", "origin/dev"]


# ------------------------------------------------------------------ addresses
@pytest.mark.parametrize("address", ["test", "localhost", "127.0.0.1:", "127.0.0.1:99999", "a b:1",
                                     "git@example.com:x/y.git"])
def test_add_takes_any_address_string_and_lists_it_as_given(repo, address):
    assert repo.remote.add("origin", address) == RemoteInfo("origin", address)
    assert repo.remote.list_all() == [RemoteInfo("origin", address)]
    with pytest.raises(ValueError, match="already exists"):
        repo.remote.add("origin", "127.0.0.1:5000")
    assert repo.remote.remove("origin") == RemoteInfo("origin", address)
    assert repo.remote.list_all() == []


def test_malformed_address_fails_at_first_use_naming_the_forms(repo):
    co = repo.checkout(write=True)
    co.metadata["k"] = "v"
    co.commit("one")
    co.close()
    repo.remote.add("origin", "localhost")
    uses = [
        lambda: repo.remote.ping("origin"),
        lambda: repo.remote.fetch("origin", "master"),
        lambda: repo.remote.fetch_data("origin", "master"),
        lambda: repo.remote.push("origin", "master"),
    ]
    for use in uses:
        with pytest.raises(RemoteAddressError) as info:
            use()
        assert isinstance(info.value, ValueError)
        msg = str(info.value)
        assert "'localhost'" in msg and "IP:PORT" in msg and "https://IP:PORT" in msg and "remove" in msg
    assert repo.list_branches() == ["master"]  # nothing fetched, no remote branch made


def test_clone_from_a_malformed_address_names_the_forms_and_creates_nothing(tmp_path):
    r = Repository(tmp_path, exists=False)
    with pytest.raises(ValueError, match="IP:PORT"):
        r.clone(*USER, "localhost")
    assert not r.initialized


# ----------------------------------------------------------- no-op push/fetch
@pytest.mark.slow
def test_push_that_changes_nothing_warns_and_returns_the_branch(pushed):
    src, srv = pushed
    before = Repository(srv.path).log(branch="master", return_contents=True)["head"]
    with pytest.warns(UserWarning, match="changed nothing"):
        assert src.remote.push("origin", "master") == "master"
    assert Repository(srv.path).log(branch="master", return_contents=True)["head"] == before


@pytest.mark.slow
def test_fetch_of_a_head_the_local_branch_has_warns_and_returns_the_branch(pushed):
    src, _ = pushed
    with pytest.warns(UserWarning, match="changed nothing"):
        assert src.remote.fetch("origin", "master") == "master"
    _commit(src, "master", 5, "newer than the server")  # local ahead of the server: still nothing to fetch
    with pytest.warns(UserWarning, match="changed nothing"):
        assert src.remote.fetch("origin", "master") == "master"


@pytest.mark.slow
def test_fetch_with_new_commits_returns_the_remote_branch_without_warning(pushed, tmp_path):
    src, srv = pushed
    os.makedirs(tmp_path / "clone")
    clone = Repository(tmp_path / "clone", exists=False)
    clone.clone(*USER, srv.address)
    newer = _commit(src, "testbranch", 7, "more")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both change something: no warning
        assert src.remote.push("origin", "testbranch") == "testbranch"
        assert clone.remote.fetch("origin", "testbranch") == "origin/testbranch"
    assert clone.log(branch="origin/testbranch", return_contents=True)["head"] == newer
    # the remote branch is now at the server's head and there is no local 'testbranch'
    with pytest.warns(UserWarning, match="changed nothing"):
        assert clone.remote.fetch("origin", "testbranch") == "origin/testbranch"


@pytest.mark.slow
def test_cli_push_and_fetch_with_nothing_to_do_print_a_note_and_succeed(pushed):
    from tests.cli_helpers import hangar

    src, _ = pushed
    pushed_again = hangar(src.path, "push", "origin", "master")
    assert pushed_again.exit_code == 0, pushed_again.stderr
    assert pushed_again.stdout.strip() == "master on origin is up to date"
    assert pushed_again.stderr.startswith("note: push changed nothing")
    fetched = hangar(src.path, "fetch", "origin", "testbranch")
    assert fetched.exit_code == 0, fetched.stderr
    assert fetched.stdout.strip() == "origin testbranch -> testbranch (up to date)"
    assert "note: fetch changed nothing" in fetched.stderr


def test_cli_remote_add_takes_any_address_and_ping_names_the_forms(repo):
    from tests.cli_helpers import fails, ok

    ok(repo.path, "remote", "add", "origin", "localhost")
    assert ok(repo.path, "remote", "list").split() == ["origin", "localhost"]
    assert "IP:PORT" in fails(repo.path, "remote", "ping", "origin")
