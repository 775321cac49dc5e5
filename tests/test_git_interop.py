"""Records are real git: the git binary reads, verifies and lists them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hangar.plumbing.pack import OBJ_BLOB, OBJ_TREE, ObjectBatch, write_pack
from hangar.plumbing.trees import MODE_BLOB, MODE_TREE, serialize_tree


@pytest.mark.slow
def test_fsck_strict_is_clean_and_log_shows_author(aset_repo, run_git):
    co = aset_repo.checkout(write=True)
    co["foo", 100] = np.zeros(5, np.int64)
    co.commit("second\n\nwith a body")
    co.close()
    fsck = run_git(aset_repo, "fsck", "--strict", "--full")
    assert fsck.returncode == 0, fsck.stderr
    assert fsck.stdout == "" and "error" not in fsck.stderr
    log = run_git(aset_repo, "log", "--graph", "--all", "--format=%an <%ae> %s").stdout.splitlines()
    assert log == ["* Test User <test@example.com> second", "* Test User <test@example.com> first commit"]


def test_ls_tree_shows_one_pointer_blob_per_sample(aset_repo, run_git):
    lines = run_git(aset_repo, "ls-tree", "-r", "master").stdout.splitlines()
    foo = [ln for ln in lines if "\tarraysets/foo/samples/" in ln]
    bar = [ln for ln in lines if "\tarraysets/bar/samples/" in ln]
    assert len(foo) == 10 and len(bar) == 10
    assert {ln.split("/")[-1] for ln in foo} == {f"i:{i}" for i in range(10)}
    assert {ln.split("/")[-1] for ln in bar} == {f"s:{i}" for i in range(10)}
    # fanned out three levels deep: arraysets/foo/samples/h/h/h/key
    assert all(len(ln.split("\t")[1].split("/")) == 7 for ln in foo)
    blob = foo[0].split()[2]
    pointer = run_git(aset_repo, "cat-file", "-p", blob).stdout
    assert pointer.startswith("blake3:") and pointer.split()[1] == "<i8" and pointer.split()[2] == "5"
    schema = run_git(aset_repo, "cat-file", "-p", "master:arraysets/foo/schema").stdout
    assert '"name": "foo"' in schema
    assert run_git(aset_repo, "cat-file", "-p", "master:metadata").returncode == 0


@pytest.mark.slow
def test_commits_write_packs_not_loose_objects(repo, run_git):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int32)
    for i in range(2000):
        a[i] = np.full(4, i, np.int32)
    co.commit("2000 samples")
    co.close()
    counts = dict(line.split(": ") for line in run_git(repo, "count-objects", "-v").stdout.splitlines())
    assert int(counts["count"]) <= 2  # the commit object (and nothing per sample) is loose
    assert int(counts["in-pack"]) > 2000
    pack_dir = os.path.join(repo.path, ".hangar", "objects", "pack")
    verify = run_git(repo, "verify-pack", "-v",
                     *[os.path.join(pack_dir, p) for p in os.listdir(pack_dir) if p.endswith(".idx")])
    assert verify.returncode == 0, verify.stderr


def test_identical_samples_share_one_pointer_blob(repo, run_git):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.int32)
    for i in range(5):
        a[i] = np.ones(3, np.int32)
    co.commit("five equal samples")
    co.close()
    blobs = {ln.split()[2] for ln in run_git(repo, "ls-tree", "-r", "master").stdout.splitlines()
             if "/samples/" in ln}
    assert len(blobs) == 1


@pytest.mark.slow
def test_small_change_rewrites_few_trees(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(1,), dtype=np.uint8)
    for i in range(20000):
        a[i] = np.array([i % 256], np.uint8)
    co.commit("base")
    for i in range(10):
        a[i] = np.array([255 - i], np.uint8)
    _, batch = co._staging.build()
    trees = sum(1 for t, _ in batch.objects.values() if t == OBJ_TREE)
    assert trees <= 10 * 3 + 16 + 3  # leaf + two fan levels per change, plus the top
    co.commit("ten changes")
    co.close()


def test_pack_writer_output_is_accepted_by_git(tmp_path):
    import subprocess

    git_dir = tmp_path / "g.git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    batch = ObjectBatch()
    big = os.urandom(200_000)  # needs several stored-deflate blocks
    b1 = batch.add(OBJ_BLOB, b"hello\n")
    b2 = batch.add(OBJ_BLOB, big)
    t = batch.add(OBJ_TREE, serialize_tree({"a.txt": (MODE_BLOB, b1), "big": (MODE_BLOB, b2)}))
    root = batch.add(OBJ_TREE, serialize_tree({"dir": (MODE_TREE, t), "dir.txt": (MODE_BLOB, b1)}))
    write_pack(str(git_dir / "objects" / "pack"), batch.objects)
    env = {**os.environ, "GIT_DIR": str(git_dir)}
    out = subprocess.run(["git", "ls-tree", "-r", root.hex()], env=env, capture_output=True, text=True, check=True)
    assert [ln.split("\t")[1] for ln in out.stdout.splitlines()] == ["dir.txt", "dir/a.txt", "dir/big"]
    assert subprocess.run(["git", "cat-file", "-p", b2.hex()], env=env, capture_output=True,
                          check=True).stdout == big
    fsck = subprocess.run(["git", "fsck", "--strict", "--full", "--unreachable"], env=env, capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stderr


@pytest.mark.slow
def test_many_commits_keep_few_packs_and_file_descriptors(repo, run_git):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)
    for i in range(200):
        a[i] = np.full(2, i, np.int64)
        co.commit(f"commit {i}")
    co.close()
    pack_dir = os.path.join(repo.path, ".hangar", "objects", "pack")
    assert len([p for p in os.listdir(pack_dir) if p.endswith(".idx")]) <= 65
    fsck = run_git(repo, "fsck", "--strict", "--full")
    assert fsck.returncode == 0, fsck.stderr
    r = repo.checkout()
    assert [r["a", i][0] for i in range(200)] == list(range(200))  # 200 data packs, at most 64 open
    assert len(repo.log(return_contents=True)["order"]) == 200
    r.close()
    ours = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            ours += os.readlink(f"/proc/self/fd/{fd}").startswith(repo.path)
        except OSError:
            pass
    assert ours <= 64 + 64 + 8  # data packs are one per commit too: at most 64 of each kind stay open
