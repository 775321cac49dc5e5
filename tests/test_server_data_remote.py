"""``hangar server`` as the history host of a data remote (issue 15: history on any git URL, our
own server included; sample bytes in an S3 bucket): the one ref outside ``refs/heads`` it
accepts is ``refs/hangar/data``, checked as a client checks it, in both git transports."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hangar import Repository
from hangar.remote.objectdata import DATA_REF, location_commit
from tests.remote_fixtures import ServerProcess
from tests.repo_parts import git_of
from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import expected, make_repo
from tests.test_hostile_network import without_git_env


@pytest.fixture(params=["git", "dulwich"])
def served(request, tmp_path, s3_env):  # noqa: F811
    """(server, source repository pushed to it as a data remote, bucket location) per transport."""
    # the server reads the bucket's pack indexes to check pushed commits (it needs the endpoint)
    env = dict(without_git_env(tmp_path) if request.param == "dulwich" else os.environ,
               AWS_ENDPOINT_URL=s3_env.endpoint)
    srv = ServerProcess(str(tmp_path / "served"), env=env)
    try:
        src = make_repo(tmp_path / "src", n=12)
        loc = s3_env.new_location()
        src.remote.add("origin", srv.address, data=loc, endpoint_url=s3_env.endpoint)
        assert src.remote.push("origin", "master") == "master"
        yield srv, src, loc
    finally:
        srv.stop()


def served_refs(srv: ServerProcess) -> dict[str, str]:
    git = git_of(Repository(srv.path))
    return {r: str(git.repo.references[r].target) for r in git.repo.references}


@pytest.mark.slow
def test_a_data_remote_pushes_history_to_our_server_and_a_clone_of_it_reads_the_bucket(served, tmp_path,
                                                                                          s3_env,  # noqa: F811
                                                                                          monkeypatch):
    srv, src, loc = served
    refs = served_refs(srv)
    assert sorted(refs) == [DATA_REF, "refs/heads/master"]
    assert refs["refs/heads/master"] == src.log(return_contents=True)["head"]
    packs = os.path.join(srv.path, ".hangar", "data", "packs")
    # the bytes went to the bucket, not to the server (its store holds no pack)
    assert not os.path.isdir(packs) or not [p for p in os.listdir(packs) if os.path.isdir(os.path.join(packs, p))]
    assert s3_env.keys(loc)
    os.makedirs(tmp_path / "clone")
    c = Repository(tmp_path / "clone", exists=False)
    # the server's address alone, with the endpoint configured as for any AWS tool (a recorded
    # endpoint that is not AWS's own is followed only when the user names it)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    c.clone("Bob", "bob@example.com", srv.address)
    assert c.remote.data_location("origin") == loc
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    np.testing.assert_array_equal(co.arraysets["img"]["7"], expected(n=12)["7"])
    co.close()
    # a second push of new history goes through too (the branch's bytes are in the bucket, not here)
    co = src.checkout(write=True)
    co.arraysets["img"]["new"] = np.full((8, 8), 3, np.uint8)
    head = co.commit("more")
    co.close()
    src.remote.push("origin", "master")
    assert served_refs(srv)["refs/heads/master"] == head


@pytest.mark.slow
def test_the_data_ref_is_checked_and_every_other_refusal_stays(served, run_git, tmp_path):
    srv, src, _ = served
    url = f"http://127.0.0.1:{srv.port}/"
    before = served_refs(srv)
    git = git_of(src)
    other = location_commit(git, "s3://elsewhere/data", None)  # a valid record of another location
    git.set_ref("refs/hangar/other", other)
    head = before["refs/heads/master"]
    moved = run_git(src, "push", url, f"{other}:{DATA_REF}")  # a move of the location: never a fast forward
    forced = run_git(src, "push", "--force", url, f"{other}:{DATA_REF}")
    deleted = run_git(src, "push", url, f":{DATA_REF}")
    outside = run_git(src, "push", url, "master:refs/hangar/x", "master:refs/tags/v1")
    for result in (moved, forced, deleted, outside):
        assert result.returncode != 0, result.stderr
    assert served_refs(srv) == before

    # a data ref whose content is not a location record: refused on a fresh server too
    fresh = ServerProcess(str(tmp_path / "fresh"), env=without_git_env(tmp_path) if "dulwich" in
                          _backend(srv) else None)
    try:
        furl = f"http://127.0.0.1:{fresh.port}/"
        bad = run_git(src, "push", furl, f"{head}:{DATA_REF}")  # a commit of the user's history
        assert bad.returncode != 0 and "data.json" in bad.stderr, bad.stderr
        assert served_refs(fresh) == {}
        ok = run_git(src, "push", furl, f"{other}:{DATA_REF}")
        assert ok.returncode == 0, ok.stderr
        assert served_refs(fresh) == {DATA_REF: other}
    finally:
        fresh.stop()


@pytest.mark.slow
def test_a_server_holding_its_own_bytes_does_not_become_a_history_host(tmp_path, aset_repo, run_git):
    for backend in ("git", "dulwich"):
        srv = ServerProcess(str(tmp_path / f"own-{backend}"),
                            env=without_git_env(tmp_path) if backend == "dulwich" else None)
        try:
            aset_repo.remote.add(f"srv-{backend}", srv.address)
            aset_repo.remote.push(f"srv-{backend}", "master")
            before = served_refs(srv)
            other = location_commit(git_of(aset_repo), "s3://elsewhere/data", None)
            pushed = run_git(aset_repo, "push", f"http://127.0.0.1:{srv.port}/", f"{other}:{DATA_REF}")
            assert pushed.returncode != 0 and "holds branches" in pushed.stderr, (backend, pushed.stderr)
            assert served_refs(srv) == before
            # and a plain git push of commits without bytes is refused as before
            co = aset_repo.checkout(write=True)
            co.arraysets["foo"][50 + len(backend)] = np.full(5, 50 + len(backend), dtype=np.int64)  # new bytes
            co.commit("bytes the server never got")
            co.close()
            plain = run_git(aset_repo, "push", f"http://127.0.0.1:{srv.port}/", "master")
            assert plain.returncode != 0 and "have no bytes here" in plain.stderr, (backend, plain.stderr)
            assert served_refs(srv) == before
        finally:
            srv.stop()


def _backend(srv: ServerProcess) -> str:
    import json
    import urllib.request

    from hangar.remote import protocol

    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{protocol.PING}", timeout=30) as resp:
        return json.loads(resp.read())["git_backend"]


@pytest.mark.slow
def test_a_data_remote_pushes_to_a_server_that_restricts_push_with_its_credentials(tmp_path, s3_env):  # noqa: F811
    from hangar.errors import PushAuthenticationError

    srv = ServerProcess(str(tmp_path / "served"), username="u", password="pw",
                        env=dict(os.environ, AWS_ENDPOINT_URL=s3_env.endpoint))  # it reads the bucket's indexes
    try:
        src = make_repo(tmp_path / "src", n=4)
        src.remote.add("origin", srv.address, data=s3_env.new_location(), endpoint_url=s3_env.endpoint)
        with pytest.raises(PushAuthenticationError, match="username= and password="):
            src.remote.push("origin", "master")
        with pytest.raises(PushAuthenticationError, match="refused the ones given"):
            src.remote.push("origin", "master", username="u", password="wrong")
        assert served_refs(srv) == {}
        src.remote.push("origin", "master", username="u", password="pw")
        assert sorted(served_refs(srv)) == [DATA_REF, "refs/heads/master"]
    finally:
        srv.stop()


def test_a_claimed_old_id_does_not_turn_a_server_holding_its_own_bytes_into_a_history_host(tmp_path):
    """The refusals judge the served repository's real refs, not the ``old`` ids a pusher claims:
    a crafted push can claim ``old == new`` for ``refs/hangar/data`` (passes the fast-forward
    check) or any non-zero old (dulwich checks each ref against the whole push), and before the
    fix either made the server skip its missing-bytes check for the branch pushed alongside."""
    from hangar.remote import prereceive

    zero = "0" * 40
    served = make_repo(tmp_path / "served", n=2)  # a server holding its own bytes
    src = make_repo(tmp_path / "src", n=3, seed=1)  # commits whose bytes the server never got
    sgit = git_of(served)
    head = src.log(return_contents=True)["head"]
    sgit.repo.remotes.create_anonymous(git_of(src).git_dir).fetch(["+refs/heads/master:refs/tmp/x"])
    sgit.repo.references.delete("refs/tmp/x")  # the objects are there, as after a pack is received
    loc = location_commit(sgit, "s3://elsewhere/data", None)
    branch = (zero, head, "refs/heads/evil")
    # the check that must not be skipped (so this test can fail)
    assert any("have no bytes here" in m for m in prereceive.refusals(sgit.git_dir, [branch]))
    # git's pre-receive hook: the whole push, the data ref claimed unchanged
    assert prereceive.refusals(sgit.git_dir, [(loc, loc, DATA_REF), branch])
    # dulwich: one ref at a time, the push it belongs to with a claimed non-zero old
    assert prereceive.refusals(sgit.git_dir, [branch], [("1" * 40, loc, DATA_REF), branch])
    assert DATA_REF not in sgit.repo.references and "refs/heads/evil" not in sgit.repo.references


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_a_push_is_judged_whole_before_any_ref_moves(tmp_path, aset_repo, run_git, backend):
    """A branch and a data ref pushed to an empty server, the branch first: either the server
    becomes a history host (both refs) or it refuses both. Before the fix dulwich judged each ref
    after the ones before it had moved: the branch went through unchecked (the push creates a
    data location), then the data ref was refused (the server now held a branch), leaving a
    server that stores its own bytes with a branch whose bytes it never got."""
    srv = ServerProcess(str(tmp_path / "fresh"), env=without_git_env(tmp_path) if backend == "dulwich" else None)
    try:
        git = git_of(aset_repo)
        git.set_ref("refs/hangar/other", location_commit(git, "s3://elsewhere/data", None))
        run_git(aset_repo, "push", f"http://127.0.0.1:{srv.port}/", "master", f"refs/hangar/other:{DATA_REF}")
        assert sorted(served_refs(srv)) in ([], [DATA_REF, "refs/heads/master"]), served_refs(srv)
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_plain_git_push_of_commits_whose_bytes_are_not_in_the_bucket_is_refused(served, run_git):
    """A server hosting a data remote's history checks the pushed commits' samples against the
    bucket's pack indexes, as a server holding its own bytes checks its store (issue 12 point
    6): a plain ``git push`` of commits whose bytes were never uploaded is refused in both
    transports, refs unchanged; ``hangar push`` (bytes first) of the same commit is accepted.
    Before: the commit was published without its bytes."""
    srv, src, loc = served
    url = f"http://127.0.0.1:{srv.port}/"
    before = served_refs(srv)
    co = src.checkout(write=True)
    co.arraysets["img"]["new"] = np.full((8, 8), 7, np.uint8)  # bytes that never reach the bucket
    co.commit("bytes never uploaded")
    co.close()
    plain = run_git(src, "push", url, "master")
    assert plain.returncode != 0 and "not in the data remote" in plain.stderr, plain.stderr
    assert served_refs(srv) == before
    assert src.remote.push("origin", "master") == "master"  # uploads, then moves the ref
    assert served_refs(srv)["refs/heads/master"] == src.log(return_contents=True)["head"]
