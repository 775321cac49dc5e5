#!/usr/bin/env python3
"""Cost of the per-sample checksum (xxh3-64 of the stored bytes) on reads.

Writes the two datasets of ``scripts/bench.py`` (random uint8, 60,000 x (28, 28) and
2,000 x (224, 224, 3); ``--quick``: a tenth), copies the repository and rewrites the copy's
pack indexes in format 1 (no checksums: reads skip the check), then times, alternating the
two copies in one process so both see the same machine load:

* sequential read: ``repo.checkout()`` + ``list(aset.values())`` (the bulk path),
* random read: ``aset[k]`` for 5,000 (2,000) random keys (the single-sample path).

The table shows medians of ``--repeat`` runs and ``unchecked / checked`` (1.0: free; 0.97: the
check costs 3%).

Usage::

    python3 scripts/bench_checksum.py [--quick] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hangar import Repository  # noqa: E402
from hangar.store.packs import INDEX_DTYPE_V1, parse_index  # noqa: E402


def make_repo(path: str, data: np.ndarray) -> None:
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


def seq_read(path: str, n: int) -> float:
    co = Repository(path).checkout()
    aset = co.arraysets["x"]
    t = time.perf_counter()
    count = sum(1 for _ in aset.values())
    dt = time.perf_counter() - t
    co.close()
    assert count == n
    return dt


def random_read(path: str, keys: list[int]) -> float:
    co = Repository(path).checkout()
    aset = co.arraysets["x"]
    aset[keys[0]]  # index loaded before timing, as in bench.py
    t = time.perf_counter()
    for k in keys:
        aset[k]
    dt = time.perf_counter() - t
    co.close()
    return dt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--tmp", default="/tmp")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    scale = 10 if args.quick else 1
    sets = [("60,000 x (28,28)", (60_000 // scale, 28, 28), 5_000),
            ("2,000 x (224,224,3)", (2_000 // scale, 224, 224, 3), 2_000 // scale)]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="hangar-bench-checksum-") as tmp:
        for name, shape, nkeys in sets:
            data = rng.integers(0, 256, shape, dtype=np.uint8)
            checked, unchecked = os.path.join(tmp, "checked"), os.path.join(tmp, "unchecked")
            make_repo(checked, data)
            shutil.copytree(checked, unchecked)
            to_format_1(unchecked)
            keys = rng.integers(0, shape[0], nkeys).tolist()
            times: dict = {(op, v): [] for op in ("seq", "rand") for v in ("checked", "unchecked")}
            for r in range(args.repeat):
                order = ("checked", "unchecked") if r % 2 else ("unchecked", "checked")
                for v in order:
                    path = checked if v == "checked" else unchecked
                    times["seq", v].append(seq_read(path, shape[0]))
                    times["rand", v].append(random_read(path, keys))
            for op, label in (("seq", "sequential read (values())"), ("rand", f"random read {nkeys:,} keys")):
                c, u = statistics.median(times[op, "checked"]), statistics.median(times[op, "unchecked"])
                rows.append((name, label, c, u, u / c))
            shutil.rmtree(checked)
            shutil.rmtree(unchecked)
    print(f"per-sample xxh3 check on reads: median of {args.repeat} alternating runs, {os.cpu_count()} cpus")
    print(f"{'dataset':<20} {'operation':<28} {'checked s':>10} {'unchecked s':>12} {'unchecked/checked':>18}")
    for name, label, c, u, ratio in rows:
        print(f"{name:<20} {label:<28} {c:>10.4f} {u:>12.4f} {ratio:>18.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
