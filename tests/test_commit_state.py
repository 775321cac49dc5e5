"""The staging state a commit saves, and what a crash can leave of it (issue 14, W1 commit latency).

A commit no longer saves the staging state before moving its branch when the saved state is
clean (equal to its base), and the state it saves after (base: the new commit) is written and
fsynced with the records pack, then renamed into place after the branch moved without a
directory fsync. A crash (or a power loss losing those renames) can leave on disk the state
saved before the commit, or the one saved before the branch moved: a writer opened after it
must find the new commit as its base and a clean staging area. The crash points themselves
(``staging.before_next``, ``commit.before_ref``, ``commit.after_ref``) run in tests/test_crash.py.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import hangar.plumbing.gitrepo as gitrepo_mod
import hangar.plumbing.pack as pack_mod
from hangar import Repository
from hangar.core import RepositoryCore
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.paths import STAGING_FILE
from tests.repo_parts import git_of


def _state_path(repo) -> str:
    return os.path.join(repo.path, ".hangar", STAGING_FILE)


def _read_state(repo) -> bytes:
    with open(_state_path(repo), "rb") as f:
        return f.read()


def _write_state(repo, data: bytes) -> None:
    with open(_state_path(repo), "wb") as f:
        f.write(data)


def _first_commit(repo) -> str:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4,), dtype=np.uint8)
    co["x", [0, 1]] = np.arange(8, dtype=np.uint8).reshape(2, 4)
    c0 = co.commit("c0")
    co.close()
    return c0


def _reopened_writer_sees(path: str, commit: str, keys: list[int]) -> None:
    repo = Repository(path)
    co = repo.checkout(write=True)
    try:
        assert co.commit_hash == commit
        assert sorted(co.arraysets["x"].keys()) == keys
        with pytest.raises(RuntimeError, match="nothing to commit"):  # clean: based on the new head
            co.commit("nothing")
        co["x", 99] = np.full(4, 9, dtype=np.uint8)
        after = co.commit("after the crash")
    finally:
        co.close()
    assert git_of(repo).branch_head("master") == after


@pytest.mark.parametrize("lost", ["both saves", "the save after the ref"])
def test_a_commit_from_a_clean_state_recovers_when_its_state_saves_are_lost(repo, lost) -> None:
    c0 = _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", [2, 3]] = np.ones((2, 4), dtype=np.uint8)
    before = _read_state(repo)
    assert json.loads(before)["base"] == c0
    c1 = co.commit("c1")
    co.close()
    tree1 = git_of(repo).commit_tree_id(c1)
    # on disk, as after a crash that lost the renames: the state of before the commit (what a
    # clean state leaves: no save before the ref), or its tree moved on (the older save path)
    _write_state(repo, before if lost == "both saves" else
                 json.dumps({"branch": "master", "base": c0, "tree": tree1}).encode())
    _reopened_writer_sees(repo.path, c1, [0, 1, 2, 3])


def test_a_commit_from_a_flushed_state_saves_its_tree_before_the_ref_and_recovers(repo, monkeypatch) -> None:
    c0 = _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", 2] = np.ones(4, dtype=np.uint8)
    co.close()  # flushes: the saved staging state holds a tree other than its base's
    flushed = json.loads(_read_state(repo))
    assert flushed["base"] == c0 and flushed["tree"] != git_of(repo).commit_tree_id(c0)
    co = repo.checkout(write=True)
    co["x", 3] = np.ones(4, dtype=np.uint8)
    order: list[tuple[str, bytes]] = []
    real_save, real_set = RepositoryCore.save_staging_state, GitRepo.set_branch

    def save(core, state):
        order.append(("save", _read_state(repo)))
        real_save(core, state)

    def set_branch(git, *args):
        order.append(("ref", _read_state(repo)))  # the state on disk when the branch moves
        real_set(git, *args)

    monkeypatch.setattr(RepositoryCore, "save_staging_state", save)
    monkeypatch.setattr(GitRepo, "set_branch", set_branch)
    c1 = co.commit("c1")
    monkeypatch.undo()
    assert [k for k, _ in order] == ["save", "ref"]  # the new tree is saved, then the branch moves
    at_ref = json.loads(order[1][1])
    assert at_ref == {"branch": "master", "base": c0, "tree": git_of(repo).commit_tree_id(c1)}
    co.close()
    # a crash after the ref, before the state after it reached the disk: the state saved before the ref
    _write_state(repo, order[1][1])
    _reopened_writer_sees(repo.path, c1, [0, 1, 2, 3])


def test_a_commit_from_a_clean_state_saves_no_state_before_the_ref(repo, monkeypatch) -> None:
    _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", [2, 3]] = np.ones((2, 4), dtype=np.uint8)
    saves: list[object] = []
    monkeypatch.setattr(RepositoryCore, "save_staging_state", lambda core, state: saves.append(state))
    c1 = co.commit("c1")
    monkeypatch.undo()
    assert saves == []
    assert json.loads(_read_state(repo)) == {"branch": "master", "base": c1,
                                             "tree": git_of(repo).commit_tree_id(c1)}
    assert not os.path.exists(_state_path(repo) + ".next.tmp")
    co.close()


def test_the_state_after_the_ref_is_fsynced_with_the_records_pack(repo, monkeypatch) -> None:
    _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", 2] = np.ones(4, dtype=np.uint8)
    synced: list[list[str]] = []
    real = pack_mod.fsync_many

    def recording(fds):
        synced.append([os.readlink(f"/proc/self/fd/{fd}") for fd in fds])
        return real(fds)

    monkeypatch.setattr(pack_mod, "fsync_many", recording)
    c1 = co.commit("c1")
    monkeypatch.undo()
    co.close()
    assert len(synced) == 1
    names = [os.path.basename(p) for p in synced[0]]
    assert STAGING_FILE + ".next.tmp" in names and any(n.startswith("tmp_pack-") for n in names), names
    assert json.loads(_read_state(repo))["base"] == c1


def test_a_failed_ref_move_leaves_the_state_and_no_next_state_file(repo, monkeypatch) -> None:
    c0 = _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", 2] = np.ones(4, dtype=np.uint8)
    before = _read_state(repo)

    def refuse(git, *args):
        raise OSError(28, "No space left on device (test)")

    monkeypatch.setattr(GitRepo, "set_branch", refuse)
    with pytest.raises(OSError, match="test"):
        co.commit("never")
    monkeypatch.undo()
    assert _read_state(repo) == before
    assert not os.path.exists(_state_path(repo) + ".next.tmp")
    assert git_of(repo).branch_head("master") == c0
    co.close()


# ------------------------------------------------------ the records pack written as it is built
def _pack_files(repo) -> list[str]:
    return sorted(os.listdir(os.path.join(repo.path, ".hangar", "objects", "pack")))


def _fsck(repo) -> None:
    out = subprocess.run(["git", "--git-dir", os.path.join(repo.path, ".hangar"), "fsck", "--strict", "--full"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "error" not in out.stderr.lower(), out.stderr


def _staged_spills(monkeypatch) -> list[tuple[int, int]]:
    """(bytes spilled, blocks spilled) of each records pack a commit stages."""
    seen: list[tuple[int, int]] = []
    real = gitrepo_mod.stage_pack

    def recording(pack_dir, objects, blocks=(), sync_with=(), spill=None):
        seen.append((spill.pos, len(spill.blocks)) if spill is not None else (0, 0))
        return real(pack_dir, objects, blocks, sync_with, spill)

    monkeypatch.setattr(gitrepo_mod, "stage_pack", recording)
    return seen


@pytest.mark.parametrize("repeats", [False, True])
def test_a_commit_writes_its_records_pack_as_it_builds_it(repo, monkeypatch, repeats) -> None:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4,), dtype=np.uint8)
    n = 3000
    data = np.random.default_rng(5).integers(0, 256, (n, 4), dtype=np.uint8)
    if repeats:  # equal samples: equal pointer blobs, a repeated id among the spilled rows
        data[n // 2:] = data[: n - n // 2]
    co["x", list(range(n))] = data
    seen = _staged_spills(monkeypatch)
    taken: list[str] = []
    real_take = pack_mod.PackSpill.take
    monkeypatch.setattr(pack_mod.PackSpill, "take", lambda spill: (taken.append(spill.path), real_take(spill))[1])
    c1 = co.commit("c1")
    monkeypatch.undo()
    # the spill becomes the pack, or (a repeated id among its rows) the pack is written anew
    assert len(taken) == (0 if repeats else 1)
    assert len(seen) == 1 and seen[0][1] >= 1 and seen[0][0] > 12 + n * 80, seen  # pointer blobs spilled
    assert not [f for f in _pack_files(repo) if f.startswith("tmp_")]
    _fsck(repo)
    co.close()
    reader = repo.checkout(commit=c1)
    assert np.array_equal(reader["x", n - 1], data[n - 1]) and len(reader.arraysets["x"]) == n
    reader.close()


def test_a_commit_that_stops_leaves_no_spilled_pack(repo) -> None:
    _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", list(range(10, 510))] = np.ones((500, 4), dtype=np.uint8)
    other = RepositoryCore(repo.path).git
    head = other.branch_head("master")
    before = _pack_files(repo)
    # the branch moved under the checkout (as a push would): the commit refuses after building
    co2_commit = git_of(repo).commit_data(git_of(repo).commit_tree_id(head), [head], "a", "a@b.c", "moved")
    batch = pack_mod.ObjectBatch()
    moved = batch.add(pack_mod.OBJ_COMMIT, co2_commit)
    pack_mod.write_pack(os.path.join(repo.path, ".hangar", "objects", "pack"), batch.objects, batch.blocks)
    other.set_branch("master", moved.hex())
    with pytest.raises(RuntimeError, match="moved"):
        co.commit("refused")
    new = [f for f in _pack_files(repo) if f not in before]
    assert not [f for f in new if f.startswith("tmp_")], new
    co.reset_staging_area()


def test_two_commits_after_a_flushed_state_recover_when_their_unsynced_state_renames_are_lost(repo) -> None:
    # found by review: the state a commit publishes after the ref is renamed without a directory
    # fsync, so what the disk durably holds can be the state the *first* of two commits saved
    # before its ref (base c0, tree of c1: a flush had left staged changes), while the branch is
    # at the second commit, whose tree differs. That tree is committed (c1), nothing is staged:
    # a writer opened after such a crash must start clean on the head, not refuse the checkout
    c0 = _first_commit(repo)
    co = repo.checkout(write=True)
    co["x", 2] = np.ones(4, dtype=np.uint8)
    co.close()  # flushed: the saved state holds a tree other than its base's
    co = repo.checkout(write=True)
    co["x", 3] = np.ones(4, dtype=np.uint8)
    c1 = co.commit("c1")  # from the flushed state: (c0, tree of c1) saved durably before the ref
    co["x", 4] = np.ones(4, dtype=np.uint8)
    c2 = co.commit("c2")  # from a clean state: nothing saved before the ref
    co.close()
    tree1 = git_of(repo).commit_tree_id(c1)
    assert tree1 != git_of(repo).commit_tree_id(c2)
    # on disk after a crash that lost both renames after the refs (no fsync of their directory)
    _write_state(repo, json.dumps({"branch": "master", "base": c0, "tree": tree1}).encode())
    _reopened_writer_sees(repo.path, c2, [0, 1, 2, 3, 4])


def test_a_spill_stopped_by_a_failed_write_back_leaves_no_bytes_past_the_pack(repo, monkeypatch) -> None:
    # found by review: a spilled block whose write-back start failed was written all the same
    # (pwrite, then sync_file_range raising); the pack, completed from the last good block on,
    # is shorter than those bytes when the rest of the blocks hold repeats (equal pointer blobs
    # of equal samples), so the file kept stale bytes past the pack's trailing checksum: the
    # published pack was unreadable and the commit failed at the ref ("target OID ... doesn't exist")
    co = repo.checkout(write=True)
    n = 3000
    data = np.random.default_rng(7).integers(0, 256, (n, 4), dtype=np.uint8)
    for name, values in (("a", data), ("b", np.zeros_like(data))):  # b: 3000 equal pointer blobs
        co.arraysets.init_arrayset(name, shape=(4,), dtype=np.uint8)
        co[name, list(range(n))] = values
    sizes: list[int] = []
    real = pack_mod.start_writeback

    def failing_on_b(fd, offset, length):
        sizes.append(length)
        if len(sizes) > 1 and length == sizes[0]:  # b's pointer blobs: as many as a's, as long
            raise OSError(5, "Input/output error (test)")
        return real(fd, offset, length)

    monkeypatch.setattr(pack_mod, "start_writeback", failing_on_b)
    c1 = co.commit("c1")
    monkeypatch.undo()
    co.close()
    assert sizes.count(sizes[0]) == 2, sizes  # the failure happened, on b's block
    _fsck(repo)
    reader = repo.checkout(commit=c1)
    assert np.array_equal(reader["a", n - 1], data[n - 1]) and np.array_equal(reader["b", 5], np.zeros(4, np.uint8))
    reader.close()
