"""Remotes against a real ``hangar server`` process: clone, fetch, fetch_data, push, auth."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import RemoteDataError
from hangar.remotes import DivergedHistoryError, RemoteInfo
from hangar.store import TensorStore
from hangar.store.packs import LocalPackStorage
from tests import remote_fixtures
from tests.remote_fixtures import free_port
from tests.repo_parts import git_of

start_server = remote_fixtures.start_server

USER = ("Test User", "test@example.com")


def new_repo(path) -> Repository:
    os.makedirs(path, exist_ok=True)
    r = Repository(path, exists=False)
    r.init(*USER)
    return r


def write(repo: Repository, branch: str = "master", *, foo: dict | None = None, bar: dict | None = None,
          meta: dict | None = None, message: str = "commit") -> str:
    co = repo.checkout(write=True, branch=branch)
    try:
        for name, samples, shape, dtype in (("foo", foo, (5,), np.int64), ("bar", bar, (2, 3), np.float32)):
            if samples is None:
                continue
            if name not in co.arraysets:
                co.arraysets.init_arrayset(name, shape=shape, dtype=dtype)
            for k, v in samples.items():
                co.arraysets[name][k] = np.asarray(v, dtype=dtype).reshape(shape)
        for k, v in (meta or {}).items():
            co.metadata[k] = v
        return co.commit(message)
    finally:
        co.close()


def foo_value(i: int) -> np.ndarray:
    return np.arange(5, dtype=np.int64) + i


def bar_value(i: int) -> np.ndarray:
    return np.full((2, 3), i, dtype=np.float32)


@pytest.fixture(scope="module")
def origin_template(tmp_path_factory):
    """What :func:`origin` serves, built and pushed once per module (writing and pushing it took
    5-9 s of every test's set-up): the source repository and the server's repository, at rest
    (the server that received the pushes is stopped), plus the commit ids."""
    root = tmp_path_factory.mktemp("origin-template")
    src = new_repo(root / "src")
    first = write(src, foo={i: foo_value(i) for i in range(10)}, bar={str(i): bar_value(i) for i in range(10)},
                  meta={"hello": "world"}, message="first")
    src.create_branch("dev", first)
    second = write(src, foo={i: foo_value(i) for i in range(10, 15)}, message="second")
    dev = write(src, "dev", foo={i: foo_value(i) for i in range(100, 103)}, message="on dev")
    (root / "served").mkdir()
    srv = remote_fixtures.ServerProcess(str(root / "served" / "repo"))
    try:
        src.remote.add("origin", srv.address)
        src.remote.push("origin", "master")
        src.remote.push("origin", "dev")
    finally:
        srv.stop()
    return {"root": root, "first": first, "second": second, "dev": dev}


@pytest.fixture
def origin(tmp_path, start_server, origin_template):
    """A server holding master (2 commits: foo 0..9 + bar '0'..'9', then foo 10..14) and
    branch 'dev' (one more commit on top of the first, with foo 100..102).

    Each test gets its own copies of the template's repositories (tests push to the server and
    write to the source) and its own server process on them; the source's remote ``origin``
    points to that server."""
    root = origin_template["root"]
    shutil.copytree(root / "src", tmp_path / "src", symlinks=True)
    shutil.copytree(root / "served" / "repo", tmp_path / "served" / "repo", symlinks=True)
    srv = start_server(str(tmp_path / "served" / "repo"))
    src = Repository(tmp_path / "src")
    # the recorded address is the template server's; `remote.remove` + `add` would drop the
    # remote branches the pushes left, so only the URL changes, as `git remote set-url` does
    subprocess.run(["git", "--git-dir", os.path.join(src.path, ".hangar"), "config", "remote.origin.url",
                    f"http://{srv.address}/"], check=True, capture_output=True)
    assert src.remote.list_all() == [RemoteInfo("origin", srv.address)]
    return {"server": srv, "src": src, "first": origin_template["first"], "second": origin_template["second"],
            "dev": origin_template["dev"]}


def clone(path, address: str) -> Repository:
    os.makedirs(path, exist_ok=True)
    r = Repository(path, exists=False)
    assert r.clone(*USER, address) == "master"
    return r


# ------------------------------------------------------------------- registry
def test_add_list_remove_remote_round_trip(repo):
    assert repo.remote.add("origin", "127.0.0.1:5000") == RemoteInfo("origin", "127.0.0.1:5000")
    repo.remote.add("backup", "10.0.0.2:6000")
    assert sorted(repo.remote.list_all()) == [RemoteInfo("backup", "10.0.0.2:6000"),
                                              RemoteInfo("origin", "127.0.0.1:5000")]
    assert repo.remote.remove("origin") == RemoteInfo("origin", "127.0.0.1:5000")
    assert repo.remote.list_all() == [RemoteInfo("backup", "10.0.0.2:6000")]


def test_remotes_are_real_git_remotes(repo, run_git):
    repo.remote.add("origin", "127.0.0.1:5000")
    assert run_git(repo, "config", "remote.origin.url").stdout.strip() == "http://127.0.0.1:5000/"


def test_add_duplicate_remote_name_raises_value_error(repo):
    repo.remote.add("origin", "127.0.0.1:5000")
    with pytest.raises(ValueError, match="origin"):
        repo.remote.add("origin", "127.0.0.1:6000")
    assert repo.remote.list_all() == [RemoteInfo("origin", "127.0.0.1:5000")]


@pytest.mark.parametrize("address", ["", None, 5000])
def test_add_empty_or_non_str_address_raises_value_error(repo, address):
    # issue 10: any other address string is accepted (as git remote add does) and fails at
    # first use; this test refused "localhost", "127.0.0.1:", ... at add() before
    with pytest.raises(ValueError, match="IP:PORT"):
        repo.remote.add("origin", address)
    assert repo.remote.list_all() == []


def test_remove_unknown_remote_raises_value_error(repo):
    with pytest.raises(ValueError, match="nope"):
        repo.remote.remove("nope")


@pytest.mark.slow
def test_ping_returns_round_trip_seconds(repo, start_server):
    srv = start_server()
    repo.remote.add("origin", srv.address)
    rtt = repo.remote.ping("origin")
    assert isinstance(rtt, float) and 0 < rtt < 5


def test_ping_unreachable_server_raises_connection_error(repo):
    repo.remote.add("origin", f"127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionError, match="could not be reached"):
        repo.remote.ping("origin")


def test_ping_unknown_remote_raises_key_error(repo):
    with pytest.raises(KeyError):
        repo.remote.ping("nope")


# ---------------------------------------------------------------------- clone
@pytest.mark.slow
def test_clone_linear_history_brings_records_as_remote_references(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    # clone brings master only, as the spec and Hangar 0.3 say (issue 10; all branches before)
    assert r.list_branches() == ["master", "origin/master"]
    log = r.log(return_contents=True)
    assert log["order"] == [origin["second"], origin["first"]]
    co = r.checkout()
    assert co.commit_hash == origin["second"]
    assert len(co.arraysets["foo"]) == 15 and len(co.arraysets["bar"]) == 10
    assert co.metadata["hello"] == "world"
    assert co.arraysets.contains_remote_references == {"foo": True, "bar": True}
    assert co.arraysets.remote_sample_keys["foo"] == list(range(15))
    assert co.arraysets["bar"].remote_reference_sample_keys == [str(i) for i in range(10)]
    with pytest.raises(RemoteDataError, match="fetch_data"):
        co.arraysets["foo"][3]
    co.close()


@pytest.mark.slow
def test_clone_branched_history_fetches_master_then_fetch_brings_another_branch(tmp_path, origin, run_git):
    # clone fetched every branch before issue 10; now master only (spec, Hangar 0.3), then fetch
    r = clone(tmp_path / "dst", origin["server"].address)
    refs = run_git(r, "for-each-ref", "--format=%(refname) %(objectname)").stdout.split("\n")
    assert not any(ref.startswith("refs/remotes/origin/dev ") for ref in refs)
    assert r.remote.fetch("origin", "dev") == "origin/dev"
    refs = run_git(r, "for-each-ref", "--format=%(refname) %(objectname)").stdout.split("\n")
    assert f"refs/remotes/origin/dev {origin['dev']}" in refs
    assert f"refs/remotes/origin/master {origin['second']}" in refs
    assert f"refs/heads/master {origin['second']}" in refs
    assert run_git(r, "fsck", "--strict").returncode == 0
    dev_log = r.log(commit=origin["dev"], return_contents=True)
    assert dev_log["order"] == [origin["dev"], origin["first"]]


@pytest.mark.slow
def test_clone_writer_continues_from_master(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    r.remote.fetch_data("origin", "master")
    new = write(r, foo={99: foo_value(99)}, message="after clone")
    co = r.checkout()
    assert co.commit_hash == new
    assert len(co.arraysets["foo"]) == 16
    np.testing.assert_array_equal(co.arraysets["foo"][3], foo_value(3))
    co.close()


@pytest.mark.slow
def test_clone_into_existing_repository_raises_unless_remove_old(tmp_path, origin):
    dst = new_repo(tmp_path / "dst")
    write(dst, foo={1: foo_value(1)})
    with pytest.raises(FileExistsError):
        dst.clone(*USER, origin["server"].address)
    assert dst.clone(*USER, origin["server"].address, remove_old=True) == "master"
    assert dst.log(return_contents=True)["head"] == origin["second"]


def test_clone_unreachable_server_raises_and_creates_nothing(tmp_path):
    r = Repository(tmp_path, exists=False)
    with pytest.raises(ConnectionError):
        r.clone(*USER, f"127.0.0.1:{free_port()}")
    assert not r.initialized


@pytest.mark.slow
def test_clone_of_empty_server_gives_empty_repository(tmp_path, start_server):
    srv = start_server()
    r = clone(tmp_path / "dst", srv.address)
    assert r.list_branches() == ["master"] and r.log(return_contents=True)["order"] == []
    assert r.remote.list_all() == [RemoteInfo("origin", srv.address)]


# ---------------------------------------------------------------------- fetch
@pytest.mark.slow
def test_fetch_second_branch_returns_remote_branch_name(tmp_path, origin):
    src, srv = origin["src"], origin["server"]
    r = clone(tmp_path / "dst", srv.address)
    newer = write(src, "dev", foo={200: foo_value(200)}, message="dev again")
    src.remote.push("origin", "dev")
    assert r.remote.fetch("origin", "dev") == "origin/dev"
    co = r.checkout(branch="origin/dev")
    assert co.commit_hash == newer
    assert 200 in co.arraysets["foo"]
    co.close()


@pytest.mark.slow
def test_fetched_remote_branches_are_listed_logged_diffed_and_removable(tmp_path, origin):
    src, srv = origin["src"], origin["server"]
    r = clone(tmp_path / "dst", srv.address)
    newer = write(src, "dev", foo={200: foo_value(200)}, message="dev again")
    src.remote.push("origin", "dev")
    r.remote.fetch("origin", "dev")
    assert r.list_branches() == ["master", "origin/dev", "origin/master"]
    assert r.log(branch="origin/dev", return_contents=True)["order"] == [newer, origin["dev"], origin["first"]]
    co = r.checkout(write=True)
    try:
        added = co.diff.branch("origin/dev").diff.added.samples
        assert set(added) >= {("foo", 100), ("foo", 200)}
    finally:
        co.close()
    with pytest.raises(ValueError, match="origin/dev"):
        r.create_branch("origin/dev")
    with pytest.raises(ValueError, match="force_delete"):  # dev's commits are on no other branch
        r.remove_branch("origin/dev")
    assert r.remove_branch("origin/dev", force_delete=True) == "origin/dev"
    assert r.list_branches() == ["master", "origin/master"]
    assert r.remove_branch("origin/master") == "origin/master"  # master holds its commits
    assert r.list_branches() == ["master"]
    assert Repository(srv.path).list_branches() == ["dev", "master"]  # the server is untouched


@pytest.mark.slow
def test_local_branch_named_like_a_remote_one_shadows_it_and_is_listed_once(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    r.remote.fetch("origin", "dev")
    r.remove_branch("origin/dev", force_delete=True)
    r.create_branch("origin/dev", origin["first"])  # allowed: no remote branch of that name now
    assert r.remote.fetch("origin", "dev") == "origin/dev"
    assert r.list_branches() == ["master", "origin/dev", "origin/master"]
    assert r.log(branch="origin/dev", return_contents=True)["head"] == origin["first"]  # the local one


@pytest.mark.slow
def test_fetch_unknown_branch_raises_value_error(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    with pytest.raises(ValueError, match="nope"):
        r.remote.fetch("origin", "nope")


def test_fetch_unknown_remote_raises_value_error(repo):
    with pytest.raises(ValueError, match="nope"):
        repo.remote.fetch("nope", "master")


# ----------------------------------------------------------------- fetch_data
@pytest.mark.slow
def test_store_locations_agrees_with_location_across_packs(tmp_path):
    from hangar.store import codecs, sample_digest
    from hangar.store.digest import byte_view

    store = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    arrs = [np.full(50, i, dtype=np.int32) for i in range(5000)]
    chooser = codecs.CodecChooser("raw")
    for i, a in enumerate(arrs):
        store.put(sample_digest(a), byte_view(a), chooser)
        if i in (10, 3000):  # a small pack, a large pack, then unflushed samples
            store.flush()
    fresh = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    store.flush()
    digests = [sample_digest(a) for a in arrs] + [b"\x01" * 32]
    fresh.refresh()
    for s in (store, fresh):
        locs = s.locations(digests)
        assert locs[-1] is None
        assert locs[:-1] == [s.location(d) for d in digests[:-1]]


def local_digests(repo: Repository) -> set[bytes]:
    return set(TensorStore(LocalPackStorage(os.path.join(repo.path, ".hangar", "data"))).digests())


@pytest.mark.slow
def test_fetch_data_branch_replaces_remote_references_with_local_data(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    co = r.checkout()
    assert r.remote.fetch_data("origin", "master") == [origin["second"]]
    assert co.arraysets.contains_remote_references == {"foo": False, "bar": False}
    assert co.arraysets.remote_sample_keys == {"foo": [], "bar": []}
    for i in range(15):
        np.testing.assert_array_equal(co.arraysets["foo"][i], foo_value(i))
    np.testing.assert_array_equal(co.arraysets["bar"]["7"], bar_value(7))
    co.close()


@pytest.mark.slow
def test_fetch_data_remote_branch_name(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    r.remote.fetch("origin", "dev")
    assert r.remote.fetch_data("origin", "origin/dev") == [origin["dev"]]
    co = r.checkout(commit=origin["dev"])
    assert not co.arraysets["foo"].contains_remote_references
    np.testing.assert_array_equal(co.arraysets["foo"][101], foo_value(101))
    co.close()


@pytest.mark.slow
def test_fetch_data_commit_only_brings_that_commits_samples(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    assert r.remote.fetch_data("origin", commit=origin["first"]) == [origin["first"]]
    first = r.checkout(commit=origin["first"])
    assert first.arraysets.contains_remote_references == {"foo": False, "bar": False}
    first.close()
    co = r.checkout()
    assert co.arraysets["foo"].remote_reference_sample_keys == list(range(10, 15))
    co.close()


@pytest.mark.slow
def test_fetch_data_abbreviated_commit(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    assert r.remote.fetch_data("origin", commit=origin["first"][:10]) == [origin["first"]]


@pytest.mark.slow
def test_fetch_data_arrayset_names_filters_arraysets(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    r.remote.fetch_data("origin", "master", arrayset_names=["bar"])
    co = r.checkout()
    assert co.arraysets.contains_remote_references == {"foo": True, "bar": False}
    assert co.arraysets["foo"].remote_reference_sample_keys == list(range(15))
    co.close()


@pytest.mark.slow
def test_fetch_data_max_num_bytes_never_exceeds_budget(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    before = local_digests(r)
    r.remote.fetch_data("origin", "master", arrayset_names=["foo"], max_num_bytes=3 * 40 + 39)
    co = r.checkout()
    remote_keys = co.arraysets["foo"].remote_reference_sample_keys
    assert len(remote_keys) == 15 - 3
    assert len(local_digests(r) - before) == 3
    co.close()


@pytest.mark.slow
def test_fetch_data_retrieve_all_history_walks_ancestors(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    r.remote.fetch("origin", "dev")
    got = r.remote.fetch_data("origin", "origin/dev", retrieve_all_history=True)
    assert got == [origin["dev"], origin["first"]]
    for commit in (origin["dev"], origin["first"]):
        co = r.checkout(commit=commit)
        assert not any(co.arraysets.contains_remote_references.values())
        co.close()


@pytest.mark.slow
def test_fetch_data_combined_options(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    got = r.remote.fetch_data("origin", commit=origin["second"], arrayset_names=["foo"],
                              retrieve_all_history=True)
    assert got == [origin["second"], origin["first"]]
    co = r.checkout()
    assert co.arraysets.contains_remote_references == {"foo": False, "bar": True}
    co.close()


@pytest.mark.slow
def test_fetch_data_when_everything_is_local_transfers_nothing(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    r.remote.fetch_data("origin", "master")
    packs = sorted(os.listdir(os.path.join(r.path, ".hangar", "data", "packs")))
    assert r.remote.fetch_data("origin", "master") == [origin["second"]]
    assert sorted(os.listdir(os.path.join(r.path, ".hangar", "data", "packs"))) == packs


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, match", [
    ({"branch": "master", "commit": "abc"}, "not both"),
    ({}, "branch"),
    ({"commit": "0" * 40}, "no commit"),
    ({"commit": "zzz"}, "no commit"),
    ({"branch": "nope"}, "no branch"),
    ({"branch": "origin/nope"}, "no branch"),
    ({"branch": "master", "max_num_bytes": 0}, "max_num_bytes"),
    ({"branch": "master", "max_num_bytes": -5}, "max_num_bytes"),
])
def test_fetch_data_invalid_arguments_raise_value_error(tmp_path, origin, kwargs, match):
    r = clone(tmp_path / "dst", origin["server"].address)
    with pytest.raises(ValueError, match=match):
        r.remote.fetch_data("origin", **kwargs)


@pytest.mark.slow
def test_fetch_data_unknown_remote_raises_value_error(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    with pytest.raises(ValueError, match="nope"):
        r.remote.fetch_data("nope", "master")


# ----------------------------------------------------------------------- push
def stored_counts(log: str) -> int:
    """Samples the server log says it stored from uploads."""
    return sum(int(m) for m in re.findall(r"stored (\d+) uploaded samples", log))


@pytest.mark.slow
def test_push_new_branch_creates_it_on_server(tmp_path, origin):
    srv = origin["server"]
    r = clone(tmp_path / "dst", srv.address)
    r.remote.fetch_data("origin", "master")
    r.create_branch("feature")
    head = write(r, "feature", bar={"new": bar_value(42)}, message="feature work")
    assert r.remote.push("origin", "feature") == "feature"
    other = clone(tmp_path / "other", srv.address)
    assert other.remote.fetch("origin", "feature") == "origin/feature"
    other.remote.fetch_data("origin", "origin/feature")
    co = other.checkout(branch="origin/feature")
    assert co.commit_hash == head
    np.testing.assert_array_equal(co.arraysets["bar"]["new"], bar_value(42))
    co.close()


@pytest.mark.slow
def test_push_sends_only_samples_the_server_lacks(tmp_path, origin):
    srv = origin["server"]
    r = clone(tmp_path / "dst", srv.address)
    # two new samples, one sample the server has already (foo 0's value under a new key)
    write(r, foo={300: foo_value(300), 301: foo_value(301), 302: foo_value(0)}, message="three more")
    before = stored_counts(srv.log())
    r.remote.push("origin", "master")
    assert stored_counts(srv.log()) - before == 2


@pytest.mark.slow
def test_push_of_remote_references_the_server_lacks_raises(tmp_path, origin, start_server):
    r = clone(tmp_path / "dst", origin["server"].address)
    empty = start_server()
    r.remote.add("empty", empty.address)
    with pytest.raises(RemoteDataError, match="fetch_data"):
        r.remote.push("empty", "master")
    probe = clone(tmp_path / "probe", empty.address)
    assert probe.log(return_contents=True)["order"] == []


@pytest.mark.slow
def test_push_unknown_branch_raises_value_error(tmp_path, origin):
    r = clone(tmp_path / "dst", origin["server"].address)
    with pytest.raises(ValueError, match="nope"):
        r.remote.push("origin", "nope")


@pytest.mark.slow
def test_push_diverged_history_is_refused_and_server_unchanged(tmp_path, origin):
    srv, src = origin["server"], origin["src"]
    r = clone(tmp_path / "dst", srv.address)
    write(r, foo={500: foo_value(500)}, message="mine")
    theirs = write(src, foo={600: foo_value(600)}, message="theirs")
    src.remote.push("origin", "master")
    with pytest.raises(DivergedHistoryError, match="fetch") as info:
        r.remote.push("origin", "master")
    assert isinstance(info.value, ValueError)
    probe = clone(tmp_path / "probe", srv.address)
    assert probe.log(return_contents=True)["head"] == theirs


@pytest.mark.slow
def test_server_refuses_non_fast_forward_ref_update_that_skips_the_client_check(tmp_path, origin):
    # the race where the branch moves between push's check and its ref update: the git
    # transport refuses the non-fast-forward, and push_branch reports it (ref not moved)
    from hangar.remote import client as remote_client

    srv, src = origin["server"], origin["src"]
    r = clone(tmp_path / "dst", srv.address)
    write(r, foo={500: foo_value(500)}, message="mine")
    theirs = write(src, foo={600: foo_value(600)}, message="theirs")
    src.remote.push("origin", "master")
    assert remote_client.push_branch(git_of(r), "origin", srv.address, "master", "", "")  # libgit2 refuses
    r.remote.fetch("origin", "master")  # now their commit is known here, but still not an ancestor
    assert remote_client.push_branch(git_of(r), "origin", srv.address, "master", "", "")  # not a fast-forward
    probe = clone(tmp_path / "probe", srv.address)
    assert probe.log(return_contents=True)["head"] == theirs


@pytest.mark.slow
def test_push_after_fetch_and_merge_succeeds(tmp_path, origin):
    srv, src = origin["server"], origin["src"]
    r = clone(tmp_path / "dst", srv.address)
    r.remote.fetch_data("origin", "master")
    write(r, foo={500: foo_value(500)}, message="mine")
    theirs = write(src, foo={600: foo_value(600)}, message="theirs")
    src.remote.push("origin", "master")
    assert r.remote.fetch("origin", "master") == "origin/master"
    r.remote.fetch_data("origin", "origin/master")
    r.create_branch("theirs", theirs)
    merged = r.merge("merge theirs", "master", "theirs")
    assert r.remote.push("origin", "master") == "master"
    probe = clone(tmp_path / "probe", srv.address)
    assert probe.log(return_contents=True)["head"] == merged


# ----------------------------------------------------------------------- auth
@pytest.mark.slow
def test_push_with_wrong_credentials_raises_permission_error(tmp_path, start_server):
    srv = start_server(username="alice", password="s3cret")
    src = new_repo(tmp_path / "src")
    write(src, foo={1: foo_value(1)})
    src.remote.add("origin", srv.address)
    for user, pw in (("", ""), ("alice", "wrong"), ("bob", "s3cret")):
        with pytest.raises(PermissionError, match="credentials"):
            src.remote.push("origin", "master", username=user, password=pw)
    probe = clone(tmp_path / "probe", srv.address)
    assert probe.log(return_contents=True)["order"] == []
    assert local_digests(probe) == set()
    assert os.listdir(os.path.join(srv.path, ".hangar", "data", "packs")) in ([], ["zarr.json"])


@pytest.mark.slow
def test_push_with_right_credentials_succeeds_and_reads_stay_open(tmp_path, start_server):
    srv = start_server(username="alice", password="s3cret")
    src = new_repo(tmp_path / "src")
    head = write(src, foo={1: foo_value(1)})
    src.remote.add("origin", srv.address)
    assert src.remote.push("origin", "master", username="alice", password="s3cret") == "master"
    probe = clone(tmp_path / "probe", srv.address)
    probe.remote.fetch_data("origin", "master")
    co = probe.checkout()
    assert co.commit_hash == head
    np.testing.assert_array_equal(co.arraysets["foo"][1], foo_value(1))
    co.close()


# -------------------------------------------------------- interrupted transfer
class CuttingProxy:
    """TCP proxy that forwards until ``limit`` bytes went client -> server (or server -> client)
    once armed, then signals ``tripped`` and holds the rest back (the test then kills the server)."""

    def __init__(self, target_port: int, count_upstream: bool = True) -> None:
        self.target_port = target_port
        self.count_upstream = count_upstream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.limit: int | None = None
        self.sent = 0
        self.tripped = threading.Event()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, limit: int) -> None:
        with self.lock:
            self.sent, self.limit = 0, limit

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is gone: the client sees its connection closed
                client.close()
                continue
            self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if upstream == self.count_upstream:
                    with self.lock:
                        if self.limit is not None:
                            room = self.limit - self.sent
                            if room <= 0:
                                self.tripped.set()
                                return
                            data = data[:room]
                            self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


@pytest.mark.slow
def test_push_interrupted_by_server_kill_leaves_only_whole_verified_data_and_retry_completes(
        tmp_path, start_server, monkeypatch):
    from hangar.remote import client as remote_client

    monkeypatch.setattr(remote_client, "UPLOAD_BATCH_BYTES", 200_000)
    src = new_repo(tmp_path / "src")
    rng = np.random.default_rng(0)
    co = src.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=(100, 100), dtype=np.float64)  # 80 kB random samples
    for i in range(30):
        big[i] = rng.random((100, 100))
    head = co.commit("big data")
    co.close()

    srv = start_server()
    proxy = CuttingProxy(srv.port)
    src.remote.add("origin", f"127.0.0.1:{proxy.port}")
    src.remote.ping("origin")
    proxy.arm(1_000_000)  # past the first upload batches (~200 kB each), before the last
    errors: list[BaseException] = []

    def push() -> None:
        try:
            src.remote.push("origin", "master")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=push)
    t.start()
    assert proxy.tripped.wait(60), "the push never reached the cut-off point"
    srv.kill()
    proxy.close()
    t.join(60)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError), errors

    # the server repository opens, has no branch, and every stored sample verifies
    server_repo = Repository(srv.path)
    assert server_repo.log(return_contents=True)["order"] == []
    store = TensorStore(LocalPackStorage(os.path.join(srv.path, ".hangar", "data")))
    stored = set(store.digests())
    assert 0 < len(stored) < 30
    for d in stored:
        assert store.verify(d, "<f8", (100, 100))

    # restart on the same directory and retry: the push completes, sending only what is missing
    srv2 = start_server(path=srv.path)
    src.remote.remove("origin")
    src.remote.add("origin", srv2.address)
    assert src.remote.push("origin", "master") == "master"
    assert stored_counts(srv2.log()) == 30 - len(stored)
    dst = clone(tmp_path / "dst", srv2.address)
    dst.remote.fetch_data("origin", "master")
    r = dst.checkout()
    assert r.commit_hash == head
    s = src.checkout()
    for i in range(30):
        np.testing.assert_array_equal(r.arraysets["big"][i], s.arraysets["big"][i])
    r.close()
    s.close()


# ------------------------------------------------------------------- progress
PROGRESS_SCRIPT = """
import sys
from hangar import Repository
r = Repository(sys.argv[1], exists=False)
r.clone("T", "t@example.com", sys.argv[2])
r.remote.fetch_data("origin", "master")
print("done")
"""


def run_with_stderr(tmp_path, address: str, tty: bool) -> bytes:
    import pty
    import subprocess
    import sys

    dst = tmp_path / ("tty" if tty else "pipe")
    dst.mkdir()
    cmd = [sys.executable, "-c", PROGRESS_SCRIPT, str(dst), address]
    if not tty:
        out = subprocess.run(cmd, capture_output=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == b"done", out.stderr
        return out.stderr
    master, slave = pty.openpty()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave) as proc:  # closes its pipe at the end
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        assert proc.wait(120) == 0 and proc.stdout.read().strip() == b"done"
    return b"".join(chunks)


@pytest.mark.slow
def test_transfers_show_progress_on_a_terminal_and_stay_silent_otherwise(tmp_path, origin):
    address = origin["server"].address
    assert b"fetching data" in run_with_stderr(tmp_path, address, tty=True)
    assert run_with_stderr(tmp_path, address, tty=False) == b""


@pytest.mark.slow
def test_fetch_data_interrupted_by_server_kill_keeps_only_whole_verified_data_and_retry_completes(
        tmp_path, start_server, monkeypatch):
    from hangar.remote import client as remote_client

    monkeypatch.setattr(remote_client, "DOWNLOAD_BATCH_BYTES", 200_000)
    src = new_repo(tmp_path / "src")
    rng = np.random.default_rng(1)
    co = src.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=(100, 100), dtype=np.float64)
    for i in range(30):
        big[i] = rng.random((100, 100))
    co.commit("big data")
    co.close()
    srv = start_server()
    src.remote.add("origin", srv.address)
    src.remote.push("origin", "master")

    proxy = CuttingProxy(srv.port, count_upstream=False)
    dst = clone(tmp_path / "dst", f"127.0.0.1:{proxy.port}")
    proxy.arm(1_000_000)  # server -> client: past the first download batches, before the last
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            dst.remote.fetch_data("origin", "master")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=fetch)
    t.start()
    assert proxy.tripped.wait(60), "the download never reached the cut-off point"
    srv.kill()
    proxy.close()
    t.join(60)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError), errors

    store = TensorStore(LocalPackStorage(os.path.join(dst.path, ".hangar", "data")))
    stored = set(store.digests())
    assert 0 < len(stored) < 30
    for d in stored:
        assert store.verify(d, "<f8", (100, 100))
    packs_dir = os.path.join(dst.path, ".hangar", "data", "packs")
    assert not [p for p in os.listdir(packs_dir) if p.endswith(".partial")]

    srv2 = start_server(path=srv.path)
    dst.remote.remove("origin")
    dst.remote.add("origin", srv2.address)
    dst.remote.fetch_data("origin", "master")
    r, s = dst.checkout(), src.checkout()
    assert not r.arraysets["big"].contains_remote_references
    for i in range(30):
        np.testing.assert_array_equal(r.arraysets["big"][i], s.arraysets["big"][i])
    r.close()
    s.close()


@pytest.mark.slow
def test_push_looks_only_at_samples_the_server_cannot_have(repo):
    """commit_pointers skips sample subtrees of commits the server has: work follows the change."""
    from hangar.remote.client import commit_pointers
    from hangar.store import sample_digest

    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(1,), dtype=np.int64)
    for i in range(3000):
        a[i] = np.array([i])
    base = co.commit("3000 samples")
    a[7] = np.array([-7])
    a[3000] = np.array([3000])
    head = co.commit("one changed, one added")
    co.close()
    git = git_of(repo)
    everything = commit_pointers(git, [head])
    changed = commit_pointers(git, [head], known=[base])
    assert len(everything) == 3001
    assert 2 <= len(changed) <= 3001 // 16  # only the touched leaf trees were read
    r = repo.checkout(commit=head)
    assert sample_digest(r["a", 7]) in changed and sample_digest(r["a", 3000]) in changed
    r.close()
