"""End-to-end tour of hangar: init, add data, commit, branch, diff, merge, serve, clone, fetch data,
and load a commit into PyTorch. Everything happens in a temporary directory; runs in well under a minute.

    python examples/tour.py [WORKDIR]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from hangar import Repository, make_torch_dataset


def step(title: str) -> None:
    print(f"\n== {title}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(workdir: str) -> None:
    rng = np.random.default_rng(42)
    origin_dir = os.path.join(workdir, "origin")
    os.makedirs(origin_dir)

    step("init a repository and add 2,000 images with labels")
    repo = Repository(origin_dir, exists=False)
    repo.init(user_name="Ada Lovelace", user_email="ada@example.com")
    co = repo.checkout(write=True)
    images = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
    labels = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    for i in range(2000):
        images[i] = rng.integers(0, 255, (28, 28), dtype=np.uint8)
        labels[i] = np.array([i % 10])
    co.metadata["dataset"] = "random-digits-v1"
    base = co.commit("add 2000 images and labels")
    print(f"commit {base[:8]}: {len(images)} images")
    co.close()

    step("branch 'augment': flip 100 images, relabel one, add 50 more")
    repo.create_branch("augment")
    co = repo.checkout(write=True, branch="augment")
    imgs = co.arraysets["images"]
    for i in range(100):
        imgs[i] = np.ascontiguousarray(imgs[i][:, ::-1])
    co["labels", 7] = np.array([1])
    for i in range(2000, 2050):
        co[["images", "labels"], i] = [rng.integers(0, 255, (28, 28), dtype=np.uint8), np.array([i % 10])]
    co.commit("augment: flips, a relabel and 50 new samples")
    co.close()

    step("meanwhile on master: new metadata")
    co = repo.checkout(write=True, branch="master")
    co.metadata["license"] = "CC-BY-4.0"
    co.commit("add license")

    step("diff master against augment")
    diff = co.diff.branch("augment")
    added = diff.diff.added.samples
    mutated = diff.diff.mutated.samples
    print(f"augment adds {len(added)} samples and mutates {len(mutated)}; conflicts: {diff.conflict.conflict}")

    step("3-way merge augment into master")
    merged = co.merge("merge augment", "augment")
    co.close()
    repo.log()

    step("serve the repository with `hangar server`")
    server_dir = os.path.join(workdir, "server")
    os.makedirs(server_dir)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hangar", "server", "--ip", "127.0.0.1", "--port", str(port),
                               "--path", server_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        repo.remote.add("origin", f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                rtt = repo.remote.ping("origin")
                break
            except ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        print(f"server on 127.0.0.1:{port} answers in {rtt * 1000:.1f} ms")
        repo.remote.push("origin", "master")
        print("pushed master (records + data)")

        step("clone it elsewhere: records only, data stays remote until fetched")
        clone_dir = os.path.join(workdir, "clone")
        os.makedirs(clone_dir)
        clone = Repository(clone_dir, exists=False)
        clone.clone("Grace Hopper", "grace@example.com", f"127.0.0.1:{port}")
        rc = clone.checkout()
        print(f"clone at {rc.commit_hash[:8]} (merge was {merged[:8]}); remote references: "
              f"{rc.arraysets.contains_remote_references}")
        rc.close()
        fetched = clone.remote.fetch_data("origin", branch="master", arrayset_names=["labels"])
        print(f"fetched labels for {len(fetched)} commit(s)")
        clone.remote.fetch_data("origin", branch="master")
        rc = clone.checkout()
        print(f"after fetch_data: remote references {rc.arraysets.contains_remote_references}")
    finally:
        server.terminate()
        server.wait(timeout=30)

    step("load the commit into PyTorch")
    try:
        from torch.utils.data import DataLoader
    except ImportError:
        print("torch is not installed: skipping (pip install torch)")
        rc.close()
        return
    dset = make_torch_dataset([rc.arraysets["images"], rc.arraysets["labels"]])
    loader = DataLoader(dset, batch_size=256, shuffle=True)
    batch = next(iter(loader))
    print(f"{len(dset)} samples; first batch: images {tuple(batch.images.shape)}, labels {tuple(batch.labels.shape)}")
    rc.close()
    print("\ntour complete")


def run(argv: list[str]) -> None:
    """Run in WORKDIR (kept) when given, else in a temporary directory removed at the end."""
    if argv:
        print(f"working in {argv[0]} (kept)")
        main(argv[0])
        return
    workdir = tempfile.mkdtemp(prefix="hangar-tour-")
    print(f"working in {workdir} (removed at the end; pass a directory to keep the files)")
    try:
        main(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"removed {workdir}")


if __name__ == "__main__":
    run(sys.argv[1:])
