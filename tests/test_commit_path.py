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
    assert len(_cache_files(repo)) == 1
    img = co.arraysets["img"]
    for k in (3, 4, 29):
        del img[k]
    co.commit("deletions only")
    co.close()
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
