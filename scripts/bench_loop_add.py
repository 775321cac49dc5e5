"""Per-call cost of a writer loop's add (issue 14, W1 loop in ``with aset:``), with a baseline tree.

W1 = 60,000 random uint8 (28, 28) samples added one by one to a new arrayset, four forms, each
timed as the calling thread's CPU time of one pass over the 60,000 samples:

- ``floor``: ``for i in range(n): data[i]`` - the loop and its row views alone, no hangar;
- ``with``: ``x[i] = data[i]`` inside ``with x:``;
- ``loop``: the same without ``with`` (small fixed-shape samples are held back there too);
- ``add``: ``x.add(data[i], i)`` inside ``with x:``.

The held samples are not stored inside a pass (the hold bound is raised past 60,000) but
between passes (untimed), so every pass after the first writes into the held stack the
previous one left (as a long loop does after its first 16,384 samples): no page faults in the
figure. Each child process (``PYTHONPATH`` = the tree) runs ``--passes`` passes of each form,
forms interleaved; ``--baseline DIR`` runs the same child with ``PYTHONPATH=DIR`` right after,
so both see the same load. The table gives ns a sample, the minimum and the median over all
passes of all runs, and the ratio baseline / this (> 1: this tree is faster), also of the
figures less the floor (hangar's own part). The machine is shared: compare ratios of one run.

    python scripts/bench_loop_add.py --baseline /tmp/base-main --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_ingest import run_json_child  # noqa: E402  (a script beside this one)

ROOT = os.path.dirname(HERE)
N, SHAPE = 60_000, (28, 28)
FORMS = ("floor", "with", "loop", "add")


def child(tmp: str, passes: int) -> dict:
    """In a fresh process: ``passes`` timed passes of each form (after an untimed warm-up)."""
    import numpy as np

    import hangar
    import hangar.arrayset as arrayset_module
    from hangar import Repository

    if not os.path.abspath(hangar.__file__).startswith(os.environ["PYTHONPATH"] + os.sep):
        raise RuntimeError(f"measured {hangar.__file__}, not the tree {os.environ['PYTHONPATH']}")
    arrayset_module.HOLD_MAX_SAMPLES = N + 1  # one pass stays held: no store inside the timed loop
    arrayset_module.HOLD_MAX_BYTES = 1 << 30
    data = np.random.default_rng(1).integers(0, 256, size=(N, *SHAPE), dtype=np.uint8)
    os.makedirs(tmp)
    repo = Repository(tmp, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)

    def floor(base: int) -> float:
        t0 = time.thread_time()
        for i in range(N):
            data[i]
        return time.thread_time() - t0

    def in_with(base: int) -> float:
        with x:  # timed inside the block: its end stores the held samples
            t0 = time.thread_time()
            for i in range(N):
                x[base + i] = data[i]
            return time.thread_time() - t0

    def plain(base: int) -> float:
        t0 = time.thread_time()
        for i in range(N):
            x[base + i] = data[i]
        return time.thread_time() - t0

    def add(base: int) -> float:
        with x:
            t0 = time.thread_time()
            for i in range(N):
                x.add(data[i], base + i)
            return time.thread_time() - t0

    runs = {"floor": floor, "with": in_with, "loop": plain, "add": add}
    out: dict[str, list[float]] = {form: [] for form in FORMS}
    base = 0
    for p in range(passes + 1):  # pass 0: warm-up (imports, the held stack's first pages)
        for form in FORMS:
            spent = runs[form](base)
            with co:  # stores what the pass held back (untimed); the next pass reuses the stack
                pass
            base += N
            if p:
                out[form].append(spent / N)
    co.close()
    return out


def run_child(pythonpath: str, tmp_parent: str | None, passes: int) -> dict:
    # the same child harness as bench_ingest's (its 4 GiB address-space limit too)
    return run_json_child(pythonpath, tmp_parent, "bench_loop_add", f"child({{tmp}} + '/repo', {passes})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="child processes per tree")
    ap.add_argument("--passes", type=int, default=5, help="timed passes of each form per child")
    ap.add_argument("--baseline", default=None, help="another hangar source tree to measure in the same run")
    ap.add_argument("--tmp", default=None, help="parent of the temporary directories")
    args = ap.parse_args()

    trees = {"this": ROOT}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    got: dict[str, dict[str, list[float]]] = {label: {f: [] for f in FORMS} for label in trees}
    for r in range(args.repeat):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for label, path in order:  # back to back (alternating who goes first): the same load
            res = run_child(path, args.tmp, args.passes)
            for f in FORMS:
                got[label][f].extend(res[f])
            print(f"run {r + 1}/{args.repeat} {label}: " + ", ".join(
                f"{f} {min(res[f]) * 1e9:.0f}" for f in FORMS) + " ns a sample (min of the passes)", flush=True)

    print(f"\nW1 loop add, ns a sample (thread CPU), {args.repeat} processes x {args.passes} passes per tree; "
          "x = baseline / this (> 1: this is faster); '- floor': less the loop's own cost")
    header = f"{'form':<8}{'tree':<10}{'min':>8}{'median':>8}{'min-floor':>11}{'med-floor':>11}"
    if args.baseline:
        header += f"{'x min':>8}{'x med':>8}{'x min-fl':>10}{'x med-fl':>10}"
    print(header)
    print("-" * len(header))
    fig = {label: {f: (min(v), statistics.median(v)) for f, v in got[label].items()} for label in trees}
    for form in FORMS:
        for label in trees:
            lo, med = fig[label][form]
            flo, fmed = fig[label]["floor"]
            line = f"{form:<8}{label:<10}{lo * 1e9:>8.0f}{med * 1e9:>8.0f}"
            line += f"{(lo - flo) * 1e9:>11.0f}{(med - fmed) * 1e9:>11.0f}" if form != "floor" else " " * 22
            if args.baseline and label == "this":
                b, bf = fig["baseline"][form], fig["baseline"]["floor"]
                line += f"{b[0] / lo:>8.2f}{b[1] / med:>8.2f}"
                if form != "floor":
                    line += f"{(b[0] - bf[0]) / (lo - flo):>10.2f}{(b[1] - bf[1]) / (med - fmed):>10.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
