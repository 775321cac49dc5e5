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
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, ContextManager, Iterable, Iterator, NamedTuple, Optional
from urllib.parse import parse_qs

import numpy as np

from hangar._version import __version__
from hangar.errors import (
    CorruptDataError,
    GitNotFoundError,
    RequestTooLargeError,
    ServerConfigError,
    UnseekableStreamError,
)
from hangar.plumbing import paths
from hangar.plumbing.pids import pid_alive
from hangar.plumbing.rowhash import check_spans
from hangar.remote import guard, prereceive, protocol
from hangar.store import TensorStore
from hangar.store.packs import LocalPackStorage, StoredCheck, parse_index
from hangar.store.tensorstore import check_stored, damaged_sample
from hangar.transfers import transfer_marker

log = logging.getLogger("hangar.server")

StartResponse = Callable[..., object]
_CHUNK = 1 << 20
_GAP = 64 << 10  # coalesce reads of samples at most this far apart
_RUN = 1 << 20  # into reads of at most this many bytes


def _read_body(environ: dict, limit: int) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.isdigit():
        n = int(length)
        if n > limit:
            raise RequestTooLargeError(n)
        return stream.read(n)
    parts, total = [], 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise RequestTooLargeError(total)
        parts.append(chunk)
    return b"".join(parts)


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
            # stdout=PIPE with the default buffering: a BufferedReader
            while chunk := proc.stdout.read1(_CHUNK):  # type: ignore[attr-defined]
                yield chunk
        finally:
            # the client may be gone: still read git's output to the end, so a receive-pack that
            # is updating refs finishes (a SIGPIPE there could leave a stale refs/heads/*.lock)
            # stdout=PIPE with the default buffering: a BufferedReader
            while proc.stdout.read1(_CHUNK):  # type: ignore[attr-defined]
                pass
            proc.stdout.close()
            feeder.join()
            proc.wait()


class DulwichBackend:
    """Fallback git smart HTTP through dulwich's WSGI app (used without a ``git`` binary).

    Pushes get the refusals of :mod:`hangar.remote.prereceive` (the checks ``git
    http-backend`` runs in its pre-receive hook), applied to each ref before it moves.
    """

    def __init__(self, git_dir: str) -> None:
        from dulwich.repo import Repo
        from dulwich.server import DEFAULT_HANDLERS, DictBackend, ReceivePackHandler
        from dulwich.web import make_wsgi_chain

        class Receive(ReceivePackHandler):
            def capabilities(self) -> list[bytes]:  # deletions are refused: do not offer them
                return [c for c in super().capabilities() if c != b"delete-refs"]

            _pushed: list[tuple[str, str, str]] = []
            _whole: Optional[list[str]] = None

            def _apply_pack(self, refs: list) -> Iterator[tuple[bytes, bytes]]:
                # the whole push, for the checks of each of its refs (dulwich asks one at a time)
                self._pushed = [(o.decode("ascii"), n.decode("ascii"), r.decode("utf-8", "replace"))
                                for o, n, r in refs]
                self._whole = None
                return super()._apply_pack(refs)

            def _on_update(self, ref_name: bytes, old_sha: bytes, new_sha: bytes) -> Optional[bytes]:
                update = (old_sha.decode("ascii"), new_sha.decode("ascii"), ref_name.decode("utf-8", "replace"))
                if self._whole is None:
                    # judged once, at the first ref, against the repository as it was before the
                    # push (git's pre-receive): checking each ref after earlier ones moved let a
                    # branch through on a data ref that was then refused because the branch existed
                    self._whole = prereceive.refusals(git_dir, self._pushed or [update])
                refused = self._whole
                if refused:
                    log.info("refused a push: %s", "; ".join(refused))
                    # the prefix the git hook writes too: the client knows the refusal as final by it
                    return ("hangar server: " + "; ".join(refused)).encode("utf-8", "replace")
                # dulwich passes bytes here
                return super()._on_update(ref_name, old_sha, new_sha)  # type: ignore[arg-type]

        handlers = {**DEFAULT_HANDLERS, b"git-receive-pack": Receive}
        self._repo = Repo(git_dir)
        # dulwich's annotations are narrower than what it takes
        self._app = make_wsgi_chain(DictBackend({"/": self._repo}), handlers=handlers)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the repository's open pack files (left open, each was a ResourceWarning at exit)."""
        self._repo.close()

    def __call__(self, environ: dict, start_response: StartResponse, allow_push: bool,
                 user: str) -> Iterable[bytes]:
        if not allow_push and _is_receive_pack(environ):
            return _reply(start_response, "403 Forbidden", b"push is not allowed\n")
        return self._app(environ, start_response)  # type: ignore[arg-type]  # the WSGI start_response


def is_push(path: str, query: str) -> bool:
    """Whether a request to ``path?query`` pushes (data upload or git receive-pack).

    The query is decoded the way git and dulwich decode it: ``service=git%2Dreceive-pack``
    is receive-pack too.
    """
    if path in (protocol.UPLOAD, protocol.UPLOAD_RUNS) or path.rstrip("/").endswith("git-receive-pack"):
        return True
    try:
        services = parse_qs(query, keep_blank_values=True).get("service", [])
    except ValueError:
        return True  # unreadable: treat as the stricter kind
    return any(s.strip().endswith("git-receive-pack") for s in services)


def _is_receive_pack(environ: dict) -> bool:
    path = environ.get("PATH_INFO", "")
    return path not in (protocol.UPLOAD, protocol.UPLOAD_RUNS) and is_push(path, environ.get("QUERY_STRING", ""))


def _body_limit(path: str) -> Optional[int]:
    """Most body bytes an anonymous request to ``path`` may send (None: the global limit)."""
    if path in (protocol.HAVE, protocol.DOWNLOAD, protocol.RANGES):
        return protocol.MAX_DIGESTS_PER_REQUEST * protocol.DIGEST_LEN
    if path.startswith(protocol.PREFIX):
        return 0
    return MAX_ANONYMOUS_GIT_BODY


#: most body bytes of a git request that does not push (fetch negotiation: want/have lines)
MAX_ANONYMOUS_GIT_BODY = 64 << 20
#: seconds the server keeps its gc marker after the last upload or git push ended: a
#: ``hangar push`` uploads bytes, then moves refs in a second request, and gc in between
#: would take the uploaded bytes for garbage
TRANSFER_GRACE = 120.0
#: ``*.partial`` pack files (an interrupted write) untouched this long are removed
PARTIAL_AGE = 3600.0


def _writer_gone(partial_name: str) -> bool:
    """Whether the process that wrote pack ``<pid hex><20 hex>.partial`` no longer runs here."""
    stem = partial_name[:-len(".partial")]
    try:
        pid = int(stem[:-20], 16)
    except ValueError:
        return False
    if pid <= 0 or pid > 1 << 22:
        return False
    return not pid_alive(pid)


class _LazyFile:
    """A read-only, seekable file over an iterator of byte chunks of known total size.

    For ``wsgi.file_wrapper``: waitress reads a block, then reads the part it sent again
    after seeking back (never further back than the current chunk), and seeks to the end
    once to learn the size. Chunks are produced only as reads reach them.
    """

    def __init__(self, chunks: Iterator[bytes | bytearray | memoryview], size: int) -> None:
        self._chunks, self._size = chunks, size
        self._buf = memoryview(b"")
        self._start = 0  # offset of _buf in the stream
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = self._size + pos if whence == 2 else self._pos + pos if whence == 1 else pos
        return self._pos

    def read(self, n: int = -1) -> bytes | memoryview:
        if self._pos < self._start:
            raise UnseekableStreamError(f"cannot seek back before offset {self._start} of a streamed answer")
        while self._pos >= self._start + len(self._buf):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._start += len(self._buf)
            self._buf = memoryview(chunk)
        at = self._pos - self._start
        out = self._buf[at:] if n is None or n < 0 else self._buf[at:at + n]
        self._pos += len(out)
        return out

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield bytes(chunk)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class TransferGate:
    """The server's gc marker (:func:`hangar.transfers.transfer_marker`), held only while needed.

    Held from the start of the first of any overlapping uploads or git pushes until
    ``grace`` seconds after the last one ends, so ``hangar gc`` on a served repository runs
    when the server is idle, but not between a push's upload and its ref update.
    """

    def __init__(self, git_dir: str, grace: float) -> None:
        self.git_dir, self.grace = git_dir, grace
        self._lock = threading.Lock()
        self._count = 0
        self._marker: Optional[ContextManager[None]] = None
        self._timer: Optional[threading.Timer] = None

    def enter(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._count += 1
            if self._marker is None:
                self._marker = transfer_marker(self.git_dir, "hangar server (a push is in progress)")
                self._marker.__enter__()

    def exit(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and self._marker is not None:
                self._timer = threading.Timer(self.grace, self._release)
                self._timer.daemon = True
                self._timer.start()

    def _release(self) -> None:
        with self._lock:
            if self._count == 0 and self._marker is not None:
                self._marker.__exit__(None, None, None)
                self._marker = None
            self._timer = None

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._marker is not None:
                self._marker.__exit__(None, None, None)
                self._marker = None


class _Holding:
    """An answer's iterable that calls ``done`` once when the server is finished with it."""

    def __init__(self, out: Iterable[bytes], done: Callable[[], None]) -> None:
        self._out = out
        self._done: Optional[Callable[[], None]] = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._out)

    def close(self) -> None:
        try:
            close = getattr(self._out, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


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
        self.git_dir = paths.hangar_dir(self.path)
        if (username is None) != (password is None):
            raise ServerConfigError("give both username and password to restrict push, or neither")
        self._creds = (username, password) if username is not None else None
        data = paths.data_dir(self.git_dir)
        self._reader = TensorStore(LocalPackStorage(data))
        self._writer = TensorStore(LocalPackStorage(data))
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._transfers = TransferGate(self.git_dir, TRANSFER_GRACE)
        self.remove_stale_partials()
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="hangar-partials", daemon=True)
        self._sweeper.start()
        git = shutil.which("git")
        if git_backend not in ("auto", "git", "dulwich"):
            raise ServerConfigError(f"git_backend must be 'auto', 'git' or 'dulwich', not {git_backend!r}")
        if git_backend == "dulwich" or (git_backend == "auto" and git is None):
            self.git_app: Callable[..., Iterable[bytes]] = DulwichBackend(self.git_dir)
            self.git_backend = "dulwich"
        else:
            if git is None:
                raise GitNotFoundError("git_backend='git' needs the git binary on PATH")
            self.git_app = GitHttpBackend(self.git_dir, git)
            self.git_backend = "git"

    # ------------------------------------------------------------------ auth
    def _user(self, environ: dict) -> Optional[str]:
        """Who may push with this request's credentials, or None when they do not allow it."""
        return self.user_for(environ.get("HTTP_AUTHORIZATION", ""))

    def user_for(self, header: str) -> Optional[str]:
        """Who may push with the ``Authorization`` header ``header``; None when it does not allow it."""
        if self._creds is None:
            return "anonymous"
        if not header.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), self._creds[0].encode())
        # only called when credentials are set
        ok_pw = hmac.compare_digest(pw.encode(), self._creds[1].encode())  # type: ignore[union-attr]
        return user if ok_user and ok_pw else None

    @staticmethod
    def _unauthorized(start_response: StartResponse) -> list[bytes]:
        return _reply(start_response, "401 Unauthorized", b"push requires valid credentials\n",
                      extra=[("WWW-Authenticate", 'Basic realm="hangar"')])

    # ------------------------------------------------------------- dispatch
    def screen(self) -> guard.Screen:
        """What :mod:`hangar.remote.guard` checks from a request's head, before its body."""
        return guard.Screen(is_push, lambda header: self.user_for(header) is not None, _body_limit,
                            lambda path: not path.startswith(protocol.PREFIX))

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if "\x00" in path or "\x00" in environ.get("QUERY_STRING", ""):
                return _reply(start_response, "400 Bad Request", b"a NUL byte in the request path\n")
            if path.startswith(protocol.PREFIX):
                return self._data(path, method, environ, start_response)
            user = self._user(environ)
            if _is_receive_pack(environ):
                if user is None:
                    return self._unauthorized(start_response)
                if method == "POST":  # moves refs: gc must not run meanwhile (see TRANSFER_GRACE)
                    self._transfers.enter()
                    try:
                        out = self.git_app(environ, start_response, True, user)
                    except BaseException:
                        self._transfers.exit()
                        raise
                    return _Holding(out, self._transfers.exit)
            return self.git_app(environ, start_response, user is not None, user or "")
        except RequestTooLargeError as exc:
            msg = f"request body of {exc} bytes is too large\n"
            return _reply(start_response, "413 Payload Too Large", msg.encode())
        except protocol.ProtocolError as exc:
            return _reply(start_response, "400 Bad Request", f"{exc}\n".encode())

    def _data(self, path: str, method: str, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if path == protocol.PING:
            return _json(start_response, "200 OK", {"hangar": __version__, "push_auth": self._creds is not None,
                                                    "git_backend": self.git_backend,
                                                    "capabilities": list(protocol.CAPABILITIES)})
        if path.startswith(protocol.PACK) and method == "GET":
            return self._pack(path[len(protocol.PACK):], environ, start_response)
        if method != "POST":
            return _reply(start_response, "405 Method Not Allowed", b"use POST\n", extra=[("Allow", "POST")])
        if path == protocol.AUTH:
            if self._user(environ) is None:
                return self._unauthorized(start_response)
            return _reply(start_response, "204 No Content")
        if path == protocol.HAVE:
            digests = protocol.split_digests(_read_body(environ, protocol.MAX_DIGESTS_PER_REQUEST * 32))
            have = bytes(loc is not None for loc in self._locate(digests))  # one byte per digest asked
            return _reply(start_response, "200 OK", have, "application/octet-stream")
        if path == protocol.RANGES:
            return self._ranges(environ, start_response)
        if path == protocol.DOWNLOAD:
            return self._download(environ, start_response)
        if path in (protocol.UPLOAD, protocol.UPLOAD_RUNS):
            if self._user(environ) is None:
                return self._unauthorized(start_response)
            return self._upload(environ, start_response, runs=path == protocol.UPLOAD_RUNS)
        return _reply(start_response, "404 Not Found", f"no endpoint {path}\n".encode())

    def _locate(self, digests: list[bytes]) -> list:
        # the index is rebuilt in place on refresh: one request thread at a time
        with self._read_lock:
            self._reader.refresh()
            return self._reader.locations(digests)

    def _download(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        # each sample once: a request repeating one digest 2**20 times asked for a 1 TiB answer
        digests = list(dict.fromkeys(protocol.split_digests(
            _read_body(environ, protocol.MAX_DIGESTS_PER_REQUEST * protocol.DIGEST_LEN))))
        store = self._reader
        locs = self._locate(digests)
        if None in locs:
            lacking = [d.hex() for d, loc in zip(digests, locs) if loc is None]
            msg = f"{len(lacking)} requested samples are not stored here, e.g. digest {lacking[0]}\n"
            return _reply(start_response, "404 Not Found", msg.encode())
        total = sum(protocol.DOWNLOAD_HEADER_SIZE + loc.length for loc in locs)
        if total > protocol.MAX_DOWNLOAD_BYTES and len(digests) > 1:
            msg = (f"the {len(digests)} requested samples take {total} bytes; one answer carries at most "
                   f"{protocol.MAX_DOWNLOAD_BYTES} (ask for fewer samples per request)\n")
            return _reply(start_response, "413 Payload Too Large", msg.encode())
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])
        return _send(environ, self._stream(store, digests, locs), total)

    def _ranges(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """``protocol.RANGES``: the samples asked for as runs, planned and checked on columns.

        No ``Location`` per sample: located as arrays (``locate_columns``), sorted into storage
        order and cut into runs with numpy, each run's table built from column slices and its
        stored checksums compared in one call (``check_spans``); a run whose samples lie back
        to back is sent as the bytes read. Measured on 60,000 x (28, 28) (server side, per full
        request): ~0.35 s through Locations and per-sample checks, ~0.03 s here.
        """
        # each sample once: a request repeating one digest 2**20 times asked for a 1 TiB answer
        digests = list(dict.fromkeys(protocol.split_digests(
            _read_body(environ, protocol.MAX_DIGESTS_PER_REQUEST * protocol.DIGEST_LEN))))
        want = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, protocol.DIGEST_LEN)
        with self._read_lock:  # the index is rebuilt in place on refresh: one request thread at a time
            self._reader.refresh()
            packs, pack_col, offsets, lengths, rawlens, codec_col, checks = self._reader.locate_columns(want)
        lacking = np.flatnonzero(pack_col < 0)
        if len(lacking):
            msg = (f"{len(lacking)} requested samples are not stored here, e.g. digest "
                   f"{digests[int(lacking[0])].hex()}\n")
            return _reply(start_response, "404 Not Found", msg.encode())
        order = np.lexsort((offsets, pack_col))
        cols = _Columns(packs, pack_col[order], offsets[order].astype(np.int64), lengths[order].astype(np.int64),
                        rawlens[order], codec_col[order], checks[order], want[order])
        plan = plan_spans(cols.pack_col, cols.offsets, cols.lengths)
        total = len(plan) * protocol.RUN_HEADER_SIZE + protocol.RUN_ENTRY.itemsize * len(digests)
        total += int(cols.lengths.sum())
        if total > protocol.MAX_DOWNLOAD_BYTES and len(digests) > 1:
            msg = (f"the {len(digests)} requested samples take {total} bytes; one answer carries at most "
                   f"{protocol.MAX_DOWNLOAD_BYTES} (ask for fewer samples per request)\n")
            return _reply(start_response, "413 Payload Too Large", msg.encode())
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])
        return _send(environ, _stream_spans(self._reader, cols, plan), total)

    def _pack(self, pack: str, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """Every sample of one pack, back to back in storage order (see ``protocol.PACK``)."""
        if not _PACK_ID.match(pack):
            return _reply(start_response, "400 Bad Request", f"{pack!r} is not a pack id\n".encode())
        storage = self._reader.storage
        try:
            recs = parse_index(storage.read_index(pack), pack, storage.pack_size(pack))
        except FileNotFoundError:
            return _reply(start_response, "404 Not Found", f"no pack {pack}\n".encode())
        recs = np.sort(recs, order="offset")
        cols = _Columns([pack], np.zeros(len(recs), dtype=np.int64), recs["offset"].astype(np.int64),
                        recs["length"].astype(np.int64), recs["rawlen"], recs["codec"], recs["check"],
                        recs["digest"])
        total = int(cols.lengths.sum())
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])
        plan = plan_spans(cols.pack_col, cols.offsets, cols.lengths)
        return _send(environ, _stream_spans(self._reader, cols, plan, framed=False), total)

    @staticmethod
    def _stream(store: TensorStore, digests: list[bytes], locs: list) -> Iterator[bytes]:
        # Read in storage order, neighbours coalesced into one read: a pack is read
        # sequentially in blocks instead of one small read per sample. Every piece is at
        # most _RUN bytes (a larger sample is read in _RUN pieces), so an answer the client
        # is slow to take holds one piece in memory, whatever the sample sizes.
        readinto = store.storage.readinto
        header = protocol.download_header
        for run in _plan_runs(locs):
            first = locs[run[0]]
            if first.length > _RUN:  # a run of its own, read and sent in _RUN pieces
                digest = digests[run[0]]
                yield header(digest, first.codec, first.rawlen, first.length)
                check = StoredCheck()
                for off in range(0, first.length, _RUN):
                    piece = bytearray(min(_RUN, first.length - off))
                    readinto(first.pack, first.offset + off, memoryview(piece))
                    check.update(piece)
                    if off + _RUN >= first.length and first.check and check.value() != first.check:
                        # damaged bytes are never served: the answer breaks off short, the client fails
                        raise damaged_sample(digest, first.pack, first.offset)
                    yield bytes(piece)
                continue
            last = locs[run[-1]]
            block = memoryview(bytearray(last.offset + last.length - first.offset))
            readinto(first.pack, first.offset, block)
            parts: list = []
            for k in run:
                loc = locs[k]
                start = loc.offset - first.offset
                stored = block[start:start + loc.length]
                check_stored(loc, stored, digests[k])  # damaged bytes are never served
                parts += [header(digests[k], loc.codec, loc.rawlen, loc.length), stored]
            yield b"".join(parts)

    def _upload(self, environ: dict, start_response: StartResponse, runs: bool = False) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > protocol.MAX_UPLOAD_BYTES:
            raise RequestTooLargeError(int(length))
        # records are checked against the bytes this request really carries
        limit = int(length) if length.isdigit() else protocol.MAX_UPLOAD_BYTES
        reader: protocol.RecordReader | protocol.RunReader
        if runs:
            reader = protocol.RunReader(environ["wsgi.input"], limit=limit)
        else:
            reader = protocol.RecordReader(environ["wsgi.input"], limit=limit)
        self.remove_stale_partials()
        self._transfers.enter()
        try:
            return self._store_upload(reader, start_response)
        finally:
            self._transfers.exit()

    def _store_upload(self, reader: protocol.RecordReader | protocol.RunReader,
                      start_response: StartResponse) -> Iterable[bytes]:
        stored = present = 0
        with self._write_lock:
            store = self._writer
            store.refresh()
            try:
                if isinstance(reader, protocol.RunReader):
                    for run in reader.uploads():  # each run verified whole before any of it is written
                        new = store.put_stored_many(run.samples(), run.dtype, run.shape)
                        stored += new
                        present += len(run.table) - new
                for s in reader.uploads() if isinstance(reader, protocol.RecordReader) else ():
                    if reader.bytes_read > protocol.MAX_UPLOAD_BYTES:
                        raise RequestTooLargeError(reader.bytes_read)
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

    def remove_stale_partials(self, age: float = PARTIAL_AGE) -> int:
        """Remove ``*.partial`` pack files of interrupted writes; return how many went.

        A file goes when the process that wrote it is gone (a pack id starts with its
        writer's pid, in hex) or when nobody touched it for ``age`` seconds. Runs at
        start-up, before each upload and every ``age / 4`` seconds: a server killed
        mid-upload leaves one, and before this nothing removed it while a server ran.
        """
        packs = paths.packs_dir(paths.data_dir(self.git_dir))
        cutoff = time.time() - age
        removed = 0
        with self._write_lock:  # our own writer's file is never older than one upload
            try:
                names = os.listdir(packs)
            except FileNotFoundError:
                return 0
            for n in names:
                p = os.path.join(packs, n)
                if not n.endswith(".partial"):
                    continue
                try:
                    st = os.lstat(p)
                    if not os.path.isdir(p) and (st.st_mtime < cutoff or _writer_gone(n)):
                        os.unlink(p)
                        removed += 1
                except FileNotFoundError:
                    pass
        if removed:
            log.info("removed %d stale .partial pack file(s) of interrupted writes", removed)
        return removed

    def _sweep(self) -> None:
        while not self._stop.wait(PARTIAL_AGE / 4):
            try:
                self.remove_stale_partials()
            except OSError as exc:  # a sweep that fails is retried next time
                log.warning("could not remove stale .partial files: %s", exc)

    def close(self) -> None:
        self._stop.set()
        close_git = getattr(self.git_app, "close", None)  # the dulwich backend holds open pack files
        if close_git is not None:
            close_git()
        self._transfers.close()
        self._reader.close()
        with self._write_lock:
            self._writer.discard()
            self._writer.close()


_PACK_ID = re.compile(r"^[0-9a-f]{1,64}$")


def _send(environ: dict, chunks: Iterator[bytes | bytearray | memoryview], total: int) -> Iterable[bytes]:
    """An answer of ``total`` bytes produced by ``chunks`` as the client takes them."""
    stream = _LazyFile(chunks, total)
    wrapper = environ.get("wsgi.file_wrapper")
    # waitress sends a file_wrapper from its main loop, reading it as the client takes
    # bytes: the task thread is free at once, and a client that stops reading holds
    # no thread (eight such clients blocked every worker when the thread wrote the answer)
    return wrapper(stream) if wrapper is not None else iter(stream)


def _plan_runs(locs: list) -> Iterator[list[int]]:
    """Indexes of ``locs`` grouped into runs: one read of a pack each, in storage order.

    Neighbours in one pack at most ``_GAP`` apart are read together, up to ``_RUN`` bytes per
    read; a sample larger than ``_RUN`` is a run of its own (read and sent in ``_RUN`` pieces).
    Only the samples asked for are sent: the gap bytes between them are read, never sent.
    """
    order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].offset))
    i = 0
    while i < len(order):
        first = locs[order[i]]
        j, end = i + 1, first.offset + first.length
        if first.length <= _RUN:
            while j < len(order):
                nxt = locs[order[j]]
                if nxt.pack != first.pack or nxt.offset < end or nxt.offset - end > _GAP \
                        or nxt.offset + nxt.length - first.offset > _RUN:
                    break
                end = nxt.offset + nxt.length
                j += 1
        yield order[i:j]
        i = j


class _Columns(NamedTuple):
    """Located samples as columns, in storage order (``TensorStore.locate_columns``)."""

    packs: list[str]
    pack_col: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    rawlens: np.ndarray
    codecs: np.ndarray
    checks: np.ndarray
    digests: np.ndarray  # (n, 32) uint8


def plan_spans(pack_col: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int]]:
    """``_plan_runs`` on columns already in storage order: runs as ``(start, stop)`` row ranges.

    Neighbours in one pack at most ``_GAP`` apart are read together, up to ``_RUN`` bytes per
    read; a sample larger than ``_RUN`` is a run of its own. Cut where the pack changes or a gap
    is too large with numpy, then each stretch greedily by ``_RUN``: the Python work is per run,
    not per sample.
    """
    n = len(offsets)
    if not n:
        return []
    ends = offsets + lengths
    cut = np.zeros(n, dtype=bool)
    cut[0] = True
    gap = offsets[1:] - ends[:-1]
    cut[1:] = (pack_col[1:] != pack_col[:-1]) | (gap < 0) | (gap > _GAP) | (lengths[1:] > _RUN) \
        | (lengths[:-1] > _RUN)
    bounds = np.flatnonzero(cut).tolist() + [n]
    plan: list[tuple[int, int]] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        while a < b:
            # the longest prefix of a..b whose read (first offset to last end) fits in _RUN
            k = int(np.searchsorted(ends[a:b] - offsets[a], _RUN, side="right"))
            stop = a + max(1, k)
            plan.append((a, stop))
            a = stop
    return plan


def _stream_spans(store: TensorStore, cols: _Columns, plan: list[tuple[int, int]],
                  framed: bool = True) -> Iterator[bytes | bytearray | memoryview]:
    """The stored bytes of the runs :func:`plan_spans` made, every sample checked against its
    checksum before it is sent (damaged bytes are never served: the answer breaks off short).

    ``framed``: each run starts with its header and table (``protocol.RANGES``); otherwise the
    samples' bytes only (``protocol.PACK``). A piece is at most ``_RUN`` bytes plus a table, so
    an answer the client is slow to take holds about one piece in memory.
    """
    readinto = store.storage.readinto
    for a, b in plan:
        nbytes = int(cols.lengths[a:b].sum())
        head = b""
        if framed:
            table = np.zeros(b - a, dtype=protocol.RUN_ENTRY)
            table["digest"] = cols.digests[a:b]
            table["length"], table["rawlen"], table["codec"] = cols.lengths[a:b], cols.rawlens[a:b], cols.codecs[a:b]
            head = protocol.run_header(b - a, nbytes) + table.tobytes()
        pack = cols.packs[int(cols.pack_col[a])]
        first, size = int(cols.offsets[a]), int(cols.lengths[a])
        if size > _RUN:  # a run of its own, read and sent in _RUN pieces
            if head:
                yield head
            check, want = StoredCheck(), int(cols.checks[a])
            for off in range(0, size, _RUN):
                piece = bytearray(min(_RUN, size - off))
                readinto(pack, first + off, memoryview(piece))
                check.update(piece)
                if off + _RUN >= size and want and check.value() != want:
                    # damaged bytes are never served: the answer breaks off short, the client fails
                    raise damaged_sample(bytes(cols.digests[a]), pack, first)
                yield piece
            continue
        rel = cols.offsets[a:b] - first
        lens = cols.lengths[a:b]
        # the run's head and the bytes read share one buffer: one piece to send, no copy (a head
        # sent as a piece of its own cost a small write per run)
        out = memoryview(bytearray(len(head) + int(rel[-1] + lens[-1])))
        out[:len(head)] = head
        block = out[len(head):]
        readinto(pack, first, block)
        bad = check_spans(block, rel, lens, cols.checks[a:b])
        if bad >= 0:  # damaged bytes are never served
            raise damaged_sample(bytes(cols.digests[a + bad]), pack, int(cols.offsets[a + bad]))
        if len(block) == nbytes:  # back to back: the bytes read are the answer
            yield out
        else:
            yield b"".join([head, *(block[o:o + n] for o, n in zip(rel.tolist(), lens.tolist()))])


def make_server(app: HangarServer, ip: str, port: int) -> guard.GuardedServer:
    """A waitress server for ``app`` with the limits of :mod:`hangar.remote.guard` (not started)."""
    return guard.make_server(app, app.screen(), ip, port, max_body=protocol.MAX_UPLOAD_BYTES + (1 << 20))


def read_password_file(path: str) -> str:
    """The push password stored in the first line of ``path`` (its line ending dropped).

    Raises
    ------
    ValueError
        If that line is empty (a server meant to be protected would accept an empty password).
    OSError
        If the file cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        line = f.readline().rstrip("\r\n")
    if not line:
        raise ServerConfigError(f"the password file {path!r} has an empty first line; write the password there")
    return line


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
        raise ServerConfigError("HTTPS needs both a certificate and its key (tls_cert and tls_key)")
    # both are set (checked above)
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
        server.request_stop()  # a flag: the main loop returns at its next turn

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
