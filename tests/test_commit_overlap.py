"""A commit writes its records pack while the data pack is fsynced, and publishes it only after.

``WriterStage.commit_records`` stages the records pack (written and fsynced under temporary
names) beside the data flush; the pack is renamed into place once the data is durable. A data
flush that fails leaves no records visible: the staged pack is removed, the branch unmoved.
"""

from __future__ import annotations

import os
import subprocess
import threading

import numpy as np
import pytest

import hangar.plumbing.gitrepo as gitrepo_mod
import hangar.store.packs as packs_mod


def _packs(repo) -> list[str]:
    return sorted(os.listdir(os.path.join(repo.path, ".hangar", "objects", "pack")))


def test_a_failed_data_flush_discards_the_staged_records_pack(repo, monkeypatch) -> None:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4,), dtype=np.uint8)
    co["x", [0]] = np.zeros((1, 4), dtype=np.uint8)
    first = co.commit("first")
    co["x", list(range(1, 51))] = np.arange(200, dtype=np.uint8).reshape(50, 4)
    before = _packs(repo)
    staged = threading.Event()
    real_stage = gitrepo_mod.stage_pack

    def stage_then_signal(*args, **kwargs):
        out = real_stage(*args, **kwargs)
        staged.set()
        return out

    def failing_data_fsync(fds):  # the data pack's fsync fails once the records pack is staged
        assert staged.wait(60), "the records pack was not staged beside the data flush"
        raise OSError(5, "Input/output error (test)")

    monkeypatch.setattr(gitrepo_mod, "stage_pack", stage_then_signal)
    monkeypatch.setattr(packs_mod, "fsync_many", failing_data_fsync)
    with pytest.raises(OSError, match="test"):
        co.commit("never visible")
    assert _packs(repo) == before  # no pack published, no temporary file left
    ref = subprocess.run(["git", "--git-dir", os.path.join(repo.path, ".hangar"), "rev-parse", "refs/heads/master"],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert ref == first  # the branch did not move
    monkeypatch.undo()
    co.reset_staging_area()  # what the store's error asks for; the checkout is closed after it
