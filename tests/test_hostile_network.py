"""Hostile peers against a real ``hangar server`` process: amplification, stalls, floods, forged pushes.

Each test reproduces an attack of issue 12 over real sockets and bounds what it may cost the
server: its peak RSS (/proc/PID/status VmHWM), the latency of a normal client, the outcome.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import ssl
import struct
import time

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import TransferInProgressError
from hangar.plumbing.pids import pid_alive
from hangar.remote import guard, protocol
from hangar.store import sample_digest
from tests import remote_fixtures
from tests.repo_parts import git_of

start_server = remote_fixtures.start_server
USER = ("Test User", "test@example.com")
GIB = 1 << 30


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
            timeout: float = 30.0) -> tuple[int, bytes, http.client.HTTPMessage]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers  # case-insensitive
    finally:
        conn.close()


def ping_latency(srv: remote_fixtures.ServerProcess, timeout: float = 5.0) -> float:
    """Seconds a normal client waits for a ping answer (``timeout`` + 1 when it gets none)."""
    t0 = time.monotonic()
    try:
        if srv.tls:
            ctx = ssl.create_default_context(cafile=srv.tls[0])
            conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
        conn.request("GET", protocol.PING)
        ok = conn.getresponse().status == 200
        conn.close()
    except OSError:
        ok = False
    return time.monotonic() - t0 if ok else timeout + 1


def stalled_download(port: int, wanted: bytes) -> socket.socket:
    """A client that asks for the samples ``wanted`` (their digests) and never reads the answer:
    a 4 KiB receive buffer, the socket returned open."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"POST {protocol.DOWNLOAD} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(wanted)}\r\n\r\n"
              .encode() + wanted)
    return s


def upload_body(arrays: list[np.ndarray]) -> bytes:
    parts = []
    for arr in arrays:
        raw = arr.tobytes()
        s = protocol.WireSample(sample_digest(arr), 0, len(raw), raw, arr.dtype.str, arr.shape)
        parts += [protocol.upload_header(s), raw]
    return b"".join(parts)


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ------------------------------------------------------------- 2: amplification and stalls
@pytest.mark.slow
def test_a_download_repeating_one_digest_gets_that_sample_once(start_server):
    srv = start_server()
    arr = np.arange(1000, dtype=np.int64)
    assert request(srv.port, "POST", protocol.UPLOAD, upload_body([arr]))[0] == 200
    digest = sample_digest(arr)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        # 65536 repeats (2 MiB) -- before: as many records, and 2**20 repeats made a 1 TiB answer
        conn.request("POST", protocol.DOWNLOAD, body=digest * (1 << 16))
        resp = conn.getresponse()
        size = int(resp.getheader("Content-Length"))
        assert resp.status == 200 and size == protocol.DOWNLOAD_HEADER_SIZE + arr.nbytes, size
        assert resp.read(size + 1)[protocol.DOWNLOAD_HEADER_SIZE:] == arr.tobytes()  # never reads more
    finally:
        conn.close()
    # more digests than allowed: refused from the head, before the body is sent
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        size = (protocol.MAX_DIGESTS_PER_REQUEST + 1) * protocol.DIGEST_LEN
        s.sendall(f"POST {protocol.DOWNLOAD} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 413")


@pytest.mark.slow
def test_clients_that_never_read_their_answers_hold_no_worker_and_little_memory(start_server):
    srv = start_server(rlimit_as=3 * GIB)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, size=8 << 20, dtype=np.uint8) for _ in range(9)]  # 72 MiB, incompressible
    assert request(srv.port, "POST", protocol.UPLOAD, upload_body(arrays), timeout=60)[0] == 200
    wanted = b"".join(sample_digest(a) for a in arrays)
    rss0 = srv.status("VmRSS")
    stalled = []
    try:
        for _ in range(2 * guard.THREADS + 4):  # more than every worker thread
            stalled.append(stalled_download(srv.port, wanted))
        time.sleep(0.5)  # let the server start answering all of them
        # before: eight such clients blocked every worker (ping timed out) and held 64 MiB each
        latencies = [ping_latency(srv) for _ in range(3)]
        assert max(latencies) < 1.0, latencies
        grown = srv.status("VmRSS") - rss0
        assert grown < 200 << 20, f"server RSS grew {grown >> 20} MiB for {len(stalled)} stalled answers"
        status, body, _ = request(srv.port, "POST", protocol.DOWNLOAD, sample_digest(arrays[0]))
        assert status == 200 and body[protocol.DOWNLOAD_HEADER_SIZE:] == arrays[0].tobytes()
    finally:
        for s in stalled:
            s.close()


# --------------------------------------------------- 4: allocation before bytes arrive
@pytest.mark.slow
def test_an_upload_record_claiming_a_gib_allocates_nothing(start_server):
    srv = start_server(rlimit_as=2 * GIB)  # a 1 GiB allocation fails instead of taking the machine's memory
    hwm0 = srv.status("VmHWM")
    claim = GIB - 4096  # within the old per-request limit: before, allocated at once
    head = struct.pack("<32sBQQBB", b"\x01" * 32, 0, claim, claim, 3, 1) + b"|u1" + struct.pack("<q", claim)
    body = head + b"\x00" * (162 - len(head))
    status, text, _ = request(srv.port, "POST", protocol.UPLOAD, body)
    assert status == 413 and b"nothing was stored" in text, text
    assert srv.status("VmHWM") - hwm0 < 64 << 20
    assert ping_latency(srv) < 1.0


def test_the_record_reader_grows_a_buffer_only_with_the_bytes_received():
    import io
    import tracemalloc

    head = struct.pack("<32sBQQ", b"\x01" * 32, 0, GIB, GIB)
    reader = protocol.RecordReader(io.BytesIO(head + b"\x00" * 5000), block=4096)
    tracemalloc.start()
    try:
        with pytest.raises(protocol.ProtocolError, match="ended inside a record"):
            list(reader.downloads())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# ------------------------------------------------------------- 5: connection exhaustion
def half_sent(port: int, n: int, tls_ctx: ssl.SSLContext | None = None) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname="127.0.0.1")
        s.sendall(f"POST {protocol.HAVE} HTTP/1.1\r\nHost: x\r\n".encode())  # the head never ends
        out.append(s)
    return out


def closed_by_server(socks: list[socket.socket], within: float) -> int:
    """How many of ``socks`` the server closes within ``within`` seconds."""
    deadline = time.monotonic() + within
    closed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            while s.recv(4096):
                pass
            closed += 1
        except (TimeoutError, ssl.SSLError, OSError):
            pass
    return closed


@pytest.mark.slow
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_idle_half_sent_requests_neither_lock_out_clients_nor_stay_open(start_server, tmp_path, tls):
    certs = remote_fixtures.make_certificate(str(tmp_path), "srv") if tls else None
    srv = start_server(tls=certs)
    ctx = ssl.create_default_context(cafile=certs[0]) if tls else None
    # before: 200 of these (waitress' connection_limit) locked every client out for 600 s
    socks = half_sent(srv.port, 300, ctx)
    try:
        latencies = [ping_latency(srv) for _ in range(3)]
        assert max(latencies) < 1.0, latencies
        # the TLS relays end with the plain connections behind them: checked on the plain port only
        if not tls:
            assert closed_by_server(socks, guard.HEADER_TIMEOUT + 2 * guard.CHECK_INTERVAL + 3) == len(socks)
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_a_push_without_credentials_is_refused_before_its_body_is_sent(start_server):
    srv = start_server(username="u", password="secret")
    for path in (protocol.UPLOAD, "/git-receive-pack"):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            # 64 MiB announced, none sent: before, waitress buffered it all before anyone checked
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {64 << 20}\r\n\r\n".encode())
            s.sendall(b"\x00" * 4096)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 401") and b"www-authenticate: basic" in answer.lower(), answer[:200]


@pytest.mark.slow
def test_anonymous_git_fetch_bodies_may_be_chunked_but_data_requests_may_not(start_server):
    srv = start_server()
    chunked = {"Transfer-Encoding": "chunked", "Content-Type": "application/x-git-upload-pack-request"}
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:  # git sends a fetch negotiation over 1 MiB chunked: the guard must let it through
        conn.request("POST", "/git-upload-pack", body=iter([b"0000"]), headers=chunked, encode_chunked=True)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    # a chunked data request is refused from its head: send only the head (a body sent after the
    # server's answer could meet a closed socket, and a reset may discard the answer before it is read)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(f"POST {protocol.HAVE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"413", status_line


# ------------------------------------------------------------- 6 and 9: pushes in both transports
def without_git_env(tmp_path) -> dict:
    """The environment with a PATH that has no ``git`` (the server then serves with dulwich)."""
    bin_dir = tmp_path / "bin-without-git"
    bin_dir.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = str(bin_dir)
    return env


@pytest.fixture(params=["git", "dulwich"])
def backend_server(request, start_server, tmp_path):
    """Factory: a server using ``git http-backend`` or, with no ``git`` on its PATH, dulwich."""
    def start(**kw):
        if request.param == "dulwich":
            kw["env"] = without_git_env(tmp_path)
        srv = start_server(**kw)
        _, body, _ = request_ping(srv)
        assert f'"git_backend": "{request.param}"'.encode() in body
        return srv
    return start


def request_ping(srv: remote_fixtures.ServerProcess) -> tuple[int, bytes, http.client.HTTPMessage]:
    return request(srv.port, "GET", protocol.PING)


@pytest.mark.slow
def test_pushes_that_rewrite_delete_or_lack_data_are_refused_in_both_transports(backend_server, aset_repo,
                                                                                   run_git):
    srv = backend_server(username="u", password="pw")
    url = f"http://u:pw@127.0.0.1:{srv.port}/"
    first = aset_repo.log(return_contents=True)["head"]
    co = aset_repo.checkout(write=True)
    co.metadata["more"] = "history"
    second = co.commit("second")
    co.close()
    aset_repo.remote.add("origin", srv.address)
    aset_repo.remote.push("origin", "master", username="u", password="pw")
    served = Repository(srv.path)

    forced = run_git(aset_repo, "push", "--force", url, f"{first}:refs/heads/master")
    deleted = run_git(aset_repo, "push", url, ":master")
    outside = run_git(aset_repo, "push", url, "master:refs/tags/v1", "master:refs/hangar/x")
    assert forced.returncode != 0 and deleted.returncode != 0 and outside.returncode != 0
    assert served.branch_head("master") == second
    assert sorted(git_of(served).repo.references) == ["refs/heads/master"]

    co = aset_repo.checkout(write=True)  # a commit whose bytes were never uploaded
    co.arraysets["foo"][99] = np.full(5, 99, dtype=np.int64)
    co.commit("data the server never got")
    co.close()
    plain = run_git(aset_repo, "push", url, "master")
    assert plain.returncode != 0 and "have no bytes here" in plain.stderr, plain.stderr
    assert Repository(srv.path).branch_head("master") == second


@pytest.mark.slow
def test_receive_pack_advertisement_needs_credentials_in_both_transports(backend_server):
    srv = backend_server(username="u", password="pw")
    for query in ("service=git-receive-pack", "service=git%2Dreceive-pack", "x=1&service=git-receive-pack"):
        status, _, headers = request(srv.port, "GET", f"/info/refs?{query}")
        assert status == 401 and "Basic" in headers.get("WWW-Authenticate", ""), (query, status)
    status, body, _ = request(srv.port, "GET", "/info/refs?service=git-receive-pack", headers=basic("u", "pw"))
    assert status == 200 and b"report-status" in body
    assert request(srv.port, "GET", "/info/refs?service=git-upload-pack")[0] == 200


# ------------------------------------------------------------------------- 9: smaller ones
@pytest.mark.slow
@pytest.mark.parametrize("via", ["env", "file"])
def test_the_push_password_can_stay_out_of_the_command_line(start_server, via):
    srv = start_server(username="u", password="s3cret-pw", password_via=via)
    with open(f"/proc/{srv.proc.pid}/cmdline", "rb") as f:
        assert b"s3cret-pw" not in f.read()
    assert request(srv.port, "POST", protocol.AUTH, headers=basic("u", "s3cret-pw"))[0] == 204
    assert request(srv.port, "POST", protocol.AUTH, headers=basic("u", "wrong"))[0] == 401


@pytest.mark.slow
def test_an_empty_password_file_is_refused(tmp_path):
    import subprocess
    import sys

    pw = tmp_path / "pw"
    pw.write_text("\n")
    out = subprocess.run([sys.executable, "-m", "hangar", "server", "--port", str(remote_fixtures.free_port()),
                          "--path", str(tmp_path / "r"), "--username", "u", "--password-file", str(pw)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "empty first line" in out.stderr, out.stderr


@pytest.mark.slow
def test_a_nul_byte_in_a_request_path_is_a_400(start_server):
    srv = start_server()
    for path in ("/%00", "/info/refs%00?service=git-upload-pack", "/hangar/v1/ping%00", "/hangar/v1/have%00"):
        status, body, _ = request(srv.port, "GET", path)
        assert status == 400, (path, status, body)
    assert "Traceback" not in srv.log()
    assert ping_latency(srv) < 1.0


@pytest.mark.slow
def test_gc_runs_on_an_idle_served_repository_and_the_server_keeps_serving(start_server, aset_repo, tmp_path):
    srv = start_server()
    served = Repository(srv.path)
    assert served.gc(dry_run=True).dry_run  # before: refused for as long as the server ran
    aset_repo.remote.add("origin", srv.address)
    aset_repo.remote.push("origin", "master")
    with pytest.raises(TransferInProgressError, match="push is in progress"):
        served.gc(dry_run=True)  # right after an upload, its refs may still be on their way


@pytest.mark.slow
def test_gc_on_a_served_repository_keeps_what_clients_fetch(start_server, aset_repo, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(aset_repo.path, src)
    srv = start_server(path=str(src))  # serves aset_repo's history and data; no push, so no marker
    served = Repository(srv.path)
    report = served.gc()
    assert report.reachable_samples == 20
    dst = tmp_path / "dst"
    dst.mkdir()
    r = Repository(dst, exists=False)
    r.clone(*USER, srv.address)
    r.remote.fetch_data("origin", "master")
    co = r.checkout()
    np.testing.assert_array_equal(co.arraysets["foo"][3], np.arange(5, dtype=np.int64) + 3)
    co.close()


@pytest.mark.slow
def test_partial_files_of_dead_writers_are_removed_at_start_and_while_serving(start_server, tmp_path):
    path = tmp_path / "repo"
    path.mkdir()
    r = Repository(path, exists=False)
    r.init(*USER)
    packs = path / ".hangar" / "data" / "packs"
    packs.mkdir(parents=True, exist_ok=True)
    # pack ids start with the writer's pid in hex; 0x3fffff (pid_max's ceiling) is not running
    stale = packs / f"{0x3fffff:x}{'a' * 20}.partial"
    live_fresh = packs / f"{os.getpid():x}{'b' * 20}.partial"
    live_old = packs / f"{os.getpid():x}{'c' * 20}.partial"
    for p in (stale, live_fresh, live_old):
        p.write_bytes(b"x" * 100)
    os.utime(live_old, (time.time() - 7200, time.time() - 7200))
    srv = start_server(path=str(path))
    assert not stale.exists() or pid_alive(0x3fffff)
    assert live_fresh.exists() and not live_old.exists()
    later = packs / f"{0x3ffffe:x}{'d' * 20}.partial"  # a writer killed while the server runs
    later.write_bytes(b"y")
    arr = np.arange(7, dtype=np.int64)
    assert request(srv.port, "POST", protocol.UPLOAD, upload_body([arr]))[0] == 200
    assert not later.exists() or pid_alive(0x3ffffe)
    assert live_fresh.exists()
