"""Sample, metadata, arrayset and branch names: validation and tree-entry encoding.

Sample keys are ``str`` or ``int``; the two types are distinct (``1 != '1'``), so
the type is encoded in the git tree entry name: ``s:<name>`` or ``i:<int>``.
"""

from __future__ import annotations

import numbers
import re
import zlib
from typing import Any, Iterable, Union

from hangar.errors import InvalidNameError

Key = Union[str, int]

MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_BRANCH_RE = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\Z")
_HEX = "0123456789abcdef"


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} {value!r} must be a str, not {type(value).__name__}")
    if not value or len(value) > MAX_NAME_LENGTH or not _NAME_RE.match(value) or value in (".", ".."):
        raise InvalidNameError(
            f"{what} {value!r} is not valid; allowed: 1-{MAX_NAME_LENGTH} ascii letters, digits, "
            "'-', '.', '_' (and not '.' or '..')"
        )
    return value


def validate_key(key: object, what: str = "sample key") -> Key:
    """Return ``key`` if it is a valid sample/metadata key, else raise ``ValueError``."""
    if type(key) is str:  # the common cases first: an ABC isinstance check costs ~1 us
        return _check_name(key, what)
    if isinstance(key, bool):
        raise InvalidNameError(f"{what} {key!r} must be a str or a non-negative int, not bool")
    if type(key) is int or isinstance(key, numbers.Integral):  # int, and numpy integers (np.arange loops)
        if key < 0:
            raise InvalidNameError(f"{what} {key!r} is negative; int keys must be >= 0")
        return int(key)
    return _check_name(key, what)


def validate_keys(keys: list[Any], what: str = "sample key") -> list[Key]:
    """:func:`validate_key` of each of ``keys``, as a list (the first bad one raises).

    Keys that are all plain ints (``list(range(n))``, the bulk form's usual keys) are
    checked with two C-level passes (types, then the minimum) instead of one call each.
    """
    if keys and set(map(type, keys)) == {int}:
        if min(keys) >= 0:
            return list(keys)
    return [validate_key(k, what) for k in keys]


def is_key_type(value: object) -> bool:
    """True for the types a key can have: str, or an int (numpy integers included), not bool."""
    t = type(value)
    if t is str or t is int:
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_arrayset_name(name: object) -> str:
    """Return ``name`` if it is a valid arrayset name, else raise ``ValueError``."""
    return _check_name(name, "arrayset name")


def validate_branch_name(name: object) -> str:
    """Return ``name`` if it is a valid branch name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _BRANCH_RE.match(name) or len(name) > 255 or ".." in name \
            or name.endswith(".lock") or name.startswith("-"):
        raise InvalidNameError(
            f"branch name {name!r} is not valid; allowed: ascii letters, digits, '-', '.', '_' "
            "and '/' between parts"
        )
    if name == "HEAD":  # git's name for the current commit: refs/heads/HEAD makes 'HEAD' ambiguous
        raise InvalidNameError(
            "branch name 'HEAD' is reserved by git (it names the current commit); choose another name")
    return name


def encode_key(key: Key) -> str:
    """Tree entry name of a (validated) key: ``i:<int>`` or ``s:<str>``."""
    t = type(key)
    if t is str:
        return "s:" + key  # type: ignore[operator]  # narrowed by type(key) is str (cheaper than isinstance here)
    if t is int or isinstance(key, numbers.Integral):
        return f"i:{int(key)}"
    return f"s:{key}"


def encode_keys(keys: list[Key]) -> list[str]:
    """:func:`encode_key` of each (validated) key; a list of ints is encoded in one C loop."""
    from hangar.plumbing import rowhash  # here: keys is imported by the CLI, which stays light

    if rowhash.available and type(keys) is list:
        try:  # plain ints >= 0 (the bulk form's usual keys): one C call, ~2 ms at 60,000 instead of ~14
            return rowhash.int_names(keys, "i:")  # type: ignore[arg-type]  # anything else raises: below
        except (TypeError, ValueError, OverflowError):
            pass
    if all(map(int.__instancecheck__, keys)) and not any(map(bool.__instancecheck__, keys)):
        return list(map("i:{}".format, keys))
    return [encode_key(k) for k in keys]


def int_key_names(keys: list[Any]) -> list[str] | None:
    """:func:`encode_keys` of ``keys`` when every one is a plain int from 0 to 2**63 - 1 (so valid:
    one C pass checks and encodes them), else None (the caller validates them one by one)."""
    from hangar.plumbing import rowhash  # here: keys is imported by the CLI, which stays light

    if rowhash.available and type(keys) is list and keys:
        try:
            return rowhash.int_names(keys, "i:")
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def decode_key(entry_name: str) -> Key:
    """Inverse of :func:`encode_key`."""
    if entry_name.startswith("i:"):
        return int(entry_name[2:])
    return entry_name[2:]


_FAN_TABLES = [[tuple(_HEX[(h >> (4 * i)) & 15] for i in range(depth)) for h in range(16 ** depth)]
               for depth in range(4)]


def fan_path(entry_name: str, depth: int) -> tuple[str, ...]:
    """Fan-out directories for an entry: ``depth`` hex digits of a stable hash (crc32) of the name."""
    h = zlib.crc32(entry_name.encode())
    if depth < len(_FAN_TABLES):
        return _FAN_TABLES[depth][h & ((1 << (4 * depth)) - 1)]
    return tuple(_HEX[(h >> (4 * i)) & 15] for i in range(depth))


def sort_key(key: Key) -> tuple[int, Union[int, str]]:
    """Deterministic order for mixed keys: ints (numerically) before strs."""
    return (0, key) if isinstance(key, int) else (1, key)


def sorted_keys(keys: Iterable[Key]) -> list[Key]:
    """``sorted(keys, key=sort_key)``, without a tuple per key (ints numerically, then strs)."""
    ints: list[Key] = []
    strs: list[Key] = []
    for k in keys:
        (ints if isinstance(k, int) else strs).append(k)
    ints.sort()
    strs.sort()
    return ints + strs


def writer_order(names: Iterable[str], added: dict[str, None]) -> list[Key]:
    """Keys of the entry ``names`` in the order a Hangar 0.3 writer listed them.

    Keys present before the writer's session (``names`` not in ``added``) come first, sorted
    (ints numerically, then strs); then the keys ``added`` during the session, in the order
    they were first added (``added`` is insertion-ordered; an overwritten key keeps its
    place, a key removed and added again goes last).
    """
    names = list(names)
    present = set(names)
    before = sorted_keys(decode_key(n) for n in names if n not in added)
    return before + [decode_key(n) for n in added if n in present]
