"""``aset.to_dask()`` on a real ``dask.distributed`` LocalCluster of worker processes (issue 15, point 3)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")


def _walk(obj, seen: list) -> None:
    """Every object inside a task (tuples, lists, dicts and their items)."""
    seen.append(obj)
    if isinstance(obj, (tuple, list)):
        for x in obj:
            _walk(x, seen)
    elif isinstance(obj, dict):
        for x in obj.values():
            _walk(x, seen)


@pytest.fixture
def images_repo(repo):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("images", shape=(32, 32, 3), dtype=np.uint8)
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, size=(96, 32, 32, 3), dtype=np.uint8)
    with aset:
        for i in range(len(data)):
            aset[i] = data[i]
    co.commit("96 images")
    co.close()
    return repo, data


def test_the_graph_carries_locations_not_sample_bytes(images_repo):
    repo, data = images_repo
    co = repo.checkout()
    try:
        arr = co.arraysets["images"].to_dask(chunk_rows=16)
        graph = dict(arr.__dask_graph__())
        assert len(graph) == 6
        objects: list = []
        for task in graph.values():
            _walk(task, objects)
        assert not [o for o in objects if isinstance(o, (np.ndarray, bytes, bytearray, memoryview))]
        # 96 samples of 3 KiB: the graph holds their locations (~60 bytes each), not their bytes
        size = len(pickle.dumps(graph))
        assert size < data.nbytes / 10, size
        assert repo.path in {o for o in objects if isinstance(o, str)}
    finally:
        co.close()


def test_to_dask_computes_per_sample_means_on_a_local_cluster_of_worker_processes(images_repo):
    from distributed import Client, LocalCluster

    from hangar.dataloaders import daskarray

    repo, data = images_repo
    co = repo.checkout()
    try:
        arr = co.arraysets["images"].to_dask(chunk_rows=8)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            means = arr.mean(axis=(1, 2, 3)).compute()
            np.testing.assert_allclose(means, data.reshape(len(data), -1).mean(axis=1))
            stacked = arr[10:20].compute()
            np.testing.assert_array_equal(stacked, data[10:20])
            # the worker processes opened the store themselves (this process never did)
            opened = client.run(daskarray.opened_addresses)
            assert len(opened) == 2 and all(v in ([], [repo.path]) for v in opened.values()), opened
            assert [repo.path] in opened.values(), opened
        assert repo.path not in daskarray.opened_addresses()
    finally:
        co.close()
