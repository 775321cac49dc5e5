#!/usr/bin/env python3
"""Benchmark: what the record values of a diff cost (issue 10's Hangar 0.3 diff records).

A diff reports every changed record with its value (``SampleVal``: digest, dtype, shape),
read from the record's git blob. This times, in one run and on one repository of
``--samples`` distinct samples added in one commit:

  * walk:   the record-level tree diff alone (``records.treediff.diff_trees``)
  * keys:   the walk plus the decoded keys, sorted (what a diff without values costs)
  * full:   ``diff_commits``: keys plus every value (one blob read per changed sample)

and prints the ratios full / keys and full / walk.

Usage: python3 scripts/bench_diff_values.py [--samples 100000] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import numpy as np

from hangar import Repository
from hangar.diff import diff_commits
from hangar.records.keys import decode_key, sort_key
from hangar.records.treediff import TreeReader, diff_trees


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to build (default: a temporary directory)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="hangar-bench-diffvalues-", dir=args.dir)
    try:
        repo = Repository(root, exists=False)
        repo.init("bench", "bench@example.com")
        co = repo.checkout(write=True)
        co.metadata["start"] = "1"
        first = co.commit("start")
        co.arraysets.init_arrayset("x", shape=(1,), dtype=np.uint32)
        n = args.samples
        co["x", list(range(n))] = np.arange(n, dtype=np.uint32).reshape(n, 1)  # n distinct pointer blobs
        second = co.commit(f"{n} samples")
        co.close()
        git = repo._git
        a, b = bytes.fromhex(git.commit_tree_id(first)), bytes.fromhex(git.commit_tree_id(second))

        def walk() -> None:
            diff_trees(TreeReader(git), a, b)

        def keys() -> None:
            td = diff_trees(TreeReader(git), a, b)
            for ch in td.arraysets.values():
                sorted((decode_key(k) for k in ch.samples), key=sort_key)

        def full() -> None:
            res = diff_commits(git, first, second)
            assert len(res.diff.added.samples) == n

        t_walk, t_keys, t_full = (_median(f, args.repeat) for f in (walk, keys, full))
        print(f"{n:,} added samples, median of {args.repeat}")
        print(f"walk (records.treediff.diff_trees)      {t_walk:8.3f} s")
        print(f"walk + keys (a diff without values)     {t_keys:8.3f} s")
        print(f"diff_commits (keys + values)            {t_full:8.3f} s")
        print(f"ratio full / keys: {t_full / t_keys:.2f}x   full / walk: {t_full / t_walk:.2f}x   "
              f"values: {(t_full - t_keys) / n * 1e6:.1f} us per sample")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
