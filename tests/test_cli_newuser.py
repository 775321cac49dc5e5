"""The first ten minutes of a new user (issue 11): flows that must not strand or confuse."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.cli_helpers import fails, hangar, ok
from tests.repo_parts import git_of


# ------------------------------------------------------------------- import
def test_import_commits_the_changes_staged_before_it_like_git_commit(repo, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    ok(repo.path, "arrayset", "create", "images", "--shape", "2,2", "--dtype", "uint8")
    out = ok(repo.path, "import", "images", str(tmp_path / "a.npy"), "-m", "first")
    assert out.startswith("[master ") and "(with the changes staged before)" in out
    assert "status: CLEAN" in ok(repo.path, "status")
    assert ok(repo.path, "arrayset", "list", "--branch", "master").splitlines() == [
        "images\t1\tuint8\t2,2\tfixed\tnamed"]
    assert len(repo.log(return_contents=True)["order"]) == 1


def test_a_failed_import_keeps_the_changes_staged_before_it(aset_repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "0.npy", np.full(5, 7, np.int64))  # a str key '0' next to int key 0
    np.save(src / "a_new.npy", np.ones(5, np.int64))
    np.save(src / "b_bad.npy", np.zeros(6, np.int64))
    co = aset_repo.checkout(write=True)
    co.metadata["note"] = "staged"
    co.arraysets["foo"]["x"] = np.full(5, 3, np.int64)
    co.close()
    head = aset_repo.log(return_contents=True)["head"]
    err = fails(aset_repo.path, "import", "foo", str(src))
    assert "b_bad.npy" in err
    assert aset_repo.log(return_contents=True)["head"] == head
    status = ok(aset_repo.path, "status")
    assert "added: 1 sample in foo" in status and "added: 1 metadata key" in status
    co = aset_repo.checkout(write=True)
    try:
        assert "a_new" not in co.arraysets["foo"] and "0" not in co.arraysets["foo"]
        np.testing.assert_array_equal(co.arraysets["foo"]["x"], np.full(5, 3, np.int64))
    finally:
        co.close()


def test_a_failed_import_restores_samples_it_overwrote(aset_repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a_x.npy", np.ones(5, np.int64))
    np.save(src / "b_bad.npy", np.zeros(6, np.int64))
    co = aset_repo.checkout(write=True)
    co.arraysets["foo"]["a_x"] = np.full(5, 3, np.int64)
    co.close()
    fails(aset_repo.path, "import", "foo", str(src))
    co = aset_repo.checkout(write=True)
    try:
        np.testing.assert_array_equal(co.arraysets["foo"]["a_x"], np.full(5, 3, np.int64))
    finally:
        co.close()


def test_a_failed_import_with_create_over_staged_changes_removes_only_its_arrayset(aset_repo, tmp_path):
    np.save(tmp_path / "good.npy", np.zeros(3, np.int8))
    (tmp_path / "bad.npy").write_bytes(b"not an npy file")
    co = aset_repo.checkout(write=True)
    co.metadata["note"] = "staged"
    co.close()
    fails(aset_repo.path, "import", "fresh", str(tmp_path / "good.npy"), str(tmp_path / "bad.npy"), "--create")
    lines = ok(aset_repo.path, "status").splitlines()
    assert lines[2:] == ["status: DIRTY", "added: 1 metadata key", "next commit: on branch master"]


def test_import_lists_every_invalid_file_name_in_one_error(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("cat photo", "dog", "bird!"):
        np.save(src / f"{name}.npy", np.zeros(2, np.int8))
    ok(repo.path, "arrayset", "create", "a", "--shape", "2", "--dtype", "int8")
    err = fails(repo.path, "import", "a", str(src))
    assert "2 file names are not a valid sample name" in err
    assert "'cat photo.npy'" in err and "'bird!.npy'" in err and "--key-from sanitized" in err
    assert "status: DIRTY" in ok(repo.path, "status")  # the staged arrayset stays staged
    assert "added: arrayset a" in ok(repo.path, "status")


def test_import_key_from_sanitized_maps_file_names_to_valid_keys_and_reports_them(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("cat photo", "dog"):
        np.save(src / f"{name}.npy", np.zeros(2, np.int8))
    ok(repo.path, "arrayset", "create", "a", "--shape", "2", "--dtype", "int8")
    out = ok(repo.path, "import", "a", str(src), "--key-from", "sanitized")
    assert "renamed: 'cat photo.npy' -> cat_photo" in out
    co = repo.checkout()
    try:
        assert sorted(co.arraysets["a"].keys()) == ["cat_photo", "dog"]
    finally:
        co.close()
    assert "--key-from" in fails(repo.path, "import", "a", str(src), "--key-from", "bogus")


def test_import_of_a_directory_skips_hidden_directories(repo):
    np.save(repo.path + "/one.npy", np.zeros(2, np.int8))
    out = ok(repo.path, "import", "a", ".", "--create")
    assert "imported 1 sample from 1 file into a" in out


def test_keyboard_interrupt_during_import_says_nothing_was_committed(aset_repo, tmp_path, monkeypatch):
    import hangar.cli.io_cmds as io_cmds

    np.save(tmp_path / "s.npy", np.zeros(5, np.int64))

    def interrupted(path, shape):  # what Ctrl-C does in the middle of reading
        raise KeyboardInterrupt

    monkeypatch.setattr(io_cmds, "read_samples", interrupted)
    head = aset_repo.log(return_contents=True)["head"]
    result = hangar(aset_repo.path, "import", "foo", str(tmp_path / "s.npy"))
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: nothing was committed"
    assert aset_repo.log(return_contents=True)["head"] == head
    assert "status: CLEAN" in ok(aset_repo.path, "status")


# ---------------------------------------------------------------- set-up polish
def test_summary_prints_dtypes_as_the_other_verbs_do(aset_repo):
    out = ok(aset_repo.path, "summary")
    assert "foo: 10 samples, dtype int64," in out and "bar: 10 samples, dtype float32," in out
    assert "<i8" not in out and "|u1" not in out


# -------------------------------------------------------------------- locks
def _writer_killed_by_sigkill(repo) -> None:
    code = (f"from hangar import Repository; import os, signal; r = Repository({repo.path!r}); "
            "co = r.checkout(write=True); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL


@pytest.mark.slow
def test_a_lock_of_a_writer_killed_with_sigkill_is_reported_stale_and_released_without_force(aset_repo):
    _writer_killed_by_sigkill(aset_repo)
    holder = aset_repo.writer_lock_holder
    assert holder["alive"] is False and holder["host"] == socket.gethostname()
    with pytest.raises(PermissionError, match="no longer running"):
        aset_repo.checkout(write=True)
    err = fails(aset_repo.path, "commit", "-m", "x")
    assert "no longer running" in err and "hangar writer-lock --force-release" in err
    assert "(not running: stale" in ok(aset_repo.path, "writer-lock")
    assert ok(aset_repo.path, "writer-lock", "--force-release").startswith("writer lock: released")
    assert not aset_repo.writer_lock_held
    aset_repo.checkout(write=True).close()


def test_force_release_of_a_running_writer_is_refused_unless_forced_twice(aset_repo):
    co = aset_repo.checkout(write=True)
    try:
        assert aset_repo.writer_lock_holder["alive"] is True
        with pytest.raises(PermissionError) as info:
            aset_repo.checkout(write=True)
        assert "which is running" in str(info.value) and "force_release_writer_lock" not in str(info.value)
        err = fails(aset_repo.path, "writer-lock", "--force-release")
        assert "is running" in err and "--force-release --force" in err
        assert aset_repo.writer_lock_held
        assert ok(aset_repo.path, "writer-lock", "--force-release", "--force").startswith("writer lock: released")
        assert not aset_repo.writer_lock_held
    finally:
        co.close()


def test_force_release_writer_lock_warns_resource_warning_as_hangar_0_3(aset_repo):
    co = aset_repo.checkout(write=True)
    with pytest.warns(ResourceWarning, match="force-released"):
        assert aset_repo.force_release_writer_lock() is True
    co.close()


# ------------------------------------------------------------ current branch
def test_python_only_branch_switches_do_not_warn_as_in_hangar03(aset_repo):
    """Scripts that never used the command line move the writer's branch silently (Hangar 0.3)."""
    import warnings

    aset_repo.create_branch("dev")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aset_repo.checkout(write=True, branch="dev").close()
        aset_repo.checkout(write=True).close()


def test_a_python_writer_checkout_moving_the_cli_current_branch_warns_and_status_says_so(aset_repo):
    from hangar.errors import BranchSwitchWarning

    ok(aset_repo.path, "checkout", "-b", "augment")  # the CLI's own move does not warn
    assert "next commit: on branch augment" in ok(aset_repo.path, "status")
    with pytest.warns(BranchSwitchWarning, match="from branch 'augment' to 'master'"):
        co = aset_repo.checkout(write=True)  # the spec's default branch
    co.close()
    assert ok(aset_repo.path, "status").splitlines()[0] == "branch: master"
    assert "next commit: on branch master" in ok(aset_repo.path, "status")
    assert ok(aset_repo.path, "branch", "-d", "augment").strip() == "deleted branch augment"
    err = fails(aset_repo.path, "branch", "-d", "master")
    assert "is the current branch" in err and "hangar checkout OTHER" in err


def test_a_writer_checkout_of_the_current_branch_does_not_warn(aset_repo):
    import warnings

    ok(aset_repo.path, "checkout", "-b", "augment")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aset_repo.checkout(write=True, branch="augment").close()


# ---------------------------------------------------- failed commands leave nothing
def test_checkout_b_with_staged_changes_fails_and_creates_no_branch(aset_repo):
    ok(aset_repo.path, "arrayset", "create", "tmp", "--shape", "1", "--dtype", "int8")
    assert "uncommitted changes" in fails(aset_repo.path, "checkout", "-b", "dev")
    assert aset_repo.list_branches() == ["master"]


def test_a_failed_clone_removes_the_folder_it_created(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = fails(tmp_path, "clone", f"127.0.0.1:{port}", "dst", "--name", "B", "--email", "b@example.com")
    assert "127.0.0.1" in err
    assert not (tmp_path / "dst").exists()
    (tmp_path / "mine").mkdir()
    fails(tmp_path, "clone", f"127.0.0.1:{port}", "mine", "--name", "B", "--email", "b@example.com")
    assert (tmp_path / "mine").is_dir() and list((tmp_path / "mine").iterdir()) == []  # not ours to remove


# ----------------------------------------------------------- errors speak CLI
@pytest.mark.filterwarnings("ignore::hangar.errors.BranchSwitchWarning")  # Python and CLI mixed on purpose
def test_cli_errors_name_flags_and_verbs_not_python_calls(aset_repo):
    aset_repo.create_branch("dev")
    co = aset_repo.checkout(write=True, branch="dev")
    co["foo", 77] = np.zeros(5, np.int64)
    co.commit("dev only")
    co.close()
    ok(aset_repo.path, "checkout", "master")
    err = fails(aset_repo.path, "branch", "-d", "dev")
    assert "pass -D" in err and "force_delete" not in err
    _commit_on_both(aset_repo)
    err = hangar(aset_repo.path, "merge", "dev").stderr
    assert "--strategy ours" in err and "--strategy theirs" in err and "strategy='" not in err


def _commit_on_both(repo):
    for branch, value in (("dev", "d"), ("master", "m")):
        co = repo.checkout(write=True, branch=branch)
        co.metadata["hello"] = value
        co.commit(f"hello on {branch}")
        co.close()


def test_error_translation_covers_the_python_calls_messages_name():
    from hangar.cli.app import cli_words

    assert cli_words("fetch it (repo.remote.fetch('origin', 'master')), merge") == \
        "fetch it (hangar fetch origin master), merge"
    assert cli_words("max_num_bytes must be a positive int") == "--max-bytes must be a positive int"
    assert cli_words("use repo.remote.fetch_data(...) to retrieve them") == \
        "hangar fetch-data REMOTE BRANCH to retrieve them"


def test_head_head_n_short_hashes_and_remote_branches_are_accepted_where_a_commit_is_expected(aset_repo):
    first = aset_repo.log(return_contents=True)["head"]
    co = aset_repo.checkout(write=True)
    co["foo", 50] = np.zeros(5, np.int64)
    co.commit("second")
    co.close()
    second = aset_repo.log(return_contents=True)["head"]
    assert "foo\t10\t" in ok(aset_repo.path, "arrayset", "list", "--commit", "HEAD~1")
    assert "foo\t11\t" in ok(aset_repo.path, "arrayset", "list", "--commit", "HEAD")
    assert "foo\t10\t" in ok(aset_repo.path, "arrayset", "list", "--commit", "HEAD^")
    assert "foo\t10\t" in ok(aset_repo.path, "arrayset", "list", "--commit", first[:8])
    assert f"commit: {first}" in ok(aset_repo.path, "summary", "HEAD~1")
    assert f"commit: {first}" in ok(aset_repo.path, "summary", "--commit", "master~")
    assert ok(aset_repo.path, "branch", "old", "HEAD~1").strip() == f"created branch old at {first}"
    assert "A\tsample\tfoo\t50" in ok(aset_repo.path, "diff", "HEAD~1") or \
        "D\tsample\tfoo\t50" in ok(aset_repo.path, "diff", "HEAD~1")
    assert "dtype: int64" in ok(aset_repo.path, "view", "foo", "50", "--commit", "HEAD")
    git_of(aset_repo).set_ref("refs/remotes/origin/master", second)  # what a fetch leaves
    assert f"commit: {second}" in ok(aset_repo.path, "summary", "--commit", "origin/master")
    err = fails(aset_repo.path, "summary", "--commit", "HEAD~5")
    assert "has no parent" in err
    err = fails(aset_repo.path, "log", "--commit", "nonsense")
    assert "names no commit" in err and "HEAD" in err
