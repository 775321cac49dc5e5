"""Data remotes on S3 (a real SeaweedFS on loopback), against the client library's raw ceiling.

1. zarr's two S3 stores on the same objects: ``ObjectStore`` over obstore vs ``FsspecStore``
   over s3fs (whole-object writes and reads, small concurrent range reads): why obstore.
2. push, then clone + fetch_data, of 2,000 x (224,224,3) uint8 (301 MB) through a data remote
   (history in a bare git repository). push against raw obstore put of the same bytes as the
   same number of objects, 4 at a time (measured before and after the run, the faster counts);
   clone + fetch_data against raw obstore get of the pushed packs' own objects, all at once, just
   before the clone and just after fetch_data (the faster counts): the ratios of the goal
   (>= 0.8x). Also printed, not a goal: the same get with each object written to a local file
   and fsynced (what a durable fetch does at the least, before any hashing).
3. lazy random reads from a fresh clone of 60,000 x (28,28) uint8: 5,000 random samples read
   with one ``get_batch`` (bulk: concurrent range requests), 500 read one by one, then the same
   reads again once cached locally.

With ``--baseline DIR`` (a tree of another hangar, e.g. ``git archive`` of main with its C
extension built) parts 2 and 3 run for both trees in the same run, ``--runs`` times each,
alternating which goes first, each in a process of its own importing that tree's ``hangar``
(same server, same source repository copied, a fresh bucket prefix per run); the raw put/get
ceiling is measured between the runs and each run is held against the smaller of its two
neighbours. Prints each run, then minima and medians per tree.

Run: PYTHONPATH=. python scripts/bench_s3.py [--large N] [--small N] [--skip-stores]
     [--baseline /tmp/base-main --runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# the hangar imported: this script's tree, or the one a baseline run names (--child)
sys.path.insert(0, os.environ.get("HANGAR_BENCH_TREE") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hangar import Repository
from hangar.store.objectstore import CONCURRENCY, REMOTE_PACK_BYTES
from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, S3Server

_TREE = sys.path[0]


def _repo(path: str) -> Repository:
    os.makedirs(path, exist_ok=True)
    r = Repository(path, exists=False)
    r.init("Bench", "bench@example.com")
    return r


def _fill(r: Repository, name: str, n: int, shape: tuple, seed: int) -> None:
    rng = np.random.default_rng(seed)
    co = r.checkout(write=True)
    co.arraysets.init_arrayset(name, shape=shape, dtype=np.uint8)
    step = 1000
    for s in range(0, n, step):
        rows = rng.integers(0, 255, (min(step, n - s), *shape), dtype=np.uint8)
        co[name, [str(s + i) for i in range(len(rows))]] = rows  # the bulk form: one call per 1,000
    co.commit(f"{n} samples")
    co.close()


def compare_zarr_stores(server: S3Server, mb: int = 64, objects: int = 4) -> None:
    import s3fs
    from obstore.store import S3Store
    from zarr.core.buffer import default_buffer_prototype
    from zarr.storage import FsspecStore, ObjectStore

    proto = default_buffer_prototype()
    data = os.urandom(mb << 20)
    bucket = server.make_bucket("bench-stores")
    stores = {
        "ObjectStore/obstore": ObjectStore(S3Store(bucket, prefix="obstore", config={
            "endpoint": server.endpoint, "allow_http": True, "virtual_hosted_style_request": False,
            "region": "us-east-1"})),
        "FsspecStore/s3fs": FsspecStore(s3fs.S3FileSystem(endpoint_url=server.endpoint, asynchronous=True),
                                        path=f"{bucket}/fsspec"),
    }
    print(f"== zarr S3 stores: {objects} x {mb} MiB objects, then 2,000 x 784-byte range reads")
    for name, st in stores.items():
        _store_timings(name, st, proto, data, objects, mb)


def _store_timings(name: str, st, proto, data: bytes, objects: int, mb: int) -> None:
    from zarr.abc.store import RangeByteRequest
    from zarr.core.sync import sync

    async def put() -> None:
        await asyncio.gather(*[st.set(f"k{i}", proto.buffer.from_bytes(data)) for i in range(objects)])

    async def get() -> list:
        return await asyncio.gather(*[st.get(f"k{i}", proto) for i in range(objects)])

    async def ranges() -> list:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int):
            off = (i * 7919 * 784) % ((mb << 20) - 784)
            async with sem:
                return await st.get("k0", proto, byte_range=RangeByteRequest(off, off + 784))
        return await asyncio.gather(*[one(i) for i in range(2000)])

    t = time.perf_counter()
    sync(put())
    tput = time.perf_counter() - t
    t = time.perf_counter()
    sync(get())
    tget = time.perf_counter() - t
    t = time.perf_counter()
    sync(ranges())
    trng = time.perf_counter() - t
    print(f"  {name:22s} write {objects * mb / tput:7.1f} MB/s   read {objects * mb / tget:7.1f} MB/s   "
          f"range reads {2000 / trng:7.0f} /s")


def obstore_s3(endpoint: str, bucket: str, prefix: str):
    """obstore's S3 store of ``bucket``/``prefix`` on the S3 server at ``endpoint`` (plain HTTP)."""
    from obstore.store import S3Store

    return S3Store(bucket, prefix=prefix, config={"endpoint": endpoint, "allow_http": True,
                                                  "virtual_hosted_style_request": False, "region": "us-east-1"})


def raw_ceiling(server: S3Server, total: int, nobj: int, tag: str) -> tuple[float, float]:
    """Seconds to put then get ``total`` bytes as ``nobj`` objects with obstore (4 objects at once,
    as the push does; all at once for the get)."""
    import obstore

    st = obstore_s3(server.endpoint, _bucket(server), f"raw-{tag}")
    size = -(-total // nobj)
    blobs = [os.urandom(min(size, total - i * size)) for i in range(nobj)]

    async def put() -> None:
        for i in range(0, nobj, 4):
            await asyncio.gather(*[obstore.put_async(st, f"o{j}", blobs[j]) for j in range(i, min(nobj, i + 4))])

    async def get() -> None:
        async def one(j: int) -> bytes:
            return await (await obstore.get_async(st, f"o{j}")).bytes_async()
        await asyncio.gather(*[one(j) for j in range(nobj)])

    t = time.perf_counter()
    asyncio.run(put())
    tput = time.perf_counter() - t
    t = time.perf_counter()
    asyncio.run(get())
    tget = time.perf_counter() - t
    return tput, tget


def raw_get_packs(endpoint: str, bucket: str, prefix: str) -> float:
    """Seconds to get the pushed packs' data objects themselves (all at once, obstore): the
    ceiling of a fetch_data, read from the same objects in the same state of the server (a raw
    get of objects just written was served from memory: 0.35 s vs 0.95 s a minute later)."""
    import obstore

    st = obstore_s3(endpoint, bucket, prefix)
    keys = [o["path"] for batch in obstore.list(st, "packs/") for o in batch if o["path"].endswith("/c/0")]

    async def get() -> None:
        async def one(k: str) -> bytes:
            return await (await obstore.get_async(st, k)).bytes_async()
        await asyncio.gather(*[one(k) for k in keys])

    t = time.perf_counter()
    asyncio.run(get())
    return time.perf_counter() - t


def _bucket(server: S3Server) -> str:
    """The one bucket of every run (prefixes keep runs apart): SeaweedFS gives each bucket volumes
    of its own, and a bucket per run ran out of them (PUTs answered 500)."""
    if server.bucket is None:
        server.bucket = server.make_bucket("hangar-bench")
    return server.bucket


def raw_get_write(endpoint: str, bucket: str, prefix: str, out_dir: str) -> float:
    """Seconds to get the pushed packs' data objects (all at once, obstore) and write each to a
    local file as it arrives (one write), then fsync them all: what a fetch must do at the least
    besides hashing, for comparison (not the goal's ceiling)."""
    import obstore

    st = obstore_s3(endpoint, bucket, prefix)
    keys = [o["path"] for batch in obstore.list(st, "packs/") for o in batch if o["path"].endswith("/c/0")]
    os.makedirs(out_dir)
    fds = []

    async def get() -> None:
        async def one(i: int, k: str) -> None:
            data = await (await obstore.get_async(st, k)).bytes_async()
            fd = os.open(os.path.join(out_dir, str(i)), os.O_CREAT | os.O_WRONLY, 0o644)
            fds.append(fd)
            await asyncio.to_thread(os.write, fd, memoryview(data))
        await asyncio.gather(*[one(i, k) for i, k in enumerate(keys)])

    t = time.perf_counter()
    asyncio.run(get())
    for fd in fds:
        os.fsync(fd)
    took = time.perf_counter() - t
    for fd in fds:
        os.close(fd)
    shutil.rmtree(out_dir)
    return took


# ------------------------------------------------------------ one run (a child process)
def large_run(endpoint: str, src_path: str, work: str, location: str) -> dict:
    """push of a copy of ``src_path`` to ``location``, then clone + fetch_data (this process's hangar)."""
    src_copy = os.path.join(work, "src")
    shutil.copytree(src_path, src_copy, symlinks=True)
    src = Repository(src_copy, exists=True)
    url = os.path.join(work, "history.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    src.remote.add("origin", url, data=location, endpoint_url=endpoint)
    t = time.perf_counter()
    src.remote.push("origin", "master")
    tpush = time.perf_counter() - t
    bucket, _, prefix = location[len("s3://"):].partition("/")
    packs_before = raw_get_packs(endpoint, bucket, prefix)
    os.makedirs(os.path.join(work, "clone"))
    dst = Repository(os.path.join(work, "clone"), exists=False)
    t = time.perf_counter()
    dst.clone("Bench", "bench@example.com", url, endpoint_url=endpoint)
    tclone = time.perf_counter() - t
    dst.remote.fetch_data("origin", "master")
    tfetch = time.perf_counter() - t
    co = dst.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    co.close()
    packs_after = raw_get_packs(endpoint, bucket, prefix)
    durable = raw_get_write(endpoint, bucket, prefix, os.path.join(work, "raw-write"))
    return {"push": tpush, "clone": tclone, "clone_fetch": tfetch, "packs": min(packs_before, packs_after),
            "get_write": durable}


def small_run(endpoint: str, src_path: str, work: str, location: str, n: int, batch: int, singles: int) -> dict:
    """Lazy random reads from a fresh clone of a copy of ``src_path`` pushed to ``location``."""
    src_copy = os.path.join(work, "src")
    shutil.copytree(src_path, src_copy, symlinks=True)
    src = Repository(src_copy, exists=True)
    url = os.path.join(work, "history.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    src.remote.add("origin", url, data=location, endpoint_url=endpoint)
    src.remote.push("origin", "master")
    path = os.path.join(work, "clone")
    os.makedirs(path)
    dst = Repository(path, exists=False)
    dst.clone("Bench", "bench@example.com", url, endpoint_url=endpoint)
    rng = np.random.default_rng(3)
    keys = [str(k) for k in rng.choice(n, batch, replace=False)]
    co = dst.checkout()
    a = co.arraysets["digits"]
    t = time.perf_counter()
    a.get_batch(keys)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    a.get_batch(keys)
    tbc = time.perf_counter() - t
    others = [str(k) for k in rng.choice(n, singles * 3, replace=False) if str(k) not in set(keys)][:singles]
    t = time.perf_counter()
    for k in others:
        a[k]
    ts = time.perf_counter() - t
    t = time.perf_counter()
    for k in others:
        a[k]
    tsc = time.perf_counter() - t
    co.close()
    return {"batch": batch / tb, "batch_cached": batch / tbc, "singles": singles / ts, "singles_cached": singles / tsc}


# ------------------------------------------------------------------ the driver
def _child(tree: str, work: str, args: list[str]) -> dict:
    env = dict(os.environ, HANGAR_BENCH_TREE=tree, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args, "--work", work],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"bench run in {tree} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _order(trees: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    return trees if k % 2 == 0 else trees[::-1]  # alternate who goes first: drift hits both


def _stats(xs: list[float]) -> str:
    return f"min {min(xs):.2f}  median {statistics.median(xs):.2f}  max {max(xs):.2f}"


def large(server: S3Server, work: str, n: int, trees: list[tuple[str, str]], runs: int) -> None:
    shape = (224, 224, 3)
    total = n * int(np.prod(shape))
    print(f"== push + clone + fetch_data of {n:,} x {shape} uint8 ({total / 1e6:.0f} MB), {runs} run(s) per tree")
    src = _repo(os.path.join(work, "large-src"))
    _fill(src, "images", n, shape, 1)
    nobj = max(1, -(-total // REMOTE_PACK_BYTES))
    ceilings = [raw_ceiling(server, total, nobj, "c0")]
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for k in range(runs):
        for name, tree in _order(trees, k):
            tag = f"{name}{k}"
            loc = f"s3://{_bucket(server)}/large-{tag}"
            r = _child(tree, os.path.join(work, f"large-{tag}"), ["large", server.endpoint, src.path, loc])
            ceilings.append(raw_ceiling(server, total, nobj, f"c{len(ceilings)}"))
            put = min(ceilings[-1][0], ceilings[-2][0])  # the run's two neighbours: the faster counts
            r.update(put_ratio=put / r["push"], get_ratio=r["packs"] / r["clone_fetch"],
                     get_ratio_fetch=r["packs"] / (r["clone_fetch"] - r["clone"]))
            results[name].append(r)
            print(f"  {name:8s} run {k}: push {r['push']:5.2f} s (raw put {put:5.2f} s, {r['put_ratio']:.2f}x)   "
                  f"clone+fetch_data {r['clone_fetch']:5.2f} s (clone {r['clone']:.2f}; raw get of the packs "
                  f"{r['packs']:.2f} s, {r['get_ratio']:.2f}x; fetch_data alone {r['get_ratio_fetch']:.2f}x; raw get + "
                  f"write + fsync {r['get_write']:.2f} s)",
                  flush=True)
    print(f"  raw put / get ceilings (s): {', '.join(f'{p:.2f}/{g:.2f}' for p, g in ceilings)}")
    for name, rs in results.items():
        print(f"  {name:8s} push / raw put: {_stats([r['put_ratio'] for r in rs])}   "
              f"clone+fetch_data / raw get: {_stats([r['get_ratio'] for r in rs])}   "
              f"push s: {_stats([r['push'] for r in rs])}   clone+fetch_data s: "
              f"{_stats([r['clone_fetch'] for r in rs])}")


def small(server: S3Server, work: str, n: int, batch: int, singles: int, trees: list[tuple[str, str]],
          runs: int) -> None:
    shape = (28, 28)
    print(f"== lazy random reads from a fresh clone of {n:,} x {shape} uint8: get_batch of {batch:,} random "
          f"samples, then {singles} random single reads, each again once cached")
    src = _repo(os.path.join(work, "small-src"))
    _fill(src, "digits", n, shape, 2)
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for k in range(runs):
        for name, tree in _order(trees, k):
            tag = f"{name}{k}"
            loc = f"s3://{_bucket(server)}/small-{tag}"
            r = _child(tree, os.path.join(work, f"small-{tag}"),
                       ["small", server.endpoint, src.path, loc, str(n), str(batch), str(singles)])
            results[name].append(r)
            print(f"  {name:8s} run {k}: get_batch lazy {r['batch']:8.0f} samples/s, cached {r['batch_cached']:8.0f}   "
                  f"single reads lazy {r['singles']:6.0f} samples/s, cached {r['singles_cached']:8.0f}", flush=True)
    for name, rs in results.items():
        print(f"  {name:8s} get_batch lazy samples/s: {_stats([r['batch'] for r in rs])}   cached: "
              f"{_stats([r['batch_cached'] for r in rs])}   single lazy: {_stats([r['singles'] for r in rs])}")


def child_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["large", "small"])
    ap.add_argument("endpoint")
    ap.add_argument("src")
    ap.add_argument("location")
    ap.add_argument("rest", nargs="*")
    ap.add_argument("--work", required=True)
    args = ap.parse_args(argv)
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    os.makedirs(args.work)
    # the client modules loaded before any timing (both trees alike): a process's first push
    # otherwise pays ~0.4 s importing zarr, which is not transfer
    import obstore.store  # noqa: F401
    import zarr.storage  # noqa: F401

    try:
        if args.kind == "large":
            out = large_run(args.endpoint, args.src, args.work, args.location)
        else:
            n, batch, singles = map(int, args.rest)
            out = small_run(args.endpoint, args.src, args.work, args.location, n, batch, singles)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(out))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", type=int, default=2000)
    ap.add_argument("--small", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--singles", type=int, default=500)
    ap.add_argument("--skip-stores", action="store_true", help="skip part 1 (the zarr store comparison)")
    ap.add_argument("--skip-large", action="store_true", help="skip part 2 (push, clone + fetch_data)")
    ap.add_argument("--skip-small", action="store_true", help="skip part 3 (lazy reads)")
    ap.add_argument("--baseline", help="tree of another hangar to run parts 2 and 3 with too (same run)")
    ap.add_argument("--runs", type=int, default=1, help="runs of parts 2 and 3 per tree")
    args = ap.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    trees = [("this", _TREE)]
    if args.baseline:
        trees.insert(0, ("baseline", os.path.abspath(args.baseline)))
    work = tempfile.mkdtemp(prefix="hangar-bench-s3-")
    server = S3Server(os.path.join(work, "seaweedfs"))
    # a shared machine: never unbounded (set after the server started: Go reserves much address space)
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    try:
        if not args.skip_stores:
            compare_zarr_stores(server)
        if not args.skip_large:
            large(server, work, args.large, trees, args.runs)
        if not args.skip_small:
            small(server, work, args.small, args.batch, args.singles, trees, args.runs)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
