"""Property-based: random sequences of writer, branch and merge calls against a dict model.

A hypothesis ``RuleBasedStateMachine`` adds and removes samples and metadata, commits,
resets the staging area, creates and switches branches and merges them (3-way, with the
conflicts hangar must refuse), and after every commit or merge compares every arrayset
and metadata key of the branch, read back through a fresh reader checkout, with the model.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hangar import Repository
from hangar.errors import MergeConflictError, NothingToCommitError
from tests.repo_parts import git_of

ASETS = {"a": (np.float32, (3,)), "b": (np.int64, (2,))}
KEYS = st.one_of(st.integers(0, 6), st.sampled_from(["x", "y", "z", "0"]))
VALUES = st.integers(0, 4)
META_KEYS = st.sampled_from(["m1", "m2", 3])
BRANCHES = st.sampled_from(["dev", "feat", "topic/x"])


def make(aset: str, v: int) -> np.ndarray:
    dtype, shape = ASETS[aset]
    if aset == "a":  # variable shape: the value picks the length too
        return np.arange(1 + v % 3, dtype=dtype) * v - 0.5
    return np.full(shape, v, dtype=dtype)


def _sig(arr: np.ndarray) -> tuple:
    return arr.dtype.str, arr.shape, arr.tobytes()


def empty_state() -> dict:
    return {"a": {}, "b": {}, "meta": {}}


def copy_state(s: dict) -> dict:
    return {k: dict(v) for k, v in s.items()}


def three_way(base: dict, ours: dict, theirs: dict) -> dict | None:
    """Merged state, or None when any entry conflicts."""
    out = empty_state()
    missing = object()
    for part in out:
        for k in set(base[part]) | set(ours[part]) | set(theirs[part]):
            b, m, d = (s[part].get(k, missing) for s in (base, ours, theirs))
            if m == d or d == b:
                val = m
            elif m == b:
                val = d
            else:
                return None
            if val is not missing:
                out[part][k] = val
    return out


class RepositoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="hangar-stateful-")
        self.repo = Repository(self.dir, exists=False)
        self.repo.init("Prop Test", "prop@example.com")
        self.co = None

    @initialize()
    def first_commit(self) -> None:
        co = self.repo.checkout(write=True)
        co.arraysets.init_arrayset("a", shape=(3,), dtype=np.float32, variable_shape=True)
        co.arraysets.init_arrayset("b", shape=(2,), dtype=np.int64)
        co.metadata["m1"] = "start"
        head = co.commit("initial")
        self.branch = "master"
        state = empty_state()
        state["meta"]["m1"] = "start"
        self.heads = {"master": head}
        self.states = {head: state}
        self.staged = copy_state(state)
        self.co = co

    def teardown(self) -> None:
        if self.co is not None:
            self.co.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----------------------------------------------------------- helpers
    @property
    def committed(self) -> dict:
        return self.states[self.heads[self.branch]]

    def dirty(self) -> bool:
        return self.staged != self.committed

    def reopen(self, branch: str) -> None:
        self.co = self.repo.checkout(write=True, branch=branch)
        self.branch = branch

    def read_back(self, commit: str) -> dict:
        co = self.repo.checkout(commit=commit)
        try:
            out = empty_state()
            for aset in ASETS:
                out[aset] = {k: _sig(v) for k, v in co.arraysets[aset].items()}
            out["meta"] = dict(co.metadata.items())
            return out
        finally:
            co.close()

    def check_commit(self, commit: str) -> None:
        assert self.read_back(commit) == self.states[commit]

    # ------------------------------------------------------------- rules
    @rule(aset=st.sampled_from(sorted(ASETS)), key=KEYS, v=VALUES)
    def add(self, aset: str, key: object, v: int) -> None:
        arr = make(aset, v)
        self.co.arraysets[aset][key] = arr
        self.staged[aset][key] = _sig(arr)

    @rule(aset=st.sampled_from(sorted(ASETS)), items=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=5),
          stacked=st.booleans())
    def add_many(self, aset: str, items: list, stacked: bool) -> None:
        """The bulk form ``co[aset, keys] = values`` (a list, or one stacked array): a later
        value for a repeated key wins, as if the samples were set one by one."""
        arrays = [make(aset, v) for _, v in items]
        stacked = stacked and len({a.shape for a in arrays}) == 1  # a stack needs one shape
        self.co[aset, [k for k, _ in items]] = np.stack(arrays) if stacked else arrays
        for (key, _), arr in zip(items, arrays):
            self.staged[aset][key] = _sig(arr)

    @rule(aset=st.sampled_from(sorted(ASETS)), key=KEYS)
    def remove(self, aset: str, key: object) -> None:
        if key in self.staged[aset]:
            del self.co.arraysets[aset][key]
            del self.staged[aset][key]
        else:
            try:
                del self.co.arraysets[aset][key]
                raise AssertionError(f"removing absent key {key!r} did not raise")
            except KeyError:
                pass

    @rule(key=META_KEYS, v=st.sampled_from(["one", "two", ""]))
    def set_metadata(self, key: object, v: str) -> None:
        if v == "":
            if key in self.staged["meta"]:
                del self.co.metadata[key]
                del self.staged["meta"][key]
            return
        self.co.metadata[key] = v
        self.staged["meta"][key] = v

    @rule()
    def commit(self) -> None:
        if not self.dirty():
            try:
                self.co.commit("nothing")
                raise AssertionError("commit of a clean staging area did not raise")
            except NothingToCommitError:
                return
        head = self.co.commit("change")
        self.heads[self.branch] = head
        self.states[head] = copy_state(self.staged)
        self.check_commit(head)

    @rule()
    def reset(self) -> None:
        if not self.dirty():
            try:
                self.co.reset_staging_area()
                raise AssertionError("reset of a clean staging area did not raise")
            except NothingToCommitError:
                return
        self.co.reset_staging_area()
        self.staged = copy_state(self.committed)
        self.reopen(self.branch)

    @rule()
    def close_and_reopen(self) -> None:
        """The staging area is durable: what was staged survives close and a new checkout."""
        self.co.close()
        self.repo = Repository(self.dir)
        self.reopen(self.branch)

    @rule(name=BRANCHES)
    def create_branch(self, name: str) -> None:
        if name in self.heads:
            try:
                self.repo.create_branch(name)
                raise AssertionError("creating an existing branch did not raise")
            except ValueError:
                return
        self.repo.create_branch(name)
        self.heads[name] = self.heads[self.branch]

    @rule(name=st.sampled_from(["master", "dev", "feat", "topic/x"]))
    def switch(self, name: str) -> None:
        if name not in self.heads or name == self.branch:
            return
        self.co.close()
        if self.dirty():
            try:
                self.repo.checkout(write=True, branch=name)
                raise AssertionError("switching with staged changes did not raise")
            except ValueError:
                self.reopen(self.branch)
                return
        self.reopen(name)
        self.staged = copy_state(self.committed)

    @rule(name=BRANCHES, aset=st.sampled_from(sorted(ASETS)), key=KEYS, v=VALUES, drop=KEYS)
    def commit_on_other_branch(self, name: str, aset: str, key: object, v: int, drop: object) -> None:
        """Switch to ``name`` (created from here if new), change a sample, commit, switch back."""
        if self.dirty() or name == self.branch:
            return
        home = self.branch
        if name not in self.heads:
            self.create_branch(name)
        self.switch(name)
        self.add(aset, key, v)
        if drop in self.staged[aset]:
            self.remove(aset, drop)
        self.commit()
        self.switch(home)

    @rule(name=BRANCHES, aset=st.sampled_from(sorted(ASETS)), theirs=st.tuples(KEYS, VALUES),
          ours=st.tuples(KEYS, VALUES), meta=st.sampled_from(["one", "two", ""]))
    def diverge_and_merge(self, name: str, aset: str, theirs: tuple, ours: tuple, meta: str) -> None:
        """Both branches change (maybe the same key), then merge: 3-way, or a refused conflict."""
        if self.dirty() or name == self.branch:
            return
        self.commit_on_other_branch(name, aset, theirs[0], theirs[1], ours[0])
        self.add(aset, *ours)
        self.set_metadata("m2", meta)
        self.commit()
        self.merge(name)

    @rule(dev=st.sampled_from(["master", "dev", "feat", "topic/x"]))
    def merge(self, dev: str) -> None:
        if dev not in self.heads or dev == self.branch:
            return
        if self.dirty():
            try:
                self.co.merge("merge", dev)
                raise AssertionError("merge into a dirty staging area did not raise")
            except ValueError:
                return
        master_head, dev_head = self.heads[self.branch], self.heads[dev]
        base = self.repo.merge_base(master_head, dev_head)
        expected = three_way(self.states[base], self.states[master_head], self.states[dev_head])
        if expected is None:
            try:
                self.co.merge("merge", dev)
                raise AssertionError("conflicting merge did not raise")
            except MergeConflictError:
                event("merge: conflict refused")
                assert self.repo.branch_head(self.branch) == master_head
                return
        new = self.co.merge("merge", dev)
        if git_of(self.repo).is_ancestor(dev_head, master_head):
            assert new == master_head
            event("merge: already contained")
        elif git_of(self.repo).is_ancestor(master_head, dev_head):
            assert new == dev_head  # fast-forward
            event("merge: fast-forward")
        else:
            event("merge: 3-way")
        self.heads[self.branch] = new
        self.states.setdefault(new, expected)
        assert self.states[new] == expected
        self.staged = copy_state(expected)
        self.check_commit(new)

    # -------------------------------------------------------- invariants
    @invariant()
    def staged_view_matches_model(self) -> None:
        if self.co is None:
            return
        for aset in ASETS:
            got = {k: _sig(v) for k, v in self.co.arraysets[aset].items()}
            assert got == self.staged[aset]
        assert dict(self.co.metadata.items()) == self.staged["meta"]

    @precondition(lambda self: self.co is not None)
    @rule()
    def every_branch_matches_model(self) -> None:
        for name, head in self.heads.items():
            assert self.repo.branch_head(name) == head
            self.check_commit(head)


RepositoryMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestRepositoryAgainstModel = RepositoryMachine.TestCase
