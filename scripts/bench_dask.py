"""Benchmark: a per-sample mean over an arrayset on a dask.distributed LocalCluster vs in-process numpy.

Usage: python scripts/bench_dask.py [--images N] [--workers K] [--keep DIR]

Builds N random uint8 (224, 224, 3) images (default 2,000: 301 MB), then computes every
image's mean three ways in the same run, each twice (best kept):

* numpy in this process: read each sample (``aset[i]``), take its mean;
* ``aset.to_dask()`` on dask's threaded scheduler in this process;
* ``aset.to_dask()`` on a ``LocalCluster`` of K worker processes (default 2), each reading
  its chunks from the packs itself (cluster start-up not counted; printed apart).

Prints seconds, samples/s, MB/s and each one's ratio to in-process numpy.
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


def main() -> None:
    from distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None)
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="hangar-bench-dask-")
    os.makedirs(work, exist_ok=True)
    try:
        nbytes = build(work, args.images)
        repo = Repository(work)
        co = repo.checkout()
        aset = co.arraysets["images"]
        keys = list(aset.keys())

        t_np, m_np = best(lambda: np.array([aset[k].mean() for k in keys]))
        arr = aset.to_dask()
        t_thr, m_thr = best(lambda: arr.mean(axis=(1, 2, 3)).compute(scheduler="threads"))
        t0 = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster):
            startup = time.perf_counter() - t0
            t_cl, m_cl = best(lambda: arr.mean(axis=(1, 2, 3)).compute())
        co.close()
        assert np.allclose(m_np, m_thr) and np.allclose(m_np, m_cl)
        n = args.images
        print(f"mean per image over {n} x (224, 224, 3) uint8 ({nbytes / 1e6:.0f} MB), best of 2; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for label, t in (("numpy, in-process", t_np), ("dask threads, in-process", t_thr),
                         (f"dask LocalCluster, {args.workers} processes", t_cl)):
            print(f"  {label:34s} {t:6.2f}s  {n / t:8,.0f} samples/s  {nbytes / 1e6 / t:6.0f} MB/s  "
                  f"{t_np / t:5.2f}x numpy")
        print(f"  (LocalCluster start-up {startup:.1f}s, not counted)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
