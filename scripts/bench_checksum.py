#!/usr/bin/env python3
"""Cost of the per-sample checksum (xxh3-64 of the stored bytes) on reads, with a verdict that a re-run reproduces.

Writes the two datasets of ``scripts/bench.py`` (random uint8, 60,000 x (28, 28) and
2,000 x (224, 224, 3); ``--quick``: a tenth) twice, the same way, and rewrites the second
repository's pack indexes in format 1 (no checksums: reads skip the check). Both pack files are
written by hangar, so they lie in the page cache alike: an earlier version copied the first with
``shutil.copytree``, whose file lies in the page cache as 16-page folios where the file hangar
wrote (one ``pwrite`` per sample) has folios of 1-32 pages, and a fresh process's first touches
of such a mapping cost ~1 us more per 150 KB read (1.59 vs 1.70 faults a read, each mapping more
folios): the +0.5-1 us "gap" of a checked large read was the copy's, not the check's (the same
check on the same file with a format-1 index, linked: -0.2 us). Not one file for both (linked):
a sample one variant just read would be in the CPU's caches for the other, where the fused copy +
hash is slower than ``memcpy`` (+1.5-2.3 us a 150 KB read), which no fresh process sees.

Rows (each in fresh child processes, only the read loop timed):

* sequential read: ``repo.checkout()`` + ``aset.values()`` (the bulk path),
* random read: ``aset[k]`` for 5,000 (2,000) random keys (the single-sample path).

``checked`` (this code) and ``unchecked`` (this code on the format-1 copy) run in ONE process per
round, interleaved A B B A: sequential passes (each on a freshly opened checkout: fresh mappings),
random reads in blocks of 50 alternating between the two (each variant reads every key once, the
second half a run after the first), so each pair of figures shares the machine's load of that
moment and drift cancels. With
``--baseline DIR`` (an earlier hangar tree on the format-1 copy) and ``--before DIR`` (an earlier
tree on the checked data: the check's cost before a change), those variants run in their own
processes in the same rounds (rotating), two passes each.

Each run reports wall and CPU time (the reading process, all its threads) per variant: minimum and
median over ``--repeat`` rounds, the ratio ``variant / checked`` (1.0: free; 0.97: checked is 3%
slower) of the minima and of the medians, and the paired ratio (per round) with its spread: the
median of the rounds' ratios, their interquartile range, and a distribution-free ~95% confidence
interval of that median (order statistics). The verdict on "the check costs at most 3%" is taken
from the in-process pairs: ``yes`` when the interval lies at or above 0.97, ``no`` when below,
``undecided`` otherwise (more ``--repeat``).

``--per-read``: a random row's time is the number of reads times the median read (blind to a read
that was preempted) instead of the sum; ``--cpu`` is accepted for old command lines (CPU time is
always reported).

Usage::

    python3 scripts/bench_checksum.py [--quick] [--repeat 15] [--only small|large] [--per-read]
        [--baseline /tmp/hangar-main] [--before /tmp/hangar-main]
"""

from __future__ import annotations

import argparse
import json
import math
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
        os.unlink(index)  # a fresh file: the original repository's index is never written
        with open(index, "wb") as f:
            f.write(old.tobytes())


def copy_sharing_data(src: str, dst: str) -> None:
    """``src`` copied to ``dst`` with every pack data file (``packs/<id>/c/...``) a hard link to
    ``src``'s: the copy reads the same page-cache pages (same folios) as the original."""
    def link_data(s: str, d: str) -> None:
        parts = os.path.relpath(s, src).split(os.sep)
        if len(parts) > 4 and parts[:3] == [".hangar", "data", "packs"] and parts[4] == "c":
            os.link(s, d)
        else:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=link_data)


_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from hangar import Repository
op, n, keys, paths = sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[6:]
per_read = sys.argv[5] == "per-read"
wall, cpu = time.perf_counter, time.process_time
res = {p: [0.0, 0.0] for p in paths}
order = paths if len(paths) == 1 else [paths[0], paths[1], paths[1], paths[0]]  # A B B A: drift cancels
if op == "seq":
    order = order if len(paths) > 1 else paths * 2
    for p in paths:  # first-use costs (imports, the first mapping) outside the timed passes
        co = Repository(p).checkout()
        next(iter(co.arraysets["x"].values()))
        co.close()
    for p in order:
        co = Repository(p).checkout()  # each pass maps the packs afresh, as a fresh process does
        aset = co.arraysets["x"]
        t, c = wall(), cpu()
        count = sum(1 for _ in aset.values())
        res[p][0] += wall() - t
        res[p][1] += cpu() - c
        co.close()
        assert count == n, count
else:
    cos = {p: Repository(p).checkout() for p in paths}
    asets = {p: co.arraysets["x"] for p, co in cos.items()}
    for a in asets.values():
        a[keys[0]]
    each = {p: [] for p in paths}
    block = 50
    blocks = [keys[lo:lo + block] for lo in range(0, len(keys), block)]
    half = len(blocks) // 2
    for b in range(len(blocks)):
        for p in (order[:2] if b % 2 == 0 else order[2:]) if len(paths) > 1 else paths:
            # the second variant reads the keys half a run later: a sample the first just read (in the
            # CPU's caches: the copies share their pack files) is not read again by the other at once
            chunk = blocks[b] if p == paths[0] else blocks[(b + half) % len(blocks)]
            a, got = asets[p], each[p]
            c = cpu()
            if per_read:
                for k in chunk:
                    t = wall()
                    a[k]
                    got.append(wall() - t)
            else:
                t = wall()
                for k in chunk:
                    a[k]
                res[p][0] += wall() - t
            res[p][1] += cpu() - c
    for p, got in each.items():
        if per_read:
            res[p][0] = sorted(got)[len(got) // 2] * len(got)
    for co in cos.values():
        co.close()
print(json.dumps([res[p] for p in paths]))
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


def timed_in_child(tree: str, op: str, paths: list[str], n: int, keys: list[int],
                   per_read: bool = False) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each of ``paths`` read by ``tree``'s hangar in one child process."""
    out = subprocess.run([sys.executable, "-c", _CHILD, tree, op, str(n), json.dumps(keys),
                          "per-read" if per_read else "loop", *paths],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": tree})
    return [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def median_interval(xs: list[float]) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of ``xs`` (order statistics j, n-1-j
    with the largest j whose two-sided coverage stays >= 95%; the extremes below 6 values)."""
    s, n = sorted(xs), len(xs)
    j = 0
    while j + 1 < n - 1 - (j + 1):
        tail = sum(math.comb(n, i) for i in range(j + 2)) / 2 ** n  # P(Bin(n, 1/2) <= j + 1)
        if 2 * tail > 0.05:
            break
        j += 1
    return s[j], s[n - 1 - j]


def quartiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[2]


def verdict(lo: float, hi: float, floor: float = 0.97) -> str:
    return "yes" if lo >= floor else "no" if hi < floor else "undecided"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--baseline", help="source tree of an earlier hangar to time on the format-1 copy")
    p.add_argument("--before", help="source tree of an earlier hangar to time on the checked data")
    p.add_argument("--per-read", action="store_true",
                   help="random reads: time each read alone and take the number of reads x the median read (the "
                        "same reads, blind to a preempted read: steadier on a loaded machine)")
    p.add_argument("--only", choices=("small", "large"),
                   help="time one dataset: 60,000 x (28,28) or 2,000 x (224,224,3)")
    p.add_argument("--cpu", action="store_true", help="accepted for old command lines: CPU time is always reported")
    args = p.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    others = []  # variants in their own processes: (name, tree, copy)
    if args.baseline:
        others.append(("baseline", os.path.abspath(args.baseline), "unchecked"))
    if args.before:
        others.append(("before", os.path.abspath(args.before), "before"))
    rng = np.random.default_rng(0)
    scale = 10 if args.quick else 1
    sets = [(f"{60_000 // scale:,} x (28,28)", (60_000 // scale, 28, 28), 5_000),
            (f"{2_000 // scale:,} x (224,224,3)", (2_000 // scale, 224, 224, 3), 2_000 // scale)]
    if args.only:
        sets = [sets[0] if args.only == "small" else sets[1]]
    rows, verdicts = [], []
    names = ["checked", "unchecked"] + [o[0] for o in others]
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="hangar-bench-checksum-") as tmp:
        for name, shape, nkeys in sets:
            data = rng.integers(0, 256, shape, dtype=np.uint8)
            path = {v: os.path.join(tmp, v) for v in ("checked", "unchecked", "before")}
            make_repo(path["checked"], data)
            make_repo(path["unchecked"], data)  # written alike: the same page-cache layout, its own pages
            del data
            to_format_1(path["unchecked"])
            warm(here, path["checked"])
            warm(here, path["unchecked"])
            # its table file format may differ: it reads a copy (linked to the checked pack files) warmed by itself
            if args.before:
                copy_sharing_data(path["checked"], path["before"])
                warm(os.path.abspath(args.before), path["before"])
            keys = rng.integers(0, shape[0], nkeys).tolist()
            # (op, variant) -> per round (wall, cpu)
            times: dict = {(op, v): [] for op in ("seq", "rand") for v in names}
            for r in range(args.repeat):
                # the pair's order flips every round; the other variants rotate around it
                jobs = [("pair", here, [path["checked"], path["unchecked"]] if r % 2 == 0 else
                         [path["unchecked"], path["checked"]])] + [(v, t, [path[c]]) for v, t, c in others]
                k = r % len(jobs)
                for op in ("seq", "rand"):
                    for v, tree, paths in jobs[k:] + jobs[:k]:
                        got = timed_in_child(tree, op, paths, shape[0], keys, args.per_read)
                        if v == "pair":
                            if r % 2:
                                got = got[::-1]
                            times[op, "checked"].append(got[0])
                            times[op, "unchecked"].append(got[1])
                        else:
                            times[op, v].append(got[0])
            for op, label in (("seq", "sequential read (values())"), ("rand", f"random read {nkeys:,} keys")):
                ref = times[op, "checked"]
                for v in names:
                    ts = times[op, v]
                    cols = []
                    for c in (0, 1):  # wall, cpu
                        xs, rs = [t[c] for t in ts], [t[c] for t in ref]
                        pairs = [a / b for a, b in zip(xs, rs)]
                        cols.append((min(xs), statistics.median(xs), min(xs) / min(rs),
                                     statistics.median(xs) / statistics.median(rs), statistics.median(pairs),
                                     *quartiles(pairs), *median_interval(pairs)))
                    rows.append((name, label, v, cols))
                    if v == "unchecked":
                        verdicts.append((name, label, cols))
                if args.before:  # unchecked / before: the check's cost before the change (separate processes)
                    unch, bef = times[op, "unchecked"], times[op, "before"]
                    cols = []
                    for c in (0, 1):
                        pairs = [a[c] / b[c] for a, b in zip(unch, bef)]
                        xs, bs = [t[c] for t in unch], [t[c] for t in bef]
                        cols.append((0.0, 0.0, min(xs) / min(bs), statistics.median(xs) / statistics.median(bs),
                                     statistics.median(pairs), *quartiles(pairs), *median_interval(pairs)))
                    rows.append((name, label, "unch/bef", cols))
            for v in ("checked", "unchecked", "before"):
                shutil.rmtree(path[v], ignore_errors=True)
    print(f"reads with and without the per-sample check: {args.repeat} rounds, {os.cpu_count()} cpus, "
          f"checked/unchecked in one process per round (A B B A), "
          f"{'random reads: n x median read' if args.per_read else 'random reads: sum of reads'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("ratios variant / checked (unch/bef: unchecked / before) of the minima, of the medians, and paired by "
          "round: median [interquartile range] (~95% interval of the median)")
    for c, clock in ((0, "wall"), (1, "CPU")):
        print(f"-- {clock} time")
        print(f"{'dataset':<20} {'operation':<28} {'variant':<10} {'min s':>8} {'median s':>9} {'min/chk':>8} "
              f"{'med/chk':>8} {'paired':>7} {'IQR':>13} {'interval':>15}")
        for name, label, v, cols in rows:
            lo, med, ratio, mratio, paired, q1, q3, ci_lo, ci_hi = cols[c]
            print(f"{name:<20} {label:<28} {v:<10} {lo:>8.4f} {med:>9.4f} {ratio:>8.3f} {mratio:>8.3f} "
                  f"{paired:>7.3f} [{q1:.3f},{q3:.3f}] ({ci_lo:.3f},{ci_hi:.3f})")
    print("verdict, the check costs at most 3% (unchecked / checked paired in one process; interval of the "
          "median >= 0.97: yes, < 0.97: no, else undecided):")
    for name, label, cols in verdicts:
        w, cp = cols
        print(f"  {name:<20} {label:<28} wall {w[4]:.3f} ({w[7]:.3f},{w[8]:.3f}) {verdict(w[7], w[8]):<9} "
              f"CPU {cp[4]:.3f} ({cp[7]:.3f},{cp[8]:.3f}) {verdict(cp[7], cp[8])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
