"""Client side of a hangar server: git history through libgit2, sample bytes over HTTP.

:class:`DataClient` speaks the data-sync endpoints of :mod:`hangar.remote.protocol` over one
keep-alive connection. The ``git_*`` functions move history with pygit2 over git smart HTTP
and keep remotes as real git remotes (``remote.<name>.url``) in ``.hangar/config``, so
``git --git-dir .hangar fetch <name>`` works too.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import pygit2

from hangar.errors import (
    BranchNotFoundError,
    InvalidNameError,
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
from hangar.records.pointer import SamplePointer, decode_pointer
from hangar.remote import protocol
from hangar.store import TensorStore
from hangar.store.codecs import max_stored_length
from hangar.store.tensorstore import StoredSample

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
        if resp.status == 404 and what == "download":
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


def list_remote_heads(git: GitRepo, name: str, address: str) -> dict[str, str]:
    """Branch name -> head commit on the server."""
    try:
        heads = git.repo.remotes[name].list_heads(callbacks=_Callbacks(address))
    except pygit2.GitError as exc:
        raise _fail_git(exc, address, "listing branches") from exc
    # pygit2 types a ref name Optional; listed refs have one
    return {h.name[len("refs/heads/"):]: str(h.oid) for h in heads if h.name.startswith("refs/heads/")}  # type: ignore[index, union-attr]


def fetch_branches(git: GitRepo, name: str, address: str, branches: Optional[list[str]] = None) -> None:
    """Fetch the records (git history) of ``branches`` (all when None) into ``refs/remotes/<name>/``."""
    if branches is None:
        specs = [f"+refs/heads/*:refs/remotes/{name}/*"]
    else:
        specs = [f"+refs/heads/{b}:refs/remotes/{name}/{b}" for b in branches]
    with progress_bar("fetching records", 1) as advance:
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
            for e in entries:
                p = decode_pointer(e.data)  # type: ignore[attr-defined]  # leaf tree entries are pointer blobs
                out.setdefault(p.digest, p)

    for c in commits:
        for samples in _sample_trees(repo, c, arrayset_names):
            if samples.id not in seen:
                seen.add(samples.id)
                walk(samples)
    return out


# --------------------------------------------------------------- transfers
#: most raw bytes asked for in one download request (each batch is made durable after it)
DOWNLOAD_BATCH_BYTES = 256 << 20
#: most stored bytes sent in one upload request (the server makes each one durable)
UPLOAD_BATCH_BYTES = 128 << 20


def _batches(items: list[T], size_of: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    batch: list[T] = []
    size = 0
    for it in items:
        n = size_of(it)
        if batch and (size + n > limit or len(batch) >= protocol.MAX_DIGESTS_PER_REQUEST):
            yield batch
            batch, size = [], 0
        batch.append(it)
        size += n
    if batch:
        yield batch


def raw_nbytes(p: SamplePointer) -> int:
    import numpy as np

    n = np.dtype(p.dtype).itemsize
    for d in p.shape:
        n *= d
    return n


def download_into(store: TensorStore, client: DataClient, pointers: list[SamplePointer]) -> int:
    """Download, verify and store the samples of ``pointers``; return the bytes received."""
    store.storage.remove_dead_partials()  # what an earlier, killed fetch left behind
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


def upload_from(store: TensorStore, client: DataClient, pointers: list[SamplePointer], username: str,
                password: str) -> int:
    """Send the stored form of ``pointers``' samples to the server; return how many it stored."""
    def record(p: SamplePointer) -> tuple[protocol.WireSample, int]:
        st = store.read_stored(p.digest)
        s = protocol.WireSample(st.digest, st.codec, st.rawlen, st.payload, p.dtype, p.shape)
        return s, protocol.upload_record_size(len(st.payload), p.dtype, len(p.shape))

    locs = {p.digest: store.location(p.digest).length for p in pointers}
    stored = 0
    with progress_bar("pushing data", sum(locs.values()), unit_bytes=True) as advance:
        for batch in _batches(pointers, lambda p: locs[p.digest], UPLOAD_BATCH_BYTES):
            records = [record(p) for p in batch]
            stored += client.upload(records, username, password)["stored"]
            advance(sum(locs[p.digest] for p in batch))
    return stored


def timed_ping(client: DataClient) -> float:
    """Seconds for one ping round trip once the connection is open."""
    client.ping()  # opens the connection
    start = time.perf_counter()
    client.ping()
    return time.perf_counter() - start
