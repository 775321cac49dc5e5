"""Client side of a hangar server: git history through libgit2, sample bytes over HTTP.

:class:`DataClient` speaks the data-sync endpoints of :mod:`hangar.remote.protocol` over one
keep-alive connection. The ``git_*`` functions move history with pygit2 over git smart HTTP
and keep remotes as real git remotes (``remote.<name>.url``) in ``.hangar/config``, so
``git --git-dir .hangar fetch <name>`` works too.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import re
import socket
import ssl
import time
from operator import itemgetter
from typing import Callable, Iterable, Iterator, Optional, TypeVar, cast

import numpy as np
import pygit2

from hangar.errors import (
    BranchNotFoundError,
    InvalidNameError,
    ProtocolError,
    PushAuthenticationError,
    PushRefusedError,
    RemoteAddressError,
    RemoteDataError,
    ServerResponseError,
    ServerUnreachableError,
)
from hangar.plumbing.gitrepo import GitRepo
from hangar.progress import progress_bar
from hangar.records import layout
from hangar.records.pointer import SamplePointer, decode_pointers
from hangar.remote import protocol
from hangar.store import TensorStore
from hangar.store.codecs import max_stored_length
from hangar.store.tensorstore import StoredSample, verify_range, verify_received

_ADDRESS = re.compile(r"^(?:(?P<scheme>https?)://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})/?$")
T = TypeVar("T")

_REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
#: most bytes of a ping / auth / error / upload answer (a hostile server could send gigabytes)
_MAX_SMALL_ANSWER = 1 << 20


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of an ``IP:PORT`` (or ``https://IP:PORT``) address; ``ValueError`` naming it otherwise."""
    m = _ADDRESS.match(address) if isinstance(address, str) else None
    if m is None or not 0 < int(m["port"]) < 65536:
        raise RemoteAddressError(f"remote address {address!r} is not of the form IP:PORT (e.g. '127.0.0.1:50051'), "
                                 "or https://IP:PORT for a server with TLS")
    return m["host"], int(m["port"])


def uses_tls(address: str) -> bool:
    """True for an ``https://`` address (the server runs with ``--tls-cert``)."""
    parse_address(address)
    return address.startswith("https://")


def address_url(address: str) -> str:
    host, port = parse_address(address)
    return f"{'https' if uses_tls(address) else 'http'}://{host}:{port}/"


def url_address(url: str) -> str:
    """The address of a git remote URL: ``IP:PORT``, or ``https://IP:PORT`` when it uses TLS."""
    host, port = parse_address(url)
    return f"https://{host}:{port}" if uses_tls(url) else f"{host}:{port}"


def validate_remote_name(name: str) -> None:
    if not isinstance(name, str) or not _REMOTE_NAME.match(name) or name.endswith((".lock", ".")) or ".." in name:
        raise InvalidNameError(f"remote name {name!r} is not valid; use letters, digits, '.', '_' and '-'")


# --------------------------------------------------------------- data client
class DataClient:
    """Data-sync requests to the hangar server at ``address`` over one keep-alive connection."""

    def __init__(self, address: str, timeout: float = 120.0) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.tls = uses_tls(address)
        self.timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None
        self._sock: Optional[socket.socket] = None

    def abort(self) -> None:
        """Shut the socket of the request in flight down (any thread): a read blocked on its
        answer in another thread returns at once (closing the file descriptor would not wake it)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "DataClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: BaseException) -> ServerUnreachableError:
        self.close()
        hint = ""
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = "; its TLS certificate is not trusted here: add its CA to the system store or set SSL_CERT_FILE"
        elif not self.tls and isinstance(exc, (http.client.BadStatusLine, ConnectionResetError)):
            # what a TLS port does to a plain HTTP request (RemoteDisconnected is both)
            hint = "; if the server runs with --tls-cert, use the address https://IP:PORT"
        return ServerUnreachableError(f"hangar server at {self.address} could not be reached or dropped the "
                                      f"connection ({type(exc).__name__}: {exc}){hint}")

    def _request(self, method: str, path: str, body: object = None, headers: Optional[dict] = None,
                 retry: bool = True) -> http.client.HTTPResponse:
        hdrs = {"Content-Type": "application/octet-stream", **(headers or {})}
        for attempt in (0, 1):
            if self._conn is None:
                if self.tls:  # the system's trust store (OpenSSL honours SSL_CERT_FILE), host name checked
                    self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                             blocksize=1 << 20, context=ssl.create_default_context())
                else:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                            blocksize=1 << 20)
            try:
                # bytes, or an iterable of bytes
                self._conn.request(method, path, body=body, headers=hdrs)  # type: ignore[arg-type]
                # kept for abort(): a response that closes the connection detaches it from _conn
                self._sock = self._conn.sock
                return self._conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # a kept-alive connection the server has closed: one fresh try when it is safe
                if attempt or not retry:
                    raise self._unreachable(exc) from exc
                self.close()
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from exc
        raise AssertionError("unreachable")

    def _read(self, resp: http.client.HTTPResponse, limit: int = _MAX_SMALL_ANSWER) -> bytes:
        """The body of a small answer, at most ``limit`` bytes (a server cannot make us buffer more)."""
        try:
            data = resp.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        if len(data) > limit:
            self.close()
            raise ServerResponseError(f"hangar server at {self.address} answered with more than {limit} bytes where "
                                      f"at most {limit} were expected")
        return data

    def _fail(self, resp: http.client.HTTPResponse, what: str) -> Exception:
        text = self._read(resp).decode("utf-8", "replace").strip()
        if resp.status == 401:
            return PushAuthenticationError(f"the hangar server at {self.address} refused the credentials for "
                                           f"{what}: give the username and password it was started with")
        if resp.status == 404 and what in ("download", "ranges"):
            return RemoteDataError(f"the hangar server at {self.address} lacks requested data: {text}")
        return ServerResponseError(
            f"{what} at hangar server {self.address} failed: {resp.status} {resp.reason}: {text}")

    def ping(self) -> dict:
        resp = self._request("GET", protocol.PING)
        if resp.status != 200:
            raise self._fail(resp, "ping")
        try:
            return json.loads(self._read(resp))
        except ValueError as exc:
            raise ServerResponseError(f"{self.address} answered ping but is not a hangar server") from exc

    @staticmethod
    def _auth_header(username: str, password: str) -> dict:
        if not username and not password:
            return {}
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def check_push_auth(self, username: str, password: str) -> None:
        """Raise ``PermissionError`` unless these credentials may push."""
        resp = self._request("POST", protocol.AUTH, b"", self._auth_header(username, password))
        if resp.status != 204:
            raise self._fail(resp, "push")
        self._read(resp)

    def have(self, digests: list[bytes]) -> list[bool]:
        """For each digest, whether the server stores its bytes."""
        out: list[bool] = []
        step = protocol.MAX_DIGESTS_PER_REQUEST
        for i in range(0, len(digests), step):
            resp = self._request("POST", protocol.HAVE, b"".join(digests[i:i + step]))
            if resp.status != 200:
                raise self._fail(resp, "have")
            out += [b == 1 for b in self._read(resp, len(digests[i:i + step]))]
        return out

    def download(self, digests: list[bytes],
                 rawlens: Optional[dict[bytes, int]] = None) -> Iterator[StoredSample]:
        """Stream the stored form of every digest (``RemoteDataError`` if the server lacks one).

        Samples arrive in the server's order; each names its digest. With ``rawlens`` (digest ->
        expected raw bytes) a record claiming more payload than its codec can produce from that
        size, or naming another digest, is refused before any buffer is allocated for it.
        """
        resp = self._request("POST", protocol.DOWNLOAD, b"".join(digests))
        if resp.status != 200:
            raise self._fail(resp, "download")
        reader = protocol.RecordReader(resp)

        def bound(digest: bytes, codec: int) -> int:
            # rawlens is set when sizes are asked
            return max_stored_length(codec, rawlens.get(digest, 0))  # type: ignore[union-attr]

        try:
            yield from reader.downloads(bound if rawlens is not None else None)
        except (OSError, http.client.HTTPException, protocol.ProtocolError) as exc:
            raise self._unreachable(exc) from exc

    def capabilities(self) -> frozenset[str]:
        """What the server speaks beside the per-sample endpoints (``protocol.CAPABILITIES``; none for an old one)."""
        try:
            info = self.ping()
            caps = info.get("capabilities", []) if isinstance(info, dict) else []
        except ConnectionError:  # a peer without ping (or one that fails it): per-sample endpoints only
            return frozenset()
        return frozenset(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else frozenset()

    def ranges(self, digests: list[bytes], expected: dict[bytes, int] | int) -> Iterator[protocol.Run]:
        """The stored bytes of ``digests`` as runs (``protocol.RANGES``), each checked as it arrives.

        ``expected`` maps each digest to its raw size (an int: every sample's). A run naming a digest not asked for (or
        one already received), claiming another raw size, or more stored bytes than its codec
        can produce from that size is refused before its payload buffer is allocated;
        ``RemoteDataError`` if the server lacks one, ``ConnectionError`` when the answer ends
        short or breaks the format.
        """
        resp = self._request("POST", protocol.RANGES, b"".join(digests))
        if resp.status != 200:
            raise self._fail(resp, "ranges")
        asked = AskedFor(digests, expected)
        reader = protocol.RunReader(resp)

        def budget(table) -> int:  # noqa: ANN001
            rawlen = asked.take(table)
            # max_stored_length, per codec: raw exactly its size, compressed at most a bound above it
            bound = np.where(table["codec"] == 0, rawlen, rawlen + (rawlen >> np.uint64(7)) + np.uint64(1024))
            return int(bound.sum())

        finished = False
        try:
            yield from reader.downloads(budget)
            finished = True
        except (OSError, http.client.HTTPException, protocol.ProtocolError) as exc:
            raise self._unreachable(exc) from exc
        finally:
            if not finished:  # the answer was not read to its end: the connection cannot be reused
                resp.close()  # an answer with "Connection: close" owns the socket, not the connection
                self.close()
        if asked.received < len(digests):
            self.close()
            raise ServerResponseError(f"hangar server at {self.address} sent {asked.received} of "
                                      f"{len(digests)} samples asked for")

    def upload_runs(self, chunks: list[bytes | memoryview], username: str, password: str) -> dict:
        """Send upload runs (``protocol.UPLOAD_RUNS``) in one request; the server verifies every digest."""
        headers = {"Content-Length": str(sum(map(len, chunks))), **self._auth_header(username, password)}
        resp = self._request("POST", protocol.UPLOAD_RUNS, iter(chunks), headers, retry=False)
        if resp.status != 200:
            if resp.status == 422:
                from hangar.errors import CorruptDataError

                raise CorruptDataError(self._read(resp).decode("utf-8", "replace").strip())
            raise self._fail(resp, "upload")
        return json.loads(self._read(resp))

    def upload(self, records: list[tuple[protocol.WireSample, int]], username: str, password: str) -> dict:
        """Send ``(sample, record size)`` pairs in one request; the server verifies every digest."""
        total = sum(size for _, size in records)

        def body() -> Iterator[bytes]:
            parts, size = [], 0
            for s, _ in records:
                parts += [protocol.upload_header(s), s.payload]
                size += len(s.payload)
                if size >= 1 << 20:
                    yield b"".join(parts)
                    parts, size = [], 0
            if parts:
                yield b"".join(parts)

        headers = {"Content-Length": str(total), **self._auth_header(username, password)}
        resp = self._request("POST", protocol.UPLOAD, body(), headers, retry=False)
        if resp.status != 200:
            if resp.status == 422:
                from hangar.errors import CorruptDataError

                raise CorruptDataError(self._read(resp).decode("utf-8", "replace").strip())
            raise self._fail(resp, "upload")
        return json.loads(self._read(resp))


# ---------------------------------------------------------------- git side
def _fail_git(exc: pygit2.GitError, address: str, what: str) -> Exception:
    msg = str(exc)
    low = msg.lower()
    if "401" in low or "authentication" in low or "credentials" in low:
        return PushAuthenticationError(f"{what}: the hangar server at {address} refused the credentials ({msg})")
    if "couldn't find remote ref" in low or "not found" in low and "ref" in low:
        return BranchNotFoundError(f"{what}: {msg}")
    if "certificate" in low:
        return ServerUnreachableError(f"{what} with the hangar server at {address} failed: its TLS certificate "
                                      f"is not trusted here ({msg}); add its CA to the system store or set "
                                      "SSL_CERT_FILE")
    return ServerUnreachableError(f"{what} with the hangar server at {address} failed: {msg}")


def remote_names(git: GitRepo) -> list[str]:
    # pygit2 types remote names Optional; listed remotes have one
    return list(git.repo.remotes.names())  # type: ignore[arg-type]


def remote_url(git: GitRepo, name: str) -> Optional[str]:
    try:
        return git.repo.remotes[name].url
    except (KeyError, ValueError):
        return None


def add_remote(git: GitRepo, name: str, address: str) -> None:
    git.repo.remotes.create(name, address_url(address))


def delete_remote(git: GitRepo, name: str) -> None:
    """Remove the remote and its remote-tracking branches."""
    git.repo.remotes.delete(name)


class _Callbacks(pygit2.RemoteCallbacks):
    """libgit2 callbacks for one git transfer with the server at ``address``."""

    def __init__(self, address: str, username: str = "", password: str = "",
                 advance: Optional[Callable[[int, int], None]] = None) -> None:
        super().__init__()
        if uses_tls(address):
            # libgit2 has its own OpenSSL, set up once at import: point it at the CAs Python's
            # ssl trusts now (SSL_CERT_FILE / SSL_CERT_DIR honoured) so git and data requests agree
            paths = ssl.get_default_verify_paths()
            pygit2.settings.set_ssl_cert_locations(paths.cafile, paths.capath)
        self._creds = (username, password)
        self._tries = 0
        self._advance = advance
        self._seen = 0
        self.rejected: dict[str, str] = {}
        self.server_messages: list[str] = []  # what the server's hooks wrote (git's "remote:" lines)

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        if self._advance is not None:
            self._advance(stats.indexed_objects - self._seen, stats.total_objects)
            self._seen = stats.indexed_objects

    def credentials(self, url: str, username_from_url: Optional[str], allowed_types: int) -> pygit2.UserPass:
        self._tries += 1
        if self._tries > 1 or not (allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT):
            raise PushAuthenticationError(f"the hangar server at {url} refused the credentials for push")
        return pygit2.UserPass(*self._creds)

    def push_update_reference(self, refname: str, message: Optional[str]) -> None:
        if message:
            self.rejected[refname] = message

    def sideband_progress(self, string: str) -> None:
        self.server_messages.append(string)


def list_remote_refs(git: GitRepo, name: str, address: str) -> dict[str, str]:
    """Every ref the server advertises (full name -> id)."""
    try:
        heads = git.repo.remotes[name].list_heads(callbacks=_Callbacks(address))
    except pygit2.GitError as exc:
        raise _fail_git(exc, address, "listing refs") from exc
    return {h.name: str(h.oid) for h in heads if h.name}


def list_remote_heads(git: GitRepo, name: str, address: str) -> dict[str, str]:
    """Branch name -> head commit on the server."""
    try:
        heads = git.repo.remotes[name].list_heads(callbacks=_Callbacks(address))
    except pygit2.GitError as exc:
        raise _fail_git(exc, address, "listing branches") from exc
    # pygit2 types a ref name Optional; listed refs have one
    return {h.name[len("refs/heads/"):]: str(h.oid) for h in heads if h.name.startswith("refs/heads/")}  # type: ignore[index, union-attr]


def fetch_with_git(git: GitRepo, address: str, refspecs: list[str]) -> bool:
    """Fetch ``refspecs`` from the hangar server at ``address`` (plain HTTP) with the ``git``
    binary; False when the address uses TLS, there is no ``git``, or it failed (the caller then
    fetches through libgit2, which reports the error).

    Why: pygit2 calls back into Python for every object libgit2 indexes (its transfer-progress
    callback cannot be turned off), and libgit2 indexes the pack on one thread. The history of
    60,000 samples is ~64,400 objects: ``git fetch`` took 1.0-1.2 s against 1.9-2.6 s through
    pygit2 here (load 8 on 2 cores, scripts/bench_remotes.py's MNIST-like repository).

    Nothing the repository's config or hooks name is run, only the HTTP transport, no auto gc,
    objects and refs fsynced: :meth:`GitRepo.fetch_with_git_binary`.
    """
    if uses_tls(address):  # libgit2 trusts the CAs Python's ssl does; git's curl may not
        return False
    return git.fetch_with_git_binary(address_url(address), refspecs, "http", ["--no-tags"])


def fetch_branches(git: GitRepo, name: str, address: str, branches: Optional[list[str]] = None) -> None:
    """Fetch the records (git history) of ``branches`` (all when None) into ``refs/remotes/<name>/``."""
    if branches is None:
        specs = [f"+refs/heads/*:refs/remotes/{name}/*"]
    else:
        specs = [f"+refs/heads/{b}:refs/remotes/{name}/{b}" for b in branches]
    with progress_bar("fetching records", 1) as advance:
        if fetch_with_git(git, address, specs):
            advance(1, 1)
            return

        def step(n: int, total: int) -> None:
            advance(n, total)

        try:
            git.repo.remotes[name].fetch(specs, callbacks=_Callbacks(address, advance=step),
                                         prune=pygit2.enums.FetchPrune.NO_PRUNE)
        except pygit2.GitError as exc:
            raise _fail_git(exc, address, "fetch") from exc


def push_branch(git: GitRepo, name: str, address: str, branch: str, username: str, password: str) -> Optional[str]:
    """Fast-forward (or create) ``branch`` on the server; the server's reason when it refuses."""
    cb = _Callbacks(address, username, password)
    try:
        git.repo.remotes[name].push([f"refs/heads/{branch}:refs/heads/{branch}"], callbacks=cb)
    except pygit2.GitError as exc:
        if any(s in str(exc) for s in ("not present locally", "fast-forward", "fastforward")):  # libgit2 refused
            return str(exc)
        raise _fail_git(exc, address, "push") from exc
    refused = next(iter(cb.rejected.values()), None)
    hooked = refused is not None and "hook declined" in refused  # our pre-receive hook (git http-backend)
    if refused and (hooked or refused.startswith("hangar server: ")):  # or dulwich's: final, do not retry
        said = "".join(cb.server_messages).strip() if hooked else refused
        reason = said.partition("hangar server: refused: ")[2].strip() or said or refused
        raise PushRefusedError(f"the hangar server at {address} refused to update branch {branch!r}: {reason}")
    return refused


def new_commits(git: GitRepo, head: str, exclude: Iterable[str]) -> list[str]:
    """Commits reachable from ``head`` but from none of ``exclude`` (those must exist locally)."""
    walker = git.repo.walk(head, pygit2.enums.SortMode.TOPOLOGICAL)
    for h in exclude:
        walker.hide(h)
    return [str(c.id) for c in walker]


def _sample_trees(repo: pygit2.Repository, commit: str, arrayset_names: Optional[set[str]]) -> list:
    root = repo[commit].tree
    try:
        asets = root[layout.ARRAYSETS]
    except KeyError:
        return []
    out = []
    for aset in asets:  # type: ignore[union-attr]  # the arraysets entry is a tree
        if arrayset_names is not None and aset.name not in arrayset_names:
            continue
        try:
            out.append(aset[layout.SAMPLES])  # type: ignore[index]  # an arrayset entry is a tree
        except KeyError:
            pass
    return out


def commit_pointers(git: GitRepo, commits: Iterable[str], arrayset_names: Optional[set[str]] = None,
                    known: Iterable[str] = ()) -> dict[bytes, SamplePointer]:
    """Pointers (digest -> pointer) of every sample in ``commits``, each subtree read once.

    Sample subtrees that also appear in the ``known`` commits (e.g. those a server already
    has) are skipped whole, so the work follows what changed, not the repository's size.
    """
    repo = git.repo
    seen: set = set()
    out: dict[bytes, SamplePointer] = {}

    tree_type = pygit2.enums.ObjectType.TREE

    def mark(tree: pygit2.Tree) -> None:
        # record the ids of a known commit's sample trees without reading any pointer blob
        for e in tree:
            if e.type == tree_type and e.id not in seen:
                seen.add(e.id)
                mark(e)  # type: ignore[arg-type]  # e.type is TREE

    for c in known:
        for samples in _sample_trees(repo, c, arrayset_names):
            if samples.id not in seen:
                seen.add(samples.id)
                mark(samples)

    def walk(tree: pygit2.Tree) -> None:
        # fan-out trees hold only trees, leaf trees only pointer blobs; a subtree seen in
        # another commit (or arrayset) is skipped whole
        entries = list(tree)
        if entries and entries[0].type == tree_type:
            for e in entries:
                if e.id not in seen:
                    seen.add(e.id)
                    walk(e)  # type: ignore[arg-type]  # entries of a fan-out tree are trees
        else:
            ids.extend(e.id.raw for e in entries)  # leaf entries are pointer blobs

    ids: list[bytes] = []
    for c in commits:
        for samples in _sample_trees(repo, c, arrayset_names):
            if samples.id not in seen:
                seen.add(samples.id)
                walk(samples)
                # read as columns from the packs, each verified against its id (60,000 pointer
                # blobs: ~0.08-0.09 s against ~0.19 s of first reads through libgit2); an arrayset's
                # pointers share one dtype and shape (as a rule): decoded as one array, ~2 us a
                # sample less than one by one (60,000: 0.12 s -> 0.02 s)
                for p in decode_pointers(git.read_blobs(ids)):
                    out.setdefault(p.digest, p)
                ids.clear()
    return out


class AskedFor:
    """The distinct digests one ``ranges`` request asked for, as columns: checks each run's table
    (every digest one asked for, none received before or twice, each raw size the expected one)
    with numpy instead of a set and a dict lookup per sample.

    The digests are searched by their first 8 bytes as integers and each candidate compared whole.
    Should two digests asked for share those 8 bytes (a crafted record can), the check falls back
    to a set of the whole digests.
    """

    def __init__(self, digests: list[bytes], expected: dict[bytes, int] | int) -> None:
        self.received = 0
        n = len(digests)
        rows = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, protocol.DIGEST_LEN)
        keys = rows[:, :8].copy().view(">u8").ravel()
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._rows = rows[order]
        if isinstance(expected, int):
            self._raw: np.ndarray | int = expected
        else:
            self._raw = np.fromiter(map(expected.__getitem__, digests), dtype=np.uint64, count=n)[order]
        self._got = np.zeros(n, dtype=bool)
        self._pending: Optional[set[bytes]] = None
        self._expected = expected
        if n > 1 and bool((self._keys[1:] == self._keys[:-1]).any()):
            self._pending = set(digests)

    def take(self, table: np.ndarray) -> np.ndarray:
        """Mark the samples of a run's ``table`` received; their expected raw sizes (uint64), or
        ``ProtocolError`` naming the first that was not asked for, was sent before, or claims
        another raw size."""
        named = table["digest"]
        k = len(named)
        if self._pending is not None:
            want = self._take_exact(named)
        else:
            keys = np.ascontiguousarray(named[:, :8]).view(">u8").ravel()
            pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            bad = ~(self._rows[pos] == named).all(axis=1) | self._got[pos]
            if not bool(bad.any()):
                self._got[pos] = True
                if int(np.count_nonzero(self._got)) != self.received + k:  # a digest named twice in the run
                    order = np.argsort(pos, kind="stable")
                    bad[order[1:]] = pos[order[1:]] == pos[order[:-1]]  # its later rows
            if bool(bad.any()):
                i = int(np.flatnonzero(bad)[0])
                raise ProtocolError(f"sample {bytes(named[i]).hex()[:16]}... was not asked for (or sent twice)")
            want = np.full(k, self._raw, dtype=np.uint64) if isinstance(self._raw, int) else self._raw[pos]
        self.received += k
        rawlen = table["rawlen"]
        if bool((rawlen != want).any()):
            i = int(np.flatnonzero(rawlen != want)[0])
            raise ProtocolError(f"sample {bytes(named[i]).hex()[:16]}... claims {int(rawlen[i])} raw bytes; "
                                f"its record says {int(want[i])}")
        return want

    def _take_exact(self, named: np.ndarray) -> np.ndarray:
        pending = cast(set[bytes], self._pending)
        blob = named.tobytes()
        digests = [blob[i:i + protocol.DIGEST_LEN] for i in range(0, len(blob), protocol.DIGEST_LEN)]
        seen: set[bytes] = set()
        for d in digests:
            if d not in pending or d in seen:
                raise ProtocolError(f"sample {d.hex()[:16]}... was not asked for (or sent twice)")
            seen.add(d)
        pending.difference_update(digests)
        if isinstance(self._expected, int):
            return np.full(len(digests), self._expected, dtype=np.uint64)
        return np.fromiter(map(self._expected.__getitem__, digests), dtype=np.uint64, count=len(digests))


# --------------------------------------------------------------- transfers
#: most raw bytes asked for in one download request (each batch is made durable after it)
DOWNLOAD_BATCH_BYTES = 256 << 20
#: most stored bytes sent in one upload request (the server makes each one durable)
UPLOAD_BATCH_BYTES = 128 << 20


def _batches(items: list[T], size_of: Callable[[T], int], limit: int,
             sizes: Optional[list[int]] = None) -> Iterator[list[T]]:
    """``items`` cut into requests of at most ``limit`` bytes (``sizes``: each item's, when known)."""
    batch: list[T] = []
    size = 0
    for it, n in zip(items, sizes if sizes is not None else map(size_of, items)):
        if batch and (size + n > limit or len(batch) >= protocol.MAX_DIGESTS_PER_REQUEST):
            yield batch
            batch, size = [], 0
        batch.append(it)
        size += n
    if batch:
        yield batch


def missing_pointers(git: GitRepo, store: TensorStore, commits: Iterable[str], arrayset_names: Optional[set[str]],
                     max_num_bytes: Optional[int]) -> list[SamplePointer]:
    """Pointers of the samples of ``commits`` whose bytes ``store`` lacks (durably), in record
    order, cut where their raw bytes would pass ``max_num_bytes`` (``fetch_data``'s selection)."""
    pointers = commit_pointers(git, commits, arrayset_names)
    store.refresh()
    digests = list(pointers)
    # unflushed bytes of a writer may still be discarded (reset): only durable ones count
    wanted = [pointers[d] for d, loc in zip(digests, store.locations(digests, durable_only=True)) if loc is None]
    if max_num_bytes is None:
        return wanted
    budget, chosen = max_num_bytes, []
    for p in wanted:
        n = raw_nbytes(p)
        if n > budget:
            break
        budget -= n
        chosen.append(p)
    return chosen


def raw_nbytes(p: SamplePointer) -> int:
    return _raw_nbytes(p.dtype, p.shape)


def raw_sizes(pointers: list[SamplePointer]) -> list[int]:
    """:func:`raw_nbytes` of each pointer (mapped in C over the cached size of each dtype and shape)."""
    return list(map(_raw_nbytes, map(itemgetter(1), pointers), map(itemgetter(2), pointers)))


@functools.lru_cache(maxsize=1024)
def _raw_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    # cached: fetch_data asks once per sample (60,000 np.dtype() calls took ~0.1 s)
    n = np.dtype(dtype).itemsize
    for d in shape:
        n *= d
    return n


def download_into(store: TensorStore, client: DataClient, pointers: list[SamplePointer]) -> int:
    """Download, verify and store the samples of ``pointers``; return the bytes received.

    From a server that speaks ``ranges`` the samples travel as pack ranges over
    :data:`STREAMS` connections at once, large samples over :data:`STREAMS_LARGE`
    (:func:`plan_ranges`, :func:`download_ranges`); from an older one sample by
    sample over one.
    """
    store.storage.remove_dead_partials()  # what an earlier, killed fetch left behind
    if "ranges" in client.capabilities():
        return download_ranges(store, client, pointers)
    total = sum(raw_nbytes(p) for p in pointers)
    received = 0
    with progress_bar("fetching data", total, unit_bytes=True) as advance:
        for batch in _batches(pointers, raw_nbytes, DOWNLOAD_BATCH_BYTES):
            wanted = {p.digest: p for p in batch}
            try:
                put = store.put_stored
                for s in client.download(list(wanted), {d: raw_nbytes(p) for d, p in wanted.items()}):
                    p = wanted.pop(s.digest, None)
                    if p is None:
                        raise ServerResponseError(f"hangar server at {client.address} sent sample "
                                                  f"{s.digest.hex()[:16]}... which was not asked for (or twice)")
                    put(s, p.dtype, p.shape)
                    received += len(s.payload)
                    advance(s.rawlen)
                if wanted:
                    raise ServerResponseError(f"hangar server at {client.address} sent {len(batch) - len(wanted)} "
                                              f"of {len(batch)} samples")
                store.flush()
            except BaseException:
                store.discard()
                raise
    return received


#: most received, verified bytes waiting for fetch_data's writer thread (a larger run waits alone)
WRITE_AHEAD_BYTES = 16 << 20
#: connections one fetch_data uses at once (measured with scripts/bench_remotes.py: see
#: docs/remotes.md; one stream leaves the network idle while a run is hashed and written)
STREAMS = 3
#: most raw bytes asked for in one ranges request: small enough that every stream has work
RANGES_BATCH_BYTES = 32 << 20
#: samples of at least this many raw bytes (on average) travel over ``STREAMS_LARGE``
#: connections in requests of up to :data:`DOWNLOAD_BATCH_BYTES`. The server coalesces reads
#: only among the samples of one request, and a request's samples follow record order, not
#: storage order: 32 MiB requests of 2,000 x (224,224,3) cut 2,000 samples into ~1,300 runs
#: (~550 in 256 MiB ones), and each run costs a read, a table and a verify call. Measured with
#: scripts/bench_remotes.py on 2 cores: 3 streams 0.46x the raw GET ceiling, 1 stream with
#: 32 MiB requests 0.65x, 1 stream with 256 MiB requests ~0.8x (level with the per-sample
#: protocol). Small samples still gain from 3 streams (60,000 x (28,28): 1.1x over one).
LARGE_SAMPLE_BYTES = 64 << 10
STREAMS_LARGE = 1


def plan_ranges(pointers: list[SamplePointer], streams: Optional[int] = None) -> tuple[int, list[list[SamplePointer]]]:
    """How :func:`download_ranges` splits ``pointers``: ``(connections, requests)``.

    ``streams`` forces the number of connections; by default it is :data:`STREAMS`, or
    :data:`STREAMS_LARGE` with requests of up to :data:`DOWNLOAD_BATCH_BYTES` when the samples
    average at least :data:`LARGE_SAMPLE_BYTES` raw bytes.
    """
    sizes = raw_sizes(pointers)
    total = sum(sizes)
    large = bool(pointers) and total >= LARGE_SAMPLE_BYTES * len(pointers)
    if streams is None:
        streams = STREAMS_LARGE if large else STREAMS
    streams = max(1, streams)
    per_request = DOWNLOAD_BATCH_BYTES if large and streams == 1 else RANGES_BATCH_BYTES
    # every stream gets a few requests' work (one stream: no need to split); a request is at
    # most a flush's worth of bytes
    share = per_request if streams == 1 else total // (2 * streams)
    limit = min(DOWNLOAD_BATCH_BYTES, max(1 << 20, min(per_request, share)))
    batches = list(_batches(pointers, raw_nbytes, limit, sizes))
    return min(streams, len(batches)) or 1, batches


#: most payload bytes one stream receives ahead of its verification (:func:`read_ahead`)
READ_AHEAD_BYTES = 8 << 20


def read_ahead(runs: Iterator[protocol.Run], client: DataClient,
               limit: int = READ_AHEAD_BYTES) -> Iterator[protocol.Run]:
    """The runs of ``runs`` (one ``ranges`` answer of ``client``), received on a helper thread at
    most ``limit`` payload bytes (or one larger run) ahead of the caller, who verifies them.

    Why: one stream (large samples travel over :data:`STREAMS_LARGE` = 1 connection) otherwise
    left the socket idle while a run was hashed: receive and hash took turns. Errors of the
    answer (a refused table, a short answer) are raised here, in order, after the runs before
    them. If the caller stops early, the answer's socket is shut down (a read blocked on a
    stalled server returns) and the helper thread is joined before this generator ends.
    """
    import threading
    from collections import deque

    queue: deque[protocol.Run] = deque()
    cond = threading.Condition()
    state: dict = {"bytes": 0, "done": False, "error": None, "cancel": False}

    def receive() -> None:
        try:
            for run in runs:
                n = len(run.payload)
                with cond:
                    while state["bytes"] and state["bytes"] + n > limit and not state["cancel"]:
                        cond.wait()
                    if state["cancel"]:
                        return
                    queue.append(run)
                    state["bytes"] += n
                    cond.notify_all()
        except BaseException as exc:  # handed to the caller, in order
            state["error"] = exc
        finally:
            runs.close()  # type: ignore[attr-defined]  # a generator: its cleanup runs on this thread
            with cond:
                state["done"] = True
                cond.notify_all()

    helper = threading.Thread(target=receive, name="hangar-fetch-receive", daemon=True)
    helper.start()
    try:
        while True:
            with cond:
                while not queue and not state["done"]:
                    cond.wait()
                if not queue:
                    break
                run = queue.popleft()
                state["bytes"] -= len(run.payload)
                cond.notify_all()
            yield run
        if state["error"] is not None:
            raise state["error"]
    finally:
        with cond:
            state["cancel"] = True
            cond.notify_all()
        if not state["done"]:
            client.abort()  # wakes a read of a stalled answer
        helper.join()
        queue.clear()


def download_ranges(store: TensorStore, client: DataClient, pointers: list[SamplePointer],
                    streams: Optional[int] = None) -> int:
    """:func:`download_into` through ``protocol.RANGES``: runs of samples over parallel connections.

    Each run is verified whole (every sample re-hashed against its digest, decoded only into a
    buffer of its pointer's size) before it is appended; samples become visible when the store
    is flushed (every :data:`DOWNLOAD_BATCH_BYTES` and at the end), a pack index-last. The
    streams receive and verify; one writer thread appends and flushes, at most
    :data:`WRITE_AHEAD_BYTES` behind. One failing stream (or the writer) stops the others; what
    was not flushed is discarded.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    streams, batches = plan_ranges(pointers, streams)
    total = sum(raw_sizes(pointers))
    lock = threading.Lock()
    stop = threading.Event()
    state = {"received": 0, "unflushed": 0, "queued": 0}
    room = threading.Condition()
    clients: list[DataClient] = []
    local = threading.local()

    def conn() -> DataClient:
        dc = getattr(local, "dc", None)
        if dc is None:
            dc = local.dc = DataClient(client.address, client.timeout)
            with lock:
                clients.append(dc)
        return dc

    with progress_bar("fetching data", total, unit_bytes=True) as advance:
        def fetch(batch: list[SamplePointer]) -> None:
            if stop.is_set():
                return
            # built by C loops: a few us a sample less than comprehensions (60,000 small samples)
            wanted = dict(zip(map(itemgetter(0), batch), batch))
            batch_kinds = set(zip(map(itemgetter(1), batch), map(itemgetter(2), batch)))
            expected: dict[bytes, int] | int
            if len(batch_kinds) == 1:
                expected = raw_nbytes(batch[0])
            else:
                expected = dict(zip(wanted, raw_sizes(list(wanted.values()))))
            dc = conn()
            runs = dc.ranges(list(wanted), expected)
            # one stream: receiving overlaps with verifying through a helper thread (several
            # streams overlap with each other already)
            for run in (read_ahead(runs, dc) if streams == 1 else runs):
                if len(batch_kinds) == 1:  # the usual case: the run verified as one block, vectorised
                    t = run.table
                    blob = t["digest"].tobytes()
                    digests = [blob[i:i + protocol.DIGEST_LEN] for i in range(0, len(blob), protocol.DIGEST_LEN)]
                    verified = [verify_range(digests, t["codec"], t["rawlen"], t["length"], run.payload,
                                             *next(iter(batch_kinds)))]
                else:
                    digests, codec_ids, rawlens, lengths, payloads = run.parts()
                    groups: dict[tuple, list[int]] = {}
                    for i, p in enumerate(map(wanted.__getitem__, digests)):
                        groups.setdefault((p.dtype, p.shape), []).append(i)
                    # verified here, outside the lock: the streams hash at once
                    verified = [
                        verify_received([digests[i] for i in rows], [codec_ids[i] for i in rows],
                                        [rawlens[i] for i in rows], [lengths[i] for i in rows],
                                        [payloads[i] for i in rows], dtype, tuple(shape),
                                        block=run.payload if len(groups) == 1 else None)
                        for (dtype, shape), rows in groups.items()]
                nbytes = len(run.payload)
                with room:  # bounded: at most WRITE_AHEAD_BYTES (or one larger run) wait for the writer
                    while state["queued"] and state["queued"] + nbytes > WRITE_AHEAD_BYTES and not stop.is_set():
                        room.wait()
                    if stop.is_set():
                        return
                    state["queued"] += nbytes
                writes.append(writer.submit(write, verified, nbytes, int(run.table["rawlen"].sum())))

        def write(verified: list, nbytes: int, raw: int) -> None:
            # the one thread that writes to the store: appends and flushes follow each other
            try:
                if stop.is_set():
                    return
                for v in verified:
                    store.put_verified(v)
                state["received"] += nbytes
                state["unflushed"] += nbytes
                if state["unflushed"] >= DOWNLOAD_BATCH_BYTES:
                    store.flush()
                    state["unflushed"] = 0
                advance(raw)
            except BaseException:
                stop.set()
                raise
            finally:
                with room:
                    state["queued"] -= nbytes
                    room.notify_all()

        # receiving and verifying (the stream threads) overlap with appending to the pack (the
        # writer thread): one stream otherwise left the network idle while a run was written
        writer = ThreadPoolExecutor(1, thread_name_prefix="hangar-fetch-writer")
        writes: list = []
        try:
            try:
                with ThreadPoolExecutor(streams, thread_name_prefix="hangar-fetch") as pool:
                    futures = [pool.submit(fetch, b) for b in batches]
                    try:
                        for f in futures:
                            f.result()
                    except BaseException:
                        stop.set()
                        with room:
                            room.notify_all()
                        for f in futures:
                            f.cancel()
                        raise
            finally:
                writer.shutdown(wait=True)  # idle before the store is flushed or discarded
            for w in writes:
                w.result()  # a writer's error is raised here
            store.flush()
        except BaseException:
            store.discard()
            raise
        finally:
            for dc in clients:
                dc.close()
    return state["received"]


def upload_from(store: TensorStore, client: DataClient, pointers: list[SamplePointer], username: str,
                password: str) -> int:
    """Send the stored form of ``pointers``' samples to the server; return how many it stored.

    To a server that speaks ``upload-runs`` samples go as runs (one dtype and shape each,
    read from the packs in storage order); to an older one record by record.
    """
    locs = {p.digest: store.location(p.digest).length for p in pointers}
    stored = 0
    runs = "upload-runs" in client.capabilities()
    with progress_bar("pushing data", sum(locs.values()), unit_bytes=True) as advance:
        for batch in _batches(pointers, lambda p: locs[p.digest], UPLOAD_BATCH_BYTES):
            if runs:
                stored += client.upload_runs(_upload_runs(store, batch), username, password)["stored"]
            else:
                stored += client.upload([_record(store, p) for p in batch], username, password)["stored"]
            advance(sum(locs[p.digest] for p in batch))
    return stored


def _record(store: TensorStore, p: SamplePointer) -> tuple[protocol.WireSample, int]:
    st = store.read_stored(p.digest)
    s = protocol.WireSample(st.digest, st.codec, st.rawlen, st.payload, p.dtype, p.shape)
    return s, protocol.upload_record_size(len(st.payload), p.dtype, len(p.shape))


#: payload bytes of one upload run (the server verifies a run whole before writing any of it)
UPLOAD_RUN_BYTES = 4 << 20


def _upload_runs(store: TensorStore, batch: list[SamplePointer]) -> list[bytes | memoryview]:
    """The body of an ``upload-runs`` request for ``batch``: runs of one dtype and shape each."""
    groups: dict[tuple, list[SamplePointer]] = {}
    for p in batch:
        groups.setdefault((p.dtype, tuple(p.shape)), []).append(p)
    chunks: list[bytes | memoryview] = []
    for (dtype, shape), ps in groups.items():
        samples = [store.read_stored(p.digest) for p in ps]  # each checked against its checksum
        i = 0
        while i < len(samples):
            j, size = i, 0
            while j < len(samples) and (j == i or size + len(samples[j].payload) <= UPLOAD_RUN_BYTES) \
                    and j - i < protocol.MAX_RUN_SAMPLES:
                size += len(samples[j].payload)
                j += 1
            run = samples[i:j]
            head = protocol.upload_run_header(len(run), size, dtype, shape) + protocol.run_table(
                [s.digest for s in run], [len(s.payload) for s in run], [s.rawlen for s in run],
                [s.codec for s in run])
            chunks.append(b"".join([head, *(s.payload for s in run)]))  # one send per run, not per sample
            i = j
    return chunks


def timed_ping(client: DataClient) -> float:
    """Seconds for one ping round trip once the connection is open."""
    client.ping()  # opens the connection
    start = time.perf_counter()
    client.ping()
    return time.perf_counter() - start
