"""The writer arrayset's C mapping slot (``rowhash.WriterSlot``, ``rowhash.install_add_slot``).

``aset[k] = v`` of a held fixed-shape sample runs in C with no Python frame; everything else
(a bad sample, a closed checkout, a removed arrayset, ``del aset[k]``) goes to the class's
Python ``__setitem__`` / ``__delitem__``, which keep the spec's signature and return value. Each
behaviour is checked with the C add and without it (``rowhash.available`` off), and once in a
process where the extension cannot be imported at all.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import numpy as np
import pytest

from hangar import Repository
from hangar.arrayset import ArraysetDataWriter
from hangar.errors import HandleClosedError, InvalidNameError, SampleNotFoundError, SchemaMismatchError
from hangar.plumbing import rowhash

SHAPE = (4, 5)
needs_ext = pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")


@pytest.fixture(params=[True, False], ids=["C", "python"])
def built(request, monkeypatch) -> bool:
    if request.param and not rowhash.available:
        pytest.skip("hangar.plumbing._rowhash is not built (pip install -e . builds it)")
    monkeypatch.setattr(rowhash, "available", request.param)
    return request.param


def _data(n: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(n, *SHAPE), dtype=np.uint8)


def _new(tmp_path, name: str = "r"):
    (tmp_path / name).mkdir()
    repo = Repository(tmp_path / name, exists=False)
    repo.init(user_name="T", user_email="t@example.com")
    co = repo.checkout(write=True)
    return repo, co, co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)


def _python_calls(method, fn) -> int:
    """How many times ``fn()`` entered the Python function ``method`` (read from the class)."""
    code = method.__code__
    calls = 0

    def prof(frame, event, arg):
        nonlocal calls
        if event == "call" and frame.f_code is code:
            calls += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_a_held_loop_enters_python_only_to_arm_the_c_add(tmp_path, built):
    data = _data(200)
    repo, co, x = _new(tmp_path)

    def loop() -> None:
        with x:
            for i in range(200):
                x[i] = data[i]

    calls = _python_calls(ArraysetDataWriter.__setitem__, loop)
    assert calls == (1 if built else 200)  # C: the first add arms the held stack, the rest are C adds
    assert x.__setitem__(200, data[0]) == 200  # an explicit call is the Python method: the spec's return
    assert x.add(data[1], 201) == 201
    assert len(x) == 202 and np.array_equal(x[199], data[199]) and np.array_equal(x[201], data[1])
    co.close()


def test_add_enters_its_python_method_only_to_arm_the_c_add(tmp_path, built):
    data = _data(300)
    repo, co, x = _new(tmp_path)
    got: list = []

    def adds() -> None:
        with x:
            got.extend([x.add(data[i], i) for i in range(100)] + [x.add(data[i], name=i) for i in range(100, 200)])

    # ArraysetDataWriter.add read from the class: the Python method (the spec's signature)
    calls = _python_calls(ArraysetDataWriter.add, adds)
    assert calls == (1 if built else 200) and got == list(range(200))
    bound = x.add  # bound without a call: the Python method bound
    assert bound(data[200], 200) == 200 and x.add(data[201], 201) == 201
    with pytest.raises(TypeError, match="unexpected keyword"):
        x.add(data[202], 202, bogus=1)
    with pytest.raises(SchemaMismatchError, match="dtype"):
        x.add(data[202].astype(np.int8), 202)
    assert len(x) == 202 and all(np.array_equal(x[i], data[i]) for i in (0, 99, 100, 199, 201))
    with pytest.raises(InvalidNameError, match="needs a name"):  # no name: the Python method's checks
        x.add(data[250])
    u = co.arraysets.init_arrayset("u", shape=SHAPE, dtype=np.uint8, named_samples=False)
    generated = u.add(data[250])  # the Python method generates one
    assert isinstance(generated, str) and np.array_equal(u[generated], data[250])
    co.close()


def test_adds_after_reset_or_close_are_refused_with_nothing_stored(tmp_path, built):
    data = _data(10)
    repo, co, x = _new(tmp_path)
    x[0] = data[0]
    co.commit("one")
    for i in range(1, 5):
        x[i] = data[i]
    assert (x._fast_hold is not None) == built  # armed: the C add is what meets the next adds
    co.reset_staging_area()  # drops the held samples and closes the checkout; nothing stores them
    for op in (lambda: x.__setitem__(5, data[5]), lambda: x.add(data[5], 5)):
        with pytest.raises(HandleClosedError):
            op()
    with pytest.raises(HandleClosedError):
        x[5] = data[5]
    with pytest.raises(HandleClosedError):
        del x[0]
    co = repo.checkout(write=True)
    assert list(co.arraysets["x"].keys()) == [0]
    x = co.arraysets["x"]
    for i in range(1, 4):
        x[i] = data[i]
    co.close()  # stores the held samples, then refuses the handle
    with pytest.raises(HandleClosedError):
        x[4] = data[4]
    co = repo.checkout(write=True)
    assert sorted(co.arraysets["x"].keys()) == [0, 1, 2, 3]
    co.close()


def test_removed_arrayset_refuses_adds_and_delete_goes_to_remove(tmp_path, built):
    data = _data(6)
    repo, co, x = _new(tmp_path)
    for i in range(3):
        x[i] = data[i]
    del x[1]  # stores the held samples first, then removes
    with pytest.raises(SampleNotFoundError, match="no sample with key 1"):
        del x[1]
    assert sorted(x.keys()) == [0, 2]
    x[3] = data[3]  # held again, armed again
    del co.arraysets["x"]
    with pytest.raises(HandleClosedError, match="was removed"):
        x[4] = data[4]
    with pytest.raises(SchemaMismatchError):  # a new arrayset's handle: the full checks, then the C add
        co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.uint8)[0] = data[0].astype(np.int8)
    co.close()


@needs_ext
def test_writer_slot_type_takes_only_the_armed_common_case():
    """The C type on its own: which adds it takes, what it leaves to the Python methods."""
    events = []

    class Session:
        closed = False

    class W(rowhash.WriterSlot):
        def __setitem__(self, key, value):
            events.append(("py-set", key))
            return key

        def __delitem__(self, key):
            events.append(("py-del", key))
            return key

        def flush_pending(self) -> None:
            events.append(("flush", len(keys)))

    assert rowhash.install_add_slot(W) is True
    w = W()
    stack, keys = np.zeros((3, *SHAPE), np.uint8), []
    good = np.arange(20, dtype=np.uint8).reshape(SHAPE)
    w[0] = good  # not armed: the Python method
    w._session, w._fast_rows = Session(), 3
    w._fast_hold = rowhash.row_holder(stack, keys, np.dtype(np.uint8), SHAPE, good.strides)
    with pytest.raises(TypeError, match="RowHold or None"):
        w._fast_hold = object()
    w[1] = good  # taken in C
    w[2] = good.astype(np.int8)  # another dtype: the Python method
    Session.closed = True
    w[3] = good  # closed: the Python method (which raises in hangar's writer)
    Session.closed = False
    w._detached = True
    w[4] = good
    w._detached = False
    assert w._add_held(5, good) is True
    del w[6]
    w[7] = good  # the third row: the bound is reached, flush_pending runs
    assert keys == [1, 5, 7] and all(np.array_equal(r, good) for r in stack)
    assert events == [("py-set", 0), ("py-set", 2), ("py-set", 3), ("py-set", 4), ("py-del", 6), ("flush", 3)]
    w[8] = good  # the stack is full: the Python method (hangar's writer grows or stores it there)
    assert events[-1] == ("py-set", 8) and keys == [1, 5, 7]

    class Plain(rowhash.WriterSlot):
        pass

    with pytest.raises(TypeError, match="must define __setitem__"):
        rowhash.install_add_slot(Plain)
    with pytest.raises(TypeError, match="Python subclass of WriterSlot"):
        rowhash.install_add_slot(dict)


@needs_ext
def test_the_c_fields_are_seen_by_the_cycle_collector():
    # a writer's session holds it while it holds samples back (writer -> session -> batch ->
    # writer): a cycle through the C field _session is freed (the armed RowHold's keys are ints)
    class W(rowhash.WriterSlot):
        pass

    class Session:
        closed = False

    w, session = W(), Session()
    w._session, session.held = session, w
    keys: list = [0]
    w._fast_hold = rowhash.row_holder(np.zeros((2, *SHAPE), np.uint8), keys, np.dtype(np.uint8), SHAPE,
                                      np.empty(SHAPE, np.uint8).strides)
    refs = [weakref.ref(w), weakref.ref(session)]
    del w, session, keys
    gc.collect()
    assert [r() for r in refs] == [None, None]


@pytest.mark.slow
def test_without_the_extension_the_writer_is_a_plain_python_class(tmp_path, run_git):
    """In a process where hangar.plumbing._rowhash cannot be imported: the same adds, errors and
    commit as a stacked add in this process."""
    (tmp_path / "loop").mkdir()
    code = f"""
import sys
sys.modules["hangar.plumbing._rowhash"] = None
import numpy as np
from hangar import Repository
from hangar.arrayset import ArraysetDataWriter
from hangar.errors import SchemaMismatchError, InvalidNameError
from hangar.plumbing import rowhash
assert not rowhash.available and rowhash.WriterSlot.__module__ == "hangar.plumbing.rowhash"
assert all(c.__module__.startswith(("hangar", "builtins")) for c in ArraysetDataWriter.__mro__)
assert type(ArraysetDataWriter.__dict__["add"]).__name__ == "function"
data = np.random.default_rng(5).integers(0, 256, size=(50, 4, 5), dtype=np.uint8)
repo = Repository({str(tmp_path / "loop")!r}, exists=False)
repo.init(user_name="T", user_email="t@example.com")
co = repo.checkout(write=True)
x = co.arraysets.init_arrayset("x", shape=(4, 5), dtype=np.uint8)
with x:
    for i in range(50):
        x[i] = data[i]
    for key, value, err in [(50, data[0].astype(np.int8), SchemaMismatchError), (-1, data[0], InvalidNameError)]:
        try:
            x[key] = value
        except err:
            pass
        else:
            raise AssertionError("not refused")
assert x.__setitem__(50, data[0]) == 50 and x.add(data[1], 51) == 51
del x[51]
print(co.commit("loop"))
co.close()
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    commit = got.stdout.strip().splitlines()[-1]
    repo_b, co_b, _ = _new(tmp_path, "stacked")
    data = _data(50)
    co_b["x", list(range(51))] = np.concatenate([data, data[:1]])
    stacked = co_b.commit("stacked")
    co_b.close()
    loop_tree = run_git(Repository(tmp_path / "loop"), "rev-parse", f"{commit}^{{tree}}").stdout.strip()
    assert loop_tree and loop_tree == run_git(repo_b, "rev-parse", f"{stacked}^{{tree}}").stdout.strip()


_DROPPED_HOLD = """
import numpy as np
from hangar.plumbing import rowhash

class W(rowhash.WriterSlot):
    def __setitem__(self, key, value):
        return key

    def __delitem__(self, key):
        return key

    def flush_pending(self):
        pass

class Session:
    @property
    def closed(self):  # code run while the C add reads ``closed``: it drops the armed hold
        w._fast_hold = None
        return False

rowhash.install_add_slot(W)
w, keys = W(), []
w._fast_rows = 4
w._fast_hold = rowhash.row_holder(np.zeros((4, 2), np.uint8), keys, np.dtype(np.uint8), (2,), (1,))
w._session = Session()
w[0] = np.zeros(2, np.uint8)  # the hold is gone once ``closed`` was read: the Python method
assert w._add_held(1, np.zeros(2, np.uint8)) is False and keys == []
print("ok")
"""


@needs_ext
def test_the_c_add_reads_its_hold_after_the_session_state():
    """rC: the C add read ``_fast_hold`` before ``_session.closed`` and used it after: code run by
    that read (a property) that dropped the hold left it a freed or NULL RowHold (a segfault,
    found under -fsanitize=undefined). In a child process: the failure is a crash."""
    got = subprocess.run([sys.executable, "-c", _DROPPED_HOLD], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == "ok", (got.returncode, got.stderr[-2000:])
