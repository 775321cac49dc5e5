"""Hostile local data: records written with plain git, crafted pack files, symlinks, FIFOs, bombs.

Anything that could crash the interpreter or allocate gigabytes before the fixes runs in a child
process under ``RLIMIT_AS`` with a timeout, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import CorruptDataError, InvalidRecordError
from tests.conftest import git

#: address-space cap of the child processes that read hostile data (python + numpy + zarr fit in it)
CHILD_AS = 1 << 30


def git_edit(repo: Repository, branch: str, files: dict[str, bytes], message: str = "plain git edit") -> str:
    """Commit ``files`` (path -> bytes) on top of ``branch`` with the git binary only; return the commit."""
    env = {**os.environ, "GIT_INDEX_FILE": os.path.join(repo.path, ".hangar", "hostile-index"),
           "GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "m@example.com",
           "GIT_COMMITTER_NAME": "Mallory", "GIT_COMMITTER_EMAIL": "m@example.com"}
    gd = ["git", "--git-dir", os.path.join(repo.path, ".hangar")]

    def run(*args: str, data: bytes | None = None) -> str:
        r = subprocess.run([*gd, *args], input=data, capture_output=True, env=env, check=True)
        return r.stdout.decode().strip()

    run("read-tree", branch)
    for path, data in files.items():
        blob = run("hash-object", "-w", "--stdin", data=data)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = run("write-tree")
    commit = run("commit-tree", tree, "-p", branch, "-m", message)
    run("update-ref", f"refs/heads/{branch}", commit)
    os.unlink(env["GIT_INDEX_FILE"])
    return commit


def child(code: str, timeout: float = 60, limit: int = CHILD_AS) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter under an address-space limit and a timeout."""
    pre = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    return subprocess.run([sys.executable, "-c", pre + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": os.getcwd()})


def schema_blob(repo: Repository, aset: str) -> dict:
    return json.loads(git(repo, "cat-file", "-p", f"master:arraysets/{aset}/schema").stdout)


# ------------------------------------------------------------ 1. records from git
def test_object_dtype_schema_written_with_git_is_refused_not_a_segfault(aset_repo):
    schema = schema_blob(aset_repo, "foo")
    schema["dtype"] = "|O"
    git_edit(aset_repo, "master", {"arraysets/foo/schema": json.dumps(schema).encode()})
    r = child(f"""
        from hangar import Repository
        from hangar.errors import InvalidRecordError
        co = Repository({aset_repo.path!r}).checkout()
        try:
            co.arraysets["foo"][0]
        except InvalidRecordError as exc:
            print("refused:", exc)
        print(co.arraysets["bar"]["1"].sum())
        """)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])  # -11 before: numpy read bytes as PyObject*
    assert "refused:" in r.stdout and "holds python objects" in r.stdout and "'foo'" in r.stdout
    assert r.stdout.strip().endswith("6.0")  # the other arrayset stays readable
    report = Repository(aset_repo.path).verify()
    assert not report.ok
    assert any("schema" in p.detail and "python objects" in p.detail for p in report.records), str(report)


def test_object_dtype_pointer_written_with_git_is_refused_by_read_and_fsck(aset_repo):
    path = [ln.split("\t")[1] for ln in git(aset_repo, "ls-tree", "-r", "master").stdout.splitlines()
            if ln.endswith("/i:3")][0]
    ptr = git(aset_repo, "cat-file", "-p", f"master:{path}").stdout
    git_edit(aset_repo, "master", {path: ptr.replace(" <i8 ", " |O ").encode()})
    r = child(f"""
        from hangar import Repository
        print(Repository({aset_repo.path!r}).verify())
        co = Repository({aset_repo.path!r}).checkout()
        try:
            co.arraysets["foo"][3]
        except ValueError as exc:
            print("refused:", type(exc).__name__, exc)
        print(co.arraysets["foo"][4].sum())
        """)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])  # -11 before (fsck read into an object array)
    assert "record: arrayset 'foo' key 3" in r.stdout and "python objects" in r.stdout
    assert "refused: InvalidRecordError" in r.stdout
    assert r.stdout.strip().endswith("30")


@pytest.mark.parametrize("edit, rule", [
    ({"shape": [5, -1]}, "negative dimension"),
    ({"shape": [1] * 40}, "maximum rank"),
    ({"backend": "../../x"}, "backend"),
    ({"fanout_depth": 10**9}, "fanout_depth"),
    ({"name": "../bar"}, "arrayset name"),
    ({"variable_shape": "yes"}, "must be bool"),
    ({"evil": 1}, "unknown schema fields"),
])
def test_invalid_schema_records_are_refused_on_load_and_listed_by_fsck(aset_repo, edit, rule):
    schema = schema_blob(aset_repo, "foo")
    schema.update(edit)
    git_edit(aset_repo, "master", {"arraysets/foo/schema": json.dumps(schema).encode()})
    repo = Repository(aset_repo.path)
    co = repo.checkout()
    try:
        with pytest.raises(InvalidRecordError, match=rule):
            co.arraysets["foo"][0]
        assert co.arraysets["bar"]["2"].sum() == 12
    finally:
        co.close()
    report = repo.verify()
    assert any(rule in p.detail for p in report.records), str(report)


def test_pointer_disagreeing_with_its_schema_is_refused(aset_repo):
    path = [ln.split("\t")[1] for ln in git(aset_repo, "ls-tree", "-r", "master").stdout.splitlines()
            if ln.endswith("/i:3")][0]
    ptr = git(aset_repo, "cat-file", "-p", f"master:{path}").stdout
    git_edit(aset_repo, "master", {path: ptr.replace(" <i8 5", " <f8 5").encode()})
    co = Repository(aset_repo.path).checkout()
    try:
        with pytest.raises(InvalidRecordError, match="dtype <f8 differs from the arrayset dtype <i8"):
            co.arraysets["foo"][3]
        np.testing.assert_array_equal(co.arraysets["foo"][4], np.arange(5) + 4)
    finally:
        co.close()


def test_non_ascii_metadata_written_with_git_is_refused_and_listed(aset_repo):
    path = [ln.split("\t")[1] for ln in git(aset_repo, "ls-tree", "-r", "master").stdout.splitlines()
            if ln.endswith("/s:hello")][0]
    git_edit(aset_repo, "master", {path: "wörld\x1b[2J".encode()})
    repo = Repository(aset_repo.path)
    co = repo.checkout()
    try:
        with pytest.raises(InvalidRecordError, match="metadata record 's:hello'"):
            co.metadata["hello"]
    finally:
        co.close()
    assert any("metadata" in p.detail for p in repo.verify().records)
    assert isinstance(InvalidRecordError("x"), CorruptDataError) and isinstance(InvalidRecordError("x"), ValueError)
