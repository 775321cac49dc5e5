#!/usr/bin/env python3
"""Cost of the per-sample checksum (xxh3-64 of the stored bytes) and record validation on reads.

Writes the two datasets of ``scripts/bench.py`` (random uint8, 60,000 x (28, 28) and
2,000 x (224, 224, 3); ``--quick``: a tenth), copies the repository and rewrites the copy's
pack indexes in format 1 (no checksums: reads skip the check), then times the read rows of
``scripts/bench.py``, each in a fresh child process (only the read loop is timed), rotating
the variants so all see the same machine load:

* sequential read: ``repo.checkout()`` + ``aset.values()`` (the bulk path),
* random read: ``aset[k]`` for 5,000 (2,000) random keys (the single-sample path).

Variants: ``checked`` (this code, format-2 packs), ``unchecked`` (this code, format-1 copy)
and, with ``--baseline DIR`` (a source tree of an earlier hangar, e.g. ``git archive`` of
main), ``baseline`` (that code reading the format-1 copy); with ``--before DIR``, ``before``
(that code reading the checked copy: the check's cost before a change, in the same run). The table shows the minimum and
the median of ``--repeat`` runs and ratios ``other / checked`` (1.0: free; 0.97: checked is 3%
slower) of the minima, of the medians, and the median of the ratios paired by round (each
round times every variant back to back, so a pair shares the machine's load of that moment).
Minima, because other processes on a shared machine only ever add time; the paired median,
because a loaded machine's minima still wander by 10-20% between runs of a 50 ms read loop.
``--only large`` times only the 2,000 x (224, 224, 3) set; ``--per-read`` times each random read
alone and reports the number of reads times the median read (the same reads, blind to one that
was preempted); ``--cpu`` the CPU time of the reading process (all its threads).

Usage::

    python3 scripts/bench_checksum.py [--quick] [--repeat 15] [--only small|large] [--cpu]
        [--baseline /tmp/hangar-main] [--before /tmp/hangar-main]
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

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hangar import Repository
from hangar.store.packs import INDEX_DTYPE_V1, parse_index


def make_repo(path: str, data: np.ndarray) -> None:
    os.makedirs(path)
    repo = Repository(path, exists=False)
    repo.init(user_name="bench", user_email="bench@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", prototype=data[0])
    co["x", list(range(len(data)))] = data
    co.commit("data")
    co.close()


def to_format_1(path: str) -> None:
    packs = os.path.join(path, ".hangar", "data", "packs")
    for p in os.listdir(packs):
        index = os.path.join(packs, p, "index")
        if not os.path.isfile(index):
            continue
        recs = parse_index(open(index, "rb").read(), index)
        old = np.zeros(len(recs), dtype=INDEX_DTYPE_V1)
        for f in INDEX_DTYPE_V1.names:
            old[f] = recs[f]
        os.chmod(index, 0o644)
        with open(index, "wb") as f:
            f.write(old.tobytes())


_CHILD = """
import json, sys, time
clock = time.process_time if sys.argv[6] == "cpu" else time.perf_counter
sys.path.insert(0, sys.argv[1])
from hangar import Repository
op, path, n, keys = sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
co = Repository(path).checkout()
aset = co.arraysets["x"]
if op == "seq":
    t = clock()
    count = sum(1 for _ in aset.values())
    dt = clock() - t
    assert count == n, count
elif sys.argv[7] == "per-read":  # each read timed alone: n x the median read, blind to preemptions
    aset[keys[0]]
    pc, each = time.perf_counter, []
    for k in keys:
        t = pc()
        aset[k]
        each.append(pc() - t)
    dt = sorted(each)[len(each) // 2] * len(each)
else:
    aset[keys[0]]
    t = clock()
    for k in keys:
        aset[k]
    dt = clock() - t
co.close()
print(dt)
"""


_WARM = """
import sys
sys.path.insert(0, sys.argv[1])
from hangar import Repository
aset = Repository(sys.argv[2]).checkout().arraysets["x"]
for _ in range(3):  # reads adding up to 4,096 and the arrayset's size: the location table is built and cached
    aset.get_batch(list(range(len(aset))))
"""


def warm(tree: str, path: str) -> None:
    """Drop the copy's cached location tables (the checked copy has the one its commit left, the
    unchecked copy one naming checksums its rewritten indexes no longer hold) and build them again
    with ``tree``, so both variants read through the same path and only the check differs."""
    shutil.rmtree(os.path.join(path, ".hangar", "cache"), ignore_errors=True)
    subprocess.run([sys.executable, "-c", _WARM, tree, path], check=True, env={**os.environ, "PYTHONPATH": tree})


def timed_in_child(tree: str, op: str, path: str, n: int, keys: list[int], clock: str = "wall",
                   per_read: bool = False) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, tree, op, path, str(n), json.dumps(keys), clock,
                          "per-read" if per_read else "loop"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": tree})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--baseline", help="source tree of an earlier hangar to time on the format-1 copy")
    p.add_argument("--before", help="source tree of an earlier hangar to time on the checked copy")
    p.add_argument("--per-read", action="store_true",
                   help="random reads: time each read alone and take the number of reads x the median read (the "
                        "same reads, blind to a preempted read: steadier on a loaded machine)")
    p.add_argument("--only", choices=("small", "large"),
                   help="time one dataset: 60,000 x (28,28) or 2,000 x (224,224,3)")
    p.add_argument("--cpu", action="store_true",
                   help="time the CPU of the reading process (all its threads) instead of wall time: steadier "
                        "on a loaded machine, and counts work a second thread hides from the wall clock")
    args = p.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    variants = [("checked", here, "checked"), ("unchecked", here, "unchecked")]
    if args.baseline:
        variants.append(("baseline", os.path.abspath(args.baseline), "unchecked"))
    if args.before:
        variants.append(("before", os.path.abspath(args.before), "checked"))
    clock = "cpu" if args.cpu else "wall"
    rng = np.random.default_rng(0)
    scale = 10 if args.quick else 1
    sets = [(f"{60_000 // scale:,} x (28,28)", (60_000 // scale, 28, 28), 5_000),
            (f"{2_000 // scale:,} x (224,224,3)", (2_000 // scale, 224, 224, 3), 2_000 // scale)]
    if args.only:
        sets = [sets[0] if args.only == "small" else sets[1]]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="hangar-bench-checksum-") as tmp:
        for name, shape, nkeys in sets:
            data = rng.integers(0, 256, shape, dtype=np.uint8)
            checked, unchecked = os.path.join(tmp, "checked"), os.path.join(tmp, "unchecked")
            make_repo(checked, data)
            shutil.copytree(checked, unchecked)
            to_format_1(unchecked)
            warm(here, checked)
            warm(here, unchecked)
            if args.before:  # its table file format may differ: it reads a copy warmed by itself
                before = os.path.join(tmp, "before")
                shutil.copytree(checked, before)
                warm(os.path.abspath(args.before), before)
            keys = rng.integers(0, shape[0], nkeys).tolist()
            times: dict = {(op, v[0]): [] for op in ("seq", "rand") for v in variants}
            for r in range(args.repeat):
                for v, tree, copy in variants[r % len(variants):] + variants[:r % len(variants)]:
                    path = checked if copy == "checked" else unchecked
                    if v == "before":
                        path = before
                    for op in ("seq", "rand"):
                        times[op, v].append(timed_in_child(tree, op, path, shape[0], keys, clock, args.per_read))
            for op, label in (("seq", "sequential read (values())"), ("rand", f"random read {nkeys:,} keys")):
                ref = times[op, "checked"]
                for v, _, _ in variants:
                    ts = times[op, v]
                    rows.append((name, label, v, min(ts), statistics.median(ts), min(ts) / min(ref),
                                 statistics.median(ts) / statistics.median(ref),
                                 statistics.median(a / b for a, b in zip(ts, ref))))
                if args.before:  # unchecked / before: the ratio of the checked column before the change
                    unch, bef = times[op, "unchecked"], times[op, "before"]
                    rows.append((name, label, "unch/bef", 0.0, 0.0, min(unch) / min(bef),
                                 statistics.median(unch) / statistics.median(bef),
                                 statistics.median(a / b for a, b in zip(unch, bef))))
            shutil.rmtree(checked)
            shutil.rmtree(unchecked)
            if args.before:
                shutil.rmtree(before)
    print(f"reads with and without the per-sample check: {args.repeat} rotating runs, {os.cpu_count()} cpus, "
          f"{'CPU' if args.cpu else 'wall'} time{', random reads: n x median read' if args.per_read else ''}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("ratios: variant / checked (unch/bef: unchecked / before) of the minima, of the medians, and the "
          "median of the ratios paired by round")
    print(f"{'dataset':<20} {'operation':<28} {'variant':<10} {'min s':>8} {'median s':>9} {'min/chk':>8} "
          f"{'med/chk':>8} {'paired':>7}")
    for name, label, v, lo, med, ratio, mratio, paired in rows:
        print(f"{name:<20} {label:<28} {v:<10} {lo:>8.4f} {med:>9.4f} {ratio:>8.3f} {mratio:>8.3f} {paired:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
