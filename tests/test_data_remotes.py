"""Data remotes: history on a plain git URL, sample bytes in an S3 bucket (a real SeaweedFS server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hangar import Repository
from hangar._faults import CRASH_EXIT_CODE
from hangar.errors import CorruptDataError, DataRemoteAddressError, DataRemoteUnreachableError, RemoteDataError
from tests.repo_parts import git_of, recorded_endpoint
from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures

N = 60


def make_repo(path, n: int = N, seed: int = 0) -> Repository:
    os.makedirs(path, exist_ok=True)
    r = Repository(path, exists=False)
    r.init("Ann", "ann@example.com")
    co = r.checkout(write=True)
    a = co.arraysets.init_arrayset("img", shape=(8, 8), dtype=np.uint8)
    b = co.arraysets.init_arrayset("vec", shape=(16,), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a[str(i)] = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        b[str(i)] = np.full(16, i, np.float32)
    co.commit("data")
    co.close()
    return r


def expected(seed: int = 0, n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {str(i): rng.integers(0, 255, (8, 8), dtype=np.uint8) for i in range(n)}


def bare_git(path) -> str:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return str(path)


def data_keys(server, loc: str) -> list[str]:
    return sorted(server.keys(loc))


def index_keys(keys: list[str]) -> list[str]:
    return [k for k in keys if k.endswith("/index")]


@pytest.fixture
def pushed(tmp_path, s3_env):  # noqa: F811
    """A repository pushed to a bare git repository + a bucket prefix: (repo, git url, location)."""
    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    assert r.remote.push("origin", "master") == "master"
    return r, url, loc


def clone(tmp_path, url: str, name: str = "clone", **kw) -> Repository:
    """A clone of ``url`` by a user who names the S3 endpoint its history records (a recorded
    endpoint is not followed on its own); ``endpoint_url=None`` clones with the URL alone."""
    if os.path.isdir(url):
        kw.setdefault("endpoint_url", recorded_endpoint(url))
    c = Repository(tmp_path / name if os.path.isdir(tmp_path / name) else _mk(tmp_path / name), exists=False)
    c.clone("Bob", "bob@example.com", url, **kw)
    return c


def _mk(p):
    os.makedirs(p)
    return p


# ------------------------------------------------------------------ push / clone / fetch_data
def test_push_writes_packs_index_last_and_records_the_location_in_git(pushed, run_git, s3_env):  # noqa: F811
    r, url, loc = pushed
    keys = data_keys(s3_env, loc)
    prefix = loc.split("/", 3)[3]
    packs = {k.split("/")[-2] for k in keys if "/packs/" in k and k.endswith("/index")}
    assert packs, keys
    for p in packs:  # every pack complete: data, metadata and index
        assert {f"{prefix}/packs/{p}/c/0", f"{prefix}/packs/{p}/zarr.json"} <= set(keys)
    out = subprocess.run(["git", "--git-dir", url, "show", "refs/hangar/data:data.json"], capture_output=True,
                         text=True, check=True).stdout
    assert loc in out and "SECRET" not in out.upper() and "hangartest" not in out
    heads = subprocess.run(["git", "--git-dir", url, "rev-parse", "refs/heads/master"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert heads == run_git(r, "rev-parse", "refs/heads/master").stdout.strip()


def test_clone_of_the_git_url_alone_finds_the_data_and_fetch_data_brings_it(pushed, tmp_path, monkeypatch):
    r, url, loc = pushed
    monkeypatch.setenv("AWS_ENDPOINT_URL", git_of(r).config_get("remote.origin.hangarendpoint"))
    c = clone(tmp_path, url)
    assert c.remote.data_location("origin") == loc
    c.remote.set_lazy_reads("origin", False)
    co = c.checkout()
    with pytest.raises(RemoteDataError):
        co.arraysets["img"]["3"]
    co.close()
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    want = expected()
    for k in ("0", "17", str(N - 1)):
        np.testing.assert_array_equal(co.arraysets["img"][k], want[k])
    assert not any(co.arraysets.contains_remote_references.values())
    co.close()


def test_clone_refuses_the_endpoint_the_pusher_recorded_unless_the_user_names_it(pushed, tmp_path):
    """Changed with the endpoint trust rule (tests/test_endpoint_trust.py): the recorded hint was
    followed on its own; now the clone names it and asks for endpoint_url= or AWS_ENDPOINT_URL."""
    _, url, loc = pushed
    with pytest.raises(DataRemoteAddressError, match="--endpoint-url"):
        clone(tmp_path, url, "alone", endpoint_url=None)  # no AWS_ENDPOINT_URL in the environment either
    c = clone(tmp_path, url)  # naming the recorded endpoint
    co = c.checkout()
    np.testing.assert_array_equal(co.arraysets["img"]["5"], expected()["5"])
    co.close()


def test_second_push_uploads_only_new_samples(pushed, s3_env):  # noqa: F811
    r, _, loc = pushed
    before = index_keys(data_keys(s3_env, loc))
    co = r.checkout(write=True)
    co.arraysets["vec"]["new"] = np.arange(16, dtype=np.float32)
    co.commit("one more")
    co.close()
    r.remote.push("origin", "master")
    after = index_keys(data_keys(s3_env, loc))
    assert set(before) < set(after) and len(after) == len(before) + 1
    from hangar.store.objectstore import ObjectPackStorage
    from hangar.store.packs import parse_index

    st = ObjectPackStorage(loc, s3_env.endpoint)
    new = (set(after) - set(before)).pop().split("/")[-2]
    assert len(parse_index(st.read_checked_index(new), new)) == 1


def test_push_with_nothing_new_warns_and_changes_nothing(pushed, s3_env):  # noqa: F811
    r, _, loc = pushed
    keys = data_keys(s3_env, loc)
    with pytest.warns(UserWarning, match="push changed nothing"):
        r.remote.push("origin", "master")
    assert data_keys(s3_env, loc) == keys


def test_fetch_brings_records_of_a_new_branch(pushed, tmp_path):
    r, url, _ = pushed
    c = clone(tmp_path, url)
    r.create_branch("dev")
    co = r.checkout(write=True, branch="dev")
    co.arraysets["vec"]["dev"] = np.ones(16, np.float32)
    co.commit("dev work")
    co.close()
    r.remote.push("origin", "dev")
    assert c.remote.fetch("origin", "dev") == "origin/dev"
    co = c.checkout(branch="origin/dev")
    np.testing.assert_array_equal(co.arraysets["vec"]["dev"], np.ones(16, np.float32))  # lazily, from the bucket
    co.close()


def test_bad_data_location_is_refused_before_anything_is_recorded(repo, tmp_path):
    url = bare_git(tmp_path / "h.git")
    with pytest.raises(DataRemoteAddressError, match="s3://BUCKET/PREFIX"):
        repo.remote.add("origin", url, data="http://bucket/x")
    assert repo.remote.list_all() == []


def test_clone_of_a_git_url_without_data_location_raises_and_leaves_nothing(tmp_path):
    url = bare_git(tmp_path / "h.git")
    target = _mk(tmp_path / "c")
    with pytest.raises(ValueError, match="records no data location"):
        Repository(target, exists=False).clone("Bob", "bob@example.com", url)
    assert not os.path.exists(os.path.join(target, ".hangar"))


# ---------------------------------------------------------------------------- lazy reads
def test_lazy_read_of_one_sample_reads_verifies_and_caches_it(pushed, tmp_path):
    _, url, _ = pushed
    c = clone(tmp_path, url)
    co = c.checkout()
    assert all(co.arraysets.contains_remote_references.values())
    np.testing.assert_array_equal(co.arraysets["img"]["9"], expected()["9"])
    co.close()
    c.remote.set_lazy_reads("origin", False)  # cached locally: readable without the remote now
    co = c.checkout()
    np.testing.assert_array_equal(co.arraysets["img"]["9"], expected()["9"])
    with pytest.raises(RemoteDataError):
        co.arraysets["img"]["10"]
    co.close()


def test_get_batch_and_loader_fetch_missing_samples_in_bulk(pushed, tmp_path):
    _, url, _ = pushed
    c = clone(tmp_path, url)
    co = c.checkout()
    keys = [str(i) for i in range(0, N, 3)]
    got = co.arraysets["img"].get_batch(keys)
    want = expected()
    for k, arr in zip(keys, got):
        np.testing.assert_array_equal(arr, want[k])
    vals = co.arraysets["vec"].get_batch([str(i) for i in range(N)])
    assert [int(v[0]) for v in vals] == list(range(N))
    co.close()


def test_lazy_read_with_unreachable_remote_names_remote_and_sample(pushed, tmp_path):
    _, url, _ = pushed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    c = clone(tmp_path, url, endpoint_url=f"http://127.0.0.1:{dead}")
    co = c.checkout()
    ptr = co.arraysets["img"]._pointer("4")
    with pytest.raises(DataRemoteUnreachableError) as err:
        co.arraysets["img"]["4"]
    assert "'origin'" in str(err.value) and ptr.digest.hex()[:16] in str(err.value)
    assert isinstance(err.value, ConnectionError) and isinstance(err.value, RemoteDataError)
    co.close()


# --------------------------------------------------------------------------- integrity
def test_tampered_bucket_index_is_refused(pushed, tmp_path, s3_env):  # noqa: F811
    _, url, loc = pushed
    bucket, _, _ = loc[len("s3://"):].partition("/")
    key = index_keys(data_keys(s3_env, loc))[0]
    client = s3_env.client()
    raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=raw[:-8] + bytes(8))
    c = clone(tmp_path, url)
    with pytest.raises(CorruptDataError, match="does not match its name"):
        c.remote.fetch_data("origin", "master")
    co = c.checkout()
    assert all(co.arraysets.contains_remote_references.values())  # nothing stored
    co.close()


def test_tampered_pack_bytes_are_refused_and_nothing_is_stored(pushed, tmp_path, s3_env):  # noqa: F811
    _, url, loc = pushed
    bucket, _, _ = loc[len("s3://"):].partition("/")
    key = [k for k in data_keys(s3_env, loc) if k.endswith("/c/0")][0]
    client = s3_env.client()
    raw = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    raw[len(raw) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(raw))
    _refused_with_nothing_stored(clone(tmp_path, url), None)  # the whole batch was discarded


# ------------------------------------------------------------------------- gc and safety
def test_local_gc_never_touches_the_bucket(pushed, tmp_path, s3_env):  # noqa: F811
    r, url, loc = pushed
    keys = data_keys(s3_env, loc)
    c = clone(tmp_path, url)
    c.remote.fetch_data("origin", "master")
    c.remote.remove("origin")
    for repo in (r, c):
        subprocess.run([sys.executable, "-m", "hangar", "gc"], cwd=repo.path, check=True, capture_output=True)
    assert data_keys(s3_env, loc) == keys


def test_interrupted_push_leaves_only_complete_packs_and_a_rerun_completes(tmp_path, s3_env):  # noqa: F811
    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    env = dict(os.environ, HANGAR_CRASH_AT="objectstore.before_index:1", PYTHONPATH=os.getcwd())
    code = ("from hangar import Repository; import sys; "
            "Repository(sys.argv[1]).remote.push('origin', 'master')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "src")], env=env, capture_output=True)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr.decode()[-2000:]
    keys = data_keys(s3_env, loc)
    assert any(k.endswith("/c/0") for k in keys) and not index_keys(keys)  # data written, never published
    refs = subprocess.run(["git", "--git-dir", url, "for-each-ref"], capture_output=True, text=True).stdout
    assert refs == ""  # no ref moved before the data was complete
    r.remote.push("origin", "master")
    c = clone(tmp_path, url)
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    np.testing.assert_array_equal(co.arraysets["img"]["11"], expected()["11"])
    co.close()


def test_concurrent_pushers_of_the_same_bytes_do_not_corrupt_each_other(tmp_path, s3_env):  # noqa: F811
    src = make_repo(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    twin = Repository(tmp_path / "b")
    loc = s3_env.new_location()
    urls = [bare_git(tmp_path / "a.git"), bare_git(tmp_path / "b.git")]
    for r, url in zip((src, twin), urls):
        r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def push(r: Repository) -> None:
        try:
            start.wait()
            r.remote.push("origin", "master")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(r,)) for r in (src, twin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    packs = index_keys(data_keys(s3_env, loc))
    assert len(packs) == 1  # the same content: the same write-once keys
    for url in urls:
        c = clone(tmp_path, url, name=os.path.basename(url) + "-clone")
        c.remote.fetch_data("origin", "master")
        co = c.checkout()
        np.testing.assert_array_equal(co.arraysets["img"][str(N - 2)], expected()[str(N - 2)])
        co.close()


# ------------------------------------------------------------------------ git daemon
def test_history_through_git_daemon(tmp_path, s3_env):  # noqa: F811
    base = tmp_path / "served"
    bare_git(base / "repo.git")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen(["git", "daemon", "--export-all", "--enable=receive-pack", "--reuseaddr",
                               f"--base-path={base}", "--listen=127.0.0.1", f"--port={port}", str(base)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:  # ready once it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        url = f"git://127.0.0.1:{port}/repo.git"
        r = make_repo(tmp_path / "src")
        loc = s3_env.new_location()
        r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
        r.remote.push("origin", "master")
        c = clone(tmp_path, url, endpoint_url=s3_env.endpoint)  # the user names the endpoint
        co = c.checkout()
        np.testing.assert_array_equal(co.arraysets["img"]["21"], expected()["21"])
        co.close()
    finally:
        daemon.terminate()
        daemon.wait(10)


# --------------------------------------------------------------------------------- CLI
# obstore (the s3 extra) made absent in a child process: the import fails as it does where it is not installed
_WITHOUT_OBSTORE = """
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name == "obstore" or name.startswith("obstore."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Absent())
sys.argv = ["hangar", "push", "origin", "master"]
from hangar.cli import main
main()
"""


def test_push_to_a_data_remote_without_the_s3_extra_says_how_to_install_it(tmp_path):
    # found in review: README says `pip install 'hangar[s3]'`, but without it `hangar push` to an
    # s3:// data remote printed only "error: No module named 'obstore'" (nothing about the extra)
    r = make_repo(tmp_path / "src", n=2)
    r.remote.add("origin", bare_git(tmp_path / "h.git"), data="s3://bucket/digits", endpoint_url="http://127.0.0.1:9")
    out = subprocess.run([sys.executable, "-c", _WITHOUT_OBSTORE], cwd=r.path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1, out
    assert "pip install 'hangar[s3]'" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_cli_add_push_clone_fetch_data_and_lazy_switch(tmp_path, s3_env, monkeypatch):  # noqa: F811
    from tests.cli_helpers import fails, ok

    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "h.git")
    loc = s3_env.new_location()
    out = ok(r.path, "remote", "add", "origin", url, "--data", loc, "--endpoint-url", s3_env.endpoint)
    assert out.strip() == f"added remote origin\t{url}\tdata {loc}"
    assert "give --data" in fails(r.path, "remote", "add", "other", url, "--endpoint-url", s3_env.endpoint)
    ok(r.path, "push", "origin", "master")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    ok(tmp_path, "clone", url, "c", "--name", "Bob", "--email", "bob@example.com")
    c = Repository(tmp_path / "c")
    assert ok(c.path, "remote", "lazy", "origin", "off").strip() == "lazy reads from origin: off"
    co = c.checkout()
    with pytest.raises(RemoteDataError):
        co.arraysets["img"]["1"]
    co.close()
    ok(c.path, "fetch-data", "origin", "master")
    co = c.checkout()
    np.testing.assert_array_equal(co.arraysets["img"]["1"], expected()["1"])
    co.close()


def test_torch_loader_reads_missing_samples_in_bulk_from_the_bucket(pushed, tmp_path):
    torch = pytest.importorskip("torch")
    from hangar.dataloaders import make_torch_dataset

    _, url, _ = pushed
    c = clone(tmp_path, url)
    co = c.checkout()
    keys = [str(i) for i in range(10, 30)]
    ds = make_torch_dataset([co.arraysets["img"]], keys=keys)
    want = expected()
    got = [ds[i] for i in range(len(ds))]
    for k, sample in zip(keys, got):
        arr = sample[0] if isinstance(sample, (tuple, list)) else sample
        np.testing.assert_array_equal(torch.as_tensor(arr).numpy(), want[k])
    assert sorted(co.arraysets["img"].remote_reference_sample_keys, key=int) == \
        [str(i) for i in range(N) if not 10 <= i < 30]
    co.close()


def test_dask_array_of_a_lazy_clone_reads_from_the_bucket(pushed, tmp_path):
    pytest.importorskip("dask")
    from hangar.dataloaders import dask_array

    _, url, _ = pushed
    c = clone(tmp_path, url)
    co = c.checkout()
    arr = dask_array(co.arraysets["vec"])
    total = float(arr.sum().compute(scheduler="synchronous"))
    assert total == sum(16.0 * i for i in range(N))
    co.close()


@pytest.mark.slow
def test_interrupted_parallel_push_leaves_only_complete_packs(tmp_path, s3_env):  # noqa: F811
    """A push with several packs in flight (PUSH_WINDOW at once) killed midway: every pack a reader
    can see (its index) has its whole data object; a rerun completes and a clone reads it all."""
    from hangar.store.packs import parse_index

    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    env = dict(os.environ, HANGAR_CRASH_AT="objectstore.before_index:3", PYTHONPATH=os.getcwd())
    # 1 KiB packs: the 60 + 60 samples (7,680 bytes) make 8 packs, up to 4 uploading at once
    code = ("import sys; from hangar.remote import objectdata; objectdata.REMOTE_PACK_BYTES = 1024; "
            "from hangar import Repository; Repository(sys.argv[1]).remote.push('origin', 'master')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "src")], env=env, capture_output=True)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr.decode()[-2000:]
    keys = data_keys(s3_env, loc)
    indexes = index_keys(keys)
    assert len([k for k in keys if k.endswith("/c/0")]) >= 3 and len(indexes) < 8
    bucket, _, _ = loc[len("s3://"):].partition("/")
    client = s3_env.client()
    for key in indexes:  # a published pack is a complete pack
        data = client.get_object(Bucket=bucket, Key=key[:-len("index")] + "c/0")["Body"].read()
        recs = parse_index(client.get_object(Bucket=bucket, Key=key)["Body"].read(), key, len(data))
        assert len(recs) and int((recs["offset"] + recs["length"]).max()) <= len(data)
    refs = subprocess.run(["git", "--git-dir", url, "for-each-ref"], capture_output=True, text=True).stdout
    assert refs == ""
    r.remote.push("origin", "master")
    c = clone(tmp_path, url)
    c.remote.fetch_data("origin", "master")
    co = c.checkout()
    assert not any(co.arraysets.contains_remote_references.values())
    np.testing.assert_array_equal(co.arraysets["img"]["59"], expected()["59"])
    co.close()


def _clone_of_tampered_bucket(tmp_path, s3_env, tamper):  # noqa: F811
    """Push ``make_repo``'s samples to a bucket whose packs were first rewritten by
    ``tamper(data, recs) -> data`` (``recs``: the pack's index records, edited in place), then a
    clone of the history: what ``fetch_data`` will read from that bucket."""
    from hangar.remote import objectdata
    from hangar.store.packs import encode_index, parse_index
    from tests.repo_parts import store_of

    r = make_repo(tmp_path / "src")
    url = bare_git(tmp_path / "history.git")
    loc = s3_env.new_location()
    r.remote.add("origin", url, data=loc, endpoint_url=s3_env.endpoint)
    store = store_of(r)
    storage = objectdata.open_storage(git_of(r), "origin")
    packs = []
    for data, index in objectdata._pack_stream(store, list(store.digests())):
        recs = parse_index(index, "test", len(data)).copy()
        data = tamper(data, recs)
        packs.append((data, encode_index(recs)))
    storage.put_packs(packs)
    r.remote.push("origin", "master")  # the bucket's indexes list every sample: only refs move
    return clone(tmp_path, url)


def _refused_with_nothing_stored(c, match: str | None) -> None:
    """``fetch_data`` of clone ``c`` raises ``CorruptDataError`` (matching ``match``) and stores no sample
    (every one of ``make_repo``'s ``2 * N`` samples still remote)."""
    with pytest.raises(CorruptDataError, match=match):
        c.remote.fetch_data("origin", "master")
    co = c.checkout()
    assert sum(map(len, co.arraysets.remote_sample_keys.values())) == 2 * N
    co.close()


@pytest.mark.slow
def test_a_checksum_the_bucket_index_gets_wrong_is_refused_and_nothing_is_stored(tmp_path, s3_env):  # noqa: F811
    """Bytes that hash to their digest but not to the index's stored-bytes checksum: refused (the
    check runs on the writer thread) and the batch is discarded."""
    def lie_about_a_checksum(data, recs):
        recs["check"][len(recs) // 2] ^= 1  # one record lies about its bytes' checksum
        return data

    _refused_with_nothing_stored(_clone_of_tampered_bucket(tmp_path, s3_env, lie_about_a_checksum),
                                 "do not match their checksum")


def test_a_bucket_index_claiming_an_impossible_size_is_refused_before_any_read(tmp_path, s3_env):  # noqa: F811
    """A record claiming a sample 1 MiB larger than its pointer's dtype x shape (its pack object
    really that long) sizes no request: CorruptDataError naming the remote before a byte is read
    (before: the whole claim was downloaded, then refused by its digest), nothing stored."""
    def grow_the_last_sample(data, recs):
        k = int(np.argmax(recs["offset"]))  # the last sample of the pack grows into appended bytes
        extra = (1 << 20) + len(data) - int(recs["offset"][k] + recs["length"][k])
        recs["codec"][k] = 0
        recs["length"][k] = recs["rawlen"][k] = int(recs["length"][k]) + extra
        return bytes(data) + bytes(1 << 20)

    _refused_with_nothing_stored(_clone_of_tampered_bucket(tmp_path, s3_env, grow_the_last_sample),
                                 "origin.*nothing was read")


def test_a_dask_chunk_whose_bucket_records_claim_an_impossible_size_reads_nothing(tmp_path):
    """The worker-side read of a lazy clone's chunk checks the records it was handed against
    dtype x shape before it opens the bucket (the requests are sized by them)."""
    from hangar.dataloaders.daskarray import BucketAddress, BucketLocations, read_bucket_chunk

    digest = "ab" * 32
    claims = BucketLocations(rows=[0], packs=("p" * 40,), pack_idx=[0], offsets=[0], lengths=[1 << 30],
                             rawlens=[1 << 30], codecs=[0], checks=[1], digests=[digest])
    nowhere = BucketAddress("s3://no-such-bucket/prefix", "http://127.0.0.1:9")  # never contacted
    with pytest.raises(CorruptDataError, match="no-such-bucket.*nothing was read"):
        read_bucket_chunk(str(tmp_path), nowhere, "0" * 40, "img", "|u1", (28, 28), 1, None, claims)
