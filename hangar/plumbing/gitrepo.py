"""A bare git repository as hangar's plumbing sees it: objects, packs, refs, commits.

Everything pygit2 is reached through here (and ``trees``/``pack``), so the layers above
deal in hex ids and small wrappers, and library errors are translated in one place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Iterator, Optional, Sequence, cast

import pygit2

from hangar.plumbing.durable import fsync_dir
from hangar.plumbing.pack import (
    ObjectBatch,
    StagedPack,
    discard_pack,
    list_pack_names,
    pack_object_ids,
    publish_pack,
    remove_pack,
    stage_pack,
    write_pack,
)
from hangar.plumbing.packread import read_small_blobs

#: :meth:`GitRepo.read_blobs` reads from the packs themselves from this many ids: each call reads every
#: pack's ``.idx`` (~3 ms with 25 packs), which a push's per-commit calls of a few ids paid on each
#: (151 commits of 5 samples: 0.73-0.75 s against 0.28-0.29 s through libgit2 alone, review B); the
#: pack read saves ~1.8 us an id (60,000: ~0.08 s against ~0.19 s)
_PACK_READ_FROM = 4096

# tree objects over 4 KiB are not cached by default (850 µs -> 13 µs per lookup)
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 1 << 20)
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.BLOB, 4096)
pygit2.settings.cache_max_size(512 << 20)
# one pack per commit: bound the pack files libgit2 keeps open
pygit2.settings.mwindow_file_limit = 64
pygit2.settings.enable_fsync_gitdir(True)

Tree = pygit2.Tree
Blob = pygit2.Blob
GitError = pygit2.GitError


class CommitInfo:
    """What ``log`` needs of a commit."""

    __slots__ = ("id", "parents", "message", "author", "email", "time", "tree")

    def __init__(self, c: pygit2.Commit) -> None:
        self.id = str(c.id)
        self.parents = [str(p) for p in c.parent_ids]
        self.message = c.message.rstrip("\n")
        self.author = c.author.name
        self.email = c.author.email
        self.time = c.commit_time
        self.tree = str(c.tree_id)


#: ``git`` executables checked by :func:`_git_fsyncs`: path -> whether it is new enough
_GIT_FSYNCS: dict[str, bool] = {}


def _git_fsyncs(exe: str) -> bool:
    """Whether the ``git`` at ``exe`` knows ``core.fsync`` (git 2.36 on): an older one ignores
    the key (unknown keys are no error) and writes objects and refs without fsync, so a crash
    could leave a ref naming objects that never reached the disk. Asked once per process."""
    if exe not in _GIT_FSYNCS:
        import re

        try:
            out = subprocess.run([exe, "version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                                 env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")}).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = b""
        m = re.match(rb"git version (\d+)\.(\d+)", out)
        _GIT_FSYNCS[exe] = m is not None and (int(m[1]), int(m[2])) >= (2, 36)
    return _GIT_FSYNCS[exe]


class GitRepo:
    """Bare git directory with bulk object writing."""

    def __init__(self, git_dir: str, *, from_env: bool = False) -> None:
        self.git_dir = git_dir
        # from_env: honour GIT_OBJECT_DIRECTORY / GIT_ALTERNATE_OBJECT_DIRECTORIES, as set for hooks
        # (a pre-receive hook sees the pushed objects only in git's quarantine directory)
        flags = pygit2.enums.RepositoryOpenFlag.FROM_ENV if from_env else pygit2.enums.RepositoryOpenFlag.DEFAULT
        self.repo = pygit2.Repository(git_dir, flags)
        self.pack_dir = os.path.join(git_dir, "objects", "pack")

    @classmethod
    def init(cls, git_dir: str) -> "GitRepo":
        pygit2.init_repository(git_dir, bare=True, initial_head="master")
        return cls(git_dir)

    # ---------------------------------------------------------------- config
    def config_get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        try:
            return self.repo.config[key]
        except KeyError:
            return default

    def config_set(self, key: str, value: str) -> None:
        self.repo.config[key] = value

    def config_delete(self, key: str) -> None:
        del self.repo.config[key]

    def config_items(self, prefix: str) -> dict[str, str]:
        return {e.name: e.value or "" for e in self.repo.config if e.name is not None and e.name.startswith(prefix)}

    # --------------------------------------------------------------- objects
    def tree(self, oid: str | bytes | None) -> Optional[Tree]:
        if oid is None:
            return None
        o = pygit2.Oid(raw=oid) if isinstance(oid, bytes) else pygit2.Oid(hex=oid)
        return cast(Optional[Tree], self.repo.get(o))  # callers pass tree ids

    def read_raw(self, oid: bytes) -> bytes:
        """The content of object ``oid`` (raw id), without building a pygit2 object (~7 us
        instead of ~12 us for a tree: diff and merge read hundreds)."""
        return self.repo.odb.read(pygit2.Oid(raw=oid))[1]

    def read_blobs(self, ids: list[bytes]) -> list[bytes]:
        """The content of each blob of ``ids`` (raw ids), in order.

        Small blobs stored whole in a pack (hangar's pointer blobs) are read as columns and each
        verified against its id (:func:`hangar.plumbing.packread.read_small_blobs`: 60,000 in
        ~0.08-0.09 s against ~0.19 s of first reads through libgit2); the rest through libgit2.
        Fewer than :data:`_PACK_READ_FROM` ids all go through libgit2.
        """
        read = self.repo.odb.read
        if len(ids) < _PACK_READ_FROM:
            return [read(pygit2.Oid(raw=i))[1] for i in ids]
        out = read_small_blobs(self.pack_dir, ids)
        return [b if b is not None else read(pygit2.Oid(raw=i))[1] for b, i in zip(out, ids)]

    def write_batch(self, batch: ObjectBatch) -> None:
        """Write the objects of ``batch`` as one pack.

        Objects already stored are not filtered out: a duplicate in a second pack is
        harmless to git and checking costs more (~10 µs each) than writing it.
        """
        if batch.objects or batch.blocks:
            write_pack(self.pack_dir, batch.objects, batch.blocks)
        batch.clear()

    def stage_batch(self, batch: ObjectBatch, sync_with: Sequence[int] = ()) -> Optional[StagedPack]:
        """:meth:`write_batch` up to the pack's durable temporary files (:func:`~hangar.plumbing.pack.stage_pack`):
        nothing is visible until :meth:`publish`; None when the batch is empty. ``sync_with``:
        descriptors fsynced together with the pack (also when there is none)."""
        staged = stage_pack(self.pack_dir, batch.objects, batch.blocks, sync_with, batch.spill)
        batch.clear()
        return staged

    def publish(self, staged: Optional[StagedPack]) -> None:
        """Make a pack of :meth:`stage_batch` visible (renamed into place, index last)."""
        if staged is not None:
            publish_pack(staged)

    def discard(self, staged: Optional[StagedPack]) -> None:
        """Remove a pack of :meth:`stage_batch` that will not be published."""
        if staged is not None:
            discard_pack(staged)

    def fetch_with_git_binary(self, url: str, refspecs: Sequence[str], protocol: str,
                              options: Sequence[str] = ()) -> bool:
        """Fetch ``refspecs`` from ``url`` with the ``git`` binary over ``protocol`` only ("file",
        "http"); False when there is no ``git`` or it failed (callers then fetch through libgit2,
        which reports the error). ``options`` are extra ``git fetch`` options.

        Objects and refs are fsynced (``core.fsync=committed``, as libgit2 does here). Nothing the
        repository's own config or hooks name is run - a repository may come from a tarball, and
        libgit2 runs none of these: no hooks (reference-transaction ran on every fetch), no
        ``core.alternateRefsCommand``, no askpass or credential helper, no proxy or cookie jar, no
        submodules, one transport (``GIT_ALLOW_PROTOCOL``: the repository's config could rewrite the
        URL to ``ext::`` or to ``ssh://`` with a ``core.sshCommand``); command-line ``-c`` outranks the
        repository's config (``http.<url>.*`` keys only when given for the URL too). No auto gc or
        maintenance: with over 50 packs (hangar merges its own only at 64) git repacked the
        directory behind hangar and dropped unreachable objects two weeks old, the staging area's
        trees among them (tests/test_local_git_fetch.py).
        """
        exe = shutil.which("git")
        if exe is None or not _git_fsyncs(exe):
            return False
        env = {k: v for k, v in os.environ.items()  # no GIT_DIR & co. from outside, no proxy
               if not k.startswith("GIT_") and k not in ("SSH_ASKPASS", "http_proxy", "https_proxy", "HTTP_PROXY",
                                                         "HTTPS_PROXY", "all_proxy", "ALL_PROXY")}
        env["GIT_TERMINAL_PROMPT"] = "0"
        # the one transport, overriding any configuration: the repository's own
        # protocol.<name>.allow outranks the command line's protocol.allow=never, and with a
        # url.<base>.insteadOf rewrote the URL to ext:: (a command) or ssh:// (core.sshCommand)
        env["GIT_ALLOW_PROTOCOL"] = protocol
        config = ["core.fsync=committed", "core.fsyncMethod=fsync", "gc.auto=0", "maintenance.auto=false",
                  "core.hooksPath=/dev/null", "core.alternateRefsCommand=", "core.askPass=", "credential.helper=",
                  "protocol.allow=never", f"protocol.{protocol}.allow=always", "fetch.prune=false",
                  "fetch.recurseSubmodules=false"]
        if protocol == "http":
            # no cookie jar the repository names (``http.saveCookies`` wrote the server's cookies to
            # any path) and no proxy: an ``http.<url>.*`` key outranks a plain ``http.*`` one
            # whatever its source, so each is also given for ``url`` (a tie goes to the command line)
            for key, value in (("cookieFile", ""), ("saveCookies", "false"), ("proxy", "")):
                config += [f"http.{key}={value}", f"http.{url}.{key}={value}"]
        cmd = [exe, "--git-dir", self.git_dir]
        for c in config:
            cmd += ["-c", c]
        cmd += ["fetch", "--quiet", "--no-write-fetch-head", "--no-recurse-submodules", "--no-auto-maintenance",
                *options, url, *refspecs]
        try:
            # git's output is not read: a server's progress messages (stderr) are not kept in memory
            done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def consolidate_packs(self, max_packs: int = 64) -> bool:
        """Merge the small packs into one when there are more than ``max_packs``.

        Every commit writes a pack; libgit2 searches each pack's index on a lookup, so they
        are merged now and then. The largest pack (usually the first big import) is left as
        it is, so the work is bounded by what the recent commits wrote. The merged pack is
        durable before any old pack is deleted; objects are copied whether reachable or not
        (dropping garbage is ``gc``'s job). Returns True when packs were merged.
        """
        names = list_pack_names(self.pack_dir)
        if len(names) <= max_packs:
            return False
        names.sort(key=lambda n: os.path.getsize(os.path.join(self.pack_dir, n + ".pack")))
        small = names[:-1]
        objects: dict[bytes, tuple[int, bytes]] = {}
        read = self.repo.odb.read
        for name in small:
            for oid in pack_object_ids(os.path.join(self.pack_dir, name + ".idx")):
                if oid not in objects:
                    obj_type, data = read(pygit2.Oid(raw=oid))
                    objects[oid] = (int(obj_type), bytes(data))
        merged = write_pack(self.pack_dir, objects)
        for name in small:
            if name != merged:
                remove_pack(self.pack_dir, name)
        fsync_dir(self.pack_dir)
        return True

    def has_object(self, hexid: str) -> bool:
        try:
            return pygit2.Oid(hex=hexid) in self.repo
        except ValueError:
            return False

    # ---------------------------------------------------------------- commits
    def resolve_commit(self, rev: str) -> Optional[str]:
        """Full hex id of the commit ``rev`` (full or unique abbreviated hex), or ``None``."""
        if not isinstance(rev, str) or not rev or len(rev) > 40:
            return None
        try:
            obj = self.repo.revparse_single(rev) if len(rev) < 40 else self.repo.get(pygit2.Oid(hex=rev))
        except (KeyError, ValueError, pygit2.GitError):
            return None
        if isinstance(obj, pygit2.Commit) and (len(rev) == 40 or str(obj.id).startswith(rev.lower())):
            return str(obj.id)
        return None

    def commit_tree_id(self, commit: str) -> str:
        return str(cast(pygit2.Commit, self.repo[commit]).tree_id)

    def commit_info(self, commit: str) -> CommitInfo:
        return CommitInfo(cast(pygit2.Commit, self.repo[commit]))

    def create_commit(self, tree: str, parents: list[str], name: str, email: str, message: str) -> str:
        """Write a commit object (the ref is moved separately, after it is durable)."""
        sig = pygit2.Signature(name, email, int(time.time()), 0)
        oid = self.repo.create_commit(None, sig, sig, message, pygit2.Oid(hex=tree),
                                      [pygit2.Oid(hex=p) for p in parents])
        return str(oid)

    def commit_data(self, tree: str, parents: list[str], name: str, email: str, message: str,
                    when: Optional[int] = None) -> bytes:
        """The bytes of the commit object :meth:`create_commit` would write (at time ``when``,
        default now), to be written in one pack with the trees it names: a merge then fsyncs
        one pack instead of a pack and a loose object."""
        sig = pygit2.Signature(name, email, int(time.time()) if when is None else when, 0)  # checks as create_commit
        person = b"%s <%s> %d +0000" % (sig.raw_name, sig.raw_email, sig.time)
        head = [b"tree " + tree.encode(), *(b"parent " + p.encode() for p in parents),
                b"author " + person, b"committer " + person]
        # libgit2 takes the message as a C string: it ends at a NUL
        return b"\n".join(head) + b"\n\n" + message.encode().split(b"\x00", 1)[0]

    def walk(self, heads: list[str]) -> Iterator[CommitInfo]:
        """Commits reachable from ``heads``, newest first (topological + time)."""
        walker = self.repo.walk(heads[0], pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        for h in heads[1:]:
            walker.push(h)
        for c in walker:
            yield CommitInfo(c)

    def merge_base(self, a: str, b: str) -> Optional[str]:
        mb = self.repo.merge_base(a, b)
        return str(mb) if mb else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor == descendant:
            return True
        return bool(self.repo.descendant_of(descendant, ancestor))

    # ------------------------------------------------------------------- refs
    def branch_head(self, name: str) -> Optional[str]:
        ref = self.repo.references.get(f"refs/heads/{name}")
        return str(ref.target) if ref is not None else None

    def branch_or_remote_head(self, name: str) -> Optional[str]:
        """Head of local branch ``name``, else of remote branch ``name`` (e.g. ``origin/master``)."""
        head = self.branch_head(name)
        if head is None:
            ref = self.repo.references.get(f"refs/remotes/{name}")
            head = str(ref.resolve().target) if ref is not None else None
        return head

    def set_branch(self, name: str, commit: str) -> None:
        """Point ``refs/heads/<name>`` at ``commit`` (atomic: lockfile + rename)."""
        self.repo.references.create(f"refs/heads/{name}", pygit2.Oid(hex=commit), force=True)

    def delete_ref(self, ref: str) -> None:
        """Delete ``ref`` (a full name: ``refs/heads/dev``, ``refs/remotes/origin/dev``)."""
        self.repo.references.delete(ref)

    def branches(self) -> list[str]:
        return sorted(r[len("refs/heads/"):] for r in self.repo.references if r.startswith("refs/heads/"))

    def remote_branches(self) -> list[str]:
        """Fetched remote branches as ``<remote>/<branch>`` (``refs/remotes/*``), sorted."""
        return sorted(r[len("refs/remotes/"):] for r in self.repo.references
                      if r.startswith("refs/remotes/") and not r.endswith("/HEAD"))

    def all_branches(self) -> list[str]:
        """Local branches and the fetched remote ones a local branch does not shadow, sorted by
        name together (``['master', 'origin/master', 'testbranch']``, as Hangar 0.3 listed them)."""
        local = self.branches()
        taken = set(local)
        return sorted(local + [b for b in self.remote_branches() if b not in taken])

    def remote_branch_head(self, name: str) -> Optional[str]:
        """Head of the fetched remote branch ``name`` (``'origin/master'``), or ``None``."""
        ref = self.repo.references.get(f"refs/remotes/{name}")
        return str(ref.resolve().target) if ref is not None else None

    def add_remote(self, name: str, url: str) -> None:
        """Record remote ``name`` at ``url`` (any non-empty string, as ``git remote add`` takes)."""
        self.repo.remotes.create(name, url)

    def refs(self, prefix: str) -> dict[str, str]:
        out = {}
        for r in self.repo.references:
            if r.startswith(prefix):
                ref = self.repo.references[r].resolve()
                out[r[len(prefix):]] = str(ref.target)
        return out

    def set_ref(self, name: str, commit: str) -> None:
        self.repo.references.create(name, pygit2.Oid(hex=commit), force=True)
