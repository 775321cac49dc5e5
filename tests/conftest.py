"""Shared fixtures: hermetic git config, fresh repositories, repositories with data."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from hypothesis import settings

from hangar import Repository

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (tests/README.md): "ci" (the default) is
# derandomized (the same examples every run: a red CI run is reproducible, never a lucky draw)
# with hypothesis' default example count; "dev" draws fresh examples, 5x as many; "long" is a
# soak run (50x, tens of minutes). Tests that fix their own max_examples keep it in every profile
# except that the stateful machine scales with the profile (tests/test_stateful.py).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=500, print_blob=True)
settings.register_profile("long", max_examples=5000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _hermetic_git(monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def repo(tmp_path) -> Repository:
    """An initialized, empty repository."""
    r = Repository(tmp_path, exists=False)
    r.init(user_name="Test User", user_email="test@example.com")
    return r


@pytest.fixture
def aset_repo(repo) -> Repository:
    """A repository with one commit on master: arrayset 'foo' (int keys 0..9, shape (5,), int64)
    and arrayset 'bar' (str keys '0'..'9', shape (2, 3), float32), metadata 'hello'='world'."""
    co = repo.checkout(write=True)
    foo = co.arraysets.init_arrayset("foo", shape=(5,), dtype=np.int64)
    bar = co.arraysets.init_arrayset("bar", shape=(2, 3), dtype=np.float32)
    for i in range(10):
        foo[i] = np.arange(5, dtype=np.int64) + i
        bar[str(i)] = np.full((2, 3), i, dtype=np.float32)
    co.metadata["hello"] = "world"
    co.commit("first commit")
    co.close()
    return repo


def git(repo: Repository, *args: str) -> subprocess.CompletedProcess:
    """Run the real git binary on the repository's git directory."""
    return subprocess.run(["git", "--git-dir", os.path.join(repo.path, ".hangar"), *args],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def run_git():
    return git


#: fixtures that start a server process for the test (a ``hangar server`` per test, or the
#: session's SeaweedFS, 2-5 s to start): a test using one is in the slow tier, marked or not
SERVER_FIXTURES = frozenset({"start_server", "s3_server"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
