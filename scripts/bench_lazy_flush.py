"""What durability costs a lazy read: one flushed pack of one (28, 28) uint8 sample written
without the data and directory fsyncs (the lazy-read store before) and durably (every pack
now), interleaved so load on the machine hits both alike. A lazy single read flushes one such
pack; a lazy ``get_batch`` flushes one pack for the whole batch.

    PYTHONPATH=. python scripts/bench_lazy_flush.py [--repeat 40] [--dir DIR]

``--dir``: where the packs go (default: a temporary directory; use the disk the repositories
live on). Prints min and median milliseconds per flushed pack and the difference.
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

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hangar.store import TensorStore
from hangar.store.digest import byte_view, digest_of_parts
from hangar.store.packs import LocalPackStorage
from hangar.store.tensorstore import StoredSample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=40)
    p.add_argument("--dir", default=None)
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="hangar-bench-flush-", dir=args.dir)
    times: dict[bool, list[float]] = {False: [], True: []}
    rng = np.random.default_rng(0)
    try:
        for _ in range(args.repeat):
            for durable in (False, True):
                store = TensorStore(LocalPackStorage(os.path.join(root, f"durable-{durable}"), durable=durable))
                a = rng.integers(0, 255, (28, 28), dtype=np.uint8)
                sample = StoredSample(digest_of_parts(byte_view(a), "|u1", (28, 28)), 0, a.nbytes, a.tobytes())
                t = time.perf_counter()
                store.put_stored(sample, "|u1", (28, 28))
                store.flush()
                times[durable].append(time.perf_counter() - t)
                store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for durable, label in ((False, "no data/dir fsync (before)"), (True, "durable (now)")):
        v = times[durable]
        print(f"{label:28s} min {min(v) * 1e3:7.2f} ms   median {statistics.median(v) * 1e3:7.2f} ms per flushed pack")
    print(f"durable - before: min {(min(times[True]) - min(times[False])) * 1e3:+.2f} ms, median "
          f"{(statistics.median(times[True]) - statistics.median(times[False])) * 1e3:+.2f} ms per lazy read")


if __name__ == "__main__":
    main()
