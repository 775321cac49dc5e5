"""Every on-disk path of a hangar repository, named in one place.

A repository at ``PATH`` keeps everything in ``PATH/.hangar`` (a bare git directory):
git's own files (``HEAD``, ``objects/``, ``refs/``, ``config``), and hangar's beside them::

    .hangar/
        data/                    the tensor store (a Zarr v3 group)
            zarr.json
            packs/zarr.json
            packs/<id>/zarr.json one pack: a 1-D uint8 Zarr array with one chunk
            packs/<id>/c/0       ... its bytes
            packs/<id>/index     ... its index (written last: the pack's commit point)
            packs/<id>.partial   a pack being written
        cache/                   derived, deletable read caches (location tables)
        staging.json             branch, base commit and tree of the staging area
        writer.lock              the writer lock (JSON: owner, pid, host, since)
        cli_branch               the command line's current branch
        transfers/               markers of in-flight fetches and clones

The lowest layer that needs a path imports it from here; nothing else spells them out.
"""

from __future__ import annotations

import os

HANGAR_DIR = ".hangar"
DATA_DIR = "data"
CACHE_DIR = "cache"
PACKS_DIR = "packs"
STAGING_FILE = "staging.json"
WRITER_LOCK_FILE = "writer.lock"
CLI_BRANCH_FILE = "cli_branch"
TRANSFERS_DIR = "transfers"
PARTIAL_SUFFIX = ".partial"


def hangar_dir(repo_path: str) -> str:
    """The ``.hangar`` directory of the repository at ``repo_path``."""
    return os.path.join(repo_path, HANGAR_DIR)


def data_dir(git_dir: str) -> str:
    """Root of the tensor store of the repository whose ``.hangar`` is ``git_dir``."""
    return os.path.join(git_dir, DATA_DIR)


def cache_dir(git_dir: str) -> str:
    """Directory of derived, deletable read caches."""
    return os.path.join(git_dir, CACHE_DIR)


def writer_lock_path(git_dir: str) -> str:
    """The writer lock file."""
    return os.path.join(git_dir, WRITER_LOCK_FILE)


def packs_dir(store_root: str) -> str:
    """Directory holding every pack of the tensor store rooted at ``store_root``."""
    return os.path.join(store_root, PACKS_DIR)


def pack_dir(store_root: str, pack_id: str) -> str:
    """Directory of one finished pack."""
    return os.path.join(store_root, PACKS_DIR, pack_id)


def pack_chunk_key(pack_id: str) -> str:
    """Store key (``/``-separated, relative to the store root) of a pack's single chunk."""
    return f"{PACKS_DIR}/{pack_id}/c/0"


def pack_chunk_path(store_root: str, pack_id: str) -> str:
    """File holding a finished pack's bytes (``packs/<id>/c/0``)."""
    return os.path.join(store_root, *pack_chunk_key(pack_id).split("/"))


def pack_index_path(store_root: str, pack_id: str) -> str:
    """File holding a finished pack's index."""
    return os.path.join(store_root, PACKS_DIR, pack_id, "index")


def pack_partial_path(store_root: str, pack_id: str) -> str:
    """File a pack's bytes are written to before the pack is published."""
    return os.path.join(store_root, PACKS_DIR, pack_id + PARTIAL_SUFFIX)
