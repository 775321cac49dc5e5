"""Hangar 0.3's tutorials (Tutorial-001, -002 and -003), step by step, on this project.

The calls are the ones Hangar 0.3's tutorial notebooks make, in the same order and style:
context managers, backend codes, branches, fast-forward and 3-way merges, diff records and
conflicts, then a server, push, partial clone, fetch, fetch_data and a merge of partial data.
Each step checks its result, so the script fails loudly when a Hangar 0.3 behaviour breaks
(CI runs it: tests/test_examples.py). Where this project differs from Hangar 0.3 on purpose,
a comment says so (see docs/compat.md). Random data stands in for the tutorials' MNIST and
Dota 2 files. Runs in well under a minute.

Usage: python examples/hangar03_tutorial.py [WORKDIR]   (default: a temporary directory)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from hangar import Repository
from hangar.diff import MetadataKey, SampleKey


def part(title: str) -> None:
    print(f"\n=== {title}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ Tutorial-001
def tutorial_001(path: str, n: int) -> None:
    part("Part 1: creating a repository and working with data")
    repo = Repository(path=path, exists=False)
    repo.init(user_name="Test User", user_email="test@foo.com", remove_old=True)
    co = repo.checkout(write=True)
    print(co)
    assert len(co.arraysets) == 0 and len(co.metadata) == 0

    rng = np.random.default_rng(0)
    trimgs = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    trlabels = rng.integers(0, 10, n).astype(np.int64)

    train_aset = co.arraysets.init_arrayset(name="mnist_training_images", prototype=trimgs[0])
    assert co.arraysets["mnist_training_images"].name == train_aset.name
    assert co.arraysets.get("mnist_training_images").name == train_aset.name
    assert co["mnist_training_images"].name == train_aset.name

    # adding data: dict-style, .add(), and through the checkout
    train_aset["0"] = trimgs[0]
    train_aset.add(data=trimgs[1], name="1")
    train_aset[51] = trimgs[51]
    co["mnist_training_images", 60] = trimgs[60]
    assert len(train_aset) == 4
    assert "hi" not in train_aset and "0" in train_aset and 60 in train_aset
    assert np.array_equal(train_aset["0"], co["mnist_training_images", "0"])
    # Hangar 0.3's writer listed these in insertion order ('0', '1', 51, 60); here keys are
    # ints first, then strs, in writers and readers alike (docs/compat.md)
    assert sorted(map(str, train_aset.keys())) == ["0", "1", "51", "60"]
    assert dict(train_aset.items()).keys() == set(train_aset.keys())

    # the three loops of the tutorial's "Performance" section
    timings = {}
    co.close()
    for form in ("no context manager", "with aset_trimgs, aset_trlabels", "with co"):
        co = repo.checkout(write=True)
        aset_trimgs = co.arraysets.init_arrayset(name="train_images", prototype=trimgs[0])
        aset_trlabels = co.arraysets.init_arrayset(name="train_labels", prototype=np.array([trlabels[0]]),
                                                   backend="10")  # Hangar 0.3's numpy backend code
        start = time.perf_counter()
        if form == "no context manager":
            for idx, img in enumerate(trimgs):
                aset_trimgs.add(data=img, name=idx)
                aset_trlabels.add(data=np.array([trlabels[idx]]), name=str(idx))
        elif form == "with aset_trimgs, aset_trlabels":
            with aset_trimgs, aset_trlabels:
                for idx, img in enumerate(trimgs):
                    aset_trimgs.add(data=img, name=str(idx))
                    aset_trlabels.add(data=np.array([trlabels[idx]]), name=str(idx))
        else:
            with co:
                for idx, img in enumerate(trimgs):
                    co[["train_images", "train_labels"], idx] = [img, np.array([trlabels[idx]])]
        timings[form] = time.perf_counter() - start
        assert len(co.arraysets["train_images"]) == n and len(co.arraysets["train_labels"]) == n
        if form != "with co":
            co.reset_staging_area()
            co.close()
    for form, seconds in timings.items():
        print(f"{n} samples, {form}: {seconds:.2f} s")

    # the checkout stays open after `with co:` (leaving the block ends a batch, not the checkout)
    first = co.commit("hello world, this is my first hangar commit")
    assert len(first) == 40
    co.close()

    # a crashed writer leaves the lock behind; force_release_writer_lock() frees it
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert repo.force_release_writer_lock() is True
    repo.summary()
    repo.log()


# ------------------------------------------------------------------ Tutorial-002
def tutorial_002(path: str) -> None:
    part("Part 2: checkouts, branching and merging")
    repo = Repository(path=path, exists=False)
    repo.init(user_name="Test User", user_email="test@foo.com")
    assert repo.list_branches() == ["master"]

    co = repo.checkout(write=True)
    dummy = np.arange(10, dtype=np.uint16)
    aset = co.arraysets.init_arrayset(name="dummy_arrayset", prototype=dummy)
    aset["0"] = dummy
    initial = co.commit("first commit with a single sample added to a dummy arrayset")
    co.close()
    repo.log()

    assert repo.create_branch(name="testbranch") == "testbranch"
    assert repo.list_branches() == ["master", "testbranch"]
    assert repo.create_branch(name="new", base_commit=initial) == "new"

    co = repo.checkout(write=True, branch="new")
    assert co.arraysets["dummy_arrayset"]["0"].tolist() == list(range(10))
    arr = np.arange(10, dtype=np.uint16) + 1
    co["dummy_arrayset", "1"] = arr
    assert len(co.arraysets["dummy_arrayset"]) == 2
    co.commit("commit on `new` branch adding a sample to dummy_arrayset")
    co.close()

    # fast-forward merge
    co = repo.checkout(write=True, branch="master")
    ff = co.merge(message="message for commit (not used for FF merge)", dev_branch="new")
    assert co.branch_name == "master" and co.commit_hash == ff
    assert len(co.arraysets["dummy_arrayset"]) == 2
    co.close()

    # diverged histories
    co = repo.checkout(write=True, branch="testbranch")
    old_arr = co["dummy_arrayset", "0"]
    co["dummy_arrayset", "0"] = old_arr + 50
    co.commit("mutated sample `0` of `dummy_arrayset` to new value")
    co.metadata["hello"] = "world"
    co.commit("added hellow world metadata")
    co.close()

    # a diff between diverged branches: records keyed by named tuples, no conflict yet
    with repo.checkout(branch="master") as rco:
        diff, conflicts = rco.diff.branch("testbranch")
    assert conflicts.conflict is False
    assert SampleKey(aset_name="dummy_arrayset", data_name="0") in diff.mutated.samples
    assert MetadataKey(meta_name="hello") in diff.added.metadata
    # this project lists what dev brings relative to HEAD; 0.3 listed the reverse here
    assert SampleKey("dummy_arrayset", "1") in diff.deleted.samples

    # 3-way merge
    co = repo.checkout(write=True, branch="master")
    merged = co.merge(message="merge of testbranch into master", dev_branch="testbranch")
    assert co.commit_hash == merged
    got = co["dummy_arrayset", ["0", "1"]]
    assert got[0].tolist() == list(range(50, 60)) and got[1].tolist() == list(range(1, 11))
    assert co.metadata["hello"] == "world"
    co.close()
    repo.log()

    # conflicts
    co = repo.checkout(write=True, branch="new")
    co.metadata["hello"] = "foo conflict... BOO!"
    co.commit("commit on new branch to hello metadata key so we can demonstrate a conflict")
    try:
        co.merge(message="this merge should not happen", dev_branch="testbranch")
    except ValueError as exc:
        print(f"merge refused: {str(exc).splitlines()[0]}")
    else:
        raise AssertionError("a conflicting merge went through")
    merge_results, conflicts_found = co.diff.branch("testbranch")
    print(conflicts_found)
    assert conflicts_found.conflict is True
    assert list(conflicts_found.t1.metadata) == [MetadataKey(meta_name="hello")]
    assert conflicts_found.t1.metadata[MetadataKey("hello")].value == "world"  # dev's side
    assert not (conflicts_found.t21.metadata or conflicts_found.t22.metadata or conflicts_found.t3.metadata)

    del co.metadata["hello"]
    co.metadata["resolved"] = "conflict by removing hello key"
    co.commit("commit which removes conflicting metadata key")
    co.merge(message="this merge succeeds as it no longer has a conflict", dev_branch="testbranch")
    assert co.metadata["hello"] == "world" and co.metadata["resolved"].startswith("conflict")
    co.close()
    repo.log()


# ------------------------------------------------------------------ Tutorial-003
def _start_server(path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hangar", "server", "--ip", "127.0.0.1", "--port", str(port),
                               "--path", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, f"127.0.0.1:{port}"


def tutorial_003(workdir: str, n_test: int, n_train: int) -> None:
    part("Part 3: working with remote servers")
    rng = np.random.default_rng(1)
    test_data = rng.integers(0, 256, (n_test, 117), dtype=np.uint8)
    train_data = rng.integers(0, 256, (n_train, 117), dtype=np.uint16)

    intro = os.path.join(workdir, "intro")
    os.makedirs(intro)
    repo = Repository(intro, exists=False)
    repo.init(user_name="Test User", user_email="test@foo.com", remove_old=True)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset(name="test", prototype=test_data[0], named_samples=False)
    with co.arraysets["test"] as ds:
        for game in test_data:
            ds.add(game)
    co.commit("initial commit on master with test data")
    repo.create_branch("add-train")
    co.close()

    co = repo.checkout(write=True, branch="add-train")
    co.arraysets.init_arrayset(name="train", prototype=train_data[0], named_samples=False)
    with co.arraysets["train"] as dt:
        for game in train_data:
            dt.add(game)
    train_head = co.commit("added training data on another branch")
    co.close()

    co = repo.checkout(write=True, branch="master")
    co.metadata["earaea"] = "eara"
    co.commit("more changes here")
    co.close()

    server_dir = os.path.join(workdir, "server")
    os.makedirs(server_dir)
    server, address = _start_server(server_dir)
    try:
        repo.remote.add("origin", address)
        deadline = time.monotonic() + 60
        while True:
            try:
                repo.remote.ping("origin")
                break
            except ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        assert repo.remote.push("origin", "master") == "master"
        assert repo.remote.push("origin", "add-train") == "add-train"

        clone_dir = os.path.join(workdir, "dota-clone")
        os.makedirs(clone_dir)
        clone = Repository(clone_dir, exists=False)
        assert clone.clone("test user", "test@foo.com", address, remove_old=True) == "master"
        # the clone brings the "master" branch only; fetch the other one
        assert clone.list_branches() == ["master", "origin/master"]
        assert clone.remote.fetch("origin", "add-train") == "origin/add-train"
        assert clone.list_branches() == ["master", "origin/add-train", "origin/master"]
        assert clone.log(branch="origin/add-train", return_contents=True)["head"] == train_head
        assert clone.create_branch("add-train", train_head) == "add-train"
        assert clone.list_branches() == ["add-train", "master", "origin/add-train", "origin/master"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert clone.remote.fetch("origin", "add-train") == "add-train"  # nothing new: warns
        assert any("changed nothing" in str(w.message) for w in caught)

        with clone.checkout(branch="master") as pco:  # a partial clone: records only
            assert pco.arraysets.contains_remote_references == {"test": True}
            test_key = next(iter(pco.arraysets["test"].keys()))
            try:
                pco.arraysets["test"][test_key]
            except FileNotFoundError:
                print("sample data not local yet: fetch_data first")
            else:
                raise AssertionError("a remote reference was readable")

        fetched = clone.remote.fetch_data("origin", branch="master")
        assert fetched == [clone.log(branch="master", return_contents=True)["head"]]
        with clone.checkout(branch="master") as fco:
            assert fco.arraysets.contains_remote_references == {"test": False}
            assert fco["test", test_key].shape == (117,)

        # merging branches whose data is not local: records are all a merge needs
        merged = clone.merge("merge commit here", "master", "add-train")
        clone.summary()
        assert clone.remote.push("origin", "master") == "master"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert clone.remote.push("origin", "master") == "master"  # nothing to send: warns
        assert any(issubclass(w.category, UserWarning) for w in caught)

        assert repo.remote.fetch("origin", "master") == "origin/master"
        assert repo.log(branch="origin/master", return_contents=True)["head"] == merged
        assert repo.merge("ff-merge", "master", "origin/master") == merged
        repo.log()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(workdir: str) -> None:
    started = time.perf_counter()
    mnist = os.path.join(workdir, "mnist")
    os.makedirs(mnist)
    tutorial_001(mnist, n=2_000)
    foo = os.path.join(workdir, "foo")
    os.makedirs(foo)
    tutorial_002(foo)
    tutorial_003(workdir, n_test=1_000, n_train=3_000)
    print(f"\nall three tutorials ran in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="hangar-tutorial-") as tmp:
            main(tmp)
