"""The ``git`` binary that fetches a data remote's history from a path on this machine
(``objectdata.fetch_branches`` / ``fetch_location``) runs in the repository's own git directory:
it must neither run what that directory's config or hooks name (a repository may come from a
tarball: docs/security.md) nor start git's own gc on hangar's objects."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np

from hangar import Repository
from hangar.records.staging import StagingState
from hangar.remote import objectdata
from tests.repo_parts import git_of, hangar_dir_of
from tests.test_data_remotes import bare_git, make_repo


def _with_history(tmp_path) -> tuple[Repository, str]:
    """A repository and a bare git repository on this machine holding its master, added as ``origin``."""
    r = make_repo(tmp_path / "repo", n=4)
    url = bare_git(tmp_path / "history.git")
    subprocess.run(["git", "--git-dir", hangar_dir_of(r), "-c", "core.hooksPath=/dev/null", "push", "-q", url,
                    "master"], check=True, capture_output=True)
    git_of(r).add_remote("origin", url)
    return r, url


def test_fetching_starts_no_git_gc_that_drops_the_staging_area(tmp_path):
    """``git fetch`` ends with ``git gc --auto``: with more than 50 packs (hangar merges its own at
    64; ``gc.autoPackLimit=1`` stands for them here, ``gc.autoDetach=false`` runs it before the
    fetch returns) it repacked hangar's git directory and dropped unreachable objects over two
    weeks old, among them the staging area's tree (kept by ``staging.json``, not by a ref)."""
    r, _ = _with_history(tmp_path)
    co = r.checkout(write=True)
    co.arraysets["img"]["staged"] = np.full((8, 8), 7, np.uint8)
    co.close()
    hangar_dir = hangar_dir_of(r)
    tree = StagingState.load(hangar_dir).tree
    git = git_of(r)
    assert tree is not None and git.has_object(tree)
    old = time.time() - 30 * 86400
    pack_dir = os.path.join(hangar_dir, "objects", "pack")
    packs = sorted(os.listdir(pack_dir))
    for name in packs:
        os.utime(os.path.join(pack_dir, name), (old, old))
    config = git.repo.config
    config["gc.autoPackLimit"] = "1"
    config["gc.autoDetach"] = "false"
    objectdata.fetch_branches(git, "origin", ["master"])
    assert sorted(os.listdir(pack_dir)) == packs
    assert git_of(r).has_object(tree)
    co = r.checkout(write=True)
    np.testing.assert_array_equal(co.arraysets["img"]["staged"], np.full((8, 8), 7, np.uint8))
    co.close()
