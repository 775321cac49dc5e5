"""Repository: init, branches, writer lock, log, summary."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hangar import Repository
from hangar.checkout import ReaderCheckout, WriterCheckout


def test_uninitialized_path_warns_when_exists_true(tmp_path):
    with pytest.warns(UserWarning, match="no hangar repository"):
        r = Repository(tmp_path)
    assert r.initialized is False


def test_uninitialized_path_does_not_warn_when_exists_false(tmp_path, recwarn):
    Repository(tmp_path, exists=False)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_missing_directory_raises(tmp_path):
    with pytest.raises(NotADirectoryError, match="does-not-exist"):
        Repository(tmp_path / "does-not-exist")


def test_init_creates_bare_git_repo_with_user_config(repo, run_git):
    assert repo.initialized
    assert os.path.isdir(os.path.join(repo.path, ".hangar", "objects"))
    assert run_git(repo, "config", "user.name").stdout.strip() == "Test User"
    assert run_git(repo, "config", "user.email").stdout.strip() == "test@example.com"
    assert repo.version == __import__("hangar").__version__


def test_init_twice_refuses_without_remove_old(repo):
    with pytest.raises(FileExistsError, match="remove_old"):
        repo.init("A", "a@b.c")


@pytest.mark.slow
def test_init_remove_old_replaces_repository(aset_repo):
    assert aset_repo.list_branches() == ["master"]
    aset_repo.init("New", "new@x.y", remove_old=True)
    assert aset_repo.list_branches() == ["master"] and aset_repo.log(return_contents=True)["order"] == []


@pytest.mark.parametrize("name,email", [("", "a@b.c"), ("A", ""), (None, "a@b.c")])
def test_init_rejects_bad_user(tmp_path, name, email):
    r = Repository(tmp_path, exists=False)
    with pytest.raises(ValueError):
        r.init(name, email)
    assert not r.initialized


def test_operations_on_uninitialized_repo_raise(tmp_path):
    r = Repository(tmp_path, exists=False)
    with pytest.raises(RuntimeError, match="init"):
        r.checkout()
    with pytest.raises(RuntimeError):
        r.list_branches()


def test_checkout_write_must_be_bool(repo):
    with pytest.raises(ValueError, match="write"):
        repo.checkout(write="yes")


def test_checkout_returns_reader_and_writer_types(aset_repo):
    r = aset_repo.checkout()
    w = aset_repo.checkout(write=True)
    assert isinstance(r, ReaderCheckout) and isinstance(w, WriterCheckout)
    r.close()
    w.close()


def test_reader_checkout_of_empty_repo_raises(repo):
    with pytest.raises(ValueError, match="no commits"):
        repo.checkout()


def test_reader_checkout_unknown_branch_and_commit(aset_repo):
    with pytest.raises(ValueError, match="nope"):
        aset_repo.checkout(branch="nope")
    with pytest.raises(ValueError, match="deadbeef"):
        aset_repo.checkout(commit="deadbeef")


def test_reader_checkout_by_commit_takes_precedence(aset_repo):
    first = aset_repo.log(return_contents=True)["head"]
    co = aset_repo.checkout(write=True)
    co.arraysets["foo"][100] = np.zeros(5, dtype=np.int64)
    co.commit("second")
    co.close()
    r = aset_repo.checkout(branch="master", commit=first[:10])
    assert r.commit_hash == first
    assert 100 not in r.arraysets["foo"]
    r.close()


def test_second_writer_is_refused_and_lock_reported(aset_repo):
    co = aset_repo.checkout(write=True)
    assert aset_repo.writer_lock_held
    with pytest.raises(PermissionError, match="pid"):
        aset_repo.checkout(write=True)
    co.close()
    assert not aset_repo.writer_lock_held
    aset_repo.checkout(write=True).close()


@pytest.mark.slow
def test_force_release_writer_lock_after_dead_process(aset_repo):
    code = (f"from hangar import Repository; import os; r = Repository({aset_repo.path!r}); "
            "co = r.checkout(write=True); "
            "os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert aset_repo.writer_lock_held
    with pytest.raises(PermissionError):
        aset_repo.checkout(write=True)
    with pytest.warns(ResourceWarning, match="force-released"):  # documented, as Hangar 0.3 warned
        assert aset_repo.force_release_writer_lock() is True
    assert not aset_repo.writer_lock_held
    aset_repo.checkout(write=True).close()


@pytest.mark.slow
def test_atexit_releases_writer_lock(aset_repo):
    code = f"from hangar import Repository; r = Repository({aset_repo.path!r}); co = r.checkout(write=True)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not aset_repo.writer_lock_held


def test_create_branch_defaults_to_writer_head_and_lists(aset_repo):
    head = aset_repo.log(return_contents=True)["head"]
    assert aset_repo.create_branch("dev") == "dev"
    assert aset_repo.list_branches() == ["dev", "master"]
    r = aset_repo.checkout(branch="dev")
    assert r.commit_hash == head
    r.close()


def test_create_branch_errors(aset_repo, repo):
    aset_repo.create_branch("dev")
    with pytest.raises(ValueError, match="already exists"):
        aset_repo.create_branch("dev")
    with pytest.raises(ValueError, match="not valid"):
        aset_repo.create_branch("bad name")
    with pytest.raises(ValueError, match="0000000"):
        aset_repo.create_branch("x", base_commit="0000000")


def test_create_branch_in_empty_repo_raises(repo):
    with pytest.raises(ValueError, match="no commits"):
        repo.create_branch("dev")


@pytest.mark.slow
def test_create_branch_from_older_commit(aset_repo):
    first = aset_repo.log(return_contents=True)["head"]
    co = aset_repo.checkout(write=True)
    co.metadata["k"] = "v"
    co.commit("second")
    co.close()
    aset_repo.create_branch("old", base_commit=first)
    r = aset_repo.checkout(branch="old")
    assert r.commit_hash == first and "k" not in r.metadata
    r.close()


@pytest.mark.slow
def test_remove_branch_rules(aset_repo):
    aset_repo.create_branch("merged")
    assert aset_repo.remove_branch("merged") == "merged"
    assert aset_repo.list_branches() == ["master"]
    with pytest.raises(ValueError, match="no branch"):
        aset_repo.remove_branch("merged")
    with pytest.raises(PermissionError, match="writer"):
        aset_repo.remove_branch("master")
    aset_repo.create_branch("feature")
    co = aset_repo.checkout(write=True, branch="feature")
    co.metadata["only"] = "here"
    co.commit("unmerged work")
    co.close()
    co = aset_repo.checkout(write=True, branch="master")
    co.close()
    with pytest.raises(ValueError, match="force_delete"):
        aset_repo.remove_branch("feature")
    assert "feature" in aset_repo.list_branches()
    aset_repo.remove_branch("feature", force_delete=True)
    assert aset_repo.list_branches() == ["master"]


def test_log_contents_and_graph(aset_repo, capsys):
    co = aset_repo.checkout(write=True)
    co.metadata["a"] = "b"
    second = co.commit("second commit")
    co.close()
    contents = aset_repo.log(return_contents=True)
    assert contents["head"] == second
    assert len(contents["order"]) == 2 and contents["order"][0] == second
    first = contents["order"][1]
    assert contents["ancestors"][second] == [first] and contents["ancestors"][first] == []
    assert contents["specs"][second]["commit_message"] == "second commit"
    assert contents["specs"][second]["commit_user"] == "Test User"
    aset_repo.log(show_user=True, show_time=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"* {second[:7]} (master)") and "<Test User>" in out[0]
    assert out[0].endswith("second commit") and out[1].startswith(f"* {first[:7]}")


def test_log_unknown_branch_raises(aset_repo):
    with pytest.raises(ValueError, match="nope"):
        aset_repo.log(branch="nope")


def test_summary_prints_arraysets_and_counts(aset_repo, capsys):
    aset_repo.summary()
    out = capsys.readouterr().out
    assert "foo: 10 samples, dtype int64, shape (5,)" in out  # issue 11: numpy names, as other verbs
    assert "bar: 10 samples, dtype float32, shape (2, 3)" in out
    assert "metadata: 1 keys" in out and "first commit" in out


def test_path_is_repository_directory(repo, tmp_path):
    assert repo.path == str(tmp_path)


def test_init_refuses_a_foreign_hangar_directory_unless_remove_old(tmp_path):
    foreign = tmp_path / ".hangar"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    r = Repository(tmp_path, exists=False)
    with pytest.raises(FileExistsError, match="holds no hangar repository"):
        r.init("A", "a@b.c")
    assert (foreign / "notes.txt").read_text() == "not ours" and not r.initialized
    r.init("A", "a@b.c", remove_old=True)
    assert r.initialized and not (foreign / "notes.txt").exists()
