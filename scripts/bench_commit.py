"""Commit-path benchmark (issue 14, write side): commit call of many new samples, with a baseline.

Measures, each run in a fresh process (``--baseline DIR`` runs the same measurement with
``PYTHONPATH=DIR`` right after, so both see the same machine load):

- the ``commit()`` call after ``co[aset, keys] = stacked`` of 60,000 x uint8 (28, 28)
  (goal <= 0.1 s) and of 1,000,000 x uint8 (4,) (the first commit; goal <= 3 s);
- wall seconds and CPU seconds of that call (CPU counts every thread of the process: on a
  shared, loaded box it is the steadier figure), and the CPU seconds of the calling thread alone
  (``thread s``: the commit's critical path when a second core is free; the data flush and the
  location tables run in a thread of their own).

With ``--writes`` it then prints the write+commit rows of ``bench_peers.py --writes only``
(W1 stacked, W1 loop, W1 loop inside ``with aset:``, W2r, W3; Deep Lake, lmdb and Icechunk
in the same run; the disk's durable write speed from ``dd ... bs=4M conv=fdatasync``).

    python scripts/bench_commit.py --baseline /work/main --repeat 3 --writes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = {"60k": (60_000, (28, 28)), "1M": (1_000_000, (4,))}  # x uint8 (28, 28) and (4,)
GOALS = {"60k": 0.1, "1M": 3.0}
#: address-space limit of a measuring child (the 1M case needs ~1.5 GiB)
CHILD_AS_LIMIT = 8 << 30


def child(n: int, shape: tuple[int, ...], tmp: str) -> dict:
    """Run in a fresh process: stacked add of ``n`` samples, then time the commit call."""
    import numpy as np

    import hangar
    from hangar import Repository

    if not os.path.abspath(hangar.__file__).startswith(os.environ["PYTHONPATH"] + os.sep):
        raise RuntimeError(f"measured {hangar.__file__}, not the tree {os.environ['PYTHONPATH']}")
    data = np.random.default_rng(1).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    os.makedirs(tmp, exist_ok=True)
    repo = Repository(tmp, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=shape, dtype=np.uint8)
    t0 = time.perf_counter()
    co["x", list(range(n))] = data
    t1, c1, m1 = time.perf_counter(), time.process_time(), time.thread_time()
    co.commit("ingest")
    t2, c2, m2 = time.perf_counter(), time.process_time(), time.thread_time()
    co.close()
    return {"add": t1 - t0, "commit": t2 - t1, "commit_cpu": c2 - c1, "commit_thread": m2 - m1}


def run_child(pythonpath: str, n: int, shape: tuple[int, ...], tmp_parent: str | None) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-commit-", dir=tmp_parent)
    try:
        env = {**os.environ, "PYTHONPATH": pythonpath}
        code = ("import resource, sys, json; resource.setrlimit(resource.RLIMIT_AS, "
                f"({CHILD_AS_LIMIT}, {CHILD_AS_LIMIT})); sys.path.insert(0, {HERE!r}); import bench_commit; "
                f"print(json.dumps(bench_commit.child({n}, {tuple(shape)!r}, {os.path.join(tmp, 'r')!r})))")
        # cwd: not a source tree (``python -c`` puts the cwd first on sys.path, before PYTHONPATH)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=tmp)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="another hangar source tree to measure in the same run")
    ap.add_argument("--tmp", default=None, help="parent of the temporary directories")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--writes", action="store_true", help="also print bench_peers' write+commit rows")
    ap.add_argument("--dd-mib", type=int, default=1024, help="size of the dd durable-write probe (with --writes)")
    args = ap.parse_args()

    trees = {"this": ROOT}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    got: dict[tuple[str, str], list[dict]] = {}
    for case in args.cases.split(","):
        n, shape = CASES[case]
        for r in range(args.repeat):
            for label, path in trees.items():  # back to back: both see the same load
                res = run_child(path, n, shape, args.tmp)
                got.setdefault((case, label), []).append(res)
                print(f"run {r + 1}/{args.repeat} {case} {label}: add {res['add']:.3f}s, commit "
                      f"{res['commit']:.3f}s (cpu {res['commit_cpu']:.3f}s, thread {res['commit_thread']:.3f}s)",
                      flush=True)

    print(f"\ncommit() of new samples after one stacked add, median of {args.repeat} fresh processes")
    header = f"{'case':<16}{'tree':<10}{'commit s':>10}{'cpu s':>9}{'thread s':>10}{'goal s':>8}"
    if args.baseline:
        header += f"{'x faster':>10}{'cpu x':>8}{'thread x':>10}"
    print(header)
    print("-" * len(header))
    for case in args.cases.split(","):
        med = {label: {k: statistics.median(v[k] for v in got[(case, label)])
                       for k in ("commit", "commit_cpu", "commit_thread")} for label in trees}
        for label in trees:
            m = med[label]
            line = (f"{case:<16}{label:<10}{m['commit']:>10.3f}{m['commit_cpu']:>9.3f}{m['commit_thread']:>10.3f}"
                    f"{GOALS[case]:>8.2f}")
            if args.baseline and label == "this":
                b = med["baseline"]
                line += (f"{b['commit'] / m['commit']:>10.2f}{b['commit_cpu'] / m['commit_cpu']:>8.2f}"
                         f"{b['commit_thread'] / m['commit_thread']:>10.2f}")
            print(line)

    if args.writes:
        sys.path.insert(0, HERE)
        import bench_peers

        peers_args = argparse.Namespace(repeat=args.repeat, tmp=args.tmp, n=60_000, dd_mib=args.dd_mib)
        print()
        bench_peers.run_writes(peers_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
