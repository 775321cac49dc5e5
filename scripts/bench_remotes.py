"""Benchmark: clone + fetch_data from a real ``hangar server`` over loopback.

Usage: python scripts/bench_remotes.py [--images N] [--mnist N] [--keep DIR] [--tls]

Builds a server repository with N random uint8 (224, 224, 3) images and one with N
(28, 28) uint8 MNIST-like samples, starts ``python -m hangar server`` on each, then times
``Repository.clone`` + ``repo.remote.fetch_data('origin', 'master')`` into a fresh
directory. Targets: images >= 300 MB/s, MNIST >= 30,000 samples/s (plain HTTP). With
``--tls`` the server runs with a self-signed certificate made for the run (needs
``cryptography``) and the client trusts it through ``SSL_CERT_FILE``: the cost of HTTPS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

import numpy as np

from hangar import Repository


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(path: str, n: int, shape: tuple[int, ...], rng: np.random.Generator) -> int:
    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("data", shape=shape, dtype=np.uint8)
    nbytes = 0
    for i in range(n):
        if len(shape) == 3:
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:  # MNIST-like: mostly zeros with a blob of ink, compressible like the real thing
            arr = np.zeros(shape, dtype=np.uint8)
            r, c = rng.integers(4, 20, size=2)
            arr[r:r + 8, c:c + 6] = rng.integers(1, 256, size=(8, 6), dtype=np.uint8)
        aset[i] = arr
        nbytes += arr.nbytes
    co.commit(f"{n} samples of {shape}")
    co.close()
    return nbytes


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its waited-for children have used (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def wait_ready(repo: Repository, deadline: float) -> None:
    while True:
        try:
            repo.remote.ping("origin")
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run(name: str, n: int, shape: tuple[int, ...], workdir: str, tls: Optional[tuple[str, str]] = None) -> dict:
    rng = np.random.default_rng(0)
    src = os.path.join(workdir, f"{name}-server")
    os.makedirs(src)
    t = time.perf_counter()
    nbytes = build(src, n, shape, rng)
    print(f"[{name}] built {n} samples ({nbytes / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s", flush=True)
    port = free_port()
    address = f"https://127.0.0.1:{port}" if tls else f"127.0.0.1:{port}"
    extra = ["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []
    proc = subprocess.Popen([sys.executable, "-m", "hangar", "server", "--ip", "127.0.0.1", "--port", str(port),
                             "--path", src, *extra], stderr=subprocess.DEVNULL)
    try:
        probe_dir = os.path.join(workdir, f"{name}-probe")
        os.makedirs(probe_dir)
        probe = Repository(probe_dir, exists=False)
        probe.init("p", "p@example.com")
        probe.remote.add("origin", address)
        wait_ready(probe, time.monotonic() + 30)

        dst = os.path.join(workdir, f"{name}-clone")
        os.makedirs(dst)
        repo = Repository(dst, exists=False)
        server_cpu0, client_cpu0 = proc_cpu(proc.pid), time.process_time()
        t0 = time.perf_counter()
        repo.clone("bench", "bench@example.com", address)
        t1 = time.perf_counter()
        repo.remote.fetch_data("origin", "master")
        t2 = time.perf_counter()
        server_cpu, client_cpu = proc_cpu(proc.pid) - server_cpu0, time.process_time() - client_cpu0
        co = repo.checkout()
        aset = co.arraysets["data"]
        assert not aset.contains_remote_references
        assert len(aset) == n
        co.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    total = t2 - t0
    res = {"name": name, "samples": n, "mb": nbytes / 1e6, "clone_s": t1 - t0, "fetch_data_s": t2 - t1,
           "total_s": total, "mb_per_s": nbytes / 1e6 / total, "samples_per_s": n / total,
           "client_cpu_s": client_cpu, "server_cpu_s": server_cpu}
    print(f"[{name}] clone {res['clone_s']:.2f}s + fetch_data {res['fetch_data_s']:.2f}s = {total:.2f}s: "
          f"{res['mb_per_s']:.0f} MB/s, {res['samples_per_s']:,.0f} samples/s "
          f"(cpu: client {client_cpu:.2f}s, server {server_cpu:.2f}s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--mnist", type=int, default=60000)
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    ap.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed certificate")
    args = ap.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="hangar-bench-remotes-")
    os.makedirs(workdir, exist_ok=True)
    tls = None
    if args.tls:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.remote_fixtures import make_certificate

        tls = make_certificate(workdir, "bench")
        os.environ["SSL_CERT_FILE"] = tls[0]  # this process trusts the run's certificate
    try:
        results = []
        if args.images:
            results.append(run("images", args.images, (224, 224, 3), workdir, tls))
        if args.mnist:
            results.append(run("mnist", args.mnist, (28, 28), workdir, tls))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for r in results:
        target = "MB/s >= 300" if r["name"] == "images" else "samples/s >= 30,000"
        ok = r["mb_per_s"] >= 300 if r["name"] == "images" else r["samples_per_s"] >= 30000
        print(f"{r['name']}: {r['mb_per_s']:.0f} MB/s, {r['samples_per_s']:,.0f} samples/s "
              f"(target {target}: {'met' if ok else 'NOT met'})")


if __name__ == "__main__":
    main()
