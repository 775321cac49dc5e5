"""Bucket transfers (issue 15): what the faster push and fetch_data keep.

- fetch_data compares each received range's stored-bytes checksums with the bucket index before
  anything is written, and the writer records those checksums without hashing again
  (``TensorStore.put_verified_checked``); batches are made durable on the writer thread and a
  failure keeps the batches flushed before it;
- push builds each bucket pack with one read per run of back-to-back local samples and one
  checksum call: a damaged local sample is never uploaded, and packs cut anywhere (samples of
  several local packs, some already in the bucket) read back whole.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from hangar.errors import CorruptDataError
from hangar.store import TensorStore, objectstore
from hangar.store.packs import LocalPackStorage, parse_index, stored_check
from hangar.store.tensorstore import verify_received
from tests.repo_parts import flip_stored_byte, git_of, hangar_dir_of, store_of
from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import N, bare_git, clone, data_keys, expected, index_keys, make_repo


# ------------------------------------------------------------- put_verified_checked
def _run(n: int = 3, width: int = 64, seed: int = 0):
    from hangar.store.digest import digests_of_parts

    rows = np.random.default_rng(seed).integers(0, 255, (n, width), dtype=np.uint8)
    block = memoryview(rows.tobytes())
    payloads = [block[i * width:(i + 1) * width] for i in range(n)]
    digests = digests_of_parts(payloads, "|u1", (width,))
    run = verify_received(digests, [0] * n, [width] * n, [width] * n, payloads, "|u1", (width,), block)
    return run, [stored_check(p) for p in payloads], rows


def test_put_verified_checked_records_the_given_checks_and_reads_back(tmp_path):
    store = TensorStore(LocalPackStorage(str(tmp_path)))
    run, checks, rows = _run()
    assert store.put_verified_checked(run, checks) == 3
    pack = store.flush()
    assert pack is not None
    locs = store.locations(run.digests)
    assert [loc.check for loc in locs] == checks  # type: ignore[union-attr]
    for d, row in zip(run.digests, rows):
        np.testing.assert_array_equal(store.read(d, "|u1", (64,), check=True), row)
    assert store.put_verified_checked(run, checks) == 0  # all present: nothing appended twice
    assert store.flush() is None
    store.close()


def test_put_verified_checked_hashes_itself_where_a_check_is_missing_or_samples_are_stored(tmp_path):
    store = TensorStore(LocalPackStorage(str(tmp_path)))
    run, checks, _ = _run(seed=1)
    assert store.put_verified_checked(run, [checks[0], 0, checks[2]]) == 3  # 0: none given, computed here
    store.flush()
    assert [loc.check for loc in store.locations(run.digests)] == checks  # type: ignore[union-attr]
    more, more_checks, _ = _run(n=4, seed=2)
    part = more._replace(digests=more.digests[:2], codecs=more.codecs[:2], rawlens=more.rawlens[:2],
                         lengths=more.lengths[:2], payloads=more.payloads[:2], block=more.block[:128])
    assert store.put_verified_checked(part, more_checks[:2]) == 2
    assert store.put_verified_checked(more, more_checks) == 2  # two of four are pending: only the others
    store.flush()
    assert [loc.check for loc in store.locations(more.digests)] == more_checks  # type: ignore[union-attr]
    store.close()


# ------------------------------------------------------------------------ fetch_data
def _pushed_small_packs(tmp_path, s3_env, monkeypatch):  # noqa: F811
    """A repository pushed in 1 KiB bucket packs (several for its 120 samples, the ``vec`` ones
    compressed): (repo, git url, location, number of packs)."""
    from hangar.remote import objectdata

    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    with monkeypatch.context() as m:  # the fixture's AWS environment stays
        m.setattr(objectdata, "REMOTE_PACK_BYTES", 1024)
        r.remote.push("origin", "master")
    packs = len(index_keys(data_keys(s3_env, loc)))
    assert packs >= 3
    return r, url, loc, packs


def test_fetch_in_durable_batches_keeps_those_before_a_damaged_range(tmp_path, s3_env, monkeypatch):  # noqa: F811
    """One batch per range (each bucket pack is one range): flushed on the writer thread, in order;
    bytes of the last pack flipped in the bucket raise CorruptDataError, the batches before it stay
    stored and readable, nothing of the damaged one is."""
    from hangar.remote import objectdata

    _, url, loc, packs = _pushed_small_packs(tmp_path, s3_env, monkeypatch)
    keys = data_keys(s3_env, loc)
    last = sorted(k for k in keys if k.endswith("/c/0"))[-1]  # ranges are read in pack id order
    bucket = loc[len("s3://"):].partition("/")[0]
    client = s3_env.client()
    raw = bytearray(client.get_object(Bucket=bucket, Key=last)["Body"].read())
    raw[-1] ^= 0x01
    client.put_object(Bucket=bucket, Key=last, Body=bytes(raw))
    c = clone(tmp_path, url)
    monkeypatch.setattr(objectdata, "FETCH_BATCH_BYTES", 1)
    # one GET at a time: ranges are taken in the order they arrive, and with several GETs in
    # flight the damaged pack may arrive before the others (then no batch precedes it)
    monkeypatch.setattr(objectstore, "STREAMS", 1)
    with pytest.raises(CorruptDataError, match="do not match their checksum"):
        c.remote.fetch_data("origin", "master")
    co = c.checkout()
    remote_left = sum(map(len, co.arraysets.remote_sample_keys.values()))
    assert 0 < remote_left < 2 * N  # the damaged pack's samples only
    img = co.arraysets["img"]
    want = expected()
    here = [k for k in want if k not in set(co.arraysets.remote_sample_keys["img"])]
    assert here
    for k in here:
        np.testing.assert_array_equal(img[k], want[k])
    co.close()
    assert len(store_of(c).storage.list_packs()) == packs - 1  # one local pack per batch before the damage


def test_fetch_samples_returns_one_pack_per_durable_batch(tmp_path, s3_env, monkeypatch):  # noqa: F811
    from hangar.remote import objectdata

    _, url, _, count = _pushed_small_packs(tmp_path, s3_env, monkeypatch)
    c = clone(tmp_path, url)
    co = c.checkout()
    items = []
    for name in ("img", "vec"):
        aset = co.arraysets[name]
        items += [(d, aset.dtype.str, aset.shape) for d in _digests_of(c, name)]
    co.close()
    storage = objectdata.open_storage(git_of(c), "origin")
    index = objectdata.bucket_index(storage, hangar_dir_of(c))
    monkeypatch.setattr(objectdata, "FETCH_BATCH_BYTES", 1)
    packs = objectdata.fetch_samples(hangar_dir_of(c), storage, index, items, "origin")
    assert len(packs) == count and sorted(packs) == sorted(store_of(c).storage.list_packs())
    co = c.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    np.testing.assert_array_equal(co.arraysets["img"]["7"], expected()["7"])
    np.testing.assert_array_equal(co.arraysets["vec"]["59"], np.full(16, 59, np.float32))
    co.close()


def _digests_of(repo, name: str) -> list[bytes]:
    from hangar.remote import client as _client

    git = git_of(repo)
    head = git.remote_branch_head("origin/master")
    pointers = _client.missing_pointers(git, store_of(repo), [head], {name}, None)
    return [p.digest for p in pointers]


# ------------------------------------------------------------------------------ push
def test_push_never_uploads_a_damaged_local_sample(tmp_path, s3_env):  # noqa: F811
    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    flip_stored_byte(r, expected()["30"], 3, 0x01)
    with pytest.raises(CorruptDataError, match="do not match their checksum"):
        r.remote.push("origin", "master")
    assert index_keys(data_keys(s3_env, loc)) == []  # no pack published
    refs = subprocess.run(["git", "--git-dir", url, "for-each-ref"], capture_output=True, text=True, check=True)
    assert refs.stdout == ""  # no ref moved


def test_push_of_samples_spread_over_local_packs_and_partly_in_the_bucket(tmp_path, s3_env, monkeypatch):  # noqa: F811
    """Three local packs (one per commit), the first already in the bucket; the second push cuts
    bucket packs of ~1,000 bytes across the runs of the other two: every pack's records hold their
    own bytes, and a clone reads every sample back."""
    from hangar.remote import objectdata

    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    r.remote.push("origin", "master")
    first = set(index_keys(data_keys(s3_env, loc)))
    rng = np.random.default_rng(9)
    extra = {}
    for step in range(2):
        co = r.checkout(write=True)
        for i in range(25):
            key = f"s{step}-{i}"
            extra[key] = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            co.arraysets["img"][key] = extra[key]
        co.arraysets["vec"][f"s{step}"] = np.full(16, 1000 + step, np.float32)
        co.commit(f"step {step}")
        co.close()
    assert len(store_of(r).storage.list_packs()) >= 3
    with monkeypatch.context() as m:
        m.setattr(objectdata, "REMOTE_PACK_BYTES", 1000)
        r.remote.push("origin", "master")
    new = [k for k in index_keys(data_keys(s3_env, loc)) if k not in first]
    assert len(new) == 4  # 50 x 64 + 2 x 64 bytes in packs of ~1,000
    bucket = loc[len("s3://"):].partition("/")[0]
    client = s3_env.client()
    records = 0
    for key in new:
        data = client.get_object(Bucket=bucket, Key=key[:-len("index")] + "c/0")["Body"].read()
        recs = parse_index(client.get_object(Bucket=bucket, Key=key)["Body"].read(), key, len(data))
        for rec in recs:
            assert stored_check(data[int(rec["offset"]):int(rec["offset"] + rec["length"])]) == int(rec["check"])
        records += len(recs)
    assert records == 52  # only what the bucket lacked
    c = clone(tmp_path, url)
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    for key, arr in {**expected(), **extra}.items():
        np.testing.assert_array_equal(co.arraysets["img"][key], arr)
    np.testing.assert_array_equal(co.arraysets["vec"]["s1"], np.full(16, 1001, np.float32))
    co.close()


def test_push_keeps_the_indexes_it_uploaded_in_the_bucket_index_cache(tmp_path, s3_env):  # noqa: F811
    """The pushed packs' indexes go into the repository's bucket-index cache as uploaded (no LIST
    or GET after the push), each named by its blake3; the next push finds its samples there."""
    from hangar.store.objectstore import remote_pack_id

    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    r.remote.push("origin", "master")
    in_bucket = sorted(k.split("/")[-2] for k in index_keys(data_keys(s3_env, loc)))
    cache = os.path.join(hangar_dir_of(r), "cache", "bucket-indexes")
    (sub,) = os.listdir(cache)
    cached = sorted(os.listdir(os.path.join(cache, sub)))
    assert cached == [f"{p}.index" for p in in_bucket]
    for name in cached:
        with open(os.path.join(cache, sub, name), "rb") as f:
            assert remote_pack_id(f.read()) == name[:-len(".index")]
    co = r.checkout(write=True)
    co.arraysets["vec"]["new"] = np.full(16, -1, np.float32)
    co.commit("one more")
    co.close()
    r.remote.push("origin", "master")
    assert len(index_keys(data_keys(s3_env, loc))) == len(in_bucket) + 1  # only the new sample's pack


def test_the_bucket_index_cache_writes_through_no_link_a_repository_holds(tmp_path):
    """A crafted repository's link at the cache's temporary name (``<pack>.index.<pid>.tmp``)
    must not be followed: writing the index through it overwrote the file it pointed to."""
    from hangar.remote.objectdata import BucketIndex
    from hangar.store.objectstore import ObjectPackStorage, remote_pack_id
    from hangar.store.packs import INDEX_DTYPE, encode_index

    raw = encode_index(np.zeros(1, dtype=INDEX_DTYPE))
    pack = remote_pack_id(raw)
    cache = tmp_path / "repo" / ".hangar" / "cache" / "bucket-indexes" / "k"
    cache.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me\n")
    os.symlink(victim, cache / f"{pack}.index.{os.getpid()}.tmp")
    index = BucketIndex(ObjectPackStorage("s3://bucket/prefix", "http://127.0.0.1:9"), str(cache))
    index.add_indexes([raw])
    assert victim.read_bytes() == b"keep me\n"
    assert pack in index.packs  # the index itself is kept in memory (the cache copy is optional)


def test_fetch_of_samples_cut_across_received_chunks_brings_every_one(tmp_path, s3_env, monkeypatch):  # noqa: F811
    """fetch_data hands a pack over in pieces cut at sample boundaries: with 16 KiB chunks,
    samples of 40 KiB (across two or three chunks), of 100 KiB (across several) and 1 KiB ones
    (many in one chunk) all come back equal to what was pushed, none left remote."""
    from hangar import Repository

    os.makedirs(tmp_path / "src")
    r = Repository(tmp_path / "src", exists=False)
    r.init("Ann", "ann@example.com")
    rng = np.random.default_rng(5)
    want = {"mid": rng.integers(0, 255, (12, 200, 200), dtype=np.uint8),
            "big": rng.integers(0, 255, (3, 320, 320), dtype=np.uint8),
            "small": rng.integers(0, 255, (40, 32, 32), dtype=np.uint8)}
    co = r.checkout(write=True)
    for name, rows in want.items():
        co.arraysets.init_arrayset(name, shape=rows.shape[1:], dtype=rows.dtype)
        co[name, [str(i) for i in range(len(rows))]] = rows
    co.commit("mixed")
    co.close()
    url = bare_git(tmp_path / "history.git")
    r.remote.add("origin", url, data=s3_env.new_location(), endpoint_url=s3_env.endpoint)
    r.remote.push("origin", "master")
    c = clone(tmp_path, url)
    monkeypatch.setattr(objectstore, "_STREAM_CHUNK", 16 << 10)
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    for name, rows in want.items():
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(co.arraysets[name][str(i)], row)
    co.close()
