"""Review of the store and records layers: read paths through location tables, old formats, repair."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.store import sample_digest
from hangar.store.packs import INDEX_DTYPE_V1, parse_index
from tests import remote_fixtures
from tests.repo_parts import store_of

start_server = remote_fixtures.start_server


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    """Small arraysets: build a location table on the first read (as tests/test_bulk_reads.py)."""
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


@pytest.fixture
def small_repo(repo) -> Repository:
    """'img': 40 raw uint8 (6, 5) samples; 'z': 20 lz4-compressed int64 (64,) samples."""
    rng = np.random.default_rng(7)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("img", shape=(6, 5), dtype=np.uint8)
    co["img", list(range(40))] = rng.integers(0, 256, size=(40, 6, 5), dtype=np.uint8)
    z = co.arraysets.init_arrayset("z", shape=(64,), dtype=np.int64, backend="lz4")
    for i in range(20):
        z[i] = np.full(64, i, dtype=np.int64)
    co.commit("first")
    co.close()
    return repo


def _packs_dir(repo: Repository) -> str:
    return os.path.join(repo.path, ".hangar", "data", "packs")


def _to_format1(repo: Repository) -> None:
    """Rewrite every pack index as hangar before the checksum wrote it (format 1: bare records)."""
    base = _packs_dir(repo)
    for pack in os.listdir(base):
        path = os.path.join(base, pack, "index")
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            recs = parse_index(f.read(), path)
        old = np.zeros(len(recs), dtype=INDEX_DTYPE_V1)
        for name in INDEX_DTYPE_V1.names:
            old[name] = recs[name]
        os.chmod(path, 0o644)
        with open(path, "wb") as f:
            f.write(old.tobytes())
    shutil.rmtree(os.path.join(repo.path, ".hangar", "cache"), ignore_errors=True)  # tables of this format


def _flip_last_byte(repo: Repository, arr: np.ndarray) -> None:
    store = store_of(repo)
    store.refresh()
    loc = store.location(sample_digest(arr))
    path = os.path.join(_packs_dir(repo), loc.pack, "c", "0")
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(loc.offset + loc.length - 1)
        b = f.read(1)
        f.seek(loc.offset + loc.length - 1)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.mark.parametrize("name, key", [("img", 13), ("z", 5)])
def test_verify_reads_rehashes_format1_samples_on_the_table_paths(small_repo, name, key):
    """A repository written before the checksum (index format 1) has no stored checksum; with
    verify_reads on, the table paths (one row, a batch) must re-hash like the read by digest does,
    never return damaged bytes."""
    with small_repo.checkout() as co:
        arr = co.arraysets[name][key].copy()
    _to_format1(small_repo)
    _flip_last_byte(small_repo, arr)
    with Repository(small_repo.path).checkout() as co:
        aset = co.arraysets[name]
        store = aset.loader_view().store
        store.verify_reads = True
        with pytest.raises(CorruptDataError):
            store.read(sample_digest(arr), arr.dtype.str, arr.shape)  # the path by digest
        aset.get_batch([k for k in aset.keys() if k != key])  # healthy samples read (and build the table)
        assert aset.loader_view().locations() is not None
        with pytest.raises(CorruptDataError):
            aset[key]
        with pytest.raises(CorruptDataError):
            aset.get_batch(list(aset.keys()))


def test_fsck_repair_makes_the_cached_location_table_read_the_repaired_bytes(small_repo, tmp_path):
    """After ``repair`` replaced a damaged sample, reads through the location table cached before
    (on disk, and in the store's memory) must return the good bytes, not the damaged record."""
    good = tmp_path / "good"
    shutil.copytree(small_repo.path, good)
    with small_repo.checkout() as co:
        arr = co.arraysets["img"][13].copy()
        co.arraysets["img"].get_batch(list(range(40)))  # the table is cached on disk
    _flip_last_byte(small_repo, arr)
    report = small_repo.verify()
    assert len(report.damaged) == 1
    source = store_of(Repository(str(good)))

    def fetch(store, pointers):  # what download_into does, from a good copy
        for p in pointers:
            store.put_stored(source.read_stored(p.digest), p.dtype, p.shape)
        store.flush()

    assert small_repo.repair(report, fetch) == 1
    assert small_repo.verify().ok
    with Repository(small_repo.path).checkout() as co:
        np.testing.assert_array_equal(co.arraysets["img"][13], arr)
        np.testing.assert_array_equal(co.arraysets["img"].get_batch([12, 13])[1], arr)


@pytest.mark.slow
@pytest.mark.parametrize("name, key", [("img", 13), ("z", 5)])
@pytest.mark.parametrize("tables", [True, False])
def test_loaders_check_the_stored_checksum(small_repo, monkeypatch, name, key, tables):
    """The loaders (torch dataset, dask array) read packs themselves: a damaged sample is an error
    there too, as for ``get``/``get_batch``, never returned as data (through a location table or not)."""
    torch = pytest.importorskip("torch")  # noqa: F841 - the loader needs it
    pytest.importorskip("dask.array")
    from hangar.dataloaders import dask_array, make_torch_dataset

    if not tables:
        monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 1 << 30)
    with small_repo.checkout() as co:
        arr = co.arraysets[name][key].copy()
    shutil.rmtree(os.path.join(small_repo.path, ".hangar", "cache"), ignore_errors=True)
    _flip_last_byte(small_repo, arr)
    with Repository(small_repo.path).checkout() as co:
        aset = co.arraysets[name]
        assert (aset.loader_view().locations() is not None) == tables
        ds = make_torch_dataset(aset, keys=[key, key + 1])
        with pytest.raises(CorruptDataError, match="checksum"):
            ds[0]
        ds[1]  # a healthy sample still reads
        with pytest.raises(CorruptDataError, match="checksum"):
            dask_array(aset, keys=[key + 1, key]).compute()
        with pytest.raises(CorruptDataError, match="checksum"):
            dask_array(aset, keys=[key + 1, key])[1].compute()


@pytest.mark.slow
@pytest.mark.parametrize("variable, bad_shape", [(False, (2, 2)), (True, (8,))])
def test_a_table_derived_from_the_parents_checks_pointers_against_the_schema(repo, variable, bad_shape):
    """A pointer record the API never writes (another rank, or beyond the max shape: e.g. from a
    hostile remote) is an ``InvalidRecordError`` on every read path: also when the commit's location
    table is derived from its parent's (``changes_since``), as on the pointer path and a full build."""
    from hangar.errors import InvalidRecordError
    from hangar.records.keys import encode_key
    from hangar.records.pointer import SamplePointer

    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int32, variable_shape=variable)
    b = co.arraysets.init_arrayset("b", shape=bad_shape, dtype=np.int32)
    for i in range(10):
        a[i] = np.full(4, i, dtype=np.int32)
    b[0] = np.arange(int(np.prod(bad_shape)), dtype=np.int32).reshape(bad_shape)
    co.commit("first")
    with repo.checkout() as rco:
        rco.arraysets["a"].get_batch(list(range(10)))  # the parent's table is cached
    # the record a hostile remote could send: a's key 7 pointing at b's sample
    a._table.set(encode_key(7), SamplePointer(sample_digest(b[0]), "<i4", bad_shape))
    co.commit("second")
    co.close()
    with repo.checkout() as rco:
        aset = rco.arraysets["a"]
        with pytest.raises(InvalidRecordError):
            aset[7]
        with pytest.raises(InvalidRecordError):
            aset.get_batch([6, 7])


@pytest.mark.slow
def test_loaders_see_samples_fetched_after_a_location_table_was_built(tmp_path, repo, start_server):
    """A partial clone reads (a location table is built with the remote references unlocated), then
    ``fetch_data`` brings the bytes: a loader made afterwards in the same process (same checkout, or
    a new one) must read them, not refuse them as remote references."""
    pytest.importorskip("torch")
    from hangar.dataloaders import make_torch_dataset

    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int32)
    co["a", list(range(6))] = np.arange(24, dtype=np.int32).reshape(6, 4)
    co.commit("first")
    co.close()
    srv = start_server()
    repo.remote.add("origin", srv.address)
    repo.remote.push("origin", "master")
    os.makedirs(tmp_path / "dst")
    dst = Repository(tmp_path / "dst", exists=False)
    dst.clone("Test User", "test@example.com", srv.address)
    co = dst.checkout()
    aset = co.arraysets["a"]
    assert aset.loader_view().locations() is not None  # built with every row a remote reference
    with pytest.raises(ValueError, match="remote references"):
        make_torch_dataset(aset)
    dst.remote.fetch_data("origin", "master")
    np.testing.assert_array_equal(make_torch_dataset(aset)[5][0], np.arange(20, 24, dtype=np.int32))
    co.close()
    with dst.checkout() as co2:
        np.testing.assert_array_equal(make_torch_dataset(co2.arraysets["a"])[3][0], np.arange(12, 16, dtype=np.int32))


@pytest.mark.slow
@pytest.mark.parametrize("tables", [True, False])
def test_loaders_of_an_open_checkout_read_after_a_gc_compacted_its_packs(repo, monkeypatch, tables):
    """``hangar gc`` may run while a read checkout is open (it only needs the writer lock). A loader
    made on that checkout afterwards must read from the packs gc wrote, as ``get`` does, not fail with
    FileNotFoundError on a removed pack (named by a stale location table or a stale store index)."""
    pytest.importorskip("torch")
    pytest.importorskip("dask.array")
    from hangar.dataloaders import dask_array, make_torch_dataset

    if not tables:
        monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 1 << 30)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int32)
    co.commit("init")
    co.close()
    repo.create_branch("tmp")
    co = repo.checkout(write=True, branch="tmp")  # no BranchSwitchWarning: the CLI never chose a branch
    co["a", list(range(10))] = np.repeat(np.arange(10, dtype=np.int32), 4).reshape(10, 4)
    co.commit("samples 0..9, one pack")
    co.close()
    co = repo.checkout(write=True, branch="master")  # no BranchSwitchWarning: the CLI never chose a branch
    co["a", list(range(5))] = np.repeat(np.arange(5, dtype=np.int32), 4).reshape(5, 4)  # the same bytes
    co.commit("samples 0..4")
    co.close()
    if not tables:
        store_of(repo).drop_tables()  # the tables the commits left (issue 14): read by pointer
        repo = Repository(repo.path)  # a new process's view: no tables in memory either
    with repo.checkout(branch="master") as reader:
        aset = reader.arraysets["a"]
        aset.get_batch([0, 1])
        assert (aset.loader_view().locations() is not None) == tables
        repo.remove_branch("tmp", force_delete=True)
        assert repo.gc().removed_packs == 1  # samples 5..9 dropped: the pack rewritten
        np.testing.assert_array_equal(make_torch_dataset(aset)[3][0], np.full(4, 3, dtype=np.int32))
        np.testing.assert_array_equal(dask_array(aset).compute()[4], np.full(4, 4, dtype=np.int32))
