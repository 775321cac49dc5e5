"""Stacked adds staged as columns: the same state, records and reads as staging sample by sample.

A stacked add keeps its digests and locations as arrays (``StagedEntries.add_stack``,
``TensorStore.put_stack_array``) until something reads them; every test here compares against
the per-sample path, which builds one pointer and one location per sample.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar import Repository
from hangar.plumbing import rowhash
from hangar.store import codecs
from hangar.store.digest import byte_view, digest_array_of_rows, digests_of_rows
from hangar.store.packs import stored_checks

SHAPE = (6, 7)


def _data(n: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *SHAPE), dtype=np.uint8)


def _new(tmp_path, name: str, variable: bool = False):
    (tmp_path / name).mkdir()
    repo = Repository(tmp_path / name, exists=False)
    repo.init(user_name="T", user_email="t@example.com")
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8, variable_shape=variable)
    return repo, co, x


def _tree(run_git, repo: Repository, commit: str) -> str:
    return run_git(repo, "rev-parse", f"{commit}^{{tree}}").stdout.strip()


def _committed(run_git, tmp_path, name: str, steps, variable: bool = False) -> tuple[str, dict]:
    """Tree id and contents of the commit that ``steps(co, x)`` stages in a new repository."""
    repo, co, x = _new(tmp_path, name, variable)
    steps(co, x)
    commit = co.commit(name)
    co.close()
    r = repo.checkout(commit=commit)
    rx = r.arraysets["x"]
    contents = {k: rx[k].copy() for k in rx.keys()}
    r.close()
    assert run_git(repo, "fsck", "--strict").returncode == 0
    return _tree(run_git, repo, commit), contents


def _one_by_one(items):
    def steps(co, x):
        for key, value in items:
            if value is None:
                del x[key]
            else:
                x[key] = value
    return steps


def test_stacks_over_stacks_commit_what_the_same_adds_one_by_one_commit(tmp_path, run_git):
    data = _data(120)
    # three stacks: disjoint keys, then keys 20..59 overwritten, then str keys
    ops = [(list(range(80)), data[:80]), (list(range(20, 60)), data[80:120]),
           ([f"s{i}" for i in range(10)], np.ascontiguousarray(data[::12]))]

    def stacked(co, x):
        for keys, values in ops:
            co["x", keys] = values

    items = [(k, v) for keys, values in ops for k, v in zip(keys, values)]
    tree_a, got_a = _committed(run_git, tmp_path, "stacked", stacked)
    tree_b, got_b = _committed(run_git, tmp_path, "loop", _one_by_one(items))
    assert tree_a == tree_b
    assert got_a.keys() == got_b.keys() == {*range(80), *(f"s{i}" for i in range(10))}
    assert all(np.array_equal(got_a[k], got_b[k]) for k in got_a)
    assert np.array_equal(got_a[25], data[85])  # the later stack won


def test_a_stack_naming_a_key_twice_keeps_the_last_value(tmp_path, run_git):
    data = _data(5)
    keys = [0, 1, 2, 1, 3]

    def stacked(co, x):
        co["x", keys] = data
        assert len(x) == 4

    tree_a, got = _committed(run_git, tmp_path, "stacked", stacked)
    tree_b, _ = _committed(run_git, tmp_path, "loop", _one_by_one(list(zip(keys, data))))
    assert tree_a == tree_b
    assert np.array_equal(got[1], data[3])


def test_staged_stacks_are_read_changed_and_removed_before_the_commit(tmp_path, run_git):
    data = _data(50)
    repo, co, x = _new(tmp_path, "a")
    co["x", list(range(40))] = data[:40]
    assert len(x) == 40 and 39 in x and 40 not in x
    assert np.array_equal(x[7], data[7])
    assert np.array_equal(np.stack(x.get_batch([3, 1, 39])), data[[3, 1, 39]])
    co["x", list(range(30, 50))] = data[30:50]  # a stack after the dict was folded: overwrites 30..39
    x[0] = data[49]
    del x[1]
    assert len(x) == 49 and 1 not in x
    assert sorted(x.keys()) == [0, *range(2, 50)]
    assert np.array_equal(x[0], data[49])
    commit = co.commit("edited")
    co.close()
    r = repo.checkout(commit=commit)
    assert len(r["x"]) == 49
    assert np.array_equal(r["x", 45], data[45]) and np.array_equal(r["x", 0], data[49])
    r.close()


def test_staged_stacks_survive_close_and_reset_drops_them(tmp_path):
    data = _data(30)
    repo, co, x = _new(tmp_path, "a")
    x[100] = data[0]
    co.commit("one")
    co["x", list(range(30))] = data
    co.close()  # uncommitted: the staging area is made durable, stacked samples included
    co = repo.checkout(write=True)
    x = co.arraysets["x"]
    assert len(x) == 31
    assert np.array_equal(np.stack(x.get_batch(list(range(30)))), data)
    co.commit("thirty")
    co["x", list(range(30, 40))] = _data(10, seed=6)
    co.reset_staging_area()  # closes the checkout
    co = repo.checkout(write=True)
    assert sorted(co.arraysets["x"].keys()) == [*range(30), 100]
    assert co.diff.status() == "CLEAN"
    co.close()


def test_a_stack_over_committed_samples_counts_and_commits_as_one_by_one(tmp_path, run_git):
    data = _data(60)

    def stacked(co, x):
        co["x", list(range(30))] = data[:30]
        co.commit("base")
        co["x", list(range(20, 60))] = data[20:]  # 10 keys overwritten, 30 new
        assert len(x) == 60

    def loop(co, x):
        _one_by_one(list(zip(range(30), data[:30])))(co, x)
        co.commit("base")
        _one_by_one(list(zip(range(20, 60), data[20:])))(co, x)

    assert _committed(run_git, tmp_path, "stacked", stacked)[0] == _committed(run_git, tmp_path, "loop", loop)[0]


def test_stacks_of_several_shapes_in_a_variable_shape_arrayset(tmp_path, run_git):
    small = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    large = _data(3)

    def stacked(co, x):
        co["x", [0, 1]] = small
        co["x", [2, 3, 4]] = large

    items = list(zip([0, 1], small)) + list(zip([2, 3, 4], large))
    tree_a, got = _committed(run_git, tmp_path, "stacked", stacked, variable=True)
    tree_b, _ = _committed(run_git, tmp_path, "loop", _one_by_one(items), variable=True)
    assert tree_a == tree_b
    assert got[1].shape == (3, 4) and np.array_equal(got[4], large[2])


@pytest.mark.parametrize("kind", ["random", "repeated rows", "stored before", "pending before", "compressible"])
def test_put_stack_array_stores_what_put_stack_stores(tmp_path, kind):
    data = _data(200)
    if kind == "repeated rows":
        data[7] = data[150]
    if kind == "compressible":
        data[:] = 3
        data[:, 0, 0] = np.arange(200)
    stores = []
    for name, method in (("lists", "put_stack"), ("arrays", "put_stack_array")):
        repo, co, x = _new(tmp_path, name)
        store = x.loader_view().store
        chooser = codecs.CodecChooser("auto")
        flat = byte_view(data)
        if kind in ("stored before", "pending before"):
            store.put_stack(byte_view(data[::3].copy()), len(data[::3]), data.dtype.str, SHAPE, chooser)
            if kind == "stored before":
                store.flush()
        got = getattr(store, method)(flat, len(data), data.dtype.str, SHAPE, chooser)
        want = digests_of_rows(flat, data[0].nbytes, data.dtype.str, SHAPE)
        assert [bytes(d) for d in got] == want
        assert np.array_equal(store.read(want[42], data.dtype, SHAPE), data[42])  # before the flush
        store.flush()
        stores.append({d: store.location(d)[1:] for d in want})  # (offset, length, rawlen, codec, check)
        co.close()
    assert stores[0] == stores[1]


def test_digest_array_of_rows_is_digests_of_rows():
    data = _data(9)
    flat = byte_view(data)
    arr = digest_array_of_rows(flat, data[0].nbytes, data.dtype.str, SHAPE)
    assert [row.tobytes() for row in arr] == digests_of_rows(flat, data[0].nbytes, data.dtype.str, SHAPE)


@pytest.mark.parametrize("backend", ["auto", "raw", "lz4"])
def test_encode_rows_makes_the_choices_of_encode_many(backend):
    rows = np.random.default_rng(2).integers(0, 256, size=(300, 64), dtype=np.uint8)
    rows[100:250] = 1  # compressible in the middle: auto's probes switch to LZ4 and back
    for start in (0, 17):  # the probe counter mid-way, as after an earlier add
        a, b = codecs.CodecChooser(backend), codecs.CodecChooser(backend)
        a.encode_many([memoryview(r) for r in rows[:start]])
        b.encode_many([memoryview(r) for r in rows[:start]])
        want = a.encode_many([memoryview(r) for r in rows[start:]])
        got = b.encode_rows(byte_view(rows[start:]), 64)
        if got is None:  # every row raw
            assert set(want[0]) == {codecs.RAW}
        else:
            assert got[0] == want[0] and [bytes(p) for p in got[1]] == [bytes(p) for p in want[1]]
        assert (a._count, a._auto_codec) == (b._count, b._auto_codec)
    all_raw = codecs.CodecChooser(backend).encode_rows(byte_view(rows[:64]), 64)
    assert (all_raw is None) == (backend != "lz4")


@pytest.mark.parametrize("built", [True, False])
def test_stored_check_rows_is_the_stored_check_of_each_row(built, monkeypatch):
    if built and not rowhash.available:
        pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    monkeypatch.setattr(rowhash, "available", built)
    for width in (1, 31, 784, 5000):
        rows = np.random.default_rng(width).integers(0, 256, size=(7, width), dtype=np.uint8)
        assert rowhash.stored_check_rows(rows, width).tolist() == stored_checks([r for r in rows])
    with pytest.raises(ValueError, match="not rows of 10 bytes"):
        rowhash.stored_check_rows(b"x" * 25, 10)


@pytest.mark.parametrize("built", [True, False], ids=["C-add", "python-add"])
@pytest.mark.parametrize("how", ["loop", "with"])
def test_loops_storing_several_held_stacks_commit_what_one_stacked_add_commits(tmp_path, run_git, monkeypatch, how,
                                                                               built):
    import hangar.arrayset

    if built and not rowhash.available:
        pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    # the loop's held rows copied by one C call each (rowhash.row_hold), or by the Python checks
    monkeypatch.setattr(rowhash, "available", built)
    monkeypatch.setattr(hangar.arrayset, "HOLD_MAX_SAMPLES", 40)  # 250 adds: 7 held stacks stored
    data = _data(250)

    def loop(co, x):
        if how == "with":
            with x:
                for i in range(len(data)):
                    x[i] = data[i]
        else:
            for i in range(len(data)):
                x[i] = data[i]
                if i == 100:  # a read in between stores the held rows; the next stack reuses their buffer
                    assert np.array_equal(x[100], data[100]) and len(x) == 101

    tree_a, got = _committed(run_git, tmp_path, how, loop)
    tree_b, _ = _committed(run_git, tmp_path, "stacked", lambda co, x: co.__setitem__(("x", list(range(250))), data))
    assert tree_a == tree_b
    assert all(np.array_equal(got[i], data[i]) for i in range(250))


@pytest.mark.parametrize("built", [True, False])
def test_encode_keys_of_ints_is_encode_key_of_each(built, monkeypatch):
    from hangar.records.keys import encode_key, encode_keys

    if built and not rowhash.available:
        pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    monkeypatch.setattr(rowhash, "available", built)
    for keys in ([0, 1, 9, 10, 99, 100, 2**63 - 1], [2**63, 5], [np.int64(3), 4], ["a", 1], [True, 2], []):
        assert encode_keys(list(keys)) == [encode_key(k) for k in keys]
    if built:
        with pytest.raises(ValueError, match="ascii"):
            rowhash.int_names([1], "é:")


def test_stacked_pointers_index_like_the_list_of_their_pointers():
    from hangar.records.staging import StackedPointers, StagedStack

    data = _data(7)
    digests = digest_array_of_rows(byte_view(data), data[0].nbytes, data.dtype.str, SHAPE)
    stacks = [StagedStack(["i:0", "i:1", "i:2"], digests[:3], "|u1", SHAPE),
              StagedStack(["i:3", "i:4", "i:5", "i:6"], digests[3:], "|u1", (2, 21))]
    seq = StackedPointers(stacks)
    want = stacks[0].pointers() + stacks[1].pointers()
    assert len(seq) == 7 and list(seq) == want
    assert [seq[i] for i in range(-7, 7)] == want + want
    assert seq[1:6:2] == want[1:6:2]
    for bad in (7, -8):
        with pytest.raises(IndexError):
            seq[bad]


def test_a_stack_hashed_in_two_threads_gets_the_digests_of_one_call(monkeypatch):
    from hangar.store import digest

    data = _data(1001)  # an odd count: the halves split at a multiple of 8 rows
    flat = byte_view(data)
    whole = digest_array_of_rows(flat, data[0].nbytes, data.dtype.str, SHAPE)
    monkeypatch.setattr(digest, "_SPLIT_FROM", 1)
    split = digest_array_of_rows(flat, data[0].nbytes, data.dtype.str, SHAPE)
    assert np.array_equal(whole, split)
    assert [r.tobytes() for r in split] == digests_of_rows(flat, data[0].nbytes, data.dtype.str, SHAPE)
