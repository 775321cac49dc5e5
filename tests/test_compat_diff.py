"""Diff records shaped as in Hangar 0.3 (issue 10, point 5).

``DiffAndConflicts(diff=DiffOut(added, deleted, mutated), conflict=Conflicts(t1, t21, t22, t3,
conflict))``, each part a ``Changes(schema, samples, metadata)`` of dicts keyed by arrayset
name, ``(aset_name, data_name)`` and ``(meta_name,)`` named tuples.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar.diff import (
    ArraysetSchemaVal,
    Changes,
    Conflicts,
    DiffAndConflicts,
    DiffOut,
    MetadataKey,
    MetadataVal,
    SampleKey,
    SampleVal,
)
from hangar.store.digest import sample_digest as digest_array
from tests.repo_parts import commit_on


def _edit_dev(co) -> None:
    foo = co.arraysets["foo"]
    foo[1] = np.full(5, 100, np.int64)  # mutated
    del foo[2]  # deleted
    foo["new"] = np.zeros(5, np.int64)  # added
    co.arraysets.init_arrayset("baz", shape=(1,), dtype=np.uint8)
    co.metadata["hello"] = "there"
    co.metadata[7] = "seven"


def _assert_shape(res: DiffAndConflicts) -> None:
    assert type(res) is DiffAndConflicts and res._fields == ("diff", "conflict")
    assert type(res.diff) is DiffOut and res.diff._fields == ("added", "deleted", "mutated")
    assert type(res.conflict) is Conflicts
    assert res.conflict._fields == ("t1", "t21", "t22", "t3", "conflict")
    assert isinstance(res.conflict.conflict, bool)
    for part in (*res.diff, *res.conflict[:4]):
        assert type(part) is Changes and part._fields == ("schema", "samples", "metadata")
        assert all(type(d) is dict for d in part)
        assert all(type(k) is str and type(v) is ArraysetSchemaVal for k, v in part.schema.items())
        assert all(type(k) is SampleKey and type(v) is SampleVal for k, v in part.samples.items())
        assert all(type(k) is MetadataKey and type(v) is MetadataVal for k, v in part.metadata.items())


def test_branch_diff_is_diffout_of_changes_dicts_keyed_by_named_tuples(aset_repo):
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "dev", _edit_dev)
    with aset_repo.checkout() as co:
        res = co.diff.branch("dev")
    _assert_shape(res)
    added, deleted, mutated = res.diff
    assert list(added.schema) == ["baz"]
    assert list(added.samples) == [SampleKey("foo", "new")]
    assert list(added.metadata) == [MetadataKey(7)]
    assert list(deleted.samples) == [SampleKey(aset_name="foo", data_name=2)]
    assert list(mutated.samples) == [("foo", 1)]  # a named tuple still equals the plain tuple
    assert list(mutated.metadata) == [MetadataKey(meta_name="hello")]
    key = next(iter(mutated.samples))
    assert key.aset_name == "foo" and key.data_name == 1 and type(key.data_name) is int
    assert ("foo", 1) in mutated.samples and MetadataKey("hello") in mutated.metadata
    assert res.conflict == Conflicts(*(Changes({}, {}, {}),) * 4, conflict=False)


def test_record_values_describe_the_newer_record_and_the_removed_one(aset_repo):
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "dev", _edit_dev)
    with aset_repo.checkout() as co:
        added, deleted, mutated = co.diff.branch("dev").diff
    new1 = np.full(5, 100, np.int64)
    val = mutated.samples[SampleKey("foo", 1)]
    assert val == SampleVal(digest_array(new1).hex(), new1.dtype.str, (5,))
    old2 = np.arange(5, dtype=np.int64) + 2  # what the aset_repo fixture stored under foo[2]
    assert deleted.samples[SampleKey("foo", 2)].data_hash == digest_array(old2).hex()
    assert mutated.metadata[MetadataKey("hello")].value == "there"
    assert added.metadata[MetadataKey(7)].value == "seven"
    schema = added.schema["baz"]
    assert (schema.schema_dtype, schema.schema_max_shape, schema.schema_is_var, schema.schema_is_named) == \
        ("|u1", (1,), False, True)
    assert len(schema.schema_hash) == 40


def test_equal_records_have_equal_values(aset_repo):
    aset_repo.create_branch("dev")

    def two_same(co) -> None:
        co["foo", 50] = np.ones(5, np.int64)
        co["foo", 51] = np.ones(5, np.int64)
        co.metadata["a"] = "same"
        co.metadata["b"] = "same"

    commit_on(aset_repo, "dev", two_same)
    with aset_repo.checkout() as co:
        added = co.diff.branch("dev").diff.added
    assert added.samples[("foo", 50)] == added.samples[("foo", 51)]
    assert added.metadata[MetadataKey("a")].meta_hash == added.metadata[MetadataKey("b")].meta_hash


@pytest.mark.slow
@pytest.mark.parametrize("how", ["branch", "commit"])
def test_diff_between_a_commit_and_its_descendant_is_the_same_from_either_side(aset_repo, how):
    first = aset_repo.log(return_contents=True)["head"]
    aset_repo.create_branch("dev")
    second = commit_on(aset_repo, "dev", _edit_dev)
    with aset_repo.checkout(branch="master") as old_side:
        from_old = old_side.diff.branch("dev") if how == "branch" else old_side.diff.commit(second)
    with aset_repo.checkout(branch="dev") as new_side:
        from_new = new_side.diff.branch("master") if how == "branch" else new_side.diff.commit(first)
    assert from_new == from_old
    assert list(from_new.diff.added.schema) == ["baz"]  # what the descendant added, not "deleted"
    writer = aset_repo.checkout(write=True, branch="dev")
    try:
        assert writer.diff.branch("master") == from_old
    finally:
        writer.close()


def test_writer_diff_against_a_branch_includes_staged_changes(aset_repo):
    # Hangar 0.3 diffed the writer's staging area, not only its base commit
    aset_repo.create_branch("dev")
    co = aset_repo.checkout(write=True)
    try:
        co["foo", 0] = np.full(5, 9, np.int64)
        co.metadata["staged"] = "yes"
        res = co.diff.branch("dev")  # dev is the base commit: staged changes are newer
        assert list(res.diff.mutated.samples) == [("foo", 0)]
        assert list(res.diff.added.metadata) == [MetadataKey("staged")]
        assert res.diff == co.diff.staged().diff
    finally:
        co.close()


def test_conflict_classes_are_changes_dicts_with_the_dev_side_record(aset_repo):
    aset_repo.create_branch("dev")

    def master_side(co) -> None:
        co.metadata["both"] = "master"
        co["foo", 3] = np.full(5, 1, np.int64)
        del co.arraysets["foo"][4]
        co["foo", 5] = np.full(5, 1, np.int64)

    def dev_side(co) -> None:
        co.metadata["both"] = "dev"
        co["foo", 3] = np.full(5, 2, np.int64)
        co["foo", 4] = np.full(5, 2, np.int64)
        del co.arraysets["foo"][5]

    commit_on(aset_repo, "master", master_side)
    commit_on(aset_repo, "dev", dev_side)
    with aset_repo.checkout() as co:
        res = co.diff.branch("dev")
    _assert_shape(res)
    c = res.conflict
    assert c.conflict is True
    assert c.t1.metadata == {MetadataKey("both"): c.t1.metadata[MetadataKey("both")]}
    assert c.t1.metadata[MetadataKey("both")].value == "dev"
    assert list(c.t21.samples) == [SampleKey("foo", 4)]
    assert c.t21.samples[SampleKey("foo", 4)].data_hash == digest_array(np.full(5, 2, np.int64)).hex()
    assert list(c.t22.samples) == [SampleKey("foo", 5)]  # dev removed it: master's record
    assert c.t22.samples[SampleKey("foo", 5)].data_hash == digest_array(np.full(5, 1, np.int64)).hex()
    assert list(c.t3.samples) == [SampleKey("foo", 3)]


def test_schema_conflict_is_keyed_by_arrayset_name(aset_repo):
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "master", lambda co: co.arraysets.init_arrayset("x", shape=(2,), dtype=np.int8))
    commit_on(aset_repo, "dev", lambda co: co.arraysets.init_arrayset("x", shape=(3,), dtype=np.int8))
    with aset_repo.checkout() as co:
        t1 = co.diff.branch("dev").conflict.t1
    assert list(t1.schema) == ["x"] and t1.schema["x"].schema_max_shape == (3,)


def test_writer_conflicts_count_staged_changes(aset_repo):
    # Hangar 0.3 classified conflicts between the staging area and dev
    aset_repo.create_branch("dev")
    commit_on(aset_repo, "master", lambda co: co.metadata.__setitem__("m", "1"))  # diverge
    commit_on(aset_repo, "dev", lambda co: co.arraysets["foo"].__setitem__(0, np.full(5, 2, np.int64)))
    co = aset_repo.checkout(write=True)
    try:
        assert co.diff.branch("dev").conflict.conflict is False
        co["foo", 0] = np.full(5, 1, np.int64)  # staged, not committed
        res = co.diff.branch("dev")
        _assert_shape(res)
        assert list(res.conflict.t3.samples) == [SampleKey("foo", 0)]
        assert co.diff.status() == "DIRTY"  # nothing was written to find it
    finally:
        co.close()


def test_hangar03_record_type_names_import_from_records_parsing(aset_repo):
    # Hangar 0.3's own tests built expected keys with hangar.records.parsing.MetadataRecordKey
    from hangar.records.parsing import MetadataRecordKey, RawDataRecordKey

    aset_repo.create_branch("dev")
    commit_on(aset_repo, "dev", _edit_dev)
    with aset_repo.checkout() as co:
        diff = co.diff.branch("dev").diff
    assert MetadataRecordKey("hello") in diff.mutated.metadata
    assert RawDataRecordKey(aset_name="foo", data_name=1) in diff.mutated.samples


def test_sample_values_read_on_demand_behave_as_tuples(aset_repo):
    import pickle

    aset_repo.create_branch("dev")
    commit_on(aset_repo, "dev", _edit_dev)
    with aset_repo.checkout() as co:
        mutated = co.diff.branch("dev").diff.mutated.samples
    with aset_repo.checkout(branch="dev") as co:
        again = co.diff.branch("master").diff.mutated.samples
    val = mutated[SampleKey("foo", 1)]
    assert val == again[SampleKey("foo", 1)]  # same blob: equal without reading it
    new1 = np.full(5, 100, np.int64)
    expected = (digest_array(new1).hex(), "<i8", (5,))
    data_hash, dtype, shape = val
    assert (data_hash, dtype, shape) == expected and val == expected and val[2] == (5,)
    assert val == SampleVal(*expected) and hash(val) == hash(SampleVal(*expected)) == hash(expected)
    assert val._asdict() == dict(zip(("data_hash", "dtype", "shape"), expected))
    assert pickle.loads(pickle.dumps(val)) == val
    assert repr(val) == f"SampleVal(data_hash={expected[0]!r}, dtype='<i8', shape=(5,))"
    assert val != SampleVal("0" * 64, "<i8", (5,))
