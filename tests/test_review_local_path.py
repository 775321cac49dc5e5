"""Review of the local data path (stacked/loop staging, commit, reads): defects found by reviewer rA."""

from __future__ import annotations

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.store import sample_digest
from tests.test_review_store import _flip_last_byte, _to_format1


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    """Small arraysets: build a location table on the first read (as tests/test_bulk_reads.py)."""
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


def test_verify_reads_rehashes_a_scattered_batch_gathered_from_the_mapped_packs(repo):
    """A batch of small samples scattered over a pack (one range each: more than 64 KiB apart) is
    gathered from the pack's mapping (TensorStore._gather_mapped). With verify_reads on, its
    samples must be re-hashed like every other batch read: a repository written before the stored
    checksum (index format 1) has nothing else to catch a damaged sample."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(200, 4096), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("big", shape=(4096,), dtype=np.uint8)
    co["big", list(range(200))] = data
    co.commit("first")
    co.close()
    _to_format1(repo)
    _flip_last_byte(repo, data[100])
    keys = list(range(0, 200, 20))  # every 20th sample: 80 KiB apart, so ten scattered ranges
    with Repository(repo.path).checkout() as co:
        aset = co.arraysets["big"]
        store = aset.loader_view().store
        store.verify_reads = True
        with pytest.raises(CorruptDataError):
            store.read(sample_digest(data[100]), "|u1", (4096,))  # the path by digest
        got = aset.get_batch([k for k in keys if k != 100])  # healthy ones read (and the table built)
        assert all(np.array_equal(g, data[k]) for g, k in zip(got, [k for k in keys if k != 100]))
        with pytest.raises(CorruptDataError):
            aset.get_batch(keys)


_AFTER_A_FAILED_WRITE = r'''
import resource, signal, sys
import numpy as np
from hangar import Repository
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
repo = Repository(sys.argv[1], exists=False)
repo.init(user_name="T", user_email="t@example.com")
co = repo.checkout(write=True)
# variable shape: each add is stored at once through the pack writer's buffer (no held stack)
v = co.arraysets.init_arrayset("v", shape=(4096,), dtype=np.uint8, variable_shape=True)
data = np.random.default_rng(1).integers(0, 256, size=(3000, 4096), dtype=np.uint8)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (6 << 20, hard))
failed = None
for i in range(3000):
    try:
        v[i] = data[i]
    except OSError:
        failed = i
        break
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
assert failed is not None, "no write failed under the file size limit"
later = list(range(failed + 1, failed + 100))
for i in later:
    v[i] = data[i]
co.commit("after a failed write")
co.close()
with repo.checkout() as r:
    got = r.arraysets["v"]
    assert failed not in got
    bad = [i for i in [*range(failed), *later] if not np.array_equal(got[i], data[i])]
    assert not bad, bad[:5]
print("ok", failed)
'''


@pytest.mark.slow  # a child process (the file size limit is per process): ~1 s
def test_samples_added_after_a_failed_pack_write_are_committed_readable(tmp_path):
    """A pack write that fails (a full disk; here a file size limit) raises from that add. The
    samples added once there is room again must be stored where their records say: the buffered
    writer kept the failed sample's bytes in its buffer without counting them, so every later
    sample was recorded one sample too early and the commit's data was unreadable (CorruptDataError)."""
    import subprocess
    import sys

    (tmp_path / "r").mkdir()
    proc = subprocess.run([sys.executable, "-c", _AFTER_A_FAILED_WRITE, str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")
