"""Hostile input: names that try path traversal, odd dtypes and shapes, NaN payloads, bad servers calls."""

from __future__ import annotations

import base64
import http.client
import os

import numpy as np
import pytest

from hangar import Repository
from hangar.errors import CorruptDataError
from hangar.plumbing.pack import OBJ_BLOB, ObjectBatch
from hangar.plumbing.trees import MODE_BLOB, apply_edits
from hangar.records import layout
from hangar.records.keys import encode_key, fan_path
from hangar.records.pointer import SamplePointer, encode_pointer
from hangar.records.snapshot import Snapshot
from hangar.remote import protocol
from hangar.store import sample_digest
from tests import remote_fixtures
from tests.repo_parts import git_of, store_of

start_server = remote_fixtures.start_server

BAD_NAMES = ["../x", "..", ".", "a/b", "/etc", "a\\b", "a\x00b", "x" * 65, "café", "名前", "", " ", "a b",
             "a:b", "\n"]


def tree_files(path: str) -> set[str]:
    out = set()
    for top, dirs, files in os.walk(path):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(top, n), path))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD_NAMES)
def test_hostile_sample_and_arrayset_names_are_refused_and_write_nothing(aset_repo, name):
    outside = tree_files(os.path.dirname(aset_repo.path))
    co = aset_repo.checkout(write=True)
    try:
        with pytest.raises(ValueError):
            co.arraysets["foo"][name] = np.zeros(5, dtype=np.int64)
        with pytest.raises(ValueError):
            co.arraysets.init_arrayset(name, shape=(2,), dtype=np.uint8)
        with pytest.raises(ValueError):
            co.metadata[name] = "x"
        with pytest.raises(ValueError):
            co["foo", [0, name]] = [np.zeros(5, dtype=np.int64)] * 2  # validated before writing
        assert 0 in co.arraysets["foo"] and len(co.arraysets["foo"]) == 10
        assert co.arraysets.keys() == ["bar", "foo"]
    finally:
        co.close()
    assert tree_files(os.path.dirname(aset_repo.path)) - outside <= {
        os.path.relpath(os.path.join(aset_repo.path, ".hangar", p), os.path.dirname(aset_repo.path))
        for p in ("staging.json",)}
    assert aset_repo.verify().ok


@pytest.mark.slow
@pytest.mark.parametrize("key", [-1, True, 1.5, b"x", None, (1,)])
def test_non_str_non_int_keys_are_refused(aset_repo, key):
    co = aset_repo.checkout(write=True)
    try:
        with pytest.raises(ValueError):
            co.arraysets["foo"][key] = np.zeros(5, dtype=np.int64)
    finally:
        co.close()


def test_huge_int_keys_round_trip(aset_repo):
    co = aset_repo.checkout(write=True)
    co.arraysets["foo"][2**80] = np.ones(5, dtype=np.int64)
    co.commit("huge key")
    co.close()
    co = aset_repo.checkout()
    assert 2**80 in co.arraysets["foo"] and str(2**80) not in co.arraysets["foo"]
    co.close()


def test_object_dtypes_are_refused(repo):
    co = repo.checkout(write=True)
    try:
        with pytest.raises(ValueError, match="object"):
            co.arraysets.init_arrayset("o", shape=(3,), dtype=object)
        with pytest.raises(ValueError, match="object"):
            co.arraysets.init_arrayset("o", prototype=np.array([object()], dtype=object))
        v = co.arraysets.init_arrayset("v", shape=(2,), dtype=np.float64)
        with pytest.raises(ValueError):
            v[0] = np.array([1.0, None], dtype=object)
        assert len(v) == 0
    finally:
        co.close()


def test_huge_and_degenerate_shapes(repo):
    co = repo.checkout(write=True)
    try:
        for shape in [(0,), (-1,), (1,) * 40]:
            with pytest.raises(ValueError):
                co.arraysets.init_arrayset("s", shape=shape, dtype=np.uint8)
        # a huge *maximum* shape is only a schema; samples must fit it
        v = co.arraysets.init_arrayset("v", shape=(2**40, 2**20), dtype=np.uint8, variable_shape=True)
        v[0] = np.ones((3, 2), dtype=np.uint8)
        with pytest.raises(ValueError):
            v[1] = np.ones((3, 2, 1), dtype=np.uint8)
        co.commit("huge max shape")
    finally:
        co.close()
    co = repo.checkout()
    np.testing.assert_array_equal(co.arraysets["v"][0], np.ones((3, 2), dtype=np.uint8))
    co.close()


def test_a_pointer_claiming_a_huge_shape_raises_instead_of_allocating(aset_repo):
    """A commit from a hostile remote may hold any pointer: it must not make a read allocate terabytes."""
    git = git_of(aset_repo)
    head = git.branch_head("master")
    real = sample_digest(np.arange(5, dtype=np.int64))
    evil = encode_pointer(SamplePointer(real, "<i8", (2**40,)))
    batch = ObjectBatch()
    name = encode_key(0)
    depth = Snapshot(git, git.commit_tree_id(head)).schema("foo").fanout_depth
    samples: dict = {}
    d = samples
    for f in fan_path(name, depth):
        d = d.setdefault(f, {})
    d[name] = (MODE_BLOB, batch.add(OBJ_BLOB, evil))
    root = git.tree(git.commit_tree_id(head))
    edits = {layout.ARRAYSETS: {"foo": {layout.SAMPLES: samples}}}
    tree = apply_edits(git.repo, root, edits, batch)
    git.write_batch(batch)
    commit = git.create_commit(tree.hex(), [head], "Mallory", "m@example.com", "evil pointer")
    git.set_branch("evil", commit)
    co = aset_repo.checkout(branch="evil")
    try:
        with pytest.raises(CorruptDataError, match="pointer says"):
            co.arraysets["foo"][0]
        np.testing.assert_array_equal(co.arraysets["foo"][1], np.arange(5, dtype=np.int64) + 1)
    finally:
        co.close()


NAN_BITS = [0x7FC00000, 0x7FC00001, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFF800001, 0x80000000, 0x7F800000]


def test_nan_payloads_and_signed_zero_round_trip_bit_exact(repo):
    f32 = np.array(NAN_BITS, dtype=np.uint32).view(np.float32)
    f64 = np.array([0x7FF8000000000001, 0xFFF0000000000001, 0x7FF0000000000001, 0x8000000000000000],
                   dtype=np.uint64).view(np.float64)
    f16 = np.array([0x7E01, 0xFC01, 0x8000], dtype=np.uint16).view(np.float16)
    co = repo.checkout(write=True)
    for name, arr in (("f32", f32), ("f64", f64), ("f16", f16)):
        a = co.arraysets.init_arrayset(name, prototype=arr)
        a[0] = arr
        a[1] = np.where(np.isnan(arr), np.float32(np.nan).astype(arr.dtype), arr)  # canonical NaNs: other bytes
    co.commit("nans")
    co.close()
    co = Repository(repo.path).checkout()
    try:
        for name, arr in (("f32", f32), ("f64", f64), ("f16", f16)):
            got = co.arraysets[name][0]
            assert got.tobytes() == arr.tobytes(), name
            assert co.arraysets[name][1].tobytes() != arr.tobytes()  # payloads are not collapsed
    finally:
        co.close()
    assert repo.verify().ok


def test_structured_and_unicode_dtypes_round_trip_bit_exact(repo):
    st = np.zeros(4, dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "S3")])
    st["id"] = [1, 2, 3, 4]
    st["score"] = [np.nan, -0.0, np.inf, 1.5]
    st["tag"] = [b"a", b"bb", b"ccc", b""]
    uni = np.array(["héllo", "名前", "", "x"], dtype="<U5")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("st", prototype=st)["r"] = st
    co.arraysets.init_arrayset("uni", prototype=uni)["r"] = uni
    co.commit("dtypes")
    co.close()
    co = repo.checkout()
    try:
        got = co.arraysets["st"]["r"]
        assert got.dtype == st.dtype and got.tobytes() == st.tobytes()
        assert list(got["tag"]) == [b"a", b"bb", b"ccc", b""]
        assert co.arraysets["uni"]["r"].tolist() == uni.tolist()
    finally:
        co.close()
    assert repo.verify().ok


# ------------------------------------------------------------------ server
def _post(port: int, path: str, body: bytes, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _upload_body(samples: list[tuple[bytes, np.ndarray]]) -> bytes:
    return b"".join(protocol.upload_header(protocol.WireSample(d, 0, a.nbytes, bytes(a.data), a.dtype.str, a.shape))
                    + bytes(a.data) for d, a in samples)


@pytest.mark.slow
def test_server_rejects_hostile_requests_and_stays_consistent(aset_repo, start_server, tmp_path):
    srv = start_server(username="alice", password="pw")
    server_repo = Repository(srv.path)
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
    aset_repo.remote.add("origin", srv.address)
    with pytest.raises(PermissionError):
        aset_repo.remote.push("origin", "master", username="alice", password="wrong")
    assert server_repo.log(return_contents=True)["order"] == []
    good = np.arange(10, dtype=np.int64)
    lie = _upload_body([(sample_digest(good), good * 2)])
    assert _post(srv.port, protocol.UPLOAD, lie, auth) in (400, 422)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.putrequest("POST", protocol.UPLOAD)
    conn.putheader("Content-Length", str(protocol.MAX_UPLOAD_BYTES * 4))
    for k, v in auth.items():
        conn.putheader(k, v)
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert list(store_of(Repository(srv.path)).digests()) == []
    # the server is still whole: a real push works and a clone reads every sample back
    aset_repo.remote.push("origin", "master", username="alice", password="pw")
    report = Repository(srv.path).verify()
    assert report.ok and report.samples == 20, str(report)
    (tmp_path / "clone").mkdir()
    clone = Repository(tmp_path / "clone", exists=False)
    clone.clone("C", "c@example.com", srv.address)
    clone.remote.fetch_data("origin", "master")
    co = clone.checkout(branch="master")
    try:
        for i in range(10):
            np.testing.assert_array_equal(co.arraysets["foo"][i], np.arange(5, dtype=np.int64) + i)
    finally:
        co.close()
    assert clone.verify().ok
