"""One stream's runs received on a helper thread while the caller verifies the previous ones
(``client.read_ahead``, issue 15): the same samples arrive, errors of the answer arrive in order,
and a caller that stops early neither waits for a stalled server nor leaves a thread behind."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import RemoteDataError
from hangar.remote import client as remote_client
from hangar.remote import protocol
from tests import remote_fixtures

start_server = remote_fixtures.start_server


def receivers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hangar-fetch-receive"]


def test_large_samples_fetched_over_one_read_ahead_stream_arrive_verified(tmp_path, start_server):
    os.makedirs(tmp_path / "src")
    src = Repository(tmp_path / "src", exists=False)
    src.init("Test User", "test@example.com")
    co = src.checkout(write=True)
    rng = np.random.default_rng(5)
    arrays = {i: rng.integers(0, 256, size=(128, 128, 4), dtype=np.uint8) for i in range(24)}  # 64 KiB each
    aset = co.arraysets.init_arrayset("img", shape=(128, 128, 4), dtype=np.uint8)
    with aset:
        for k, a in arrays.items():
            aset[k] = a
    co.commit("images")
    co.close()
    srv = start_server()
    src.remote.add("origin", srv.address)
    src.remote.push("origin", "master")
    os.makedirs(tmp_path / "dst")
    dst = Repository(tmp_path / "dst", exists=False)
    dst.clone("Test User", "test@example.com", srv.address)
    old = remote_client.READ_AHEAD_BYTES
    remote_client.READ_AHEAD_BYTES = 1 << 10  # every run waits for the one before it to be taken
    try:
        dst.remote.fetch_data("origin", "master")
    finally:
        remote_client.READ_AHEAD_BYTES = old
    co = dst.checkout()
    try:
        assert not co.arraysets["img"].contains_remote_references
        for k, a in arrays.items():
            np.testing.assert_array_equal(co.arraysets["img"][k], a)
    finally:
        co.close()
    assert receivers() == []


def test_an_error_of_the_answer_is_raised_by_read_ahead(start_server):
    srv = start_server()
    missing = bytes(range(32))
    with remote_client.DataClient(srv.address) as dc:
        with pytest.raises(RemoteDataError, match="lacks requested data"):
            list(remote_client.read_ahead(dc.ranges([missing], 64), dc))
    assert receivers() == []


class StallingServer:
    """Answers one ``ranges`` request with a whole first run, then half of a second, and stalls."""

    def __init__(self, d1: bytes, d2: bytes, size: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.runs = [protocol.run_header(1, size) + protocol.run_table([d], [size], [size], [0]) + bytes(size)
                     for d in (d1, d2)]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += conn.recv(65536)
            total = sum(map(len, self.runs))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % total + self.runs[0] + self.runs[1][:len(self.runs[1]) // 2])
            self.release.wait(120)  # stalls (until the test ends)

    def close(self) -> None:
        self.release.set()
        self.thread.join(30)
        self.listener.close()


def test_a_caller_stopping_early_does_not_wait_for_a_stalled_server():
    d1, d2 = b"\x01" * 32, b"\x02" * 32
    size = 1 << 16
    srv = StallingServer(d1, d2, size)
    try:
        with remote_client.DataClient(f"127.0.0.1:{srv.port}", timeout=60) as dc:
            runs = remote_client.read_ahead(dc.ranges([d1, d2], size), dc)
            first = next(runs)
            assert first.parts()[0] == [d1]
            t = time.monotonic()
            runs.close()  # the caller stops (e.g. the first run failed its digest check)
            assert time.monotonic() - t < 10  # not the client's 60 s timeout
        assert receivers() == []
    finally:
        srv.close()
