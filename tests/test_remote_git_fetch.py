"""History from a ``hangar server`` fetched with the ``git`` binary (issue 15: pygit2 called back
into Python for every object of a clone: ~64,400 for 60,000 samples), with libgit2 as the
fallback: the same refs and objects either way, nothing the repository's config or hooks name is
run, no git gc on hangar's objects, and errors still those of libgit2's path."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import ServerUnreachableError
from hangar.remote import client as remote_client
from tests import remote_fixtures
from tests.repo_parts import git_of, hangar_dir_of, staged_tree_as_auto_gc_bait

start_server = remote_fixtures.start_server
USER = ("tester", "tester@example.com")


@pytest.fixture
def served(tmp_path, start_server):
    """A server holding master with 40 samples (two commits) and its source repository."""
    os.makedirs(tmp_path / "src")
    src = Repository(tmp_path / "src", exists=False)
    src.init(*USER)
    for part in range(2):
        co = src.checkout(write=True)
        aset = co.arraysets["x"] if part else co.arraysets.init_arrayset("x", shape=(4,), dtype=np.int32)
        for i in range(20 * part, 20 * part + 20):
            aset[i] = np.full(4, i, np.int32)
        co.commit(f"part {part}")
        co.close()
    srv = start_server(str(tmp_path / "served"))
    src.remote.add("origin", srv.address)
    src.remote.push("origin", "master")
    return srv, src


def _clone(path, address: str) -> Repository:
    os.makedirs(path)
    r = Repository(path, exists=False)
    assert r.clone(*USER, address) == "master"
    return r


def test_fetch_with_git_brings_the_branch_and_runs_nothing_the_repository_names(tmp_path, served):
    srv, src = served
    os.makedirs(tmp_path / "dst")
    r = Repository(tmp_path / "dst", exists=False)
    r.init(*USER)
    r.remote.add("origin", srv.address)
    git = git_of(r)
    marks = {name: tmp_path / name for name in ("hook", "alternate", "askpass", "credential")}
    hook = os.path.join(hangar_dir_of(r), "hooks", "reference-transaction")
    os.makedirs(os.path.dirname(hook), exist_ok=True)
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marks['hook']}\n")
    os.chmod(hook, 0o755)
    config = git.repo.config
    config["core.alternateRefsCommand"] = f"touch {marks['alternate']}; true"
    config["core.askPass"] = f"touch {marks['askpass']}; true"
    config["credential.helper"] = f"!touch {marks['credential']}; true"
    assert remote_client.fetch_with_git(git, srv.address, ["+refs/heads/master:refs/remotes/origin/master"])
    assert git.remote_branch_head("origin/master") == git_of(src).branch_head("master")
    assert [name for name, path in marks.items() if path.exists()] == []
    # every sample's record is readable through libgit2 and hangar's own pack reader
    co = r.checkout(branch="origin/master")
    try:
        assert co.arraysets["x"].remote_reference_sample_keys == list(range(40))
    finally:
        co.close()


def test_fetch_with_git_starts_no_git_gc_that_drops_the_staging_area(tmp_path, served):
    """``git fetch`` ends with ``git gc --auto``, which would repack hangar's git directory and drop
    unreachable objects over two weeks old, among them the staging area's tree."""
    srv, _ = served
    os.makedirs(tmp_path / "dst")
    r = Repository(tmp_path / "dst", exists=False)
    r.init(*USER)
    co = r.checkout(write=True)
    co.arraysets.init_arrayset("img", shape=(8, 8), dtype=np.uint8)["staged"] = np.full((8, 8), 7, np.uint8)
    co.close()
    r.remote.add("origin", srv.address)
    git, tree, pack_dir, packs = staged_tree_as_auto_gc_bait(r)
    assert remote_client.fetch_with_git(git, srv.address, ["+refs/heads/master:refs/remotes/origin/master"])
    assert set(packs) <= set(os.listdir(pack_dir))
    assert git_of(r).has_object(tree)


def test_clone_without_git_binary_falls_back_to_libgit2_with_the_same_result(tmp_path, served, monkeypatch):
    srv, src = served
    with_git = _clone(tmp_path / "a", srv.address)
    empty = tmp_path / "no-git-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("git") is None
    assert not remote_client.fetch_with_git(git_of(with_git), srv.address, ["+refs/heads/master:refs/x"])
    without = _clone(tmp_path / "b", srv.address)
    head = git_of(src).branch_head("master")
    assert git_of(with_git).branch_head("master") == git_of(without).branch_head("master") == head
    for r in (with_git, without):
        r.remote.fetch_data("origin", "master")
        co = r.checkout()
        try:
            np.testing.assert_array_equal(co.arraysets["x"][39], np.full(4, 39, np.int32))
        finally:
            co.close()


def test_fetch_from_a_stopped_server_still_raises_server_unreachable(tmp_path, served):
    """The ``git`` binary's failure is not reported; libgit2's path then raises as before."""
    srv, _ = served
    r = _clone(tmp_path / "dst", srv.address)
    srv.stop()
    assert not remote_client.fetch_with_git(git_of(r), srv.address, ["+refs/heads/master:refs/remotes/origin/m"])
    with pytest.raises(ServerUnreachableError, match=srv.address):
        remote_client.fetch_branches(git_of(r), "origin", srv.address, ["master"])


def test_fetch_with_git_writes_no_cookie_file_and_uses_no_proxy_the_repository_names(tmp_path):
    """A repository's own config (it may come from a tarball) named a cookie jar for the server's
    URL: ``git fetch`` wrote the server's cookies to that path, anywhere outside the repository
    (``http.<url>.*`` outranked the command line's plain ``http.*``); a proxy for the URL
    diverted the fetch. Found in review: a server setting a cookie and a repository naming
    ``http.<url>.cookieFile`` / ``saveCookies`` / ``proxy``."""
    import http.server
    import socket
    import threading

    class Cookies(http.server.BaseHTTPRequestHandler):  # a server answering an empty ref list, setting a cookie
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Set-Cookie", "planted=by-the-server; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Cookies)
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(4)
    proxied: list[int] = []

    def refuse() -> None:  # a proxy that records each connection and closes it
        while True:
            try:
                conn, _ = proxy.accept()
            except OSError:
                return
            proxied.append(1)
            conn.close()

    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=refuse, daemon=True).start()
    try:
        os.makedirs(tmp_path / "dst")
        r = Repository(tmp_path / "dst", exists=False)
        r.init(*USER)
        git = git_of(r)
        address = f"127.0.0.1:{server.server_port}"
        url = remote_client.address_url(address)
        outside = tmp_path / "outside.txt"
        config = git.repo.config
        config[f"http.{url}.cookieFile"] = str(outside)
        config[f"http.{url}.saveCookies"] = "true"
        remote_client.fetch_with_git(git, address, ["+refs/heads/*:refs/remotes/origin/*"])
        assert not outside.exists()
        config[f"http.{url}.proxy"] = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        remote_client.fetch_with_git(git, address, ["+refs/heads/*:refs/remotes/origin/*"])
        assert proxied == []
        assert not outside.exists()
    finally:
        server.shutdown()
        server.server_close()
        proxy.close()


def test_a_git_too_old_to_fsync_is_not_used(tmp_path, served, monkeypatch):
    """``core.fsync`` came with git 2.36; an older git ignores it (unknown keys are no error) and
    fetched without fsyncing objects or refs: after a crash a ref could name objects that never
    reached the disk. Such a git is not used (libgit2 fetches, fsynced). Found in review; the
    real git stands behind a script that reports 2.35 (no older git is installed here)."""
    srv, src = served
    real = shutil.which("git")
    assert real is not None
    bin_dir = tmp_path / "old-git"
    bin_dir.mkdir()
    script = bin_dir / "git"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "version" ] || [ "$1" = "--version" ]; then\n'
                      f'  echo "git version 2.35.8"; exit 0\nfi\nexec {real} "$@"\n')
    script.chmod(0o755)
    os.makedirs(tmp_path / "dst")
    r = Repository(tmp_path / "dst", exists=False)
    r.init(*USER)
    r.remote.add("origin", srv.address)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("git") == str(script)
    assert not remote_client.fetch_with_git(git_of(r), srv.address, ["+refs/heads/master:refs/remotes/origin/master"])
    remote_client.fetch_branches(git_of(r), "origin", srv.address, ["master"])  # through libgit2
    assert git_of(r).remote_branch_head("origin/master") == git_of(src).branch_head("master")


def test_a_url_rewrite_of_the_repository_runs_no_command(tmp_path):
    """``protocol.allow=never`` on the command line did not hold: a repository's own
    ``protocol.<name>.allow=always`` outranks it, so its config (it may come from a tarball)
    could rewrite the server's URL (``url.<base>.insteadOf``) to ``ext::`` (a command of its
    choosing) or a local path to ``ssh://`` with a ``core.sshCommand``: both ran. Found in review;
    ``GIT_ALLOW_PROTOCOL`` overrides any configuration."""
    import pygit2

    os.makedirs(tmp_path / "dst")
    r = Repository(tmp_path / "dst", exists=False)
    r.init(*USER)
    git = git_of(r)
    source = pygit2.init_repository(str(tmp_path / "source.git"), bare=True)
    sig = pygit2.Signature(*USER)
    source.create_commit("refs/heads/master", sig, sig, "x", source.TreeBuilder().write(), [])
    http_url = remote_client.address_url("127.0.0.1:9")
    ext_mark, ssh_mark = tmp_path / "ext-ran", tmp_path / "ssh-ran"
    config = git.repo.config
    config["protocol.ext.allow"] = "always"
    config[f"url.ext::sh -c touch% {ext_mark}.insteadOf"] = http_url
    config["protocol.ssh.allow"] = "always"
    config["url.ssh://example.invalid/x.insteadOf"] = str(tmp_path / "source.git")
    config["core.sshCommand"] = f"touch {ssh_mark}; false"
    git.fetch_with_git_binary(http_url, ["+refs/heads/*:refs/remotes/origin/*"], "http", ["--no-tags"])
    git.fetch_with_git_binary(str(tmp_path / "source.git"), ["+refs/heads/*:refs/remotes/origin/*"], "file",
                              ["--upload-pack=git-upload-pack"])
    assert not ext_mark.exists()
    assert not ssh_mark.exists()
