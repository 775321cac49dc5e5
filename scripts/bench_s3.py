"""Data remotes on S3 (a real SeaweedFS on loopback), against the client library's raw ceiling.

1. zarr's two S3 stores on the same objects: ``ObjectStore`` over obstore vs ``FsspecStore``
   over s3fs (whole-object writes and reads, small concurrent range reads): why obstore.
2. push, then clone + fetch_data, of 2,000 x (224,224,3) uint8 (301 MB) through a data remote
   (history in a bare git repository), against raw obstore put / get of the same bytes as the
   same number of objects, with the same concurrency, measured before and after (the faster of
   each is the ceiling); prints the ratios (goal >= 0.8).
   The get ceiling is also measured on the pushed packs' own objects just before the clone and
   just after fetch_data (the same objects in the same state of the server): the stable one.
3. lazy random reads from a fresh clone of 60,000 x (28,28) uint8: 5,000 random samples read
   with one ``get_batch`` (bulk: concurrent range requests), 500 read one by one, then the same
   reads again once cached locally.

   With ``--before TREE`` each round also reads a fresh clone in a process of the baseline tree
   (same run, alternating) and prints the ratios.

Run: PYTHONPATH=. python scripts/bench_s3.py [--large N] [--small N] [--skip-stores]
     [--only-small --before /tmp/base-main --repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hangar import Repository
from hangar.store.objectstore import CONCURRENCY, REMOTE_PACK_BYTES
from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, S3Server


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


def raw_ceiling(server: S3Server, total: int, nobj: int, tag: str) -> tuple[float, float]:
    """Seconds to put then get ``total`` bytes as ``nobj`` objects with obstore (4 objects at once,
    as the push does; all at once for the get)."""
    import obstore
    from obstore.store import S3Store

    bucket = server.make_bucket(f"bench-raw-{tag}")
    st = S3Store(bucket, prefix="raw", config={"endpoint": server.endpoint, "allow_http": True,
                                               "virtual_hosted_style_request": False, "region": "us-east-1"})
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


def raw_get_packs(server: S3Server, bucket: str, prefix: str) -> float:
    """Seconds to get the pushed packs' data objects themselves (all at once, obstore): the
    ceiling of a fetch_data, read from the same objects in the same state of the server (a raw
    get of objects just written was served from memory: 0.35 s vs 0.95 s a minute later)."""
    import obstore
    from obstore.store import S3Store

    st = S3Store(bucket, prefix=prefix, config={"endpoint": server.endpoint, "allow_http": True,
                                                "virtual_hosted_style_request": False, "region": "us-east-1"})
    keys = [o["path"] for batch in obstore.list(st, "packs/") for o in batch if o["path"].endswith("/c/0")]

    async def get() -> None:
        async def one(k: str) -> bytes:
            return await (await obstore.get_async(st, k)).bytes_async()
        await asyncio.gather(*[one(k) for k in keys])

    t = time.perf_counter()
    asyncio.run(get())
    return time.perf_counter() - t


def large(server: S3Server, work: str, n: int) -> None:
    shape = (224, 224, 3)
    total = n * int(np.prod(shape))
    print(f"== push + clone + fetch_data of {n:,} x {shape} uint8 ({total / 1e6:.0f} MB)")
    src = _repo(os.path.join(work, "large-src"))
    _fill(src, "images", n, shape, 1)
    url = os.path.join(work, "large.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    bucket = server.make_bucket('bench-large')
    loc = f"s3://{bucket}/data"
    src.remote.add("origin", url, data=loc, endpoint_url=server.endpoint)
    nobj = max(1, -(-total // REMOTE_PACK_BYTES))
    # the ceiling before and after (a shared machine: load drifts), the faster of each counts
    before = raw_ceiling(server, total, nobj, "before")
    t = time.perf_counter()
    src.remote.push("origin", "master")
    tpush = time.perf_counter() - t
    packs_before = raw_get_packs(server, bucket, "data")
    os.makedirs(os.path.join(work, "large-clone"))
    dst = Repository(os.path.join(work, "large-clone"), exists=False)
    t = time.perf_counter()
    dst.clone("Bench", "bench@example.com", url, endpoint_url=server.endpoint)
    tclone = time.perf_counter() - t
    dst.remote.fetch_data("origin", "master")
    tfetch = time.perf_counter() - t
    co = dst.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    co.close()
    packs_after = raw_get_packs(server, bucket, "data")
    after = raw_ceiling(server, total, nobj, "after")
    rput, rget = min(before[0], after[0]), min(before[1], after[1])
    print(f"  raw ceiling before / after: put {before[0]:.2f} / {after[0]:.2f} s, get {before[1]:.2f} / "
          f"{after[1]:.2f} s")
    print(f"  push                      {tpush:6.2f} s  {total / tpush / 1e6:7.1f} MB/s")
    print(f"  raw obstore put ({nobj} obj)    {rput:6.2f} s  {total / rput / 1e6:7.1f} MB/s   "
          f"push / raw: {rput / tpush:.2f}x")
    print(f"  clone + fetch_data        {tfetch:6.2f} s  {total / tfetch / 1e6:7.1f} MB/s   (clone {tclone:.2f} s, "
          f"fetch_data {tfetch - tclone:.2f} s)")
    print(f"  raw obstore get ({nobj} obj)    {rget:6.2f} s  {total / rget / 1e6:7.1f} MB/s   "
          f"clone+fetch_data / raw: {rget / tfetch:.2f}x")
    pget = min(packs_before, packs_after)
    print(f"  raw obstore get of the pushed packs before / after: {packs_before:.2f} / {packs_after:.2f} s   "
          f"clone+fetch_data / raw get of the packs: {pget / tfetch:.2f}x   fetch_data alone: "
          f"{pget / (tfetch - tclone):.2f}x")


def lazy_reads(path: str, n: int, batch: int, singles: int) -> dict[str, float]:
    """Seconds of the lazy reads of a fresh clone at ``path``: one ``get_batch`` of ``batch``
    random samples, then again (cached); ``singles`` other samples one by one, then again."""
    rng = np.random.default_rng(3)
    keys = [str(k) for k in rng.choice(n, batch, replace=False)]
    co = Repository(path).checkout()
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
    return {"batch": tb, "batch_cached": tbc, "singles": ts, "singles_cached": tsc}


def small(server: S3Server, work: str, n: int, batch: int, singles: int, before: str | None, repeat: int) -> None:
    shape = (28, 28)
    print(f"== lazy random reads from a fresh clone of {n:,} x {shape} uint8")
    src = _repo(os.path.join(work, "small-src"))
    _fill(src, "digits", n, shape, 2)
    url = os.path.join(work, "small.git")
    subprocess.run(["git", "init", "-q", "--bare", url], check=True)
    loc = f"s3://{server.make_bucket('bench-small')}/data"
    src.remote.add("origin", url, data=loc, endpoint_url=server.endpoint)
    src.remote.push("origin", "master")
    trees = {"this tree": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    if before:
        trees["before"] = os.path.abspath(before)
    best: dict[str, dict[str, float]] = {}
    for r in range(repeat):  # alternating fresh clones, each read in a fresh process of its tree
        for name, tree in trees.items():
            path = os.path.join(work, f"small-clone-{r}-{name.replace(' ', '-')}")
            os.makedirs(path)
            Repository(path, exists=False).clone("Bench", "bench@example.com", url, endpoint_url=server.endpoint)
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--lazy-child", path, "--small", str(n),
                                  "--batch", str(batch), "--singles", str(singles)], check=True, capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": tree}).stdout
            got = json.loads(out.strip().splitlines()[-1])
            best[name] = {k: min(v, best.get(name, {}).get(k, v)) for k, v in got.items()}
            shutil.rmtree(path, ignore_errors=True)
    for name, t in best.items():
        print(f"  [{name}] get_batch of {batch:,} random, lazy    {batch / t['batch']:9.0f} samples/s   "
              f"cached {batch / t['batch_cached']:9.0f} samples/s")
        print(f"  [{name}] {singles} random single reads, lazy {singles / t['singles']:9.0f} samples/s   "
              f"cached {singles / t['singles_cached']:9.0f} samples/s")
    if before:
        now, then = best["this tree"], best["before"]
        print("  this tree / before (rate ratio, min of each): " + ", ".join(
            f"{k} {then[k] / now[k]:.2f}" for k in now))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", type=int, default=2000)
    ap.add_argument("--small", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--singles", type=int, default=500)
    ap.add_argument("--skip-stores", action="store_true", help="skip part 1 (the zarr store comparison)")
    ap.add_argument("--only-small", action="store_true", help="run part 3 only")
    ap.add_argument("--before", help="a baseline source tree: part 3's lazy reads also run with it (same run)")
    ap.add_argument("--repeat", type=int, default=1, help="part 3: fresh clones per tree (minimum reported)")
    ap.add_argument("--lazy-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lazy_child:  # part 3's reads, in a fresh process of the tree on PYTHONPATH
        print(json.dumps(lazy_reads(args.lazy_child, args.small, args.batch, args.singles)))
        return
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    work = tempfile.mkdtemp(prefix="hangar-bench-s3-")
    server = S3Server(os.path.join(work, "seaweedfs"))
    # a shared machine: never unbounded (set after the server started: Go reserves much address space)
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    try:
        if not args.skip_stores and not args.only_small:
            compare_zarr_stores(server)
        if not args.only_small:
            large(server, work, args.large)
        small(server, work, args.small, args.batch, args.singles, args.before, args.repeat)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
