"""How a large pack is best written durably: the fsync at the end only, an fdatasync thread every
64 MiB (hangar before i14d), or early write-back (``plumbing.durable.start_writeback``) every
4-32 MiB; all in one run, interleaved, against the fsync-at-end baseline (ratios > 1: faster).

The data: ``--mib`` of random float32 written as 4 MiB pwrites (W3's samples) from the caller's
buffer into a new file, then fdatasync'd; a sample of ``dd conv=fdatasync`` and ``dd oflag=direct``
of the same size is taken in the same loop (the disk's durable sequential speed, buffered and direct).

    python scripts/bench_writeback.py --repeat 10 [--tmp DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Callable

import numpy as np

from hangar.plumbing.durable import start_writeback

PIECE = 4 << 20


def write_file(path: str, buf: memoryview, every: int = 0, bg_sync: int = 0) -> None:
    """``buf`` written in PIECE pwrites then fdatasync'd; write-back started every ``every`` bytes,
    or an fdatasync thread woken every ``bg_sync`` bytes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    wake, stop = threading.Event(), threading.Event()

    def syncer() -> None:
        while True:
            wake.wait()
            wake.clear()
            os.fdatasync(fd)
            if stop.is_set():
                return

    thread = threading.Thread(target=syncer) if bg_sync else None
    if thread is not None:
        thread.start()
    started = synced = 0
    for off in range(0, len(buf), PIECE):
        os.pwrite(fd, buf[off:off + PIECE], off)
        end = off + len(buf[off:off + PIECE])
        if every and end - started >= every:
            start_writeback(fd, started, end - started)
            started = end
        if bg_sync and end - synced >= bg_sync:
            synced = end
            wake.set()
    if thread is not None:
        stop.set()
        wake.set()
        thread.join()
    os.fdatasync(fd)
    os.close(fd)
    os.unlink(path)


def dd(path: str, mib: int, direct: bool) -> None:
    args = ["dd", "if=/dev/zero", f"of={path}", "bs=4M", f"count={mib // 4}", "conv=fdatasync"]
    subprocess.run(args + (["oflag=direct"] if direct else []), check=True, capture_output=True)
    os.unlink(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--tmp", default=None, help="directory on the disk to measure (default: the system temp dir)")
    args = ap.parse_args()
    buf = memoryview(np.random.default_rng(1).random(args.mib << 18, dtype=np.float32)).cast("B")
    d = tempfile.mkdtemp(prefix="bench-wb-", dir=args.tmp)
    f = os.path.join(d, "f")
    cases: dict[str, Callable[[], None]] = {
        "fsync at end (baseline)": lambda: write_file(f, buf),
        "fdatasync thread / 64 MiB": lambda: write_file(f, buf, bg_sync=64 << 20),
        **{f"start_writeback / {m} MiB": (lambda m=m: write_file(f, buf, every=m << 20)) for m in (4, 8, 16, 32)},
        "dd conv=fdatasync": lambda: dd(f, args.mib, False),
        "dd oflag=direct conv=fdatasync": lambda: dd(f, args.mib, True),
    }
    got: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for _ in range(args.repeat):
            for name, fn in cases.items():  # interleaved: load swings hit every case alike
                t0 = time.perf_counter()
                fn()
                got[name].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    nbytes = args.mib << 20
    base = got["fsync at end (baseline)"]
    print(f"{args.mib} MiB, {args.repeat} interleaved runs; MB/s of the best and the median run; "
          "ratio = baseline time / case time (> 1: faster), of minima and of medians")
    print(f"{'case':<34}{'best MB/s':>10}{'med MB/s':>10}{'ratio min':>10}{'ratio med':>10}{'max s':>8}")
    for name, ts in got.items():
        print(f"{name:<34}{nbytes / 1e6 / min(ts):>10,.0f}{nbytes / 1e6 / statistics.median(ts):>10,.0f}"
              f"{min(base) / min(ts):>10.2f}{statistics.median(base) / statistics.median(ts):>10.2f}{max(ts):>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
