"""The durable-write helper (hangar/plumbing/durable.py) against the code it replaced, in one run.

Times, interleaved so load on the machine hits both alike (medians of ``--repeat`` rounds):

* ``write_synced`` against the git pack writer's former ``_fsync_write`` (os.write loop,
  fsync): one file of ``--mib`` MiB in 1 MiB chunks, mode 0o444;
* ``pwrite_all`` against the data pack writer's former ``_pwrite_all`` (no cast to bytes):
  the writer's flush of 4 MiB buffers into one open file, no fsync (the hot path the
  background fdatasync thread runs beside);
* ``replace_file`` against the former ``_fsync_file`` (temp, write, fsync, rename): a 64 KiB
  index.

    python scripts/bench_durable.py [--repeat 15] [--mib 64]

Ratios are ``old / new`` (> 1: the helper is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from hangar.plumbing.durable import pwrite_all, replace_file, write_synced


def old_fsync_write(path: str, chunks: list) -> None:  # plumbing/pack.py before the helper
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    try:
        for c in chunks:
            view = memoryview(c).cast("B")
            while view:
                n = os.write(fd, view)
                if n <= 0:
                    raise OSError(f"no progress writing {path}")
                view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def old_pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:  # store/packs.py before
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"no progress writing {len(view)} bytes at offset {offset}")
        view = view[n:]
        offset += n


def old_fsync_file(path: str, data: bytes) -> None:  # store/packs.py before
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        old_pwrite_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--mib", type=int, default=64)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, 1 << 20, dtype=np.uint8) for _ in range(args.mib)]
    buf = bytearray(rng.integers(0, 256, 4 << 20, dtype=np.uint8).tobytes())
    index = rng.integers(0, 256, 64 << 10, dtype=np.uint8).tobytes()
    results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("pack", "pwrite", "index")}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for r in range(args.repeat):
            for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                path = os.path.join(tmp, f"pack{which}")
                fn = old_fsync_write if which == 0 else write_synced
                results["pack"][which].append(timed(fn, path, chunks) if which == 0 else timed(fn, path, chunks, 0o444))
                os.unlink(path)
                fd = os.open(os.path.join(tmp, f"data{which}"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                write = old_pwrite_all if which == 0 else pwrite_all
                t = time.perf_counter()
                for i in range(args.mib // 4):
                    write(fd, buf, i * len(buf))
                results["pwrite"][which].append(time.perf_counter() - t)
                os.close(fd)
                ipath = os.path.join(tmp, f"index{which}")
                results["index"][which].append(timed(old_fsync_file, ipath, index) if which == 0
                                               else timed(replace_file, ipath, [index]))
    print(f"median of {args.repeat} interleaved rounds, {args.mib} MiB; ratio = old / new (> 1: helper faster)")
    print(f"{'operation':44s} {'old s':>9s} {'new s':>9s} {'ratio':>6s}")
    names = {"pack": f"git pack file write + fsync ({args.mib} MiB)",
             "pwrite": f"data pack flushes, no fsync ({args.mib} MiB)",
             "index": "index replace (64 KiB, fsync, rename)"}
    for k, (old, new) in results.items():
        mo, mn = statistics.median(old), statistics.median(new)
        print(f"{names[k]:44s} {mo:9.4f} {mn:9.4f} {mo / mn:6.2f}")


if __name__ == "__main__":
    main()
