"""Merging branches: fast-forward, 3-way, conflicts, strategies, history shape."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hangar import Repository
from hangar.diff import MetadataKey, SampleKey, diff_commits
from hangar.errors import MergeConflictError, WriterLockError
from tests.repo_parts import commit_on, git_of


def arr(v: int) -> np.ndarray:
    return np.full(5, v, np.int64)


def set_sample(key, value):
    return lambda co: co.arraysets["foo"].__setitem__(key, arr(value))


def del_sample(key):
    return lambda co: co.arraysets["foo"].remove(key)


def set_meta(key, value):
    return lambda co: co.metadata.__setitem__(key, value)


def del_meta(key):
    return lambda co: co.metadata.remove(key)


def foo_values(repo, branch="master") -> dict:
    with repo.checkout(branch=branch) as co:
        return {k: int(v[0]) for k, v in co.arraysets["foo"].items()}


def meta_values(repo, branch="master") -> dict:
    with repo.checkout(branch=branch) as co:
        return dict(co.metadata.items())


def staging_json(repo) -> str:
    with open(os.path.join(repo.path, ".hangar", "staging.json")) as f:
        return f.read()


@pytest.fixture
def diverged(aset_repo):
    """aset_repo with branch 'dev' created at the first commit."""
    aset_repo.create_branch("dev")
    return aset_repo


# --------------------------------------------------------- fast-forward
def test_fast_forward_moves_master_to_dev_head_and_ignores_message(diverged):
    dev = commit_on(diverged, "dev", set_sample(0, 50))
    git = git_of(diverged)
    assert diverged.merge("ignored", "master", "dev") == dev
    assert git.branch_head("master") == dev
    assert git.commit_info(dev).message == "edit"
    assert foo_values(diverged)[0] == 50


def test_merging_an_ancestor_changes_nothing(diverged):
    master = commit_on(diverged, "master", set_sample(0, 50))
    assert diverged.merge("m", "master", "dev") == master
    assert diverged.branch_head("master") == master


def test_writer_fast_forward_rebases_staging_and_keeps_accessors(diverged):
    dev = commit_on(diverged, "dev", lambda co: (set_sample(0, 50)(co), set_meta("x", "1")(co)))
    co = diverged.checkout(write=True)
    foo = co.arraysets["foo"]
    assert co.merge("ignored", "dev") == dev
    assert co.commit_hash == dev
    assert int(foo[0][0]) == 50
    assert co.metadata["x"] == "1"
    assert co.diff.status() == "CLEAN"
    foo[99] = arr(99)
    after = co.commit("after merge")
    co.close()
    assert git_of(diverged).commit_info(after).parents == [dev]
    assert json.loads(staging_json(diverged))["base"] == after


# ------------------------------------------------------------ 3-way merge
def test_three_way_merge_combines_both_sides_with_two_parents(diverged, run_git):
    master = commit_on(diverged, "master", lambda co: (set_sample(0, 100)(co), set_meta("m", "1")(co)))
    dev = commit_on(diverged, "dev", lambda co: (set_sample(1, 200)(co), del_sample(2)(co), set_meta("d", "2")(co)))
    merged = diverged.merge("merge dev", "master", "dev")
    git = git_of(diverged)
    info = git.commit_info(merged)
    assert info.parents == [master, dev] and info.message == "merge dev"
    assert git.branch_head("master") == merged and git.branch_head("dev") == dev
    vals = foo_values(diverged)
    assert vals[0] == 100 and vals[1] == 200 and 2 not in vals and vals[3] == 3
    assert meta_values(diverged) == {"hello": "world", "m": "1", "d": "2"}
    graph = run_git(diverged, "log", "--graph", "--oneline", "master").stdout
    assert "|\\" in graph and "merge dev" in graph
    assert run_git(diverged, "fsck", "--strict").returncode == 0
    contents = diverged.log(branch="master", return_contents=True)
    assert contents["ancestors"][merged] == [master, dev]


def test_writer_three_way_merge_rebases_staging(diverged):
    commit_on(diverged, "master", set_sample(0, 100))
    commit_on(diverged, "dev", lambda co: co.arraysets.init_arrayset("new", shape=(1,), dtype=np.uint8)
              .__setitem__("k", np.ones(1, np.uint8)))
    co = diverged.checkout(write=True)
    foo = co.arraysets["foo"]
    merged = co.merge("merge", "dev")
    assert co.commit_hash == merged and co.diff.status() == "CLEAN"
    assert "new" in co.arraysets and int(co["new", "k"][0]) == 1
    assert int(foo[0][0]) == 100
    co.close()
    assert json.loads(staging_json(diverged))["base"] == merged


def test_writer_merge_that_removes_an_accessed_arrayset_drops_it(diverged):
    commit_on(diverged, "master", set_meta("m", "1"))
    commit_on(diverged, "dev", _remove_foo)
    co = diverged.checkout(write=True)
    assert len(co.arraysets["foo"]) == 10
    co.merge("merge", "dev")
    assert "foo" not in co.arraysets
    with pytest.raises(KeyError):
        co.arraysets["foo"]
    co.close()


def test_merge_needs_no_tensor_bytes(diverged):
    commit_on(diverged, "master", set_sample(0, 100))
    commit_on(diverged, "dev", set_sample(1, 200))
    data = os.path.join(diverged.path, ".hangar", "data")
    shutil.rmtree(data)
    os.makedirs(data)
    repo = Repository(diverged.path)
    merged = repo.merge("merge", "master", "dev")
    with repo.checkout(commit=merged) as co:
        assert sorted(co.arraysets["foo"].keys()) == list(range(10))
        assert co.arraysets["foo"].contains_remote_references


def test_unrelated_histories_merge_from_empty_base(repo):
    commit_on(repo, "master", set_meta("a", "1"))
    # an orphan branch: its own root commit
    other = Repository(tempfile.mkdtemp(dir=os.path.dirname(repo.path)), exists=False)
    try:
        other.init("x", "x@example.com")
        commit_on(other, "master", set_meta("b", "2"))
        src = other.branch_head("master")
        for pack in os.listdir(os.path.join(other.path, ".hangar", "objects", "pack")):
            shutil.copy(os.path.join(other.path, ".hangar", "objects", "pack", pack),
                        os.path.join(repo.path, ".hangar", "objects", "pack", pack))
        # the commit object is in those packs too (a commit writes no loose object)
        repo = Repository(repo.path)
        git_of(repo).set_branch("orphan", src)
        repo.merge("join", "master", "orphan")
        assert meta_values(repo) == {"a": "1", "b": "2"}
    finally:
        shutil.rmtree(other.path)


# ------------------------------------------------------------- conflicts
SAMPLE_CONFLICTS = {
    "t1": (set_sample(10, 1), set_sample(10, 2), ("foo", 10)),
    "t21": (del_sample(0), set_sample(0, 2), ("foo", 0)),
    "t22": (set_sample(0, 1), del_sample(0), ("foo", 0)),
    "t3": (set_sample(0, 1), set_sample(0, 2), ("foo", 0)),
}
META_CONFLICTS = {
    "t1": (set_meta("n", "1"), set_meta("n", "2"), "n"),
    "t21": (del_meta("hello"), set_meta("hello", "2"), "hello"),
    "t22": (set_meta("hello", "1"), del_meta("hello"), "hello"),
    "t3": (set_meta("hello", "1"), set_meta("hello", "2"), "hello"),
}


def _remove_foo(co):
    co.arraysets.remove_aset("foo")


def _recreate_foo_int32(co):
    co.arraysets.remove_aset("foo")
    co.arraysets.init_arrayset("foo", shape=(5,), dtype=np.int32)


def _add_new(dtype):
    return lambda co: co.arraysets.init_arrayset("new", shape=(2,), dtype=dtype)


SCHEMA_CONFLICTS = {
    "t1": (_add_new(np.int64), _add_new(np.float32), "new"),
    "t21": (_remove_foo, set_sample(0, 2), "foo"),
    "t22": (set_sample(0, 2), _remove_foo, "foo"),
    "t3": (_recreate_foo_int32, set_sample(0, 2), "foo"),
}


def _plain(records: dict) -> list:
    """Conflict record keys as plain values: ``('foo', 3)`` for a sample, ``'hello'`` for metadata
    (issue 10 made them dicts keyed by named tuples; these tests pinned lists before)."""
    return [tuple(k) if isinstance(k, SampleKey) else k.meta_name if isinstance(k, MetadataKey) else k
            for k in records]


def _assert_conflict_leaves_everything(repo, master_fn, dev_fn, cls, kind, item):
    master = commit_on(repo, "master", master_fn)
    dev = commit_on(repo, "dev", dev_fn)
    state = staging_json(repo)
    git = git_of(repo)
    with repo.checkout() as co:
        conflict = co.diff.branch("dev").conflict
    assert conflict.conflict is True
    assert _plain(getattr(getattr(conflict, cls), kind)) == [item]
    others = [getattr(getattr(conflict, c), k) for c in ("t1", "t21", "t22", "t3")
              for k in ("schema", "samples", "metadata") if (c, k) != (cls, kind)]
    assert all(o == {} for o in others)
    with pytest.raises(MergeConflictError) as exc:
        repo.merge("merge", "master", "dev")
    assert isinstance(exc.value, ValueError)
    assert cls in str(exc.value) and repr(item) in str(exc.value)
    assert git.branch_head("master") == master and git.branch_head("dev") == dev
    assert staging_json(repo) == state
    assert not repo.writer_lock_held
    co = repo.checkout(write=True)
    with pytest.raises(ValueError, match=cls):
        co.merge("merge", "dev")
    assert co.commit_hash == master and co.diff.status() == "CLEAN"
    co.close()
    assert git.branch_head("master") == master


@pytest.mark.slow
@pytest.mark.parametrize("cls", sorted(SAMPLE_CONFLICTS))
def test_sample_conflicts_are_classified_and_change_nothing(diverged, cls):
    m, d, item = SAMPLE_CONFLICTS[cls]
    _assert_conflict_leaves_everything(diverged, m, d, cls, "samples", item)


@pytest.mark.slow
@pytest.mark.parametrize("cls", sorted(META_CONFLICTS))
def test_metadata_conflicts_are_classified_and_change_nothing(diverged, cls):
    m, d, item = META_CONFLICTS[cls]
    _assert_conflict_leaves_everything(diverged, m, d, cls, "metadata", item)


@pytest.mark.slow
@pytest.mark.parametrize("cls", sorted(SCHEMA_CONFLICTS))
def test_schema_conflicts_are_classified_and_change_nothing(diverged, cls):
    m, d, item = SCHEMA_CONFLICTS[cls]
    _assert_conflict_leaves_everything(diverged, m, d, cls, "schema", item)


def test_schema_changed_on_both_sides_differently_is_t3(diverged):
    def recreate(dtype):
        def fn(co):
            co.arraysets.remove_aset("foo")
            co.arraysets.init_arrayset("foo", shape=(5,), dtype=dtype)
        return fn
    _assert_conflict_leaves_everything(diverged, recreate(np.int32), recreate(np.float64), "t3", "schema", "foo")


# ------------------------------------------------------- identical edits
@pytest.mark.slow
def test_identical_changes_on_both_sides_are_no_conflict(diverged):
    def same(co):
        co["foo", 0] = arr(77)
        co.arraysets["foo"].remove(1)
        co.metadata["hello"] = "same"
        co.metadata["both"] = "x"
        co.arraysets.remove_aset("bar")
    commit_on(diverged, "master", same)
    commit_on(diverged, "dev", lambda co: (same(co), set_sample(5, 55)(co)))
    with diverged.checkout() as co:
        assert co.diff.branch("dev").conflict.conflict is False
    diverged.merge("merge", "master", "dev")
    vals = foo_values(diverged)
    assert vals[0] == 77 and 1 not in vals and vals[5] == 55
    assert meta_values(diverged) == {"hello": "same", "both": "x"}
    with diverged.checkout() as co:
        assert "bar" not in co.arraysets


def test_arrayset_added_on_both_sides_with_same_schema_merges_samples(diverged):
    def add(key, value):
        def fn(co):
            a = co.arraysets.init_arrayset("new", shape=(2,), dtype=np.int64)
            a[key] = np.full(2, value, np.int64)
            a["shared"] = np.zeros(2, np.int64)
        return fn
    commit_on(diverged, "master", add("m", 1))
    commit_on(diverged, "dev", add("d", 2))
    diverged.merge("merge", "master", "dev")
    with diverged.checkout() as co:
        assert sorted(co.arraysets["new"].keys()) == ["d", "m", "shared"]


def test_arrayset_removed_on_one_side_only_is_removed(diverged):
    commit_on(diverged, "master", set_meta("m", "1"))
    commit_on(diverged, "dev", _remove_foo)
    diverged.merge("merge", "master", "dev")
    with diverged.checkout() as co:
        assert list(co.arraysets.keys()) == ["bar"]


# ------------------------------------------------------------ strategies
@pytest.mark.slow
@pytest.mark.parametrize("strategy,expected_sample,expected_meta", [("ours", 1, "1"), ("theirs", 2, "2")])
def test_strategy_resolves_sample_and_metadata_conflicts(diverged, strategy, expected_sample, expected_meta):
    commit_on(diverged, "master", lambda co: (set_sample(0, 1)(co), set_meta("hello", "1")(co), set_sample(7, 70)(co)))
    commit_on(diverged, "dev", lambda co: (set_sample(0, 2)(co), set_meta("hello", "2")(co), set_sample(8, 80)(co)))
    merged = diverged.merge("merge", "master", "dev", strategy=strategy)
    assert len(git_of(diverged).commit_info(merged).parents) == 2
    vals = foo_values(diverged)
    assert vals[0] == expected_sample and vals[7] == 70 and vals[8] == 80
    assert meta_values(diverged)["hello"] == expected_meta


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ours", "theirs"])
def test_strategy_resolves_schema_conflict_as_a_whole_arrayset(diverged, strategy):
    commit_on(diverged, "master", _remove_foo)
    commit_on(diverged, "dev", set_sample(0, 2))
    co = diverged.checkout(write=True)
    co.merge("merge", "dev", strategy=strategy)
    names = list(co.arraysets.keys())
    if strategy == "ours":
        assert names == ["bar"]
    else:
        assert names == ["bar", "foo"] and int(co["foo", 0][0]) == 2
    co.close()


def test_unknown_strategy_raises_value_error_naming_it(diverged):
    with pytest.raises(ValueError, match="'mine'"):
        diverged.merge("m", "master", "dev", strategy="mine")
    co = diverged.checkout(write=True)
    with pytest.raises(ValueError, match="'mine'"):
        co.merge("m", "dev", strategy="mine")
    co.close()


# --------------------------------------------------------------- refusals
def test_merge_while_writer_open_raises_permission_error(diverged):
    commit_on(diverged, "dev", set_sample(0, 5))
    co = diverged.checkout(write=True)
    with pytest.raises(PermissionError):
        diverged.merge("m", "master", "dev")
    with pytest.raises(WriterLockError):
        diverged.merge("m", "master", "dev")
    co.close()
    assert diverged.merge("m", "master", "dev") == diverged.branch_head("dev")


def test_merge_into_branch_with_dirty_staging_area_raises(diverged):
    commit_on(diverged, "dev", set_sample(0, 5))
    co = diverged.checkout(write=True)
    co["foo", 0] = arr(9)
    with pytest.raises(ValueError, match="uncommitted"):
        co.merge("m", "dev")
    with pytest.raises(RuntimeError):
        co.merge("m", "dev")
    co.close()
    head = diverged.branch_head("master")
    with pytest.raises(ValueError, match="uncommitted"):
        diverged.merge("m", "master", "dev")
    assert diverged.branch_head("master") == head
    assert not diverged.writer_lock_held


@pytest.mark.parametrize("master,dev", [("nope", "dev"), ("master", "nope"), ("master", None)])
def test_unknown_branch_raises_value_error(diverged, master, dev):
    with pytest.raises(ValueError, match="branch"):
        diverged.merge("m", master, dev)
    assert not diverged.writer_lock_held


def test_non_str_message_raises_value_error(diverged):
    with pytest.raises(ValueError, match="message"):
        diverged.merge(5, "master", "dev")


# ------------------------------------------------------- property: dict model
VALUES = st.integers(0, 2)
EDIT = st.one_of(st.none(), st.just("del"), VALUES)  # None: leave the key alone
#: (kind, key) -> (value at base or None, master's edit, dev's edit)
PLAN = st.dictionaries(st.tuples(st.sampled_from(["sample", "meta"]), st.sampled_from([0, 1, 2, "a"])),
                       st.tuples(st.one_of(st.none(), VALUES), EDIT, EDIT), min_size=1, max_size=8)


def _ops(plan: dict, which: int) -> list:
    """(kind, delete, key, value) ops of the base (0), master (1) or dev (2) side of ``plan``."""
    ops = []
    for (kind, key), states in plan.items():
        edit = states[which]
        if edit is None:
            continue
        ops.append((kind, edit == "del", key, 0 if edit == "del" else edit))
    return ops


def _apply_model(model: dict, ops) -> dict:
    out = {k: dict(v) for k, v in model.items()}
    for kind, delete, key, value in ops:
        table = out[kind]
        if delete:
            table.pop(key, None)
        else:
            table[key] = value
    return out


def _apply_repo(co, ops) -> None:
    foo = co.arraysets["foo"]
    for kind, delete, key, value in ops:
        mkey = str(key)
        if kind == "sample":
            if delete:
                if key in foo:
                    foo.remove(key)
            else:
                foo[key] = arr(value)
        elif delete:
            if mkey in co.metadata:
                co.metadata.remove(mkey)
        else:
            co.metadata[mkey] = str(value)


def _model_merge(base: dict, ours: dict, theirs: dict, strategy):
    result, conflicts = {}, set()
    for key in base.keys() | ours.keys() | theirs.keys():
        b, m, d = base.get(key), ours.get(key), theirs.get(key)
        if m == d or d == b:
            r = m
        elif m == b:
            r = d
        else:
            cls = "t1" if b is None else "t21" if m is None else "t22" if d is None else "t3"
            conflicts.add((cls, key))
            r = m if strategy == "ours" else d
        if r is not None:
            result[key] = r
    return result, conflicts


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLAN, strategy=st.sampled_from([None, "ours", "theirs"]))
def test_random_edits_merge_as_the_dict_model_predicts(plan, strategy):
    base_ops, master_ops, dev_ops = _ops(plan, 0), _ops(plan, 1), _ops(plan, 2)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository(tmp, exists=False)
        repo.init("t", "t@example.com")
        co = repo.checkout(write=True)
        co.arraysets.init_arrayset("foo", shape=(5,), dtype=np.int64)
        co.metadata["seed"] = "0"
        _apply_repo(co, base_ops)
        co.commit("base")
        co.close()
        base = _apply_model({"sample": {}, "meta": {"seed": 0}}, base_ops)
        repo.create_branch("dev")
        # one extra change per side keeps the history diverged (a 3-way merge every time)
        m_head = commit_on(repo, "master", lambda c: (_apply_repo(c, master_ops), c.metadata.__setitem__("m", "1")))
        d_head = commit_on(repo, "dev", lambda c: (_apply_repo(c, dev_ops), c.metadata.__setitem__("d", "1")))
        ours = _apply_model(base, master_ops + [("meta", False, "m", 1)])
        theirs = _apply_model(base, dev_ops + [("meta", False, "d", 1)])
        exp_samples, c_samples = _model_merge(base["sample"], ours["sample"], theirs["sample"], strategy)
        norm = [{str(k): v for k, v in t["meta"].items()} for t in (base, ours, theirs)]
        exp_meta, c_meta = _model_merge(*norm, strategy)
        event(f"conflicts={bool(c_samples or c_meta)} strategy={strategy}")

        res = diff_commits(git_of(repo), m_head, d_head)
        classes = ("t1", "t21", "t22", "t3")
        got = {(c, ("sample", k.data_name)) for c in classes for k in getattr(res.conflict, c).samples}
        got |= {(c, ("meta", k.meta_name)) for c in classes for k in getattr(res.conflict, c).metadata}
        assert got == {(c, ("sample", k)) for c, k in c_samples} | {(c, ("meta", k)) for c, k in c_meta}
        assert res.conflict.conflict == bool(got)
        model_diff = {k for k in ours["sample"].keys() | theirs["sample"].keys()
                      if ours["sample"].get(k) != theirs["sample"].get(k)}
        d = res.diff
        assert {k.data_name for k in [*d.added.samples, *d.deleted.samples, *d.mutated.samples]} == model_diff

        if (c_samples or c_meta) and strategy is None:
            with pytest.raises(MergeConflictError):
                repo.merge("merge", "master", "dev")
            assert repo.branch_head("master") == m_head
            return
        merged = repo.merge("merge", "master", "dev", strategy=strategy)
        assert git_of(repo).commit_info(merged).parents == [m_head, d_head]
        assert foo_values(repo) == exp_samples
        assert meta_values(repo) == {k: str(v) for k, v in exp_meta.items()}


@pytest.mark.slow
def test_merge_accepts_a_fetched_remote_branch_name(aset_repo):
    """fetch() names what it brings '<remote>/<branch>'; merging that name unifies the histories."""
    import numpy as np

    git = git_of(aset_repo)
    aset_repo.create_branch("tmp")
    co = aset_repo.checkout(write=True, branch="tmp")
    co["foo", 42] = np.full(5, 42, np.int64)
    fetched = co.commit("work that arrived by fetch")
    co.close()
    git.set_ref("refs/remotes/origin/master", fetched)  # what Remotes.fetch records
    assert aset_repo.merge("unify", "master", "origin/master") == fetched  # fast-forward
    co = aset_repo.checkout(write=True)
    assert co["foo", 42][0] == 42
    co.close()
