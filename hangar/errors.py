"""Every exception hangar raises (and its one warning category).

Each class also derives from the builtin exception the public API documents (or the code
raised before it had a class), so ``except KeyError`` keeps working where the spec promises a
``KeyError`` and ``except HangarError`` catches every error of hangar's own. No module raises a
bare builtin of its own: ``tests/test_errors.py`` scans every raise site.
"""

from __future__ import annotations


class HangarError(Exception):
    """Base class of every hangar error."""


class RepositoryNotFoundError(HangarError, NotADirectoryError, FileNotFoundError):
    """The repository path is not an existing directory.

    A ``NotADirectoryError`` as ``Repository(path)`` always raised, and a ``FileNotFoundError``
    for a path that does not exist at all.
    """


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


# --- repositories ---------------------------------------------------------------------------


class RepositoryNotInitializedError(HangarError, RuntimeError):
    """The directory holds no hangar repository yet: call ``init()``."""


class RepositoryExistsError(HangarError, FileExistsError):
    """``init`` or ``clone`` found a repository (or a stray ``.hangar``) where it would write one."""


class InvalidArgumentError(HangarError, ValueError):
    """A parameter has a value outside the ones the call takes (the message names the value and
    the rule); a ``ValueError`` as every such check raised before."""


class ArgumentTypeError(HangarError, TypeError):
    """A parameter has a type the call does not take; a ``TypeError`` as before."""


class InvalidNameError(HangarError, ValueError):
    """A sample key, arrayset, branch, remote or metadata name breaks the naming rules."""


class InvalidSchemaError(HangarError, ValueError):
    """An arrayset's schema (shape, dtype, backend, flags) is not one hangar can store."""


class SchemaMismatchError(HangarError, ValueError):
    """Sample data does not fit its arrayset's schema (type, memory layout, dtype, rank or shape)."""


class InvalidMetadataError(HangarError, ValueError):
    """A metadata value is not an ascii str."""


class InvalidSelectionError(HangarError, ValueError):
    """``co[...]`` got a selection it does not take (a slice, a bad arrayset selector, a count
    of values that does not match the count of targets)."""


class SampleIndexError(HangarError, IndexError):
    """A loader's dataset was indexed past its length."""


class UnsupportedOperationError(HangarError, PermissionError):
    """The operation is never allowed (e.g. setting an arrayset by item); a ``PermissionError``
    as the spec says."""


class NotPicklableError(HangarError, TypeError):
    """The object holds unsaved state and cannot be pickled (a write-enabled arrayset, a tensor
    store with unflushed writes); a ``TypeError`` as ``pickle`` raises."""


class MissingDependencyError(HangarError, ImportError):
    """An optional dependency (torch, tensorflow, dask, the ``git`` binary) is not installed."""


# --- branches and commits -------------------------------------------------------------------


class BranchNotFoundError(HangarError, ValueError):
    """No branch (or no branch with commits) has the requested name; a ``ValueError`` as the spec says."""


class CommitNotFoundError(HangarError, ValueError):
    """No commit matches the requested digest; a ``ValueError`` as the spec says."""


class BranchExistsError(HangarError, ValueError):
    """A branch (local or fetched remote) already has the requested name."""


class UnmergedBranchError(HangarError, ValueError):
    """A branch to delete holds commits no other branch holds (``force_delete=True`` deletes it)."""


class CurrentBranchError(HangarError, PermissionError):
    """The writer's current branch cannot be deleted."""


class DirtyStagingAreaError(HangarError, ValueError, RuntimeError):
    """The staging area holds uncommitted changes where the operation needs it clean."""


class CheckoutBaseMovedError(HangarError, RuntimeError):
    """A writer checkout's branch moved (another process committed) since the checkout was based on it."""


class UnsafeToCollectError(HangarError, RuntimeError):
    """Garbage collection found a damaged record and stopped rather than lose what it names."""


# --- storage --------------------------------------------------------------------------------


class IncompleteIOError(HangarError, OSError):
    """A read or write made no progress (a short read of a pack, a write that wrote nothing)."""


class StoreFailedError(HangarError, OSError):
    """An earlier write to the tensor store failed; the samples staged since are not saved."""


class PackNotFoundError(HangarError, FileNotFoundError):
    """A pack (or a key of the object store) the caller names does not exist."""


class MalformedPackError(HangarError, ValueError):
    """A git pack or pack index file is not in the format its writer produces."""


class UnsupportedStorageError(HangarError, NotImplementedError):
    """The operation is not implemented for this kind of pack storage."""


# --- remotes --------------------------------------------------------------------------------


class RemoteNotFoundError(HangarError, ValueError):
    """No remote with the requested name is recorded; a ``ValueError`` as the spec says for ``remove``."""


class RemoteNotFoundKeyError(RemoteNotFoundError, KeyError):
    """No remote with the requested name is recorded, where the spec says ``KeyError`` (``ping``)."""


class RemoteExistsError(HangarError, ValueError):
    """A remote with the requested name is already recorded."""


class ServerUnreachableError(HangarError, ConnectionError):
    """A hangar server could not be reached, dropped the connection, or failed the git transfer."""


class ServerResponseError(HangarError, ConnectionError):
    """A hangar server answered with something the protocol does not allow (too much, the wrong
    samples, not a hangar server at all)."""


class PushAuthenticationError(HangarError, PermissionError):
    """The server refused the credentials given for a push."""


class ProtocolError(HangarError, ValueError):
    """A request or answer does not follow the wire format."""


class RecordTooLarge(ProtocolError):
    """A record claims more bytes than the request may carry (checked before reading them)."""


class RequestTooLargeError(HangarError):
    """A request body is larger than the server accepts for that path (the server answers ``413``).

    Deliberately no ``ValueError``: the upload handler answers ``ValueError`` with ``400``.
    """


class GitNotFoundError(HangarError, FileNotFoundError):
    """The ``git`` binary a server backend needs is not on ``PATH``."""


class ServerConfigError(HangarError, ValueError):
    """A ``hangar server`` setting (credentials, TLS files, git backend) is not usable."""


class UnseekableStreamError(HangarError, OSError):
    """A streamed answer was asked to seek back before the bytes it still holds."""


class LoaderRemoteDataError(RemoteDataError, ValueError):
    """A loader was given samples whose bytes are only on a remote; a ``ValueError`` as loaders
    raised before, and a ``RemoteDataError`` like every read of unfetched data."""


# --- processes and the command line ---------------------------------------------------------


class MainGuardError(HangarError, RuntimeError):
    """Worker processes would re-run a main script that has no ``__main__`` guard."""


class CliError(HangarError):
    """A user error found by the command line itself (reported as ``error: <message>``).

    No builtin base: the command line reports it and exits, nothing catches it by a builtin type.
    """


class DataRemoteAddressError(HangarError, ValueError):
    """A data location is not one hangar can use (``s3://BUCKET/PREFIX``)."""


class DataRemoteUnreachableError(RemoteDataError, ConnectionError):
    """A sample's bytes are not local and its data remote (an object store) cannot be read.

    The message names the remote and the sample. Both a :class:`RemoteDataError` (the bytes are
    not here) and a ``ConnectionError`` (the remote could not be reached).
    """


class ObjectStoreError(HangarError, ConnectionError):
    """An object store (a data remote's bucket) failed or refused a request; the message names
    the location, the endpoint and the store's own error."""


__all__ = [
    "HangarError", "RepositoryNotFoundError", "WriterLockError", "CheckoutClosedError", "HandleClosedError",
    "SampleNotFoundError", "ArraysetNotFoundError", "ArraysetExistsError", "MetadataNotFoundError",
    "ReadOnlyCheckoutError", "WriteEnabledArraysetError", "ClosedArraysetArgumentError", "IndexFormError",
    "NoCommitsYetError", "NothingToCommitError", "RemoteDataError", "CorruptDataError", "InvalidRecordError",
    "MergeConflictError", "DivergedHistoryError", "TransferInProgressError", "PushRefusedError",
    "StagingBaseMovedError", "BranchSwitchWarning", "RemoteAddressError", "RepositoryNotInitializedError",
    "RepositoryExistsError", "InvalidArgumentError", "ArgumentTypeError", "InvalidNameError", "InvalidSchemaError",
    "SchemaMismatchError", "InvalidMetadataError", "InvalidSelectionError", "SampleIndexError",
    "UnsupportedOperationError", "NotPicklableError", "MissingDependencyError", "BranchNotFoundError",
    "CommitNotFoundError", "BranchExistsError", "UnmergedBranchError", "CurrentBranchError",
    "DirtyStagingAreaError", "CheckoutBaseMovedError", "UnsafeToCollectError", "IncompleteIOError",
    "StoreFailedError", "PackNotFoundError", "MalformedPackError", "UnsupportedStorageError", "RemoteNotFoundError",
    "RemoteNotFoundKeyError", "RemoteExistsError", "ServerUnreachableError", "ServerResponseError",
    "PushAuthenticationError", "ProtocolError", "RecordTooLarge", "RequestTooLargeError", "GitNotFoundError",
    "ServerConfigError", "UnseekableStreamError", "LoaderRemoteDataError", "MainGuardError", "CliError",
    "DataRemoteAddressError", "DataRemoteUnreachableError", "ObjectStoreError",
]
