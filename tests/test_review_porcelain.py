"""Review of the porcelain, CLI and server changes of integ2: each test pins a bug found there."""

from __future__ import annotations

import os

import pytest

from hangar import Repository
from hangar.errors import PushRefusedError
from tests import remote_fixtures

start_server = remote_fixtures.start_server


def _without_git_env(tmp_path) -> dict:  # noqa: ANN001
    """The environment with a PATH that has no ``git`` (the server then serves with dulwich)."""
    bin_dir = tmp_path / "bin-without-git"
    bin_dir.mkdir(exist_ok=True)
    return {**os.environ, "PATH": str(bin_dir)}


@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_push_refused_for_staged_work_is_push_refused_error_in_both_transports(backend, aset_repo, start_server,
                                                                               tmp_path):
    # the dulwich fallback answered the refusal as a plain "ng" line: the client took it for a
    # race, retried for ~3 s and raised DivergedHistoryError ("fetch, merge") instead of the reason
    srv = start_server(path=aset_repo.path, env=_without_git_env(tmp_path) if backend == "dulwich" else None)
    (tmp_path / "clone").mkdir()
    clone = Repository(tmp_path / "clone", exists=False)
    clone.clone("B", "b@example.com", srv.address)
    co = clone.checkout(write=True)
    co.metadata["from-clone"] = "yes"
    co.commit("clone's change")
    co.close()
    co = aset_repo.checkout(write=True)
    co.metadata["local"] = "staged"
    co.close()
    with pytest.raises(PushRefusedError, match="changes staged but not committed"):
        clone.remote.push("origin", "master")
