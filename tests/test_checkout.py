"""Writer and reader checkouts: dict-style access, commit, reset, close, staging durability."""

from __future__ import annotations

import numpy as np
import pytest

from hangar import Repository
from tests.repo_parts import git_of


def test_writer_properties_and_status(aset_repo):
    co = aset_repo.checkout(write=True)
    head = aset_repo.log(return_contents=True)["head"]
    assert co.branch_name == "master" and co.commit_hash == head
    assert co.diff.status() == "CLEAN"
    co["foo", 50] = np.ones(5, dtype=np.int64)
    assert co.diff.status() == "DIRTY"
    co.close()


def test_commit_without_changes_raises_runtime_error(aset_repo, repo):
    co = aset_repo.checkout(write=True)
    with pytest.raises(RuntimeError, match="nothing to commit"):
        co.commit("nothing")
    co.close()


def test_commit_in_empty_repository_without_changes_raises(repo):
    co = repo.checkout(write=True)
    assert co.commit_hash == ""
    with pytest.raises(RuntimeError):
        co.commit("empty")
    co.close()


def test_add_then_remove_is_clean(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", 99] = np.ones(5, dtype=np.int64)
    del co.arraysets["foo"][99]
    assert co.diff.status() == "CLEAN"
    with pytest.raises(RuntimeError):
        co.commit("no net change")
    co.close()


def test_commit_returns_hash_and_moves_branch(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", 11] = np.full(5, 11, dtype=np.int64)
    c = co.commit("add 11")
    assert co.commit_hash == c and co.diff.status() == "CLEAN"
    co.close()
    r = aset_repo.checkout()
    assert r.commit_hash == c
    np.testing.assert_array_equal(r["foo", 11], np.full(5, 11))
    r.close()


def test_getitem_forms(aset_repo):
    co = aset_repo.checkout()
    assert co["foo"].name == "foo"
    np.testing.assert_array_equal(co["foo", 3], np.arange(5) + 3)
    two = co["foo", [1, 2]]
    assert isinstance(two, list) and len(two) == 2
    np.testing.assert_array_equal(two[1], np.arange(5) + 2)
    with pytest.raises(KeyError):
        _ = co[("foo", "bar"), 0]  # bar has str keys: int 0 is not '0'
    co.close()


def test_getitem_multi_arrayset_namedtuple(repo):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(1,), dtype=np.int32)
    co.arraysets.init_arrayset("b", shape=(1,), dtype=np.int32)
    co[["a", "b"], "k1"] = [np.array([1], np.int32), np.array([11], np.int32)]
    co[["a", "b"], "k2"] = [np.array([2], np.int32), np.array([22], np.int32)]
    co.commit("two arraysets")
    co.close()
    r = repo.checkout()
    one = r[("a", "b"), "k1"]
    assert type(one).__name__ == "ArraysetData" and one._fields == ("a", "b")
    assert one.a[0] == 1 and one.b[0] == 11
    many = r[("a", "b"), ("k1", "k2")]
    assert [m.b[0] for m in many] == [11, 22]
    assert r[:, "k2"].a[0] == 2 and r[..., "k2"].b[0] == 22
    assert [x.a[0] for x in r[:, ["k2", "k1"]]] == [2, 1]
    with pytest.raises(KeyError):
        _ = r[:, "missing"]
    with pytest.raises(ValueError):
        r[slice(1, 2), "k1"]
    with pytest.raises(ValueError):
        r["a", slice(None)]
    r.close()


def test_get_missing_returns_none_or_raises(aset_repo):
    co = aset_repo.checkout()
    out = co.get("foo", [1, 12345])
    assert out[1] is None
    np.testing.assert_array_equal(out[0], np.arange(5) + 1)
    assert co.get("foo", 12345) is None
    with pytest.raises(KeyError):
        co.get("foo", 12345, except_missing=True)
    with pytest.raises(KeyError):
        co["foo", 12345]
    with pytest.raises(KeyError):
        co["nope", 1]
    co.close()


def test_setitem_multiple_keys_one_arrayset(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", [20, 21]] = [np.full(5, 20, np.int64), np.full(5, 21, np.int64)]
    assert co["foo", 21][0] == 21
    co.close()


def test_setitem_stacked_array_stores_each_row_under_its_key(aset_repo):
    import gc

    stack = np.arange(1000, 1040, dtype=np.int64).reshape(8, 5)  # none stored yet
    stack[7] = stack[6]  # a sample repeated within the batch is stored once
    co = aset_repo.checkout(write=True)
    store = co.arraysets["foo"].loader_view().store
    before = len(store)
    co["foo", [100, 101, 102, 103, 104, 105, 106, 0]] = stack
    assert gc.isenabled()  # the bulk write pauses the collector and restores it
    gc.disable()
    try:  # ... to the state it found
        co["foo", [107]] = stack[:1] + 1
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert len(store) == before + 8
    co.commit("stacked")
    co.close()
    co = aset_repo.checkout()
    foo = co.arraysets["foo"]
    for key, row in zip([100, 101, 102, 103, 104, 105, 106, 0], stack):
        np.testing.assert_array_equal(foo[key], row)
    assert len(foo) == 18  # 0 was replaced, 100..107 are new
    co.close()


def test_setitem_stacked_array_with_str_keys_and_variable_shape(repo):
    co = repo.checkout(write=True)
    var = co.arraysets.init_arrayset("var", shape=(4, 4), dtype=np.float32, variable_shape=True)
    co["var", ["a", "b", "c"]] = np.ones((3, 2, 3), dtype=np.float32) * np.arange(3, dtype=np.float32)[:, None, None]
    assert var["b"].shape == (2, 3) and float(var["c"][0, 0]) == 2.0
    with pytest.raises(ValueError, match="max shape"):
        co["var", ["d", "e"]] = np.zeros((2, 5, 1), dtype=np.float32)
    assert "d" not in var
    co.close()


def test_setitem_stacked_array_refuses_bad_stacks_and_writes_nothing(aset_repo):
    co = aset_repo.checkout(write=True)
    store = co.arraysets["foo"].loader_view().store
    before = len(store)
    for bad, match in ((np.zeros((3, 5), np.int64), "2 targets but the stacked array holds 3"),
                       (np.zeros((2, 5), np.int32), "dtype"),
                       (np.zeros((2, 6), np.int64), "shape"),
                       (np.zeros((5, 2), np.int64).T, "C contiguous"),
                       (np.int64(3), "stacked array"), (np.array(3), "2 targets")):
        with pytest.raises(ValueError, match=match):
            co["foo", [40, 41]] = bad
    with pytest.raises(ValueError, match="key"):  # an invalid key: nothing is written either
        co["foo", [40, "a b"]] = np.zeros((2, 5), np.int64)
    with pytest.raises(ValueError, match="key is needed"):
        co["foo", [40, None]] = np.zeros((2, 5), np.int64)
    assert 40 not in co.arraysets["foo"] and len(store) == before
    assert co.diff.status() == "CLEAN"
    co.close()


def test_setitem_stacked_array_of_scalars_and_zero_itemsize_samples(repo):
    co = repo.checkout(write=True)
    sc = co.arraysets.init_arrayset("sc", shape=(), dtype=np.float32)
    co["sc", [1, 2, 3]] = np.arange(3, dtype=np.float32)  # rows are 0-d samples
    assert [float(sc[k]) for k in (1, 2, 3)] == [0.0, 1.0, 2.0] and sc[2].shape == ()
    empty = co.arraysets.init_arrayset("empty", shape=(2,), dtype=np.dtype([]))
    co["empty", [0, 1, 2]] = np.zeros((3, 2), np.dtype([]))  # samples of zero bytes still get keys
    assert sorted(empty.keys()) == [0, 1, 2]
    co.close()


def test_setitem_stacked_object_or_mistyped_empty_stack_is_refused(aset_repo):
    co = aset_repo.checkout(write=True)
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = np.arange(5), np.arange(5) + 10  # each element is a valid sample, the stack is not
    with pytest.raises(ValueError, match="dtype"):
        co["foo", [50, 51]] = objs
    with pytest.raises(ValueError, match="dtype"):
        co["foo", []] = np.zeros((0, 7), np.float32)
    assert 50 not in co.arraysets["foo"] and co.diff.status() == "CLEAN"
    co.close()


def test_setitem_rejects_bad_forms_and_writes_nothing(aset_repo):
    co = aset_repo.checkout(write=True)
    with pytest.raises(ValueError, match="not both"):
        co[["foo", "bar"], [1, 2]] = [np.zeros(5, np.int64)] * 2
    with pytest.raises(ValueError, match="2 targets but 1 values"):
        co["foo", [30, 31]] = [np.zeros(5, np.int64)]
    # second value is invalid: the first must not be written either
    with pytest.raises(ValueError, match="dtype"):
        co["foo", [30, 31]] = [np.zeros(5, np.int64), np.zeros(5, np.float32)]
    assert 30 not in co.arraysets["foo"]
    assert co.diff.status() == "CLEAN"
    co.close()


def test_reset_staging_area_restores_head_and_closes(aset_repo):
    co = aset_repo.checkout(write=True)
    head = co.commit_hash
    co["foo", 0] = np.zeros(5, dtype=np.int64)
    co.arraysets.init_arrayset("new", shape=(1,), dtype=np.uint8)
    co.metadata["hello"] = "changed"
    assert co.reset_staging_area() == head
    with pytest.raises(ReferenceError):
        _ = co.commit_hash
    co = aset_repo.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    assert "new" not in co.arraysets and co.metadata["hello"] == "world"
    np.testing.assert_array_equal(co["foo", 0], np.arange(5))
    with pytest.raises(RuntimeError, match="nothing to reset"):
        co.reset_staging_area()
    co.close()


def test_staging_area_survives_close_and_new_process(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", 77] = np.full(5, 77, np.int64)
    co.metadata["staged"] = "yes"
    co.close()
    again = Repository(aset_repo.path).checkout(write=True)
    assert again.diff.status() == "DIRTY"
    assert again["foo", 77][0] == 77 and again.metadata["staged"] == "yes"
    c = again.commit("from the durable staging area")
    again.close()
    r = aset_repo.checkout(commit=c)
    assert r["foo", 77][0] == 77
    r.close()


def test_readers_do_not_see_staged_changes(aset_repo):
    co = aset_repo.checkout(write=True)
    co["foo", 88] = np.full(5, 88, np.int64)
    r = aset_repo.checkout()
    assert 88 not in r.arraysets["foo"]
    co.commit("now")
    assert 88 not in r.arraysets["foo"]  # a reader stays at its commit
    r.close()
    co.close()


def test_writer_on_other_branch_refused_while_dirty(aset_repo):
    aset_repo.create_branch("dev")
    co = aset_repo.checkout(write=True)
    co.metadata["x"] = "y"
    co.close()
    with pytest.raises(ValueError, match="uncommitted changes"):
        aset_repo.checkout(write=True, branch="dev")
    assert not aset_repo.writer_lock_held
    co = aset_repo.checkout(write=True)
    co.commit("commit it")
    co.close()
    co = aset_repo.checkout(write=True, branch="dev")
    assert co.branch_name == "dev" and "x" not in co.metadata
    co.close()


def test_writer_checkout_unknown_branch(aset_repo):
    with pytest.raises(ValueError, match="nope"):
        aset_repo.checkout(write=True, branch="nope")
    assert not aset_repo.writer_lock_held


def test_handles_unusable_after_close(aset_repo):
    co = aset_repo.checkout(write=True)
    asets, meta, diff = co.arraysets, co.metadata, co.diff
    foo = co.arraysets["foo"]
    co.close()
    for thunk in (lambda: asets.keys(), lambda: meta["hello"], lambda: diff.status(),
                  lambda: foo[1], lambda: co["foo", 1], lambda: co.commit("x"), lambda: co.branch_name):
        with pytest.raises(ReferenceError):
            thunk()
    co.close()  # closing twice is harmless
    r = aset_repo.checkout()
    rfoo = r.arraysets["foo"]
    r.close()
    with pytest.raises(ReferenceError):
        rfoo[1]
    with pytest.raises(ReferenceError):
        _ = r.commit_hash


def test_leaving_with_block_keeps_checkout_open(aset_repo):
    # issue 10: as in Hangar 0.3, ``with co:`` ends a batch; only close() releases the lock
    with aset_repo.checkout(write=True) as co:
        co.metadata["ctx"] = "1"
    assert aset_repo.writer_lock_held and co.metadata["ctx"] == "1"
    co.close()
    assert not aset_repo.writer_lock_held


def test_commit_after_branch_moved_elsewhere_is_refused(aset_repo):
    co = aset_repo.checkout(write=True)
    co.metadata["m"] = "1"
    # move master behind the writer's back
    git = git_of(aset_repo)
    other = git.create_commit(git.commit_tree_id(co.commit_hash), [co.commit_hash], "x", "x@y", "elsewhere")
    git.set_branch("master", other)
    with pytest.raises(RuntimeError, match="moved"):
        co.commit("stale")
    assert git.branch_head("master") == other
    co.close()


@pytest.mark.slow
def test_reader_sees_data_committed_by_another_process_later(aset_repo):
    import subprocess
    import sys

    r = aset_repo.checkout()  # loads the store index now
    r.close()
    code = (f"import numpy as np; from hangar import Repository; co = Repository({aset_repo.path!r})"
            ".checkout(write=True); co['foo', 500] = np.full(5, 500, np.int64); "
            "co.commit('from another process'); co.close()")
    subprocess.run([sys.executable, "-c", code], check=True)
    r = aset_repo.checkout()
    assert r["foo", 500][0] == 500 and r.arraysets["foo"].contains_remote_references is False
    r.close()
