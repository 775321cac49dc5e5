"""Leaf tree diffs: the C merge-join over raw tree bytes (``rowhash.leaf_diff``) reports what
libgit2's tree diff reports, on random leaves written to a real git repository."""

from __future__ import annotations

import random

import pytest

from hangar.plumbing import rowhash
from hangar.plumbing.pack import OBJ_BLOB, OBJ_TREE, ObjectBatch
from hangar.plumbing.trees import MODE_BLOB, MODE_TREE, serialize_tree
from hangar.records.treediff import TreeReader
from tests.repo_parts import git_of


def _write(batch: ObjectBatch, entries: dict) -> bytes:
    return batch.add(OBJ_TREE, serialize_tree(entries))


def _leaf_pairs(rng: random.Random, batch: ObjectBatch) -> list[tuple[dict, dict]]:
    blobs = [batch.add(OBJ_BLOB, b"v%d" % i) for i in range(8)]
    # names that share prefixes and differ in length (git orders "i:1" < "i:10" < "i:2")
    names = [f"i:{i}" for i in range(40)] + ["s:a", "s:a\u00e9", "s:ab", "s:b"]
    pairs = []
    for _ in range(60):
        a = {n: (MODE_BLOB, rng.choice(blobs)) for n in rng.sample(names, rng.randrange(0, 30))}
        b = dict(a)
        for n in rng.sample(names, rng.randrange(0, 8)):
            roll = rng.random()
            if roll < 0.3:
                b.pop(n, None)
            else:
                b[n] = (MODE_BLOB, rng.choice(blobs))
        pairs.append((a, b))
    return pairs


@pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")
def test_leaf_diff_reports_what_libgit2_reports(repo, monkeypatch) -> None:
    git = git_of(repo)
    batch = ObjectBatch()
    rng = random.Random(5)
    pairs = [(_write(batch, a), _write(batch, b)) for a, b in _leaf_pairs(rng, batch)]
    git.write_batch(batch)
    fast = TreeReader(git)
    got = [(fast.leaf_delta(a, b), _changes(fast, a, b)) for a, b in pairs]
    monkeypatch.setattr(rowhash, "available", False)
    slow = TreeReader(git)
    want = [(slow.leaf_delta(a, b), _changes(slow, a, b)) for a, b in pairs]
    assert got == want
    assert sum(bool(d) for d, _ in want) > 40  # most pairs differ


def _changes(reader: TreeReader, a: bytes, b: bytes) -> dict:
    out: dict = {}
    reader.leaf_changes(a, b, out)
    return out


@pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")
def test_leaf_diff_declines_subtrees_and_malformed_bytes() -> None:
    oid = bytes(range(20))
    blob = serialize_tree({"i:1": (MODE_BLOB, oid)})
    sub = serialize_tree({"i:1": (MODE_BLOB, oid), "d": (MODE_TREE, oid)})
    assert rowhash.leaf_diff(blob, blob) == []
    assert rowhash.leaf_diff(b"", blob) == [(b"i:1", None, (b"100644", oid))]
    assert rowhash.leaf_diff(blob, sub) is None
    for bad in (blob[:-1], b"100644 i:1", b"x" + blob, b"100644 \x00" + oid):
        assert rowhash.leaf_diff(bad, blob) is None


@pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")
def test_leaf_diff_declines_leaves_out_of_git_order() -> None:
    """A crafted leaf out of order or naming an entry twice (plain git writes either) is left to
    libgit2's diff: the merge-join reported ``i:1`` deleted and added between two leaves of the
    same entries in two orders (reviewer rC)."""
    x, y = bytes([1]) * 20, bytes([2]) * 20

    def raw(*entries: tuple[bytes, bytes]) -> bytes:
        return b"".join(b"100644 %s\x00%s" % (name, oid) for name, oid in entries)

    good = raw((b"i:1", x), (b"i:10", x), (b"i:2", x))  # "i:1" before "i:10": a prefix first
    assert rowhash.leaf_diff(good, good) == []
    for bad in (raw((b"i:2", x), (b"i:1", x)), raw((b"i:1", x), (b"i:1", y)), raw((b"i:10", x), (b"i:1", x))):
        assert rowhash.leaf_diff(bad, good) is None
        assert rowhash.leaf_diff(good, bad) is None
