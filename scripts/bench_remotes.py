"""Benchmark: clone + fetch_data from a real ``hangar server`` over loopback.

Usage: python scripts/bench_remotes.py [--images N] [--mnist N] [--keep DIR] [--tls]
       python scripts/bench_remotes.py --baseline /tmp/base-main [--reps 3] [--images N] [--mnist N]

Builds a server repository with N random uint8 (224, 224, 3) images and one with N
(28, 28) uint8 MNIST-like samples, starts ``python -m hangar server`` on each, then times
``Repository.clone`` + ``repo.remote.fetch_data('origin', 'master')`` into a fresh
directory, beside (same server process, same run, alternated, best of two):

* the raw ceiling: a plain HTTP GET of every pack's bytes (``/hangar/v1/pack/<id>``) written
  to a file and fsynced;
* fetch_data as a client of the per-sample protocol (before pack ranges);
* fetch_data through pack ranges: the default plan (plan_ranges), and forced to 1 and 3 streams;
* push to an empty server, per-sample records vs upload runs.

Target: fetch_data >= 0.9x the ceiling, small samples at the MB/s of large ones. With
``--tls`` the server runs with a self-signed certificate made for the run (needs
``cryptography``) and the client trusts it through ``SSL_CERT_FILE``: the cost of HTTPS.

With ``--baseline TREE`` it compares instead this tree's fetch_data (client and server) with
TREE's (another checkout of hangar, e.g. main's), each fetch in a fresh process, alternated,
best of ``--reps``, beside the raw GET ceiling, and once each client against the other's server.
"""

from __future__ import annotations

import argparse
import http.client
import json
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
from hangar.remote import client as remote_client
from hangar.remote import protocol
from hangar.store.packs import LocalPackStorage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def wait_ready(repo: Repository, deadline: float, name: str = "origin") -> None:
    while True:
        try:
            repo.remote.ping(name)
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def raw_ceiling(address: str, src: str, out_dir: str) -> tuple[float, int]:
    """Seconds and bytes of a plain HTTP GET of every pack's bytes from the server (``protocol.PACK``),
    written to a file and fsynced: the ceiling a transfer of the same bytes can reach."""
    host, port = address.rsplit(":", 1)
    packs = LocalPackStorage(os.path.join(src, ".hangar", "data")).list_packs()
    t = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=120, blocksize=1 << 20)
    buf = memoryview(bytearray(1 << 20))
    total = 0
    try:
        for pack in packs:
            conn.request("GET", protocol.PACK + pack)
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            fd = os.open(os.path.join(out_dir, pack), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                while n := resp.readinto(buf):
                    os.write(fd, buf[:n])
                    total += n
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        conn.close()
    return time.perf_counter() - t, total


def timed_fetch(address: str, dst: str, n: int, per_sample: bool = False, streams: int | None = None) -> dict:
    """Clone, then time fetch_data; ``per_sample``: as a client of the per-sample protocol."""
    os.makedirs(dst)
    repo = Repository(dst, exists=False)
    t0 = time.perf_counter()
    repo.clone("bench", "bench@example.com", address)
    t1 = time.perf_counter()
    saved = remote_client.DataClient.capabilities, remote_client.STREAMS, remote_client.STREAMS_LARGE
    if per_sample:
        remote_client.DataClient.capabilities = lambda self: frozenset()  # type: ignore[method-assign]
    if streams is not None:  # forced for every sample size (None: the default plan, plan_ranges)
        remote_client.STREAMS = remote_client.STREAMS_LARGE = streams
    cpu0 = time.process_time()
    inner = remote_client.download_into
    wire: list[float] = []

    def timed(*a, **k):  # the transfer alone, without the pointer walk
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            wire.append(time.perf_counter() - t)

    remote_client.download_into = timed
    try:
        repo.remote.fetch_data("origin", "master")
    finally:
        remote_client.download_into = inner
        (remote_client.DataClient.capabilities, remote_client.STREAMS,  # type: ignore[method-assign]
         remote_client.STREAMS_LARGE) = saved
    t2 = time.perf_counter()
    co = repo.checkout()
    try:
        aset = co.arraysets["data"]
        assert not aset.contains_remote_references and len(aset) == n
    finally:
        co.close()
    return {"clone_s": t1 - t0, "fetch_s": t2 - t1, "wire_s": sum(wire), "client_cpu_s": time.process_time() - cpu0}


def timed_push(src: str, workdir: str, name: str, per_sample: bool) -> tuple[float, float]:
    """Seconds to push ``src``'s master to a fresh, empty server, and of them the data upload's."""
    path = os.path.join(workdir, name)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hangar", "server", "--ip", "127.0.0.1", "--port", str(port),
                             "--path", path], stderr=subprocess.DEVNULL)
    repo = Repository(src)
    saved = remote_client.DataClient.capabilities
    try:
        if name in repo.remote.list_all():
            repo.remote.remove(name)
        repo.remote.add(name, f"127.0.0.1:{port}")
        wait_ready(repo, time.monotonic() + 30, name)
        if per_sample:
            remote_client.DataClient.capabilities = lambda self: frozenset()  # type: ignore[method-assign]
        inner, wire = remote_client.upload_from, []

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                wire.append(time.perf_counter() - t)

        remote_client.upload_from = timed
        t = time.perf_counter()
        try:
            repo.remote.push(name, "master")
        finally:
            remote_client.upload_from = inner
        return time.perf_counter() - t, sum(wire)
    finally:
        remote_client.DataClient.capabilities = saved  # type: ignore[method-assign]
        repo.remote.remove(name)
        proc.terminate()
        proc.wait(timeout=30)


def start_server(path: str, port: int, tree: Optional[str] = None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """``hangar server`` for ``path`` on ``port``, importing hangar from ``tree`` (default: this one)."""
    env = dict(os.environ, PYTHONPATH=tree or ROOT)
    return subprocess.Popen([sys.executable, "-m", "hangar", "server", "--ip", "127.0.0.1", "--port", str(port),
                             "--path", path, *extra], stderr=subprocess.DEVNULL, env=env)


def child_fetch(address: str, dst: str, n: int, tree: Optional[str]) -> dict:
    """:func:`timed_fetch` (default plan) in a fresh process importing hangar from ``tree``."""
    env = dict(os.environ, PYTHONPATH=tree or ROOT)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--fetch-child", address, dst, str(n)],
                         env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_baseline(name: str, n: int, shape: tuple[int, ...], workdir: str, baseline: str, reps: int) -> dict:
    """fetch_data of this tree against ``baseline``'s (client and server both), alternated in one run,
    each in a fresh process, beside the raw GET ceiling; then each client against the other's
    server (the protocol still matches both ways)."""
    rng = np.random.default_rng(0)
    src = os.path.join(workdir, f"{name}-server")
    os.makedirs(src)
    nbytes = build(src, n, shape, rng)
    ports = {"this tree": free_port(), "baseline": free_port()}
    procs = {"this tree": start_server(src, ports["this tree"]),
             "baseline": start_server(src, ports["baseline"], baseline)}
    rows: dict[str, list[float]] = {}
    wire: dict[str, list[float]] = {}
    clones: dict[str, list[float]] = {}  # clone + fetch_data: the history too (git objects of every pointer)
    cpus: dict[str, list[tuple[float, float]]] = {}  # CPU seconds of the client, of the server (clone included)
    try:
        probe_dir = os.path.join(workdir, f"{name}-probe")
        os.makedirs(probe_dir)
        probe = Repository(probe_dir, exists=False)
        probe.init("p", "p@example.com")
        for who, port in ports.items():
            probe.remote.add(who.replace(" ", "-"), f"127.0.0.1:{port}")
            wait_ready(probe, time.monotonic() + 30, who.replace(" ", "-"))
        ceiling_dir = os.path.join(workdir, f"{name}-raw")
        os.makedirs(ceiling_dir)
        k = 0
        for rep in range(reps):
            secs, sent = raw_ceiling(f"127.0.0.1:{ports['this tree']}", src, ceiling_dir)
            rows.setdefault("raw GET (ceiling)", []).append(secs)
            order = [("this tree", "this tree"), ("baseline", "baseline")]
            if rep == 0:  # compatibility both ways, once
                order += [("this tree", "baseline"), ("baseline", "this tree")]
            for client, server in (order if rep % 2 == 0 else order[::-1]):
                label = client if client == server else f"{client} client, {server} server"
                k += 1
                cpu = proc_cpu(procs[server].pid)
                r = child_fetch(f"127.0.0.1:{ports[server]}", os.path.join(workdir, f"{name}-f{k}"), n,
                                None if client == "this tree" else baseline)
                rows.setdefault(label, []).append(r["fetch_s"])
                wire.setdefault(label, []).append(r["wire_s"])
                clones.setdefault(label, []).append(r["clone_s"] + r["fetch_s"])
                cpus.setdefault(label, []).append((r["client_cpu_s"], proc_cpu(procs[server].pid) - cpu))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    ceiling = min(rows["raw GET (ceiling)"])
    print(f"[{name}] {n} samples, {nbytes / 1e6:.0f} MB raw, {sent / 1e6:.0f} MB stored; best of {reps}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    for label, secs in rows.items():
        best = min(secs)
        line = (f"  {label:38s} {best:6.2f}s  {n / best:>10,.0f} samples/s  {nbytes / 1e6 / best:7.0f} MB/s raw  "
                f"{ceiling / best:5.2f}x ceiling")
        if label in wire:
            line += (f"  (transfer {min(wire[label]):5.2f}s, {ceiling / min(wire[label]):5.2f}x ceiling; CPU s "
                     f"client {min(c for c, _ in cpus[label]):.2f} server {min(s for _, s in cpus[label]):.2f})")
        print(line, flush=True)
        if label in clones:
            both = sorted(clones[label])
            print(f"  {'  clone + fetch_data':38s} {both[0]:6.2f}s  {nbytes / 1e6 / both[0]:7.0f} MB/s raw  "
                  f"{ceiling / both[0]:5.2f}x ceiling  (median {both[len(both) // 2]:.2f}s)", flush=True)
    new, old = min(rows["this tree"]), min(rows["baseline"])
    print(f"[{name}] fetch_data this tree / baseline: {old / new:.2f}x faster ({nbytes / 1e6 / new:.0f} vs "
          f"{nbytes / 1e6 / old:.0f} MB/s raw); transfer alone {min(wire['baseline']) / min(wire['this tree']):.2f}x",
          flush=True)
    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    for label in ("this tree", "baseline"):  # medians beside the minima: the machine is shared and noisy
        print(f"[{name}] {label}: fetch_data median {median(rows[label]):.2f}s, clone + fetch_data min "
              f"{min(clones[label]):.2f}s median {median(clones[label]):.2f}s; raw GET median "
              f"{median(rows['raw GET (ceiling)']):.2f}s", flush=True)
    new_c, old_c = min(clones["this tree"]), min(clones["baseline"])
    print(f"[{name}] clone + fetch_data this tree / baseline: {old_c / new_c:.2f}x faster", flush=True)
    return {"name": name}


def run(name: str, n: int, shape: tuple[int, ...], workdir: str, tls: Optional[tuple[str, str]] = None,
        streams: tuple[int | None, ...] = (None, 1, 3)) -> dict:
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
    rows: dict[str, dict] = {}
    try:
        probe_dir = os.path.join(workdir, f"{name}-probe")
        os.makedirs(probe_dir)
        probe = Repository(probe_dir, exists=False)
        probe.init("p", "p@example.com")
        probe.remote.add("origin", address)
        wait_ready(probe, time.monotonic() + 30)
        ceiling_dir = os.path.join(workdir, f"{name}-raw")
        os.makedirs(ceiling_dir)
        # alternate the contenders, twice, so load from other processes hits each alike
        for rep in range(2):
            if not tls:
                secs, sent = raw_ceiling(address, src, ceiling_dir)
                rows.setdefault("raw GET (ceiling)", {"s": [], "bytes": sent})["s"].append(secs)
            r = timed_fetch(address, os.path.join(workdir, f"{name}-old{rep}"), n, per_sample=True)
            row = rows.setdefault("per-sample protocol", {"s": [], "clone": [], "wire": []})
            row["s"].append(r["fetch_s"])
            row["wire"].append(r["wire_s"])
            for k in streams:
                r = timed_fetch(address, os.path.join(workdir, f"{name}-runs{k}-{rep}"), n, streams=k)
                label = "pack ranges, default plan" if k is None else f"pack ranges, {k} stream(s)"
                row = rows.setdefault(label, {"s": [], "clone": [], "wire": []})
                row["s"].append(r["fetch_s"])
                row["wire"].append(r["wire_s"])
                row["clone"].append(r["clone_s"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    pushes: dict[str, dict] = {"push, per-sample upload": {"s": [], "wire": []},
                               "push, upload runs": {"s": [], "wire": []}}
    if not tls:
        for rep in range(2):
            for label, old in (("push, per-sample upload", True), ("push, upload runs", False)):
                secs, wire = timed_push(src, workdir, f"{name}-{'old' if old else 'runs'}{rep}-push", old)
                pushes[label]["s"].append(secs)
                pushes[label]["wire"].append(wire)
    stored = rows.get("raw GET (ceiling)", {}).get("bytes", nbytes)
    ceiling = min(rows["raw GET (ceiling)"]["s"]) if "raw GET (ceiling)" in rows else None
    print(f"[{name}] {n} samples, {nbytes / 1e6:.0f} MB raw, {stored / 1e6:.0f} MB stored; best of 2, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    out = {"name": name, "rows": {}}
    for label, row in list(rows.items()) + [(k, v) for k, v in pushes.items() if v["s"]]:
        secs = min(row["s"])
        ratio = f"{ceiling / secs:5.2f}x ceiling" if ceiling else ""
        print(f"  {label:28s} {secs:6.2f}s  {n / secs:>10,.0f} samples/s  {nbytes / 1e6 / secs:7.0f} MB/s raw "
              f"{stored / 1e6 / secs:7.0f} MB/s stored  {ratio}", flush=True)
        out["rows"][label] = secs
        if row.get("wire"):  # the transfer alone (download_into / upload_from), without the pointer walk or git
            w = min(row["wire"])
            print(f"  {'  of which the transfer':28s} {w:6.2f}s  {n / w:>10,.0f} samples/s  "
                  f"{nbytes / 1e6 / w:7.0f} MB/s raw {stored / 1e6 / w:7.0f} MB/s stored  "
                  + (f"{ceiling / w:5.2f}x ceiling" if ceiling else ""), flush=True)
            out["rows"][label + " (transfer)"] = w
    out["ceiling"] = ceiling
    out["mb"] = nbytes / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--mnist", type=int, default=60000)
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    ap.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed certificate")
    ap.add_argument("--baseline", default=None,
                    help="a tree of another hangar (e.g. /tmp/base-main): compare its fetch_data (client and "
                         "server) with this tree's, alternated in one run, instead of the protocol variants")
    ap.add_argument("--reps", type=int, default=3, help="repetitions with --baseline (best is reported)")
    ap.add_argument("--fetch-child", nargs=3, metavar=("ADDRESS", "DST", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fetch_child:  # one timed fetch in this process, its figures as JSON on the last line
        address, dst, n = args.fetch_child
        print(json.dumps(timed_fetch(address, dst, int(n))))
        return
    workdir = args.keep or tempfile.mkdtemp(prefix="hangar-bench-remotes-")
    os.makedirs(workdir, exist_ok=True)
    tls = None
    if args.tls:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.remote_fixtures import make_certificate

        tls = make_certificate(workdir, "bench")
        os.environ["SSL_CERT_FILE"] = tls[0]  # this process trusts the run's certificate
    if args.baseline:
        try:
            if args.images:
                run_baseline("images", args.images, (224, 224, 3), workdir, args.baseline, args.reps)
            if args.mnist:
                run_baseline("mnist", args.mnist, (28, 28), workdir, args.baseline, args.reps)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        return
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
        for what, suffix in (("fetch_data", ""), ("its transfer", " (transfer)")):
            best = r["rows"]["pack ranges, default plan" + suffix]  # what fetch_data does unless told
            old = r["rows"]["per-sample protocol" + suffix]
            line = f"{r['name']}: {what} {r['mb'] / best:.0f} MB/s ({old / best:.1f}x the per-sample protocol)"
            if r["ceiling"]:
                line += f", {r['ceiling'] / best:.2f}x the raw GET ceiling (target >= 0.9x)"
            print(line)


if __name__ == "__main__":
    main()
