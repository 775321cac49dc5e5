"""Lower-layer views of a repository for tests that check or change git refs, objects and stored bytes.

Each opens the repository's parts afresh through the public :class:`hangar.core.RepositoryCore`
(what a second process would see), never through the ``Repository``'s private state.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any, Callable, Optional

import pytest

from hangar import Repository
from hangar.core import RepositoryCore
from hangar.plumbing import paths, rowhash
from hangar.plumbing.gitrepo import GitRepo
from hangar.records.staging import StagingState
from hangar.store import TensorStore


def git_of(repo: Repository) -> GitRepo:
    """The repository's git directory (plumbing)."""
    return RepositoryCore(repo.path).git


def store_of(repo: Repository) -> TensorStore:
    """A tensor store on the repository's data (with its read cache, as checkouts use)."""
    return RepositoryCore(repo.path).store()


def hangar_dir_of(repo: Repository) -> str:
    """The repository's ``.hangar`` directory."""
    return paths.hangar_dir(repo.path)


def staged_tree_as_auto_gc_bait(repo: Repository) -> tuple[GitRepo, str, str, list[str]]:
    """Make ``repo``'s git directory one that ``git gc --auto`` would repack: its packs dated 30
    days back, ``gc.autoPackLimit`` 1, no detaching. Returns the git repository, the staging area's
    tree (kept by ``staging.json``, not by a ref: what a repack would drop), the pack directory and
    its pack files - for tests that a fetch with the ``git`` binary runs no auto gc."""
    hangar_dir = hangar_dir_of(repo)
    tree = StagingState.load(hangar_dir).tree
    git = git_of(repo)
    assert tree is not None and git.has_object(tree)
    old = time.time() - 30 * 86400
    pack_dir = os.path.join(hangar_dir, "objects", "pack")
    packs = sorted(os.listdir(pack_dir))
    for name in packs:
        os.utime(os.path.join(pack_dir, name), (old, old))
    git.repo.config["gc.autoPackLimit"] = "1"
    git.repo.config["gc.autoDetach"] = "false"
    return git, tree, pack_dir, packs


def flip_stored_byte(repo: Repository, sample, at: int | None = None, mask: int = 0x10) -> str:
    """Flip the bits ``mask`` of the byte ``at`` bytes (default: the middle; negative: from the
    end) into the stored bytes of ``sample`` (an array) in its local pack file, as damage on disk
    would; the pack file's path."""
    from hangar.store.digest import sample_digest

    store = store_of(repo)
    store.refresh()
    loc = store.location(sample_digest(sample))
    at = loc.length // 2 if at is None else at % loc.length  # a negative ``at`` counts from the end
    path = os.path.join(repo.path, ".hangar", "data", "packs", loc.pack, "c", "0")
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(loc.offset + at)
        b = f.read(1)
        f.seek(loc.offset + at)
        f.write(bytes([b[0] ^ mask]))
    return path


def recorded_endpoint(history: str) -> Optional[str]:
    """The S3 endpoint the data-location ref of the bare git repository ``history`` records
    (``None`` when it records none): what a user who trusts it passes as ``endpoint_url``."""
    out = subprocess.run(["git", "--git-dir", history, "show", "refs/hangar/data:data.json"], capture_output=True)
    return json.loads(out.stdout).get("endpoint_url") if out.returncode == 0 else None


def commit_on(repo: Repository, branch: str, fn: Callable[[Any], None], message: str = "edit") -> str:
    """Commit on ``branch`` what ``fn(writer_checkout)`` stages; return the commit id (the writer
    checkout is closed either way): the builder of the diff and merge tests."""
    co = repo.checkout(write=True, branch=branch)
    try:
        fn(co)
        return co.commit(message)
    finally:
        co.close()


@pytest.fixture(params=["c", "python"], name="path")
def c_and_python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``path`` fixture: each test using it runs with the C extension and on the pure-Python
    path a machine without a compiler takes (import it into a test module to use it)."""
    if request.param == "c" and not rowhash.available:
        pytest.skip("the _rowhash extension is not built")
    if request.param == "python":
        monkeypatch.setattr(rowhash, "available", False)
    return request.param
