#!/usr/bin/env python3
"""Benchmark diff, merge and branch/checkout against their targets.

Targets (issue 14, at 60,000 and at 1,000,000 samples, 600 samples changed on each of two
branches): diff <= 5 ms, 3-way merge <= 10 ms; and 60,000-sample create branch + writer
checkout <= 5 ms (the earlier "Diff and merge" issue: diff <= 50 ms, merge <= 200 ms at 100 changes).

Both sizes run in one invocation (``--sizes``), each beside Deep Lake's 3-way merge of the same
600 + 600 disjoint changes in the same run (skipped when ``deeplake`` is not installed), with the
ratio. "records only" rows time the record work alone (classification, merged trees built in
memory: no pack, commit or ref written); the full merge adds three fsynced writes, whose latency
on a shared disk varies from ~0.3 to ~15 ms. Each full merge run has its own message, so each
writes a new commit and pack (with one message, the runs of one second made the same commit
and all but the first skipped the pack write). A row times the commit of the same 1,200
changes on one branch: the merge should cost little more than it.

Usage: python3 scripts/bench_diffmerge.py [--sizes 60000,1000000] [--small 60000] [--changed 600]
                                          [--repeat 5] [--dir DIR] [--no-deeplake]

Diff rows after the "no change record" rows read the change records those runs kept (the
records of a pair of trees are kept by the first diff that walks them; see
``docs/diff-merge.md``); the baseline without records walks every time.

Samples are tiny ``(1,)`` uint8 arrays so the big repository builds quickly; diff and
merge cost depends on the git trees, not on the sample bytes. Each timing is the median
of ``--repeat`` runs (the first, cold run is shown too).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
from typing import Optional

import numpy as np

from hangar import Repository
from hangar.diff import diff_commits
from hangar.records.treediff import TreeReader, three_way


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


def _timed(fn, repeat: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each run: this process's CPU time (all threads) is little moved by
    other processes on the machine, the wall time is."""
    times = []
    for i in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def _deeplake_merge(path: str, n: int, master_keys: list[int], dev_keys: list[int],
                    repeat: int) -> Optional[list[tuple[float, float]]]:
    """Seconds of Deep Lake's ``merge`` of the same disjoint changes, per run (a fresh dataset each)."""
    try:
        import deeplake
    except ImportError:
        return None
    times = []
    for i in range(repeat):
        url = f"file://{os.path.join(path, f'dl{i}')}"
        ds = deeplake.create(url)
        ds.add_column("x", deeplake.types.Array("uint8", shape=[1]))
        ds.append({"x": (np.arange(n) & 255).astype(np.uint8).reshape(n, 1)})
        ds.commit("base")
        dev = ds.branch("dev").open()
        for target, keys, value in ((ds, master_keys, 7), (dev, dev_keys, 9)):
            col = target["x"]
            v = np.array([value], dtype=np.uint8)
            for k in keys:
                col[k] = v
            target.commit("edits")
        c, t = time.process_time(), time.perf_counter()
        ds.merge("dev")
        times.append((time.perf_counter() - t, time.process_time() - c))
        del ds, dev
        shutil.rmtree(os.path.join(path, f"dl{i}"), ignore_errors=True)
    return times


Row = tuple[str, list[tuple[float, float]], str]  # name, (wall, CPU) seconds per run, target


def _size_rows(root: str, n: int, changed: int, repeat: int, deeplake: bool) -> list[Row]:
    rows: list[Row] = []
    big = os.path.join(root, f"big{n}")
    os.makedirs(big)
    t0 = time.perf_counter()
    repo = _build(big, n)
    print(f"built {n:,} samples in {time.perf_counter() - t0:.1f} s", flush=True)
    rng = random.Random(0)
    keys = [k for k in rng.sample(range(n), 4 * changed) if k & 255 not in (7, 9)]
    keys = keys[:2 * changed]  # the new values 7 / 9 really change these samples
    repo.create_branch("dev")
    m_head = _change(repo, "master", keys[:changed], 7, "master edits")
    d_head = _change(repo, "dev", keys[changed:], 9, "dev edits")
    git = repo._core.git
    at = f"{n:,}: "

    records = os.path.join(git.git_dir, "hangar-changes")  # change records (hangar.records.changes)

    def diff_walk(_: int) -> None:
        shutil.rmtree(records, ignore_errors=True)  # not timed apart: an rmtree of a few files
        res = diff_commits(git, git.commit_info(d_head).parents[0], d_head)
        assert len(res.diff.mutated.samples) == changed

    times = _timed(diff_walk, repeat)
    rows.append((at + f"diff: diff_commits linear ({changed} changed), no change record: walks, keeps it",
                 times, ""))

    def diff_walk3(_: int) -> None:
        shutil.rmtree(records, ignore_errors=True)
        diff_commits(git, m_head, d_head)

    times = _timed(diff_walk3, repeat)
    rows.append((at + "diff: records only (diff_commits, 3-way), no change records: walks, keeps them", times, ""))

    reader = repo.checkout(branch="master")

    def diff_branch(_: int) -> None:
        res = reader.diff.branch("dev")
        assert len(res.diff.mutated.samples) == 2 * changed and not res.conflict.conflict

    times = _timed(diff_branch, repeat)
    reader.close()
    rows.append((at + "diff: reader.diff.branch (3-way, 600+600, conflict check)", times, "<= 5 ms"))

    def diff_linear(_: int) -> None:
        res = diff_commits(git, git.commit_info(d_head).parents[0], d_head)
        assert len(res.diff.mutated.samples) == changed

    times = _timed(diff_linear, repeat)
    rows.append((at + f"diff: diff_commits linear ({changed} changed)", times, "<= 5 ms"))

    def diff_records(_: int) -> None:
        diff_commits(git, m_head, d_head)

    times = _timed(diff_records, repeat)
    rows.append((at + "diff: records only (diff_commits, 3-way)", times, "<= 5 ms"))

    trees = [bytes.fromhex(git.commit_tree_id(c)) for c in (git.merge_base(m_head, d_head), m_head, d_head)]

    def merge_records(_: int) -> None:
        plan = three_way(TreeReader(git), *trees)
        assert not plan.conflicts

    times = _timed(merge_records, repeat)
    rows.append((at + "merge: records only (three_way, trees in memory)", times, ""))

    def merge3(i: int) -> None:
        name = f"m{i}"
        git.set_branch(name, m_head)  # a fresh copy of master for each run (not timed work)
        c, t = time.process_time(), time.perf_counter()
        new = repo.merge(f"merge dev {i}", name, "dev")  # a new commit (and pack) each run
        merge3.elapsed.append((time.perf_counter() - t, time.process_time() - c))  # type: ignore[attr-defined]
        assert git.commit_info(new).parents == [m_head, d_head]

    merge3.elapsed = []  # type: ignore[attr-defined]
    _timed(merge3, repeat)
    el = merge3.elapsed  # type: ignore[attr-defined]
    rows.append((at + "merge: Repository.merge 3-way (commit written)", el, "<= 10 ms"))
    if deeplake:
        dl = _deeplake_merge(root, n, keys[:changed], keys[changed:], repeat)
        if dl is not None:
            rows.append((at + "merge: Deep Lake ds.merge, same changes", dl, ""))
            wall = [w for w, _ in el], [w for w, _ in dl]
            cpu = min(c for _, c in el) / min(c for _, c in dl)
            med = statistics.median(wall[0]) / statistics.median(wall[1])
            rows.append((at + f"merge: hangar / Deep Lake: median {med:.2f}, min {min(wall[0]) / min(wall[1]):.2f}, "
                         f"CPU {cpu:.2f}", [], "<= 3"))

    def commit_both(i: int) -> None:
        # the commit of the same 2 x 600 changes on one branch: the merge's goal is to cost little
        # more than this (both write trees, a commit and a ref, one pack)
        name = f"c{i}"
        git.set_branch(name, git.merge_base(m_head, d_head))
        co = repo.checkout(write=True, branch=name)
        aset = co.arraysets["x"]
        for k, v in ((k, 7) for k in keys[:changed]):
            aset[k] = np.array([v], dtype=np.uint8)
        for k in keys[changed:]:
            aset[k] = np.array([9], dtype=np.uint8)
        c, t = time.process_time(), time.perf_counter()
        co.commit(f"both {i}")
        commit_both.elapsed.append((time.perf_counter() - t, time.process_time() - c))  # type: ignore[attr-defined]
        co.close()

    commit_both.elapsed = []  # type: ignore[attr-defined]
    _timed(commit_both, repeat)
    rows.append((at + f"commit of the same {2 * changed} changes (co.commit only)", commit_both.elapsed, ""))  # type: ignore[attr-defined]

    def merge_ff(i: int) -> None:
        name = f"ff{i}"
        git.set_branch(name, git.commit_info(d_head).parents[0])
        c, t = time.process_time(), time.perf_counter()
        assert repo.merge("ff", name, "dev") == d_head
        merge_ff.elapsed.append((time.perf_counter() - t, time.process_time() - c))  # type: ignore[attr-defined]

    merge_ff.elapsed = []  # type: ignore[attr-defined]
    _timed(merge_ff, repeat)
    el = merge_ff.elapsed  # type: ignore[attr-defined]
    rows.append((at + "merge: Repository.merge fast-forward", el, ""))
    shutil.rmtree(big, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="60000,1000000", help="repository sizes in samples, comma-separated")
    ap.add_argument("--samples", type=int, default=None, help="one size only (overrides --sizes)")
    ap.add_argument("--small", type=int, default=60_000)
    ap.add_argument("--changed", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-deeplake", action="store_true", help="skip the Deep Lake merge rows")
    ap.add_argument("--dir", default=None, help="where to build (default: a temporary directory)")
    args = ap.parse_args()
    sizes = [args.samples] if args.samples else [int(x) for x in args.sizes.split(",")]
    logging.disable(logging.WARNING)
    root = tempfile.mkdtemp(prefix="hangar-bench-diffmerge-", dir=args.dir)
    rows: list[Row] = []
    try:
        for n in sizes:
            rows += _size_rows(root, n, args.changed, args.repeat, not args.no_deeplake)
        small = os.path.join(root, "small")
        os.makedirs(small)
        srepo = _build(small, args.small)

        def branch_checkout(i: int) -> None:
            c, t = time.process_time(), time.perf_counter()
            srepo.create_branch(f"b{i}")
            co = srepo.checkout(write=True, branch=f"b{i}")
            branch_checkout.elapsed.append((time.perf_counter() - t, time.process_time() - c))  # type: ignore[attr-defined]
            co.close()

        branch_checkout.elapsed = []  # type: ignore[attr-defined]
        _timed(branch_checkout, args.repeat)
        el = branch_checkout.elapsed  # type: ignore[attr-defined]
        rows.append((f"create_branch + checkout(write=True) at {args.small:,}", el, "<= 5 ms"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"{args.changed} samples changed on each branch; {args.repeat} runs each, milliseconds: wall time of the "
          "first, the median and the least disturbed run, and the least CPU time of this process (all threads; "
          "on a loaded machine the steadiest)")
    w = max(len(r[0]) for r in rows)
    print(f"{'operation':<{w}}  {'first ms':>9}  {'median ms':>9}  {'min ms':>9}  {'CPU min':>9}  target")
    for name, times, target in rows:
        if not times:
            print(f"{name:<{w}}  {'':>9}  {'':>9}  {'':>9}  {'':>9}  {target}")
        else:
            wall = [t for t, _ in times]
            print(f"{name:<{w}}  {wall[0] * 1e3:9.2f}  {statistics.median(wall) * 1e3:9.2f}  "
                  f"{min(wall) * 1e3:9.2f}  {min(c for _, c in times) * 1e3:9.2f}  {target}")


if __name__ == "__main__":
    main()
