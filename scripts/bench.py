#!/usr/bin/env python3
"""Core engine benchmark: hangar against one ``.npy`` per sample and an LMDB key->bytes store.

Runs, in one process and one run, for random uint8 samples (60,000 x (28, 28) and
2,000 x (224, 224, 3); ``--quick``: 6,000 and 200):

* write + commit
    - hangar: ``Repository.init``, writer checkout, ``init_arrayset``, ``aset[i] = arr`` for
      every sample, ``co.commit()``, ``co.close()``. Durable: the sample pack, the git pack
      and the staging state are fsynced before the branch ref moves.
    - npy: ``np.save`` of every sample into one directory. Not durable: no fsync of files or
      directory (page cache only), which is what people usually do.
    - lmdb: one write transaction putting key -> ``arr.tobytes()``. Durable: LMDB's default
      ``sync=True`` fsyncs on commit.
* sequential read of every sample in a fresh process (a child ``python`` process that times
  only the read loop; the OS page cache is warm because the data were just written):
  hangar ``repo.checkout()`` + ``aset.values()``; npy ``np.load`` per file; lmdb cursor
  iteration + ``np.frombuffer``.
* random read of 5,000 keys (the same keys for every system), in-process, after opening.
* 1% update + commit: hangar writer checkout, ``aset[k] = new`` for 1% of the keys, commit,
  close; npy overwrites those files; lmdb puts them in one transaction.
* disk use after write + commit: allocated bytes (``st_blocks * 512``) and number of files
  (``os.walk``) of ``.hangar`` / the npy directory / the LMDB directory, against the raw
  sample bytes.
* big commit: an arrayset of 1,000,000 samples of (4,) uint8 (``--quick``: 100,000) is
  committed once (timed, reported as set-up), then 100 samples are changed and committed;
  the row reports the ``co.commit()`` call (target <= 0.2 s). The LMDB baseline puts 100
  keys in one transaction over a 1,000,000-key database; no npy baseline (1,000,000 files).

Each measurement runs ``--repeat`` times (default 3) in fresh directories under a temp dir
in /tmp; the table shows medians. Ratio columns are ``baseline_time / hangar_time`` (for disk
rows ``baseline_bytes / hangar_bytes``), so > 1 means hangar is faster (smaller).

Usage::

    python3 scripts/bench.py                 # full sizes, 3 repeats, plain table
    python3 scripts/bench.py --quick         # smoke run
    python3 scripts/bench.py --only bigcommit --repeat 5 --markdown
    python3 scripts/bench.py --all           # then scripts/bench_{diffmerge,loaders,remotes}.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA_SCRIPTS = ("bench_diffmerge.py", "bench_loaders.py", "bench_remotes.py", "bench_peers.py")
SYSTEMS = ("hangar", "npy", "lmdb")
ASET = "x"
N_RANDOM = 5000
BIG_CHANGED = 100
LMDB_MAP_SIZE = 1 << 36  # 64 GiB of address space; the file grows only as needed


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- systems
def lmdb_key(i: int) -> bytes:
    return i.to_bytes(8, "big")  # big-endian: cursor order == numeric order


def npy_path(root: str, i: int) -> str:
    return os.path.join(root, f"{i}.npy")


def hangar_write(root: str, data: np.ndarray) -> None:
    from hangar import Repository

    repo = Repository(root, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset(ASET, prototype=data[0])
    for i in range(len(data)):
        aset[i] = data[i]
    co.commit("write")
    co.close()


def hangar_write_stacked(root: str, data: np.ndarray) -> None:
    """hangar's bulk form: ``co[aset, keys] = stacked_array`` (one call for all samples)."""
    from hangar import Repository

    repo = Repository(root, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset(ASET, prototype=data[0])
    co[ASET, list(range(len(data)))] = data
    co.commit("write")
    co.close()


def npy_write(root: str, data: np.ndarray) -> None:
    os.makedirs(root, exist_ok=True)
    for i in range(len(data)):
        np.save(npy_path(root, i), data[i])


def lmdb_write(root: str, data: np.ndarray) -> None:
    import lmdb

    env = lmdb.open(root, map_size=LMDB_MAP_SIZE)
    with env.begin(write=True) as txn:
        for i in range(len(data)):
            txn.put(lmdb_key(i), data[i].tobytes(), append=True)
    env.close()


def hangar_update(root: str, keys: np.ndarray, new: np.ndarray) -> float:
    """Writer checkout, set the samples, commit, close; return the commit call's time."""
    from hangar import Repository

    repo = Repository(root)
    co = repo.checkout(write=True)
    aset = co.arraysets[ASET]
    for k, arr in zip(keys.tolist(), new):
        aset[k] = arr
    t = time.perf_counter()
    co.commit("update")
    dt = time.perf_counter() - t
    co.close()
    return dt


def npy_update(root: str, keys: np.ndarray, new: np.ndarray) -> float:
    for k, arr in zip(keys.tolist(), new):
        np.save(npy_path(root, k), arr)
    return float("nan")


def lmdb_update(root: str, keys: np.ndarray, new: np.ndarray) -> float:
    import lmdb

    env = lmdb.open(root, map_size=LMDB_MAP_SIZE)
    txn = env.begin(write=True)
    for k, arr in zip(keys.tolist(), new):
        txn.put(lmdb_key(k), arr.tobytes())
    t = time.perf_counter()
    txn.commit()
    dt = time.perf_counter() - t
    env.close()
    return dt


def open_random_reader(system: str, root: str, shape: tuple, n: int) -> tuple[Callable[[int], np.ndarray],
                                                                              Callable[[], None]]:
    """An opened reader (``get(key) -> array``) and its ``close``."""
    if system == "hangar":
        from hangar import Repository

        co = Repository(root).checkout()
        aset = co.arraysets[ASET]
        return aset.__getitem__, co.close
    if system == "npy":
        return (lambda k: np.load(npy_path(root, k))), (lambda: None)
    import lmdb

    env = lmdb.open(root, readonly=True, lock=False)
    txn = env.begin()
    return (lambda k: np.frombuffer(txn.get(lmdb_key(k)), dtype=np.uint8).reshape(shape)), env.close


def seq_read(system: str, root: str, n: int, shape: tuple) -> dict:
    """Child-process body: open, then time reading every sample (the loop only)."""
    t_open = time.perf_counter()
    count = 0
    if system == "hangar":
        from hangar import Repository

        co = Repository(root).checkout()
        aset = co.arraysets[ASET]
        t0 = time.perf_counter()
        for _ in aset.values():
            count += 1
        t1 = time.perf_counter()
        co.close()
    elif system == "npy":
        t0 = time.perf_counter()
        for i in range(n):
            np.load(npy_path(root, i))
            count += 1
        t1 = time.perf_counter()
    else:
        import lmdb

        env = lmdb.open(root, readonly=True, lock=False)
        t0 = time.perf_counter()
        with env.begin() as txn:
            for _, v in txn.cursor():
                np.frombuffer(v, dtype=np.uint8).reshape(shape)
                count += 1
        t1 = time.perf_counter()
        env.close()
    if count != n:
        raise RuntimeError(f"{system}: read {count} samples, expected {n}")
    return {"system": system, "n": count, "open_s": t0 - t_open, "read_s": t1 - t0}


def seq_read_in_child(system: str, root: str, n: int, shape: tuple) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_child-seqread", system, root, str(n),
           ",".join(map(str, shape))]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    log(f"    child {system} seq read: {json.dumps(res)}")
    return res


WRITE = {"hangar": hangar_write, "npy": npy_write, "lmdb": lmdb_write}
UPDATE = {"hangar": hangar_update, "npy": npy_update, "lmdb": lmdb_update}


def disk_use(root: str) -> tuple[int, int]:
    """(allocated bytes, number of files) under ``root``."""
    nbytes = nfiles = 0
    for d, _, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(d, f))
            nbytes += st.st_blocks * 512
            nfiles += 1
    return nbytes, nfiles


# --------------------------------------------------------------------------- results
@dataclass
class Row:
    dataset: str
    op: str
    unit: str  # "s" (time, lower is better) or "x raw" / "files" (disk, lower is better)
    values: dict[str, list[float]] = field(default_factory=dict)
    n: Optional[int] = None  # samples per measurement (for samples/s)
    target: str = ""
    check: Optional[Callable[[float], bool]] = None

    def add(self, system: str, value: float) -> None:
        self.values.setdefault(system, []).append(value)

    def median(self, system: str) -> Optional[float]:
        vals = [v for v in self.values.get(system, []) if v == v]  # drop NaN
        return statistics.median(vals) if vals else None


def fmt_num(v: Optional[float], unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "files":
        return f"{v:,.0f}"
    if unit == "x raw":
        return f"{v:.3f}"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def table_rows(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    head = ["dataset", "operation", "unit", "hangar", "hangar samples/s", "npy", "lmdb",
            "npy/hangar", "lmdb/hangar", "target", "met"]
    body = []
    for r in rows:
        h = r.median("hangar")
        rate = f"{r.n / h:,.0f}" if (r.unit == "s" and h and r.n) else ""
        cells = [r.dataset, r.op, r.unit, fmt_num(h, r.unit), rate]
        for s in ("npy", "lmdb"):
            cells.append(fmt_num(r.median(s), r.unit))
        for s in ("npy", "lmdb"):
            b = r.median(s)
            cells.append(f"{b / h:.2f}" if (b is not None and h) else "")
        met = "" if r.check is None or h is None else ("yes" if r.check(h) else "NO")
        cells += [r.target, met]
        body.append(cells)
    return head, body


def render_plain(rows: list[Row]) -> str:
    head, body = table_rows(rows)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    left = {0, 1, 2, 9}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(b) for b in body])


def render_markdown(rows: list[Row]) -> str:
    head, body = table_rows(rows)
    align = ["---" if i in (0, 1, 2, 9) else "---:" for i in range(len(head))]
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(out)


# --------------------------------------------------------------------------- benchmarks
def bench_dataset(name: str, data: np.ndarray, tmp: str, repeat: int, rng: np.random.Generator,
                  targets: dict) -> list[Row]:
    n = len(data)
    shape = data.shape[1:]
    raw = data.nbytes
    rand_keys = rng.choice(n, size=min(N_RANDOM, n), replace=False)
    n_upd = max(1, n // 100)
    upd_keys = rng.choice(n, size=n_upd, replace=False)
    upd_data = rng.integers(0, 256, size=(n_upd, *shape), dtype=np.uint8)

    write = Row(name, "write + commit", "s", n=n, **targets.get("write", {}))
    stacked = Row(name, "  same, one stacked co[aset, keys] = array", "s", n=n)
    seq = Row(name, "sequential read (fresh process)", "s", n=n)
    rand = Row(name, f"random read {len(rand_keys):,} keys", "s", n=len(rand_keys), **targets.get("random", {}))
    upd = Row(name, f"1% update ({n_upd:,}) + commit", "s", n=n_upd)
    upd_commit = Row(name, "  of which commit call", "s", n=n_upd)
    disk = Row(name, "disk use / raw bytes", "x raw", target="<= 1.1", check=lambda v: v <= 1.1)
    files = Row(name, "files on disk", "files", **targets.get("files", {}))

    for rep in range(repeat):
        log(f"[{name}] repeat {rep + 1}/{repeat}")
        for system in SYSTEMS:
            root = os.path.join(tmp, f"{name}-{system}-{rep}")
            os.makedirs(root)
            t = time.perf_counter()
            WRITE[system](root, data)
            dt = time.perf_counter() - t
            write.add(system, dt)
            nbytes, nfiles = disk_use(root)
            disk.add(system, nbytes / raw)
            files.add(system, nfiles)
            log(f"  {system}: write + commit {dt:.3f} s, {nbytes / raw:.3f} x raw, {nfiles} files")
            if system == "hangar":
                bulk_root = os.path.join(tmp, f"{name}-hangar-stacked-{rep}")
                os.makedirs(bulk_root)
                t = time.perf_counter()
                hangar_write_stacked(bulk_root, data)
                stacked.add(system, time.perf_counter() - t)
                shutil.rmtree(bulk_root)
                log(f"  hangar: stacked write + commit {stacked.values[system][-1]:.3f} s")
                parts = {sub: disk_use(os.path.join(root, ".hangar", sub)) for sub in ("objects", "data")}
                log("    .hangar: " + ", ".join(f"{sub} {b / raw:.3f} x raw in {f} files"
                                                for sub, (b, f) in parts.items()))

            seq.add(system, seq_read_in_child(system, root, n, shape)["read_s"])

            get, close = open_random_reader(system, root, shape, n)
            keys = rand_keys.tolist()
            t = time.perf_counter()
            for k in keys:
                get(k)
            dt = time.perf_counter() - t
            close()
            rand.add(system, dt)

            t = time.perf_counter()
            dc = UPDATE[system](root, upd_keys, upd_data)
            dt = time.perf_counter() - t
            upd.add(system, dt)
            upd_commit.add(system, dc)
            log(f"  {system}: random read {rand.values[system][-1]:.3f} s, update {dt:.3f} s")
            shutil.rmtree(root)
    return [write, stacked, seq, rand, upd, upd_commit, disk, files]


def bench_core(args: argparse.Namespace, tmp: str) -> list[Row]:
    rng = np.random.default_rng(args.seed)
    n_small, n_big = (6000, 200) if args.quick else (60000, 2000)
    rows: list[Row] = []
    small = rng.integers(0, 256, size=(n_small, 28, 28), dtype=np.uint8)
    rows += bench_dataset(f"{n_small:,} x (28,28)", small, tmp, args.repeat, rng, {
        "write": {"target": ">= 50,000 samples/s", "check": lambda v: n_small / v >= 50000},
        "random": {"target": ">= 20,000 samples/s", "check": lambda v: N_RANDOM / v >= 20000},
        "files": {"target": "a few dozen", "check": lambda v: v <= 48},
    })
    del small
    big = rng.integers(0, 256, size=(n_big, 224, 224, 3), dtype=np.uint8)
    n_rand_big = min(N_RANDOM, n_big)
    # the target is 2,000 samples in <= 0.3 s; as a rate it also applies to --quick sizes
    rows += bench_dataset(f"{n_big:,} x (224,224,3)", big, tmp, args.repeat, rng, {
        "write": {"target": ">= 6,667 samples/s (2,000 in 0.3 s)", "check": lambda v: n_big / v >= 2000 / 0.3},
        "random": {"target": ">= 20,000 samples/s", "check": lambda v: n_rand_big / v >= 20000},
    })
    return rows


def bench_bigcommit(args: argparse.Namespace, tmp: str) -> list[Row]:
    import lmdb

    from hangar import Repository

    rng = np.random.default_rng(args.seed + 1)
    n = 100_000 if args.quick else 1_000_000
    name = f"{n:,} x (4,) big aset"
    data = rng.integers(0, 256, size=(n, 4), dtype=np.uint8)
    setup = Row(name, "set-up: write + commit all", "s", n=n)
    add_all = Row(name, "  of which adds", "s", n=n)
    commit_all = Row(name, "  of which commit call", "s", n=n)
    commit = Row(name, f"commit of {BIG_CHANGED} changed samples", "s", n=BIG_CHANGED,
                 target="<= 0.2 s", check=lambda v: v <= 0.2)
    total = Row(name, f"checkout + {BIG_CHANGED} sets + commit + close", "s", n=BIG_CHANGED)

    log(f"[{name}] hangar set-up")
    root = os.path.join(tmp, "big-hangar")
    os.makedirs(root)
    t0 = time.perf_counter()
    repo = Repository(root, exists=False)
    repo.init("bench", "bench@example.com")
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset(ASET, prototype=data[0])
    for i in range(n):
        aset[i] = data[i]
    t1 = time.perf_counter()
    co.commit("all")
    t2 = time.perf_counter()
    co.close()
    t3 = time.perf_counter()
    setup.add("hangar", t3 - t0)
    add_all.add("hangar", t1 - t0)
    commit_all.add("hangar", t2 - t1)
    log(f"  hangar set-up {t3 - t0:.2f} s (adds {t1 - t0:.2f} s, commit {t2 - t1:.2f} s)")

    log(f"[{name}] lmdb set-up")
    lroot = os.path.join(tmp, "big-lmdb")
    os.makedirs(lroot)
    t0 = time.perf_counter()
    lmdb_write(lroot, data)
    setup.add("lmdb", time.perf_counter() - t0)

    env = lmdb.open(lroot, map_size=LMDB_MAP_SIZE)
    for rep in range(args.repeat):
        keys = rng.choice(n, size=BIG_CHANGED, replace=False)
        new = rng.integers(0, 256, size=(BIG_CHANGED, 4), dtype=np.uint8)
        t = time.perf_counter()
        dc = hangar_update(root, keys, new)
        dt = time.perf_counter() - t
        commit.add("hangar", dc)
        total.add("hangar", dt)
        t = time.perf_counter()
        txn = env.begin(write=True)
        for k, arr in zip(keys.tolist(), new):
            txn.put(lmdb_key(k), arr.tobytes())
        tc = time.perf_counter()
        txn.commit()
        te = time.perf_counter()
        commit.add("lmdb", te - tc)
        total.add("lmdb", te - t)
        log(f"  repeat {rep + 1}: hangar commit {dc:.4f} s (total {dt:.4f} s), lmdb commit {te - tc:.4f} s")
    env.close()
    shutil.rmtree(root)
    shutil.rmtree(lroot)
    return [setup, add_all, commit_all, commit, total]


def run_extra(args: argparse.Namespace) -> int:
    worst = 0
    for script in EXTRA_SCRIPTS:
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            log(f"--all: {script} not present, skipped")
            continue
        cmd = [sys.executable, path]
        if args.quick or args.markdown:
            help_text = subprocess.run(cmd + ["--help"], capture_output=True, text=True).stdout
            cmd += [flag for flag, on in (("--quick", args.quick), ("--markdown", args.markdown))
                    if on and flag in help_text]
        print(f"\n### {script}: {' '.join(cmd[1:])}\n", flush=True)
        rc = subprocess.run(cmd).returncode
        if rc:
            log(f"--all: {script} exited with {rc}")
            worst = worst or rc
    return worst


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child-seqread":
        system, root, n, shape = argv[1:5]
        print(json.dumps(seq_read(system, root, int(n), tuple(int(d) for d in shape.split(",")))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes for a smoke run (6,000 and 200 samples; 100,000 for the big arrayset)")
    p.add_argument("--only", choices=("core", "bigcommit"), help="run only this part")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown (default 3)")
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    p.add_argument("--all", action="store_true",
                   help="afterwards run scripts/bench_{diffmerge,loaders,remotes,peers}.py (if present)")
    p.add_argument("--seed", type=int, default=0, help="seed of np.random.default_rng (default 0)")
    p.add_argument("--tmp", default="/tmp", help="parent of the temp directory (default /tmp; not /dev/shm)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")

    rows: list[Row] = []
    tmp = tempfile.mkdtemp(prefix="hangar-bench-", dir=args.tmp)
    t_start = time.perf_counter()
    try:
        if args.only in (None, "core"):
            rows += bench_core(args, tmp)
        if args.only in (None, "bigcommit"):
            rows += bench_bigcommit(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start

    print(f"hangar core benchmark: median of {args.repeat} run(s), {os.cpu_count()} cpus, "
          f"{'quick' if args.quick else 'full'} sizes, {elapsed:.0f} s")
    print("times in seconds; ratio = baseline / hangar (> 1: hangar faster or smaller)\n")
    print(render_plain(rows))
    if args.markdown:
        print()
        print(render_markdown(rows))
    sys.stdout.flush()
    if args.all:
        return run_extra(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
