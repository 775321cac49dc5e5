"""A repository that was never initialized refuses every operation with RuntimeError (Hangar 0.3)."""

from __future__ import annotations

import pytest

from hangar import Repository

OPERATIONS = {
    "checkout": lambda r: r.checkout(),
    "log": lambda r: r.log(),
    "summary": lambda r: r.summary(),
    "merge": lambda r: r.merge("fail", "master", "nonexistant"),
    "create_branch": lambda r: r.create_branch("test"),
    "list_branches": lambda r: r.list_branches(),
    "force_release_writer_lock": lambda r: r.force_release_writer_lock(),
    "remove_branch": lambda r: r.remove_branch("master"),
    "version": lambda r: r.version,
    "writer_lock_held": lambda r: r.writer_lock_held,
    "remote.add": lambda r: r.remote.add("origin", "foo"),
    "remote.remove": lambda r: r.remote.remove("origin"),
    "remote.fetch": lambda r: r.remote.fetch("origin", "master"),
    "remote.fetch_data": lambda r: r.remote.fetch_data("origin", branch="master"),
    "remote.list_all": lambda r: r.remote.list_all(),
    "remote.ping": lambda r: r.remote.ping("origin"),
    "remote.push": lambda r: r.remote.push("origin", "master"),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_operation_on_uninitialized_repository_raises_runtime_error(tmp_path, name):
    r = Repository(tmp_path, exists=False)
    with pytest.raises(RuntimeError, match="init"):
        OPERATIONS[name](r)
    assert not r.initialized
