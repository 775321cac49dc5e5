"""Every exception hangar raises.

Each class also derives from the builtin exception the public API documents, so
``except KeyError`` keeps working where the spec promises a ``KeyError``.
"""

from __future__ import annotations


class HangarError(Exception):
    """Base class of every hangar error."""


class RepositoryNotFoundError(HangarError, FileNotFoundError):
    """No hangar repository exists at the given path."""


class WriterLockError(HangarError, PermissionError):
    """The writer lock is held by another checkout."""


class CheckoutClosedError(HangarError, ReferenceError):
    """A checkout (or an object obtained from it) was used after ``close()``."""


class SampleNotFoundError(HangarError, KeyError):
    """No sample with the requested key exists."""


class ArraysetNotFoundError(HangarError, KeyError):
    """No arrayset with the requested name exists."""


class ArraysetExistsError(HangarError, LookupError):
    """An arrayset with the requested name already exists."""


class MetadataNotFoundError(HangarError, KeyError):
    """No metadata with the requested key exists."""


class NothingToCommitError(HangarError, RuntimeError):
    """The staging area has no changes."""


class RemoteDataError(HangarError, FileNotFoundError):
    """A sample's bytes are only on a remote; ``fetch_data`` brings them."""


class CorruptDataError(HangarError, OSError):
    """Stored bytes do not match the digest that names them."""


class MergeConflictError(HangarError, ValueError):
    """A merge found conflicting changes and was not performed."""


class DivergedHistoryError(HangarError, ValueError):
    """The server's branch holds commits the local branch does not: fetch and merge first."""


class TransferInProgressError(HangarError, RuntimeError):
    """A fetch or clone is writing into the repository; garbage collection must wait."""


class RemoteAddressError(HangarError, ValueError):
    """A remote's recorded address is not one hangar can connect to (``IP:PORT``, ``https://IP:PORT``)."""
