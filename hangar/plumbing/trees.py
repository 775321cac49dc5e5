"""Build and edit git trees in bulk, reading the old trees through pygit2.

An edit set is a nested dict: ``{name: subedits_dict | LeafEdits | (mode, oid) | None}``;
``None`` deletes the entry. Only the trees on the paths of the edits are read and rewritten;
every untouched subtree is reused by id, so cost grows with the change, not the tree.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import pygit2

from hangar.plumbing.pack import OBJ_TREE, ObjectBatch

MODE_BLOB = 0o100644
MODE_TREE = 0o040000
_EMPTY_TREE_DATA = b""


def _sort_name(item: tuple[str, tuple[int, bytes]]) -> bytes:
    name, (mode, _) = item
    b = name.encode()
    return b + b"/" if mode == MODE_TREE else b


def serialize_tree(entries: dict[str, tuple[int, bytes]]) -> bytes:
    """Git tree object bytes for ``{name: (mode, raw oid)}``."""
    out = []
    for name, (mode, oid) in sorted(entries.items(), key=_sort_name):
        out.append(b"%o %s\x00%s" % (mode, name.encode(), oid))
    return b"".join(out)


_RAW_ENTRY = re.compile(rb"([0-7]+) ([^\x00]+)\x00.{20}", re.S)
_TREE_MODE = b"%o" % MODE_TREE


class LeafEdits:
    """Blob entries to set (raw id) or delete (``None``) in one tree, by name (bytes, sorted).

    The bulk form of an edit set's innermost level: the tree's bytes are built with one
    join over its sorted entries instead of a dict and a sort key per entry.
    """

    __slots__ = ("names", "oids")

    def __init__(self, names: list[bytes], oids: list[Optional[bytes]]) -> None:
        self.names = names
        self.oids = oids

    def apply(self, base_raw: Optional[bytes]) -> bytes:
        """Bytes of the tree ``base_raw`` (raw tree data; ``None``: empty) with these edits."""
        if not base_raw and None not in self.oids:  # a new tree: the names are in git's order already
            return b"".join([b"100644 %s\x00%s" % entry for entry in zip(self.names, self.oids)])
        entries: dict[bytes, bytes] = {}  # git sort key (a tree's name + "/") -> entry bytes
        for m in _RAW_ENTRY.finditer(base_raw or b""):
            mode, name = m.group(1), m.group(2)
            entries[name + b"/" if mode == _TREE_MODE else name] = m.group(0)
        for name, oid in zip(self.names, self.oids):
            entries.pop(name + b"/", None)
            if oid is None:
                entries.pop(name, None)
            else:
                entries[name] = b"100644 %s\x00%s" % (name, oid)
        return b"".join([entries[k] for k in sorted(entries)])


def tree_entries(repo: pygit2.Repository, tree: Optional[pygit2.Tree]) -> dict[str, tuple[int, bytes]]:
    """``{name: (mode, raw oid)}`` of a tree (empty for ``None``)."""
    if tree is None:
        return {}
    return {e.name: (int(e.filemode), e.id.raw) for e in tree}


def apply_edits(repo: pygit2.Repository, base: Optional[pygit2.Tree], edits: dict[str, Any],
                batch: ObjectBatch) -> Optional[bytes]:
    """Apply nested ``edits`` on ``base``; new trees go to ``batch``.

    Returns the raw id of the new tree, or ``None`` when the result is empty.
    """
    entries = tree_entries(repo, base)
    for name, edit in edits.items():
        if isinstance(edit, LeafEdits):
            old = entries.get(name)
            raw = repo[pygit2.Oid(raw=old[1])].read_raw() if old is not None and old[0] == MODE_TREE else None
            data = edit.apply(raw)
            if data:
                entries[name] = (MODE_TREE, batch.add(OBJ_TREE, data))
            else:
                entries.pop(name, None)
        elif isinstance(edit, dict):
            sub = None
            old = entries.get(name)
            if old is not None and old[0] == MODE_TREE:
                sub = repo[pygit2.Oid(raw=old[1])]
            new = apply_edits(repo, sub, edit, batch)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = (MODE_TREE, new)
        elif edit is None:
            entries.pop(name, None)
        else:
            entries[name] = edit
    if not entries:
        return None
    return batch.add(OBJ_TREE, serialize_tree(entries))


def empty_tree_id(batch: ObjectBatch) -> bytes:
    """Id of the empty tree (added to ``batch`` so it exists)."""
    return batch.add(OBJ_TREE, _EMPTY_TREE_DATA)


def subtree(repo: pygit2.Repository, tree: Optional[pygit2.Tree], path: str) -> Optional[pygit2.Tree]:
    """The tree at ``path`` under ``tree``, or ``None`` when absent or not a tree."""
    if tree is None:
        return None
    try:
        obj = tree[path]
    except KeyError:
        return None
    return obj if isinstance(obj, pygit2.Tree) else None


def walk_blobs(tree: pygit2.Tree, depth: int):
    """Yield every blob entry ``depth`` tree levels below ``tree``, in tree order."""
    if depth == 0:
        for e in tree:
            yield e
        return
    for e in tree:
        if isinstance(e, pygit2.Tree):
            yield from walk_blobs(e, depth - 1)
