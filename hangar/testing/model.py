"""A pure-Python model of a hangar repository's records, for property-based tests.

What hangar keeps in git, modelled with dicts: a commit graph (each commit's parents and its
state), branches, the writer's branch and staging area, and the 3-way merge rules of
``docs/diff-merge.md``. No hangar code is used, so a test comparing hangar with this model
checks hangar against an independent statement of the rules (``tests/test_stateful.py``).

A state is ``{"asets": {name: (schema, {key: sample})}, "meta": {key: value}}``: ``schema`` and
``sample`` are any comparable values (the test uses ``(dtype, shape, variable)`` and
``(dtype, shape, bytes)``).
"""

from __future__ import annotations

from typing import Any, Optional

State = dict[str, dict[Any, Any]]
_MISSING = object()


def empty_state() -> State:
    return {"asets": {}, "meta": {}}


def copy_state(state: State) -> State:
    return {"asets": {n: (schema, dict(samples)) for n, (schema, samples) in state["asets"].items()},
            "meta": dict(state["meta"])}


def merge_entries(base: dict, ours: dict, theirs: dict) -> Optional[dict]:
    """3-way merge of one table (samples or metadata): a change on one side is taken, the same
    change on both sides agrees; ``None`` when any key changed differently on both sides."""
    out = {}
    for key in base.keys() | ours.keys() | theirs.keys():
        b, m, d = base.get(key, _MISSING), ours.get(key, _MISSING), theirs.get(key, _MISSING)
        if m == d or d == b:
            val = m
        elif m == b:
            val = d
        else:
            return None
        if val is not _MISSING:
            out[key] = val
    return out


def merge_states(base: State, ours: State, theirs: State) -> Optional[State]:
    """The merged state of ``theirs`` (dev) into ``ours`` (master) since ``base``; ``None`` on a conflict.

    An arrayset changed on one side only is taken as a whole; changed on both sides with the same
    schema, its samples merge key by key; otherwise (schemas differ, or removed on one side and
    changed on the other) it conflicts. Metadata merges key by key.
    """
    out = empty_state()
    asets = base["asets"], ours["asets"], theirs["asets"]
    for name in asets[0].keys() | asets[1].keys() | asets[2].keys():
        b, m, d = (side.get(name) for side in asets)
        if d == b or m == d:
            val = m
        elif m == b:
            val = d
        elif m is not None and d is not None and m[0] == d[0]:
            samples = merge_entries(b[1] if b is not None else {}, m[1], d[1])
            if samples is None:
                return None
            val = (m[0], samples)
        else:
            return None
        if val is not None:
            out["asets"][name] = val
    meta = merge_entries(base["meta"], ours["meta"], theirs["meta"])
    if meta is None:
        return None
    out["meta"] = meta
    return out


class RepositoryModel:
    """Commits, branches and the writer's staging area of one repository."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        self.heads: dict[str, str] = {}
        self.branch = "master"
        self.staged: State = empty_state()

    # ------------------------------------------------------------ queries
    @property
    def committed(self) -> State:
        """The state of the writer branch's head (empty before the first commit)."""
        head = self.heads.get(self.branch)
        return self.states[head] if head is not None else empty_state()

    def dirty(self) -> bool:
        return self.staged != self.committed

    def ancestors(self, commit: str) -> set[str]:
        """``commit`` and every commit it descends from."""
        seen, todo = set(), [commit]
        while todo:
            c = todo.pop()
            if c not in seen:
                seen.add(c)
                todo.extend(self.parents[c])
        return seen

    def is_ancestor(self, older: str, newer: str) -> bool:
        return older in self.ancestors(newer)

    def merge_bases(self, a: str, b: str) -> set[str]:
        """The best common ancestors of ``a`` and ``b`` (more than one after criss-cross merges)."""
        common = self.ancestors(a) & self.ancestors(b)
        return {c for c in common if not any(c != o and self.is_ancestor(c, o) for o in common)}

    def held_elsewhere(self, branch: str) -> bool:
        """Whether another branch contains ``branch``'s head (so removing it loses no commit)."""
        head = self.heads[branch]
        return any(self.is_ancestor(head, h) for b, h in self.heads.items() if b != branch)

    def expected_merge(self, dev: str) -> tuple[str, Optional[State]]:
        """How merging branch ``dev`` into the writer branch must go: ``(kind, state)`` with kind
        ``'contained'``, ``'fast-forward'``, ``'3-way'`` (state ``None``: it conflicts) or
        ``'ambiguous'`` (several merge bases that disagree: the model does not predict it)."""
        ours, theirs = self.heads[self.branch], self.heads[dev]
        if self.is_ancestor(theirs, ours):
            return "contained", self.states[ours]
        if self.is_ancestor(ours, theirs):
            return "fast-forward", self.states[theirs]
        results = [merge_states(self.states[base], self.states[ours], self.states[theirs])
                   for base in self.merge_bases(ours, theirs)]
        if any(r != results[0] for r in results):
            return "ambiguous", None
        return "3-way", results[0]

    # ------------------------------------------------------------ changes
    def record_commit(self, commit: str, parents: tuple[str, ...], state: State) -> None:
        """``commit`` (with ``parents``) became the writer branch's head, holding ``state``."""
        self.parents[commit] = parents
        self.states.setdefault(commit, copy_state(state))
        self.heads[self.branch] = commit
        self.staged = copy_state(state)
