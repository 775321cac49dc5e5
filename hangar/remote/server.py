"""``hangar server``: one repository served over HTTP.

History goes over **git smart HTTP** at the root URL, so ``git clone http://IP:PORT/`` and
libgit2 work unchanged: the real ``git http-backend`` (run as a CGI from a small WSGI app)
when the ``git`` binary is installed, dulwich's WSGI app otherwise. Sample bytes go over the
data-sync endpoints of :mod:`hangar.remote.protocol`. Everything runs under waitress.

Push (git receive-pack and data upload) can be restricted with a username and password
(HTTP Basic). Uploaded samples are re-hashed before they are stored; writes to the tensor
store are serialized by a lock and made durable before the upload is acknowledged, so a
client pushes data first and moves refs only once the server holds every byte.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import Callable, Iterable, Iterator, Optional

from hangar import __version__
from hangar.errors import CorruptDataError
from hangar.remote import protocol
from hangar.store import TensorStore
from hangar.store.packs import LocalPackStorage
from hangar.transfers import transfer_marker

log = logging.getLogger("hangar.server")

StartResponse = Callable[..., object]
_CHUNK = 1 << 20
_GAP = 64 << 10  # coalesce reads of samples at most this far apart
_RUN = 8 << 20  # into reads of at most this many bytes


def _read_body(environ: dict, limit: int) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.isdigit():
        n = int(length)
        if n > limit:
            raise _TooLarge(n)
        return stream.read(n)
    parts, total = [], 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _TooLarge(total)
        parts.append(chunk)
    return b"".join(parts)


class _TooLarge(Exception):
    pass


def _reply(start_response: StartResponse, status: str, body: bytes = b"",
           ctype: str = "text/plain; charset=utf-8", extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))), *extra])
    return [body]


def _json(start_response: StartResponse, status: str, obj: object) -> list[bytes]:
    return _reply(start_response, status, json.dumps(obj).encode(), "application/json")


class GitHttpBackend:
    """WSGI app running ``git http-backend`` (CGI) for one git directory."""

    def __init__(self, git_dir: str, git: str) -> None:
        self.git_dir = git_dir
        self.git = git
        self.hooks_dir = os.path.join(git_dir, "hangar-hooks")
        os.makedirs(self.hooks_dir, exist_ok=True)
        hook = os.path.join(self.hooks_dir, "pre-receive")
        with open(hook + ".tmp", "w") as f:
            f.write(f'#!/bin/sh\nexec "{sys.executable}" -m hangar.remote.prereceive\n')
        os.chmod(hook + ".tmp", 0o755)
        os.replace(hook + ".tmp", hook)

    def __call__(self, environ: dict, start_response: StartResponse, allow_push: bool,
                 user: str) -> Iterable[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "HTTP_"))}
        env.update({
            "GIT_PROJECT_ROOT": self.git_dir, "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": environ.get("PATH_INFO", "/"), "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "QUERY_STRING": environ.get("QUERY_STRING", ""), "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", ""), "SERVER_PROTOCOL": environ.get("SERVER_PROTOCOL", ""),
            "GIT_CONFIG_COUNT": "4", "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true" if allow_push else "false",
            # committed history on the server is never rewritten or dropped by a push
            "GIT_CONFIG_KEY_1": "receive.denyNonFastForwards", "GIT_CONFIG_VALUE_1": "true",
            "GIT_CONFIG_KEY_2": "receive.denyDeletes", "GIT_CONFIG_VALUE_2": "true",
            # refuse commits whose sample bytes were not uploaded first (a plain `git push`)
            "GIT_CONFIG_KEY_3": "core.hooksPath", "GIT_CONFIG_VALUE_3": self.hooks_dir,
        })
        if allow_push:
            env["REMOTE_USER"] = user
        if environ.get("CONTENT_LENGTH"):
            env["CONTENT_LENGTH"] = environ["CONTENT_LENGTH"]
        for k, v in environ.items():
            if k.startswith("HTTP_"):
                env[k] = v
        proc = subprocess.Popen([self.git, "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)
        feeder = threading.Thread(target=self._feed, args=(environ, proc), daemon=True)
        feeder.start()
        assert proc.stdout is not None
        try:
            status, headers = "200 OK", []
            while True:
                line = proc.stdout.readline()
                if not line or line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
                if name.lower() == "status":
                    status = value.strip()
                else:
                    headers.append((name.strip(), value.strip()))
            start_response(status, headers)
        except BaseException:  # never leave the CGI process and its pipes behind
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise
        return self._drain(proc, feeder)

    @staticmethod
    def _feed(environ: dict, proc: subprocess.Popen) -> None:
        stream, stdin = environ["wsgi.input"], proc.stdin
        assert stdin is not None
        length = environ.get("CONTENT_LENGTH") or ""
        left = int(length) if length.isdigit() else None
        try:
            while left is None or left > 0:
                chunk = stream.read(_CHUNK if left is None else min(_CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                stdin.write(chunk)
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    @staticmethod
    def _drain(proc: subprocess.Popen, feeder: threading.Thread) -> Iterator[bytes]:
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read1(_CHUNK):
                yield chunk
        finally:
            # the client may be gone: still read git's output to the end, so a receive-pack that
            # is updating refs finishes (a SIGPIPE there could leave a stale refs/heads/*.lock)
            while proc.stdout.read1(_CHUNK):
                pass
            proc.stdout.close()
            feeder.join()
            proc.wait()


class DulwichBackend:
    """Fallback git smart HTTP through dulwich's WSGI app (used without a ``git`` binary)."""

    def __init__(self, git_dir: str) -> None:
        from dulwich.repo import Repo
        from dulwich.server import DictBackend
        from dulwich.web import make_wsgi_chain

        self._app = make_wsgi_chain(DictBackend({"/": Repo(git_dir)}))

    def __call__(self, environ: dict, start_response: StartResponse, allow_push: bool,
                 user: str) -> Iterable[bytes]:
        if not allow_push and _is_receive_pack(environ):
            return _reply(start_response, "403 Forbidden", b"push is not allowed\n")
        return self._app(environ, start_response)


def _is_receive_pack(environ: dict) -> bool:
    return (environ.get("PATH_INFO", "").endswith("git-receive-pack")
            or "service=git-receive-pack" in environ.get("QUERY_STRING", ""))


class HangarServer:
    """WSGI application serving the hangar repository at ``path``.

    Parameters
    ----------
    path : str
        Directory of the repository; an empty repository is created there if none exists.
    username, password : str, optional
        When given, pushing (git receive-pack and data upload) requires these HTTP Basic
        credentials. Reading (clone, fetch, fetch_data) is always open.
    git_backend : {'auto', 'git', 'dulwich'}
        Who serves git smart HTTP: ``auto`` uses ``git http-backend`` when ``git`` is installed.
    """

    def __init__(self, path: str, username: Optional[str] = None, password: Optional[str] = None,
                 git_backend: str = "auto") -> None:
        from hangar.repository import Repository

        os.makedirs(path, exist_ok=True)
        repo = Repository(path, exists=False)
        if not repo.initialized:
            repo.init(user_name="hangar server", user_email="server@hangar.invalid")
        self.path = repo.path
        self.git_dir = os.path.join(self.path, ".hangar")
        if (username is None) != (password is None):
            raise ValueError("give both username and password to restrict push, or neither")
        self._creds = (username, password) if username is not None else None
        data = os.path.join(self.git_dir, "data")
        self._reader = TensorStore(LocalPackStorage(data))
        self._writer = TensorStore(LocalPackStorage(data))
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # a push uploads bytes and moves refs in separate requests: while a server runs, gc on
        # its repository would see uploaded-but-unreferenced data as garbage, so it refuses
        self._serving = transfer_marker(self.git_dir, "hangar server")
        self._serving.__enter__()
        git = shutil.which("git")
        if git_backend not in ("auto", "git", "dulwich"):
            raise ValueError(f"git_backend must be 'auto', 'git' or 'dulwich', not {git_backend!r}")
        if git_backend == "dulwich" or (git_backend == "auto" and git is None):
            self.git_app: Callable[..., Iterable[bytes]] = DulwichBackend(self.git_dir)
            self.git_backend = "dulwich"
        else:
            if git is None:
                raise FileNotFoundError("git_backend='git' needs the git binary on PATH")
            self.git_app = GitHttpBackend(self.git_dir, git)
            self.git_backend = "git"

    # ------------------------------------------------------------------ auth
    def _user(self, environ: dict) -> Optional[str]:
        """Who may push with this request's credentials, or None when they do not allow it."""
        if self._creds is None:
            return "anonymous"
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), self._creds[0].encode())
        ok_pw = hmac.compare_digest(pw.encode(), self._creds[1].encode())
        return user if ok_user and ok_pw else None

    @staticmethod
    def _unauthorized(start_response: StartResponse) -> list[bytes]:
        return _reply(start_response, "401 Unauthorized", b"push requires valid credentials\n",
                      extra=[("WWW-Authenticate", 'Basic realm="hangar"')])

    # ------------------------------------------------------------- dispatch
    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path.startswith(protocol.PREFIX):
                return self._data(path, method, environ, start_response)
            user = self._user(environ)
            if _is_receive_pack(environ) and user is None:
                return self._unauthorized(start_response)
            return self.git_app(environ, start_response, user is not None, user or "")
        except _TooLarge as exc:
            msg = f"request body of {exc} bytes is too large\n"
            return _reply(start_response, "413 Payload Too Large", msg.encode())
        except protocol.ProtocolError as exc:
            return _reply(start_response, "400 Bad Request", f"{exc}\n".encode())

    def _data(self, path: str, method: str, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if path == protocol.PING:
            return _json(start_response, "200 OK", {"hangar": __version__, "push_auth": self._creds is not None,
                                                    "git_backend": self.git_backend})
        if method != "POST":
            return _reply(start_response, "405 Method Not Allowed", b"use POST\n", extra=[("Allow", "POST")])
        if path == protocol.AUTH:
            if self._user(environ) is None:
                return self._unauthorized(start_response)
            return _reply(start_response, "204 No Content")
        if path == protocol.HAVE:
            digests = protocol.split_digests(_read_body(environ, protocol.MAX_DIGESTS_PER_REQUEST * 32))
            have = bytes(loc is not None for loc in self._locate(digests))
            return _reply(start_response, "200 OK", have, "application/octet-stream")
        if path == protocol.DOWNLOAD:
            return self._download(environ, start_response)
        if path == protocol.UPLOAD:
            if self._user(environ) is None:
                return self._unauthorized(start_response)
            return self._upload(environ, start_response)
        return _reply(start_response, "404 Not Found", f"no endpoint {path}\n".encode())

    def _locate(self, digests: list[bytes]) -> list:
        # the index is rebuilt in place on refresh: one request thread at a time
        with self._read_lock:
            self._reader.refresh()
            return self._reader.locations(digests)

    def _download(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        digests = protocol.split_digests(_read_body(environ, protocol.MAX_DIGESTS_PER_REQUEST * 32))
        store = self._reader
        locs = self._locate(digests)
        if None in locs:
            lacking = [d.hex() for d, loc in zip(digests, locs) if loc is None]
            msg = f"{len(lacking)} requested samples are not stored here, e.g. digest {lacking[0]}\n"
            return _reply(start_response, "404 Not Found", msg.encode())
        total = sum(protocol.DOWNLOAD_HEADER_SIZE + loc.length for loc in locs)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])
        return self._stream(store, digests, locs)

    @staticmethod
    def _stream(store: TensorStore, digests: list[bytes], locs: list) -> Iterator[bytes]:
        # Read in storage order, neighbours coalesced into one read into a reused buffer:
        # a pack is read sequentially in large blocks instead of one small read per sample.
        # Each run is sent as one bytes object (waitress compares and buffers what it is
        # given; bytes are its fast path), so the buffer is free again at the next read.
        order = sorted(range(len(digests)), key=lambda i: (locs[i].pack, locs[i].offset))
        readinto = store.storage.readinto
        header = protocol.download_header
        buf = memoryview(bytearray(_RUN))
        i = 0
        while i < len(order):
            first = locs[order[i]]
            j, end = i + 1, first.offset + first.length
            while j < len(order):
                nxt = locs[order[j]]
                if nxt.pack != first.pack or nxt.offset < end or nxt.offset - end > _GAP \
                        or nxt.offset + nxt.length - first.offset > _RUN:
                    break
                end = nxt.offset + nxt.length
                j += 1
            size = end - first.offset
            block = buf[:size] if size <= _RUN else memoryview(bytearray(size))
            readinto(first.pack, first.offset, block)
            parts: list = []
            for k in order[i:j]:
                loc = locs[k]
                start = loc.offset - first.offset
                parts += [header(digests[k], loc.codec, loc.rawlen, loc.length), block[start:start + loc.length]]
            yield b"".join(parts)
            i = j

    def _upload(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > protocol.MAX_UPLOAD_BYTES:
            raise _TooLarge(int(length))
        reader = protocol.RecordReader(environ["wsgi.input"], limit=protocol.MAX_UPLOAD_BYTES)
        stored = present = 0
        with self._write_lock:
            store = self._writer
            store.refresh()
            try:
                for s in reader.uploads():
                    if reader.bytes_read > protocol.MAX_UPLOAD_BYTES:
                        raise _TooLarge(reader.bytes_read)
                    sample = protocol.to_stored(s)
                    if store.put_stored(sample, s.dtype, s.shape):
                        stored += 1
                    else:
                        present += 1
                store.flush()
            except CorruptDataError as exc:
                store.discard()
                return _reply(start_response, "422 Unprocessable Entity", f"{exc}; nothing was stored\n".encode())
            except protocol.RecordTooLarge as exc:
                store.discard()
                return _reply(start_response, "413 Request Entity Too Large",
                              f"{exc}; nothing was stored\n".encode())
            except (protocol.ProtocolError, ValueError, TypeError) as exc:
                store.discard()
                return _reply(start_response, "400 Bad Request", f"{exc}; nothing was stored\n".encode())
            except BaseException:
                store.discard()
                raise
        log.info("stored %d uploaded samples (%d already present)", stored, present)
        return _json(start_response, "200 OK", {"stored": stored, "present": present})

    def close(self) -> None:
        self._serving.__exit__(None, None, None)
        self._reader.close()
        with self._write_lock:
            self._writer.discard()
            self._writer.close()


def make_server(app: HangarServer, ip: str, port: int):  # noqa: ANN201 - a waitress server
    """A waitress server for ``app`` (not started)."""
    from waitress import create_server

    return create_server(app, host=ip, port=port, threads=8, ident="hangar",
                         max_request_body_size=protocol.MAX_UPLOAD_BYTES + (1 << 20),
                         outbuf_overflow=64 << 20, outbuf_high_watermark=64 << 20,
                         inbuf_overflow=64 << 20, recv_bytes=1 << 18,
                         channel_timeout=600, connection_limit=200)


def run_server(path: str, ip: str = "127.0.0.1", port: int = 50051, username: Optional[str] = None,
               password: Optional[str] = None, tls_cert: Optional[str] = None, tls_key: Optional[str] = None) -> None:
    """Serve the repository at ``path`` on ``ip:port`` until SIGINT or SIGTERM.

    Creates an empty repository at ``path`` when none exists. Logs the address it listens
    on to stderr. On SIGINT/SIGTERM it stops accepting requests, closes the tensor store
    (every acknowledged upload is already durable) and returns. With ``tls_cert`` and
    ``tls_key`` (PEM files) it serves HTTPS: clients use the address ``https://IP:PORT``.

    Raises
    ------
    ValueError
        If only one of ``tls_cert``/``tls_key`` is given, or they cannot be loaded.
    """
    from hangar.remote.tls import TLSFrontend, server_context

    if (tls_cert is None) != (tls_key is None):
        raise ValueError("HTTPS needs both a certificate and its key (tls_cert and tls_key)")
    context = server_context(tls_cert, tls_key) if tls_cert is not None else None  # type: ignore[arg-type]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = HangarServer(os.path.abspath(path), username=username, password=password)
    # behind TLS the WSGI server only takes the frontend's relays, on a loopback port
    server = make_server(app, "127.0.0.1", 0) if context else make_server(app, ip, port)
    frontend = None
    if context is not None:
        frontend = TLSFrontend(ip, port, server.effective_port, context)
        try:
            frontend.start()
        except BaseException:  # e.g. the port is taken: leave nothing running or open
            server.close()
            app.close()
            raise

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    where = f"https://{ip}:{frontend.port}/" if frontend else f"http://{server.effective_host}:{server.effective_port}/"
    log.info("hangar server for %s listening on %s (git: %s, push %s)", app.path, where, app.git_backend,
             "requires credentials" if username is not None else "open")
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if frontend is not None:
            frontend.close()
        server.close()
        app.close()
        log.info("hangar server stopped")
