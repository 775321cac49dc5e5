"""``aset.to_dask()`` of a lazy clone on a LocalCluster: workers range-read the S3 bucket themselves
(issue 15, point 3). One SeaweedFS server (the session's) and one LocalCluster for the module."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import CorruptDataError, ObjectStoreError
from tests.repo_parts import recorded_endpoint
from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, s3_server  # noqa: F401 - fixture

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
pytest.importorskip("obstore", reason="data remotes need obstore (the s3 extra)")

pytestmark = pytest.mark.slow

N = 48


def _data() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, size=(N, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def aws_env(s3_server):  # noqa: F811
    """The AWS environment of the session's server, set before the cluster's workers start (they
    take their credentials from it, never from the task graph)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_REGION", "us-east-1")
        for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(var, raising=False)
        yield s3_server


@pytest.fixture(scope="module")
def cluster_client(aws_env):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def _push(root, server) -> tuple[str, str]:
    """A repository of N images pushed to a bare git repository and a bucket prefix: (git url, location)."""
    os.makedirs(root / "src")
    src = Repository(root / "src", exists=False)
    src.init("Ann", "ann@example.com")
    co = src.checkout(write=True)
    aset = co.arraysets.init_arrayset("images", shape=(16, 16, 3), dtype=np.uint8)
    data = _data()
    with aset:
        for i in range(N):
            aset[i] = data[i]
    co.commit("images")
    co.close()
    url = str(root / "history.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    loc = server.new_location()
    src.remote.add("origin", url, data=loc, endpoint_url=server.endpoint)
    src.remote.push("origin", "master")
    return url, loc


def _clone(path, url: str) -> Repository:
    os.makedirs(path)
    c = Repository(path, exists=False)
    c.clone("Bob", "bob@example.com", url, endpoint_url=recorded_endpoint(url))  # the user names the endpoint
    return c


def _local_packs(repo: Repository) -> list[str]:
    packs = os.path.join(repo.path, ".hangar", "data", "packs")
    return sorted(p for p in os.listdir(packs) if p != "zarr.json") if os.path.isdir(packs) else []


def test_workers_read_a_lazy_clone_straight_from_the_bucket(tmp_path, aws_env, cluster_client):
    from hangar.dataloaders import daskarray

    url, loc = _push(tmp_path / "p", aws_env)
    clone = _clone(tmp_path / "clone", url)
    data = _data()
    co = clone.checkout()
    try:
        arr = co.arraysets["images"].to_dask(chunk_rows=8)
        # built from the bucket's indexes: no sample downloaded, no bytes and no secret in the graph
        assert _local_packs(clone) == []
        graph = pickle.dumps(dict(arr.__dask_graph__()))
        assert len(graph) < data.nbytes / 4, len(graph)
        assert loc.encode() in graph and SECRET_KEY.encode() not in graph and ACCESS_KEY.encode() not in graph
        means = arr.mean(axis=(1, 2, 3)).compute()
        np.testing.assert_allclose(means, data.reshape(N, -1).mean(axis=1))
        assert float(arr.mean().compute()) == pytest.approx(float(data.mean()))
        # the workers opened the bucket; this process read no sample (and stored none)
        opened = cluster_client.run(daskarray.opened_addresses)
        assert any(loc in v for v in opened.values()), opened
        assert loc not in daskarray.opened_addresses()
        assert _local_packs(clone) == []
        assert all(co.arraysets.contains_remote_references.values())

        # some samples cached locally (a lazy read): chunks then read those from disk, the rest from the bucket
        np.testing.assert_array_equal(co.arraysets["images"].get_batch([3, 4, 20]), data[[3, 4, 20]])
        co.close()
        co = clone.checkout()
        mixed = co.arraysets["images"].to_dask(chunk_rows=8)
        np.testing.assert_array_equal(mixed.compute(), data)
    finally:
        co.close()


def test_a_corrupted_bucket_object_raises_corrupt_data_error_on_compute(tmp_path, aws_env, cluster_client):
    url, loc = _push(tmp_path / "p", aws_env)
    clone = _clone(tmp_path / "clone", url)
    co = clone.checkout()
    try:
        arr = co.arraysets["images"].to_dask(chunk_rows=8)
        bucket, _, prefix = loc[len("s3://"):].partition("/")
        client = aws_env.client()
        key = [k for k in aws_env.keys(loc) if k.endswith("/c/0")][0]
        raw = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        raw[len(raw) // 2] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(raw))
        with pytest.raises(CorruptDataError, match="checksum"):
            arr.sum().compute()
        assert _local_packs(clone) == []
    finally:
        co.close()


def test_bucket_bytes_that_fail_the_digest_are_refused_and_a_forked_worker_is_told_to_spawn(tmp_path, aws_env):
    from hangar.dataloaders import daskarray

    url, _ = _push(tmp_path / "p", aws_env)
    clone = _clone(tmp_path / "clone", url)
    co = clone.checkout()
    try:
        arr = co.arraysets["images"].to_dask(chunk_rows=8)
        task = next(iter(dict(arr.__dask_graph__()).values()))
        fn, *args = task
        assert fn is daskarray.read_bucket_chunk
        remote = args[-1]
        digests = list(remote.digests)
        digests[0] = digests[1]  # the bytes of row 0 named by row 1's digest
        args[-1] = remote._replace(digests=digests)
        with pytest.raises(CorruptDataError, match="does not match its digest"):
            fn(*args)
        np.testing.assert_array_equal(fn(*task[1:]), _data()[:8])
        # obstore's runtime does not survive fork (requests in the child wait forever): a process
        # forked after this one read the bucket gets an error naming the fix at once, not a hang
        with multiprocessing.get_context("fork").Pool(1) as pool:
            with pytest.raises(ObjectStoreError, match="forked .* 'spawn'"):
                pool.apply_async(fn, task[1:]).get(timeout=60)
    finally:
        co.close()


def test_a_bucket_index_whose_lengths_disagree_with_the_raw_size_raises_corrupt_data_error(tmp_path, aws_env):
    """A bucket pack index (the bucket's owner writes it) claiming a raw sample's stored length
    shorter than its raw length, with a checksum that fits the shorter bytes: before the fix the
    raw copy into the row raised numpy's ValueError, not ``CorruptDataError`` naming the sample."""
    from hangar.dataloaders import daskarray
    from hangar.store import codecs
    from hangar.store.packs import stored_check

    url, _ = _push(tmp_path / "p", aws_env)
    clone = _clone(tmp_path / "clone", url)
    co = clone.checkout()
    try:
        task = next(iter(dict(co.arraysets["images"].to_dask(chunk_rows=8).__dask_graph__()).values()))
        fn, *args = task
        assert fn is daskarray.read_bucket_chunk
        remote = args[-1]
        assert remote.codecs[0] == codecs.RAW  # random bytes are stored raw
        lengths, checks = list(remote.lengths), list(remote.checks)
        lengths[0] -= 1
        checks[0] = stored_check(_data()[remote.rows[0]].tobytes()[:-1])
        args[-1] = remote._replace(lengths=lengths, checks=checks)
        with pytest.raises(CorruptDataError, match="raw bytes"):
            fn(*args)
    finally:
        co.close()
