#!/usr/bin/env python3
"""Benchmark diff, merge and branch/checkout against their targets.

Targets (issue 14, at 60,000 and at 1,000,000 samples, 600 samples changed on each of two
branches): diff <= 5 ms, 3-way merge <= 10 ms; and 60,000-sample create branch + writer
checkout <= 5 ms (the earlier "Diff and merge" issue: diff <= 50 ms, merge <= 200 ms at 100 changes).

Usage: python3 scripts/bench_diffmerge.py [--samples 1000000] [--small 60000] [--changed 600]
                                          [--repeat 5] [--dir DIR]

Samples are tiny ``(1,)`` uint8 arrays so the big repository builds quickly; diff and
merge cost depends on the git trees, not on the sample bytes. Each timing is the median
of ``--repeat`` runs (the first, cold run is shown too).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

import numpy as np

from hangar import Repository
from hangar.diff import diff_commits


def _build(path: str, n: int) -> Repository:
    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(1,), dtype=np.uint8)
    co["x", list(range(n))] = (np.arange(n) & 255).astype(np.uint8).reshape(n, 1)  # the bulk form
    co.commit(f"{n} samples")
    co.close()
    return repo


def _change(repo: Repository, branch: str, keys: list[int], value: int, message: str) -> str:
    co = repo.checkout(write=True, branch=branch)
    aset = co.arraysets["x"]
    arr = np.array([value], dtype=np.uint8)
    for k in keys:
        aset[k] = arr
    head = co.commit(message)
    co.close()
    return head


def _timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=60_000)
    ap.add_argument("--changed", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to build (default: a temporary directory)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="hangar-bench-diffmerge-", dir=args.dir)
    rows: list[tuple[str, float, float, str]] = []
    try:
        big = os.path.join(root, "big")
        os.makedirs(big)
        t0 = time.perf_counter()
        repo = _build(big, args.samples)
        build_s = time.perf_counter() - t0
        print(f"built {args.samples:,} samples in {build_s:.1f} s")

        rng = random.Random(0)
        keys = [k for k in rng.sample(range(args.samples), 4 * args.changed) if k & 255 not in (7, 9)]
        keys = keys[:2 * args.changed]  # the new values 7 / 9 really change these samples
        repo.create_branch("dev")
        m_head = _change(repo, "master", keys[:args.changed], 7, "master edits")
        d_head = _change(repo, "dev", keys[args.changed:], 9, "dev edits")
        git = repo._git

        reader = repo.checkout(branch="master")

        def diff_branch(_: int) -> None:
            res = reader.diff.branch("dev")
            assert len(res.diff.mutated.samples) == 2 * args.changed and not res.conflict.conflict

        first, med = _timed(diff_branch, args.repeat)
        reader.close()
        rows.append(("diff: reader.diff.branch (3-way, with conflict check)", first, med, "<= 5 ms"))

        def diff_open(_: int) -> None:
            co = repo.checkout(branch="master")  # leaving ``with co:`` would not close it (Hangar 0.3)
            try:
                co.diff.branch("dev")
            finally:
                co.close()

        first, med = _timed(diff_open, args.repeat)
        rows.append(("diff: open reader + diff.branch + close", first, med, ""))

        def diff_records(_: int) -> None:
            diff_commits(git, m_head, d_head)

        first, med = _timed(diff_records, args.repeat)
        rows.append(("diff: records only (diff_commits)", first, med, "<= 5 ms"))

        def merge3(i: int) -> None:
            name = f"m{i}"
            git.set_branch(name, m_head)  # a fresh copy of master for each run (not timed work)
            t = time.perf_counter()
            new = repo.merge("merge dev", name, "dev")
            merge3.elapsed.append(time.perf_counter() - t)  # type: ignore[attr-defined]
            assert git.commit_info(new).parents == [m_head, d_head]

        merge3.elapsed = []  # type: ignore[attr-defined]
        _timed(merge3, args.repeat)
        el = merge3.elapsed  # type: ignore[attr-defined]
        rows.append(("merge: Repository.merge 3-way (commit written)", el[0], statistics.median(el), "<= 10 ms"))

        def merge_ff(i: int) -> None:
            name = f"ff{i}"
            git.set_branch(name, git.commit_info(d_head).parents[0])
            t = time.perf_counter()
            assert repo.merge("ff", name, "dev") == d_head
            merge_ff.elapsed.append(time.perf_counter() - t)  # type: ignore[attr-defined]

        merge_ff.elapsed = []  # type: ignore[attr-defined]
        _timed(merge_ff, args.repeat)
        el = merge_ff.elapsed  # type: ignore[attr-defined]
        rows.append(("merge: Repository.merge fast-forward", el[0], statistics.median(el), ""))
        shutil.rmtree(big, ignore_errors=True)

        small = os.path.join(root, "small")
        os.makedirs(small)
        srepo = _build(small, args.small)

        def branch_checkout(i: int) -> None:
            t = time.perf_counter()
            srepo.create_branch(f"b{i}")
            co = srepo.checkout(write=True, branch=f"b{i}")
            branch_checkout.elapsed.append(time.perf_counter() - t)  # type: ignore[attr-defined]
            co.close()

        branch_checkout.elapsed = []  # type: ignore[attr-defined]
        _timed(branch_checkout, args.repeat)
        el = branch_checkout.elapsed  # type: ignore[attr-defined]
        rows.append((f"create_branch + checkout(write=True) at {args.small:,}", el[0], statistics.median(el),
                     "<= 5 ms"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"{args.samples:,} samples, {args.changed} changed on each branch; median of {args.repeat}")
    w = max(len(r[0]) for r in rows)
    print(f"{'operation':<{w}}  {'first ms':>9}  {'median ms':>9}  target")
    for name, first, med, target in rows:
        print(f"{name:<{w}}  {first * 1e3:9.2f}  {med * 1e3:9.2f}  {target}")


if __name__ == "__main__":
    main()
