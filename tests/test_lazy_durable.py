"""Samples read lazily from a data remote are stored durably, data before index (as every
other pack): a pack's index never becomes visible over bytes a power loss could still lose.

The order of the system calls is what shows it, so the read runs in a child under ``strace``
(a crash cannot: the page cache survives a killed process).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import clone, expected, pushed  # noqa: F401 - fixtures and builders


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_lazily_read_sample_is_fsynced_before_its_pack_index_appears(pushed, tmp_path, monkeypatch):  # noqa: F811
    r, url, _ = pushed
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server_endpoint(r))
    c = clone(tmp_path, url)
    trace = tmp_path / "trace"
    code = textwrap.dedent(f"""
        import numpy as np
        from hangar import Repository
        co = Repository({c.path!r}).checkout()
        print(int(np.asarray(co.arraysets["img"]["9"]).sum()))
        co.close()
        """)
    out = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(trace), "-e",
                          "trace=fsync,fdatasync,rename,renameat,renameat2", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == int(expected()["9"].sum())
    lines = trace.read_text().splitlines()
    packs = os.path.join(c.path, ".hangar", "data", "packs")
    index_at = [i for i, ln in enumerate(lines) if "rename" in ln and re.search(r'/index"', ln) and packs in ln]
    assert len(index_at) == 1, lines  # the one pack the lazy read wrote
    data_synced = [i for i, ln in enumerate(lines) if re.match(r"\d+\s+f(data)?sync\(\d+<[^>]*\.partial>", ln)]
    assert data_synced and data_synced[0] < index_at[0], lines
    dirs_synced = [i for i, ln in enumerate(lines) if re.match(rf"\d+\s+fsync\(\d+<{re.escape(packs)}>", ln)]
    assert dirs_synced and dirs_synced[0] > index_at[0], lines  # the pack's directory entries too


def s3_server_endpoint(repo) -> str:
    from tests.repo_parts import git_of
    return git_of(repo).config_get("remote.origin.hangarendpoint")
