"""Which S3 endpoint a clone follows (issue 15, review B): the history behind a git URL is
written by whoever controls it, and every request to the endpoint is signed with the user's
credentials. A recorded endpoint is followed only when it is AWS's own, or when the user
configured that endpoint (``endpoint_url=`` / ``--endpoint-url`` or ``AWS_ENDPOINT_URL``);
otherwise the clone is refused with the recorded endpoint and both ways to accept it named.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import DataRemoteAddressError
from hangar.remote.objectdata import endpoint_to_record
from tests.remote_fixtures import ServerProcess
from tests.s3_fixtures import ACCESS_KEY, s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import clone, expected, make_repo, pushed  # noqa: F401 - fixtures and builders


class Listener:
    """A TCP server on 127.0.0.1 that records what it receives and answers HTTP 403."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = b""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def record_endpoint(history: str, endpoint: str) -> None:
    """Rewrite ``refs/hangar/data`` of the bare repository ``history`` to name ``endpoint``
    (with plain git, as the owner of a git host could)."""
    def git(*args: str, data: bytes | None = None) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "hangar", "GIT_AUTHOR_EMAIL": "hangar@localhost",
               "GIT_COMMITTER_NAME": "hangar", "GIT_COMMITTER_EMAIL": "hangar@localhost"}
        return subprocess.run(["git", "--git-dir", history, *args], input=data, capture_output=True, env=env,
                              check=True).stdout.decode().strip()

    info = json.loads(git("show", "refs/hangar/data:data.json"))
    info["endpoint_url"] = endpoint
    blob = git("hash-object", "-w", "--stdin", data=json.dumps(info, sort_keys=True).encode() + b"\n")
    tree = git("mktree", data=f"100644 blob {blob}\tdata.json\n".encode())
    commit = git("commit-tree", tree, "-m", "hangar data location")
    git("update-ref", "refs/hangar/data", commit)


def test_a_clone_never_sends_signed_requests_to_an_endpoint_the_history_picked(pushed, tmp_path):  # noqa: F811
    _, url, loc = pushed
    evil = Listener()
    try:
        record_endpoint(url, evil.url)
        with pytest.raises(DataRemoteAddressError) as info:
            c = clone(tmp_path, url, endpoint_url=None)  # the git URL alone
            co = c.checkout()  # before: reads lazily through the recorded endpoint
            try:
                co.arraysets["img"]["3"]
            finally:
                co.close()
        msg = str(info.value)
        assert evil.url in msg and loc in msg and f"endpoint_url={evil.url!r}" in msg, msg
        assert f"--endpoint-url {evil.url}" in msg and f"AWS_ENDPOINT_URL={evil.url}" in msg, msg
        assert not os.path.exists(tmp_path / "clone" / ".hangar")  # nothing left behind
    finally:
        evil.close()
    assert ACCESS_KEY.encode() not in evil.received and evil.received == b"", evil.received[:300]


def test_the_recorded_endpoint_is_followed_once_the_user_names_it(pushed, tmp_path, monkeypatch):  # noqa: F811
    r, url, _ = pushed
    recorded = json.loads(subprocess.run(["git", "--git-dir", url, "show", "refs/hangar/data:data.json"],
                                         capture_output=True, check=True).stdout)["endpoint_url"]
    with pytest.raises(DataRemoteAddressError):
        clone(tmp_path, url, "refused", endpoint_url=None)
    c = clone(tmp_path, url, "by-option", endpoint_url=recorded)
    co = c.checkout()
    np.testing.assert_array_equal(co.arraysets["img"]["9"], expected()["9"])
    co.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", recorded)
    c = clone(tmp_path, url, "by-environment", endpoint_url=None)
    co = c.checkout()
    np.testing.assert_array_equal(co.arraysets["img"]["4"], expected()["4"])
    co.close()


@pytest.mark.parametrize("recorded", [None, "https://s3.amazonaws.com", "https://s3.eu-west-1.amazonaws.com",
                                      "https://s3-eu-west-1.amazonaws.com", "https://s3.cn-north-1.amazonaws.com.cn"])
def test_no_recorded_endpoint_or_an_aws_one_is_followed(recorded, monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    assert endpoint_to_record("origin", "s3://b/p", recorded, None) == recorded


@pytest.mark.parametrize("recorded", ["http://127.0.0.1:9000", "https://s3.amazonaws.com.evil.example",
                                      "https://evil.example/s3.amazonaws.com", "http://s3.amazonaws.com"])
def test_any_other_recorded_endpoint_needs_the_users_word(recorded, monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DataRemoteAddressError, match="--endpoint-url"):
        endpoint_to_record("origin", "s3://b/p", recorded, None)
    assert endpoint_to_record("origin", "s3://b/p", recorded, "http://mine:1") == "http://mine:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://mine:2")
    assert endpoint_to_record("origin", "s3://b/p", recorded, None) is None  # the environment, read on use


def test_a_clone_of_a_served_history_naming_a_foreign_endpoint_is_refused_and_leaves_nothing(tmp_path,
                                                                                             s3_env):  # noqa: F811
    """The same rule for a hangar server holding a data remote's history (its own clone path)."""
    # the server checks pushes against the bucket with an endpoint of its own configuration
    srv = ServerProcess(str(tmp_path / "served"), env=dict(os.environ, AWS_ENDPOINT_URL=s3_env.endpoint))
    try:
        src = make_repo(tmp_path / "src", n=4)
        src.remote.add("origin", srv.address, data=s3_env.new_location(), endpoint_url=s3_env.endpoint)
        assert src.remote.push("origin", "master") == "master"
        os.makedirs(tmp_path / "clone")
        with pytest.raises(DataRemoteAddressError, match="--endpoint-url"):
            Repository(tmp_path / "clone", exists=False).clone("Bob", "bob@example.com", srv.address)
        assert not os.path.exists(tmp_path / "clone" / ".hangar")
    finally:
        srv.stop()
