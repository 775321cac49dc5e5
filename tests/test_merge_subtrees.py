"""3-way merges by subtree ids on full fan-out trees (issue 14).

With thousands of samples every fan-out directory holds all 16 digits, so a merge compares
and rewrites directories in place and merges a leaf changed on both sides by splicing dev's
changes into master's tree bytes. Each test checks the merged tree against the tree a writer
builds by making the same changes directly (equal ids: byte-identical canonical trees), and
that plain git accepts the result.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import MergeConflictError
from hangar.records.keys import encode_key, fan_path
from hangar.records.schema import SAMPLE_FANOUT_DEPTH
from tests.repo_parts import git_of

N = 3000


def _v(k: int, gen: int) -> np.ndarray:
    return np.array([k % 251, gen], dtype=np.uint8)


def _edit(repo: Repository, branch: str, sets: dict, dels: list) -> str:
    co = repo.checkout(write=True, branch=branch)
    try:
        x = co.arraysets["x"]
        for k, v in sets.items():
            x[k] = v
        for k in dels:
            del x[k]
        return co.commit(f"edit {branch}")
    finally:
        co.close()


def _tree(repo: Repository, commit: str) -> str:
    return git_of(repo).commit_tree_id(commit)


@pytest.fixture
def big(repo) -> Repository:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(2,), dtype=np.uint8)
    co["x", list(range(N))] = np.stack([_v(k, 0) for k in range(N)])
    co.metadata["m"] = "0"
    co.commit("base")
    co.close()
    repo.create_branch("dev")
    repo.create_branch("expect")
    return repo


def _leaves() -> dict:
    out = defaultdict(list)
    for k in range(N):
        out[fan_path(encode_key(k), SAMPLE_FANOUT_DEPTH)].append(k)
    return out


def _merge_and_expect(repo: Repository, master: tuple, dev: tuple, strategy=None) -> str:
    """Edit master and dev from the base, merge dev into master; ``expect`` gets both edits directly."""
    _edit(repo, "master", *master)
    _edit(repo, "dev", *dev)
    head = repo.merge("merge", "master", "dev", strategy=strategy)
    return head


def test_disjoint_changes_merge_to_the_directly_built_tree(big, run_git) -> None:
    rng = np.random.default_rng(1)
    keys = rng.permutation(N).tolist()
    m_set = {k: _v(k, 1) for k in keys[:300]}
    d_set = {k: _v(k, 2) for k in keys[300:600]}
    d_del = keys[600:650]
    m_del = keys[650:700]
    m_add = {N + i: _v(i, 3) for i in range(40)}
    d_add = {N + 100 + i: _v(i, 4) for i in range(40)}
    head = _merge_and_expect(big, ({**m_set, **m_add}, m_del), ({**d_set, **d_add}, d_del))
    expect = _edit(big, "expect", {**m_set, **m_add, **d_set, **d_add}, m_del + d_del)
    assert git_of(big).commit_info(head).parents[1] == git_of(big).branch_head("dev")
    assert _tree(big, head) == _tree(big, expect)
    fsck = run_git(big, "fsck", "--strict", "--full")
    assert fsck.returncode == 0, fsck.stderr
    with big.checkout(branch="master") as co:
        x = co.arraysets["x"]
        assert x[keys[0]].tolist() == [keys[0] % 251, 1] and x[keys[300]].tolist() == [keys[300] % 251, 2]
        assert keys[600] not in x and keys[650] not in x and N + 100 in x


def test_dev_empties_a_leaf_and_a_directory_master_also_changed(big, run_git) -> None:
    leaves = _leaves()
    path, gone = next((p, ks) for p, ks in sorted(leaves.items()) if len(ks) >= 2)
    # master changes another sample under the same level-2 directory, so that directory and
    # the level-1 one above it are changed on both sides
    other = next(k for p, ks in sorted(leaves.items()) if p[:2] == path[:2] and p != path for k in ks)
    # and one in the same leaf as a dev change elsewhere (a leaf changed on both sides)
    both = next(ks for p, ks in sorted(leaves.items()) if len(ks) >= 2 and p[:2] != path[:2])
    m_set = {other: _v(other, 1), both[0]: _v(both[0], 1)}
    d_set = {both[1]: _v(both[1], 2)}
    head = _merge_and_expect(big, (m_set, []), (d_set, gone))
    expect = _edit(big, "expect", {**m_set, **d_set}, gone)
    assert _tree(big, head) == _tree(big, expect)
    assert run_git(big, "fsck", "--strict", "--full").returncode == 0
    listing = run_git(big, "ls-tree", "-r", "--name-only", "master").stdout
    assert "/".join(("arraysets/x/samples", *path)) + "/" not in listing


@pytest.mark.parametrize("strategy", [None, "ours", "theirs"])
def test_conflicts_inside_leaves_changed_on_both_sides(big, strategy) -> None:
    leaves = _leaves()
    groups = [ks for _, ks in sorted(leaves.items()) if len(ks) >= 3][:3]
    (t3, m1, d1), (t21, m2, d2), (t22, m3, d3) = (g[:3] for g in groups)
    m_set = {t3: _v(t3, 1), m1: _v(m1, 1), t22: _v(t22, 1), m2: _v(m2, 1), m3: _v(m3, 1)}
    d_set = {t3: _v(t3, 2), d1: _v(d1, 2), t21: _v(t21, 2), d2: _v(d2, 2), d3: _v(d3, 2)}
    m_del, d_del = [t21], [t22]
    if strategy is None:
        with pytest.raises(MergeConflictError) as err:
            _merge_and_expect(big, (m_set, m_del), (d_set, d_del))
        text = str(err.value)
        assert f"t3 (mutated on both sides to different values): samples (arrayset, key) [('x', {t3})]" in text
        assert f"t21 (removed in master, mutated in dev): samples (arrayset, key) [('x', {t21})]" in text
        assert f"t22 (mutated in master, removed in dev): samples (arrayset, key) [('x', {t22})]" in text
        return
    head = _merge_and_expect(big, (m_set, m_del), (d_set, d_del), strategy)
    if strategy == "ours":
        sets = {**d_set, **m_set}
        sets.pop(t21)
        dels = [t21]
    else:
        sets = {**m_set, **d_set}
        sets.pop(t22)
        dels = [t22]
    expect = _edit(big, "expect", sets, dels)
    assert _tree(big, head) == _tree(big, expect)


@pytest.mark.parametrize("message", ["merge dev", "", "two\nlines\n", "ünïcode ✓", "cut\x00here"])
def test_commit_data_is_the_commit_libgit2_writes(repo, message) -> None:
    import pygit2

    git = git_of(repo)
    tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # the empty tree
    parents = ["a" * 40, "b" * 40]
    data = git.commit_data(tree, parents, " Ann  Smith ", "ann@example.com", message, when=1_700_000_000)
    sig = pygit2.Signature(" Ann  Smith ", "ann@example.com", 1_700_000_000, 0)
    git.repo.odb.write(pygit2.enums.ObjectType.TREE, b"")
    oid = git.repo.create_commit(None, sig, sig, message, pygit2.Oid(hex=tree), [])
    expect = git.repo.odb.read(oid)[1].replace(b"\nauthor", b"".join(b"\nparent " + p.encode() for p in parents)
                                               + b"\nauthor", 1)
    assert data == expect


def test_a_foreign_name_holding_another_entrys_bytes_does_not_pass_for_it(repo) -> None:
    """A tree made with plain git may name an entry 's:a100644 i:5': its bytes then contain
    those of entry 'i:5' with the same id. Master changed 'i:5', dev changed it too: a conflict,
    not dev's change spliced into the other entry."""
    import pygit2

    from hangar.records.schema import ArraysetSchema
    from hangar.records.treediff import TreeReader, three_way

    r = git_of(repo).repo
    blob = lambda data: r.create_blob(data)
    x, y, z, a, a2 = (blob(b"v%d" % i) for i in range(5))
    schema = ArraysetSchema("x", "|u1", (2,), False, False, "00", fanout_depth=0)

    def root(samples: dict) -> bytes:
        leaf = r.TreeBuilder()
        for name, oid in samples.items():
            leaf.insert(name, oid, pygit2.enums.FileMode.BLOB)
        aset = r.TreeBuilder()
        aset.insert("schema", blob(schema.to_json()), pygit2.enums.FileMode.BLOB)
        aset.insert("samples", leaf.write(), pygit2.enums.FileMode.TREE)
        asets = r.TreeBuilder()
        asets.insert("x", aset.write(), pygit2.enums.FileMode.TREE)
        top = r.TreeBuilder()
        top.insert("arraysets", asets.write(), pygit2.enums.FileMode.TREE)
        return top.write().raw

    base = root({"i:5": x, "s:a100644 i:5": x, "i:6": a})
    master = root({"i:5": y, "s:a100644 i:5": x, "i:6": a2})
    dev = root({"i:5": z, "s:a100644 i:5": x, "i:6": a})
    plan = three_way(TreeReader(git_of(repo)), base, master, dev)
    assert plan.conflicts.by_class["t3"]["samples"] == [("x", "i:5")]
    theirs = three_way(TreeReader(git_of(repo)), base, master, dev, strategy="theirs")
    assert not theirs.conflicts
