"""The commit path (issue 14): the location tables a commit leaves, built beside its records.

The commit builds the tables of the arraysets it changes in the thread that waits for the data
pack's fsyncs, from the same staged columns as its trees (``StagedSamples.columns``). These
tests check what a reader of the new commit finds: a table equal to a full build from the
committed pointers, for the cases where the staged columns differ from a plain list of adds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from tests.repo_parts import store_of


@pytest.fixture(autouse=True)
def readers_never_build(monkeypatch):
    """A reader of these small arraysets would not build a table of its own: any table found
    was left by the commit."""
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 1 << 30)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 1.0)


def _cache_files(repo: Repository) -> list[str]:
    d = os.path.join(repo.path, ".hangar", "cache", "readtables")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _assert_table_is_a_full_build(repo: Repository, name: str) -> list:
    """The table a fresh Repository finds for ``name`` at the branch head equals a full build
    from the committed pointers; returns its int keys."""
    fresh = Repository(repo.path)
    store = store_of(fresh)
    with fresh.checkout() as co:
        a = co.arraysets[name]
        table = store.cached_table(a._table.tree_key())
        assert table is not None, f"the commit left no table for {name!r}"
        full = type(table).build(a._table.entries(), store.locate_durable)
        assert table.ikeys.tolist() == full.ikeys.tolist() and table.snames == full.snames
        for col in ("digests", "shapes", "offsets", "lengths", "rawlens", "codecs", "checks"):
            np.testing.assert_array_equal(getattr(table, col), getattr(full, col))
        assert [table.packs[i] for i in table.pack_col] == [full.packs[i] for i in full.pack_col]
        return table.ikeys.tolist()


def test_a_new_arrayset_with_staged_deletions_gets_a_table_without_them(repo):
    """Adds, deletions and re-adds staged before the first commit of an arrayset: the table
    (built from the staged columns, deletions masked out) holds exactly the live samples."""
    rng = np.random.default_rng(11)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("img", shape=(3, 2), dtype=np.uint8)
    data = rng.integers(0, 256, size=(40, 3, 2), dtype=np.uint8)
    co["img", list(range(40))] = data
    img = co.arraysets["img"]
    for k in (0, 7, 39):
        del img[k]
    img[7] = np.full((3, 2), 77, dtype=np.uint8)  # deleted, then added again
    co.commit("first")
    co.close()
    keys = _assert_table_is_a_full_build(repo, "img")
    assert keys == [k for k in range(40) if k not in (0, 39)]
    with Repository(repo.path).checkout() as rd:
        got = rd.arraysets["img"].get_batch([7, 8, 38])
    np.testing.assert_array_equal(got[0], np.full((3, 2), 77, dtype=np.uint8))
    np.testing.assert_array_equal(got[1], data[8])
    np.testing.assert_array_equal(got[2], data[38])


def test_a_commit_that_writes_no_sample_data_still_leaves_its_table(repo):
    """A commit of deletions only has no data to flush (the tables are then built in the
    commit's own thread): the derived table of the child commit is still left."""
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("img", shape=(4,), dtype=np.int16)
    co["img", list(range(30))] = np.arange(120, dtype=np.int16).reshape(30, 4)
    co.commit("first")
    co._session.store.wait_saved()  # the table file is written in a thread (TensorStore.keep_table)
    assert len(_cache_files(repo)) == 1
    img = co.arraysets["img"]
    for k in (3, 4, 29):
        del img[k]
    co.commit("deletions only")
    co.close()  # waits for the table file
    assert len(_cache_files(repo)) == 2
    assert _assert_table_is_a_full_build(repo, "img") == [k for k in range(30) if k not in (3, 4, 29)]



def test_the_commit_object_is_written_in_the_records_pack_and_git_reads_it(repo, run_git):
    """The commit object goes into the pack with the commit's trees (no loose object, whose file
    and directory cost two more fsyncs); git reads it as a commit libgit2 would have written:
    fsck --strict clean, author, parent and a non-ascii message as given."""
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("img", shape=(2,), dtype=np.uint8)
    co["img", [0, 1]] = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    first = co.commit("first")
    co.arraysets["img"][2] = np.array([5, 6], dtype=np.uint8)
    second = co.commit("zweite Änderung\n\nmit Text")
    co.close()
    objects = os.path.join(repo.path, ".hangar", "objects")
    loose = [d for d in os.listdir(objects) if len(d) == 2 and os.listdir(os.path.join(objects, d))]
    assert loose == []
    fsck = run_git(repo, "fsck", "--strict", "--full")
    assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck.stderr
    log = run_git(repo, "log", "--format=%H %P|%an <%ae>|%B", "master")
    assert log.returncode == 0, log.stderr
    lines = log.stdout.split("\n")
    assert lines[0] == f"{second} {first}|Test User <test@example.com>|zweite Änderung"
    assert lines[2] == "mit Text"
    assert repo.log(return_contents=True)["order"] == [second, first]



def test_a_new_arrayset_whose_staged_samples_are_all_deleted_commits_no_samples_tree(repo, run_git):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(2,), dtype=np.uint8)
    co.arraysets.init_arrayset("y", shape=(2,), dtype=np.uint8)
    co["x", list(range(40))] = np.zeros((40, 2), np.uint8)
    co["y", [0]] = np.ones((1, 2), np.uint8)
    x = co.arraysets["x"]
    for i in range(40):
        del x[i]
    co.commit("x emptied before its first commit")
    co.close()
    listed = run_git(repo, "ls-tree", "-r", "--name-only", "master").stdout.split()
    assert not [p for p in listed if p.startswith("arraysets/x/samples")]
    assert len([p for p in listed if p.startswith("arraysets/y/samples/")]) == 1
    with repo.checkout() as r:
        assert len(r.arraysets["x"]) == 0 and list(r.arraysets["y"].keys()) == [0]


@pytest.mark.parametrize("case", ["plain", "repeats", "stored before"])
def test_a_stacked_add_gets_its_table_from_the_flushed_records(repo, case):
    """New samples added as one stack are located from the records their flush just wrote (no
    index search), repeats inside the stack too; a sample stored by an earlier commit sends the
    table to the search. Each way the table equals a full build."""
    data = np.random.default_rng(12).integers(0, 256, size=(300, 5), dtype=np.uint8)
    co = repo.checkout(write=True)
    if case == "repeats":
        data[10] = data[200]
        data[299] = data[3]
        data[150] = data[149]
    if case == "stored before":
        co.arraysets.init_arrayset("old", shape=(5,), dtype=np.uint8)
        co["old", [0]] = data[7:8]
        co.commit("earlier")
    co.arraysets.init_arrayset("x", shape=(5,), dtype=np.uint8)
    co["x", list(range(300))] = data
    co.commit("stack")
    co.close()
    assert _assert_table_is_a_full_build(repo, "x") == list(range(300))
    with Repository(repo.path).checkout() as rd:
        np.testing.assert_array_equal(rd.arraysets["x"].get_batch(list(range(300))), data)


def test_take_flushed_columns_is_locate_columns_once_and_only_for_the_flushed_samples(repo):
    from hangar.store.codecs import CodecChooser

    store = store_of(repo)
    rows = [memoryview(np.full(7, i, dtype=np.uint8).tobytes()) for i in range(20)]
    digests = [bytes([i]) * 32 for i in range(20)]  # any 32 bytes name a sample to the store
    store.put_many(digests, rows, CodecChooser("raw"))
    assert store.flush() is not None
    want = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    assert store.take_flushed_columns(want[::-1].copy()) is None  # not the flushed order
    store.put_many(digests[:3], rows[:3], CodecChooser("raw"))  # stored already: nothing to flush
    assert store.flush() is None
    assert store.take_flushed_columns(want) is None  # taken (or refused) once per flush
    store.put_many([b"\xee" * 32], [rows[0]], CodecChooser("raw"))
    store.flush()
    one = np.frombuffer(b"\xee" * 32, dtype=np.uint8).reshape(1, 32)
    got, expected = store.take_flushed_columns(one), store.locate_columns(one)
    assert got is not None and got[0] == expected[0]
    for a, b in zip(got[1:], expected[1:]):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_a_commit_whose_ref_moved_is_reported_as_done_when_keeping_its_tables_fails(tmp_path, monkeypatch):
    """The location tables are kept after the branch moved (a cache): a failure there (here the
    process cannot start the thread that saves a table, as when it runs out of threads) must not
    turn a durable commit into an exception. Before, ``commit`` raised RuntimeError although the
    branch already pointed at the new commit; now it returns the hash with a RuntimeWarning."""
    import threading

    repo = Repository(tmp_path, exists=False)
    repo.init("a", "a@example.com")
    start = threading.Thread.start

    def refuse_table_saves(self):
        if self.name == "hangar-table-save":
            raise RuntimeError("can't start new thread")
        return start(self)

    co = repo.checkout(write=True)
    try:
        a = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
        a["0"] = np.zeros(4, np.float32)
        co.commit("one")
        for i in range(1, 8):
            a[str(i)] = np.full(4, i, np.float32)
        monkeypatch.setattr(threading.Thread, "start", refuse_table_saves)
        with pytest.warns(RuntimeWarning, match="location tables"):
            commit = co.commit("eight")
        monkeypatch.setattr(threading.Thread, "start", start)
        a["8"] = np.full(4, 8, np.float32)  # the checkout goes on from the new commit
        second = co.commit("nine")
    finally:
        co.close()
    fresh = Repository(tmp_path)
    assert fresh.log(return_contents=True)["order"][:2] == [second, commit]
    with fresh.checkout() as co:
        assert float(co.arraysets["x"]["7"][0]) == 7.0 and len(co.arraysets["x"]) == 9
