"""Per-sample statistics of an arrayset on a dask.distributed cluster of worker processes.

Builds a small repository of random images, then computes every image's mean on a
``LocalCluster`` with two worker processes. ``aset.to_dask()`` gives a lazy dask array whose
tasks hold only the repository's path, the commit and where each chunk's samples lie in the
packs: every worker opens the repository itself and reads its chunks from disk, so no sample
bytes pass through the scheduler. On a real cluster, the workers need the repository's
directory at the same path (a shared file system).

Usage: python examples/dask_cluster.py [WORKDIR]   (needs ``pip install 'hangar[dask]' distributed``)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import numpy as np
from distributed import Client, LocalCluster

from hangar import Repository


def main(path: str) -> None:
    repo = Repository(path, exists=False)
    repo.init(user_name="Ada Lovelace", user_email="ada@example.com")
    co = repo.checkout(write=True)
    images = co.arraysets.init_arrayset("images", shape=(64, 64, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    with images:
        for i in range(256):
            images[i] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    co.commit("256 random images")
    co.close()

    co = repo.checkout()  # read-only checkout of master
    try:
        images = co.arraysets["images"]
        arr = images.to_dask(chunk_rows=32)  # lazy: (256, 64, 64, 3), 8 chunks, nothing read yet
        print(f"dask array {arr.shape} {arr.dtype} in {arr.npartitions} chunks")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster):
            means = arr.mean(axis=(1, 2, 3)).compute()  # one mean per image, computed on the workers
        expected = np.array([images[i].mean() for i in range(len(images))])
        assert np.allclose(means, expected), "cluster means differ from in-process means"
        print(f"per-image means on 2 worker processes: first {means[:3].round(2).tolist()}, "
              f"overall {means.mean():.2f}; they match the in-process means")
    finally:
        co.close()


if __name__ == "__main__":
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="hangar-dask-")
    try:
        os.makedirs(work, exist_ok=True)
        main(work)
    finally:
        if len(sys.argv) <= 1:
            shutil.rmtree(work, ignore_errors=True)
