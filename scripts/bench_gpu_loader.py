#!/usr/bin/env python3
"""Feed a commit to a GPU: hangar's loaders against in-memory numpy in the same run.

Builds W1 (60,000 x uint8 (28, 28)) and W2r (2,000 x uint8 (224, 224, 3)) in a fresh
repository, then for each times ``--epochs`` epochs of moving every sample to the device
(CUDA when torch sees one, else the CPU) through

* ``torch``: ``make_torch_dataset`` in a shuffled ``DataLoader`` (``--workers`` worker
  processes, pinned memory on CUDA), against the same ``DataLoader`` over a ``TensorDataset``
  of the numpy array already in memory (the ceiling: no storage at all);
* ``get_batch``: ``aset.get_batch(keys, out=buffer)`` into one pinned buffer per batch of
  shuffled keys, copied to the device, against fancy-indexing the in-memory array into the
  same buffer.

Every epoch's samples are summed on the device and compared with numpy's sum of the source
array (exact, int64), so a wrong or missing sample fails the run. Prints samples/s and the
ratio hangar / in-memory (1.0: storage costs nothing on the way to the GPU).

Usage::

    python scripts/bench_gpu_loader.py [--quick] [--workers 4] [--batch 256] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hangar import Repository, make_torch_dataset


def build(path: str, sets: dict[str, np.ndarray]) -> None:
    repo = Repository(path, exists=False)
    repo.init(user_name="bench", user_email="bench@example.com")
    co = repo.checkout(write=True)
    for name, data in sets.items():
        co.arraysets.init_arrayset(name, prototype=data[0])
        co[name, list(range(len(data)))] = data
    co.commit("data")
    co.close()


def epochs_through_loader(loader, device, epochs: int, field: str | None) -> tuple[float, int]:
    """Seconds for the best epoch and the device-side int64 sum of the last one."""
    import torch

    best, total = float("inf"), 0
    for _ in range(epochs):
        acc = torch.zeros((), dtype=torch.int64, device=device)
        t = time.perf_counter()
        for batch in loader:
            x = getattr(batch, field) if field else batch[0]
            acc += x.to(device, non_blocking=True).sum(dtype=torch.int64)
        total = int(acc.item())  # synchronises the device
        best = min(best, time.perf_counter() - t)
    return best, total


def epochs_through_buffer(fill, n: int, shape: tuple[int, ...], batch: int, device, epochs: int,
                          seed: int) -> tuple[float, int]:
    """Like :func:`epochs_through_loader` for ``fill(keys, out)`` writing one batch into a pinned buffer."""
    import torch

    pin = device.type == "cuda"
    bufs = [torch.empty((batch, *shape), dtype=torch.uint8, pin_memory=pin) for _ in range(2)]
    copied = [torch.cuda.Event() if pin else None for _ in bufs]  # a buffer's last copy to the device
    rng = np.random.default_rng(seed)
    best, total = float("inf"), 0
    for _ in range(epochs):
        order = rng.permutation(n)
        acc = torch.zeros((), dtype=torch.int64, device=device)
        t = time.perf_counter()
        for i, start in enumerate(range(0, n, batch)):
            keys = order[start:start + batch]
            buf, done = bufs[i % 2][:len(keys)], copied[i % 2]
            if done is not None:  # the copy that last read this buffer must finish before it is refilled
                done.synchronize()
            fill(keys, buf.numpy())
            acc += buf.to(device, non_blocking=True).sum(dtype=torch.int64)
            if done is not None:
                done.record()
        total = int(acc.item())
        best = min(best, time.perf_counter() - t)
    return best, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the samples")
    p.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--tmp", default=None)
    args = p.parse_args()

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    scale = 10 if args.quick else 1
    rng = np.random.default_rng(0)
    sets = {"w1": rng.integers(0, 256, (60_000 // scale, 28, 28), dtype=np.uint8),
            "w2r": rng.integers(0, 256, (2_000 // scale, 224, 224, 3), dtype=np.uint8)}
    rows = []
    failures = 0
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="hangar-bench-gpu-") as tmp:
        t = time.perf_counter()
        build(tmp, sets)
        print(f"device {name}; torch {torch.__version__}; {os.cpu_count()} cpus; "
              f"repository built in {time.perf_counter() - t:.2f} s")
        co = Repository(tmp).checkout()
        for key, data in sets.items():
            expect = int(data.sum(dtype=np.int64))
            n = len(data)
            aset = co.arraysets[key]
            kw = dict(batch_size=args.batch, shuffle=True, num_workers=args.workers,
                      pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
            ours = DataLoader(make_torch_dataset([aset]), **kw)
            ceiling = DataLoader(TensorDataset(torch.from_numpy(data)), **kw)
            t_ours, s_ours = epochs_through_loader(ours, device, args.epochs, key)
            t_ceil, s_ceil = epochs_through_loader(ceiling, device, args.epochs, None)
            rows.append((key, "torch DataLoader", n / t_ours, n / t_ceil, s_ours == expect, s_ceil == expect))
            keymap = list(aset.keys())  # sample names are 0..n-1

            def fill_ours(idx: np.ndarray, out: np.ndarray, aset=aset, keymap=keymap) -> None:
                aset.get_batch([keymap[i] for i in idx], out=out)

            def fill_ceil(idx: np.ndarray, out: np.ndarray, data=data) -> None:
                np.take(data, idx, axis=0, out=out)

            t_ours, s_ours = epochs_through_buffer(fill_ours, n, data.shape[1:], args.batch, device,
                                                   args.epochs, 1)
            t_ceil, s_ceil = epochs_through_buffer(fill_ceil, n, data.shape[1:], args.batch, device,
                                                   args.epochs, 1)
            rows.append((key, "get_batch(out=pinned)", n / t_ours, n / t_ceil, s_ours == expect, s_ceil == expect))
        co.close()
    print(f"{'set':<5} {'path':<22} {'hangar /s':>12} {'in-memory /s':>13} {'ratio':>7}  sums")
    for key, path, ours_rate, ceil_rate, ok_ours, ok_ceil in rows:
        ok = "exact" if ok_ours and ok_ceil else "WRONG"
        failures += not (ok_ours and ok_ceil)
        print(f"{key:<5} {path:<22} {ours_rate:>12,.0f} {ceil_rate:>13,.0f} {ours_rate / ceil_rate:>7.2f}  {ok}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
