"""``hangar server --tls-cert/--tls-key``: push, clone, fetch and fetch_data over HTTPS.

A real server subprocess with a self-signed certificate made by the test (for 127.0.0.1);
the client trusts it through ``SSL_CERT_FILE``, the way a user trusts a private CA.
"""

from __future__ import annotations

import http.client
import os
import subprocess

import numpy as np
import pytest

from hangar import Repository
from tests import remote_fixtures

pytest.importorskip("cryptography.x509", reason="cryptography makes the test certificate")
start_server = remote_fixtures.start_server
make_certificate = remote_fixtures.make_certificate
USER = ("Test User", "test@example.com")


@pytest.fixture
def tls_server(tmp_path, start_server, monkeypatch):
    """A server with TLS and push credentials; the client process trusts its certificate."""
    cert, key = make_certificate(str(tmp_path), "hangar-test")
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    return start_server(username="alice", password="s3cret", tls=(cert, key))


def new_repo(path) -> Repository:
    os.makedirs(path, exist_ok=True)
    repo = Repository(str(path), exists=False)
    repo.init(*USER)
    return repo


def write(repo: Repository, values: dict[int, np.ndarray], message: str) -> str:
    co = repo.checkout(write=True)
    if "x" not in co.arraysets:
        co.arraysets.init_arrayset("x", shape=(16,), dtype=np.float32)
    for k, v in values.items():
        co.arraysets["x"][k] = v
    head = co.commit(message)
    co.close()
    return head


@pytest.mark.slow
def test_push_clone_fetch_and_fetch_data_over_https(tmp_path, tls_server):
    src = new_repo(tmp_path / "src")
    values = {i: np.full(16, i, dtype=np.float32) for i in range(20)}
    first = write(src, values, "first")
    src.remote.add("origin", tls_server.address)
    assert src.remote.list_all()[0].address == tls_server.address  # https:// kept
    assert src.remote.ping("origin") > 0
    with pytest.raises(PermissionError, match="credentials"):
        src.remote.push("origin", "master", username="alice", password="wrong")
    assert src.remote.push("origin", "master", username="alice", password="s3cret") == "master"

    os.makedirs(tmp_path / "dst")
    dst = Repository(str(tmp_path / "dst"), exists=False)
    assert dst.clone(*USER, tls_server.address) == "master"
    assert dst.log(return_contents=True)["head"] == first
    dst.remote.fetch_data("origin", "master")
    co = dst.checkout()
    assert {k: v.tobytes() for k, v in co.arraysets["x"].items()} == {k: v.tobytes() for k, v in values.items()}
    co.close()

    second = write(src, {99: np.ones(16, dtype=np.float32)}, "second")
    src.remote.push("origin", "master", username="alice", password="s3cret")
    assert dst.remote.fetch("origin", "master") == "origin/master"
    assert dst.log(branch="origin/master", return_contents=True)["head"] == second


@pytest.mark.slow
def test_git_binary_clones_over_https_with_the_ca(tmp_path, tls_server):
    src = new_repo(tmp_path / "src")
    head = write(src, {1: np.zeros(16, dtype=np.float32)}, "only")
    src.remote.add("origin", tls_server.address)
    src.remote.push("origin", "master", username="alice", password="s3cret")
    out = tmp_path / "plain"
    env = {**os.environ, "GIT_SSL_CAINFO": tls_server.tls[0]}
    subprocess.run(["git", "clone", "-q", f"{tls_server.address}/", str(out)], check=True, env=env,
                   capture_output=True, text=True)
    assert subprocess.run(["git", "-C", str(out), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip() == head


@pytest.mark.slow
def test_untrusted_certificate_or_plain_http_is_refused_and_creates_nothing(tmp_path, tls_server, monkeypatch):
    other_ca, _ = make_certificate(str(tmp_path), "someone-else")
    monkeypatch.setenv("SSL_CERT_FILE", other_ca)  # trusts another CA only
    os.makedirs(tmp_path / "a")
    repo = Repository(str(tmp_path / "a"), exists=False)
    with pytest.raises(ConnectionError, match="certificate is not trusted"):
        repo.clone(*USER, tls_server.address)
    assert not repo.initialized
    plain = tls_server.address.removeprefix("https://")
    with pytest.raises(ConnectionError, match="https://IP:PORT"):
        repo.clone(*USER, plain)
    assert not repo.initialized
    src = new_repo(tmp_path / "src")
    write(src, {1: np.zeros(16, dtype=np.float32)}, "only")
    src.remote.add("origin", tls_server.address)
    with pytest.raises(ConnectionError, match="certificate is not trusted"):
        src.remote.fetch("origin", "master")  # git's transport refuses the certificate too
    conn = http.client.HTTPConnection("127.0.0.1", tls_server.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):  # plain HTTP gets no HTTP answer
        conn.request("GET", "/hangar/v1/ping")
        conn.getresponse()
    conn.close()


def test_server_refuses_half_a_tls_configuration(tmp_path):
    from hangar.remote.server import run_server

    cert, key = make_certificate(str(tmp_path), "half")
    with pytest.raises(ValueError, match="both"):
        run_server(str(tmp_path / "repo"), port=remote_fixtures.free_port(), tls_cert=cert)
    with pytest.raises(ValueError, match="cannot load"):
        run_server(str(tmp_path / "repo"), port=remote_fixtures.free_port(), tls_cert=key, tls_key=key)
    assert not os.path.exists(tmp_path / "repo")  # refused before anything was created
