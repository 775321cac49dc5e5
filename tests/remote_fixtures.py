"""Real ``hangar server`` processes for the remote tests (no mocks: a subprocess on a free port)."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from typing import Optional

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificate(directory: str, name: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files; returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    # a unique subject: libgit2's OpenSSL store keeps every CA it was pointed at in this process,
    # and finds issuers by subject name
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-{uuid.uuid4().hex}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class ServerProcess:
    """``python -m hangar server`` serving ``path`` on 127.0.0.1:``port``."""

    def __init__(self, path: str, username: Optional[str] = None, password: Optional[str] = None,
                 port: Optional[int] = None, tls: Optional[tuple[str, str]] = None, env: Optional[dict] = None,
                 password_via: str = "arg", rlimit_as: Optional[int] = None, new_session: bool = False) -> None:
        """``password_via``: 'arg' (--password), 'env' (HANGAR_SERVER_PASSWORD) or 'file'
        (--password-file); ``env``: the server's whole environment; ``rlimit_as``: its
        address-space limit in bytes (a test that could make it allocate GBs); ``new_session``:
        the server leads its own process group, so :meth:`wait_children_gone` can wait for the
        git processes it started (a receive-pack outlives a graceful stop that timed out)."""
        self.path = str(path)
        self.port = port or free_port()
        self.tls = tls  # (certificate, key) PEM paths: serve HTTPS
        self.address = f"{'https://' if tls else ''}127.0.0.1:{self.port}"
        # ResourceWarnings go to the log, and a graceful stop() fails on any: a leak in the server
        # (a connection left open at shutdown) is a test failure, as leaks in the test process are
        cmd = [sys.executable, "-W", "always::ResourceWarning", "-m", "hangar", "server", "--ip", "127.0.0.1",
               "--port", str(self.port), "--path", self.path]
        env = dict(os.environ if env is None else env)
        if username is not None:
            cmd += ["--username", username]
            if password_via == "arg":
                cmd += ["--password", password or ""]
            elif password_via == "env":
                env["HANGAR_SERVER_PASSWORD"] = password or ""
            else:
                pw_file = os.path.join(os.path.dirname(self.path.rstrip("/")) or ".", f"pw-{self.port}")
                with open(pw_file, "w") as f:
                    f.write((password or "") + "\n")
                cmd += ["--password-file", pw_file]
        if tls is not None:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.log_path = os.path.join(os.path.dirname(self.path.rstrip("/")) or ".",
                                     f"server-{self.port}.log")
        self._log = open(self.log_path, "wb")
        def limit() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))

        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=limit if rlimit_as else None, start_new_session=new_session)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if self.tls:
                    ctx = ssl.create_default_context(cafile=self.tls[0])
                    conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=ctx)
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/hangar/v1/ping")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not answer within {timeout}s: {self.log()}")
            time.sleep(0.05)

    def status(self, field: str) -> int:
        """A kB figure of the server's /proc/PID/status, e.g. 'VmRSS' or 'VmHWM' (peak RSS), in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(field)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the server with ``sig`` and wait; ``AssertionError`` if it leaked a resource on the way."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self._log.close()
        if sig in (signal.SIGTERM, signal.SIGINT):
            assert "ResourceWarning" not in self.log(), f"the server leaked at shutdown:\n{self.log()}"
        return rc

    def wait_children_gone(self, timeout: float = 60.0) -> None:
        """After :meth:`stop` of a ``new_session`` server: wait until no process it started runs."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            assert time.monotonic() < deadline, f"processes of the stopped server still run after {timeout} s"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up (a crash)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture
def start_server(tmp_path_factory):
    """Factory: ``start_server(path=None, username=None, password=None) -> ServerProcess``."""
    started: list[ServerProcess] = []

    def start(path: Optional[str] = None, **kw) -> ServerProcess:
        path = path or str(tmp_path_factory.mktemp("server") / "repo")
        srv = ServerProcess(path, **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            try:
                srv.stop()
            except subprocess.TimeoutExpired:
                srv.kill()
