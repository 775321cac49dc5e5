"""Review of the porcelain, CLI and server changes of integ2: each test pins a bug found there."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import PushRefusedError
from tests import remote_fixtures
from tests.cli_helpers import fails

start_server = remote_fixtures.start_server


def _without_git_env(tmp_path) -> dict:
    """The environment with a PATH that has no ``git`` (the server then serves with dulwich)."""
    bin_dir = tmp_path / "bin-without-git"
    bin_dir.mkdir(exist_ok=True)
    return {**os.environ, "PATH": str(bin_dir)}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_push_refused_for_staged_work_is_push_refused_error_in_both_transports(backend, aset_repo, start_server,
                                                                               tmp_path):
    # the dulwich fallback answered the refusal as a plain "ng" line: the client took it for a
    # race, retried for ~3 s and raised DivergedHistoryError ("fetch, merge") instead of the reason
    srv = start_server(path=aset_repo.path, env=_without_git_env(tmp_path) if backend == "dulwich" else None)
    (tmp_path / "clone").mkdir()
    clone = Repository(tmp_path / "clone", exists=False)
    clone.clone("B", "b@example.com", srv.address)
    co = clone.checkout(write=True)
    co.metadata["from-clone"] = "yes"
    co.commit("clone's change")
    co.close()
    co = aset_repo.checkout(write=True)
    co.metadata["local"] = "staged"
    co.close()
    with pytest.raises(PushRefusedError, match="changes staged but not committed"):
        clone.remote.push("origin", "master")


_HOLD_WRITER = """
import sys
from hangar import Repository
co = Repository(sys.argv[1]).checkout(write=True)
print("ready", flush=True)
sys.stdin.read()
co.close()
"""


@pytest.mark.slow
def test_force_release_refuses_a_live_writer_in_another_pid_namespace_on_the_same_host(aset_repo, tmp_path):
    # containers run with the host's hostname (docker --network host) and their own pid
    # namespace: the holder's pid means nothing here, and os.kill said "not running", so
    # `hangar writer-lock --force-release` (no --force) took the lock of a running writer
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare --pid (root or user namespaces)")
    script = tmp_path / "hold.py"
    script.write_text(_HOLD_WRITER)
    # a pid far above this host's pid_max inside the namespace: no process here has it
    cmd = (f"echo 3999000 > /proc/sys/kernel/ns_last_pid 2>/dev/null; "
           f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(aset_repo.path)}")
    proc = subprocess.Popen([unshare, "--pid", "--fork", "--mount-proc", "sh", "-c", cmd],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        holder = aset_repo.writer_lock_holder
        assert holder is not None and holder["alive"] is not False, holder
        assert "--force" in fails(aset_repo.path, "writer-lock", "--force-release")
        assert aset_repo.writer_lock_holder is not None  # still held by the running writer
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == 0
    assert aset_repo.writer_lock_holder is None


@pytest.mark.parametrize("code", ["00", "01", "10"])
def test_hangar03_backend_codes_survive_the_records_validation(repo, code):
    # integ2 merged the backend aliases (issue 10) with the validation of records loaded from
    # git (issue 12): the validation knew only our names, so init_arrayset(backend='00') raised
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("z", shape=(4,), dtype=np.uint8, backend=code)
    aset[1] = np.arange(4, dtype=np.uint8)
    co.commit("a Hangar 0.3 backend code")
    co.close()
    co = repo.checkout()
    try:
        assert co.arraysets["z"].backend == code
        assert co["z", 1].tolist() == [0, 1, 2, 3]
    finally:
        co.close()


_UNGUARDED_MODULE = """
from hangar import Repository
co = Repository({path!r}).checkout()
batch = co.arraysets["foo"].get_batch(list(range(10)), n_cpus=2, start_method="spawn")
print("sum", int(sum(a.sum() for a in batch)))
co.close()
"""


@pytest.mark.slow
def test_get_batch_in_a_module_run_with_python_m_without_main_guard_works(aset_repo, tmp_path):
    # spawn re-runs a module started with `python -m NAME` too (as __mp_main__): only a
    # package's __main__ is skipped. The guard detection took every -m run for safe, so the
    # workers ran the module's get_batch again and died with multiprocessing's bootstrapping error
    (tmp_path / "train_mod.py").write_text(_UNGUARDED_MODULE.format(path=aset_repo.path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "train_mod"], capture_output=True, text=True, timeout=45,
                          cwd=tmp_path, env=env)  # unfixed, the pool restarts dying workers forever
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = sum(int((np.arange(5) + i).sum()) for i in range(10))
    assert proc.stdout.split() == ["sum", str(expected)]  # printed once: the module ran once


def test_a_writer_whose_lock_was_force_released_cannot_overwrite_the_next_writers_staged_work(aset_repo):
    # force_release_writer_lock let a second writer stage work; the first writer, still open,
    # then committed and saved its staging state over it: the second writer's sample was lost
    # without a word (Hangar 0.3 refused every operation of a writer that lost its lock)
    first = aset_repo.checkout(write=True)
    with pytest.warns(ResourceWarning):
        aset_repo.force_release_writer_lock()
    second = aset_repo.checkout(write=True)
    second["foo", 100] = np.full(5, 100, np.int64)
    second.close()
    first["foo", 200] = np.full(5, 200, np.int64)
    with pytest.raises(PermissionError, match="force-released"):
        first.commit("from the writer that lost its lock")
    with pytest.raises(PermissionError, match="force-released"):
        first.close()
    co = aset_repo.checkout(write=True)
    try:
        assert co["foo", 100].tolist() == [100] * 5  # the second writer's staged work is there
        assert 200 not in co["foo"]
    finally:
        co.close()


def test_a_writer_whose_lock_was_force_released_and_left_free_keeps_working(aset_repo):
    co = aset_repo.checkout(write=True)
    with pytest.warns(ResourceWarning):
        aset_repo.force_release_writer_lock()
    co["foo", 300] = np.full(5, 3, np.int64)
    co.commit("nobody else wrote: the lock is taken again")
    assert aset_repo.writer_lock_held
    co.close()
    assert not aset_repo.writer_lock_held
