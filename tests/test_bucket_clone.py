"""History of a data remote on this machine (a bare path or a ``file://`` URL) is fetched with the
``git`` binary (issue 15: libgit2's local transport packed the whole history in-process, 0.13-0.3 s
of a clone of 2,000 samples); without ``git`` libgit2 still does it, and the repository is the same."""

from __future__ import annotations

import numpy as np

from hangar import Repository
from hangar.remote import objectdata
from tests.repo_parts import git_of
from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import N, clone, expected, pushed  # noqa: F401 - fixtures


def _reads_back(c) -> None:
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    want = expected()
    for k in ("0", str(N - 1)):
        np.testing.assert_array_equal(co.arraysets["img"][k], want[k])
    co.close()


def test_fetching_the_data_location_moves_only_its_own_objects(pushed, tmp_path):  # noqa: F811
    """The location ref's commit has no parents: its fetch brings that commit, tree and blob, not
    the branches' history (libgit2's local fetch brought every object of the source)."""
    r, url, loc = pushed
    (tmp_path / "other").mkdir()
    other = Repository(tmp_path / "other", exists=False)
    other.init("Cy", "cy@example.com")
    g = git_of(other)
    g.add_remote("origin", url)
    assert objectdata.fetch_location(g, "origin")[0] == loc
    assert not g.has_object(git_of(r).branch_head("master"))


def test_clone_of_a_file_url_and_without_git_binary_give_the_same_repository(pushed, tmp_path, monkeypatch):  # noqa: F811
    r, url, _ = pushed
    by_path = clone(tmp_path, url, name="by-path")
    endpoint = git_of(by_path).config_get("remote.origin.hangarendpoint")
    by_url = clone(tmp_path, "file://" + url, name="by-url", endpoint_url=endpoint)
    (tmp_path / "by-libgit2").mkdir()
    by_libgit2 = Repository(tmp_path / "by-libgit2", exists=False)
    with monkeypatch.context() as m:
        m.setenv("PATH", str(tmp_path / "no-bin"))  # no git: libgit2 fetches
        by_libgit2.clone("Bob", "bob@example.com", url, endpoint_url=endpoint)
    heads = {git_of(c).remote_branch_head("origin/master") for c in (by_path, by_url, by_libgit2)}
    assert heads == {git_of(r).branch_head("master")}
    for c in (by_path, by_url, by_libgit2):
        _reads_back(c)
