#!/usr/bin/env python3
"""Benchmark: torch DataLoader over hangar arraysets vs. over in-memory numpy arrays.

Writes two arraysets into a fresh repository (a temporary directory unless --path is
given), then iterates ``DataLoader(batch_size=256, num_workers=2)`` over
``make_torch_dataset(...)`` and over a plain numpy-backed Dataset of the same arrays, and
prints samples/s for each and their ratio.

    python3 scripts/bench_loaders.py [--epochs 2] [--workers 2] [--start-method fork]

Targets: 60,000 x (28, 28) uint8 >= 50,000 samples/s; 2,000 x (224, 224, 3) uint8 >= 5,000
samples/s (hangar side). The MNIST-like samples are mostly zero (stored LZ4-compressed by the
``auto`` backend); the image samples are random (stored raw).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

try:
    import torch
    from torch.utils.data import DataLoader, Dataset
except ImportError:
    sys.exit("this benchmark needs PyTorch: pip install torch")

from hangar import Repository, make_torch_dataset

BATCH = 256


class NumpyDataset(Dataset):
    """The baseline: samples indexed straight out of in-memory numpy arrays."""

    def __init__(self, *arrays: np.ndarray) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        return tuple(a[i] for a in self.arrays)


def mnist_like(n: int, rng: np.random.Generator) -> np.ndarray:
    data = np.zeros((n, 28, 28), dtype=np.uint8)
    data[:, 7:21, 7:21] = rng.integers(0, 256, size=(n, 14, 14), dtype=np.uint8)
    return data


def build(path: str, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cases = {
        "mnist": (mnist_like(60_000, rng), rng.integers(0, 10, size=(60_000, 1), dtype=np.int64)),
        "imagenet": (rng.integers(0, 256, size=(2_000, 224, 224, 3), dtype=np.uint8),
                     rng.integers(0, 1000, size=(2_000, 1), dtype=np.int64)),
    }
    repo = Repository(path, exists=False)
    repo.init(user_name="bench", user_email="bench@example.com", remove_old=True)
    co = repo.checkout(write=True)
    for name, (x, y) in cases.items():
        t0 = time.perf_counter()
        xs = co.arraysets.init_arrayset(f"{name}_x", prototype=x[0])
        ys = co.arraysets.init_arrayset(f"{name}_y", prototype=y[0])
        for i in range(len(x)):
            xs[i] = x[i]
            ys[i] = y[i]
        print(f"wrote {name}: {len(x)} x {x.shape[1:]} in {time.perf_counter() - t0:.1f} s", flush=True)
    co.commit("benchmark data")
    co.close()
    return cases


def epoch_rate(dset: Dataset, workers: int, start_method: str, epochs: int) -> tuple[float, int]:
    """Best samples/s over ``epochs`` full passes (worker start-up included)."""
    best = 0.0
    seen = 0
    for _ in range(epochs):
        loader = DataLoader(dset, batch_size=BATCH, shuffle=True, num_workers=workers,
                            multiprocessing_context=start_method if workers else None)
        t0 = time.perf_counter()
        seen = 0
        for batch in loader:
            seen += int(batch[0].shape[0])
        best = max(best, seen / (time.perf_counter() - t0))
    return best, seen


def evict_packs(path: str) -> int:
    """Drop the repository's pack files from the page cache (POSIX_FADV_DONTNEED); bytes evicted."""
    total = 0
    for root, _, files in os.walk(os.path.join(path, ".hangar", "data", "packs")):
        for f in files:
            if f == "0":  # a pack's byte chunk (c/0); index and zarr.json stay cached
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
                try:
                    os.fsync(fd)  # only clean pages can be dropped
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    total += os.fstat(fd).st_size
                finally:
                    os.close(fd)
    return total


def cold_rates(path: str, dset: Dataset, workers: int, start_method: str, epochs: int) -> tuple[float, float]:
    """samples/s of shuffle=True vs BlockShuffleSampler with the packs evicted before each epoch."""
    from hangar.dataloaders import BlockShuffleSampler

    rates = []
    for sampler in (None, BlockShuffleSampler(dset, block_size=64)):
        best = 0.0
        for epoch in range(epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader = DataLoader(dset, batch_size=BATCH, shuffle=sampler is None, sampler=sampler,
                                num_workers=workers, multiprocessing_context=start_method if workers else None)
            evict_packs(path)
            t0 = time.perf_counter()
            seen = sum(int(batch[0].shape[0]) for batch in loader)
            best = max(best, seen / (time.perf_counter() - t0))
        rates.append(best)
    return rates[0], rates[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--path", help="directory for the benchmark repository (default: a temporary one)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver"])
    ap.add_argument("--cold", action="store_true",
                    help="also read with the packs evicted from the page cache: shuffle=True vs BlockShuffleSampler")
    args = ap.parse_args()
    torch.set_num_threads(1)
    targets = {"mnist": 50_000, "imagenet": 5_000}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.path or tmp
        os.makedirs(path, exist_ok=True)
        cases = build(path, rng)
        co = Repository(path).checkout()
        rows, cold = [], []
        for name, (x, y) in cases.items():
            t0 = time.perf_counter()
            hdset = make_torch_dataset([co.arraysets[f"{name}_x"], co.arraysets[f"{name}_y"]])
            setup = time.perf_counter() - t0
            h_rate, h_seen = epoch_rate(hdset, args.workers, args.start_method, args.epochs)
            n_rate, n_seen = epoch_rate(NumpyDataset(x, y), args.workers, args.start_method, args.epochs)
            assert h_seen == n_seen == len(x)
            rows.append((name, f"{len(x)} x {x.shape[1:]}", setup, h_rate, n_rate, targets[name]))
            if args.cold:
                cold.append((name, *cold_rates(path, hdset, args.workers, args.start_method, args.epochs)))
        co.close()
    print(f"\nDataLoader(batch_size={BATCH}, num_workers={args.workers}, shuffle=True, "
          f"{args.start_method}); best of {args.epochs} epochs, worker start-up included")
    header = f"{'case':<10} {'samples':<22} {'setup s':>8} {'hangar/s':>10} {'numpy/s':>10} {'ratio':>6} " \
             f"{'target/s':>9}  ok"
    print(header)
    print("-" * len(header))
    ok = True
    for name, shape, setup, h, n, target in rows:
        passed = h >= target
        ok &= passed
        print(f"{name:<10} {shape:<22} {setup:>8.2f} {h:>10,.0f} {n:>10,.0f} {h / n:>6.2f} {target:>9,}  "
              f"{'yes' if passed else 'NO'}")
    if cold:
        print("\ncold page cache (packs evicted with POSIX_FADV_DONTNEED before each epoch), hangar only")
        print(f"{'case':<10} {'shuffle=True/s':>15} {'BlockShuffleSampler/s':>22} {'ratio':>6}")
        for name, plain, block in cold:
            print(f"{name:<10} {plain:>15,.0f} {block:>22,.0f} {block / plain:>6.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
