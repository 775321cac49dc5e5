#!/usr/bin/env python3
"""Benchmark: hangar against the versioned-array peers it aims to beat (original Hangar, Icechunk, Deep Lake).

Each system runs the same workload on 60,000 random uint8 (28, 28) samples, in one process,
on fresh directories under --tmp, ``--repeat`` times (the median is shown):

* ingest + commit: each system's fastest path: hangar, Icechunk and Deep Lake get the whole
  (60000, 28, 28) array in one call (hangar: ``co['x', keys] = array``); the original Hangar
  has no bulk form and adds sample by sample;
* random read of 5,000 single samples by index/key, after opening the committed version;
* 1% update: 600 random samples rewritten one by one, then commit;
* branch: create a branch at the head and open it for writing;
* diff: between main and a branch whose commit changed those 600 samples;
* merge: that branch into main after main changed 600 other samples (a 3-way merge);
* disk use / raw bytes after the ingest.

Then (``--only reads`` for these alone) the issue-14 read and start-up rows, against Deep Lake and
lmdb: W1 and W2r = 2,000 x uint8 (224, 224, 3) bulk reads with ``get_batch`` in 64 MiB batches
(first and second pass over the data: hangar builds its location table in the first), W1 5,000
random single-sample reads in a fresh process including the open (before and after any other read
of the commit), ``import hangar``, ``from hangar import Repository`` and ``hangar --help``.

Peers are optional: a system whose package is missing is skipped (``pip install icechunk
deeplake``). The original Hangar 0.5.2 is also a package named ``hangar``, so it runs in a child
process of its own virtual environment, given by ``--original-hangar-python`` (see
``scripts/bench_peers_original_hangar.py``; it gets the per-sample path with its transactions
held open, ``with column:``). Icechunk stores the array in chunks of ``--chunk`` samples (default 256; one
sample per chunk would make 60,000 objects); Deep Lake chooses its own layout. Icechunk has no
branch merge and Deep Lake no diff: those cells say n/a.

    python3 scripts/bench_peers.py [--repeat 3] [--n 60000] [--chunk 256] [--tmp /tmp]
                                   [--original-hangar-python /tmp/hv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
#: a child timing a baseline tree's hangar (``--baseline``) imports it before this one
if os.environ.get("HANGAR_BENCH_TREE"):
    sys.path.insert(0, os.environ["HANGAR_BENCH_TREE"])

SHAPE = (28, 28)
N_RANDOM = 5_000
OPS = ["ingest + commit", "random read 5,000", "1% update + commit", "branch + open for write",
       "diff (600 changed)", "3-way merge", "disk / raw"]


def disk_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- hangar
def run_hangar(path: str, data: np.ndarray, keys: np.ndarray, upd: np.ndarray, upd2: np.ndarray,
               new: np.ndarray, chunk: int) -> dict[str, Optional[float]]:
    from hangar import Repository

    out: dict[str, Optional[float]] = {}
    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")

    def ingest() -> None:
        co = repo.checkout(write=True)
        co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)
        co["x", list(range(len(data)))] = data  # the bulk form: one stacked array
        co.commit("ingest")
        co.close()

    out["ingest + commit"] = timed(ingest)
    out["disk / raw"] = disk_bytes(path) / data.nbytes
    co = repo.checkout()
    x = co.arraysets["x"]
    out["random read 5,000"] = timed(lambda: [x[int(k)] for k in keys])
    co.close()

    def update(branch: str, which: np.ndarray, values: np.ndarray = new) -> None:
        w = repo.checkout(write=True, branch=branch)
        a = w.arraysets["x"]
        for k, v in zip(which.tolist(), values):
            a[k] = v
        w.commit(f"update on {branch}")
        w.close()

    out["1% update + commit"] = timed(lambda: update("master", upd))

    def branch() -> None:
        repo.create_branch("dev")
        repo.checkout(write=True, branch="dev").close()

    out["branch + open for write"] = timed(branch)
    update("dev", upd2)

    reader = repo.checkout(branch="master")
    out["diff (600 changed)"] = timed(lambda: reader.diff.branch("dev"))
    reader.close()
    update("master", upd, new[::-1])  # main moves on too: the merge is a 3-way one
    out["3-way merge"] = timed(lambda: repo.merge("merge dev", "master", "dev"))
    return out


# -------------------------------------------------------------------- icechunk
def run_icechunk(path: str, data: np.ndarray, keys: np.ndarray, upd: np.ndarray, upd2: np.ndarray,
                 new: np.ndarray, chunk: int) -> dict[str, Optional[float]]:
    import icechunk
    import zarr

    out: dict[str, Optional[float]] = {}
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))

    def ingest() -> None:
        s = repo.writable_session("main")
        root = zarr.group(store=s.store)
        arr = root.create_array("x", shape=data.shape, chunks=(chunk, *SHAPE), dtype="uint8")
        arr[:] = data
        s.commit("ingest")

    out["ingest + commit"] = timed(ingest)
    out["disk / raw"] = disk_bytes(path) / data.nbytes
    arr = zarr.open_array(repo.readonly_session(branch="main").store, path="x", mode="r")
    out["random read 5,000"] = timed(lambda: [arr[int(k)] for k in keys])

    def update(branch: str, which: np.ndarray) -> None:
        s = repo.writable_session(branch)
        a = zarr.open_array(s.store, path="x")
        for k, v in zip(which.tolist(), new):
            a[k] = v
        s.commit(f"update on {branch}")

    out["1% update + commit"] = timed(lambda: update("main", upd))

    def branch() -> None:
        repo.create_branch("dev", snapshot_id=repo.lookup_branch("main"))
        repo.writable_session("dev")

    out["branch + open for write"] = timed(branch)
    update("dev", upd2)
    out["diff (600 changed)"] = timed(lambda: repo.diff(from_branch="main", to_branch="dev"))
    out["3-way merge"] = None  # no branch merge in Icechunk
    return out


# -------------------------------------------------------------------- deeplake
def run_deeplake(path: str, data: np.ndarray, keys: np.ndarray, upd: np.ndarray, upd2: np.ndarray,
                 new: np.ndarray, chunk: int) -> dict[str, Optional[float]]:
    import deeplake

    out: dict[str, Optional[float]] = {}
    url = f"file://{path}"

    def ingest() -> None:
        ds = deeplake.create(url)
        ds.add_column("x", deeplake.types.Array("uint8", shape=list(SHAPE)))
        ds.append({"x": data})
        ds.commit("ingest")

    out["ingest + commit"] = timed(ingest)
    out["disk / raw"] = disk_bytes(path) / data.nbytes
    ro = deeplake.open_read_only(url)  # a column needs its dataset alive
    col = ro["x"]
    out["random read 5,000"] = timed(lambda: [np.asarray(col[int(k)]) for k in keys])
    ds = deeplake.open(url)

    def update(target, which: np.ndarray, values: np.ndarray = new) -> None:  # a Dataset
        for k, v in zip(which.tolist(), values):
            target["x"][k] = v
        target.commit("update")

    out["1% update + commit"] = timed(lambda: update(ds, upd))
    opened = {}
    out["branch + open for write"] = timed(lambda: opened.setdefault("dev", ds.branch("dev").open()))
    update(opened["dev"], upd2)
    out["diff (600 changed)"] = None  # no diff in Deep Lake
    update(ds, upd, new[::-1])
    out["3-way merge"] = timed(lambda: ds.merge("dev"))
    return out


def run_original_hangar(python: str, path: str, data: np.ndarray, keys: np.ndarray, upd: np.ndarray,
                        upd2: np.ndarray, new: np.ndarray) -> dict[str, Optional[float]]:
    """The original Hangar, in a child process of its own interpreter (its package is also ``hangar``)."""
    workload = os.path.join(path, "workload.npz")
    np.savez(workload, data=data, keys=keys, upd=upd, upd2=upd2, new=new)
    repo = os.path.join(path, "repo")
    os.makedirs(repo)
    proc = subprocess.run([python, os.path.join(ROOT, "scripts", "bench_peers_original_hangar.py"), repo, workload],
                          capture_output=True, text=True, cwd=path, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"original Hangar run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- write rows
# Ingest + commit throughput of each system's fastest write path, per workload (issue 14):
# W1 = --n x uint8 (28, 28), W2r = 2,000 x uint8 (224, 224, 3), W3 = 64 x float32 (1024, 1024),
# all random. Shown beside the disk's durable sequential write speed (dd ... conv=fdatasync):
# hangar fsyncs its data before the commit; Deep Lake and Icechunk do not, lmdb syncs on commit.
WRITE_WORKLOADS = {"W1": (None, (28, 28), "uint8"), "W2r": (2_000, (224, 224, 3), "uint8"),
                   "W3": (64, (1024, 1024), "float32")}


def write_hangar(path: str, data: np.ndarray, loop: bool = False, batch: bool = False) -> None:
    """hangar's stacked bulk form, or (``loop``) one ``x[i] = sample`` per sample, inside
    ``with x:`` when ``batch``."""
    from hangar import Repository

    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=data.shape[1:], dtype=data.dtype)
    if loop and batch:
        with x:
            for i in range(len(data)):
                x[i] = data[i]
    elif loop:
        for i in range(len(data)):
            x[i] = data[i]
    else:
        co["x", list(range(len(data)))] = data
    co.commit("ingest")
    co.close()


def write_deeplake(path: str, data: np.ndarray) -> None:
    import deeplake

    ds = deeplake.create(f"file://{path}")
    ds.add_column("x", deeplake.types.Array(str(data.dtype), shape=list(data.shape[1:])))
    ds.append({"x": data})
    ds.commit("ingest")


def write_icechunk(path: str, data: np.ndarray) -> None:
    import icechunk
    import zarr

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))
    s = repo.writable_session("main")
    rows = max(1, (4 << 20) // data[0].nbytes)  # chunks of ~4 MiB
    arr = zarr.group(store=s.store).create_array("x", shape=data.shape, chunks=(rows, *data.shape[1:]),
                                                 dtype=data.dtype)
    arr[:] = data
    s.commit("ingest")


def write_lmdb(path: str, data: np.ndarray) -> None:
    import lmdb

    env = lmdb.open(path, map_size=max(1 << 30, 2 * data.nbytes))  # syncs on commit (default)
    with env.begin(write=True) as txn:  # one transaction
        for i in range(len(data)):
            txn.put(i.to_bytes(8, "big"), data[i])
    env.close()


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads (the write rows report them per
    run: unlike wall time they hardly move with the machine's load)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


#: bytes of page cache :func:`settle` writes and drops before a timed write, per byte the write is given
SETTLE_WARM_FACTOR = 2


def _dirty_bytes() -> int:
    """Dirty + Writeback of the whole machine (``/proc/meminfo``), 0 where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            return sum(int(line.split()[1]) << 10 for line in f if line.startswith(("Dirty:", "Writeback:")))
    except OSError:
        return 0


def settle(tmp: Optional[str], nbytes: int) -> None:
    """The same start for every timed write (each system's, hangar's children's and dd's): the disk idle
    and the memory the write will take already backed.

    1. ``sync`` and wait (at most 5 s) for the machine's dirty pages to drain: otherwise a system that
       does not fsync (Deep Lake, Icechunk) leaves ~270 MB being written back while the next system
       writes and fsyncs, and the files the previous run deleted are discarded (ext4 ``discard``) in
       the next one's journal commit.
    2. Write ``SETTLE_WARM_FACTOR * nbytes`` into a scratch file and delete it before write-back (no disk
       I/O): memory the guest has freed is handed back to the VM's host (virtio-balloon free page
       reporting, a pass every ~2-7 s here) and its first touch afterwards faults on the host, billed as
       CPU to whatever touches it. A 256 MiB write into fresh page cache took 63 / 100 ms of CPU (min /
       median) right after another such file was deleted, 440 / 603 ms once the freed memory had been
       reported (``scripts/bench_disk.py --page-cache``, load 9-11); the pages just dropped here are the
       first the timed write gets back. Without this, a write child (either tree) ran at 4-6x the CPU of
       the same child run alone, and the in-process peers, which ran right after a deletion, did not.
    """
    os.sync()
    deadline = time.monotonic() + 5
    while _dirty_bytes() > (64 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    scratch = tempfile.NamedTemporaryFile(prefix="bench-settle-", dir=tmp, delete=False)
    try:
        block = np.ones(16 << 20, dtype=np.uint8)
        for _ in range(max(1, SETTLE_WARM_FACTOR * nbytes // len(block))):
            scratch.write(block.data)
        scratch.flush()
    finally:
        scratch.close()
        os.unlink(scratch.name)


def write_in_child(tree: str, path: str, data: np.ndarray, settled: bool = False,
                   **kw: bool) -> tuple[float, float]:
    """Seconds and CPU seconds ``write_hangar(path, data, **kw)`` takes in a child process importing
    hangar from ``tree`` (the ``--baseline`` rows): the child loads the data and warms up untimed first,
    then (``settled``) calls :func:`settle` just before it starts the clock, as every system's run does."""
    src = os.path.join(path, "data.npy")
    os.makedirs(path, exist_ok=True)
    np.save(src, data)
    # written back before the child starts: with the copy's pages still dirty, the child's own writes
    # and fsyncs ran behind their write-back (W3: 0.8-1.5 s and 4-6x the CPU, for either tree)
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    env = {**os.environ, "HANGAR_BENCH_TREE": tree}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-write",
                           json.dumps({**kw, "_settle": settled}), src,
                           os.path.join(path, "repo")], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"baseline child failed: {proc.stderr[-2000:]}")
    seconds, cpu = proc.stdout.split()[-2:]
    return float(seconds), float(cpu)


def child_write(kw_json: str, src: str, path: str) -> None:
    """The child of :func:`write_in_child`: an untimed warm-up, then one timed write; prints seconds."""
    import hangar

    assert os.environ["HANGAR_BENCH_TREE"] in os.path.abspath(hangar.__file__), hangar.__file__
    kw = json.loads(kw_json)
    settled = kw.pop("_settle", False)
    data = np.load(src)
    warm = path + "-warm"
    os.makedirs(warm)
    write_hangar(warm, data[:4], **kw)
    shutil.rmtree(warm, ignore_errors=True)
    os.makedirs(path)
    if settled:
        settle(os.path.dirname(path), data.nbytes)
    c0, t0 = cpu_seconds(), time.perf_counter()
    write_hangar(path, data, **kw)
    print(time.perf_counter() - t0, cpu_seconds() - c0)


WRITERS = {"hangar": write_hangar, "deeplake": write_deeplake, "icechunk": write_icechunk, "lmdb": write_lmdb}


def dd_bandwidth(tmp: Optional[str], mib: int, direct: bool = False, settled: bool = False) -> Optional[float]:
    """Durable sequential write speed of the disk under ``tmp`` in bytes/s (dd conv=fdatasync; with
    ``direct``, oflag=direct: dd's buffered form copies everything into the page cache and only then
    starts the disk, so it measures the two one after the other, under what the disk sustains).
    ``settled``: :func:`settle` first, as before every system's run."""
    d = tempfile.mkdtemp(prefix="bench-dd-", dir=tmp)
    try:
        if settled:
            settle(tmp, mib << 20)
        t0 = time.perf_counter()
        proc = subprocess.run(["dd", "if=/dev/zero", f"of={os.path.join(d, 'f')}", "bs=4M", f"count={max(1, mib // 4)}",
                               "conv=fdatasync"] + (["oflag=direct"] if direct else []), capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return max(1, mib // 4) * (4 << 20) / elapsed if proc.returncode == 0 else None


def run_writes(args: argparse.Namespace) -> None:
    """Median write+commit throughput per workload and system, with ratios, in one run."""
    systems = [s for s in WRITERS if s == "hangar" or available(s)]
    rng = np.random.default_rng(1)
    rows: list[tuple[str, str, dict[str, Optional[float]]]] = []  # (label, unit, system -> per second)
    # dd is sampled inside every write round (buffered and direct), beside the rows it is compared with
    dd: dict[str, list[float]] = {"dd": [], "dd direct": []}
    # (workload, label -> seconds, label -> CPU seconds, bytes)
    spread: list[tuple[str, dict[str, list[float]], dict[str, list[float]], int]] = []
    for name, (n, shape, dtype) in WRITE_WORKLOADS.items():
        if name not in args.write_workloads.split(","):
            continue
        n = args.n if n is None else n
        if dtype == "uint8":
            data = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        else:
            data = rng.random(size=(n, *shape), dtype=np.float32)
        variants: list[tuple[str, Optional[Callable[..., None]], dict[str, bool]]] = [
            (s, WRITERS[s], {}) for s in systems]
        # a child timing this tree: the same conditions as the baseline's child (in process it runs after
        # the peers' runs in this process: W2r took 0.71-4.22 s there while the baseline's child took
        # 0.75-1.28 s in the same five rounds, load 9-12)
        child = {"hangar": ROOT} if args.hangar_in_child and name != "W1" else {}
        if child:
            variants[0] = ("hangar", None, {})
        if name != "W1" and args.baseline:  # large samples: the baseline tree's write, in a child
            variants.insert(1, ("baseline", None, {}))
        if name == "W1":
            variants.insert(1, ("hangar loop", write_hangar, {"loop": True}))
            variants.insert(2, ("hangar loop with", write_hangar, {"loop": True, "batch": True}))
            if args.baseline:  # the same three forms, timed in a child importing the baseline tree
                for k, (label, kw) in enumerate([("baseline", {}), ("baseline loop", {"loop": True}),
                                                 ("baseline loop with", {"loop": True, "batch": True})]):
                    variants.insert(3 + k, (label, None, kw))
        got: dict[str, list[float]] = {v[0]: [] for v in variants}
        cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
        for _, fn, kw in variants:  # untimed warm-up: imports, first-use setup
            if fn is None:
                continue  # a baseline child warms up itself
            tmp = tempfile.mkdtemp(prefix="bench-w-warm-", dir=args.tmp)
            try:
                fn(tmp, data[:4], **kw)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for r in range(args.repeat):
            # each round starts with another system: the first after a round's dd probes and deletions
            # ran 4-8x slower with 4-5x the CPU (W3: 0.85-1.66 s, the same tree's child 0.16-0.55 s
            # elsewhere in the round), whichever tree it was
            first = r % len(variants)
            for label, fn, kw in variants[first:] + variants[:first]:
                tmp = tempfile.mkdtemp(prefix=f"bench-w-{label.replace(' ', '-')}-", dir=args.tmp)
                try:
                    if fn is None:
                        seconds, used = write_in_child(child.get(label, args.baseline), tmp, data,
                                                       settled=args.settle == "yes", **kw)
                        got[label].append(seconds)
                        cpu[label].append(used)
                        continue
                    if args.settle == "yes":
                        settle(args.tmp, data.nbytes)
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    fn(tmp, data, **kw)
                    got[label].append(time.perf_counter() - t0)
                    cpu[label].append(cpu_seconds() - c0)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            if name != "W1" and args.dd_mib:
                for kind in dd:
                    v = dd_bandwidth(args.tmp, args.dd_mib, direct=kind == "dd direct", settled=args.settle == "yes")
                    if v is not None:
                        dd[kind].append(v)
            print(f"write run {r + 1}/{args.repeat} {name}: " + ", ".join(
                f"{k} {v[-1]:.3f}s" for k, v in got.items()), flush=True)
        med = {k: statistics.median(v) for k, v in got.items()}
        if name != "W1":
            spread.append((name, got, cpu, data.nbytes))
        if name == "W1":
            per_s = {k: n / v for k, v in med.items() if not k.startswith(("hangar loop", "baseline"))}
            if args.baseline:
                per_s["baseline"] = n / med["baseline"]
            rows.append(("W1 write+commit, stacked", "samples/s", per_s))
            for label, key in (("W1 write+commit, loop", "loop"), ("W1 ... loop in `with aset:`", "loop with")):
                loop_row = {"hangar": n / med[f"hangar {key}"], **{p: v for p, v in per_s.items()
                                                                   if p not in ("hangar", "baseline")}}
                if args.baseline:
                    loop_row["baseline"] = n / med[f"baseline {key}"]
                rows.append((label, "samples/s", loop_row))
        else:
            rows.append((f"{name} write+commit", "MB/s", {k: data.nbytes / 1e6 / v for k, v in med.items()}))
    peers = [s for s in systems if s != "hangar"] + (["baseline"] if args.baseline else [])
    # the reference: the faster dd form's median (hangar fsyncs its data, as both dd forms do)
    dd_meds = {k: statistics.median(v) for k, v in dd.items() if v}
    dd_med = max(dd_meds.values()) if dd_meds else None
    dd_text = ", ".join(f"{k} {v / 1e6:,.0f}" for k, v in dd_meds.items()) or "n/a"
    print(f"\nwrite + commit throughput, median of {args.repeat}; ratio = hangar / peer (> 1: hangar faster); "
          f"durable disk write (dd {args.dd_mib} MiB bs=4M conv=fdatasync, medians, MB/s): {dd_text}; "
          "hangar/dd against the faster")
    header = f"{'workload':<28}{'unit':>10}{'hangar':>12}" + "".join(f"{p:>12}{'ratio':>8}" for p in peers)
    header += f"{'hangar/dd':>11}"
    print(header)
    print("-" * len(header))
    for label, unit, vals in rows:
        h = vals["hangar"]
        line = f"{label:<28}{unit:>10}{h:>12,.0f}"
        for p in peers:
            v = vals.get(p)
            line += f"{'':>12}{'':>8}" if v is None else f"{v:>12,.0f}{h / v:>8.2f}"
        if unit == "MB/s" and dd_med:
            line += f"{h * 1e6 / dd_med:>11.2f}"
        print(line)
    for kind, v in dd_meds.items():  # the reference rows: W2r/W3 aim at >= 0.9 of the faster
        label = "dd ... oflag=direct" if kind == "dd direct" else "dd bs=4M conv=fdatasync"
        print(f"{label:<28}{'MB/s':>10}{v / 1e6:>12,.0f}")
    if spread:  # single runs swing 2x under load: every system's best, median and worst, and dd's
        print(f"\nlarge-sample rows, MB/s of the best / median / worst of {args.repeat} runs, and the process's "
              "CPU seconds per run (min / median; all its threads, not the kernel's write-back); ratios of bests and "
              "of medians against each peer below")
        for name, got, cpu, nbytes in spread:
            for label, ts in got.items():
                mb = nbytes / 1e6
                best, med, worst = mb / min(ts), mb / statistics.median(ts), mb / max(ts)
                print(f"  {name:<4} {label:<18}{best:>8,.0f}{med:>8,.0f}{worst:>8,.0f}"
                      f"   cpu {min(cpu[label]):.3f} / {statistics.median(cpu[label]):.3f} s")
            for label in got:
                if label == "hangar":
                    continue
                print(f"  {name:<4} hangar / {label:<9} best {min(got[label]) / min(got['hangar']):.2f}"
                      f"  median {statistics.median(got[label]) / statistics.median(got['hangar']):.2f}")
        for kind, v in dd.items():
            if v:
                print(f"  {kind:<23}{max(v) / 1e6:>8,.0f}{statistics.median(v) / 1e6:>8,.0f}{min(v) / 1e6:>8,.0f}")


SYSTEMS = {"hangar": run_hangar, "icechunk": run_icechunk, "deeplake": run_deeplake,
           "hangar-0.5": None}  # the original, run by run_original_hangar when --original-hangar-python is given


def available(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


# ----------------------------------------------- issue 14: reads, diff/merge, start-up (own rows)
# W1 = 60,000 x uint8 (28, 28) and W2r = 2,000 x uint8 (224, 224, 3), both random; every row
# is the median of --repeat runs, peers in the same run, ratio = hangar / peer for rates
# (> 1: hangar faster) and peer / hangar for times.
W2R_SHAPE = (224, 224, 3)
BATCH_BYTES = 64 << 20
_CHILD_ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

_FRESH_HANGAR = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from hangar import Repository
t1 = time.perf_counter()
keys = np.load(sys.argv[2]).tolist()
t2 = time.perf_counter()
x = Repository(sys.argv[1]).checkout().arraysets["x"]
x[keys[0]]
t3 = time.perf_counter()
for k in keys:
    x[k]
t4 = time.perf_counter()
print(t4 - t2, t3 - t2, t1 - t0)
"""
_FRESH_DEEPLAKE = """
import sys, time
import numpy as np
import deeplake
keys = np.load(sys.argv[2]).tolist()
t2 = time.perf_counter()
ds = deeplake.open_read_only("file://" + sys.argv[1])
col = ds["x"]
np.asarray(col[keys[0]])
t3 = time.perf_counter()
for k in keys:
    np.asarray(col[k])
t4 = time.perf_counter()
print(t4 - t2, t3 - t2, 0)
"""
_FRESH_LMDB = """
import sys, time
import numpy as np
import lmdb
keys = np.load(sys.argv[2]).tolist()
t2 = time.perf_counter()
env = lmdb.open(sys.argv[1], readonly=True, lock=False)
txn = env.begin()
txn.get(b"%08d" % keys[0])
t3 = time.perf_counter()
for k in keys:
    np.frombuffer(txn.get(b"%08d" % k), dtype=np.uint8).reshape(28, 28)
t4 = time.perf_counter()
print(t4 - t2, t3 - t2, 0)
"""


def _fresh(code: str, path: str, keys_file: str) -> tuple[float, float]:
    """(seconds for open + reads, seconds for open + first read) measured inside a new interpreter,
    after its imports (``import hangar`` is its own row)."""
    out = subprocess.run([sys.executable, "-c", code, path, keys_file], capture_output=True, text=True,
                         env=_CHILD_ENV, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    total, opened, _ = (float(v) for v in out.stdout.split())
    return total, opened


def _hangar_repo(path: str, data: np.ndarray) -> None:
    from hangar import Repository

    os.makedirs(path)
    repo = Repository(path, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=data.shape[1:], dtype=np.uint8)
    co["x", list(range(len(data)))] = data
    co.commit("ingest")
    co.close()


def _deeplake_ds(path: str, data: np.ndarray) -> None:
    import deeplake

    ds = deeplake.create(f"file://{path}")
    ds.add_column("x", deeplake.types.Array("uint8", shape=list(data.shape[1:])))
    ds.append({"x": data})
    ds.commit("ingest")


def _bulk_hangar(path: str, n: int, per_batch: int) -> tuple[float, float]:
    """Seconds for the first and the second pass (epoch) over all samples, one repository object."""
    from hangar import Repository

    co = Repository(path).checkout()
    x = co.arraysets["x"]
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        for a in range(0, n, per_batch):
            x.get_batch(list(range(a, min(n, a + per_batch))))
        times.append(time.perf_counter() - t0)
    co.close()
    return times[0], times[1]


def _bulk_deeplake(path: str, n: int, per_batch: int) -> tuple[float, float]:
    import deeplake

    ds = deeplake.open_read_only(f"file://{path}")  # a column needs its dataset alive
    col = ds["x"]
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        for a in range(0, n, per_batch):
            np.asarray(col[a:min(n, a + per_batch)])
        times.append(time.perf_counter() - t0)
    return times[0], times[1]


def _cmd_seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=_CHILD_ENV, check=True)
    return time.perf_counter() - t0


def read_rows(args: argparse.Namespace) -> list[tuple[str, str, float, dict[str, float]]]:
    """Issue 14 read/start-up rows: (label, unit, hangar median, {peer: median})."""
    have_dl, have_lmdb = available("deeplake"), available("lmdb")
    rng = np.random.default_rng(1)
    w1 = rng.integers(0, 256, size=(args.n, *SHAPE), dtype=np.uint8)
    w2 = rng.integers(0, 256, size=(args.n_w2r, *W2R_SHAPE), dtype=np.uint8)
    keys = rng.choice(args.n, size=min(N_RANDOM, args.n), replace=False)
    res: dict[str, dict[str, list[float]]] = {}

    def add(row: str, system: str, value: float) -> None:
        res.setdefault(row, {}).setdefault(system, []).append(value)

    for r in range(args.repeat):
        root = tempfile.mkdtemp(prefix="bench-reads-", dir=args.tmp)
        try:
            keys_file = os.path.join(root, "keys.npy")
            np.save(keys_file, keys)
            for name, data in (("w1", w1), ("w2r", w2)):
                per_batch = max(1, BATCH_BYTES // data[0].nbytes)
                bulk = f"{name.upper()} bulk read get_batch (64 MiB batches)"
                for system, make, fresh_code, bulk_fn in (
                        ("hangar", _hangar_repo, _FRESH_HANGAR, _bulk_hangar),
                        ("deeplake", _deeplake_ds, _FRESH_DEEPLAKE, _bulk_deeplake)):
                    if system == "deeplake" and not have_dl:
                        continue
                    p = os.path.join(root, f"{system}-{name}")
                    make(p, data)
                    if name == "w1":  # a fresh process before any other read of the commit
                        total, opened = _fresh(fresh_code, p, keys_file)
                        add("W1 random read, fresh process, first open", system, len(keys) / total)
                        add("W1 open + 1st read, fresh process, first open", system, opened)
                    first, later = bulk_fn(p, len(data), per_batch)
                    add(bulk + ", 1st epoch", system, data.nbytes / first / 1e9)
                    add(bulk + ", 2nd epoch", system, data.nbytes / later / 1e9)
                    if name == "w1":  # and after one (hangar: its location table is cached by now)
                        total, opened = _fresh(fresh_code, p, keys_file)
                        add("W1 random read, fresh process incl. open", system, len(keys) / total)
                        add("W1 open + 1st read, fresh process", system, opened)
                    shutil.rmtree(p, ignore_errors=True)
            if have_lmdb:
                import lmdb

                lp = os.path.join(root, "lmdb-w1")
                env = lmdb.open(lp, map_size=4 * w1.nbytes + (64 << 20))
                with env.begin(write=True) as txn:
                    for i in range(len(w1)):
                        txn.put(b"%08d" % i, w1[i].tobytes())
                env.close()
                total, opened = _fresh(_FRESH_LMDB, lp, keys_file)
                for row in ("W1 random read, fresh process incl. open", "W1 random read, fresh process, first open"):
                    add(row, "lmdb", len(keys) / total)
                for row in ("W1 open + 1st read, fresh process", "W1 open + 1st read, fresh process, first open"):
                    add(row, "lmdb", opened)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        py = [sys.executable]
        add("python -c 'import hangar'", "hangar", _cmd_seconds(py + ["-c", "import hangar"]))
        add("python -c 'from hangar import Repository'", "hangar",
            _cmd_seconds(py + ["-c", "from hangar import Repository"]))
        add("hangar --help", "hangar", _cmd_seconds(py + ["-c", "from hangar.cli import main; main()", "--help"]))
        add("python -c 'pass' (interpreter start)", "hangar", _cmd_seconds(py + ["-c", "pass"]))
        print(f"reads run {r + 1}/{args.repeat} done", flush=True)
    units = {"bulk read": "GB/s", "random read": "samples/s"}
    rows = []
    for row, by in res.items():
        unit = next((u for k, u in units.items() if k in row), "s")
        med = {s: statistics.median(v) for s, v in by.items()}
        rows.append((row, unit, med.pop("hangar"), med))
    return rows


def print_read_rows(rows: list[tuple[str, str, float, dict[str, float]]], repeat: int) -> None:
    print(f"\nissue 14 reads / start-up; median of {repeat}; ratio = hangar/peer for rates, peer/hangar for "
          "seconds (> 1: hangar better)")
    header = f"{'figure':<48}{'unit':>10}{'hangar':>11}{'deeplake':>11}{'ratio':>7}{'lmdb':>11}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    for row, unit, h, peers in rows:
        line = f"{row:<48}{unit:>10}{h:>11.4g}"
        for p in ("deeplake", "lmdb"):
            v = peers.get(p)
            if v is None:
                line += f"{'':>11}{'':>7}"
            else:
                ratio = h / v if unit != "s" else v / h
                line += f"{v:>11.4g}{ratio:>7.2f}"
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--chunk", type=int, default=256, help="Icechunk chunk length in samples")
    ap.add_argument("--tmp", default=None, help="parent of the temporary directories")
    ap.add_argument("--original-hangar-python", default=os.environ.get("HANGAR_ORIGINAL_PYTHON"),
                    help="python of a virtual environment with the original Hangar installed "
                         "(pip install hangar==0.5.2 'protobuf<3.21'); also env HANGAR_ORIGINAL_PYTHON")
    ap.add_argument("--n-w2r", type=int, default=2_000, help="W2r samples of (224, 224, 3) for the bulk read row")
    ap.add_argument("--only", choices=["all", "table", "reads"], default="all",
                    help="run only the operations table or only the issue-14 read/start-up rows")
    ap.add_argument("--writes", choices=["yes", "no", "only"], default="yes",
                    help="the write+commit throughput rows (W1 stacked and loop, W2r, W3 beside dd)")
    ap.add_argument("--dd-mib", type=int, default=1024, help="size of the dd durable-write probe")
    ap.add_argument("--baseline", default=None,
                    help="a source tree of hangar (e.g. /tmp/base-main) whose write rows (W1 forms, W2r, W3) run "
                         "in child processes in the same run, as the 'baseline' column")
    ap.add_argument("--hangar-in-child", action="store_true",
                    help="time this tree's W2r/W3 writes in a child process too, as the --baseline ones are")
    ap.add_argument("--write-workloads", default=",".join(WRITE_WORKLOADS),
                    help="comma-separated write workloads to run (default: all of " + ", ".join(WRITE_WORKLOADS) + ")")
    ap.add_argument("--settle", choices=["yes", "no"], default="yes",
                    help="before every timed write (each system's, the children's, dd's): sync, wait for dirty "
                         "pages to drain and pre-fault the memory the write will take (see settle())")
    ap.add_argument("--child-write", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_write:
        child_write(*args.child_write)
        return 0
    logging.disable(logging.WARNING)
    os.environ.setdefault("RUST_LOG", "error")  # icechunk's warning about local storage and concurrency
    if args.only == "reads":
        print_read_rows(read_rows(args), args.repeat)
        return 0
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(args.n, *SHAPE), dtype=np.uint8)
    keys = rng.choice(args.n, size=min(N_RANDOM, args.n), replace=False)
    n_upd = max(1, args.n // 100)
    upd, upd2 = np.split(rng.choice(args.n, size=2 * n_upd, replace=False), 2)
    new = rng.integers(0, 256, size=(n_upd, *SHAPE), dtype=np.uint8)
    if args.writes == "only":
        run_writes(args)
        return 0
    systems = [s for s in SYSTEMS if s == "hangar" or (s == "hangar-0.5" and args.original_hangar_python)
               or (SYSTEMS[s] is not None and available(s))]
    skipped = [s for s in SYSTEMS if s not in systems]
    results: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPS} for s in systems}
    for r in range(args.repeat):
        for s in systems:
            tmp = tempfile.mkdtemp(prefix=f"bench-{s}-", dir=args.tmp)
            try:
                if s == "hangar-0.5":
                    got = run_original_hangar(args.original_hangar_python, tmp, data, keys, upd, upd2, new)
                else:
                    got = SYSTEMS[s](tmp, data, keys, upd, upd2, new, args.chunk)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            for op, v in got.items():
                if v is not None:
                    results[s][op].append(v)
            print(f"run {r + 1}/{args.repeat} {s}: " + ", ".join(
                f"{op} {v:.3f}" for op, v in got.items() if v is not None), flush=True)
    med = {s: {op: (statistics.median(v) if v else None) for op, v in ops.items()} for s, ops in results.items()}
    peers = [s for s in systems if s != "hangar"]
    print(f"\n{args.n:,} x {SHAPE} uint8 random samples; median of {args.repeat}; seconds unless noted; "
          "ratio = peer / hangar (> 1: hangar faster or smaller)")
    header = f"{'operation':<26}{'hangar':>10}" + "".join(f"{p:>12}{'ratio':>8}" for p in peers)
    print(header)
    print("-" * len(header))
    for op in OPS:
        h = med["hangar"][op]
        row = f"{op:<26}{h:>10.4f}"
        for p in peers:
            v = med[p][op]
            row += f"{'n/a':>12}{'':>8}" if v is None else f"{v:>12.4f}{v / h:>8.2f}"
        print(row)
    if skipped:
        print(f"\nskipped (not installed, or no --original-hangar-python): {', '.join(skipped)}")
    if args.only == "all":
        print_read_rows(read_rows(args), args.repeat)
    if args.writes == "yes":
        run_writes(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
