"""Reads through the per-commit location table: get_batch(out=), coalesced reads, the on-disk cache."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from hangar.errors import CorruptDataError
from tests.repo_parts import flip_stored_byte, store_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    """These arraysets are small: build a location table on the first read instead of after
    4,096 (see test_a_table_is_built_only_once_the_reads_add_up_to_the_arrayset)."""
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


def _cache_files(repo: Repository) -> list[str]:
    d = os.path.join(repo.path, ".hangar", "cache", "readtables")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture
def img_repo(repo) -> Repository:
    """'img': 300 random uint8 (6, 5) samples, int keys 0..299 (written in two commits, so two
    packs) plus str keys; 'var': variable-shape; 'z': compressible (lz4)."""
    rng = np.random.default_rng(3)
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("img", shape=(6, 5), dtype=np.uint8)
    co["img", list(range(200))] = rng.integers(0, 256, size=(200, 6, 5), dtype=np.uint8)
    var = co.arraysets.init_arrayset("var", shape=(4, 4), dtype=np.float32, variable_shape=True)
    for i in range(10):
        var[i] = np.full((1 + i % 4, 4), i, dtype=np.float32)
    z = co.arraysets.init_arrayset("z", shape=(64,), dtype=np.int64, backend="lz4")
    for i in range(20):
        z[i] = np.full(64, i, dtype=np.int64)
    co.commit("first")
    co["img", list(range(200, 300))] = rng.integers(0, 256, size=(100, 6, 5), dtype=np.uint8)
    img["cat"] = np.full((6, 5), 7, dtype=np.uint8)
    img["dog"] = np.full((6, 5), 9, dtype=np.uint8)
    co.commit("second")
    co.close()
    # the tests below start from a reader-built table (a commit leaves one: see
    # test_a_commit_leaves_the_tables_of_the_arraysets_it_changed): the cached tables dropped on
    # disk, and a fresh Repository (a new process's view) holds none in memory
    _drop_cache(repo)
    return Repository(repo.path)


def _drop_cache(repo: Repository) -> None:
    store_of(repo).drop_tables()  # on disk (and in the memory of that store)


def _expected(repo: Repository, aset: str, keys: list) -> list[np.ndarray]:
    """The samples read one by one through the pointer path (no location table)."""
    co = repo.checkout()
    try:
        a = co.arraysets[aset]
        return [a._get_batch_by_pointer([k], 1, "spawn")[0] for k in keys]
    finally:
        co.close()


def test_get_batch_any_order_repeats_and_both_packs_matches_single_reads(img_repo):
    keys = [299, 0, 5, 5, 150, 201, "cat", 1, "dog", 298, 0]
    want = _expected(img_repo, "img", keys)
    with img_repo.checkout() as co:
        got = co.arraysets["img"].get_batch(keys)
        assert len(got) == len(keys)
        for g, w in zip(got, want):
            assert g.shape == (6, 5) and g.dtype == np.uint8
            np.testing.assert_array_equal(g, w)
        got[0][...] = 0  # the arrays are writeable, and rows of one array do not alias each other
        np.testing.assert_array_equal(got[1], want[1])
        every = list(range(300))
        np.testing.assert_array_equal(np.stack(co.arraysets["img"].get_batch(np.array(every))),
                                      np.stack(_expected(img_repo, "img", every)))


def test_get_batch_out_fills_and_returns_the_callers_array(img_repo):
    keys = list(range(40, 0, -3))
    want = np.stack(_expected(img_repo, "img", keys))
    buf = np.empty((len(keys), 6, 5), dtype=np.uint8)
    with img_repo.checkout() as co:
        got = co.arraysets["img"].get_batch(keys, out=buf)
        assert got is buf
        np.testing.assert_array_equal(buf, want)
        buf[...] = 0
        co.arraysets["img"].get_batch(keys, out=buf)  # reused
        np.testing.assert_array_equal(buf, want)


@pytest.mark.slow
@pytest.mark.parametrize("bad", [np.empty((3, 6, 5), dtype=np.int16), np.empty((2, 6, 5), dtype=np.uint8),
                                 np.empty((3, 5, 6), dtype=np.uint8), np.empty((3, 6, 5), dtype=np.uint8)[:, ::-1],
                                 [[0]]])
def test_get_batch_out_that_does_not_fit_raises_valueerror(img_repo, bad):
    with img_repo.checkout() as co:
        with pytest.raises(ValueError, match="out must be"):
            co.arraysets["img"].get_batch([0, 1, 2], out=bad)


def test_get_batch_missing_and_non_key_names_raise_keyerror_naming_them(img_repo):
    with img_repo.checkout() as co:
        img = co.arraysets["img"]
        with pytest.raises(KeyError, match="'nope'"):
            img.get_batch([1, "nope"])
        with pytest.raises(KeyError, match="300"):
            img.get_batch([1, 300])
        with pytest.raises(KeyError, match="-1"):
            img.get_batch([-1, 2])
        with pytest.raises(KeyError, match="True"):
            img.get_batch([1, True])
        with pytest.raises(KeyError):
            img[True]
        with pytest.raises(KeyError):
            img[1.0]


@pytest.mark.slow
def test_variable_shape_and_compressed_arraysets_read_through_the_table(img_repo):
    with img_repo.checkout() as co:
        got = co.arraysets["var"].get_batch([3, 0, 9])
        assert [g.shape for g in got] == [(4, 4), (1, 4), (2, 4)]
        assert [float(g[0, 0]) for g in got] == [3.0, 0.0, 9.0]
        z = co.arraysets["z"].get_batch(list(range(19, -1, -1)))
        np.testing.assert_array_equal(np.stack(z), np.repeat(np.arange(19, -1, -1), 64).reshape(20, 64))
        with pytest.raises(ValueError, match="variable_shape"):
            co.arraysets["var"].get_batch([1], out=np.empty((1, 4, 4), dtype=np.float32))


@pytest.mark.slow
def test_location_table_is_cached_on_disk_and_a_fresh_process_reads_through_it(img_repo):
    with img_repo.checkout() as co:
        np.testing.assert_array_equal(co.arraysets["img"]["cat"], np.full((6, 5), 7, dtype=np.uint8))
    (name,) = _cache_files(img_repo)
    mtime = os.stat(os.path.join(img_repo.path, ".hangar", "cache", "readtables", name)).st_mtime_ns
    code = ("import sys; from hangar import Repository\n"
            "co = Repository(sys.argv[1]).checkout(); a = co.arraysets['img']\n"
            "print(int(a['dog'][0, 0]), int(a.get_batch([299, 'cat'])[1][0, 0]))")
    r = subprocess.run([sys.executable, "-c", code, img_repo.path], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0 and r.stdout.split() == ["9", "7"], r.stderr
    assert _cache_files(img_repo) == [name]  # read, not rewritten
    assert os.stat(os.path.join(img_repo.path, ".hangar", "cache", "readtables", name)).st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(img_repo, damage):
    with img_repo.checkout() as co:
        co.arraysets["img"][0]
    (name,) = _cache_files(img_repo)
    path = os.path.join(img_repo.path, ".hangar", "cache", "readtables", name)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write({"truncate": data[:-7], "garbage": data[:40] + os.urandom(len(data) - 40), "empty": b""}[damage])
    want = _expected(Repository(img_repo.path), "img", [0, 250, "dog"])
    with Repository(img_repo.path).checkout() as co:
        for g, w in zip(co.arraysets["img"].get_batch([0, 250, "dog"]), want):
            np.testing.assert_array_equal(g, w)


def test_deleting_the_cache_is_safe(img_repo):
    with img_repo.checkout() as co:
        first = co.arraysets["img"][17].copy()
    for n in _cache_files(img_repo):
        os.unlink(os.path.join(img_repo.path, ".hangar", "cache", "readtables", n))
    with Repository(img_repo.path).checkout() as co:
        np.testing.assert_array_equal(co.arraysets["img"][17], first)


@pytest.mark.slow
def test_a_cached_table_naming_packs_removed_by_gc_is_rebuilt(img_repo):
    co = img_repo.checkout(write=True)
    co.arraysets["img"][400] = np.full((6, 5), 40, dtype=np.uint8)
    co.arraysets["img"][401] = np.full((6, 5), 41, dtype=np.uint8)
    co.close()  # staged, flushed, never committed
    co = img_repo.checkout(write=True)
    del co.arraysets["img"][401]
    co.commit("one more")  # 400 and the dropped 401 share a data pack
    co.close()
    with img_repo.checkout() as co:
        co.arraysets["img"].get_batch([400, 0])  # cached, naming the shared pack
    old_commits = _cache_files(img_repo)
    r = subprocess.run([sys.executable, "-c", "import sys; from hangar import Repository; "
                        "print(Repository(sys.argv[1]).gc().removed_packs)", img_repo.path],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0 and int(r.stdout) >= 1, r.stderr
    assert old_commits
    with Repository(img_repo.path).checkout() as co:
        np.testing.assert_array_equal(co.arraysets["img"][400], np.full((6, 5), 40, dtype=np.uint8))
        np.testing.assert_array_equal(co.arraysets["img"].get_batch([400, 1])[0], np.full((6, 5), 40, np.uint8))


def test_batch_read_with_digest_check_raises_on_a_flipped_byte(img_repo):
    with img_repo.checkout() as co:
        arr = co.arraysets["img"][123].copy()
    flip_stored_byte(img_repo, arr, 2, 0xFF)
    with Repository(img_repo.path).checkout() as co:
        co.arraysets["img"].loader_view().store.verify_reads = True
        with pytest.raises(CorruptDataError, match="do not match"):
            co.arraysets["img"].get_batch(list(range(100, 130)))
        with pytest.raises(CorruptDataError, match="do not match"):
            co.arraysets["img"][123]
        co.arraysets["img"].get_batch(list(range(100, 120)))  # the healthy samples still read


@pytest.mark.slow
def test_the_table_of_a_child_commit_is_derived_from_the_parents_and_equals_a_full_build(img_repo):
    with img_repo.checkout() as co:
        co.arraysets["img"][0]  # the parent's table is now cached
    co = img_repo.checkout(write=True)
    img = co.arraysets["img"]
    img[5] = np.full((6, 5), 55, dtype=np.uint8)  # mutated
    del img[7]  # removed
    del img["cat"]
    img[1000] = np.full((6, 5), 100, dtype=np.uint8)  # added beyond the dense range
    img["ant"] = np.full((6, 5), 3, dtype=np.uint8)
    co.commit("child")
    co.close()
    repo = Repository(img_repo.path)
    store = store_of(repo)
    calls = []
    real_build = type(store).location_table

    def spy(self, key, entries, derive=None, build=True):
        def counted():
            calls.append(key)
            return entries()
        return real_build(self, key, counted, derive, build)

    with repo.checkout() as co:
        a = co.arraysets["img"]
        type(store).location_table = spy
        try:
            got = a.get_batch([5, 1000, "ant", "dog", 0, 299])
        finally:
            type(store).location_table = real_build
        assert calls == []  # derived: no full walk of the pointers
        assert [int(g[0, 0]) for g in got[:3]] == [55, 100, 3]
        derived = a.loader_view().locations()
        full = type(derived).build(a._table.entries(), store.locate_durable)
        assert derived.ikeys.tolist() == full.ikeys.tolist() and derived.snames == full.snames
        for col in ("digests", "shapes", "offsets", "lengths", "rawlens", "codecs"):
            np.testing.assert_array_equal(getattr(derived, col), getattr(full, col))
        assert [derived.packs[i] for i in derived.pack_col] == [full.packs[i] for i in full.pack_col]
        with pytest.raises(KeyError):
            a[7]
        with pytest.raises(KeyError):
            a["cat"]
        assert not derived.dense and derived.row(1000) == 299  # 0..299 without 7, then 1000


@pytest.mark.slow
def test_a_table_is_built_only_once_the_reads_add_up_to_the_arrayset(img_repo, monkeypatch):
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 100)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 1.0)
    keys = list(range(300)) + ["cat", "dog"]  # 302 samples
    want = _expected(img_repo, "img", keys)
    with Repository(img_repo.path).checkout() as co:
        img = co.arraysets["img"]
        for k, w in zip(keys[:150], want):  # read by pointer: no table yet
            np.testing.assert_array_equal(img[k], w)
        assert _cache_files(img_repo) == []
        got = img.get_batch(keys[150:301])  # 301 asked: still by pointer
        assert _cache_files(img_repo) == []
        np.testing.assert_array_equal(np.stack(got), np.stack(want[150:301]))
        np.testing.assert_array_equal(img["dog"], want[301])  # 302 asked: built and cached
        assert len(_cache_files(img_repo)) == 1
    with Repository(img_repo.path).checkout() as co:  # a cached table is used from the first read
        np.testing.assert_array_equal(co.arraysets["img"].get_batch([299, 0])[1], want[0])
        assert co.arraysets["img"]._loc_table is not None


def test_loader_samples_resolved_through_tables_match_reads_by_pointer(img_repo):
    from hangar.dataloaders.common import GroupedSamples

    keys = [299, "dog", 0, 150, 150]
    want = _expected(img_repo, "img", keys)
    with img_repo.checkout() as co:
        img = co.arraysets["img"]
        chosen = GroupedSamples(img, keys=keys)
        assert img._loc_table is not None  # resolved through the table
        assert chosen.keys == keys
        for i, w in enumerate(want):
            np.testing.assert_array_equal(chosen.sources[0].read(i), w)
        every = GroupedSamples([img, img], index_range=slice(295, None))
        assert every.keys == [295, 296, 297, 298, 299, "cat", "dog"]
        np.testing.assert_array_equal(every.sources[1].read(5), np.full((6, 5), 7, dtype=np.uint8))
        var = GroupedSamples(co.arraysets["var"], keys=[3, 0])
        assert [var.sources[0].read(i).shape for i in range(2)] == [(4, 4), (1, 4)]
        with pytest.raises(KeyError, match="'nope'"):
            GroupedSamples(img, keys=[1, "nope"])
        with pytest.raises(KeyError, match="True"):
            GroupedSamples(img, keys=[1, True])
        with pytest.raises(KeyError):
            GroupedSamples(img, keys=[np.int64(1)])  # as on the pointer path: keys are str or int


@pytest.mark.parametrize("name, key", [("img", 123), ("z", 5)])
def test_table_reads_check_the_stored_checksum_without_verify_reads(img_repo, name, key):
    """The table paths (one row, and a coalesced batch) check each sample's stored checksum as
    the read by digest does: a flipped byte is an error, never data, with HANGAR_VERIFY_READS off."""
    with img_repo.checkout() as co:
        arr = co.arraysets[name][key].copy()
        ints = [k for k in co.arraysets[name].keys() if isinstance(k, int)]
    flip_stored_byte(img_repo, arr, -1, 0xFF)
    with Repository(img_repo.path).checkout() as co:
        aset = co.arraysets[name]
        aset.loader_view().store.verify_reads = False
        aset.get_batch([k for k in ints if k != key] * 2)  # builds the table (reads >= arrayset size)
        assert aset.loader_view().locations() is not None
        with pytest.raises(CorruptDataError, match="do not match their checksum"):
            aset.get_batch(ints)
        with pytest.raises(CorruptDataError, match="do not match their checksum"):
            aset[key]


def test_a_commit_leaves_the_tables_of_the_arraysets_it_changed(repo, monkeypatch):
    """Issue 14: the first read of a new commit (in any process) loads the table the commit left:
    no pointer is read; the table equals a full build, for a new arrayset and for one changed
    on top of its parent's table, variable-shape and str keys included."""
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 4096)  # readers would not build
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 1.0)
    rng = np.random.default_rng(5)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("img", shape=(6, 5), dtype=np.uint8)
    co["img", list(range(50))] = rng.integers(0, 256, size=(50, 6, 5), dtype=np.uint8)
    var = co.arraysets.init_arrayset("var", shape=(4, 4), dtype=np.float32, variable_shape=True,
                                     named_samples=True)
    for i, k in enumerate(["b", "a", "zz", "c.d"]):
        var[k] = np.full((1 + i, 4), i, dtype=np.float32)
    co.commit("first")
    co._session.store.wait_saved()  # the commit's table files are written in a thread (keep_table)
    assert len(_cache_files(repo)) == 2
    img = co.arraysets["img"]
    img[3] = np.full((6, 5), 33, dtype=np.uint8)
    del img[4]
    img[1000] = np.full((6, 5), 100, dtype=np.uint8)
    co.commit("second")  # derived from the first commit's table
    co.close()
    assert len(_cache_files(repo)) == 3
    fresh = Repository(repo.path)
    store = store_of(fresh)
    real = type(store).location_table
    built = []

    def spy(self, key, entries, derive=None, build=True):
        return real(self, key, lambda: built.append(key) or entries(), derive, build)

    with fresh.checkout() as co:
        monkeypatch.setattr(type(store), "location_table", spy)
        for name, keys in (("img", [3, 1000, 0, 49]), ("var", ["zz", "a"])):
            a = co.arraysets[name]
            got = a.get_batch(keys)
            table = a._loc_table
            assert table is not None and built == []
            full = type(table).build(a._table.entries(), store.locate_durable)
            assert table.ikeys.tolist() == full.ikeys.tolist() and table.snames == full.snames
            for col in ("digests", "shapes", "offsets", "lengths", "rawlens", "codecs", "checks"):
                np.testing.assert_array_equal(getattr(table, col), getattr(full, col))
            assert [table.packs[i] for i in table.pack_col] == [full.packs[i] for i in full.pack_col]
            want = _expected(fresh, name, keys)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        assert int(co.arraysets["img"][3][0, 0]) == 33
        with pytest.raises(KeyError):
            co.arraysets["img"][4]


@pytest.mark.parametrize("where", [0, 45, 99])  # first range, a middle one, the last
def test_large_samples_read_in_pipelined_ranges_still_raise_on_a_flipped_byte(repo, where):
    """Samples >= 32 KiB are read in 4 MiB ranges, each range's checksums checked in a second
    thread while the next is read: a flipped byte anywhere is a CorruptDataError on get_batch and
    on values(), and the healthy samples still read."""
    data = np.random.default_rng(7).integers(0, 256, size=(100, 64, 1024), dtype=np.uint8)  # 6.4 MB
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("big", shape=(64, 1024), dtype=np.uint8)
    co["big", list(range(100))] = data
    co.commit("big")
    co.close()
    with repo.checkout() as rco:
        np.testing.assert_array_equal(np.stack(rco.arraysets["big"].get_batch(list(range(100)))), data)
        np.testing.assert_array_equal(np.stack(list(rco.arraysets["big"].values())), data)
    flip_stored_byte(repo, data[where], 5000, 0x01)
    with Repository(repo.path).checkout() as rco:
        big = rco.arraysets["big"]
        with pytest.raises(CorruptDataError, match="do not match"):
            big.get_batch(list(range(100)))
        with pytest.raises(CorruptDataError, match="do not match"):
            list(big.values())
        with pytest.raises(CorruptDataError, match="do not match"):
            big[where]
        ok = [i for i in range(100) if i != where]
        np.testing.assert_array_equal(np.stack(big.get_batch(ok)), data[ok])


def test_a_cached_table_with_its_checksums_zeroed_is_refused_so_damage_is_still_caught(img_repo):
    """A table file whose structure is intact but whose checks column was zeroed (a torn write, or
    an edit) would read every sample unchecked: its body checksum refuses it and the rebuilt table
    carries the pack indexes' checksums again."""
    with img_repo.checkout() as co:
        arr = co.arraysets["img"].get_batch([0, 1])[0].copy()
    (name,) = _cache_files(img_repo)
    path = os.path.join(img_repo.path, ".hangar", "cache", "readtables", name)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    n = 302
    data[-8 * n:] = bytes(8 * n)  # the checks column is the last one
    with open(path, "wb") as f:
        f.write(data)
    flip_stored_byte(img_repo, arr, 3, 0x10)
    with Repository(img_repo.path).checkout() as co:
        with pytest.raises(CorruptDataError, match="do not match"):
            co.arraysets["img"].get_batch([0, 1])
        with pytest.raises(CorruptDataError, match="do not match"):
            co.arraysets["img"][0]


def test_single_reads_of_a_huge_table_take_the_fields_one_at_a_time(img_repo, monkeypatch):
    """Tables beyond _ROW_MAJOR_MAX rows keep no row-major copy of their columns (48 bytes a row);
    reads give the same samples."""
    import hangar.store.readtable as rt

    want = _expected(img_repo, "img", [0, 299, "dog"])
    monkeypatch.setattr(rt, "_ROW_MAJOR_MAX", 10)
    with Repository(img_repo.path).checkout() as co:
        img = co.arraysets["img"]
        for k, w in zip([0, 299, "dog"], want):
            np.testing.assert_array_equal(img[k], w)
        assert img._loc_table._loc is None
