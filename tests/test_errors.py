"""The error tree: every class in ``hangar.errors``, its bases, and every raise site in ``hangar/``.

The hierarchy is pinned class by class so a change to it is a visible, reviewed change; the
raise-site scan keeps bare builtins (which ``except HangarError`` misses) out of the package.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import pathlib

import numpy as np
import pytest

import hangar.errors as errors
from hangar import Repository
from hangar.errors import HangarError

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "hangar"

#: every class of hangar.errors and its direct bases, in definition order
HIERARCHY = {
    "HangarError": ("Exception",),
    "RepositoryNotFoundError": ("HangarError", "NotADirectoryError", "FileNotFoundError"),
    "WriterLockError": ("HangarError", "PermissionError"),
    "CheckoutClosedError": ("HangarError", "PermissionError", "ReferenceError"),
    "HandleClosedError": ("CheckoutClosedError",),
    "SampleNotFoundError": ("HangarError", "KeyError"),
    "ArraysetNotFoundError": ("HangarError", "KeyError"),
    "ArraysetExistsError": ("HangarError", "LookupError"),
    "MetadataNotFoundError": ("HangarError", "KeyError"),
    "ReadOnlyCheckoutError": ("HangarError", "PermissionError", "TypeError"),
    "WriteEnabledArraysetError": ("HangarError", "TypeError", "ValueError"),
    "ClosedArraysetArgumentError": ("HandleClosedError", "TypeError"),
    "IndexFormError": ("HangarError", "TypeError", "ValueError"),
    "NoCommitsYetError": ("HangarError", "RuntimeError", "ValueError"),
    "NothingToCommitError": ("HangarError", "RuntimeError"),
    "RemoteDataError": ("HangarError", "FileNotFoundError"),
    "CorruptDataError": ("HangarError", "OSError"),
    "InvalidRecordError": ("CorruptDataError", "ValueError"),
    "MergeConflictError": ("HangarError", "ValueError"),
    "DivergedHistoryError": ("HangarError", "ValueError"),
    "TransferInProgressError": ("HangarError", "RuntimeError"),
    "PushRefusedError": ("HangarError", "PermissionError"),
    "StagingBaseMovedError": ("HangarError", "ValueError"),
    "BranchSwitchWarning": ("UserWarning",),
    "RemoteAddressError": ("HangarError", "ValueError"),
    "RepositoryNotInitializedError": ("HangarError", "RuntimeError"),
    "RepositoryExistsError": ("HangarError", "FileExistsError"),
    "InvalidArgumentError": ("HangarError", "ValueError"),
    "ArgumentTypeError": ("HangarError", "TypeError"),
    "InvalidNameError": ("HangarError", "ValueError"),
    "InvalidSchemaError": ("HangarError", "ValueError"),
    "SchemaMismatchError": ("HangarError", "ValueError"),
    "InvalidMetadataError": ("HangarError", "ValueError"),
    "InvalidSelectionError": ("HangarError", "ValueError"),
    "SampleIndexError": ("HangarError", "IndexError"),
    "UnsupportedOperationError": ("HangarError", "PermissionError"),
    "NotPicklableError": ("HangarError", "TypeError"),
    "MissingDependencyError": ("HangarError", "ImportError"),
    "BranchNotFoundError": ("HangarError", "ValueError"),
    "CommitNotFoundError": ("HangarError", "ValueError"),
    "BranchExistsError": ("HangarError", "ValueError"),
    "UnmergedBranchError": ("HangarError", "ValueError"),
    "CurrentBranchError": ("HangarError", "PermissionError"),
    "DirtyStagingAreaError": ("HangarError", "ValueError", "RuntimeError"),
    "CheckoutBaseMovedError": ("HangarError", "RuntimeError"),
    "UnsafeToCollectError": ("HangarError", "RuntimeError"),
    "IncompleteIOError": ("HangarError", "OSError"),
    "StoreFailedError": ("HangarError", "OSError"),
    "PackNotFoundError": ("HangarError", "FileNotFoundError"),
    "MalformedPackError": ("HangarError", "ValueError"),
    "UnsupportedStorageError": ("HangarError", "NotImplementedError"),
    "RemoteNotFoundError": ("HangarError", "ValueError"),
    "RemoteNotFoundKeyError": ("RemoteNotFoundError", "KeyError"),
    "RemoteExistsError": ("HangarError", "ValueError"),
    "ServerUnreachableError": ("HangarError", "ConnectionError"),
    "ServerResponseError": ("HangarError", "ConnectionError"),
    "PushAuthenticationError": ("HangarError", "PermissionError"),
    "ProtocolError": ("HangarError", "ValueError"),
    "RecordTooLarge": ("ProtocolError",),
    "RequestTooLargeError": ("HangarError",),
    "GitNotFoundError": ("HangarError", "FileNotFoundError"),
    "ServerConfigError": ("HangarError", "ValueError"),
    "UnseekableStreamError": ("HangarError", "OSError"),
    "LoaderRemoteDataError": ("RemoteDataError", "ValueError"),
    "MainGuardError": ("HangarError", "RuntimeError"),
    "CliError": ("HangarError",),
    "DataRemoteAddressError": ("HangarError", "ValueError"),
    "DataRemoteUnreachableError": ("RemoteDataError", "ConnectionError"),
    "ObjectStoreError": ("HangarError", "ConnectionError"),
}

#: errors with no builtin base besides Exception, and why
NO_BUILTIN = {
    "HangarError": "the root of the tree",
    "RequestTooLargeError": "server-internal (answered 413); a ValueError would be answered 400 by the upload handler",
    "CliError": "reported by the command line as 'error: <message>'; nothing catches it by a builtin type",
}

#: (file relative to hangar/, builtin exception) allowed to be raised or built bare, and why
BARE_BUILTINS = {
    ("_lazy.py", "AttributeError"): "a module __getattr__ must raise AttributeError (PEP 562)",
    ("dataloaders/common.py", "AttributeError"): "a module __getattr__ must raise AttributeError (PEP 562)",
    ("session.py", "NotImplementedError"): "the abstract hook subclasses override; never reached",
    ("loader_source.py", "NotImplementedError"): "the abstract interface arrayset readers implement; never reached",
    ("testing/contracts.py", "NotImplementedError"): "a backend's contract class overrides the fixture; never reached",
    ("remote/client.py", "AssertionError"): "marks unreachable code after a loop that always returns or raises",
}

#: exception-like classes defined outside errors.py, and why they may be
FOREIGN_CLASSES = {
    ("remote/guard.py", "Unauthorized"): "a waitress HTTP response (waitress.utilities.Error), never raised",
}

_BUILTIN_EXCEPTIONS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}


def _classes() -> dict[str, type]:
    return {n: c for n, c in vars(errors).items() if inspect.isclass(c) and c.__module__ == errors.__name__}


@functools.lru_cache(maxsize=1)  # parsed once for the three tests that walk them (read only: never changed)
def _sources() -> tuple[tuple[str, ast.Module], ...]:
    return tuple((p.relative_to(PACKAGE).as_posix(), ast.parse(p.read_text(), str(p)))
                 for p in sorted(PACKAGE.rglob("*.py")))


def test_every_class_of_the_error_module_is_pinned_with_its_bases():
    classes = _classes()
    assert list(classes) == list(HIERARCHY)
    for name, cls in classes.items():
        assert tuple(b.__name__ for b in cls.__bases__) == HIERARCHY[name], name


def test_every_class_is_exported():
    assert sorted(errors.__all__) == sorted(HIERARCHY)


def test_every_error_is_a_hangar_error_and_a_builtin():
    for name, cls in _classes().items():
        if issubclass(cls, Warning):
            continue
        assert issubclass(cls, HangarError), name
        builtin_bases = [b for b in cls.__mro__ if b.__name__ in _BUILTIN_EXCEPTIONS
                         and b not in (Exception, BaseException) and b.__module__ == "builtins"]
        assert bool(builtin_bases) == (name not in NO_BUILTIN), name


def test_every_raise_site_raises_a_hangar_error():
    """A raise (or a constructed exception a factory returns) of a bare builtin is a missing class."""
    bad = []
    seen = set()
    for rel, tree in _sources():
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Name):
                name = node.exc.id
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
            if name in _BUILTIN_EXCEPTIONS:
                if (rel, name) in BARE_BUILTINS:
                    seen.add((rel, name))
                else:
                    bad.append(f"{rel}:{node.lineno} {name}")
    assert not bad, "bare builtin exceptions (add a class to hangar/errors.py): " + ", ".join(bad)
    assert seen == set(BARE_BUILTINS), "stale whitelist entries: " + repr(set(BARE_BUILTINS) - seen)


def test_raised_names_are_error_classes():
    """``raise Name(...)`` with a capitalised name raises a class of hangar.errors (or a whitelisted builtin)."""
    classes = _classes()
    bad = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id[:1].isupper():
                if target.id not in classes and (rel, target.id) not in BARE_BUILTINS:
                    bad.append(f"{rel}:{node.lineno} {target.id}")
            elif isinstance(target, ast.Attribute) and ast.unparse(target.value) != "typer":
                # typer.Exit / typer.BadParameter are the command line's control flow
                if target.attr[:1].isupper():
                    bad.append(f"{rel}:{node.lineno} {ast.unparse(target)}")
    assert not bad, bad


def test_no_exception_class_is_defined_outside_the_error_module():
    found = set()
    for rel, tree in _sources():
        if rel == "errors.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                if any(b in _BUILTIN_EXCEPTIONS or b.endswith(("Error", "Exception", "Warning")) for b in bases):
                    found.add((rel, node.name))
    assert found == set(FOREIGN_CLASSES)


def test_waitress_error_response_is_not_an_exception():
    from waitress.utilities import Error

    assert not issubclass(Error, BaseException)


def test_repository_path_that_is_no_directory(tmp_path):
    with pytest.raises(errors.RepositoryNotFoundError) as info:
        Repository(tmp_path / "missing", exists=False)
    assert isinstance(info.value, NotADirectoryError) and isinstance(info.value, FileNotFoundError)
    assert "missing" in str(info.value)


def test_bad_input_is_caught_as_hangar_error_and_as_the_documented_builtin(repo):
    co = repo.checkout(write=True)
    try:
        with pytest.raises(HangarError) as info:
            co.metadata["bad key"] = "v"
        assert isinstance(info.value, ValueError)
        with pytest.raises(errors.InvalidSchemaError) as info:
            co.arraysets.init_arrayset("a", shape=(0,), dtype=np.uint8)
        assert isinstance(info.value, ValueError)
        aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
        with pytest.raises(errors.SchemaMismatchError) as info:
            aset["s"] = np.zeros(3, np.uint8)
        assert isinstance(info.value, ValueError)
        with pytest.raises(errors.InvalidNameError):
            aset["a b"] = np.zeros(2, np.uint8)
    finally:
        co.close()
    with pytest.raises(errors.BranchNotFoundError) as info:
        repo.checkout(branch="nope")
    assert isinstance(info.value, ValueError)
    with pytest.raises(errors.InvalidArgumentError):
        repo.checkout(write="yes")
