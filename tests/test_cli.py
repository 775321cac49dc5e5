"""The ``hangar`` command line, driven in-process with typer's CliRunner against real repositories."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hangar import Repository, __version__
from hangar.cli import app
from hangar.cli.context import CliError, parse_shape, parse_size
from tests.cli_helpers import fails, hangar, ok, runner


def all_commands():
    """``[['init'], ['arrayset', 'create'], ...]`` for every verb of the app."""
    import typer.main

    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():
        sub = getattr(cmd, "commands", None)
        if sub:
            out += [[name, s] for s in sub]
        else:
            out.append([name])
    return out


# ------------------------------------------------------------------ basics
def test_version_prints_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hangar {__version__}"


@pytest.mark.slow
def test_every_verb_has_one_line_help_and_an_example():
    commands = all_commands()
    names = {" ".join(c) for c in commands}
    for expected in ("init", "status", "log", "summary", "branch", "diff", "merge", "commit", "reset",
                     "arrayset create", "arrayset remove", "arrayset list", "import", "export", "view",
                     "writer-lock", "remote add", "remote remove", "remote list", "clone", "fetch",
                     "fetch-data", "push", "server"):
        assert expected in names
    for cmd in commands:
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, cmd
        assert f"Example: hangar {cmd[0]}" in result.stdout, cmd


def test_init_creates_repository_and_second_init_needs_overwrite(tmp_path):
    target = tmp_path / "new"
    out = ok(target, "init", "--name", "Ann", "--email", "ann@example.com")
    assert out.strip() == f"Initialized empty hangar repository in {target / '.hangar'}"
    assert Repository(target, exists=False).initialized
    err = fails(target, "init", "--name", "Ann", "--email", "ann@example.com")
    assert "--overwrite" in err
    out = ok(target, "init", "--name", "Bob", "--email", "bob@example.com", "--overwrite")
    assert out.startswith("Reinitialized")


def test_command_outside_a_repository_prints_one_error_line_and_exits_1(tmp_path):
    err = fails(tmp_path, "status")
    assert err.count("\n") == 1
    assert "not a hangar repository" in err and "hangar init" in err


def test_debug_flag_lets_the_traceback_through(tmp_path):
    result = runner.invoke(app, ["-C", str(tmp_path), "--debug", "status"])
    assert result.exit_code == 1
    assert isinstance(result.exception, CliError)
    assert "error:" not in result.stderr


def test_missing_directory_for_dash_c_is_an_error(tmp_path):
    err = fails(tmp_path / "nope", "log")
    assert "no such directory" in err


def test_repository_is_found_from_a_subdirectory(aset_repo):
    sub = os.path.join(aset_repo.path, "a", "b")
    os.makedirs(sub)
    assert "first commit" in ok(sub, "log")


# --------------------------------------------------- staging and commits
def test_arrayset_create_then_commit_moves_status_from_dirty_to_clean(repo):
    out = ok(repo.path, "status")
    assert out.splitlines() == ["branch: master", "head: (no commits yet)", "status: CLEAN",
                                "next commit: on branch master"]  # issue 11 added the last line
    out = ok(repo.path, "arrayset", "create", "digits", "--shape", "28,28", "--dtype", "uint8")
    assert out.startswith("created arrayset digits: dtype uint8, shape 28,28")
    out = ok(repo.path, "status")
    assert "status: DIRTY" in out.splitlines()
    assert "added: arrayset digits" in out.splitlines()
    assert ok(repo.path, "arrayset", "list").splitlines() == ["digits\t0\tuint8\t28,28\tfixed\tnamed"]
    out = ok(repo.path, "commit", "-m", "add digits")
    head = repo.log(return_contents=True)["head"]
    assert out.strip() == f"[master {head}] add digits"
    assert ok(repo.path, "status").splitlines() == ["branch: master", f"head: {head}", "status: CLEAN",
                                                    "next commit: on branch master"]
    co = repo.checkout()
    try:
        assert co.arraysets["digits"].shape == (28, 28)
    finally:
        co.close()


def test_arrayset_create_flags_reach_the_schema(repo):
    ok(repo.path, "arrayset", "create", "v", "--shape", "10,3", "--dtype", "float32", "--variable-shape",
       "--unnamed")
    assert ok(repo.path, "arrayset", "list").splitlines() == ["v\t0\tfloat32\t10,3\tvariable\tunnamed"]


def test_arrayset_create_with_bad_dtype_or_shape_reports_the_value(repo):
    assert "'nosuchtype'" in fails(repo.path, "arrayset", "create", "a", "--shape", "3", "--dtype", "nosuchtype")
    assert "'3,b'" in fails(repo.path, "arrayset", "create", "a", "--shape", "3,b", "--dtype", "uint8")


def test_status_lists_staged_samples_and_metadata_by_kind(aset_repo):
    co = aset_repo.checkout(write=True)
    try:
        co.arraysets["foo"][42] = np.zeros(5, dtype=np.int64)
        co.arraysets["foo"][43] = np.zeros(5, dtype=np.int64)
        del co.arraysets["bar"]["3"]
        co.metadata["hello"] = "there"
    finally:
        co.close()
    lines = ok(aset_repo.path, "status").splitlines()
    assert "status: DIRTY" in lines
    assert "added: 2 samples in foo" in lines
    assert "removed: 1 sample in bar" in lines
    assert "mutated: 1 metadata key" in lines


def test_status_while_another_writer_holds_the_lock_reports_unknown(aset_repo):
    head = aset_repo.log(return_contents=True)["head"]
    co = aset_repo.checkout(write=True)  # e.g. a notebook writing
    try:
        co["foo", 0] = np.zeros(5, dtype=np.int64)
        lines = ok(aset_repo.path, "status").splitlines()
    finally:
        co.close()
    assert lines[:3] == ["branch: master", f"head: {head}", "status: UNKNOWN"]
    assert lines[3].startswith("note: the staging area is in use") and "lock" in lines[3]
    assert "status: DIRTY" in ok(aset_repo.path, "status").splitlines()  # once released, the change shows


def test_arrayset_list_while_another_writer_holds_the_lock_lists_the_head(aset_repo):
    co = aset_repo.checkout(write=True)
    try:
        co.arraysets.init_arrayset("staged_only", shape=(1,), dtype=np.uint8)
        result = hangar(aset_repo.path, "arrayset", "list")
    finally:
        co.close()
    assert result.exit_code == 0
    assert [row.split("\t")[0] for row in result.stdout.splitlines()] == ["bar", "foo"]  # committed ones
    assert "listing the head of master" in result.stderr
    names = [row.split("\t")[0] for row in ok(aset_repo.path, "arrayset", "list").splitlines()]
    assert names == ["bar", "foo", "staged_only"]


def test_commit_without_staged_changes_fails(aset_repo):
    err = fails(aset_repo.path, "commit", "-m", "nothing")
    assert "nothing to commit" in err


def test_arrayset_remove_is_staged_until_commit(aset_repo):
    ok(aset_repo.path, "arrayset", "remove", "bar")
    assert [ln.split("\t")[0] for ln in ok(aset_repo.path, "arrayset", "list").splitlines()] == ["foo"]
    listed = ok(aset_repo.path, "arrayset", "list", "--branch", "master").splitlines()
    assert [ln.split("\t")[0] for ln in listed] == ["bar", "foo"]
    ok(aset_repo.path, "commit", "-m", "drop bar")
    assert ok(aset_repo.path, "arrayset", "list", "--branch", "master").splitlines()[0].startswith("foo\t10\t")


def test_reset_drops_staged_changes(aset_repo):
    head = aset_repo.log(return_contents=True)["head"]
    assert "nothing to reset" in ok(aset_repo.path, "reset")
    ok(aset_repo.path, "arrayset", "create", "tmp", "--shape", "2", "--dtype", "int8")
    assert ok(aset_repo.path, "reset").strip() == f"staging area reset to {head}"
    assert "status: CLEAN" in ok(aset_repo.path, "status")
    assert "tmp" not in ok(aset_repo.path, "arrayset", "list")


def test_log_and_summary_by_branch_and_commit(aset_repo):
    first = aset_repo.log(return_contents=True)["head"]
    ok(aset_repo.path, "arrayset", "create", "extra", "--shape", "2", "--dtype", "int8")
    ok(aset_repo.path, "commit", "-m", "second commit")
    out = ok(aset_repo.path, "log", "--user")
    assert out.index("second commit") < out.index("first commit")
    assert "<Test User>" in out
    out = ok(aset_repo.path, "log", "--commit", first)
    assert "first commit" in out and "second commit" not in out
    assert "arraysets: 3" in ok(aset_repo.path, "summary", "master")
    assert "arraysets: 2" in ok(aset_repo.path, "summary", "--commit", first)
    assert "not both" in fails(aset_repo.path, "log", "master", "--commit", first)


# ---------------------------------------------------------------- branches
def test_branch_create_list_checkout_and_delete(aset_repo):
    head = aset_repo.log(return_contents=True)["head"]
    assert ok(aset_repo.path, "branch").splitlines() == ["* master"]
    assert ok(aset_repo.path, "branch", "dev").strip() == f"created branch dev at {head}"
    assert ok(aset_repo.path, "branch").splitlines() == ["  dev", "* master"]
    ok(aset_repo.path, "checkout", "dev")
    assert ok(aset_repo.path, "branch").splitlines() == ["* dev", "  master"]
    ok(aset_repo.path, "arrayset", "create", "devonly", "--shape", "1", "--dtype", "int8")
    out = ok(aset_repo.path, "commit", "-m", "on dev")
    assert out.startswith("[dev ")
    assert aset_repo.log(branch="master", return_contents=True)["head"] == head
    ok(aset_repo.path, "checkout", "master")
    assert "commits no other branch holds" in fails(aset_repo.path, "branch", "-d", "dev")
    assert ok(aset_repo.path, "branch", "-D", "dev").strip() == "deleted branch dev"
    assert ok(aset_repo.path, "branch").splitlines() == ["* master"]


def test_branch_from_a_named_base_branch(aset_repo):
    ok(aset_repo.path, "checkout", "-b", "dev")
    ok(aset_repo.path, "arrayset", "create", "x", "--shape", "1", "--dtype", "int8")
    ok(aset_repo.path, "commit", "-m", "dev work")
    dev_head = aset_repo.log(branch="dev", return_contents=True)["head"]
    master_head = aset_repo.log(branch="master", return_contents=True)["head"]
    assert ok(aset_repo.path, "branch", "fromdev", "dev").strip().endswith(dev_head)
    assert ok(aset_repo.path, "branch", "frommaster", master_head).strip().endswith(master_head)


def test_checkout_with_staged_changes_refuses_to_switch(aset_repo):
    ok(aset_repo.path, "branch", "dev")
    ok(aset_repo.path, "arrayset", "create", "x", "--shape", "1", "--dtype", "int8")
    assert "uncommitted changes" in fails(aset_repo.path, "checkout", "dev")
    assert ok(aset_repo.path, "branch").splitlines() == ["  dev", "* master"]


# ------------------------------------------------------------ diff and merge
def _commit_on(repo, branch, message, edit):
    """Commit ``edit`` on ``branch`` through the Python API, leaving the current branch as it was."""
    current = repo.writer_branch
    co = repo.checkout(write=True, branch=branch)
    try:
        edit(co)
        co.commit(message)
    finally:
        co.close()
    repo.checkout(write=True, branch=current).close()


def test_diff_shows_staged_changes_as_tab_separated_lines(aset_repo):
    co = aset_repo.checkout(write=True)
    try:
        co.arraysets["foo"][10] = np.zeros(5, dtype=np.int64)
        co.arraysets["foo"][0] = np.ones(5, dtype=np.int64)
        del co.arraysets["bar"]["2"]
        co.metadata["new"] = "value"
    finally:
        co.close()
    assert ok(aset_repo.path, "diff").splitlines() == [
        "A\tsample\tfoo\t10", "A\tmetadata\tnew", "D\tsample\tbar\t2", "M\tsample\tfoo\t0"]


def test_diff_against_a_branch_and_a_commit(aset_repo):
    first = aset_repo.log(return_contents=True)["head"]
    aset_repo.create_branch("dev")
    _commit_on(aset_repo, "dev", "dev adds",
               lambda co: co.arraysets.init_arrayset("baz", shape=(1,), dtype="u1"))
    dev_head = aset_repo.log(branch="dev", return_contents=True)["head"]
    assert ok(aset_repo.path, "diff", "dev").splitlines() == ["A\tarrayset\tbaz"]
    assert ok(aset_repo.path, "diff", dev_head).splitlines() == ["A\tarrayset\tbaz"]
    assert ok(aset_repo.path, "diff", first).splitlines() == []
    assert "nosuch" in fails(aset_repo.path, "diff", "nosuch")


def test_merge_fast_forward_and_three_way(aset_repo):
    aset_repo.create_branch("dev")
    _commit_on(aset_repo, "dev", "dev work", lambda co: co.metadata.add("dev", "1"))
    dev_head = aset_repo.log(branch="dev", return_contents=True)["head"]
    out = ok(aset_repo.path, "merge", "dev")
    assert out.strip() == f"[master {dev_head}] fast-forward to dev"
    aset_repo.create_branch("dev2")
    _commit_on(aset_repo, "dev2", "dev2 work", lambda co: co.metadata.add("dev2", "2"))
    ok(aset_repo.path, "checkout", "master")
    _commit_on(aset_repo, "master", "master work", lambda co: co.metadata.add("master", "3"))
    out = ok(aset_repo.path, "merge", "dev2", "-m", "join dev2")
    head = aset_repo.log(branch="master", return_contents=True)
    assert out.strip() == f"[master {head['head']}] join dev2"
    assert len(head["ancestors"][head["head"]]) == 2
    co = aset_repo.checkout()
    try:
        assert {co.metadata[k] for k in ("dev", "dev2", "master")} == {"1", "2", "3"}
    finally:
        co.close()


def test_merge_conflict_fails_with_error_line_and_details(aset_repo):
    aset_repo.create_branch("dev")
    _commit_on(aset_repo, "dev", "dev", lambda co: co.metadata.add("hello", "dev"))
    _commit_on(aset_repo, "master", "master", lambda co: co.metadata.add("hello", "master"))
    before = aset_repo.log(branch="master", return_contents=True)["head"]
    result = hangar(aset_repo.path, "merge", "dev")
    assert result.exit_code == 1
    first, *details = result.stderr.splitlines()
    assert first.startswith("error: cannot merge 'dev' into 'master'")
    assert any("t3" in d and "'hello'" in d for d in details)
    assert aset_repo.log(branch="master", return_contents=True)["head"] == before
    out = ok(aset_repo.path, "merge", "dev", "--strategy", "theirs")
    assert out.startswith("[master ")
    co = aset_repo.checkout()
    try:
        assert co.metadata["hello"] == "dev"
    finally:
        co.close()


def test_diff_lists_conflicts_of_diverged_branches(aset_repo):
    aset_repo.create_branch("dev")
    _commit_on(aset_repo, "dev", "dev", lambda co: co.metadata.add("hello", "dev"))
    _commit_on(aset_repo, "master", "master", lambda co: co.metadata.add("hello", "master"))
    lines = ok(aset_repo.path, "diff", "dev").splitlines()
    assert "M\tmetadata\thello" in lines
    assert "C:t3\tmetadata\thello" in lines


# ---------------------------------------------------------- import / export
def test_import_npy_npz_and_batches_names_samples_after_files(repo, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    np.save(src / "one.npy", np.full((2, 3), 1, dtype=np.int16))
    np.save(src / "sub" / "batch.npy", np.arange(24, dtype=np.int16).reshape(4, 2, 3))
    np.savez(src / "pair.npz", left=np.zeros((2, 3), np.int16), right=np.ones((2, 3), np.int16))
    (src / "README.txt").write_text("ignored")
    ok(repo.path, "arrayset", "create", "a", "--shape", "2,3", "--dtype", "int16")
    ok(repo.path, "commit", "-m", "schema")
    out = ok(repo.path, "import", "a", str(src), "-m", "bulk")
    assert out.splitlines()[1] == "imported 7 samples from 3 files into a"
    specs = repo.log(return_contents=True)
    assert specs["specs"][specs["head"]]["commit_message"] == "bulk"
    assert len(specs["order"]) == 2  # one commit for the whole import
    co = repo.checkout()
    try:
        aset = co.arraysets["a"]
        assert sorted(aset.keys()) == ["batch.0", "batch.1", "batch.2", "batch.3", "one", "pair.left",
                                       "pair.right"]
        np.testing.assert_array_equal(aset["batch.2"], np.arange(12, 18, dtype=np.int16).reshape(2, 3))
        np.testing.assert_array_equal(aset["pair.right"], np.ones((2, 3), np.int16))
    finally:
        co.close()


def test_import_with_create_makes_the_arrayset_from_the_first_sample(repo, tmp_path):
    np.save(tmp_path / "s1.npy", np.zeros((4,), np.float64))
    out = ok(repo.path, "import", "new", str(tmp_path / "s1.npy"), "--create")
    assert "imported 1 sample from 1 file into new" in out
    assert ok(repo.path, "arrayset", "list").splitlines() == ["new\t1\tfloat64\t4\tfixed\tnamed"]


def test_import_of_a_bad_file_leaves_nothing_staged_or_committed(aset_repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a_good.npy", np.zeros(5, np.int64))
    np.save(src / "b_bad.npy", np.zeros(6, np.int64))
    head = aset_repo.log(return_contents=True)["head"]
    err = fails(aset_repo.path, "import", "foo", str(src))
    assert "b_bad.npy" in err and "shape" in err
    assert aset_repo.log(return_contents=True)["head"] == head
    assert "status: CLEAN" in ok(aset_repo.path, "status")


def test_import_refuses_two_files_giving_one_sample_name(repo, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    np.save(tmp_path / "x" / "same.npy", np.zeros(2, np.int8))
    np.save(tmp_path / "y" / "same.npy", np.zeros(2, np.int8))
    ok(repo.path, "arrayset", "create", "a", "--shape", "2", "--dtype", "int8")
    ok(repo.path, "commit", "-m", "schema")
    err = fails(repo.path, "import", "a", str(tmp_path / "x"), str(tmp_path / "y"))
    assert "'same'" in err and "comes from both" in err


def test_import_refuses_an_unknown_arrayset_and_missing_files(aset_repo, tmp_path):
    np.save(tmp_path / "s.npy", np.zeros(5, np.int64))
    assert "--create" in fails(aset_repo.path, "import", "nosuch", str(tmp_path / "s.npy"))
    assert "no such file" in fails(aset_repo.path, "import", "foo", str(tmp_path / "missing.npy"))


def test_import_into_another_branch_keeps_the_current_branch(aset_repo, tmp_path):
    aset_repo.create_branch("dev")
    np.save(tmp_path / "s.npy", np.zeros(5, np.int64))
    out = ok(aset_repo.path, "import", "foo", str(tmp_path / "s.npy"), "--branch", "dev")
    assert out.startswith("[dev ")
    assert ok(aset_repo.path, "branch").splitlines() == ["  dev", "* master"]
    assert "foo\t11\t" in ok(aset_repo.path, "arrayset", "list", "--branch", "dev")
    assert "foo\t10\t" in ok(aset_repo.path, "arrayset", "list", "--branch", "master")


def test_export_npy_round_trips_every_sample_of_a_commit(aset_repo, tmp_path):
    first = aset_repo.log(return_contents=True)["head"]
    _commit_on(aset_repo, "master", "change", lambda co: co.arraysets["foo"].add(np.full(5, 99), 0))
    out = ok(aset_repo.path, "export", "foo", str(tmp_path / "out"), "--commit", first)
    assert out.strip() == f"exported 10 samples of foo to {tmp_path / 'out'}"
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"{i}.npy" for i in range(10))
    for i in range(10):
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{i}.npy"), np.arange(5) + i)
    ok(aset_repo.path, "export", "foo", str(tmp_path / "now"))
    np.testing.assert_array_equal(np.load(tmp_path / "now" / "0.npy"), np.full(5, 99))


def test_export_png_of_a_non_image_arrayset_fails_clearly(aset_repo, tmp_path):
    pytest.importorskip("PIL")
    err = fails(aset_repo.path, "export", "bar", str(tmp_path / "o"), "--format", "png")
    assert "float32" in err and "--format npy" in err
    assert "'tiff'" in fails(aset_repo.path, "export", "bar", str(tmp_path / "o"), "--format", "tiff")


def test_view_prints_shape_dtype_and_statistics(aset_repo):
    lines = ok(aset_repo.path, "view", "foo", "3").splitlines()
    assert lines == ["arrayset: foo", "key: 3", "dtype: int64", "shape: 5", "min: 3", "max: 7",
                     "mean: 5", "std: 1.41421"]
    lines = ok(aset_repo.path, "view", "bar", "3").splitlines()
    assert lines[1] == "key: '3'" and lines[3] == "shape: 2,3" and "mean: 3" in lines
    assert "no sample with key '99'" in fails(aset_repo.path, "view", "bar", "99")


def test_view_png_writes_the_sample_as_an_image(repo, tmp_path):
    Image = pytest.importorskip("PIL.Image")

    co = repo.checkout(write=True)
    try:
        co.arraysets.init_arrayset("img", shape=(4, 6), dtype=np.uint8)["pic"] = \
            np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
        co.commit("image")
    finally:
        co.close()
    out = ok(repo.path, "view", "img", "pic", "--png", str(tmp_path / "pic.png"))
    assert f"png: {tmp_path / 'pic.png'}" in out
    with Image.open(tmp_path / "pic.png") as img:
        np.testing.assert_array_equal(np.asarray(img), np.arange(24, dtype=np.uint8).reshape(4, 6) * 10)


# ------------------------------------------------------------- writer lock
def test_writer_lock_shows_state_and_force_release_frees_it(aset_repo):
    assert ok(aset_repo.path, "writer-lock").strip() == "writer lock: free"
    co = aset_repo.checkout(write=True)
    try:
        # issue 11: the holder is named, and a running holder needs --force to be released
        assert ok(aset_repo.path, "writer-lock").strip().startswith(f"writer lock: held by pid {os.getpid()}")
        assert "hangar writer-lock shows the holder" in fails(aset_repo.path, "commit", "-m", "x")
        assert "--force" in fails(aset_repo.path, "writer-lock", "--force-release")
        assert ok(aset_repo.path, "writer-lock", "--force-release", "--force").startswith("writer lock: released")
        assert not aset_repo.writer_lock_held
    finally:
        co.close()
    assert "status: CLEAN" in ok(aset_repo.path, "status")


def test_verbs_release_the_writer_lock_even_when_they_fail(aset_repo):
    fails(aset_repo.path, "commit", "-m", "nothing")
    fails(aset_repo.path, "arrayset", "create", "foo", "--shape", "1", "--dtype", "int8")
    assert not aset_repo.writer_lock_held


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(("text", "expected"), [
    ("512", 512), ("10KB", 10_000), ("10MB", 10_000_000), ("10mb", 10_000_000), ("1MiB", 1 << 20),
    ("1.5GB", 1_500_000_000), ("2GiB", 2 << 30), ("7B", 7)])
def test_parse_size_understands_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10XB", "10iB", "-1"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(CliError, match="not understood"):
        parse_size(text)


def test_parse_shape_accepts_common_spellings():
    assert parse_shape("28,28") == parse_shape("28x28") == parse_shape("(28, 28)") == (28, 28)
    assert parse_shape("7") == (7,)


def test_error_messages_naming_python_calls_get_the_command_line_way_out():
    from hangar.cli.app import error_message
    from hangar.errors import RemoteDataError, WriterLockError

    assert error_message(RemoteDataError("bytes of 'x' are remote")).endswith("hangar fetch-data REMOTE BRANCH")
    assert "--force-release --force if it is dead" in error_message(WriterLockError("lock held"))
    assert error_message(KeyError("no arrayset named 'x'")) == "no arrayset named 'x'"
