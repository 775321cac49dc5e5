#!/usr/bin/env python3
"""Issue 14 read-side and start-up figures of this tree against a baseline tree, in one run.

Each variant (this tree, and ``--baseline DIR``: another hangar source tree, e.g. /work/main or a
``git worktree`` of main) writes its own W1 repository (60,000 x uint8 (28, 28), random; the
commit may leave read caches behind, which is part of what is compared) and is then timed in
fresh child processes, variants alternating so both see the same machine load:

* W1 ``get_batch`` in 64 MiB batches, first and second epoch, one checkout (GB/s),
* W1 5,000 random ``aset[k]`` in a fresh process, including the open (samples/s),
* W2r (2,000 x uint8 (224, 224, 3)) ``aset.values()`` and 2,000 random ``aset[k]`` (GB/s),
* ``import hangar``, ``from hangar import Repository``, ``hangar --help`` (seconds).

Prints the median of ``--repeat`` runs per variant and the ratio this / baseline (> 1: this
tree is better; for seconds the ratio is baseline / this).

Usage::

    python scripts/bench_reads_ab.py --baseline /work/main [--repeat 5] [--n 60000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MAKE = """
import os, sys, numpy as np
from hangar import Repository
path, n, shape = sys.argv[1], int(sys.argv[2]), tuple(int(x) for x in sys.argv[3].split(","))
data = np.random.default_rng(1).integers(0, 256, size=(n, *shape), dtype=np.uint8)
os.makedirs(path)
repo = Repository(path, exists=False)
repo.init("bench", "bench@example.com")
co = repo.checkout(write=True)
co.arraysets.init_arrayset("x", shape=shape, dtype=np.uint8)
co["x", list(range(n))] = data
co.commit("ingest")
co.close()
"""

_EPOCHS = """
import sys, time
from hangar import Repository
path = sys.argv[1]
t0 = time.perf_counter()
co = Repository(path).checkout()
x = co.arraysets["x"]
n = len(x)
nbytes = x[0].nbytes
per = max(1, (64 << 20) // nbytes)
out = []
for _ in range(2):
    t = time.perf_counter()
    for a in range(0, n, per):
        x.get_batch(list(range(a, min(n, a + per))))
    out.append(n * nbytes / (time.perf_counter() - (t0 if not out else t)) / 1e9)
print(*out)
"""

_RANDOM = """
import sys, time
import numpy as np
from hangar import Repository
path, k = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
x = Repository(path).checkout().arraysets["x"]
n = len(x)
keys = np.random.default_rng(2).integers(0, n, k).tolist()
for key in keys:
    x[key]
print(k / (time.perf_counter() - t0))
"""

_VALUES = """
import sys, time
from hangar import Repository
x = Repository(sys.argv[1]).checkout().arraysets["x"]
t = time.perf_counter()
nbytes = sum(a.nbytes for a in x.values())
print(nbytes / (time.perf_counter() - t) / 1e9)
"""


def child(tree: str, code: str, *args: str) -> list[float]:
    env = {**os.environ, "PYTHONPATH": tree}
    code = f"import hangar\nassert hangar.__file__.startswith({tree!r}), hangar.__file__\n" + code
    # cwd=tree: ``python -c`` puts the working directory first on sys.path, ahead of PYTHONPATH
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                         timeout=900, cwd=tree)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return [float(v) for v in out.stdout.split()]


def seconds(tree: str, argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *argv], capture_output=True, check=True, env={**os.environ, "PYTHONPATH": tree},
                   cwd=tree)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="source tree of the hangar to compare with")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--n-w2r", type=int, default=2_000)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    trees = {"this": HERE, "baseline": os.path.abspath(args.baseline)}
    res: dict[tuple[str, str], list[float]] = {}

    def add(row: str, v: str, value: float) -> None:
        res.setdefault((row, v), []).append(value)

    for r in range(args.repeat):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for v, tree in order:
            root = tempfile.mkdtemp(prefix="bench-reads-ab-", dir=args.tmp)
            try:
                w1, w2 = os.path.join(root, "w1"), os.path.join(root, "w2")
                child(tree, _MAKE, w1, str(args.n), "28,28")
                first, second = child(tree, _EPOCHS, w1)
                add("W1 get_batch 1st epoch incl. open (GB/s)", v, first)
                add("W1 get_batch 2nd epoch (GB/s)", v, second)
                add("W1 5,000 random x[k], fresh process incl. open (/s)", v, child(tree, _RANDOM, w1, "5000")[0])
                child(tree, _MAKE, w2, str(args.n_w2r), "224,224,3")
                add("W2r values() (GB/s)", v, child(tree, _VALUES, w2)[0])
                add("W2r 2,000 random x[k] incl. open (/s)", v, child(tree, _RANDOM, w2, "2000")[0])
            finally:
                shutil.rmtree(root, ignore_errors=True)
            add("import hangar (s)", v, seconds(tree, ["-c", "import hangar"]))
            add("from hangar import Repository (s)", v, seconds(tree, ["-c", "from hangar import Repository"]))
            add("hangar --help (s)", v, seconds(tree, ["-c", "from hangar.cli import main; main()", "--help"]))
        print(f"run {r + 1}/{args.repeat} done", flush=True)
    print(f"\nmedian of {args.repeat}; this = {HERE}, baseline = {trees['baseline']}; ratio > 1: this is better")
    print(f"{'figure':<52}{'this':>10}{'baseline':>10}{'ratio':>8}")
    for row in dict.fromkeys(k for k, _ in res):
        a, b = statistics.median(res[row, "this"]), statistics.median(res[row, "baseline"])
        ratio = b / a if row.endswith("(s)") else a / b
        print(f"{row:<52}{a:>10.4g}{b:>10.4g}{ratio:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
