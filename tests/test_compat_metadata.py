"""Metadata key order as in Hangar 0.3 (issue 10, point 9).

A reader lists a commit's keys ints first, then strs. A writer lists the keys that were there
when it opened the same way, then the keys it added, in the order it added them.
"""

from __future__ import annotations


def test_writer_lists_added_keys_in_the_order_added(repo):
    co = repo.checkout(write=True)
    try:
        co.metadata.add("1", "test")
        co.metadata.add(1, "test number")
        co.metadata["2"] = "test2"
        co.metadata[2] = "test2 number"
        assert list(co.metadata.keys()) == ["1", 1, "2", 2]
        assert list(co.metadata.values()) == ["test", "test number", "test2", "test2 number"]
        assert [k for k, _ in co.metadata.items()] == ["1", 1, "2", 2]
        assert list(co.metadata) == ["1", 1, "2", 2]
    finally:
        co.close()


def test_reader_lists_ints_first_then_strs(repo):
    co = repo.checkout(write=True)
    co.metadata.add("1", "test")
    co.metadata.add(2, "test2")
    co.commit("two keys")
    co.close()
    with repo.checkout() as r:
        assert list(r.metadata.keys()) == [2, "1"]


def test_writer_order_survives_commit_and_overwrite_keeps_the_place(repo):
    co = repo.checkout(write=True)
    try:
        for k in ("b", "a", 3):
            co.metadata[k] = "v"
        co.commit("three")
        co.metadata["a"] = "new value"  # overwritten: keeps its place
        co.metadata["c"] = "v"
        assert list(co.metadata.keys()) == ["b", "a", 3, "c"]
        del co.metadata["b"]
        co.metadata["b"] = "back"  # removed and added again: goes last
        assert list(co.metadata.keys()) == ["a", 3, "c", "b"]
    finally:
        co.close()
    co = repo.checkout(write=True)  # a new writer: committed keys first, sorted
    try:
        assert list(co.metadata.keys()) == [3, "a", "b", "c"]
        co.metadata["0"] = "new"
        assert list(co.metadata.keys()) == [3, "a", "b", "c", "0"]
    finally:
        co.close()
