"""Where clone + fetch_data from a bucket spends its time: wall and CPU per phase, per thread,
and the CPU of the S3 server (SeaweedFS) next to the client's, against a raw obstore get.

Pushes N x (224,224,3) uint8 (default 2,000: 301 MB) to a fresh SeaweedFS on loopback (random
port), then, ``--runs`` times: a raw get of the pushed packs' data objects into memory (the
ceiling), and a clone + fetch_data into a fresh directory with the phases timed by wrapping
the functions that run them (timings only; nothing's behaviour changes):

- ``clone``: history and data-location fetch (``datastore.clone``);
- ``missing``: reading the commit's records for the samples not stored (``missing_pointers``);
- ``index``: the bucket index (LIST, index GETs, parsing: ``bucket_index``);
- ``fetch_samples``: the transfer itself, with inside it ``verify`` (stored checksum + blake3
  on the consuming thread), ``write`` (pwrites on the writer thread) and ``flush`` (fsync,
  index, renames on the writer thread); ``wait`` is the consuming thread's time blocked on
  the next range (transfer not keeping up) or on the writer (write-ahead full).

CPU: per thread of this process from ``/proc/self/task/*/stat`` (grouped by thread name: the
tokio runtime's workers, the asyncio transfer loop, the main thread, the writer), and of the
server process from ``/proc/<pid>/stat``, each over the same window. With ``--tree DIR`` a
second hangar (e.g. ``/tmp/base-main``) is timed too, alternating, in processes of their own.

Run: PYTHONPATH=. python scripts/bench_s3_phases.py [--n 2000] [--runs 3] [--tree /tmp/base-main]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.environ.get("HANGAR_BENCH_TREE") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _threads_cpu() -> dict[str, float]:
    out: dict[str, float] = collections.defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = "main" if int(tid) == os.getpid() else name.rstrip("0123456789-_")
        out[key] += (int(fields[11]) + int(fields[12])) / _TICK
    return out


class Phases:
    """Wall and thread CPU of wrapped calls, summed per phase (thread-safe)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = collections.defaultdict(float)
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, name: str, fn):
        def timed(*a, **k):
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                with self.lock:
                    self.wall[name] += time.perf_counter() - t
                    self.cpu[name] += time.thread_time() - c
        return timed


def raw_put(endpoint: str, bucket: str, prefix: str, total: int, nobj: int) -> tuple[float, float]:
    """Seconds and client CPU seconds to put ``total`` random bytes as ``nobj`` objects, 4 at once
    (as a push uploads)."""
    import obstore
    from bench_s3 import obstore_s3  # (imports hangar: only once a run's constants are set)

    st = obstore_s3(endpoint, bucket, prefix)
    size = -(-total // nobj)
    blobs = [os.urandom(min(size, total - i * size)) for i in range(nobj)]

    async def put() -> None:
        for i in range(0, nobj, 4):
            await asyncio.gather(*[obstore.put_async(st, f"o{j}", blobs[j]) for j in range(i, min(nobj, i + 4))])

    t, c = time.perf_counter(), time.process_time()
    asyncio.run(put())
    return time.perf_counter() - t, time.process_time() - c


def push_child(endpoint: str, server_pid: int, src: str, location: str, work: str, total: int) -> dict:
    """A raw put, then a push of a copy of ``src`` to ``location`` (a fresh prefix), timed by phase."""
    from hangar import Repository
    from hangar.remote import client, objectdata
    from hangar.store.objectstore import REMOTE_PACK_BYTES, ObjectPackStorage

    bucket, _, prefix = location[len("s3://"):].partition("/")
    s0 = _proc_cpu(server_pid)  # includes the server's CPU while the client makes random bytes (none)
    tput, cpu = raw_put(endpoint, bucket, prefix + "-raw", total, max(1, -(-total // REMOTE_PACK_BYTES)))
    raw = {"wall": tput, "server_cpu": _proc_cpu(server_pid) - s0, "client_cpu": cpu}
    ph = Phases()
    client.commit_pointers = ph.wrap("pointers", client.commit_pointers)
    objectdata.bucket_index = ph.wrap("index", objectdata.bucket_index)
    objectdata._build_pack = ph.wrap("build", objectdata._build_pack)
    ObjectPackStorage.put_packs = ph.wrap("put_packs", ObjectPackStorage.put_packs)
    objectdata.push_refs = ph.wrap("push_refs", objectdata.push_refs)
    copy = os.path.join(work, "src")
    shutil.copytree(src, copy, symlinks=True)
    r = Repository(copy, exists=True)
    r.remote.remove("origin")  # the source pushed once already, elsewhere
    url = os.path.join(work, "history.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    r.remote.add("origin", url, data=location, endpoint_url=endpoint)
    s0 = _proc_cpu(server_pid)
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    r.remote.push("origin", "master")
    total_s = time.perf_counter() - t
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    server = _proc_cpu(server_pid) - s0
    # the raw put again, after: each push is held against the faster of its two neighbours
    tput2 = raw_put(endpoint, bucket, prefix + "-raw2", total, max(1, -(-total // REMOTE_PACK_BYTES)))[0]
    raw["wall"] = min(tput, tput2)
    return {"raw": raw, "total": total_s, "wall": dict(ph.wall), "cpu": dict(ph.cpu), "server_cpu": server,
            "client_cpu": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime}


def child(endpoint: str, server_pid: int, url: str, location: str, work: str) -> dict:
    """One raw get and one clone + fetch_data, timed by phase (this process's hangar)."""
    from bench_s3 import raw_get_packs  # the same raw get as bench_s3's ceiling

    from hangar import Repository, datastore
    from hangar.remote import client, objectdata
    from hangar.store import tensorstore

    bucket, _, prefix = location[len("s3://"):].partition("/")
    s0, t0 = _proc_cpu(server_pid), time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    traw = raw_get_packs(endpoint, bucket, prefix)
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    raw = {"wall": traw, "server_cpu": _proc_cpu(server_pid) - s0,
           "client_cpu": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime}
    del t0

    ph = Phases()
    datastore.clone = ph.wrap("clone", datastore.clone)
    client.missing_pointers = ph.wrap("missing", client.missing_pointers)
    objectdata.bucket_index = ph.wrap("index", objectdata.bucket_index)
    objectdata.fetch_samples = ph.wrap("fetch_samples", objectdata.fetch_samples)
    objectdata._verify_range = ph.wrap("verify", objectdata._verify_range)
    objectdata._write_range = ph.wrap("write", objectdata._write_range)
    tensorstore.TensorStore.flush = ph.wrap("flush", tensorstore.TensorStore.flush)
    ObjStorage = objectdata.ObjectPackStorage

    class Timed:
        """The stream's iterator, its waits for the next range timed."""

        def __init__(self, it) -> None:
            self.it = it

        def __iter__(self):
            return self

        def __next__(self):
            t = time.perf_counter()
            try:
                return next(self.it)
            finally:
                with ph.lock:
                    ph.wall["wait_range"] += time.perf_counter() - t

        def close(self) -> None:
            self.it.close()

    def timed_stream(orig):
        def stream(self, *a, **k):
            return Timed(orig(self, *a, **k))
        return stream
    # whichever the fetch calls (an older tree has no stream_pieces)
    for name in ("stream_ranges", "stream_pieces"):
        if hasattr(ObjStorage, name):
            setattr(ObjStorage, name, timed_stream(getattr(ObjStorage, name)))

    os.makedirs(os.path.join(work, "clone"))
    threads0, s0 = _threads_cpu(), _proc_cpu(server_pid)
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    dst = Repository(os.path.join(work, "clone"), exists=False)
    t = time.perf_counter()
    dst.clone("Bench", "bench@example.com", url, endpoint_url=endpoint)
    tclone = time.perf_counter() - t
    dst.remote.fetch_data("origin", "master")
    total = time.perf_counter() - t
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    threads1, s1 = _threads_cpu(), _proc_cpu(server_pid)
    threads = {k: threads1.get(k, 0.0) - threads0.get(k, 0.0) for k in threads1}
    # the flush calls on the writer thread count as 'flush', not also as 'write'
    return {"raw": raw, "total": total, "clone": tclone, "wall": dict(ph.wall), "cpu": dict(ph.cpu),
            "threads": {k: v for k, v in threads.items() if v >= 0.005}, "server_cpu": s1 - s0,
            "client_cpu": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime}


def _push(endpoint: str, work: str, n: int, location: str) -> str:
    from hangar import Repository

    os.makedirs(os.path.join(work, "src"))
    src = Repository(os.path.join(work, "src"), exists=False)
    src.init("Bench", "bench@example.com")
    rng = np.random.default_rng(1)
    co = src.checkout(write=True)
    co.arraysets.init_arrayset("images", shape=(224, 224, 3), dtype=np.uint8)
    for s in range(0, n, 500):
        rows = rng.integers(0, 255, (min(500, n - s), 224, 224, 3), dtype=np.uint8)
        co["images", [str(s + i) for i in range(len(rows))]] = rows
    co.commit("images")
    co.close()
    url = os.path.join(work, "history.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    src.remote.add("origin", url, data=location, endpoint_url=endpoint)
    src.remote.push("origin", "master")
    return url


def _fmt(xs: list[float]) -> str:
    return f"{min(xs):6.3f} {statistics.median(xs):6.3f}"


def main() -> None:
    from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, S3Server

    if sys.argv[1:2] == ["--child"]:
        os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
        import obstore.store  # noqa: F401  (imports before any timing)
        import zarr.storage  # noqa: F401

        endpoint, pid, url, location, work = sys.argv[2:7]
        import importlib

        for item in filter(None, os.environ.get("HANGAR_BENCH_SET", "").split(",")):  # a variant's constants
            target, _, value = item.partition("=")
            module, _, const = target.rpartition(".")
            setattr(importlib.import_module(module), const, int(value))
        try:
            if len(sys.argv) > 7:  # a push: url is the source repository, then the byte count
                print(json.dumps(push_child(endpoint, int(pid), url, location, work, int(sys.argv[7]))))
            else:
                print(json.dumps(child(endpoint, int(pid), url, location, work)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", help="another hangar tree timed in the same run (e.g. /tmp/base-main)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:MODULE.CONST=INT,...",
                    help="this tree with constants changed, e.g. s3:hangar.store.objectstore.STREAMS=3 (repeatable)")
    ap.add_argument("--push", action="store_true", help="time pushes (each to a fresh prefix) instead of fetches")
    args = ap.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    work = tempfile.mkdtemp(prefix="hangar-bench-s3ph-")
    server = S3Server(os.path.join(work, "seaweedfs"))
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this", here, "")] + ([("other", os.path.abspath(args.tree), "")] if args.tree else [])
    trees += [(v.partition(":")[0], here, v.partition(":")[2]) for v in args.variant]
    try:
        location = f"s3://{server.make_bucket('phases')}/p"
        url = _push(server.endpoint, os.path.join(work, "push"), args.n, location)
        print(f"load {os.getloadavg()[0]:.2f}; {args.n} x (224,224,3) uint8; min / median of {args.runs} runs (s)")
        results: dict[str, list[dict]] = {name: [] for name, _, _ in trees}
        for k in range(args.runs):
            for name, tree, consts in (trees if k % 2 == 0 else trees[::-1]):
                env = dict(os.environ, HANGAR_BENCH_TREE=tree, PYTHONPATH=f"{tree}:{here}", HANGAR_BENCH_SET=consts)
                argv = [sys.executable, os.path.abspath(__file__), "--child", server.endpoint, str(server.proc.pid)]
                if args.push:
                    argv += [os.path.join(work, "push", "src"), f"{location}-{name}{k}",
                             os.path.join(work, f"{name}{k}"), str(args.n * 224 * 224 * 3)]
                else:
                    argv += [url, location, os.path.join(work, f"{name}{k}")]
                out = subprocess.run(argv, env=env, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(out.stdout[-3000:] + out.stderr[-3000:])
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results[name].append(r)
                print(f"  {name} run {k}: {'push' if args.push else 'clone+fetch_data'} {r['total']:.3f} s, raw "
                      f"{'put' if args.push else 'get'} {r['raw']['wall']:.3f} s "
                      f"({r['raw']['wall'] / r['total']:.2f}x)", flush=True)
        for name, rs in results.items():
            print(f"== {name}")
            what = "push" if args.push else "clone+fetch_data"
            print(f"  raw {'put' if args.push else 'get'}: wall {_fmt([r['raw']['wall'] for r in rs])}  server cpu "
                  f"{_fmt([r['raw']['server_cpu'] for r in rs])}  client cpu "
                  f"{_fmt([r['raw']['client_cpu'] for r in rs])}")
            print(f"  {what}: wall {_fmt([r['total'] for r in rs])}  server cpu "
                  f"{_fmt([r['server_cpu'] for r in rs])}  client cpu {_fmt([r['client_cpu'] for r in rs])}  "
                  f"ratio {_fmt([r['raw']['wall'] / r['total'] for r in rs])}")
            keys = ("pointers", "index", "build", "put_packs", "push_refs") if args.push else (
                "clone", "missing", "index", "fetch_samples", "wait_range", "verify", "write", "flush")
            for key in keys:
                print(f"  {key:14s} wall {_fmt([r['wall'].get(key, 0.0) for r in rs])}   thread cpu "
                      f"{_fmt([r['cpu'].get(key, 0.0) for r in rs])}")
            names = sorted({t for r in rs for t in r.get("threads", {})})
            for t in names:
                print(f"  thread {t:22s} cpu {_fmt([r.get('threads', {}).get(t, 0.0) for r in rs])}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
