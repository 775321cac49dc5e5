"""Arraysets: creation, validation, add/get/remove, iteration, named/unnamed, variable shape."""

from __future__ import annotations

import numpy as np
import pytest

from hangar.arrayset import ArraysetDataReader, ArraysetDataWriter
from tests.repo_parts import store_of


@pytest.fixture
def wco(repo):
    co = repo.checkout(write=True)
    yield co
    co.close()


def test_init_with_shape_dtype_and_properties(wco):
    a = wco.arraysets.init_arrayset("imgs", shape=(28, 28), dtype=np.uint8)
    assert isinstance(a, ArraysetDataWriter)
    assert (a.name, a.shape, a.dtype, a.variable_shape, a.named_samples, a.iswriteable) == \
        ("imgs", (28, 28), np.dtype(np.uint8), False, True, True)
    assert len(wco.arraysets) == 1 and wco.arraysets.keys() == ["imgs"] and "imgs" in wco.arraysets


def test_init_with_int_shape_and_prototype(wco):
    a = wco.arraysets.init_arrayset("vec", shape=7, dtype="float32")
    assert a.shape == (7,)
    p = wco.arraysets.init_arrayset("proto", prototype=np.zeros((3, 4), dtype=np.int16))
    assert p.shape == (3, 4) and p.dtype == np.int16


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,match", [
    (dict(name="bad name", shape=(1,), dtype=np.uint8), "bad name"),
    (dict(name="ünï", shape=(1,), dtype=np.uint8), "ünï"),
    (dict(name="../x", shape=(1,), dtype=np.uint8), r"\.\./x"),
    (dict(name="a" * 65, shape=(1,), dtype=np.uint8), "aaaa"),
    (dict(name="x", shape=None, dtype=np.uint8), "shape and dtype"),
    (dict(name="x", shape=(1,), dtype=None), "shape and dtype"),
    (dict(name="x", shape=(1,) * 32, dtype=np.uint8), "rank 32"),
    (dict(name="x", shape=(3, 0), dtype=np.uint8), "zero-sized"),
    (dict(name="x", shape=(3, -1), dtype=np.uint8), "zero-sized"),
    (dict(name="x", shape="3", dtype=np.uint8), "shape"),
    (dict(name="x", shape=(1,), dtype=object), "object"),
    (dict(name="x", shape=(1,), dtype="notadtype"), "notadtype"),
    (dict(name="x", shape=(1,), dtype=np.uint8, backend="hdf5"), "hdf5"),
    (dict(name="x", prototype=np.zeros((4, 4))[:, ::2]), "C contiguous"),
    (dict(name="x", prototype=np.zeros(2), shape=(2,)), "either prototype"),
    (dict(name="x", prototype=[1, 2]), "ndarray"),
])
def test_init_arrayset_invalid_arguments_raise_value_error(wco, kwargs, match):
    with pytest.raises(ValueError, match=match):
        wco.arraysets.init_arrayset(**kwargs)
    assert len(wco.arraysets) == 0 and wco.diff.status() == "CLEAN"


def test_init_existing_arrayset_raises_lookup_error(wco):
    wco.arraysets.init_arrayset("a", shape=(1,), dtype=np.uint8)
    with pytest.raises(LookupError, match="'a' already exists"):
        wco.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    assert wco.arraysets["a"].shape == (1,)


def test_rank_31_and_structured_dtype_allowed(wco):
    a = wco.arraysets.init_arrayset("deep", shape=(1,) * 31, dtype=np.uint8)
    a[0] = np.ones((1,) * 31, np.uint8)
    dt = np.dtype([("x", "<i4"), ("y", "<f8")])
    s = wco.arraysets.init_arrayset("rec", shape=(2,), dtype=dt)
    val = np.array([(1, 2.5), (3, 4.5)], dtype=dt)
    s["r"] = val
    wco.commit("structured")
    assert s["r"].tolist() == val.tolist() and s["r"].dtype == dt


def test_arraysets_setitem_refused(wco):
    with pytest.raises(PermissionError):
        wco.arraysets["x"] = 1


def test_add_validation_errors_name_the_value(wco):
    a = wco.arraysets.init_arrayset("a", shape=(2, 2), dtype=np.float32)
    good = np.zeros((2, 2), np.float32)
    cases = [
        (lambda: a.add(good), "needs a name"),
        (lambda: a.add([[0, 0], [0, 0]], "k"), "numpy.ndarray"),
        (lambda: a.add(np.zeros((2, 4), np.float32)[:, ::2], "k"), "C contiguous"),
        (lambda: a.add(np.zeros((2, 2), np.float64), "k"), "float64"),
        (lambda: a.add(np.zeros((2,), np.float32), "k"), "rank 1"),
        (lambda: a.add(np.zeros((2, 3), np.float32), "k"), r"\(2, 3\)"),
        (lambda: a.add(good, "bad key"), "bad key"),
        (lambda: a.add(good, -1), "-1"),
        (lambda: a.add(good, True), "bool"),
        (lambda: a.add(good, 1.5), "1.5"),
        (lambda: a.add(good, "x/../y"), r"x/\.\./y"),
        (lambda: a.add(good, "nul\x00"), "nul"),
    ]
    for thunk, match in cases:
        with pytest.raises(ValueError, match=match):
            thunk()
    assert len(a) == 0


def test_str_and_int_keys_are_distinct_and_round_trip(wco):
    a = wco.arraysets.init_arrayset("a", shape=(1,), dtype=np.int64)
    a[1] = np.array([1])
    a["1"] = np.array([2])
    assert len(a) == 2 and a[1][0] == 1 and a["1"][0] == 2
    wco.commit("keys")
    assert sorted(a.keys(), key=str) == [1, "1"]
    assert [type(k) for k in a.keys()] == [int, str]


def test_get_remove_contains_len_and_iteration(wco):
    a = wco.arraysets.init_arrayset("a", shape=(3,), dtype=np.int32)
    for i in range(5):
        a[i] = np.full(3, i, np.int32)
    a["z"] = np.full(3, 9, np.int32)
    assert len(a) == 6 and 3 in a and "3" not in a and 2.5 not in a
    assert list(a.keys()) == [0, 1, 2, 3, 4, "z"] and list(a) == list(a.keys())
    assert [v[0] for v in a.values()] == [0, 1, 2, 3, 4, 9]
    assert [(k, v[0]) for k, v in a.items()][-1] == ("z", 9)
    assert a.remove(3) == 3
    assert 3 not in a and len(a) == 5
    with pytest.raises(KeyError, match="3"):
        a.remove(3)
    with pytest.raises(KeyError):
        a[3]
    with pytest.raises(KeyError):
        a.get("nope")
    del a["z"]
    assert list(a.keys()) == [0, 1, 2, 4]
    with pytest.raises(KeyError):
        del a["z"]


def test_returned_arrays_are_writeable_copies(aset_repo):
    r = aset_repo.checkout()
    x = r["foo", 1]
    x[0] = 999
    assert r["foo", 1][0] == 1
    r.close()


def test_unnamed_arrayset_generates_keys(wco):
    a = wco.arraysets.init_arrayset("u", shape=(1,), dtype=np.uint8, named_samples=False)
    k1 = a.add(np.array([1], np.uint8))
    k2 = a.add(np.array([2], np.uint8))
    assert isinstance(k1, str) and k1 != k2 and a[k2][0] == 2 and not a.named_samples


def test_multi_add_shares_generated_key(wco):
    x = wco.arraysets.init_arrayset("x", shape=(1,), dtype=np.uint8, named_samples=False)
    y = wco.arraysets.init_arrayset("y", shape=(2,), dtype=np.uint8, named_samples=False)
    key = wco.arraysets.multi_add({"x": np.array([1], np.uint8), "y": np.array([2, 3], np.uint8)})
    assert x[key][0] == 1 and y[key].tolist() == [2, 3]
    with pytest.raises(KeyError):
        wco.arraysets.multi_add({"nope": np.array([1], np.uint8)})
    # an invalid second sample: nothing is written at all
    with pytest.raises(ValueError):
        wco.arraysets.multi_add({"x": np.array([5], np.uint8), "y": np.array([1], np.uint8)})
    assert len(x) == 1 and len(y) == 1
    named = wco.arraysets.init_arrayset("named", shape=(1,), dtype=np.uint8)
    with pytest.raises(ValueError, match="named"):
        wco.arraysets.multi_add({"named": np.array([1], np.uint8)})
    assert len(named) == 0


def test_variable_shape_samples_keep_their_shape(wco):
    v = wco.arraysets.init_arrayset("v", shape=(10, 10), dtype=np.float32, variable_shape=True)
    v["a"] = np.ones((3, 7), np.float32)
    v["b"] = np.ones((10, 1), np.float32)
    with pytest.raises(ValueError, match="exceeds"):
        v["c"] = np.ones((11, 1), np.float32)
    with pytest.raises(ValueError, match="rank"):
        v["c"] = np.ones((3,), np.float32)
    with pytest.raises(ValueError, match="zero-sized"):
        v["c"] = np.ones((0, 3), np.float32)
    wco.commit("variable")
    assert v["a"].shape == (3, 7) and v["b"].shape == (10, 1) and v.variable_shape and v.shape == (10, 10)


def test_reader_arrayset_is_read_only(aset_repo):
    r = aset_repo.checkout()
    foo = r.arraysets["foo"]
    assert isinstance(foo, ArraysetDataReader) and not isinstance(foo, ArraysetDataWriter)
    assert foo.iswriteable is False and r.arraysets.iswriteable is False
    assert not hasattr(foo, "add")
    with pytest.raises(TypeError):
        foo[1] = np.zeros(5, np.int64)
    with pytest.raises(PermissionError):
        del r.arraysets["foo"]
    with pytest.raises(PermissionError):
        r.arraysets.init_arrayset("n", shape=(1,), dtype=np.uint8)
    r.close()


def test_arraysets_get_items_values(aset_repo):
    r = aset_repo.checkout()
    assert r.arraysets.get("foo").name == "foo"
    with pytest.raises(KeyError, match="nope"):
        r.arraysets.get("nope")
    assert [n for n, _ in r.arraysets.items()] == ["bar", "foo"]
    assert [a.name for a in r.arraysets.values()] == ["bar", "foo"]
    assert list(r.arraysets) == ["bar", "foo"] and len(r.arraysets) == 2
    assert r.arraysets.contains_remote_references == {"bar": False, "foo": False}
    assert r.arraysets.remote_sample_keys == {"bar": [], "foo": []}
    assert r.arraysets["foo"].contains_remote_references is False
    assert r.arraysets["foo"].remote_reference_sample_keys == []
    r.close()


def test_remove_aset_and_recreate_with_other_schema(aset_repo):
    co = aset_repo.checkout(write=True)
    assert co.arraysets.remove_aset("foo") == "foo"
    assert "foo" not in co.arraysets
    with pytest.raises(KeyError, match="foo"):
        co.arraysets.remove_aset("foo")
    new = co.arraysets.init_arrayset("foo", shape=(2,), dtype=np.uint8)
    new[0] = np.array([1, 2], np.uint8)
    c = co.commit("replace foo")
    del co.arraysets["bar"]
    co.commit("drop bar")
    co.close()
    r = aset_repo.checkout(commit=c)
    assert r.arraysets["foo"].shape == (2,) and len(r.arraysets["foo"]) == 1 and len(r.arraysets["bar"]) == 10
    r.close()
    r = aset_repo.checkout()
    assert r.arraysets.keys() == ["foo"]
    r.close()


def test_identical_samples_are_stored_once(wco, repo):
    a = wco.arraysets.init_arrayset("a", shape=(1000,), dtype=np.float64)
    x = np.random.default_rng(0).random(1000)
    for i in range(50):
        a[i] = x
    wco.commit("same sample 50 times")
    store = store_of(repo)
    assert len(store) == 1


def test_same_bytes_other_shape_are_other_samples(wco):
    a = wco.arraysets.init_arrayset("a", shape=(4, 4), dtype=np.uint8, variable_shape=True)
    a["x"] = np.arange(16, dtype=np.uint8).reshape(4, 4)
    a["y"] = np.arange(16, dtype=np.uint8).reshape(4, 4)[:2].copy()
    a["z"] = np.arange(8, dtype=np.uint8).reshape(2, 4)
    wco.commit("shapes")
    assert a["z"].shape == (2, 4) and a["x"].shape == (4, 4)


def test_nan_values_round_trip_bit_exact(wco):
    a = wco.arraysets.init_arrayset("f", shape=(4,), dtype=np.float64)
    x = np.array([np.nan, -np.nan, np.inf, 0.0])
    x.view(np.uint64)[0] |= 1  # a NaN payload
    a["n"] = x
    wco.commit("nans")
    assert a["n"].tobytes() == x.tobytes()


def test_compressible_data_is_compressed_and_round_trips(repo, tmp_path):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("z", shape=(256, 256), dtype=np.uint8)
    for i in range(20):
        a[i] = np.full((256, 256), i, np.uint8)
    co.commit("compressible")
    co.close()
    import os
    data_dir = os.path.join(repo.path, ".hangar", "data")
    data_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs)
    assert data_bytes < 20 * 256 * 256 / 10
    r = repo.checkout()
    assert (r["z", 7] == 7).all()
    r.close()


@pytest.mark.parametrize("backend", ["raw", "lz4", "zstd", "auto"])
def test_every_backend_round_trips(repo, backend):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("b", shape=(64,), dtype=np.int32, backend=backend)
    x = np.arange(64, dtype=np.int32)
    a[0] = x
    assert a.backend == backend
    co.commit(backend)
    co.close()
    r = repo.checkout()
    np.testing.assert_array_equal(r["b", 0], x)
    r.close()


def test_get_batch_preserves_order_and_raises_for_missing(aset_repo):
    r = aset_repo.checkout()
    out = r.arraysets["foo"].get_batch([3, 1, 2], n_cpus=1)
    assert [o[0] for o in out] == [3, 1, 2]
    with pytest.raises(KeyError):
        r.arraysets["foo"].get_batch([1, 99], n_cpus=1)
    r.close()


def test_numpy_integer_keys_are_int_keys(wco):
    a = wco.arraysets.init_arrayset("n", shape=(1,), dtype=np.int64)
    for i in np.arange(3):
        assert a.add(np.array([i]), i) == int(i) and type(a.add(np.array([i]), i)) is int
    assert np.int32(2) in a and a[np.uint8(1)][0] == 1 and 1 in a
    del a[np.int16(0)]
    wco.commit("numpy keys")
    assert list(a.keys()) == [1, 2] and all(type(k) is int for k in a.keys())
    with pytest.raises(ValueError, match="negative"):
        a[np.int64(-1)] = np.array([0])
    with pytest.raises(ValueError, match="bool"):
        a[np.bool_(True)] = np.array([0])


def test_handle_of_a_removed_arrayset_refuses_instead_of_dropping_writes(aset_repo):
    co = aset_repo.checkout(write=True)
    old = co.arraysets["foo"]
    co.arraysets.remove_aset("foo")
    with pytest.raises(ReferenceError, match="removed"):
        old[50] = np.zeros(5, np.int64)
    with pytest.raises(ReferenceError, match="removed"):
        len(old)
    new = co.arraysets.init_arrayset("foo", shape=(2,), dtype=np.uint8)
    new[0] = np.zeros(2, np.uint8)
    with pytest.raises(ReferenceError):
        old[1]
    assert co.arraysets["foo"] is new and len(new) == 1
    co.close()
