"""Metadata: small ascii key/value labels recorded with each commit."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from hangar.errors import MetadataNotFoundError
from hangar.records.keys import Key, decode_key, encode_key, sorted_keys, validate_key, writer_order
from hangar.records.snapshot import validate_metadata_value
from hangar.session import CheckoutHandle, CheckoutSession


class MetadataReader(CheckoutHandle):
    """Read access to the metadata of a checkout."""

    def __init__(self, session: CheckoutSession, table_of) -> None:  # noqa: ANN001
        self._session = session
        self._table_of = table_of  # () -> EntryTable / StagedEntries (re-read after a flush)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_keys={len(self)})"

    @property
    def iswriteable(self) -> bool:
        """True for the metadata of a write-enabled checkout."""
        self._session.check()
        return False

    def _guarded(self, items: Iterable[Any]) -> Iterator[Any]:
        check = self._session.check
        for item in items:
            check()
            yield item

    def _value(self, name: str):  # noqa: ANN202
        table = self._table_of()
        v = table.value(name) if hasattr(table, "value") else table.data(name)
        if isinstance(v, bytes):
            v = v.decode("ascii")
        return v

    def __len__(self) -> int:
        """Number of metadata key/value pairs in the checkout."""
        self._session.check()
        return self._table_of().count()

    def __contains__(self, key: object) -> bool:
        """True when metadata is stored under ``key``; False otherwise (also for invalid keys)."""
        self._session.check()
        try:
            key = validate_key(key, "metadata key")
        except ValueError:
            return False
        return encode_key(key) in self._table_of()

    def __iter__(self) -> Iterator[Key]:
        return self.keys()

    def __getitem__(self, key: Key) -> str:
        """Return the value stored under ``key`` (dict-style :meth:`get`)."""
        return self.get(key)

    def get(self, key: Key) -> str:
        """Return the value stored under ``key``.

        Raises
        ------
        ValueError
            If the key is not a valid metadata key.
        KeyError
            If no metadata is stored under the key.
        """
        self._session.check()
        key = validate_key(key, "metadata key")
        v = self._value(encode_key(key))
        if v is None:
            raise MetadataNotFoundError(f"no metadata with key {key!r}")
        return v

    def _key_list(self) -> list[Key]:
        return sorted_keys(decode_key(n) for n in self._table_of().names())

    def keys(self) -> Iterator[Key]:
        """Iterator over every metadata key: ints first, then strs (as Hangar 0.3 listed a
        commit's keys); in a writer, keys added since it opened follow in the order they were
        added (as in Hangar 0.3).

        The keys are listed when ``keys()`` is called; the iterator raises ``ReferenceError``
        once the checkout is closed.
        """
        self._session.check()
        return self._guarded(self._key_list())

    def values(self) -> Iterator[str]:
        """Iterator over every metadata value, in ``keys()`` order."""
        return (v for _, v in self.items())

    def items(self) -> Iterator[tuple[Key, str]]:
        """Iterator over ``(key, value)`` pairs, in ``keys()`` order.

        The key list is copied when ``items()`` is called, so metadata may be added or
        removed while iterating; a key removed before its turn is skipped.
        """
        return self._items(list(self.keys()))

    def _items(self, keys: list[Key]) -> Iterator[tuple[Key, str]]:
        for k in keys:
            self._session.check()
            v = self._value(encode_key(k))
            if v is not None:
                yield k, v


class MetadataWriter(MetadataReader):
    """Read and write access to the metadata of the staging area."""

    def __init__(self, session: CheckoutSession, table_of) -> None:  # noqa: ANN001
        super().__init__(session, table_of)
        self._added: dict[str, None] = {}  # keys new in this writer, in the order added (Hangar 0.3)

    def _key_list(self) -> list[Key]:
        return writer_order(self._table_of().names(), self._added)

    @property
    def iswriteable(self) -> bool:
        """True: this metadata belongs to the write-enabled checkout."""
        self._session.check()
        return True

    def add(self, key: Key, value: str) -> Key:
        """Stage ``value`` under ``key``.

        Raises
        ------
        ValueError
            If the key has characters other than ascii letters, digits, ``-._`` (or is a
            negative int), or the value is not an ascii str.
        """
        self._session.check()
        key = validate_key(key, "metadata key")
        validate_metadata_value(value)
        name, table = encode_key(key), self._table_of()
        if name not in table:
            self._added.pop(name, None)
            self._added[name] = None
        table.set(name, value)
        return key

    def __setitem__(self, key: Key, value: str) -> Key:
        """Stage ``value`` under ``key`` (dict-style :meth:`add`); return the key."""
        return self.add(key, value)

    def remove(self, key: Key) -> Key:
        """Remove ``key`` from the staging area; return it.

        Raises
        ------
        ValueError
            If the key is not a valid metadata key.
        KeyError
            If no metadata is stored under the key.
        """
        self._session.check()
        key = validate_key(key, "metadata key")
        name = encode_key(key)
        if not self._table_of().remove(name):
            raise MetadataNotFoundError(f"no metadata with key {key!r}")
        self._added.pop(name, None)
        return key

    def __delitem__(self, key: Key) -> Key:
        """Remove ``key`` (dict-style :meth:`remove`); return it."""
        return self.remove(key)
