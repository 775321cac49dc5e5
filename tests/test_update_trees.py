"""Updates of an arrayset that had samples build its fan-out tree a level per call (issue 14).

``trees.update_fanout_tree`` (the touched leaves merged, each directory level hashed in one call)
must give the tree the edit-by-edit path (``trees.apply_edits`` over nested dicts) gives: same
commit trees for random sets, replacements and deletions, including deletions that empty leaves
and directories, at several fan-out depths; a samples tree not of the fan-out form takes the
edit-by-edit path.
"""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

import hangar.records.staging as staging
from hangar import Repository


def _tree(path, commit: str) -> str:
    """The tree id of ``commit``, as git reads it."""
    return subprocess.run(["git", "--git-dir", str(path / ".hangar"), "rev-parse", commit + "^{tree}"],
                          check=True, capture_output=True, text=True).stdout.strip()


def _history(path, depth: int, seed: int) -> list[str]:
    """Commit trees of a random arrayset history: a first add, then rounds of sets and deletions."""
    rng = np.random.default_rng(seed)
    path.mkdir()
    repo = Repository(str(path), exists=False)
    repo.init("t", "t@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(3,), dtype=np.uint8)
    st = co._staging.asets["x"]  # the API has no fan-out depth: set as test_bulk_records does
    st.schema = dataclasses.replace(st.schema, fanout_depth=depth)
    co["x", list(range(300))] = rng.integers(0, 256, (300, 3), dtype=np.uint8)
    trees = [_tree(path, co.commit("first"))]
    live = set(range(300))
    for r in range(4):
        a = co.arraysets["x"]
        if r == 3:  # all but a few gone: leaves and directories left empty
            for k in sorted(live)[3:]:
                del a[k]
            live = set(sorted(live)[:3])
        else:
            for k in rng.choice(400, size=40, replace=False).tolist():
                if k in live and rng.random() < 0.4:
                    del a[k]
                    live.discard(k)
                else:
                    a[k] = rng.integers(0, 256, 3, dtype=np.uint8)
                    live.add(k)
        trees.append(_tree(path, co.commit(f"round {r}")))
    co.close()
    return trees


@pytest.mark.slow  # ~0.8-1.4 s each on the shared box: two histories of five commits
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_level_builds_equal_edit_by_edit_trees(tmp_path, monkeypatch, depth) -> None:
    fast = _history(tmp_path / "a", depth, depth)
    assert len(set(fast)) == len(fast)
    calls = []
    real = staging.update_fanout_tree

    def edit_by_edit(*args):  # count the calls, then take the other path
        calls.append(real(*args)[0])
        return False, None

    monkeypatch.setattr(staging, "update_fanout_tree", edit_by_edit)
    slow = _history(tmp_path / "b", depth, depth)
    assert calls and all(calls)  # the level path was taken for every update
    assert fast == slow
    git_dir = tmp_path / "a" / ".hangar"
    subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--strict"], check=True, capture_output=True)


def test_a_tree_not_of_the_fan_out_form_is_left_to_the_edit_by_edit_path(tmp_path) -> None:
    """A directory level holding a blob (a crafted or foreign record) is declined: (False, None), nothing
    added to the batch."""
    import pygit2

    from hangar.plumbing.pack import OBJ_BLOB, ObjectBatch, write_pack
    from hangar.plumbing.trees import LeafEdits, serialize_tree, update_fanout_tree

    repo = pygit2.init_repository(str(tmp_path / "g.git"), bare=True)
    batch = ObjectBatch()
    blob = batch.add(OBJ_BLOB, b"x")
    leaf = batch.add(2, serialize_tree({"a": (0o100644, blob)}))
    top = batch.add(2, serialize_tree({"0": (0o040000, leaf), "README": (0o100644, blob)}))
    write_pack(str(tmp_path / "g.git" / "objects" / "pack"), batch.objects)
    base = repo[pygit2.Oid(raw=top)]
    out = ObjectBatch()
    edit = LeafEdits(b"100644 b\0" + blob, [])
    assert update_fanout_tree(repo, base, [edit], np.array([[0]]), out) == (False, None)
    assert len(out) == 0
    # the same edit over a tree of the fan-out form is applied
    good = batch.add(2, serialize_tree({"0": (0o040000, leaf)}))
    write_pack(str(tmp_path / "g.git" / "objects" / "pack"), batch.objects)
    done, root = update_fanout_tree(repo, repo[pygit2.Oid(raw=good)], [edit], np.array([[0]]), out)
    assert done and root is not None and len(out) == 2  # the new leaf and the new top tree
