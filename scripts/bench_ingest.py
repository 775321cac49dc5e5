"""Ingest benchmark (issue 14, W1 before the commit): the add phase alone, with a baseline tree.

W1 = 60,000 random uint8 (28, 28) samples, staged in a new arrayset three ways, each in a fresh
process per run (``--baseline DIR`` runs the same child with ``PYTHONPATH=DIR`` right after, so
both see the same load):

- ``stacked``: ``co['x', keys] = data`` (one call);
- ``loop``: ``x[i] = data[i]`` per sample, then the held samples stored (``co`` synced);
- ``with``: the same loop inside ``with x:``;
- ``per call``: the loop's ``x[i] = data[i]`` alone, held samples not stored (the hold bound
  raised past 60,000), thread CPU per call, minimum of 5 passes: the per-sample cost of the loop.

Wall seconds, process CPU seconds (every thread) and thread CPU seconds (the calling thread) of
each; the table shows medians and the ratio baseline / this (> 1: this tree is faster). With
``--profile`` it then prints where one stacked add and one loop of this tree spend their time
(cProfile, by own time). The machine is shared: compare ratios from one run.

    python scripts/bench_ingest.py --baseline /tmp/base-main --repeat 5 [--profile]
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
N, SHAPE = 60_000, (28, 28)
FORMS = ("stacked", "loop", "with")
#: address-space limit of a measuring child (W1 is 47 MB; the store and copies stay far below)
CHILD_AS_LIMIT = 4 << 30


def _repo(path: str):
    import numpy as np

    from hangar import Repository

    os.makedirs(path)
    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    return co, co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)


def _add(form: str, co, x, data) -> None:
    if form == "stacked":
        co["x", list(range(len(data)))] = data
    elif form == "loop":
        for i in range(len(data)):
            x[i] = data[i]
    else:
        with x:
            for i in range(len(data)):
                x[i] = data[i]
    with co:  # the outermost block's end stores what a loop holds back (a read would also build
        pass  # the staged stacks' pointers, which the commit does not need)


def child(tmp: str) -> dict:
    """In a fresh process: each form once (after an untimed warm-up), then the per-call pass."""
    import numpy as np

    import hangar
    import hangar.arrayset as arrayset_module

    if not os.path.abspath(hangar.__file__).startswith(os.environ["PYTHONPATH"] + os.sep):
        raise RuntimeError(f"measured {hangar.__file__}, not the tree {os.environ['PYTHONPATH']}")
    data = np.random.default_rng(1).integers(0, 256, size=(N, *SHAPE), dtype=np.uint8)
    out: dict = {}
    co, x = _repo(os.path.join(tmp, "warm"))
    for form in FORMS:
        _add(form, co, x, data[:64])
    co.close()
    for form in FORMS:
        co, x = _repo(os.path.join(tmp, form))
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        _add(form, co, x, data)
        out[form] = (time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0)
        co.close()
    arrayset_module.HOLD_MAX_SAMPLES = arrayset_module.HOLD_MAX_BYTES = 1 << 30
    co, x = _repo(os.path.join(tmp, "calls"))
    for i in range(N):  # grows the held stack to 60,000 rows: the passes below copy into it
        x[i] = data[i]
    held, best = x._held, float("inf")
    for _ in range(5):
        del held.keys[:]  # (private: a bench of the held rows) the held rows are forgotten, the stack kept
        if hasattr(x, "_arm_fast_hold"):
            x._arm_fast_hold(held)
        m0 = time.thread_time()
        for i in range(N):
            x[i] = data[i]
        best = min(best, time.thread_time() - m0)
    del held.keys[:]
    co.close()
    out["per call"] = best / N
    return out


def run_json_child(pythonpath: str, tmp_parent: str | None, module: str, call: str) -> dict:
    """``module.<call>`` (``{tmp}`` in ``call``: a fresh directory) in a child process importing hangar
    from ``pythonpath``, under CHILD_AS_LIMIT of address space; the dict it prints as JSON."""
    tmp = tempfile.mkdtemp(prefix=f"{module.replace('_', '-')}-", dir=tmp_parent)
    try:
        env = {**os.environ, "PYTHONPATH": pythonpath}
        code = ("import resource, sys, json; resource.setrlimit(resource.RLIMIT_AS, "
                f"({CHILD_AS_LIMIT}, {CHILD_AS_LIMIT})); sys.path.insert(0, {HERE!r}); import {module}; "
                f"print(json.dumps({module}.{call.format(tmp=repr(tmp))}))")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"child for {pythonpath} failed: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_child(pythonpath: str, tmp_parent: str | None) -> dict:
    return run_json_child(pythonpath, tmp_parent, "bench_ingest", "child({tmp})")


def profile(tmp_parent: str | None) -> None:
    """cProfile of one stacked add and one loop of this tree (after a warm-up), by own time."""
    import cProfile
    import pstats

    import numpy as np

    sys.path.insert(0, ROOT)
    data = np.random.default_rng(1).integers(0, 256, size=(N, *SHAPE), dtype=np.uint8)
    tmp = tempfile.mkdtemp(prefix="bench-ingest-prof-", dir=tmp_parent)
    try:
        co, x = _repo(os.path.join(tmp, "warm"))
        _add("stacked", co, x, data[:64])
        co.close()
        for form in ("stacked", "loop"):
            co, x = _repo(os.path.join(tmp, form))
            prof = cProfile.Profile()
            prof.enable()
            _add(form, co, x, data)
            prof.disable()
            co.close()
            print(f"\n--- cProfile of one {form} add of W1 (own time; the profiler inflates Python calls)")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="another hangar source tree to measure in the same run")
    ap.add_argument("--tmp", default=None, help="parent of the temporary directories")
    ap.add_argument("--profile", action="store_true", help="then print a cProfile of this tree's stacked add and loop")
    args = ap.parse_args()

    trees = {"this": ROOT}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    got: dict[str, list[dict]] = {label: [] for label in trees}
    for r in range(args.repeat):
        for label, path in trees.items():  # back to back: both see the same load
            res = run_child(path, args.tmp)
            got[label].append(res)
            print(f"run {r + 1}/{args.repeat} {label}: " + ", ".join(
                f"{f} {res[f][0] * 1e3:.0f} ms (cpu {res[f][1] * 1e3:.0f}, thread {res[f][2] * 1e3:.0f})"
                for f in FORMS) + f", per call {res['per call'] * 1e6:.2f} us", flush=True)

    print(f"\nW1 add phase (60,000 x uint8 (28, 28)), median of {args.repeat} fresh processes; "
          "x = baseline / this (> 1: this is faster)")
    header = f"{'form':<10}{'tree':<10}{'wall ms':>9}{'cpu ms':>9}{'thread ms':>11}"
    if args.baseline:
        header += f"{'wall x':>8}{'cpu x':>8}{'thread x':>10}"
    print(header)
    print("-" * len(header))
    med = {label: {f: [statistics.median(v[f][k] for v in got[label]) for k in range(3)] for f in FORMS}
           for label in trees}
    for form in FORMS:
        for label in trees:
            m = med[label][form]
            line = f"{form:<10}{label:<10}{m[0] * 1e3:>9.1f}{m[1] * 1e3:>9.1f}{m[2] * 1e3:>11.1f}"
            if args.baseline and label == "this":
                b = med["baseline"][form]
                line += "".join(f"{b[k] / m[k]:>{w}.2f}" for k, w in ((0, 8), (1, 8), (2, 10)))
            print(line)
    calls = {label: min(v["per call"] for v in got[label]) for label in trees}
    line = f"{'per call':<10}{'this':<10}{calls['this'] * 1e6:>9.2f} us (thread CPU, min)"
    if args.baseline:
        line += f"; baseline {calls['baseline'] * 1e6:.2f} us; x {calls['baseline'] / calls['this']:.2f}"
    print(line)
    if args.profile:
        profile(args.tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
