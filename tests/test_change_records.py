"""Change records (hangar.records.changes): a diff read from a kept record equals the tree walk.

Each test builds a small history on real git, diffs it once by walking the trees (which keeps
the records) and again from the records, and compares the two results entry by entry and in
order; damaged or foreign records must be ignored.
"""

from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest

from hangar import Repository
from hangar.diff import diff_commits
from hangar.records import changes
from tests.repo_parts import git_of


def _records_dir(repo: Repository) -> str:
    return os.path.join(git_of(repo).git_dir, "hangar-changes")


def _flat(res) -> list:
    """Everything a diff reports, in order (dict order included), values read."""
    out = []
    for part in (*res.diff, *res.conflict[:4]):
        for kind in part:
            out.append([(k, tuple(v) if v is not None else None) for k, v in kind.items()])
    out.append(res.conflict.conflict)
    return out


def _random_edit(repo: Repository, branch: str, rng: random.Random, gen: int) -> str:
    co = repo.checkout(write=True, branch=branch)
    try:
        names = list(co.arraysets.keys())
        roll = rng.random()
        if roll < 0.15 and names:
            del co.arraysets[rng.choice(names)]
        elif roll < 0.3:
            name = rng.choice(["y", "z"])
            if name in co.arraysets:
                del co.arraysets[name]
            co.arraysets.init_arrayset(name, shape=(2,), dtype=np.uint8)
            n = rng.randrange(1, 40)
            co[name, list(range(n))] = np.full((n, 2), gen, np.uint8)
        for name in co.arraysets.keys():
            aset = co.arraysets[name]
            for _ in range(rng.randrange(0, 30)):
                k = rng.choice([rng.randrange(300), f"s{rng.randrange(20)}"])
                if rng.random() < 0.3 and k in aset:
                    del aset[k]
                else:
                    aset[k] = np.array([gen, rng.randrange(3)], np.uint8)
        for _ in range(rng.randrange(0, 4)):
            key = f"m{rng.randrange(6)}"
            if rng.random() < 0.3 and key in co.metadata:
                del co.metadata[key]
            else:
                co.metadata[key] = f"v{rng.randrange(3)}"
        co.metadata["both"] = f"{branch}{gen}"  # both branches change it: the merge conflicts
        return co.commit(f"edit {gen}")
    finally:
        co.close()


def _history(repo: Repository, seed: int) -> list[str]:
    rng = random.Random(seed)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(2,), dtype=np.uint8)
    co["x", list(range(300))] = np.zeros((300, 2), np.uint8)
    co.metadata["m0"] = "v0"
    base = co.commit("base")
    co.close()
    repo.create_branch("dev")
    heads = [base]
    for gen in range(1, 5):
        branch = "master" if gen % 2 else "dev"
        heads.append(_random_edit(repo, branch, rng, gen))
    return heads


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in range(1, 4))])
def test_diffs_from_records_equal_the_tree_walk(repo, seed) -> None:
    heads = _history(repo, seed)
    git = git_of(repo)
    pairs = [(a, b) for a in heads for b in heads if a != b]
    walked = {}
    for a, b in pairs:
        shutil.rmtree(_records_dir(repo), ignore_errors=True)
        walked[a, b] = _flat(diff_commits(git, a, b))
    assert any(w[-1] for w in walked.values()), "the history diverged: some diffs list conflicts"
    shutil.rmtree(_records_dir(repo), ignore_errors=True)
    for a, b in pairs:  # the first diff of each pair walks and keeps records, later ones read them
        for _ in range(2):
            assert _flat(diff_commits(git, a, b)) == walked[a, b]
    parent_child = [(heads[i], heads[i + 1]) for i in range(len(heads) - 1)]
    for a, b in parent_child:
        ta, tb = (bytes.fromhex(git.commit_tree_id(c)) for c in (a, b))
        if ta != tb and git.is_ancestor(a, b):
            assert os.path.exists(changes.record_path(git.git_dir, ta, tb))


def test_damaged_or_foreign_records_are_ignored(repo, run_git) -> None:
    heads = _history(repo, 7)
    git = git_of(repo)
    a, b, c = heads[0], heads[1], heads[3]  # master's line: base -> edit 1 -> edit 3
    want_ab, want_ac = _flat(diff_commits(git, a, b)), _flat(diff_commits(git, a, c))
    ta, tb, tc = (bytes.fromhex(git.commit_tree_id(x)) for x in (a, b, c))
    ab, ac = changes.record_path(git.git_dir, ta, tb), changes.record_path(git.git_dir, ta, tc)
    with open(ab, "rb") as f:
        good = f.read()
    assert changes.decode_record(good, ta, tb) is not None
    # a record of another pair of trees, whole and digest-valid, is not taken for this pair
    with open(ac, "wb") as f:
        f.write(good)
    assert changes.load_record(git.git_dir, ta, tc) is None
    assert _flat(diff_commits(git, a, c)) == want_ac
    # torn, truncated, flipped
    for bad in (good[: len(good) // 2], good[:-1], good[:40] + bytes([good[40] ^ 1]) + good[41:], b""):
        with open(ab, "wb") as f:
            f.write(bad)
        assert changes.load_record(git.git_dir, ta, tb) is None
        assert _flat(diff_commits(git, a, b)) == want_ab
    # plain git does not mind the records directory
    assert os.listdir(_records_dir(repo))
    res = run_git(repo, "fsck", "--strict")
    assert res.returncode == 0, res.stderr


def test_tables_of_other_trees_in_a_record_are_not_used(repo) -> None:
    """A record only answers for the table ids it names: tables of a record written under these
    roots but computed from other tables change nothing."""
    heads = _history(repo, 3)
    git = git_of(repo)
    a, b = heads[0], heads[1]
    want = _flat(diff_commits(git, a, b))
    ta, tb = (bytes.fromhex(git.commit_tree_id(x)) for x in (a, b))
    other = os.urandom(20)
    forged = {(other, other, 0): {"i:1": (other, None)}}
    assert changes.save_record(git.git_dir, ta, tb, forged)
    assert _flat(diff_commits(git, a, b)) == want


def test_record_round_trip_keeps_absent_sides_and_order() -> None:
    x, y, t1, t2 = (bytes([i]) * 20 for i in (1, 2, 3, 4))
    tables = {(None, t1, 2): {"i:5": (None, x), "s:a": (y, None)}, (t1, t2, 0): {"s:b": (x, y)}}
    data = changes.encode_record(x, y, tables)
    assert changes.decode_record(data, x, y) == tables
    assert changes.decode_record(data, y, x) is None


def test_a_record_that_is_not_a_regular_file_is_ignored_without_reading_it(tmp_path) -> None:
    """A crafted repository (issue 12 point 7): a record symlinked to /dev/zero or replaced by a
    FIFO must neither read until out of memory nor hang; it is ignored like a damaged record."""
    a, b = bytes(range(20)), bytes(range(1, 21))
    path = changes.record_path(str(tmp_path), a, b)
    os.makedirs(os.path.dirname(path))
    os.symlink("/dev/zero", path)
    assert changes.load_record(str(tmp_path), a, b) is None
    os.unlink(path)
    os.mkfifo(path)  # no writer: a blocking open would hang
    assert changes.load_record(str(tmp_path), a, b) is None
    os.unlink(path)
    with open(path, "wb") as f:  # larger than any record this module writes
        f.truncate(changes.MAX_RECORD_BYTES + 1)
    assert changes.load_record(str(tmp_path), a, b) is None
    os.unlink(path)
    os.mkdir(path)  # a directory in its place
    assert changes.load_record(str(tmp_path), a, b) is None


def test_gc_removes_the_kept_records_and_diffs_stay_the_same(repo) -> None:
    """Records are kept per pair of trees ever diffed: gc removes them (a dry run only counts)."""
    heads = _history(repo, 3)
    git = git_of(repo)
    want = _flat(diff_commits(git, heads[0], heads[1]))  # walks and keeps a record
    kept = sum(len(f) for _, _, f in os.walk(_records_dir(repo)))
    assert kept >= 1
    assert repo.gc(dry_run=True).removed_cache_files == kept
    assert sum(len(f) for _, _, f in os.walk(_records_dir(repo))) == kept
    report = repo.gc()
    assert report.removed_cache_files == kept and "change records" in str(report)
    assert sum(len(f) for _, _, f in os.walk(_records_dir(repo))) == 0
    assert _flat(diff_commits(git, heads[0], heads[1])) == want


def test_records_of_another_version_or_with_a_nul_in_a_name_are_not_used(tmp_path) -> None:
    """Version 2 keeps a table's names NUL-separated: a name holding a NUL (no git tree entry
    can) is not kept, and a digest-valid record of version 1 is a cache miss (walked again)."""
    import hashlib

    x, y, t1 = (bytes([i]) * 20 for i in (1, 2, 3))
    assert not changes.save_record(str(tmp_path), x, y, {(t1, t1, 0): {"i:1\0i:2": (x, y)}})
    assert not os.path.exists(changes.record_path(str(tmp_path), x, y))
    tables = {(t1, None, 1): {"i:7": (x, None), "s:\u00e9": (None, y)}, (None, t1, 0): {}}
    data = changes.encode_record(x, y, tables)
    assert changes.decode_record(data, x, y) == tables
    body = b"HANGAR-CHANGES 1\n" + data[len(b"HANGAR-CHANGES 2\n"):-16]
    assert changes.decode_record(body + hashlib.blake2b(body, digest_size=16).digest(), x, y) is None
