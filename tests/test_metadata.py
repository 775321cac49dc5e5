"""Metadata readers and writers."""

from __future__ import annotations

import pytest

from hangar.metadata import MetadataReader, MetadataWriter


@pytest.mark.slow
def test_add_get_contains_len_iterate(aset_repo):
    co = aset_repo.checkout(write=True)
    md = co.metadata
    assert md.iswriteable and isinstance(md.__repr__.__self__, MetadataWriter)
    assert md.add("k1", "v1") == "k1"
    md[2] = "two"
    assert md["k1"] == "v1" and md.get(2) == "two" and len(md) == 3
    assert "k1" in md and 2 in md and "2" not in md and "bad key" not in md
    # issue 10 (Hangar 0.3): a writer lists the keys it added after the committed ones, in
    # the order added (this test pinned the sorted order [2, "hello", "k1"] before)
    assert list(md.keys()) == ["hello", "k1", 2]
    assert list(md.values()) == ["world", "v1", "two"]
    assert list(md.items())[2] == (2, "two")
    co.commit("metadata")
    co.close()
    r = aset_repo.checkout()
    assert list(r.metadata.keys()) == [2, "hello", "k1"]
    assert isinstance(r.metadata.__repr__.__self__, MetadataReader) and not r.metadata.iswriteable
    assert r.metadata[2] == "two" and len(r.metadata) == 3
    assert not hasattr(r.metadata, "add")
    r.close()


def test_remove_and_delitem(aset_repo):
    co = aset_repo.checkout(write=True)
    assert co.metadata.remove("hello") == "hello"
    assert "hello" not in co.metadata
    with pytest.raises(KeyError, match="hello"):
        co.metadata.remove("hello")
    co.metadata["x"] = "1"
    del co.metadata["x"]
    with pytest.raises(KeyError):
        del co.metadata["x"]
    co.commit("removed")
    co.close()
    r = aset_repo.checkout()
    assert len(r.metadata) == 0
    r.close()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["has space", "ünï", "", "a/b", -3, 1.5, None])
def test_invalid_keys_raise_value_error(aset_repo, key):
    co = aset_repo.checkout(write=True)
    with pytest.raises(ValueError):
        co.metadata.add(key, "v")
    with pytest.raises(ValueError):
        co.metadata.get(key)
    with pytest.raises(ValueError):
        co.metadata.remove(key)
    assert co.diff.status() == "CLEAN"
    co.close()


@pytest.mark.slow
@pytest.mark.parametrize("value", ["naïve", "日本", 5, b"bytes"])
def test_invalid_values_raise_value_error(aset_repo, value):
    co = aset_repo.checkout(write=True)
    with pytest.raises(ValueError):
        co.metadata["k"] = value
    assert "k" not in co.metadata and co.diff.status() == "CLEAN"
    co.close()


def test_missing_key_raises_key_error(aset_repo):
    r = aset_repo.checkout()
    with pytest.raises(KeyError, match="nope"):
        r.metadata["nope"]
    r.close()


def test_long_ascii_value_round_trips(aset_repo):
    co = aset_repo.checkout(write=True)
    v = "".join(chr(32 + i % 95) for i in range(100_000)) + "\n\ttabs"
    co.metadata["long"] = v
    co.commit("long")
    co.close()
    r = aset_repo.checkout()
    assert r.metadata["long"] == v
    r.close()
