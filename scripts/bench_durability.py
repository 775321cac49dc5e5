"""Cost of durability: the same writes and commits with fsync on (as shipped) and off.

"off" runs the identical code with ``os.fsync`` replaced by a no-op and libgit2's gitdir
fsync disabled, in a separate process; nothing in hangar has a switch for it.

    python scripts/bench_durability.py [--dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

WORKLOADS = {
    "200 commits x 10 small samples": (200, 10, (28, 28), np.uint8),
    "1 commit x 20,000 samples of 784 B": (1, 20_000, (28, 28), np.uint8),
    "1 commit x 200 samples of 1 MiB": (1, 200, (512, 512), np.float32),
}


def run_one(path: str, commits: int, per_commit: int, shape: tuple, dtype: type) -> float:
    from hangar import Repository

    repo = Repository(path, exists=False)
    repo.init("Bench", "bench@example.com")
    rng = np.random.default_rng(0)
    data = [rng.integers(0, 255, size=shape).astype(dtype) for _ in range(min(per_commit * commits, 20_000))]
    t0 = time.perf_counter()
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=shape, dtype=dtype, backend="raw")
    n = 0
    for c in range(commits):
        for _ in range(per_commit):
            arr = data[n % len(data)]
            arr.flat[0] = n % 251  # distinct samples
            aset[n] = arr
            n += 1
        co.commit(f"commit {c}")
    co.close()
    return time.perf_counter() - t0


def child(mode: str, base: str, name: str) -> None:
    if mode == "off":
        import pygit2

        os.fsync = lambda fd: None
        pygit2.settings.enable_fsync_gitdir(False)
    import hangar.plumbing.gitrepo  # noqa: F401 - (it enables gitdir fsync at import)

    if mode == "off":
        import pygit2

        pygit2.settings.enable_fsync_gitdir(False)
    path = tempfile.mkdtemp(dir=base)
    try:
        print(json.dumps(run_one(path, *WORKLOADS[name])))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = args.dir or tempfile.gettempdir()
    print(f"disk: {base}; best of {args.repeat}; same process code, fsync on vs off")
    print(f"{'workload':40s} {'fsync on':>10s} {'fsync off':>10s} {'cost':>8s}")
    for name in WORKLOADS:
        best = {}
        for mode in ("on", "off"):
            times = []
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, __file__, "--child", mode, base, name],
                                     capture_output=True, text=True, check=True)
                times.append(json.loads(out.stdout))
            best[mode] = min(times)
        cost = best["on"] / best["off"] - 1
        print(f"{name:40s} {best['on']:9.3f}s {best['off']:9.3f}s {cost:+7.0%}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
