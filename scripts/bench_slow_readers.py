"""Does a download to a reader that never takes its answer slow the other clients of a
``hangar server``? A real server process holding nine 8 MiB samples; for 0, ``guard.THREADS`` and
``2 * guard.THREADS + 4`` connected clients that asked for all nine (72 MiB) and never read (4 KiB
receive buffers), a normal client downloads one 8 MiB sample ``--repeat`` times and pings five
times. Prints min / median download ms, the slowest ping and the server's RSS per row: the row
with no stalled reader is the baseline of the same run.

    PYTHONPATH=. python scripts/bench_slow_readers.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())

import numpy as np

from hangar.remote import guard, protocol
from hangar.store import sample_digest
from tests import remote_fixtures
from tests.test_hostile_network import ping_latency, request, stalled_download, upload_body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="hangar-slow-readers-")
    srv = remote_fixtures.ServerProcess(os.path.join(root, "repo"), rlimit_as=3 << 30)
    try:
        rng = np.random.default_rng(0)
        arrays = [rng.integers(0, 255, size=8 << 20, dtype=np.uint8) for _ in range(9)]  # incompressible
        assert request(srv.port, "POST", protocol.UPLOAD, upload_body(arrays), timeout=60)[0] == 200
        wanted = b"".join(sample_digest(a) for a in arrays)
        one = sample_digest(arrays[0])
        print(f"load average {os.getloadavg()[0]:.1f}")
        for n in (0, guard.THREADS, 2 * guard.THREADS + 4):
            stalled = []
            for _ in range(n):
                stalled.append(stalled_download(srv.port, wanted))
            time.sleep(0.5)  # the server starts answering all of them
            took = []
            for _ in range(args.repeat):
                t0 = time.monotonic()
                status, body, _ = request(srv.port, "POST", protocol.DOWNLOAD, one, timeout=60)
                took.append(time.monotonic() - t0)
                assert status == 200 and len(body) == protocol.DOWNLOAD_HEADER_SIZE + (8 << 20)
            pings = [ping_latency(srv) for _ in range(5)]
            print(f"stalled readers {n:3d}: 8 MiB download min {min(took) * 1e3:.1f} ms, median "
                  f"{statistics.median(took) * 1e3:.1f} ms; slowest ping {max(pings) * 1e3:.1f} ms; "
                  f"server RSS {srv.status('VmRSS') >> 20} MiB", flush=True)
            for s in stalled:
                s.close()
            time.sleep(0.5)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
