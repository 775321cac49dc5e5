"""Read-only view of the records in one git tree (a commit or the staging area)."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from hangar.errors import InvalidMetadataError, InvalidRecordError
from hangar.plumbing.gitrepo import Blob, GitRepo, Tree
from hangar.plumbing.trees import subtree, walk_blobs
from hangar.records import layout
from hangar.records.keys import decode_key, fan_path, validate_key
from hangar.records.pointer import SamplePointer, decode_pointer, validate_pointer_for
from hangar.records.schema import ArraysetSchema


def validate_metadata_value(value: object) -> str:
    """``value`` if it is a metadata value ``add`` accepts (an ascii str), else ``ValueError``."""
    if not isinstance(value, str):
        raise InvalidMetadataError(f"metadata value must be a str, not {type(value).__name__}")
    if not value.isascii():
        raise InvalidMetadataError(f"metadata value {value[:40]!r} has non-ascii characters")
    return value


def decode_metadata(name: str, data: bytes) -> str:
    """A metadata blob as its str value, validated like ``add`` (``InvalidRecordError`` if not)."""
    try:
        validate_key(decode_key(name), "metadata key")
        return validate_metadata_value(data.decode("ascii"))
    except ValueError as exc:  # UnicodeDecodeError is one
        raise InvalidRecordError(f"metadata record {name!r} is invalid: {exc}") from exc


class EntryTable:
    """Entries (by encoded name) stored under a fanned-out tree, resolved lazily.

    Leaf trees are cached, so a lookup is one in-memory binary search plus a blob read.
    """

    def __init__(self, git: GitRepo, root: Optional[Tree], depth: int) -> None:
        self.git = git
        self.root = root
        self.depth = depth
        self._leaves: dict[tuple[str, ...], Optional[Tree]] = {}
        self._count: Optional[int] = None

    def _leaf(self, fan: tuple[str, ...]) -> Optional[Tree]:
        try:
            return self._leaves[fan]
        except KeyError:
            leaf = subtree(self.git, self.root, "/".join(fan)) if fan else self.root
            self._leaves[fan] = leaf
            return leaf

    def blob(self, name: str) -> Any:  # a pygit2 Blob, or None
        if self.root is None:
            return None
        leaf = self._leaf(fan_path(name, self.depth))
        if leaf is None:
            return None
        try:
            return leaf[name]
        except KeyError:
            return None

    def data(self, name: str) -> Optional[bytes]:
        b = self.blob(name)
        return None if b is None else b.data

    def __contains__(self, name: str) -> bool:
        return self.blob(name) is not None

    def blobs(self) -> Iterator[Any]:  # pygit2 Blobs
        if self.root is not None:
            yield from walk_blobs(self.root, self.depth)

    def names(self) -> Iterator[str]:
        for b in self.blobs():
            yield b.name

    def count(self) -> int:
        if self._count is None:
            self._count = 0 if self.root is None else _count(self.root, self.depth)
        return self._count


def _count(tree: Tree, depth: int) -> int:
    if depth == 0:
        return len(tree)
    return sum(_count(t, depth - 1) for t in tree if isinstance(t, Tree))


class MetadataTable(EntryTable):
    """Metadata values of one tree, validated as they are read."""

    def data(self, name: str) -> Optional[bytes]:
        data = super().data(name)
        if data is not None:
            decode_metadata(name, data)
        return data


class SampleTable(EntryTable):
    """Pointers of one arrayset's samples, checked against its schema as they are read."""

    def __init__(self, git: GitRepo, root: Optional[Tree], depth: int,
                 schema: Optional[ArraysetSchema] = None) -> None:
        super().__init__(git, root, depth)
        self.schema = schema
        self._valid: set[tuple[str, tuple[int, ...]]] = set()  # (dtype, shape) pairs checked already

    def _checked(self, name: str, ptr: SamplePointer) -> SamplePointer:
        if self.schema is not None and (ptr.dtype, ptr.shape) not in self._valid:
            validate_pointer_for(ptr, self.schema, f"arrayset {self.schema.name!r} sample record {name!r}")
            self._valid.add((ptr.dtype, ptr.shape))
        return ptr

    def pointer(self, name: str) -> Optional[SamplePointer]:
        data = self.data(name)
        return None if data is None else self._checked(name, decode_pointer(data))

    def pointers(self) -> Iterator[tuple[str, SamplePointer]]:
        for b in self.blobs():
            yield b.name, self._checked(b.name, decode_pointer(b.data))

    def tree_key(self) -> str:
        """Hex id of the samples tree (``"empty"`` without samples): names a location table."""
        return "empty" if self.root is None else str(self.root.id)

    def changes_since(self, base: "SampleTable") -> list[tuple[str, Optional[bytes], tuple[int, ...]]]:
        """``(entry name, digest or None (removed), shape)`` of the samples that differ from
        ``base`` (same fan-out depth), found by comparing subtree ids: O(changed)."""
        from hangar.records.treediff import TreeReader, fan_changes

        a = None if base.root is None else base.root.id.raw
        b = None if self.root is None else self.root.id.raw
        out: list[tuple[str, Optional[bytes], tuple[int, ...]]] = []
        for name, (_, new) in fan_changes(TreeReader(self.git), a, b, self.depth).items():
            if new is None:
                out.append((name, None, ()))
            else:
                # checked like every pointer read (a derived location table is a read path too)
                p = self._checked(name, decode_pointer(self.git.read_raw(new)))
                out.append((name, p.digest, p.shape))
        return out

    def entries(self) -> Iterator[tuple[str, bytes, tuple[int, ...]]]:
        """``(entry name, digest, shape)`` of every sample, for a location table."""
        for name, p in self.pointers():
            yield name, p.digest, p.shape


class Snapshot:
    """Arraysets, schemas, samples and metadata of one root tree."""

    def __init__(self, git: GitRepo, root_tree_id: Optional[str]) -> None:
        self.git = git
        self.tree_id = root_tree_id
        self.root = git.tree(root_tree_id)
        self._asets_tree = subtree(git, self.root, layout.ARRAYSETS)
        self._schemas: dict[str, ArraysetSchema] = {}
        self._tables: dict[str, SampleTable] = {}
        self.metadata = MetadataTable(git, subtree(git, self.root, layout.METADATA), layout.METADATA_FANOUT_DEPTH)

    def arrayset_names(self) -> list[str]:
        if self._asets_tree is None:
            return []
        return sorted(e.name or "" for e in self._asets_tree)  # pygit2 types a name Optional; entries have one

    def aset_tree(self, name: str) -> Optional[Tree]:
        return subtree(self.git, self._asets_tree, name)

    def schema(self, name: str) -> Optional[ArraysetSchema]:
        if name not in self._schemas:
            t = self.aset_tree(name)
            if t is None:
                return None
            try:
                blob = t[layout.SCHEMA]
            except KeyError:
                raise InvalidRecordError(f"arrayset {name!r} has no schema record") from None
            if not isinstance(blob, Blob):  # a tree there comes only from outside the API
                raise InvalidRecordError(f"schema record of arrayset {name!r} is a tree, not a blob")
            schema = ArraysetSchema.from_json(blob.data, f"schema record of arrayset {name!r}")
            if schema.name != name:
                raise InvalidRecordError(f"schema record of arrayset {name!r} names arrayset {schema.name!r}")
            self._schemas[name] = schema
        return self._schemas[name]

    def samples(self, name: str) -> SampleTable:
        if name not in self._tables:
            schema = self.schema(name)
            depth = schema.fanout_depth if schema else 0
            self._tables[name] = SampleTable(self.git, subtree(self.git, self.aset_tree(name), layout.SAMPLES), depth,
                                             schema)
        return self._tables[name]
