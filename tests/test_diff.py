"""Diffs of the staging area, branches and commits (hangar.diff)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hangar.diff import Changes, Conflicts, DiffAndConflicts, DiffOut, MetadataKey, SampleKey
from tests.repo_parts import commit_on

EMPTY = Changes({}, {}, {})


def names(changes: Changes) -> tuple[list, list, list]:
    """The keys of one ``Changes`` as plain lists: arrayset names, ``(aset, key)`` pairs, metadata keys."""
    return (list(changes.schema), [tuple(k) for k in changes.samples], [k.meta_name for k in changes.metadata])


def _pack_files(repo) -> set[str]:
    return set(os.listdir(os.path.join(repo.path, ".hangar", "objects", "pack")))


def test_staged_on_fresh_writer_lists_everything_as_added(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("foo", shape=(2,), dtype=np.int64)
    a[1] = np.zeros(2, np.int64)
    a["x"] = np.ones(2, np.int64)
    co.metadata["m"] = "v"
    res = co.diff.staged()
    assert isinstance(res, DiffAndConflicts)
    assert names(res.diff.added) == (["foo"], [("foo", 1), ("foo", "x")], ["m"])
    assert res.diff.deleted == EMPTY and res.diff.mutated == EMPTY
    assert res.conflict.conflict is False
    co.close()


def test_staged_reports_added_deleted_mutated_with_key_types_kept(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", 0] = np.full(5, 100, np.int64)  # mutated
    del co.arraysets["foo"][1]  # deleted
    co["foo", 10] = np.zeros(5, np.int64)  # added
    co["bar", "3"] = np.zeros((2, 3), np.float32)  # str key, mutated
    co.metadata["hello"] = "there"
    co.metadata["new"] = "1"
    res = co.diff.staged()
    assert names(res.diff.added) == ([], [("foo", 10)], ["new"])
    assert names(res.diff.deleted) == ([], [("foo", 1)], [])
    assert names(res.diff.mutated) == ([], [("bar", "3"), ("foo", 0)], ["hello"])
    mutated = list(res.diff.mutated.samples)
    assert isinstance(mutated[1].data_name, int)
    assert isinstance(mutated[0].data_name, str)
    co.close()


@pytest.mark.slow
def test_staged_builds_without_writing_git_objects(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", 42] = np.zeros(5, np.int64)
    before = _pack_files(aset_repo)
    res = co.diff.staged()
    assert list(res.diff.added.samples) == [SampleKey("foo", 42)]
    assert _pack_files(aset_repo) == before
    co.close()


@pytest.mark.slow
def test_staged_removed_arrayset_lists_schema_and_samples_deleted(aset_repo):
    co = aset_repo.checkout(write=True)
    co.arraysets.remove_aset("bar")
    res = co.diff.staged()
    assert list(res.diff.deleted.schema) == ["bar"]
    assert list(res.diff.deleted.samples) == [("bar", str(i)) for i in range(10)]
    assert res.diff.added == EMPTY
    co.close()


def test_staged_is_empty_and_status_clean_without_changes(aset_repo):
    co = aset_repo.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    res = co.diff.staged()
    assert res.diff == DiffOut(EMPTY, EMPTY, EMPTY)
    co["foo", 0] = np.full(5, 7, np.int64)
    assert co.diff.status() == "DIRTY"
    co.close()


def test_recreated_arrayset_with_new_schema_is_schema_mutation(aset_repo):
    co = aset_repo.checkout(write=True)
    co.arraysets.remove_aset("foo")
    co.arraysets.init_arrayset("foo", shape=(5,), dtype=np.int32)
    res = co.diff.staged()
    assert list(res.diff.mutated.schema) == ["foo"]
    assert list(res.diff.deleted.samples) == [("foo", i) for i in range(10)]
    co.close()


def test_branch_diff_fast_forward_has_no_conflicts(aset_repo):
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "dev", lambda co: co.metadata.__setitem__("hello", "dev"))
    with aset_repo.checkout() as co:
        res = co.diff.branch("dev")
    assert names(res.diff.mutated) == ([], [], ["hello"])
    assert res.conflict == Conflicts(*(EMPTY,) * 4, conflict=False)


@pytest.mark.slow
def test_diff_between_diverged_branches_reports_conflicts(aset_repo):
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "master", lambda co: co.arraysets["foo"].__setitem__(0, np.full(5, 1, np.int64)))
    commit_on(aset_repo, "dev", lambda co: co.arraysets["foo"].__setitem__(0, np.full(5, 2, np.int64)))
    with aset_repo.checkout() as co:
        res = co.diff.branch("dev")
    assert res.conflict.conflict is True
    assert list(res.conflict.t3.samples) == [("foo", 0)]
    assert list(res.diff.mutated.samples) == [("foo", 0)]
    co = aset_repo.checkout(write=True)
    assert list(co.diff.branch("dev").conflict.t3.samples) == [("foo", 0)]
    co.close()


@pytest.mark.slow
def test_diff_3way_lists_changes_from_head_to_dev(aset_repo):
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "master", lambda co: co.arraysets["foo"].__setitem__(20, np.zeros(5, np.int64)))
    commit_on(aset_repo, "dev", lambda co: co.metadata.__setitem__("d", "1"))
    with aset_repo.checkout() as co:
        res = co.diff.branch("dev")
    # dev lacks master's new sample and adds a metadata key
    assert list(res.diff.deleted.samples) == [("foo", 20)]
    assert list(res.diff.added.metadata) == [MetadataKey("d")]
    assert res.conflict.conflict is False


def test_commit_diff_accepts_abbreviated_hash_and_is_the_same_from_either_side(aset_repo):
    # issue 10 (Hangar 0.3): a linear history diffs from the older to the newer commit,
    # whichever side the checkout is on (this test pinned the mirror image before)
    first = aset_repo.log(return_contents=True)["head"]
    second = commit_on(aset_repo, "master", lambda co: co.arraysets["foo"].remove(3))
    with aset_repo.checkout(commit=first) as co:
        fwd = co.diff.commit(second[:10])
    with aset_repo.checkout(commit=second) as co:
        back = co.diff.commit(first)
    assert list(fwd.diff.deleted.samples) == [("foo", 3)]
    assert back == fwd


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["nope", "", None, 3])
def test_unknown_branch_raises_value_error(aset_repo, bad):
    with aset_repo.checkout() as co:
        with pytest.raises(ValueError, match="no branch"):
            co.diff.branch(bad)
    co = aset_repo.checkout(write=True)
    with pytest.raises(ValueError, match="no branch"):
        co.diff.branch(bad)
    co.close()


@pytest.mark.parametrize("bad", ["0" * 40, "zzzz", "", None])
def test_unknown_commit_raises_value_error(aset_repo, bad):
    with aset_repo.checkout() as co:
        with pytest.raises(ValueError, match="no commit"):
            co.diff.commit(bad)
    co = aset_repo.checkout(write=True)
    with pytest.raises(ValueError, match="no commit"):
        co.diff.commit(bad)
    co.close()


def test_diff_of_closed_checkout_raises_reference_error(aset_repo):
    co = aset_repo.checkout()
    differ = co.diff
    co.close()
    with pytest.raises(ReferenceError):
        differ.branch("master")


def test_diff_of_a_commit_with_itself_is_empty(repo):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(1,), dtype=np.uint8)[0] = np.zeros(1, np.uint8)
    head = co.commit("one")
    co.close()
    with repo.checkout() as rco:
        assert rco.diff.commit(head).diff == DiffOut(EMPTY, EMPTY, EMPTY)
