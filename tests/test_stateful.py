"""Property-based: random sequences of repository calls against a pure-Python model.

A hypothesis ``RuleBasedStateMachine`` adds and removes samples, metadata and whole arraysets,
commits, resets the staging area, creates branches (at the head or at any earlier commit),
removes branches, switches between them, checks out old commits and merges (3-way, with the
conflicts hangar must refuse). Commits and branch names flow between rules through Bundles.
The model (:mod:`hangar.testing.model`) predicts every state, merge result and refusal; after
every step the staging area is compared with it, after every commit or merge the commit read
back through a reader checkout, and on demand every branch head.

Run longer with ``HYPOTHESIS_PROFILE=long`` (see tests/README.md); CI runs the derandomized
``ci`` profile (tests/conftest.py).
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from hangar import Repository
from hangar.errors import ArraysetExistsError, ArraysetNotFoundError, MergeConflictError, NothingToCommitError
from hangar.testing.model import RepositoryModel, copy_state, empty_state

pytestmark = pytest.mark.slow  # a state machine of real commits and checkouts: ~10 s in the ci profile

#: arrayset name -> its schema variants (dtype, shape, variable_shape); 'c' has two, so it can
#: be re-created with another schema and conflict
SCHEMAS = {"a": [("<f4", (3,), True)], "b": [("<i8", (2,), False)],
           "c": [("|u1", (4,), False), ("|u1", (4,), True)]}
ASET_NAMES = st.sampled_from(sorted(SCHEMAS))
KEYS = st.one_of(st.integers(0, 6), st.sampled_from(["x", "y", "z", "0"]))
VALUES = st.integers(0, 4)
META_KEYS = st.sampled_from(["m1", "m2", 3])
BRANCH_NAMES = st.sampled_from(["dev", "feat", "topic/x"])


def make(schema: tuple, v: int) -> np.ndarray:
    dtype, shape, variable = schema
    if variable:  # the value picks the length too
        return (np.arange(1 + v % shape[0], dtype=dtype) * v).astype(dtype)
    return np.full(shape, v, dtype=dtype)


def _sig(arr: np.ndarray) -> tuple:
    return arr.dtype.str, arr.shape, arr.tobytes()


def _read_state(co) -> dict:  # any checkout
    out = empty_state()
    for name in co.arraysets.keys():
        aset = co.arraysets[name]
        schema = (aset.dtype.str, tuple(aset.shape), bool(aset.variable_shape))
        out["asets"][name] = (schema, {k: _sig(v) for k, v in aset.items()})
    out["meta"] = dict(co.metadata.items())
    return out


class RepositoryMachine(RuleBasedStateMachine):
    branches = Bundle("branches")
    commits = Bundle("commits")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="hangar-stateful-")
        self.repo = Repository(self.dir, exists=False)
        self.repo.init("Prop Test", "prop@example.com")
        self.model = RepositoryModel()
        self.co = None

    @initialize(target=commits)
    def first_commit(self) -> str:
        co = self.repo.checkout(write=True)
        self.co = co
        self.create_arrayset("a", 0)
        self.create_arrayset("b", 0)
        self.set_metadata("m1", "start")
        head = co.commit("initial")
        self.model.record_commit(head, (), self.model.staged)
        return head

    @initialize(target=branches)
    def master(self) -> str:
        return "master"

    def teardown(self) -> None:
        if self.co is not None:
            self.co.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----------------------------------------------------------- helpers
    def reopen(self, branch: str) -> None:
        self.co = self.repo.checkout(write=True, branch=branch)
        self.model.branch = branch

    def check_commit(self, commit: str) -> None:
        co = self.repo.checkout(commit=commit)
        try:
            assert _read_state(co) == self.model.states[commit]
        finally:
            co.close()

    # ------------------------------------------------------------- rules
    @rule(name=ASET_NAMES, variant=st.integers(0, 1))
    def create_arrayset(self, name: str, variant: int) -> None:
        schema = SCHEMAS[name][variant % len(SCHEMAS[name])]
        staged = self.model.staged["asets"]
        if name in staged:
            try:
                self.co.arraysets.init_arrayset(name, shape=schema[1], dtype=np.dtype(schema[0]),
                                                variable_shape=schema[2])
                raise AssertionError(f"creating existing arrayset {name!r} did not raise")
            except ArraysetExistsError:
                return
        self.co.arraysets.init_arrayset(name, shape=schema[1], dtype=np.dtype(schema[0]), variable_shape=schema[2])
        staged[name] = (schema, {})

    @rule(name=ASET_NAMES)
    def remove_arrayset(self, name: str) -> None:
        staged = self.model.staged["asets"]
        if name not in staged:
            try:
                self.co.arraysets.remove_aset(name)
                raise AssertionError(f"removing absent arrayset {name!r} did not raise")
            except ArraysetNotFoundError:
                return
        self.co.arraysets.remove_aset(name)
        del staged[name]

    @rule(aset=ASET_NAMES, key=KEYS, v=VALUES)
    def add(self, aset: str, key: object, v: int) -> None:
        staged = self.model.staged["asets"]
        if aset not in staged:
            return
        arr = make(staged[aset][0], v)
        self.co.arraysets[aset][key] = arr
        staged[aset][1][key] = _sig(arr)

    @rule(aset=ASET_NAMES, items=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=5), stacked=st.booleans())
    def add_many(self, aset: str, items: list, stacked: bool) -> None:
        """The bulk form ``co[aset, keys] = values`` (a list, or one stacked array): a later
        value for a repeated key wins, as if the samples were set one by one."""
        staged = self.model.staged["asets"]
        if aset not in staged:
            return
        arrays = [make(staged[aset][0], v) for _, v in items]
        stacked = stacked and len({a.shape for a in arrays}) == 1  # a stack needs one shape
        self.co[aset, [k for k, _ in items]] = np.stack(arrays) if stacked else arrays
        for (key, _), arr in zip(items, arrays):
            staged[aset][1][key] = _sig(arr)

    @rule(aset=ASET_NAMES, key=KEYS)
    def remove(self, aset: str, key: object) -> None:
        staged = self.model.staged["asets"]
        if aset not in staged:
            return
        if key in staged[aset][1]:
            del self.co.arraysets[aset][key]
            del staged[aset][1][key]
        else:
            try:
                del self.co.arraysets[aset][key]
                raise AssertionError(f"removing absent key {key!r} did not raise")
            except KeyError:
                pass

    @rule(key=META_KEYS, v=st.sampled_from(["one", "two", ""]))
    def set_metadata(self, key: object, v: str) -> None:
        meta = self.model.staged["meta"]
        if v == "":
            if key in meta:
                del self.co.metadata[key]
                del meta[key]
            return
        self.co.metadata[key] = v
        meta[key] = v

    @rule(target=commits)
    def commit(self):  # a commit id, or no value for the Bundle
        model = self.model
        if not model.dirty():
            try:
                self.co.commit("nothing")
                raise AssertionError("commit of a clean staging area did not raise")
            except NothingToCommitError:
                return multiple()
        head = self.co.commit("change")
        model.record_commit(head, (model.heads[model.branch],), model.staged)
        self.check_commit(head)
        return head

    @rule()
    def reset(self) -> None:
        if not self.model.dirty():
            try:
                self.co.reset_staging_area()
                raise AssertionError("reset of a clean staging area did not raise")
            except NothingToCommitError:
                return
        self.co.reset_staging_area()
        self.model.staged = copy_state(self.model.committed)
        self.reopen(self.model.branch)

    @rule()
    def close_and_reopen(self) -> None:
        """The staging area is durable: what was staged survives close and a new checkout."""
        self.co.close()
        self.repo = Repository(self.dir)
        self.reopen(self.model.branch)

    @rule(target=branches, name=BRANCH_NAMES, base=st.none() | commits)
    def create_branch(self, name: str, base: str | None):  # a name, or no value
        model = self.model
        if name in model.heads:
            try:
                self.repo.create_branch(name, base_commit=base)
                raise AssertionError("creating an existing branch did not raise")
            except ValueError:
                return multiple()
        self.repo.create_branch(name, base_commit=base)
        model.heads[name] = base if base is not None else model.heads[model.branch]
        return name

    @rule(name=branches, force=st.booleans())
    def remove_branch(self, name: str, force: bool) -> None:
        model = self.model
        if name not in model.heads:
            expected: type[Exception] | None = ValueError  # removed before
        elif name == model.branch:
            expected = PermissionError
        elif not force and not model.held_elsewhere(name):
            expected = ValueError  # would lose commits
        else:
            expected = None
        if expected is not None:
            try:
                self.repo.remove_branch(name, force_delete=force)
                raise AssertionError(f"removing branch {name!r} did not raise {expected.__name__}")
            except expected:
                return
        assert self.repo.remove_branch(name, force_delete=force) == name
        del model.heads[name]
        event("branch removed")

    @rule(name=branches)
    def switch(self, name: str) -> None:
        model = self.model
        if name not in model.heads or name == model.branch:
            return
        self.co.close()
        if model.dirty():
            try:
                self.repo.checkout(write=True, branch=name)
                raise AssertionError("switching with staged changes did not raise")
            except ValueError:
                self.reopen(model.branch)
                return
        self.reopen(name)
        model.staged = copy_state(model.committed)

    @rule(commit=commits)
    def checkout_old_commit(self, commit: str) -> None:
        """Any commit ever made reads back as it was, whatever happened to branches since."""
        self.check_commit(commit)

    @rule(name=BRANCH_NAMES, aset=ASET_NAMES, key=KEYS, v=VALUES, drop=KEYS)
    def commit_on_other_branch(self, name: str, aset: str, key: object, v: int, drop: object) -> None:
        """Switch to ``name`` (created from here if new), change a sample, commit, switch back."""
        model = self.model
        if model.dirty() or name == model.branch:
            return
        home = model.branch
        if name not in model.heads:
            self.create_branch(name, None)
        self.switch(name)
        if aset not in model.staged["asets"]:
            self.create_arrayset(aset, v)
        self.add(aset, key, v)
        if drop in model.staged["asets"][aset][1]:
            self.remove(aset, drop)
        self.commit()
        self.switch(home)

    @rule(name=BRANCH_NAMES, aset=ASET_NAMES, theirs=st.tuples(KEYS, VALUES),
          ours=st.tuples(KEYS, VALUES), meta=st.sampled_from(["one", "two", ""]))
    def diverge_and_merge(self, name: str, aset: str, theirs: tuple, ours: tuple, meta: str) -> None:
        """Both branches change (maybe the same key), then merge: 3-way, or a refused conflict."""
        if self.model.dirty() or name == self.model.branch:
            return
        self.commit_on_other_branch(name, aset, theirs[0], theirs[1], ours[0])
        if aset not in self.model.staged["asets"]:
            self.create_arrayset(aset, ours[1])
        self.add(aset, *ours)
        self.set_metadata("m2", meta)
        self.commit()
        self.merge(name)

    @rule(dev=branches)
    def merge(self, dev: str) -> None:
        model = self.model
        if dev not in model.heads or dev == model.branch:
            return
        if model.dirty():
            try:
                self.co.merge("merge", dev)
                raise AssertionError("merge into a dirty staging area did not raise")
            except ValueError:
                return
        ours, theirs = model.heads[model.branch], model.heads[dev]
        kind, expected = model.expected_merge(dev)
        event(f"merge: {kind}" + (" conflict refused" if kind == "3-way" and expected is None else ""))
        if kind == "ambiguous":
            return  # criss-cross history: several merge bases disagree, the model predicts nothing
        if expected is None:
            try:
                self.co.merge("merge", dev)
                raise AssertionError("conflicting merge did not raise")
            except MergeConflictError:
                assert self.repo.log(branch=model.branch, return_contents=True)["head"] == ours
                return
        new = self.co.merge("merge", dev)
        if kind == "contained":
            assert new == ours
        elif kind == "fast-forward":
            assert new == theirs
        else:
            assert new not in (ours, theirs)
            model.parents[new] = (ours, theirs)
        model.states.setdefault(new, copy_state(expected))
        assert model.states[new] == expected
        model.heads[model.branch] = new
        model.staged = copy_state(expected)
        self.check_commit(new)

    # -------------------------------------------------------- invariants
    @invariant()
    def staged_view_matches_model(self) -> None:
        if self.co is not None:
            assert _read_state(self.co) == self.model.staged

    @invariant()
    def branches_match_model(self) -> None:
        if self.co is not None:
            assert self.repo.list_branches() == sorted(self.model.heads)

    @precondition(lambda self: self.co is not None)
    @rule()
    def every_branch_matches_model(self) -> None:
        for name, head in self.model.heads.items():
            assert self.repo.log(branch=name, return_contents=True)["head"] == head
            self.check_commit(head)


# derandomize comes from the hypothesis profile (tests/conftest.py); one example here is up to
# 50 steps of real commits and checkouts, so the machine runs an eighth of the profile's example
# count: 12 in "ci", 62 in "dev", 625 in "long"
RepositoryMachine.TestCase.settings = settings(
    max_examples=max(10, settings.default.max_examples // 8), stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestRepositoryAgainstModel = RepositoryMachine.TestCase
