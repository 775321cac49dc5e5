#!/usr/bin/env python3
"""Child of ``scripts/bench_peers.py``: the same workload on the original Hangar (0.5.x).

Runs under an interpreter where ``import hangar`` is the original package (its own virtual
environment: ``python -m venv /tmp/hv && /tmp/hv/bin/pip install hangar==0.5.2
'protobuf<3.21'``), never ours. Reads the workload from an ``.npz`` written by the parent and
prints the timings as one JSON line (the last line of stdout; Hangar prints its own lines too).

    /tmp/hv/bin/python scripts/bench_peers_original_hangar.py REPO_DIR WORKLOAD.npz
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from hangar import Repository  # the original Hangar, in its own environment


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main() -> None:
    path, workload = sys.argv[1], sys.argv[2]
    z = np.load(workload)
    data, keys, upd, upd2, new = z["data"], z["keys"], z["upd"], z["upd2"], z["new"]
    out = {}
    repo = Repository(path, exists=False)
    repo.init(user_name="bench", user_email="bench@example.com", remove_old=True)

    def ingest() -> None:
        co = repo.checkout(write=True)
        col = co.add_ndarray_column("x", prototype=data[0])
        with col:  # holds the LMDB transactions open: Hangar's fast path for many writes
            for i in range(len(data)):
                col[i] = data[i]
        co.commit("ingest")
        co.close()

    out["ingest + commit"] = timed(ingest)
    out["disk / raw"] = disk_bytes(path) / data.nbytes
    co = repo.checkout()
    col = co.columns["x"]

    def random_read() -> None:
        with col:
            for k in keys.tolist():
                col[k]

    out["random read 5,000"] = timed(random_read)
    co.close()

    def update(branch: str, which: np.ndarray, values: np.ndarray) -> None:
        w = repo.checkout(write=True, branch=branch)
        c = w.columns["x"]
        with c:
            for k, v in zip(which.tolist(), values):
                c[k] = v
        w.commit(f"update on {branch}")
        w.close()

    out["1% update + commit"] = timed(lambda: update("master", upd, new))

    def branch() -> None:
        repo.create_branch("dev")
        repo.checkout(write=True, branch="dev").close()

    out["branch + open for write"] = timed(branch)
    update("dev", upd2, new)
    reader = repo.checkout(branch="master")
    out["diff (600 changed)"] = timed(lambda: reader.diff.branch("dev"))
    reader.close()
    update("master", upd, new[::-1])
    out["3-way merge"] = timed(lambda: repo.merge("merge dev", "master", "dev"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
