"""Reachability walks, and dropping unreachable git objects (repack reachable, delete the rest).

The new pack is written (fsync, rename, index last, directory fsync) before any old pack or
loose object is deleted, so a crash at any point leaves every reachable object readable.
Old packs are deleted index first: a pack without its index is invisible to git.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import pygit2

from hangar._faults import crash_point
from hangar.plumbing.durable import fsync_dir
from hangar.plumbing.gitrepo import GitRepo
from hangar.plumbing.pack import list_pack_names, write_pack

_HEX = frozenset("0123456789abcdef")


@dataclass
class GitGcStats:
    removed_objects: int = 0
    removed_files: int = 0
    removed_temp: int = 0


@dataclass
class Reachable:
    """What :func:`walk_reachable` found: raw ids of every object read, and counts."""

    seen: set[bytes] = field(default_factory=set)
    commits: int = 0
    trees: int = 0


BlobVisitor = Callable[[tuple[str, ...], bytes, Optional[str]], None]
ProblemVisitor = Callable[[Optional[str], str], None]
#: called with the path of each subtree entry met (before the walk enters it, seen or not)
TreeVisitor = Callable[[tuple[str, ...], Optional[str]], None]


def ref_heads(git: GitRepo) -> list[str]:
    """Commits that any ref (branches, remote branches, tags) points at."""
    heads: list[str] = []
    for name in git.repo.references:
        try:
            obj = git.repo.get(git.repo.references[name].resolve().target)
        except (KeyError, pygit2.GitError):
            continue
        if isinstance(obj, pygit2.Commit):
            heads.append(str(obj.id))
    return heads


class _Walk:
    def __init__(self, git: GitRepo, on_blob: BlobVisitor, on_problem: ProblemVisitor,
                 on_tree: Optional[TreeVisitor] = None) -> None:
        self.repo = git.repo
        self.on_tree = on_tree
        self.out = Reachable()
        self.on_blob = on_blob
        self.on_problem = on_problem

    def get(self, oid: pygit2.Oid, commit: Optional[str], what: str) -> Optional[pygit2.Object]:
        try:
            obj = self.repo.get(oid)
        except (pygit2.GitError, ValueError) as exc:
            self.on_problem(commit, f"{what} {oid} cannot be read: {exc}")
            return None
        if obj is None:
            self.on_problem(commit, f"{what} {oid} is missing")
        return obj

    def commits(self, heads: list[str]) -> None:
        todo = [pygit2.Oid(hex=h) for h in heads]
        seen = self.out.seen
        while todo:
            oid = todo.pop()
            if oid.raw in seen:
                continue
            c = self.get(oid, None, "commit")
            if c is None:
                continue
            seen.add(oid.raw)
            if not isinstance(c, pygit2.Commit):
                self.on_problem(None, f"object {oid} is a {type(c).__name__}, not a commit")
                continue
            self.out.commits += 1
            todo.extend(c.parent_ids)
            self.tree(c.tree_id, (), str(c.id))

    def tree(self, oid: pygit2.Oid, path: tuple[str, ...], commit: Optional[str]) -> None:
        seen = self.out.seen
        if oid.raw in seen:
            return
        t = self.get(oid, commit, "tree " + "/".join(path) if path else "root tree")
        if t is None:
            return
        seen.add(oid.raw)
        if not isinstance(t, pygit2.Tree):
            self.on_problem(commit, f"{'/'.join(path) or 'root'} {oid} is not a tree")
            return
        self.out.trees += 1
        for e in t:
            sub = (*path, e.name or "")  # pygit2 types an entry name Optional; every entry has one
            if e.filemode == pygit2.enums.FileMode.TREE:
                if self.on_tree is not None:
                    self.on_tree(sub, commit)
                self.tree(e.id, sub, commit)
            elif e.filemode != pygit2.enums.FileMode.BLOB:
                # hangar writes records as blobs of mode 100644 only: a link (120000), a gitlink
                # (160000) or an executable (100755) was made with plain git, not by hangar
                self.on_problem(commit, f"{'/'.join(sub)} {e.id} has mode {e.filemode:o}, not a record's 100644 "
                                        "(written with plain git, not by hangar)")
            elif e.id.raw not in seen:
                b = self.get(e.id, commit, "blob " + "/".join(sub))
                if b is None:
                    continue
                seen.add(e.id.raw)
                if not isinstance(b, pygit2.Blob):
                    self.on_problem(commit, f"{'/'.join(sub)} {e.id} is not a blob")
                    continue
                self.on_blob(sub, b.data, commit)


def walk_reachable(git: GitRepo, heads: list[str], trees: list[str], on_blob: BlobVisitor,
                   on_problem: ProblemVisitor, on_tree: Optional[TreeVisitor] = None) -> Reachable:
    """Read every object reachable from commits ``heads`` and root ``trees``, each once.

    ``on_blob(path, data, commit)`` is called for each distinct blob (``path`` is the tuple
    of entry names from the root tree, ``commit`` the first commit found holding it, or
    ``None`` for ``trees``); ``on_problem(commit, text)`` for each missing or unreadable
    object (libgit2 re-hashes every object it reads).
    """
    w = _Walk(git, on_blob, on_problem, on_tree)
    w.commits(heads)
    for t in trees:
        w.tree(pygit2.Oid(hex=t), (), None)
    return w.out


def _loose_objects(objects_dir: str) -> list[tuple[str, bytes]]:
    out = []
    for fan in os.listdir(objects_dir):
        if len(fan) != 2 or not set(fan) <= _HEX:
            continue
        d = os.path.join(objects_dir, fan)
        for rest in os.listdir(d):
            if len(rest) == 38 and set(rest) <= _HEX:
                out.append((os.path.join(d, rest), bytes.fromhex(fan + rest)))
    return out


_packs = list_pack_names


def _old_temp_files(pack_dir: str, temp_age: float) -> list[str]:
    cutoff = time.time() - temp_age
    out = []
    for n in os.listdir(pack_dir):
        p = os.path.join(pack_dir, n)
        if n.startswith("tmp_") or (n.startswith("pack-") and n.endswith(".pack")
                                    and not os.path.exists(p[:-5] + ".idx")):
            try:
                if os.stat(p).st_mtime < cutoff:
                    out.append(p)
            except FileNotFoundError:
                pass
    return out


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


@dataclass
class GitFiles:
    """The packs and loose objects gc may delete, listed before the reachability walk."""

    packs: list[str]
    loose: list[tuple[str, bytes]]


def list_git_files(git: GitRepo) -> GitFiles:
    """List the packs and loose objects that exist now (anything written later is kept)."""
    return GitFiles(_packs(git.pack_dir), _loose_objects(os.path.join(git.git_dir, "objects")))


def collect_git_garbage(git: GitRepo, reachable: set[bytes], files: GitFiles, *, dry_run: bool = False,
                        temp_age: float = 3600.0) -> GitGcStats:
    """Keep exactly the objects whose raw ids are in ``reachable``; return what went.

    Only the packs and loose objects in ``files`` (listed before ``reachable`` was walked)
    are deleted. Every id in ``reachable`` must be readable (the caller walked them); the
    caller holds the writer lock so no hangar writer adds objects meanwhile.
    """
    repo = git.repo
    pack_dir = git.pack_dir
    old_packs, loose = files.packs, files.loose
    stats = GitGcStats()
    stored = {oid.raw for oid in repo.odb}
    stats.removed_objects = len(stored - reachable)
    temps = _old_temp_files(pack_dir, temp_age)
    stats.removed_temp = len(temps)
    if stats.removed_objects == 0 and len(old_packs) <= 1 and not loose:
        stats.removed_files = 0
        if not dry_run:
            for p in temps:
                _unlink(p)
        return stats
    stats.removed_files = 2 * len(old_packs) + len(loose)
    if dry_run:
        return stats
    objects: dict[bytes, tuple[int, bytes]] = {}
    for raw in reachable:
        obj_type, data = repo.odb.read(pygit2.Oid(raw=raw))
        objects[raw] = (int(obj_type), bytes(data))
    new = write_pack(pack_dir, objects)
    crash_point("gc.git_pack_written")
    stats.removed_files = 0
    for name in old_packs:
        if name == new:
            continue
        base = os.path.join(pack_dir, name)
        stats.removed_files += _unlink(base + ".idx")  # invisible first
        stats.removed_files += _unlink(base + ".pack")
        for ext in (".rev", ".keep", ".bitmap", ".promisor", ".mtimes"):
            _unlink(base + ext)
        crash_point("gc.git_pack_removed")
    for path, _ in loose:
        stats.removed_files += _unlink(path)
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass
    for p in temps:
        _unlink(p)
    fsync_dir(pack_dir)
    return stats
