"""The ``git`` binary that fetches a data remote's history from a path on this machine
(``objectdata.fetch_branches`` / ``fetch_location``) runs in the repository's own git directory:
it must neither run what that directory's config or hooks name (a repository may come from a
tarball: docs/security.md) nor start git's own gc on hangar's objects."""

from __future__ import annotations

import os
import subprocess

import numpy as np

from hangar import Repository
from hangar.errors import ServerUnreachableError
from hangar.remote import objectdata
from tests.repo_parts import git_of, hangar_dir_of, staged_tree_as_auto_gc_bait
from tests.test_data_remotes import bare_git, make_repo


def _with_history(tmp_path) -> tuple[Repository, str]:
    """A repository and a bare git repository on this machine holding its master, added as ``origin``."""
    r = make_repo(tmp_path / "repo", n=4)
    url = bare_git(tmp_path / "history.git")
    subprocess.run(["git", "--git-dir", hangar_dir_of(r), "-c", "core.hooksPath=/dev/null", "push", "-q", url,
                    "master"], check=True, capture_output=True)
    git_of(r).add_remote("origin", url)
    return r, url


def test_fetching_runs_no_hook_nor_command_of_the_repository_config(tmp_path):
    """A crafted repository's ``hooks/reference-transaction``, ``core.alternateRefsCommand`` (with
    an alternate) and a URL rewritten to ssh with ``core.sshCommand`` (in an include libgit2 does
    not read, so hangar took the path for a local one) each ran a command when the history was
    fetched with ``git`` (libgit2 runs none of them)."""
    r, url = _with_history(tmp_path)
    hangar_dir = hangar_dir_of(r)
    marks = {name: tmp_path / name for name in ("hook", "alternate", "ssh")}
    hook = os.path.join(hangar_dir, "hooks", "reference-transaction")
    os.makedirs(os.path.dirname(hook), exist_ok=True)
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marks['hook']}\n")
    os.chmod(hook, 0o755)
    alt = bare_git(tmp_path / "alt.git")
    with open(os.path.join(hangar_dir, "objects", "info", "alternates"), "a") as f:
        f.write(os.path.join(alt, "objects") + "\n")
    git = git_of(r)
    config = git.repo.config
    config["core.alternateRefsCommand"] = f"touch {marks['alternate']}; true"
    objectdata.fetch_branches(git, "origin", ["master"])
    assert git.remote_branch_head("origin/master") == git.branch_head("master")
    # an include only git reads (libgit2 knows no ``hasconfig:``): it rewrites the path to ssh
    extra = tmp_path / "extra.cfg"
    extra.write_text(f'[url "ssh://nowhere.invalid{os.path.dirname(url)}/"]\n\tinsteadOf = {os.path.dirname(url)}/\n'
                     f'[core]\n\tsshCommand = touch {marks["ssh"]}; false\n')
    config[f"includeIf.hasconfig:remote.*.url:{url}.path"] = str(extra)
    try:
        objectdata.fetch_branches(git, "origin", ["master"])
    except ServerUnreachableError:
        pass  # libgit2 follows the rewrite to ssh and fails to connect: nothing was run
    assert [name for name, path in marks.items() if path.exists()] == []


def test_fetching_starts_no_git_gc_that_drops_the_staging_area(tmp_path):
    """``git fetch`` ends with ``git gc --auto``: with more than 50 packs (hangar merges its own at
    64; ``gc.autoPackLimit=1`` stands for them here, ``gc.autoDetach=false`` runs it before the
    fetch returns) it repacked hangar's git directory and dropped unreachable objects over two
    weeks old, among them the staging area's tree (kept by ``staging.json``, not by a ref)."""
    r, _ = _with_history(tmp_path)
    co = r.checkout(write=True)
    co.arraysets["img"]["staged"] = np.full((8, 8), 7, np.uint8)
    co.close()
    git, tree, pack_dir, packs = staged_tree_as_auto_gc_bait(r)
    objectdata.fetch_branches(git, "origin", ["master"])
    assert sorted(os.listdir(pack_dir)) == packs
    assert git_of(r).has_object(tree)
    co = r.checkout(write=True)
    np.testing.assert_array_equal(co.arraysets["img"]["staged"], np.full((8, 8), 7, np.uint8))
    co.close()

