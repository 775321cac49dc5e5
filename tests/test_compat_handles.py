"""Hangar-0.3-style code runs unchanged (issue 10, part A): context managers and write
batches, backend codes, handle lifetimes, fresh repositories, loader argument errors.

Written from Hangar 0.3's documented behaviour, not from its test suite.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hangar.arrayset as arrayset_module
from hangar import Repository
from hangar.errors import CheckoutClosedError, HandleClosedError, NoCommitsYetError


def _digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


@pytest.fixture
def wco(aset_repo):
    co = aset_repo.checkout(write=True)
    yield co
    co.close()


# --------------------------------------------------------------- context managers
def test_with_checkout_returns_it_and_leaves_it_open(aset_repo):
    co = aset_repo.checkout(write=True)
    with co as c:
        assert c is co
        c["foo", 100] = np.full(5, 100, np.int64)
    assert co["foo", 100][0] == 100 and aset_repo.writer_lock_held
    co.commit("after the block")
    co.close()
    r = aset_repo.checkout()
    with r as rc:
        assert rc is r and rc["foo", 100][0] == 100
    assert r.commit_hash  # still open
    r.close()


def test_every_handle_is_a_context_manager(wco):
    with wco.arraysets as asets:
        with asets["foo"] as foo:
            foo[200] = np.full(5, 200, np.int64)
        with wco.metadata as m:
            m["k"] = "v"
    assert wco["foo", 200][0] == 200 and wco.metadata["k"] == "v"


def test_reader_handles_are_context_managers(aset_repo):
    r = aset_repo.checkout()
    with r.arraysets as asets, asets["bar"] as bar, r.metadata as m:
        assert bar["3"][0, 0] == 3 and m["hello"] == "world" and len(asets) == 2
    r.close()


def test_samples_added_in_with_block_are_held_until_block_ends(wco):
    foo = wco.arraysets["foo"]
    with foo:
        foo[300] = np.full(5, 300, np.int64)
        assert foo._held is not None and foo._held.keys == [300]  # held back, not yet stored
    assert foo._held is None
    assert wco["foo", 300][0] == 300


def test_reads_inside_block_see_held_samples(wco):
    with wco.arraysets["foo"] as foo:
        foo[400] = np.full(5, 400, np.int64)
        assert 400 in foo
        foo[401] = np.full(5, 401, np.int64)
        assert len(foo) == 12
        foo[402] = np.full(5, 402, np.int64)
        assert wco["foo", 402][0] == 402
        foo[403] = np.full(5, 403, np.int64)
        assert 403 in list(foo.keys())
        foo[404] = np.full(5, 404, np.int64)
        assert dict(foo.items())[404][0] == 404
        foo[405] = np.full(5, 405, np.int64)
        assert wco.diff.status() == "DIRTY"
        foo[406] = np.full(5, 406, np.int64)
        assert "406" in repr(wco.diff.staged())


def test_caller_may_reuse_its_array_after_add_in_a_block(wco):
    buf = np.zeros(5, np.int64)
    with wco.arraysets["foo"] as foo:
        for i in range(500, 510):
            buf[:] = i
            foo[i] = buf
    assert [wco["foo", i][0] for i in range(500, 510)] == list(range(500, 510))


def test_later_add_of_same_key_wins_inside_block(wco):
    with wco.arraysets["foo"] as foo:
        foo[600] = np.full(5, 1, np.int64)
        foo[600] = np.full(5, 2, np.int64)
    assert wco["foo", 600][0] == 2


def test_order_kept_between_held_samples_and_a_bulk_set(wco):
    with wco:
        wco["foo", 700] = np.full(5, 1, np.int64)  # held back
        wco["foo", [700, 701]] = np.full((2, 5), 2, np.int64)  # bulk form, written now, later
    assert wco["foo", 700][0] == 2 and wco["foo", 701][0] == 2


def test_remove_inside_block_sees_held_sample(wco):
    with wco.arraysets["foo"] as foo:
        foo[800] = np.full(5, 8, np.int64)
        del foo[800]
    assert 800 not in wco.arraysets["foo"]


def test_invalid_sample_raises_at_the_add_call(wco):
    with wco.arraysets["foo"] as foo:
        with pytest.raises(ValueError, match="dtype"):
            foo[900] = np.zeros(5, np.float32)
        with pytest.raises(ValueError, match="shape"):
            foo[901] = np.zeros(4, np.int64)
        with pytest.raises(ValueError, match="space|allowed|key"):
            foo["a b"] = np.zeros(5, np.int64)
        foo[902] = np.zeros(5, np.int64)
    assert 902 in wco.arraysets["foo"] and 900 not in wco.arraysets["foo"]


def test_exception_in_block_keeps_samples_added_before_it(wco):
    with pytest.raises(ZeroDivisionError):
        with wco.arraysets["foo"] as foo:
            for i in range(1000, 1010):
                foo[i] = np.full(5, i, np.int64)
            1 / 0  # noqa: B018
    foo = wco.arraysets["foo"]
    assert all(i in foo for i in range(1000, 1010)) and len(foo) == 20
    wco.commit("kept")
    assert wco.diff.status() == "CLEAN"


def test_nested_blocks_store_when_outermost_ends(wco):
    with wco:
        with wco.arraysets as asets:
            with asets["foo"] as foo:
                foo[1100] = np.full(5, 11, np.int64)
            assert foo._held is not None  # inner block ended, outer still open: still held
        assert foo._held is not None
    assert foo._held is None and wco["foo", 1100][0] == 11


def test_commit_inside_block_includes_held_samples(aset_repo):
    co = aset_repo.checkout(write=True)
    with co.arraysets["foo"] as foo:
        foo[1200] = np.full(5, 12, np.int64)
        head = co.commit("from inside the block")
        foo[1201] = np.full(5, 13, np.int64)
    co.commit("second")
    co.close()
    r = aset_repo.checkout(commit=head)
    assert r["foo", 1200][0] == 12 and 1201 not in r.arraysets["foo"]
    r.close()


def test_close_inside_block_stores_held_samples(aset_repo):
    co = aset_repo.checkout(write=True)
    with co.arraysets["bar"] as bar:
        bar["new"] = np.ones((2, 3), np.float32)
        co.close()
    co = aset_repo.checkout(write=True)
    assert co["bar", "new"][0, 0] == 1.0
    co.close()


def test_hold_back_bound_stores_early(wco, monkeypatch):
    monkeypatch.setattr(arrayset_module, "HOLD_MAX_SAMPLES", 4)
    with wco.arraysets["foo"] as foo:
        for i in range(1300, 1306):
            foo[i] = np.full(5, i, np.int64)
        assert foo._held is not None and foo._held.keys == [1304, 1305]  # 4 stored, 2 held
    assert all(i in foo for i in range(1300, 1306))


def test_variable_shape_samples_batched(wco):
    v = wco.arraysets.init_arrayset("v", shape=(10,), dtype=np.uint8, variable_shape=True)
    buf = np.arange(10, dtype=np.uint8)
    with v:
        for n in range(1, 6):
            v[n] = buf[:n]
        buf[:] = 0
    assert [v[n].tolist() for n in range(1, 6)] == [list(range(n)) for n in range(1, 6)]


def test_multi_add_and_multi_arrayset_set_in_block(wco):
    a = wco.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8, named_samples=False)
    b = wco.arraysets.init_arrayset("b", shape=(3,), dtype=np.uint8, named_samples=False)
    with wco:
        key = wco.arraysets.multi_add({"a": np.ones(2, np.uint8), "b": np.ones(3, np.uint8)})
        wco[["foo", "bar"], "k"] = [np.zeros(5, np.int64), np.zeros((2, 3), np.float32)]
        with pytest.raises(ValueError):  # second value invalid: neither is written
            wco[["foo", "bar"], "bad"] = [np.zeros(5, np.int64), np.zeros(3, np.float32)]
    assert key in a and key in b and "k" in wco.arraysets["bar"]
    assert "bad" not in wco.arraysets["foo"]


def test_with_block_loop_matches_bulk_form(aset_repo, tmp_path):
    data = _digits(300)
    co = aset_repo.checkout(write=True)
    co.arraysets.init_arrayset("loop", shape=(28, 28), dtype=np.uint8)
    co.arraysets.init_arrayset("bulk", shape=(28, 28), dtype=np.uint8)
    with co.arraysets["loop"] as loop:
        for i in range(len(data)):
            loop[i] = data[i]
    co["bulk", list(range(len(data)))] = data
    head = co.commit("both")
    co.close()
    r = aset_repo.checkout(commit=head)
    assert list(r.arraysets["loop"].keys()) == list(range(300))
    for i in (0, 150, 299):
        np.testing.assert_array_equal(r["loop", i], data[i])
    assert [r["loop", i].tobytes() for i in range(300)] == [r["bulk", i].tobytes() for i in range(300)]
    r.close()


# --------------------------------------------------------------- backend codes
def _data_bytes(repo: Repository) -> int:
    data_dir = os.path.join(repo.path, ".hangar", "data")
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs)


@pytest.mark.parametrize(("code", "compressed"), [("00", True), ("01", True), ("10", False)])
def test_hangar03_backend_codes_are_aliases(tmp_path, code, compressed):
    repo = Repository(tmp_path, exists=False)
    repo.init(user_name="A", user_email="a@b.c")
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("z", shape=(256, 256), dtype=np.uint8, backend=code)
    assert a.backend == code
    with a:
        for i in range(10):
            a[i] = np.full((256, 256), i, np.uint8)
    co.commit(f"backend {code}")
    co.close()
    raw = 10 * 256 * 256
    assert (_data_bytes(repo) < raw / 10) if compressed else (_data_bytes(repo) >= raw)
    r = repo.checkout()
    assert r.arraysets["z"].backend == code and (r["z", 7] == 7).all()
    r.close()


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["50", "20", "hdf5", "0", "", 10])
def test_unknown_backend_names_every_valid_one(wco, bad):
    with pytest.raises(ValueError, match="backend") as err:
        wco.arraysets.init_arrayset("b", shape=(1,), dtype=np.uint8, backend=bad)
    for name in ("'auto'", "'raw'", "'lz4'", "'zstd'", "'00'", "'01'", "'10'"):
        assert name in str(err.value)
    assert "b" not in wco.arraysets


# --------------------------------------------------------------- handle lifetimes
@pytest.mark.parametrize("write", [False, True])
def test_closed_checkout_raises_permission_error(aset_repo, write):
    co = aset_repo.checkout(write=write)
    co.close()
    ops = [lambda: co.arraysets, lambda: co.metadata, lambda: co.diff, lambda: co["foo", 1],
           lambda: co.get("foo", 1), lambda: co.commit_hash, lambda: co.__enter__()]
    if write:
        ops += [lambda: co.commit("x"), lambda: co.branch_name, lambda: co.reset_staging_area(),
                lambda: co.__setitem__(("foo", 1), np.zeros(5, np.int64)),
                lambda: co.merge("m", "master")]
    for op in ops:
        with pytest.raises(PermissionError) as err:
            op()
        assert isinstance(err.value, CheckoutClosedError)


@pytest.mark.parametrize("write", [False, True])
def test_handles_of_closed_checkout_raise_reference_error(aset_repo, write):
    co = aset_repo.checkout(write=write)
    asets, meta, foo = co.arraysets, co.metadata, co.arraysets["foo"]
    keys, values, items = foo.keys(), foo.values(), foo.items()
    akeys, avalues, aitems = asets.keys(), asets.values(), asets.items()
    mkeys, mvalues, mitems = meta.keys(), meta.values(), meta.items()
    assert next(keys) == 0  # an iterator part-way through stops too
    co.close()
    ops = [lambda: len(asets), lambda: asets["foo"], lambda: "foo" in asets, lambda: asets.keys(),
           lambda: meta["hello"], lambda: len(meta), lambda: meta.keys(),
           lambda: foo[1], lambda: len(foo), lambda: 1 in foo, lambda: foo.keys(),
           lambda: next(keys), lambda: next(values), lambda: next(items),
           lambda: next(avalues), lambda: next(aitems), lambda: next(mkeys), lambda: next(mvalues),
           lambda: next(mitems), lambda: foo.__enter__(), lambda: asets.__enter__(),
           lambda: meta.__enter__()]
    if write:
        ops += [lambda: foo.add(np.zeros(5, np.int64), 1), lambda: meta.add("a", "b"),
                lambda: asets.init_arrayset("n", shape=(1,), dtype=np.uint8)]
    for op in ops:
        with pytest.raises(ReferenceError) as err:
            op()
        assert isinstance(err.value, HandleClosedError)
    assert list(akeys) == ["bar", "foo"]  # Arraysets.keys() is a list, taken before close


@pytest.mark.parametrize("write", [False, True])
def test_closed_handles_refuse_attribute_access_like_dead_proxies(aset_repo, write):
    co = aset_repo.checkout(write=write)
    asets, meta, foo = co.arraysets, co.metadata, co.arraysets["foo"]
    values = list(asets.values())
    assert foo.name == "foo" and foo.iswriteable is write and meta.iswriteable is write
    assert isinstance(foo.__dict__, dict) and vars(meta)
    co.close()
    for handle in (asets, meta, foo, *values):
        with pytest.raises(ReferenceError):
            handle.__dict__  # noqa: B018
    for op in (lambda: foo.name, lambda: foo.dtype, lambda: foo.shape, lambda: foo.backend,
               lambda: foo.named_samples, lambda: foo.variable_shape, lambda: foo.iswriteable,
               lambda: asets.iswriteable, lambda: meta.iswriteable):
        with pytest.raises(ReferenceError):
            op()


def test_closed_checkout_holds_nothing_and_refuses_repr(aset_repo):
    co = aset_repo.checkout(write=True)
    assert "master" in repr(co)
    co.close()
    assert co.__dict__ == {}
    with pytest.raises(PermissionError):
        repr(co)
    co.close()  # closing twice is harmless
    assert not aset_repo.writer_lock_held


def test_write_operations_on_reader_raise_type_error_too(aset_repo):
    r = aset_repo.checkout()
    try:
        for op in (lambda: r.arraysets.init_arrayset("n", shape=(1,), dtype=np.uint8),
                   lambda: r.arraysets.remove_aset("foo"), lambda: r.arraysets.multi_add({"foo": np.zeros(5)})):
            with pytest.raises(TypeError) as err:
                op()
            assert isinstance(err.value, PermissionError)  # what it raised before issue 10
        with pytest.raises(AttributeError):
            r.metadata.add("a", "b")
    finally:
        r.close()


def test_reset_staging_area_invalidates_writer_handles(aset_repo):
    co = aset_repo.checkout(write=True)
    foo, meta, asets = co.arraysets["foo"], co.metadata, co.arraysets
    foo[1400] = np.zeros(5, np.int64)
    co.reset_staging_area()
    for op in (lambda: foo[0], lambda: meta["hello"], lambda: len(asets)):
        with pytest.raises(ReferenceError):
            op()
    with pytest.raises(PermissionError):
        co.arraysets  # noqa: B018


def test_handles_survive_commit(aset_repo):
    co = aset_repo.checkout(write=True)
    foo, meta, asets = co.arraysets["foo"], co.metadata, co.arraysets
    foo[1500] = np.zeros(5, np.int64)
    co.commit("one")
    foo[1501] = np.ones(5, np.int64)
    meta["after"] = "commit"
    assert len(asets) == 2 and 1500 in foo
    co.commit("two")
    assert foo[1501][0] == 1 and meta["after"] == "commit"
    co.close()


def test_closing_writer_leaves_reader_working_and_vice_versa(aset_repo):
    r = aset_repo.checkout()
    rfoo = r.arraysets["foo"]
    co = aset_repo.checkout(write=True)
    wfoo = co.arraysets["foo"]
    co.close()
    assert rfoo[1][0] == 1 and r.metadata["hello"] == "world"
    co = aset_repo.checkout(write=True)
    wfoo = co.arraysets["foo"]
    r.close()
    wfoo[1600] = np.zeros(5, np.int64)
    assert len(wfoo) == 11 and co.metadata["hello"] == "world"
    co.close()
    r2 = aset_repo.checkout()
    r3 = aset_repo.checkout()
    r2.close()
    assert r3.arraysets["foo"][2][0] == 2
    r3.close()


# --------------------------------------------------------------- fresh repositories
def test_fresh_repository_lists_master(tmp_path):
    repo = Repository(tmp_path, exists=False)
    repo.init(user_name="A", user_email="a@b.c")
    assert repo.list_branches() == ["master"]


def test_create_branch_before_first_commit_raises_runtime_error(repo):
    with pytest.raises(RuntimeError, match="no commits yet") as err:
        repo.create_branch("dev")
    assert isinstance(err.value, ValueError) and isinstance(err.value, NoCommitsYetError)
    assert repo.list_branches() == ["master"]


def test_reader_checkout_before_first_commit_names_the_unborn_branch(repo):
    with pytest.raises(RuntimeError, match="'master' has no commits yet"):
        repo.checkout()


# --------------------------------------------------------------- loaders
def _loaders():
    out = []
    for mod, name in (("torch", "make_torch_dataset"), ("tensorflow", "make_tf_dataset"), ("dask", "dask_array")):
        out.append(pytest.param(name, marks=pytest.mark.skipif(
            __import__("importlib").util.find_spec(mod) is None, reason=f"{mod} not installed")))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("loader", _loaders())
def test_loader_refuses_write_enabled_arrayset_with_type_error(aset_repo, loader):
    import hangar.dataloaders as dataloaders

    make = getattr(dataloaders, loader)
    co = aset_repo.checkout(write=True)
    try:
        with pytest.raises(TypeError, match="'foo' is write-enabled") as err:
            make(co.arraysets["foo"])
        assert isinstance(err.value, ValueError)  # what it raised before issue 10
    finally:
        co.close()


@pytest.mark.slow
@pytest.mark.parametrize("loader", _loaders())
def test_loader_refuses_arraysets_passed_positionally(aset_repo, loader):
    import hangar.dataloaders as dataloaders

    make = getattr(dataloaders, loader)
    r = aset_repo.checkout()
    try:
        foo, bar = r.arraysets["foo"], r.arraysets["bar"]
        with pytest.raises(TypeError, match="'bar' was passed as keys"):
            make(foo, bar)
        with pytest.raises(TypeError, match="'bar' was passed as index_range"):
            make(foo, None, bar)
    finally:
        r.close()


@pytest.mark.slow
@pytest.mark.parametrize("loader", _loaders())
def test_loader_refuses_arrayset_of_closed_checkout_with_type_error(aset_repo, loader):
    import hangar.dataloaders as dataloaders

    make = getattr(dataloaders, loader)
    r = aset_repo.checkout()
    foo = r.arraysets["foo"]
    r.close()
    with pytest.raises(TypeError, match="closed") as err:
        make(foo)
    assert isinstance(err.value, ReferenceError)


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="torch not installed")
def test_loader_warning_keeps_hangar03_wording_when_sizes_differ(aset_repo):
    from hangar.dataloaders import make_torch_dataset

    co = aset_repo.checkout(write=True)
    co.arraysets.init_arrayset("few", shape=(5,), dtype=np.int64)
    co["few", [1, 2]] = np.zeros((2, 5), np.int64)
    co.commit("fewer samples")
    co.close()
    r = aset_repo.checkout()
    try:
        with pytest.warns(UserWarning, match="Arraysets do not contain equal number of samples"):
            dset = make_torch_dataset([r.arraysets["foo"], r.arraysets["few"]])
        assert len(dset) == 2
    finally:
        r.close()


# --------------------------------------------------------------- Hangar 0.3 names
def test_hangar03_private_names_read_by_its_users(aset_repo):
    co = aset_repo.checkout(write=True)
    assert co._is_conman is False and co._branch_name == "master"
    with co:
        assert co._is_conman is True
    assert co._is_conman is False
    a = co.arraysets.init_arrayset("b", shape=(2,), dtype=np.uint8, backend="10")
    with a as d:
        assert d._is_conman is True and d._backend == "10" and d._asetn == "b"
    assert d._is_conman is False
    co.close()
    r = aset_repo.checkout()
    with r:
        assert r._is_conman is True
        with r.metadata as m:
            assert m._is_conman is True
    assert r._is_conman is False
    r.close()


def test_value_of_wrong_form_raises_type_error_too(wco):
    for op in (lambda: wco.__setitem__((["foo", "bar"], "k"), np.zeros(5, np.int64)),
               lambda: wco.__setitem__(("foo", list(range(10))), np.zeros(5, np.int64)),
               lambda: wco.__setitem__(("foo", [1, 2]), {1: np.zeros(5, np.int64)}),
               lambda: wco[5]):
        with pytest.raises(TypeError) as err:
            op()
        assert isinstance(err.value, ValueError)  # what it raised before issue 10
    assert "k" not in wco.arraysets["foo"] and wco.diff.status() == "CLEAN"


# --------------------------------------------------------------- batches against a dict model
_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 9)),
    st.tuples(st.just("remove"), st.integers(0, 5)),
    st.tuples(st.just("contains"), st.integers(0, 5)),
    st.tuples(st.just("get"), st.integers(0, 5)),
    st.tuples(st.just("len"),),
    st.tuples(st.just("bulk"), st.lists(st.integers(0, 5), min_size=1, max_size=3), st.integers(0, 9)),
    st.tuples(st.just("nest"),),
), max_size=25)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, variable=st.booleans(), bound=st.sampled_from([2, 3, 16384]))
def test_batched_writes_match_a_dict_model(aset_repo, monkeypatch, ops, variable, bound):
    monkeypatch.setattr(arrayset_module, "HOLD_MAX_SAMPLES", bound)

    def sample(v: int) -> np.ndarray:
        return np.arange(1 + v % 3 if variable else 3, dtype=np.int64) + 10 * v

    co = aset_repo.checkout(write=True)
    try:
        aset = co.arraysets.init_arrayset("m", shape=(3,), dtype=np.int64, variable_shape=variable)
        model: dict[int, np.ndarray] = {}
        with aset:
            for op in ops:
                if op[0] == "add":
                    aset[op[1]] = sample(op[2])
                    model[op[1]] = sample(op[2])
                elif op[0] == "remove":
                    if op[1] in model:
                        del aset[op[1]]
                        del model[op[1]]
                    else:
                        with pytest.raises(KeyError):
                            aset.remove(op[1])
                elif op[0] == "contains":
                    assert (op[1] in aset) == (op[1] in model)
                elif op[0] == "get" and op[1] in model:
                    np.testing.assert_array_equal(aset[op[1]], model[op[1]])
                elif op[0] == "len":
                    assert len(aset) == len(model)
                elif op[0] == "bulk" and not variable:
                    co["m", op[1]] = [sample(op[2])] * len(op[1])
                    model.update({k: sample(op[2]) for k in op[1]})
                elif op[0] == "nest":
                    with co, co.arraysets:
                        aset[0] = sample(7)
                        model[0] = sample(7)
        assert sorted(aset.keys()) == sorted(model)
        for k, v in model.items():
            np.testing.assert_array_equal(aset[k], v)
    finally:
        co.reset_staging_area() if co.diff.status() == "DIRTY" else co.close()


def test_membership_test_inside_block_keeps_samples_held(wco):
    with wco.arraysets["foo"] as foo:
        foo[1700] = np.zeros(5, np.int64)
        assert 1700 in foo and np.int64(1700) in foo and 1 in foo and 1701 not in foo and "x y" not in foo
        foo[1701] = np.ones(5, np.int64)
        assert 1701 in foo
        assert foo._held is not None and foo._held.keys == [1700, 1701]  # nothing stored yet
        del foo[1700]
        assert 1700 not in foo and 1701 in foo
    assert 1700 not in foo and foo[1701][0] == 1
