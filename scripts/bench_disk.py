#!/usr/bin/env python3
"""Benchmark: the machine's durable write bandwidth, by the forms a writer could use (issue 14, W2r/W3).

Is one stream of ``dd ... oflag=direct`` (what ``bench_peers.py`` shows beside W2r/W3) really the most
this disk makes durable per second? Each form below writes ``--mib`` (default 287 MiB = W2r's 301 MB)
of random bytes into a new file and makes it durable (fdatasync at the end, as hangar does at commit);
the clock covers open to fdatasync. The forms run in rotated order in every round, each after
``bench_peers.settle`` (sync, dirty pages drained, the page cache it will take pre-faulted), and are
shown as MB/s (best / median) and as ratios to ``direct 4M x1`` (dd's form) of the same run:

* ``direct <block> x<k>``: O_DIRECT writes of ``block`` bytes from ``k`` threads at once (queue depth
  ``k``; ``x1`` is dd's form), ``fallocate`` first where marked ``falloc``;
* ``buffered 4M``: page-cache writes, one fdatasync at the end;
* ``buffered 4M + wb 8M``: the same with ``sync_file_range(WRITE)`` every 8 MiB from a thread
  (hangar's large-row path: ``durable.start_writeback``); ``x<k>``: ``k`` writer threads;
* ``page cache only``: page-cache writes, no fdatasync: what a writer that does not fsync (Deep Lake)
  pays; not durable, the ceiling the others are compared with;
* ``rows: ...``: W2r's rows of 150,528 bytes as hangar writes them (a pwrite each, write-back every
  8 MiB), and as an O_DIRECT writer would (rows copied into aligned 8 MiB buffers, each written while
  the next fills; ``x2``: two in flight).

``--page-cache`` instead measures the first touch of page cache on this VM (the cause of bench_peers'
W3 anomaly): the CPU of writing 256 MiB into a new file right after another such file was deleted,
and after a pass of the balloon's free page reporting (``/sys/module/page_reporting``) handed the
freed memory back to the host.

    python scripts/bench_disk.py [--mib 287] [--repeat 3] [--tmp DIR] [--page-cache]
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_peers import settle  # noqa: E402

from hangar.plumbing.durable import start_writeback  # noqa: E402

MiB = 1 << 20


def aligned(nbytes: int) -> memoryview:
    """``nbytes`` of random bytes in page-aligned memory (O_DIRECT needs aligned buffers)."""
    m = mmap.mmap(-1, nbytes)
    view = np.frombuffer(m, dtype=np.uint8)
    view[:] = np.random.default_rng(3).integers(0, 256, size=nbytes, dtype=np.uint8)
    return memoryview(m)


def _pwrite_blocks(fd: int, data: memoryview, block: int, k: int, t: int) -> None:
    """Thread ``t`` of ``k``: blocks ``t``, ``t + k``, ... of ``data`` at their offsets."""
    for off in range(t * block, len(data), k * block):
        view = data[off:off + block]
        while view:
            n = os.pwrite(fd, view, off)
            view, off = view[n:], off + n


def _threads(fn: Callable[[int], None], k: int) -> None:
    threads = [threading.Thread(target=fn, args=(t,)) for t in range(1, k)]
    for th in threads:
        th.start()
    fn(0)
    for th in threads:
        th.join()


def direct(path: str, data: memoryview, block: int, k: int, falloc: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    try:
        if falloc:
            os.posix_fallocate(fd, 0, len(data))
        _threads(lambda t: _pwrite_blocks(fd, data, block, k, t), k)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def buffered(path: str, data: memoryview, k: int = 1, writeback: int = 0, sync: bool = True) -> None:
    """4 MiB page-cache writes from ``k`` threads (each a contiguous share), with write-back started
    every ``writeback`` bytes from one more thread, as hangar's pack writer does; fdatasync when ``sync``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        share = -(-len(data) // k // (4 * MiB)) * 4 * MiB
        cond = threading.Condition()
        written = [0] * k
        done = [False]

        def wb() -> None:  # start write-back of each thread's new bytes once ``writeback`` more are there
            started = [t * share for t in range(k)]
            while True:
                with cond:
                    cond.wait_for(lambda: done[0] or any(
                        t * share + written[t] - started[t] >= writeback for t in range(k)))
                    ends = [t * share + written[t] for t in range(k)]
                    last = done[0]
                for t in range(k):
                    if ends[t] > started[t]:
                        start_writeback(fd, started[t], ends[t] - started[t])
                        started[t] = ends[t]
                if last:
                    return

        def write(t: int) -> None:
            a, b = t * share, min(len(data), (t + 1) * share)
            for off in range(a, b, 4 * MiB):
                end = min(b, off + 4 * MiB)
                os.pwrite(fd, data[off:end], off)
                if writeback:
                    with cond:
                        written[t] = end - a
                        cond.notify()

        helper = threading.Thread(target=wb) if writeback else None
        if helper is not None:
            helper.start()
        _threads(write, k)
        if helper is not None:
            with cond:
                done[0] = True
                cond.notify()
            helper.join()
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


#: W2r's row: 224 * 224 * 3 bytes (not a multiple of 4096: rows straddle O_DIRECT's blocks)
ROW = 224 * 224 * 3


def buffered_rows(path: str, data: memoryview, writeback: int = 8 * MiB, piece: int = ROW) -> None:
    """hangar's large-row form: one pwrite per row (or per ``piece`` bytes), write-back started every
    ``writeback`` bytes from a thread, fdatasync at the end."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        cond = threading.Condition()
        state = {"written": 0, "done": False}

        def wb() -> None:
            started = 0
            while True:
                with cond:
                    cond.wait_for(lambda s=started: state["done"] or state["written"] - s >= writeback)
                    end, last = state["written"], state["done"]
                if end > started:
                    start_writeback(fd, started, end - started)
                    started = end
                if last:
                    return

        helper = threading.Thread(target=wb)
        helper.start()
        for off in range(0, len(data), piece):
            os.pwrite(fd, data[off:off + piece], off)
            with cond:
                state["written"] = min(len(data), off + piece)
                cond.notify()
        with cond:
            state["done"] = True
            cond.notify()
        helper.join()
        os.fdatasync(fd)
    finally:
        os.close(fd)


def direct_rows(path: str, data: memoryview, bounce: int = 8 * MiB, k: int = 1) -> None:
    """What an O_DIRECT pack writer would do with rows lying anywhere: rows copied into an aligned
    ``bounce`` buffer (``k`` of them, written from a thread while the next fills), each full buffer
    written with O_DIRECT, the last one padded to 4 KiB and the file cut to its size, fdatasync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    bufs = [mmap.mmap(-1, bounce) for _ in range(k + 1)]
    try:
        views = [np.frombuffer(b, dtype=np.uint8) for b in bufs]
        src = np.frombuffer(data, dtype=np.uint8)
        pending: list[threading.Thread] = []

        def put(buf: int, n: int, at: int) -> None:
            n = -(-n // 4096) * 4096
            os.pwrite(fd, memoryview(bufs[buf])[:n], at)

        fill, filled, at = 0, 0, 0
        for off in range(0, len(data), ROW):
            row = src[off:off + ROW]
            while len(row):
                take = min(len(row), bounce - filled)
                views[fill][filled:filled + take] = row[:take]
                filled, row = filled + take, row[take:]
                if filled == bounce:
                    if len(pending) >= k:
                        pending.pop(0).join()
                    t = threading.Thread(target=put, args=(fill, bounce, at))
                    t.start()
                    pending.append(t)
                    fill, filled, at = (fill + 1) % (k + 1), 0, at + bounce
        for t in pending:
            t.join()
        if filled:
            put(fill, filled, at)
        os.ftruncate(fd, len(data))
        os.fdatasync(fd)
    finally:
        os.close(fd)
        del views
        for b in bufs:
            b.close()


FORMS: dict[str, Callable[[str, memoryview], None]] = {
    "direct 4M x1 (dd)": lambda p, d: direct(p, d, 4 * MiB, 1),
    "direct 4M x2": lambda p, d: direct(p, d, 4 * MiB, 2),
    "direct 4M x4": lambda p, d: direct(p, d, 4 * MiB, 4),
    "direct 4M x8": lambda p, d: direct(p, d, 4 * MiB, 8),
    "direct 16M x1": lambda p, d: direct(p, d, 16 * MiB, 1),
    "direct 1M x8": lambda p, d: direct(p, d, 1 * MiB, 8),
    "direct 4M x4 falloc": lambda p, d: direct(p, d, 4 * MiB, 4, falloc=True),
    "buffered 4M": lambda p, d: buffered(p, d),
    "buffered 4M + wb 8M": lambda p, d: buffered(p, d, writeback=8 * MiB),
    "buffered 4M + wb 8M x2": lambda p, d: buffered(p, d, k=2, writeback=8 * MiB),
    "buffered 4M + wb 32M": lambda p, d: buffered(p, d, writeback=32 * MiB),
    "page cache only (no fsync)": lambda p, d: buffered(p, d, sync=False),
    "rows: buffered + wb 8M (hangar)": lambda p, d: buffered_rows(p, d),
    "rows: buffered 1M pieces + wb 8M": lambda p, d: buffered_rows(p, d, piece=1 * MiB),
    "rows: buffered 4M pieces + wb 8M": lambda p, d: buffered_rows(p, d, piece=4 * MiB),
    "rows: buffered 16M pieces + wb 8M": lambda p, d: buffered_rows(p, d, piece=16 * MiB),
    "rows: direct via 8M bounce": lambda p, d: direct_rows(p, d),
    "rows: direct via 8M bounce x2": lambda p, d: direct_rows(p, d, k=2),
}


def run_forms(args: argparse.Namespace) -> None:
    data = aligned(args.mib * MiB)
    names = [n for n in FORMS if not args.forms or any(f in n for f in args.forms.split(","))]
    got: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    d = tempfile.mkdtemp(prefix="bench-disk-", dir=args.tmp)
    try:
        for r in range(args.repeat):
            first = r % len(names)
            for name in names[first:] + names[:first]:
                path = os.path.join(d, "f")
                settle(d, len(data))
                c0, t0 = time.process_time(), time.perf_counter()
                FORMS[name](path, data)
                got[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                os.unlink(path)
            print(f"round {r + 1}/{args.repeat}: " + ", ".join(f"{n} {v[-1]:.3f}s" for n, v in got.items()),
                  flush=True)
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)
    ref = got["direct 4M x1 (dd)"] if "direct 4M x1 (dd)" in got else None
    mb = len(data) / 1e6
    print(f"\n{mb:,.0f} MB made durable (fdatasync at the end) by each form; {args.repeat} rounds, rotated order, "
          f"each after settle(); MB/s best / median, ratio to 'direct 4M x1 (dd)' of bests / medians; "
          f"process CPU s (min / median)")
    print(f"{'form':<30}{'best':>8}{'median':>8}{'/dd best':>10}{'/dd med':>9}{'cpu':>16}")
    for name, ts in got.items():
        line = f"{name:<30}{mb / min(ts):>8,.0f}{mb / statistics.median(ts):>8,.0f}"
        if ref:
            line += f"{min(ref) / min(ts):>10.2f}{statistics.median(ref) / statistics.median(ts):>9.2f}"
        print(line + f"{min(cpu[name]):>8.3f} / {statistics.median(cpu[name]):.3f}")


REPORTING = "/sys/module/page_reporting/parameters/"


def _reporting() -> tuple[int, int]:
    with open(REPORTING + "reported_kib") as f, open(REPORTING + "passes") as g:
        return int(f.read()), int(g.read())


def page_cache(args: argparse.Namespace) -> None:
    """CPU of 256 MiB written into a new file: right after the same amount was deleted, and once
    reporting passes have handed at least as much back to the host (waits up to 30 s for them)."""
    if not os.path.exists(REPORTING + "reported_kib"):
        print("no free page reporting here (/sys/module/page_reporting): nothing to measure")
        return
    buf = np.ones(256 * MiB, dtype=np.uint8)
    d = tempfile.mkdtemp(prefix="bench-disk-pc-", dir=args.tmp)
    path = os.path.join(d, "f")

    def write() -> float:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        c = time.thread_time()
        os.write(fd, buf)
        c = time.thread_time() - c
        os.close(fd)
        os.unlink(path)  # dropped before write-back: no disk I/O
        return c * 1e3

    hot: list[float] = []
    cold: list[float] = []
    try:
        for r in range(args.repeat):
            write()
            hot += [write(), write()]
            (k0, _), deadline = _reporting(), time.monotonic() + 30
            while time.monotonic() < deadline:  # passes report ~64 MiB at a time: until the freed 256 MiB
                time.sleep(0.02)
                if _reporting()[0] - k0 >= 256 * 1024:
                    cold.append(write())
                    break
            print(f"round {r + 1}: after a deletion {hot[-2]:.0f}, {hot[-1]:.0f} ms; after a reporting pass "
                  f"{cold[-1] if cold else float('nan'):.0f} ms", flush=True)
    finally:
        os.rmdir(d)
    print(f"\n256 MiB into new page cache, CPU ms (min / median): right after a deletion "
          f"{min(hot):.0f} / {statistics.median(hot):.0f}; after a free page reporting pass "
          + (f"{min(cold):.0f} / {statistics.median(cold):.0f}" if cold else "n/a (no pass seen)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=287, help="MiB written per form (287 MiB = W2r's 301 MB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="parent of the temporary directory (the disk measured)")
    ap.add_argument("--forms", default="", help="comma-separated substrings: only the forms naming one")
    ap.add_argument("--page-cache", action="store_true",
                    help="measure the first touch of page cache after free page reporting instead")
    args = ap.parse_args()
    if args.page_cache:
        page_cache(args)
    else:
        run_forms(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
