#!/usr/bin/env python3
"""Hangar-0.3-style batched writes: a per-sample loop inside ``with aset:`` against the bulk form.

Writes N random uint8 samples of (28, 28) (default N = 60,000, ``--quick``: 6,000) into a
fresh repository, then ``co.commit()`` + ``co.close()``, three ways, in one run:

* ``with aset:`` loop - ``with co.arraysets['x'] as aset: for i: aset[i] = data[i]``
  (Hangar 0.3's idiom; the samples are held back and stored in bulk as the block ends);
* stacked bulk      - ``co['x', list(range(N))] = data`` (one call: the fastest form);
* plain loop        - ``aset[i] = data[i]`` for every sample without a ``with`` block
  (one store lookup and one staging update per sample).

Each timing covers init_arrayset .. close (not Repository.init) and runs ``--repeat`` times
(default 3, the three forms interleaved) in fresh directories under /tmp; the medians are
printed with the ratios
``time / stacked bulk`` (1.0 = as fast as the bulk form). ``--chunks`` also times the
``with`` loop for several hold-back bounds (samples per bulk write), which is how
``hangar.arrayset.HOLD_MAX_SAMPLES`` was chosen.

Usage::

    python3 scripts/bench_compat.py            # 60,000 samples, median of 3
    python3 scripts/bench_compat.py --quick    # smoke run
    python3 scripts/bench_compat.py --chunks   # also sweep the hold-back bound
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable

import numpy as np

import hangar.arrayset as arrayset_module
from hangar import Repository


def _fresh(tmp: str, tag: str) -> Repository:
    path = tempfile.mkdtemp(prefix=f"{tag}-", dir=tmp)
    repo = Repository(path, exists=False)
    repo.init(user_name="bench", user_email="bench@example.com")
    return repo


def write_with_block(repo: Repository, data: np.ndarray) -> None:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=data.shape[1:], dtype=data.dtype)
    with co.arraysets["x"] as aset:
        for i in range(len(data)):
            aset[i] = data[i]
    co.commit("with aset loop")
    co.close()


def write_stacked(repo: Repository, data: np.ndarray) -> None:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=data.shape[1:], dtype=data.dtype)
    co["x", list(range(len(data)))] = data
    co.commit("stacked bulk")
    co.close()


def write_plain_loop(repo: Repository, data: np.ndarray) -> None:
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=data.shape[1:], dtype=data.dtype)
    for i in range(len(data)):
        aset[i] = data[i]
    co.commit("plain loop")
    co.close()


def once(fn: Callable[[Repository, np.ndarray], None], tmp: str, data: np.ndarray) -> float:
    repo = _fresh(tmp, fn.__name__)
    t0 = time.perf_counter()
    fn(repo, data)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(repo.path, ignore_errors=True)
    return elapsed


def timed(fn: Callable[[Repository, np.ndarray], None], tmp: str, data: np.ndarray, repeat: int) -> float:
    return statistics.median(once(fn, tmp, data) for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="6,000 samples instead of 60,000")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    p.add_argument("--chunks", action="store_true", help="also sweep the hold-back bound of the with loop")
    args = p.parse_args(argv)
    n = 6_000 if args.quick else 60_000
    data = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    print(f"{n} x (28, 28) uint8, write + commit + close, median of {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="bench_compat-", dir="/tmp") as tmp:
        forms = [("stacked bulk co['x', keys] = stack", write_stacked),
                 ("per-sample loop inside `with aset:`", write_with_block),
                 ("per-sample loop, no `with`", write_plain_loop)]
        times: dict[str, list[float]] = {label: [] for label, _ in forms}
        for _ in range(args.repeat):  # interleaved, so a change in machine load hits every form alike
            for label, fn in forms:
                times[label].append(once(fn, tmp, data))
        rows = [(label, statistics.median(ts)) for label, ts in times.items()]
        bulk = rows[0][1]
        for label, t in rows:
            print(f"  {label:<40} {t:8.3f} s  {n / t:>10,.0f} samples/s  ratio to bulk {t / bulk:5.2f}")
        if args.chunks:
            saved = arrayset_module.HOLD_MAX_SAMPLES
            try:
                for chunk in (256, 1024, 4096, 16384, 65536):
                    arrayset_module.HOLD_MAX_SAMPLES = chunk
                    t = timed(write_with_block, tmp, data, args.repeat)
                    print(f"  with loop, {chunk:>6} samples per bulk write {t:8.3f} s  ratio to bulk {t / bulk:5.2f}")
            finally:
                arrayset_module.HOLD_MAX_SAMPLES = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
