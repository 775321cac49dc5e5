"""Bulk reads served from a private mapping of the pack (no copy): correct, checked, private."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import hangar.arrayset
from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.store import sample_digest
from tests.repo_parts import flip_stored_byte, store_of

N, SHAPE = 3000, (28, 28)  # 2.35 MB: above the 1 MiB from which back-to-back samples are mapped


@pytest.fixture(autouse=True)
def build_tables_at_once(monkeypatch):
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_AFTER", 0)
    monkeypatch.setattr(hangar.arrayset, "_BUILD_TABLE_SHARE", 0)


@pytest.fixture
def w1(repo) -> tuple[Repository, np.ndarray]:
    """'x': N random uint8 samples (keys 0..N-1) in one commit (one pack), then 'x' keys N..N+9
    in a second commit (a second pack)."""
    data = np.random.default_rng(5).integers(0, 256, size=(N + 10, *SHAPE), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)
    co["x", list(range(N))] = data[:N]
    co.commit("first")
    co["x", list(range(N, N + 10))] = data[N:]
    co.commit("second")
    co.close()
    return Repository(repo.path), data


def _pack_path(repo: Repository, arr: np.ndarray) -> str:
    store = store_of(repo)
    store.refresh()
    loc = store.location(sample_digest(arr))
    return os.path.join(repo.path, ".hangar", "data", "packs", loc.pack, "c", "0")


def _mapped(path: str) -> int:
    """How many mappings of ``path`` this process holds now."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(path))


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_a_sequential_batch_is_served_from_a_mapping_released_with_its_arrays(w1):
    repo, data = w1
    path = os.path.realpath(_pack_path(repo, data[0]))
    with repo.checkout() as co:
        x = co.arraysets["x"]
        before = _mapped(path)
        got = x.get_batch(list(range(N)))
        assert isinstance(got, list) and len(got) == N
        np.testing.assert_array_equal(np.stack(got), data[:N])
        assert _mapped(path) == before + 1  # the pack mapped, not copied
        del got
        gc.collect()
        assert _mapped(path) == before  # unmapped with the last array over it


def test_mapped_rows_are_writeable_and_an_edit_stays_in_the_callers_array(w1):
    repo, data = w1
    path = _pack_path(repo, data[0])
    with open(path, "rb") as f:
        on_disk = f.read()
    with repo.checkout() as co:
        x = co.arraysets["x"]
        got = x.get_batch(list(range(N)))
        got[7][...] = 0  # copy-on-write: this process's page only
        got[8] += 1
        assert (got[7] == 0).all()
        again = x.get_batch(list(range(N)))  # a fresh mapping: the stored bytes
        np.testing.assert_array_equal(np.stack(again), data[:N])
        np.testing.assert_array_equal(x[7], data[7])
    with open(path, "rb") as f:
        assert f.read() == on_disk  # nothing written to the pack


def test_batches_not_back_to_back_mixed_packs_out_and_missing_keys_read_as_before(w1):
    repo, data = w1
    with repo.checkout() as co:
        x = co.arraysets["x"]
        everything = list(range(N + 10))  # two packs: read by copy
        np.testing.assert_array_equal(np.stack(x.get_batch(everything)), data)
        rev = everything[::-1]
        np.testing.assert_array_equal(np.stack(x.get_batch(rev)), data[rev])
        shuffled = np.random.default_rng(2).permutation(N).tolist()  # gathered from a mapping
        got = x.get_batch(shuffled)
        np.testing.assert_array_equal(np.stack(got), data[shuffled])
        got[0][...] = 0  # a copy out of the mapping: the caller's to change
        np.testing.assert_array_equal(x[shuffled[0]], data[shuffled[0]])
        evens = list(range(0, N, 2))  # gaps between samples
        np.testing.assert_array_equal(np.stack(x.get_batch(evens)), data[evens])
        out = np.empty((N, *SHAPE), dtype=np.uint8)
        assert x.get_batch(list(range(N)), out=out) is out  # out= always fills the caller's array
        np.testing.assert_array_equal(out, data[:N])
        with pytest.raises(KeyError, match=str(N + 10)):
            x.get_batch(list(range(N)) + [N + 10])
        small = x.get_batch(list(range(100)))  # under 1 MiB: copied
        np.testing.assert_array_equal(np.stack(small), data[:100])


@pytest.mark.parametrize("where", [0, N - 1])  # first and last sample of the mapped range
@pytest.mark.parametrize("order", ["sequential", "shuffled"])  # rows of a mapping / gathered from one
def test_a_flipped_byte_in_a_mapped_batch_is_a_corrupt_data_error(w1, where, order):
    repo, data = w1
    flip_stored_byte(repo, data[where], 100)
    with repo.checkout() as co:
        x = co.arraysets["x"]
        keys = list(range(N)) if order == "sequential" else np.random.default_rng(1).permutation(N).tolist()
        with pytest.raises(CorruptDataError, match="do not match"):
            x.get_batch(keys)
        ok = [i for i in keys if i != where]
        np.testing.assert_array_equal(np.stack(x.get_batch(ok)), data[ok])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_single_reads_copy_from_one_mapping_per_pack_and_the_copies_are_the_callers(w1):
    repo, data = w1
    paths = {os.path.realpath(_pack_path(repo, data[i])) for i in (0, N)}
    assert len(paths) == 2
    with repo.checkout() as co:
        x = co.arraysets["x"]
        keys = [0, 5, N - 1, N, N + 9] * 20
        got = [x[k] for k in keys]
        for k, arr in zip(keys, got):
            np.testing.assert_array_equal(arr, data[k])
        assert all(_mapped(p) == 1 for p in paths)  # one mapping each, however many reads
        got[0][...] = 0  # a copy: the next read still sees the stored bytes
        np.testing.assert_array_equal(x[0], data[0])



def test_reads_fall_back_to_copies_when_the_kernel_refuses_a_mapping(w1, monkeypatch):
    """mmap fails with ENOMEM under an address-space limit (RLIMIT_AS): bulk and single reads copy
    with pread instead, with the same results."""
    import hangar.store.packs as packs

    def refuse(fd, offset, length):
        return None  # what map_private answers when mmap fails (ENOMEM)

    monkeypatch.setattr(packs, "map_private", refuse)
    repo, data = w1
    with repo.checkout() as co:
        x = co.arraysets["x"]
        np.testing.assert_array_equal(np.stack(x.get_batch(list(range(N)))), data[:N])
        np.testing.assert_array_equal(x[17], data[17])
        np.testing.assert_array_equal(x[N + 3], data[N + 3])


_LIMITED = """
import resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
from hangar import Repository
x = Repository(sys.argv[1]).checkout().arraysets["x"]
data = np.load(sys.argv[2])
for k in (0, 17, len(data) - 1):
    np.testing.assert_array_equal(x[k], data[k])
path = sys.argv[3]
print(sum(1 for line in open("/proc/self/maps") if line.rstrip().endswith(path)))
"""


@pytest.mark.slow  # a fresh interpreter: ~1 s
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_under_an_address_space_limit_single_reads_keep_no_pack_mapped(w1, tmp_path):
    """A whole pack kept mapped for single reads would take address space the process's next
    allocations may need under RLIMIT_AS: there single reads pread, with the same results."""
    import subprocess
    import sys

    repo, data = w1
    np.save(tmp_path / "d.npy", data[:N])
    path = os.path.realpath(_pack_path(repo, data[0]))
    out = subprocess.run([sys.executable, "-c", _LIMITED, repo.path, str(tmp_path / "d.npy"), path],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "0"


_AT_EXIT = """
import atexit, sys
import numpy as np
held = []
# registered before hangar maps anything, so it runs after any exit hook hangar registers
atexit.register(lambda: print(int(sum(int(a.sum()) for a in held[0][:3])), flush=True))
from hangar import Repository
co = Repository(sys.argv[1]).checkout()
held.append(co.arraysets["x"].get_batch(list(range(int(sys.argv[2])))))
assert held[0][0].base is not None  # rows of a mapping, not copies
"""


@pytest.mark.slow  # a fresh interpreter: ~1 s
def test_arrays_over_a_mapping_stay_readable_in_exit_handlers(w1):
    """An exit handler (the caller's, or a library's) may still use the arrays a batch read
    returned: the mapping under them is not unmapped by an interpreter-exit hook (that read
    unmapped memory: SIGSEGV, exit code -11)."""
    import subprocess
    import sys

    repo, data = w1
    out = subprocess.run([sys.executable, "-c", _AT_EXIT, repo.path, str(N)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.strip() == str(int(data[:3].astype(np.int64).sum()))
