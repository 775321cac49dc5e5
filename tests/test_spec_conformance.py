"""The public API against the spec (shared/spec/hangar-python-api.txt): signatures, docstrings,
documented return shapes and errors, and that bad input changes nothing on disk.

Behaviour already pinned elsewhere (test_repository.py, test_checkout.py, test_arrayset.py, ...)
is not repeated here; these tests cover what the audit found unpinned or wrong.
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import hangar
from hangar import Repository
from hangar.arrayset import ArraysetDataReader, ArraysetDataWriter, Arraysets
from hangar.checkout import ReaderCheckout, WriterCheckout
from hangar.diff import DiffAndConflicts, ReaderUserDiff, WriterUserDiff
from hangar.metadata import MetadataReader, MetadataWriter
from hangar.remotes import RemoteInfo, Remotes

P, KW = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
_ = inspect.Parameter.empty

# (callable, [(name, kind, default), ...]) as the spec prints them; ``self`` left out.
# Accepted extras (not in the spec) are listed in EXTRA_KEYWORDS below.
SPEC_SIGNATURES = [
    (Repository.__init__, [("path", P, _), ("exists", P, True)]),
    (Repository.checkout, [("write", P, False), ("branch", KW, "master"), ("commit", KW, "")]),
    (Repository.clone, [("user_name", P, _), ("user_email", P, _), ("remote_address", P, _),
                        ("remove_old", KW, False)]),
    (Repository.create_branch, [("name", P, _), ("base_commit", P, None)]),
    (Repository.force_release_writer_lock, []),
    (Repository.init, [("user_name", P, _), ("user_email", P, _), ("remove_old", KW, False)]),
    (Repository.list_branches, []),
    (Repository.log, [("branch", P, None), ("commit", P, None), ("return_contents", KW, False),
                      ("show_time", KW, False), ("show_user", KW, False)]),
    (Repository.merge, [("message", P, _), ("master_branch", P, _), ("dev_branch", P, _)]),
    (Repository.remove_branch, [("name", P, _)]),
    (Repository.summary, [("branch", KW, ""), ("commit", KW, "")]),
    (Remotes.add, [("name", P, _), ("address", P, _)]),
    (Remotes.fetch, [("remote", P, _), ("branch", P, _)]),
    (Remotes.fetch_data, [("remote", P, _), ("branch", P, None), ("commit", P, None),
                          ("arrayset_names", KW, None), ("max_num_bytes", KW, None),
                          ("retrieve_all_history", KW, False)]),
    (Remotes.list_all, []),
    (Remotes.ping, [("name", P, _)]),
    (Remotes.push, [("remote", P, _), ("branch", P, _), ("username", KW, ""), ("password", KW, "")]),
    (Remotes.remove, [("name", P, _)]),
    (WriterCheckout.__getitem__, [("index", P, _)]),
    (WriterCheckout.__setitem__, [("index", P, _), ("value", P, _)]),
    (WriterCheckout.close, []),
    (WriterCheckout.commit, [("commit_message", P, _)]),
    (WriterCheckout.get, [("arraysets", P, _), ("samples", P, _), ("except_missing", KW, False)]),
    (WriterCheckout.merge, [("message", P, _), ("dev_branch", P, _)]),
    (WriterCheckout.reset_staging_area, []),
    (ReaderCheckout.__getitem__, [("index", P, _)]),
    (ReaderCheckout.close, []),
    (ReaderCheckout.get, [("arraysets", P, _), ("samples", P, _), ("except_missing", KW, False)]),
    (Arraysets.__contains__, [("key", P, _)]),
    (Arraysets.__delitem__, [("key", P, _)]),
    (Arraysets.__getitem__, [("key", P, _)]),
    (Arraysets.__setitem__, [("key", P, _), ("value", P, _)]),
    (Arraysets.get, [("name", P, _)]),
    (Arraysets.init_arrayset, [("name", P, _), ("shape", P, None), ("dtype", P, None), ("prototype", P, None),
                               ("named_samples", P, True), ("variable_shape", P, False), ("backend", KW, None)]),
    (Arraysets.items, []),
    (Arraysets.keys, []),
    (Arraysets.multi_add, [("mapping", P, _)]),
    (Arraysets.remove_aset, [("aset_name", P, _)]),
    (Arraysets.values, []),
    (ArraysetDataWriter.__contains__, [("key", P, _)]),
    (ArraysetDataWriter.__delitem__, [("key", P, _)]),
    (ArraysetDataWriter.__getitem__, [("key", P, _)]),
    (ArraysetDataWriter.__len__, []),
    (ArraysetDataWriter.__setitem__, [("key", P, _), ("value", P, _)]),
    (ArraysetDataWriter.add, [("data", P, _), ("name", P, None), ("kwargs", inspect.Parameter.VAR_KEYWORD, _)]),
    (ArraysetDataWriter.get, [("name", P, _)]),
    (ArraysetDataWriter.get_batch, [("names", P, _), ("n_cpus", KW, None), ("start_method", KW, "spawn")]),
    (ArraysetDataWriter.items, []),
    (ArraysetDataWriter.keys, []),
    (ArraysetDataWriter.remove, [("name", P, _)]),
    (ArraysetDataWriter.values, []),
    (ArraysetDataReader.get, [("name", P, _)]),
    (ArraysetDataReader.get_batch, [("names", P, _), ("n_cpus", KW, None), ("start_method", KW, "spawn")]),
    (MetadataWriter.__contains__, [("key", P, _)]),
    (MetadataWriter.__delitem__, [("key", P, _)]),
    (MetadataWriter.__getitem__, [("key", P, _)]),
    (MetadataWriter.__len__, []),
    (MetadataWriter.__setitem__, [("key", P, _), ("value", P, _)]),
    (MetadataWriter.add, [("key", P, _), ("value", P, _)]),
    (MetadataWriter.get, [("key", P, _)]),
    (MetadataWriter.items, []),
    (MetadataWriter.keys, []),
    (MetadataWriter.remove, [("key", P, _)]),
    (MetadataWriter.values, []),
    (MetadataReader.get, [("key", P, _)]),
    (WriterUserDiff.branch, [("dev_branch", P, _)]),
    (WriterUserDiff.commit, [("dev_commit_hash", P, _)]),
    (WriterUserDiff.staged, []),
    (WriterUserDiff.status, []),
    (ReaderUserDiff.branch, [("dev_branch", P, _)]),
    (ReaderUserDiff.commit, [("dev_commit_hash", P, _)]),
    (hangar.make_tf_dataset, [("arraysets", P, _), ("keys", P, None), ("index_range", P, None), ("shuffle", P, True)]),
    (hangar.make_torch_dataset, [("arraysets", P, _), ("keys", P, None), ("index_range", P, None),
                                 ("field_names", P, None)]),
]

# accepted deviations: extra keyword-only arguments after the spec's own
EXTRA_KEYWORDS = {
    "Repository.checkout": {"timeout"},
    "Repository.force_release_writer_lock": {"holder"},  # issue 13: release only the holder the caller saw
    "Repository.remove_branch": {"force_delete"},
    "Repository.merge": {"strategy"},
    "WriterCheckout.merge": {"strategy"},
    "ArraysetDataReader.get_batch": {"out"},  # issue 14: read into a caller's reused buffer
    "Remotes.add": {"data", "endpoint_url", "lazy"},  # issue 15: data remotes in an object store
    "Repository.clone": {"endpoint_url"},  # issue 15: the object store of a data remote
}

SPEC_PROPERTIES = {
    Repository: ["initialized", "path", "remote", "version", "writer_lock_held"],
    WriterCheckout: ["arraysets", "branch_name", "commit_hash", "diff", "metadata"],
    ReaderCheckout: ["arraysets", "commit_hash", "diff", "metadata"],
    Arraysets: ["contains_remote_references", "iswriteable", "remote_sample_keys"],
    ArraysetDataReader: ["contains_remote_references", "dtype", "iswriteable", "name", "named_samples",
                         "remote_reference_sample_keys", "shape", "variable_shape"],
    ArraysetDataWriter: ["contains_remote_references", "dtype", "iswriteable", "name", "named_samples",
                         "remote_reference_sample_keys", "shape", "variable_shape"],
    MetadataReader: ["iswriteable"],
    MetadataWriter: ["iswriteable"],
}


def _label(fn) -> str:
    return fn.__qualname__


@pytest.mark.slow
@pytest.mark.parametrize("fn, expected", SPEC_SIGNATURES, ids=[_label(f) for f, _ in SPEC_SIGNATURES])
def test_public_signature_matches_spec(fn, expected):
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    extra = EXTRA_KEYWORDS.get(_label(fn), set())
    got = [(p.name, p.kind, p.default) for p in params if p.name not in extra]
    assert got == expected
    for p in params:
        if p.name in extra:
            assert p.kind in (KW, inspect.Parameter.VAR_KEYWORD), f"{p.name} must be keyword-only"


@pytest.mark.slow
@pytest.mark.parametrize("fn", [f for f, _ in SPEC_SIGNATURES if f is not Repository.__init__], ids=_label)
def test_public_method_has_a_docstring(fn):
    doc = inspect.getdoc(fn)
    assert doc and len(doc) > 20, f"{_label(fn)} has no docstring"


@pytest.mark.parametrize("cls, name", [(c, n) for c, names in SPEC_PROPERTIES.items() for n in names],
                         ids=lambda v: getattr(v, "__name__", v))
def test_public_property_is_read_only_and_documented(cls, name):
    prop = inspect.getattr_static(cls, name)
    assert isinstance(prop, property), f"{cls.__name__}.{name} is not a property"
    assert prop.fset is None, f"{cls.__name__}.{name} can be set"
    assert prop.__doc__, f"{cls.__name__}.{name} has no docstring"


def test_spec_classes_live_at_the_dotted_paths_the_spec_prints():
    import hangar.remote.server as server

    assert hangar.Repository is Repository and hasattr(server, "HangarServer")
    assert DiffAndConflicts._fields == ("diff", "conflict")
    assert RemoteInfo._fields == ("name", "address")


def test_package_loaders_show_the_spec_signature_without_importing_frameworks():
    # the wrappers in hangar/__init__ used to be (*args, **kwargs)
    import subprocess
    import sys

    code = ("import inspect, sys, hangar; print(inspect.signature(hangar.make_torch_dataset)); "
            "print(inspect.signature(hangar.make_tf_dataset)); "
            "print('torch' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "(arraysets, keys=None, index_range=None, field_names=None)"
    assert out[1] == "(arraysets, keys=None, index_range=None, shuffle=True)"
    assert out[2] == "False False"


def test_package_torch_loader_passes_every_argument_through(aset_repo):
    pytest.importorskip("torch")
    co = aset_repo.checkout()
    dset = hangar.make_torch_dataset([co.arraysets["foo"]], [3, 1], slice(0, 1), ["f"])
    assert len(dset) == 2 and dset[0]._fields == ("f",)
    np.testing.assert_array_equal(dset[0].f, np.arange(5) + 3)
    co.close()


# ------------------------------------------------------------------ Repository
@pytest.mark.parametrize("name, email", [("a\nb", "a@b.c"), ("a\x00b", "a@b.c"), ("<a>", "a@b.c"),
                                         ("a", "a@b.c\n"), ("a", "<a@b.c>"), ("a\tb", "a@b.c")])
def test_init_rejects_user_that_git_cannot_record_and_creates_nothing(tmp_path, name, email):
    # a newline in user.name used to be stored as is: every later commit was unparsable (log failed)
    r = Repository(tmp_path, exists=False)
    with pytest.raises(ValueError, match="user_"):
        r.init(name, email)
    assert os.listdir(tmp_path) == []
    assert not r.initialized


def test_init_remove_old_with_bad_user_keeps_the_old_repository(aset_repo):
    with pytest.raises(ValueError):
        aset_repo.init("bad\nname", "a@b.c", remove_old=True)
    co = aset_repo.checkout()
    assert len(co.arraysets["foo"]) == 10
    co.close()


@pytest.mark.slow
def test_init_remove_old_leaves_only_the_new_hangar_directory(aset_repo):
    path = aset_repo.init("Other", "other@example.com", remove_old=True)
    assert path == os.path.join(aset_repo.path, ".hangar")
    assert os.listdir(aset_repo.path) == [".hangar"]
    assert aset_repo.list_branches() == ["master"]  # unborn, as right after init
    assert aset_repo.log(return_contents=True)["order"] == []


def test_init_returns_the_hangar_directory_and_user_is_the_commit_author(repo):
    assert repo.initialized is True
    co = repo.checkout(write=True)
    co.metadata["a"] = "b"
    digest = co.commit("first")
    co.close()
    spec = repo.log(return_contents=True)["specs"][digest]
    assert spec["commit_message"] == "first"
    assert "Test User" in str(spec.values())


def test_version_is_a_semantic_version_string(repo):
    parts = repo.version.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_log_prints_and_returns_none_unless_return_contents(aset_repo, capsys):
    assert aset_repo.log() is None
    assert "first commit" in capsys.readouterr().out
    assert isinstance(aset_repo.log(return_contents=True), dict)
    assert capsys.readouterr().out == ""


def test_summary_of_commit_prints_and_returns_none(aset_repo, capsys):
    head = aset_repo.log(return_contents=True)["head"]
    assert aset_repo.summary(commit=head) is None
    out = capsys.readouterr().out
    assert head in out and "foo" in out and "bar" in out


def test_create_branch_returns_name_and_list_branches_returns_strs(aset_repo):
    assert aset_repo.create_branch("dev") == "dev"
    branches = aset_repo.list_branches()
    assert sorted(branches) == ["dev", "master"] and all(isinstance(b, str) for b in branches)


def test_remote_accessor_is_a_remotes_object(repo):
    assert isinstance(repo.remote, Remotes)
    assert repo.remote.list_all() == []


def test_writer_checkout_ignores_commit_argument(aset_repo):
    # spec: ``commit`` is only used by read-only checkouts
    co = aset_repo.checkout(write=True, commit="0" * 40)
    assert co.branch_name == "master"
    co.close()


# ---------------------------------------------------------------- arraysets
def test_get_batch_of_a_single_name_returns_that_array(aset_repo):
    # spec: "If a single sample name is passed in ..., the corresponding np.array data will be returned"
    co = aset_repo.checkout()
    foo, bar = co.arraysets["foo"], co.arraysets["bar"]
    np.testing.assert_array_equal(foo.get_batch(3), np.arange(5) + 3)
    np.testing.assert_array_equal(bar.get_batch("4"), np.full((2, 3), 4, np.float32))
    with pytest.raises(KeyError, match="'nope'"):
        bar.get_batch("nope")
    batch = foo.get_batch((1, 2))
    assert isinstance(batch, list) and len(batch) == 2
    co.close()


def test_arraysets_getitem_returns_writer_or_reader_by_checkout_mode(aset_repo):
    w = aset_repo.checkout(write=True)
    assert type(w.arraysets["foo"]) is ArraysetDataWriter and type(w.arraysets.get("foo")) is ArraysetDataWriter
    assert all(type(a) is ArraysetDataWriter for a in w.arraysets.values())
    w.close()
    r = aset_repo.checkout()
    assert type(r.arraysets["foo"]) is ArraysetDataReader
    assert [(n, type(a)) for n, a in r.arraysets.items()] == [("bar", ArraysetDataReader),
                                                            ("foo", ArraysetDataReader)]
    assert isinstance(r.arraysets.keys(), list)
    r.close()


def test_arrayset_delitem_and_remove_aset_return_the_name(aset_repo):
    co = aset_repo.checkout(write=True)
    assert co.arraysets.__delitem__("foo") == "foo"
    assert co.arraysets.remove_aset("bar") == "bar"
    assert len(co.arraysets) == 0
    co.close()


def test_reader_arraysets_refuse_remove_and_multi_add(aset_repo):
    r = aset_repo.checkout()
    with pytest.raises(PermissionError):
        r.arraysets.remove_aset("foo")
    with pytest.raises(PermissionError):
        r.arraysets.multi_add({"foo": np.zeros(5, np.int64)})
    assert "foo" in r.arraysets
    r.close()


def test_sample_keys_values_items_tolerate_changes_while_iterating(aset_repo):
    co = aset_repo.checkout(write=True)
    foo = co.arraysets["foo"]
    seen = []
    for k in foo.keys():
        seen.append(k)
        if k == 0:
            del foo[5]
            foo[20] = np.zeros(5, np.int64)
    assert seen == list(range(10))
    for k, v in foo.items():
        if k == 1:
            del foo[2]
        assert v.shape == (5,)
    for v in foo.values():
        foo[30] = v
    assert sorted(foo.keys()) == [0, 1, 3, 4, 6, 7, 8, 9, 20, 30]
    co.close()


def test_metadata_items_skip_keys_removed_while_iterating(aset_repo):
    # items() used to yield (key, None) for a key removed before its turn
    co = aset_repo.checkout(write=True)
    meta = co.metadata
    meta["a"], meta["b"], meta["c"] = "1", "2", "3"
    out = []
    for k, v in meta.items():
        out.append((k, v))
        if k == "a":
            del meta["b"]
            meta["zz"] = "new"
    # a writer lists its committed keys, then the ones it added in order (issue 10, Hangar 0.3;
    # this test pinned the sorted order before)
    assert out == [("hello", "world"), ("a", "1"), ("c", "3")]
    keys = []
    for k in meta.keys():
        keys.append(k)
        if k == "a":
            meta.remove(k)
    assert keys == ["hello", "a", "c", "zz"]
    assert list(meta.values()) == ["world", "3", "new"]
    co.close()


# ------------------------------------------------------- bad input is a no-op
@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [
    {"name": "bad name", "shape": (2,), "dtype": np.int8},
    {"name": "né", "shape": (2,), "dtype": np.int8},
    {"name": "x", "shape": (2,)},
    {"name": "x", "prototype": np.zeros((3, 4), order="F")},
    {"name": "x", "shape": (3,), "prototype": np.zeros(3)},
    {"name": "x", "shape": (1,) * 32, "dtype": np.int8},
    {"name": "x", "shape": (2, 0), "dtype": np.int8},
    {"name": "x", "shape": (2,), "dtype": np.int8, "backend": "nope"},
    {"name": "foo", "shape": (2,), "dtype": np.int8},
], ids=["space", "non-ascii", "no-dtype", "fortran-prototype", "prototype-and-shape", "rank-32", "zero-dim",
        "backend", "exists"])
def test_failed_init_arrayset_leaves_staging_clean(aset_repo, kwargs):
    co = aset_repo.checkout(write=True)
    expected = LookupError if kwargs["name"] == "foo" else ValueError
    with pytest.raises(expected, match=repr(kwargs["name"])):
        co.arraysets.init_arrayset(**kwargs)
    assert co.diff.status() == "CLEAN"
    assert co.arraysets.keys() == ["bar", "foo"]
    co.close()
    co = aset_repo.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    co.close()  # an open writer would be closed at exit, after pytest removed its folder


def test_failed_sample_and_metadata_writes_leave_staging_clean(aset_repo):
    co = aset_repo.checkout(write=True)
    foo = co.arraysets["foo"]
    bad = [
        lambda: foo.add(np.zeros(5, np.int64)),  # named arrayset, no name
        lambda: foo.add(np.zeros((5, 1), np.int64), 11),
        lambda: foo.add(np.zeros(4, np.int64), 11),
        lambda: foo.add(np.zeros(5, np.int32), 11),
        lambda: foo.add(list(range(5)), 11),
        lambda: foo.add(np.zeros(10, np.int64)[::2], 11),
        lambda: foo.add(np.zeros(5, np.int64), "a b"),
        lambda: foo.add(np.zeros(5, np.int64), -1),
        lambda: co.__setitem__(("foo", [11, 12]), [np.zeros(5, np.int64), np.zeros(4, np.int64)]),
        lambda: co.__setitem__((["foo", "bar"], "x"), [np.zeros(5, np.int64), np.zeros(3, np.float32)]),
        lambda: co.metadata.add("a b", "v"),
        lambda: co.metadata.add("k", "vé"),
        lambda: co.metadata.remove("nope"),
        lambda: foo.remove(99),
        lambda: co.arraysets.remove_aset("nope"),
    ]
    for i, fn in enumerate(bad):
        with pytest.raises((ValueError, KeyError)):
            fn()
        assert co.diff.status() == "CLEAN", f"bad write #{i} changed the staging area"
    assert 11 not in foo and 12 not in foo and "x" not in co.arraysets["bar"]
    co.close()


def test_failed_multi_add_writes_nothing(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64, named_samples=False)
    b = co.arraysets.init_arrayset("b", shape=(3,), dtype=np.int64, named_samples=False)
    with pytest.raises(ValueError):
        co.arraysets.multi_add({"a": np.zeros(2, np.int64), "b": np.zeros(2, np.int64)})
    with pytest.raises(KeyError, match="'nope'"):
        co.arraysets.multi_add({"a": np.zeros(2, np.int64), "nope": np.zeros(2, np.int64)})
    assert len(a) == 0 and len(b) == 0
    key = co.arraysets.multi_add({"a": np.zeros(2, np.int64), "b": np.ones(3, np.int64)})
    assert isinstance(key, str) and key in a and key in b
    co.close()


# ------------------------------------------------------------ error messages
@pytest.mark.slow
@pytest.mark.parametrize("call, needle", [
    (lambda co: co.arraysets.init_arrayset("newset", shape=(2,)), "'newset'"),
    (lambda co: co.arraysets.init_arrayset("newset", shape=(2,), prototype=np.zeros(2)), "'newset'"),
    (lambda co: co.arraysets.init_arrayset("newset", prototype=np.zeros((2, 3), order="F")), "'newset'"),
    (lambda co: co.arraysets.init_arrayset("newset", shape=(2,), dtype=np.int8, named_samples=1), "1"),
    (lambda co: co.arraysets["foo"].add(np.zeros(4, np.int64), 3), "(4,)"),
    (lambda co: co.arraysets["foo"].add(np.zeros(5, np.int64), "a b"), "'a b'"),
    (lambda co: co.arraysets["nope"], "'nope'"),
    (lambda co: co.metadata["nope"], "'nope'"),
    (lambda co: co.metadata.add("k", "vé"), "'vé'"),
    (lambda co: co["foo", 77], "77"),
    (lambda co: co.diff.branch("nope"), "'nope'"),
    (lambda co: co.diff.commit("abc123"), "'abc123'"),
])
def test_error_messages_name_the_bad_value(aset_repo, call, needle):
    co = aset_repo.checkout(write=True)
    with pytest.raises((ValueError, KeyError, LookupError)) as info:
        call(co)
    assert needle in str(info.value)
    co.close()


# ------------------------------------------------------------ checkout views
def test_checkout_selectors_accept_any_iterable_of_keys_and_names(aset_repo):
    # spec: samples may be an Iterable; a range or generator used to be taken as one (missing) key,
    # so get() silently returned None
    co = aset_repo.checkout()
    got = co["foo", range(2)]
    assert isinstance(got, list) and [a.tolist() for a in got] == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]]
    got = co.get("foo", (k for k in (3, 99)))
    assert got[0].tolist() == [3, 4, 5, 6, 7] and got[1] is None
    row = co.get((n for n in ("foo", "bar")), "1")
    assert type(row).__name__ == "ArraysetData" and row._fields == ("foo", "bar")
    assert row.foo is None and row.bar.shape == (2, 3)
    co.close()


def test_checkout_getitem_return_shapes(aset_repo):
    co = aset_repo.checkout()
    assert isinstance(co["foo"], ArraysetDataReader)
    assert isinstance(co["bar", "2"], np.ndarray)
    assert isinstance(co["bar", ["2", "3"]], list)
    row = co[("bar",), "1"]
    assert type(row).__name__ == "ArraysetData" and row._fields == ("bar",)
    rows = co[["bar"], ["1", "2"]]
    assert [r.bar[0, 0] for r in rows] == [1.0, 2.0]
    with pytest.raises(KeyError):
        co[:, "1"]  # 'foo' has int keys only: every selected arrayset must hold the key
    for every in (..., slice(None)):
        row = co.get(every, "1")
        assert row._fields == ("bar", "foo") and row.foo is None and row.bar[0, 0] == 1.0
    co.close()


def test_docs_state_the_real_merge_signatures():
    """docs/diff-merge.md once showed a merge signature the code did not have (issue 11, point 10)."""
    import pathlib

    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "diff-merge.md").read_text()
    for name, fn in (("Repository.merge", Repository.merge), ("WriterCheckout.merge", WriterCheckout.merge)):
        parts, star = [], False
        for p in list(inspect.signature(fn).parameters.values())[1:]:
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                parts += [] if star else ["*"]
                star = True
                parts.append(f"{p.name}={p.default!r}")
            else:
                parts.append(p.name)
        shown = ", ".join(parts)
        assert f"`{name}({shown})`" in text, (name, shown)
