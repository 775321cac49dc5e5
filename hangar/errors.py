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


class CheckoutClosedError(HangarError, PermissionError, ReferenceError):
    """A checkout was used after ``close()`` (or after ``reset_staging_area()``).

    A ``PermissionError`` as in Hangar 0.3, and still a ``ReferenceError`` as before.
    """


class HandleClosedError(CheckoutClosedError):
    """A handle obtained from a checkout (arraysets, an arrayset, metadata, diff, or an
    iterator over keys/values/items) was used after its checkout was closed, or an
    arrayset handle after the arrayset was removed. A ``ReferenceError``, as a dead
    ``weakref.proxy`` in Hangar 0.3."""


class SampleNotFoundError(HangarError, KeyError):
    """No sample with the requested key exists."""


class ArraysetNotFoundError(HangarError, KeyError):
    """No arrayset with the requested name exists."""


class ArraysetExistsError(HangarError, LookupError):
    """An arrayset with the requested name already exists."""


class MetadataNotFoundError(HangarError, KeyError):
    """No metadata with the requested key exists."""


class ReadOnlyCheckoutError(HangarError, PermissionError, TypeError):
    """A write operation (``init_arrayset``, ``remove_aset``, ``multi_add``) on the handles of a
    read-only checkout. A ``TypeError`` too, as Hangar 0.3's reader arraysets raised."""


class WriteEnabledArraysetError(HangarError, TypeError, ValueError):
    """A write-enabled arrayset was given where committed data is read (the loaders).

    A ``TypeError`` as in Hangar 0.3, and still the ``ValueError`` it was before.
    """


class ClosedArraysetArgumentError(HandleClosedError, TypeError):
    """An arrayset of a closed checkout was passed to a loader: a ``ReferenceError`` like
    every closed handle, and a ``TypeError`` as in Hangar 0.3 (whose loaders saw a dead
    proxy where an arrayset belonged)."""


class IndexFormError(HangarError, TypeError, ValueError):
    """``co[index]`` or ``co[index] = value`` got an index or value of a form it does not take
    (e.g. one array where a list of arrays is needed). A ``TypeError`` as in Hangar 0.3, and
    still the ``ValueError`` it was before."""


class NoCommitsYetError(HangarError, RuntimeError, ValueError):
    """A branch was requested before the repository has its first commit.

    A ``RuntimeError`` as in Hangar 0.3, and still the ``ValueError`` it was before.
    """


class NothingToCommitError(HangarError, RuntimeError):
    """The staging area has no changes."""


class RemoteDataError(HangarError, FileNotFoundError):
    """A sample's bytes are only on a remote; ``fetch_data`` brings them."""


class CorruptDataError(HangarError, OSError):
    """Stored bytes do not match the digest that names them."""


class InvalidRecordError(CorruptDataError, ValueError):
    """A record read from git (schema, sample pointer, metadata) breaks the rules its writer enforces.

    Such records come only from outside the API (plain git, a hostile remote); ``hangar fsck``
    lists them. Also a ``ValueError``, the type record parsing always raised.
    """


class MergeConflictError(HangarError, ValueError):
    """A merge found conflicting changes and was not performed."""


class DivergedHistoryError(HangarError, ValueError):
    """The server's branch holds commits the local branch does not: fetch and merge first."""


class TransferInProgressError(HangarError, RuntimeError):
    """A fetch or clone is writing into the repository; garbage collection must wait."""


class PushRefusedError(HangarError, PermissionError):
    """The server refused to move its branch (e.g. it has staged work on it); the message says why."""


class StagingBaseMovedError(HangarError, ValueError):
    """The staging area holds changes based on a commit its branch no longer points at."""


class BranchSwitchWarning(UserWarning):
    """A writer checkout moved the staging area (the command line's current branch) to another branch."""


class RemoteAddressError(HangarError, ValueError):
    """A remote's recorded address is not one hangar can connect to (``IP:PORT``, ``https://IP:PORT``)."""


class RepositoryNotInitializedError(HangarError, RuntimeError):
    """The directory holds no hangar repository yet: call ``init()``."""
