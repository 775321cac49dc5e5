"""Quickstart: init a repository, add tensors, commit, branch, read back. Runs in seconds."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile

import numpy as np

from hangar import Repository


def main(path: str) -> None:
    repo = Repository(path, exists=False)
    repo.init(user_name="Ada Lovelace", user_email="ada@example.com")
    print(f"initialized repository in {repo.path}")

    co = repo.checkout(write=True)
    images = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
    labels = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    rng = np.random.default_rng(0)
    for i in range(1000):
        images[i] = rng.integers(0, 255, (28, 28), dtype=np.uint8)
        labels[i] = np.array([i % 10])
    co.metadata["source"] = "random digits"
    first = co.commit("add 1000 images and labels")
    print(f"committed {len(images)} samples as {first[:8]} (status now {co.diff.status()})")
    co.close()

    repo.create_branch("relabel")
    co = repo.checkout(write=True, branch="relabel")
    co["labels", 0] = np.array([7])
    del co.arraysets["images"][999]
    second = co.commit("relabel sample 0, drop sample 999")
    co.close()
    print(f"branch 'relabel' at {second[:8]}; branches: {repo.list_branches()}")

    master = repo.checkout(branch="master")
    dev = repo.checkout(branch="relabel")
    print(f"master label 0 = {master['labels', 0][0]}, relabel label 0 = {dev['labels', 0][0]}")
    print(f"samples on master: {len(master.arraysets['images'])}, on relabel: {len(dev.arraysets['images'])}")
    row = master[("images", "labels"), 3]
    print(f"master[('images', 'labels'), 3] -> image {row.images.shape}, label {row.labels}")
    master.close()
    dev.close()

    repo.log(branch="relabel")
    out = subprocess.run(["git", "--git-dir", f"{path}/.hangar", "log", "--oneline", "--all"],
                         capture_output=True, text=True)
    print("plain git sees:\n" + out.stdout.strip())


def run(argv: list[str]) -> None:
    """Run in WORKDIR (kept) when given, else in a temporary directory removed at the end."""
    if argv:
        print(f"working in {argv[0]} (kept)")
        main(argv[0])
        return
    workdir = tempfile.mkdtemp(prefix="hangar-quickstart-")
    print(f"working in {workdir} (removed at the end; pass a directory to keep the files)")
    try:
        main(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"removed {workdir}")


if __name__ == "__main__":
    run(sys.argv[1:])
