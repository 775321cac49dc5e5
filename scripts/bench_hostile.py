"""Hostile clients against a real ``hangar server``: how many it survives, what they cost it.

For each source tree given (``--src``, default: this checkout; add ``--src /path/to/old``
for a baseline in the same run) it starts ``python -m hangar server`` from that tree and
measures, while an attack is held open, the latency of a normal client's ping (max of 5,
6.0 = no answer within 5 s) and the server's RSS:

* ``idle-N``: N connections that send half a request head and then nothing;
* ``stall-N``: N clients that ask for 72 MiB of samples and never read the answer;
* ``repeat``: the answer size of one download request repeating one digest 65536 times;
* ``claim``: the server's peak-RSS growth from one 162-byte upload claiming 1 GiB.

Usage: python scripts/bench_hostile.py [--src DIR ...] [--idle 100,200,500,900,2000] [--stall 8,32]
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from hangar.remote import protocol  # noqa: E402
from hangar.store import sample_digest  # noqa: E402

UPLOAD, DOWNLOAD, PING, HAVE = protocol.UPLOAD, protocol.DOWNLOAD, protocol.PING, protocol.HAVE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) << 10
    return 0


def ping(port: int, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", PING)
        ok = c.getresponse().status == 200
        c.close()
    except OSError:
        ok = False
    return time.monotonic() - t0 if ok else timeout + 1


def worst_ping(port: int) -> float:
    return max(ping(port) for _ in range(5))


def post(port: int, path: str, body: bytes) -> tuple[int, int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        c.request("POST", path, body=body)
        r = c.getresponse()
        size = int(r.getheader("Content-Length") or 0)
        if size < 64 << 20:
            r.read()
        return r.status, size
    finally:
        c.close()


def upload_body(arrays: list[np.ndarray]) -> bytes:
    parts = []
    for arr in arrays:
        raw = arr.tobytes()
        s = protocol.WireSample(sample_digest(arr), 0, len(raw), raw, arr.dtype.str, arr.shape)
        parts += [protocol.upload_header(s), raw]
    return b"".join(parts)


class Server:
    def __init__(self, src: str, work: str) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=src)

        def limit() -> None:  # an attack that works must not take the machine down
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

        self.proc = subprocess.Popen([sys.executable, "-m", "hangar", "server", "--port", str(self.port), "--path",
                                      os.path.join(work, "repo")], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=limit, cwd=work)
        deadline = time.monotonic() + 60
        while ping(self.port, 1) >= 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server from {src} did not start")
            time.sleep(0.1)

    def rss(self) -> int:
        return status(self.proc.pid, "VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def idle_attack(srv: Server, n: int) -> tuple[float, int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", srv.port))
                s.sendall(f"POST {HAVE} HTTP/1.1\r\nHost: x\r\n".encode())
            except OSError:
                pass
            socks.append(s)
        return worst_ping(srv.port), srv.rss()
    finally:
        for s in socks:
            s.close()


def stall_attack(srv: Server, n: int, wanted: bytes) -> tuple[float, int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(f"POST {DOWNLOAD} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(wanted)}\r\n\r\n".encode()
                      + wanted)
            socks.append(s)
        time.sleep(1.0)
        return worst_ping(srv.port), srv.rss()
    finally:
        for s in socks:
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", action="append", default=None)
    ap.add_argument("--idle", default="100,200,500,900,2000")
    ap.add_argument("--stall", default="8,32")
    args = ap.parse_args()
    srcs = args.src or [HERE]
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, size=8 << 20, dtype=np.uint8) for _ in range(9)]
    body = upload_body(arrays)
    wanted = b"".join(sample_digest(a) for a in arrays)
    small = np.arange(1000, dtype=np.int64)
    rows: dict[str, list[str]] = {}
    for src in srcs:
        with tempfile.TemporaryDirectory() as work:
            srv = Server(src, work)
            try:
                out = [f"base rss {srv.rss() >> 20} MiB, ping {worst_ping(srv.port):.3f} s"]
                for n in [int(x) for x in args.idle.split(",") if x]:
                    lat, rss = idle_attack(srv, n)
                    out.append(f"idle-{n}: ping {lat:.3f} s, rss {rss >> 20} MiB")
                    time.sleep(1)
                post(srv.port, UPLOAD, body)
                post(srv.port, UPLOAD, upload_body([small]))
                for n in [int(x) for x in args.stall.split(",") if x]:
                    lat, rss = stall_attack(srv, n, wanted)
                    out.append(f"stall-{n}: ping {lat:.3f} s, rss {rss >> 20} MiB")
                    time.sleep(1)
                st, size = post(srv.port, DOWNLOAD, sample_digest(small) * (1 << 16))
                out.append(f"repeat: status {st}, answer {size} bytes")
                hwm = status(srv.proc.pid, "VmHWM")
                claim = (1 << 30) - 4096
                head = struct.pack("<32sBQQBB", b"\x01" * 32, 0, claim, claim, 3, 1) + b"|u1" + struct.pack("<q", claim)
                st, _ = post(srv.port, UPLOAD, head + b"\x00" * (162 - len(head)))
                out.append(f"claim: status {st}, peak rss +{(status(srv.proc.pid, 'VmHWM') - hwm) >> 20} MiB")
            finally:
                srv.stop()
        rows[src] = out
    for src, out in rows.items():
        print(f"== {src}")
        for line in out:
            print("  " + line)


if __name__ == "__main__":
    main()
