"""Bulk data verbs: ``hangar import`` (.npy/.npz/PNG/JPEG files, directories) and ``hangar export``."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from hangar.cli.app import app
from hangar.cli.context import CliError, not_fetched, open_repo, reader, start_dir, writer
from hangar.cli.images import IMAGE_SUFFIXES
from hangar.progress import progress

if TYPE_CHECKING:
    import numpy as np

    from hangar.checkout import WriterCheckout

ARRAY_SUFFIXES = (".npy", ".npz")
IMPORT_SUFFIXES = ARRAY_SUFFIXES + IMAGE_SUFFIXES


def _resolve(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(start_dir(), path)


def collect_files(paths: list[str]) -> list[str]:
    """Files to import: named files as given, directories walked (sorted) for known suffixes."""
    files: list[str] = []
    for given in paths:
        path = _resolve(given)
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                # hidden directories (.hangar, .git) hold no user samples: `hangar import images .` works
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [os.path.join(root, n) for n in sorted(names)
                          if n.lower().endswith(IMPORT_SUFFIXES) and not n.startswith(".")]
        elif os.path.isfile(path):
            if not path.lower().endswith(IMPORT_SUFFIXES):
                raise CliError(f"cannot import {given!r}: unknown file type; "
                               f"known: {', '.join(IMPORT_SUFFIXES)}")
            files.append(path)
        else:
            raise CliError(f"cannot import {given!r}: no such file or directory")
    return files


def _stem(path: str) -> str:
    name = os.path.basename(path)
    return name[: name.rfind(".")] if "." in name else name


def read_samples(path: str, shape: Optional[tuple[int, ...]]) -> Iterator[tuple[str, "np.ndarray"]]:
    """``(sample name, array)`` pairs held by one file.

    A .npy holding one sample is named after the file; a .npy with one more dimension than
    the arrayset is a batch, its rows named ``<file>.<row>``; each array of a .npz is named
    ``<file>.<array name>``; an image is named after the file.
    """
    import numpy as np

    stem = _stem(path)
    lower = path.lower()
    if lower.endswith(IMAGE_SUFFIXES):
        from hangar.cli.images import read_image

        yield stem, read_image(path, shape)
        return
    if lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                yield f"{stem}.{name}", np.ascontiguousarray(archive[name])
        return
    arr = np.load(path, allow_pickle=False)
    if shape is not None and arr.ndim == len(shape) + 1:
        for i in range(arr.shape[0]):
            yield f"{stem}.{i}", np.ascontiguousarray(arr[i])
    else:
        yield stem, np.ascontiguousarray(arr)


KEY_FROM = ("stem", "sanitized")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.\-]")


def sanitized_name(name: str) -> str:
    """``'cat photo'`` -> ``'cat_photo'``: every character not allowed in a sample name becomes ``_``."""
    from hangar.records.keys import MAX_NAME_LENGTH  # not at import: builds fan-out tables (hangar --help)

    safe = _UNSAFE_RE.sub("_", name)[:MAX_NAME_LENGTH]
    return "_" * len(safe) if safe in ("", ".", "..") else safe


@app.command("import")
def import_(
    arrayset: str = typer.Argument(..., metavar="ARRAYSET", help="Arrayset to add the samples to."),
    paths: list[str] = typer.Argument(..., metavar="PATHS",
                                      help="Files (.npy, .npz, .png, .jpg) or directories to walk."),
    branch: Optional[str] = typer.Option(None, "--branch", metavar="BRANCH",
                                         help="Branch to commit on (default: current)."),
    message: Optional[str] = typer.Option(None, "-m", "--message", metavar="MSG", help="Commit message."),
    create: bool = typer.Option(False, "--create",
                                help="Create the arrayset from the first sample's shape and dtype if missing."),
    key_from: str = typer.Option("stem", "--key-from", metavar="stem|sanitized",
                                 help="Sample names: the file name without suffix (stem, default), or that "
                                      "with every character not allowed in a name replaced by _ (sanitized)."),
) -> None:
    """Import array and image files into ARRAYSET as one commit; samples are named after the files.

    Changes already staged (e.g. by hangar arrayset create) go into the same commit, as with
    git commit. If anything fails, nothing is committed and the staging area is as before.

    Example: hangar import digits ./pngs -m "add digit images"
    """
    if key_from not in KEY_FROM:
        raise CliError(f"--key-from {key_from!r} is not known; choose stem or sanitized")
    repo = open_repo()
    files = collect_files(paths)
    if not files:
        raise CliError(f"no importable files in {', '.join(paths)} (known: {', '.join(IMPORT_SUFFIXES)})")
    current = repo.writer_branch
    with writer(repo, branch) as co:
        staged = co.diff.status() != "CLEAN"
        job = _Import(co, arrayset, key_from == "sanitized")
        try:
            job.stage(files, create)
        except BaseException as exc:
            job.undo(staged)
            if isinstance(exc, KeyboardInterrupt):
                typer.echo("interrupted: nothing was committed", err=True)
                raise typer.Exit(130) from None
            raise
        count = job.count
        text = message or f"import {count} sample{'s' if count != 1 else ''} into {arrayset}"
        new = co.commit(text)
        on = co.branch_name
    if on != current and current in repo.list_branches():
        with writer(repo, current):
            pass  # importing into another branch leaves the current branch as it was
    typer.echo(f"[{on} {new}] {text}")
    typer.echo(f"imported {count} sample{'s' if count != 1 else ''} from {len(files)} "
               f"file{'s' if len(files) != 1 else ''} into {arrayset}"
               + (" (with the changes staged before)" if staged else ""))
    for path, name in job.renamed:
        typer.echo(f"renamed: {os.path.basename(path)!r} -> {name}")


class _Import:
    """Stages the samples of files into one arrayset, remembering how to take them back."""

    def __init__(self, co: WriterCheckout, arrayset: str, sanitize: bool) -> None:
        self.co = co
        self.arrayset = arrayset
        self.sanitize = sanitize
        self.count = 0
        self.created = False
        self.previous: dict = {}  # sample name -> its staged array before the import (None: new)
        self.renamed: list[tuple[str, str]] = []

    def stage(self, files: list[str], create: bool) -> None:
        from hangar.records.keys import validate_key

        co, arrayset = self.co, self.arrayset
        aset = co.arraysets[arrayset] if arrayset in co.arraysets else None
        if aset is None and not create:
            raise CliError(f"no arrayset named {arrayset!r}; create it first (hangar arrayset create "
                           f"{arrayset} --shape ... --dtype ...) or pass --create")
        seen: dict[str, str] = {}
        invalid: list[str] = []
        for path in progress(files, len(files), f"importing into {arrayset}"):
            shape = tuple(aset.shape) if aset is not None else None
            try:
                for name, arr in read_samples(path, shape):
                    if aset is None:
                        aset = co.arraysets.init_arrayset(arrayset, prototype=arr)
                        self.created = True
                    if not aset.named_samples:
                        # a writer checkout's arrayset
                        self.previous[aset.add(arr)] = None  # type: ignore[attr-defined]
                        self.count += 1
                        continue
                    if self.sanitize:
                        safe = sanitized_name(name)
                        if safe != name:
                            self.renamed.append((path, safe))
                        name = safe
                    try:
                        validate_key(name)
                    except ValueError:
                        invalid.append(f"{os.path.basename(path)!r} (name {name!r})")
                        continue
                    if name in seen:
                        raise CliError(f"sample name {name!r} comes from both {seen[name]} and {path}")
                    seen[name] = path
                    if invalid:
                        continue  # the import fails anyway: only look for more invalid names
                    first = not self.created and name not in self.previous
                    old = aset[name] if first and name in aset else None
                    aset[name] = arr  # type: ignore[index]  # a writer checkout's arrayset
                    if first:
                        self.previous[name] = old  # recorded once the write succeeded
                    self.count += 1
            except CliError:
                raise
            except (ValueError, OSError) as exc:
                raise CliError(f"{path}: {exc}") from exc
        if invalid:
            raise CliError(f"{len(invalid)} file name{'s are' if len(invalid) != 1 else ' is'} not a valid sample "
                           f"name (allowed: letters, digits, '-', '.', '_'): {', '.join(invalid)}; rename them or "
                           "pass --key-from sanitized to replace the other characters by '_'")

    def undo(self, staged_before: bool) -> None:
        """Take back what :meth:`stage` staged; changes staged before the import stay."""
        co = self.co
        if not staged_before:
            if co.diff.status() != "CLEAN":
                co.reset_staging_area()  # nothing half-imported stays staged
            return
        if self.created:
            co.arraysets.remove_aset(self.arrayset)
            return
        aset = co.arraysets[self.arrayset] if self.previous else None
        for name, old in self.previous.items():
            if old is None:
                del aset[name]  # type: ignore[union-attr]  # aset is set when old is
            else:
                aset[name] = old  # type: ignore[index]  # aset is set when old is


@app.command("export")
def export(
    arrayset: str = typer.Argument(..., metavar="ARRAYSET", help="Arrayset to export."),
    outdir: str = typer.Argument(..., metavar="OUTDIR", help="Directory to write one file per sample into (created)."),
    branch: Optional[str] = typer.Option(None, "--branch", metavar="BRANCH",
                                         help="Branch head to read (default: current)."),
    commit: Optional[str] = typer.Option(None, "--commit", metavar="COMMIT",
                                         help="Commit to read instead of a branch head."),
    fmt: str = typer.Option("npy", "--format", metavar="npy|png", help="File format: npy or png."),
) -> None:
    """Write every sample of ARRAYSET to OUTDIR as <key>.npy or <key>.png.

    Example: hangar export digits ./out --format png --commit 1a2b3c4
    """
    import numpy as np

    if fmt not in ("npy", "png"):
        raise CliError(f"format {fmt!r} is not known; choose npy or png")

    repo = open_repo()
    target = _resolve(outdir)
    with reader(repo, branch, commit) as co:
        aset = co.arraysets[arrayset]
        keys = list(aset.keys())
        remote = len(aset.remote_reference_sample_keys)
        if remote:  # checked first: nothing is written when the export cannot finish
            raise not_fetched(repo, f"{remote} of {len(keys)} samples", arrayset, branch, commit)
        names: dict[str, object] = {}
        for k in keys:
            if str(k) in names:
                raise CliError(f"arrayset {arrayset!r} has both the str key {str(k)!r} and the int key {k}; "
                               "they would be written to the same file")
            names[str(k)] = k
        os.makedirs(target, exist_ok=True)
        for key, arr in progress(aset.items(), len(keys), f"exporting {arrayset}"):
            path = os.path.join(target, f"{key}.{fmt}")
            if fmt == "png":
                from hangar.cli.images import write_image

                write_image(arr, path)
            else:
                tmp = f"{path}.tmp-{os.getpid()}.npy"
                np.save(tmp, arr, allow_pickle=False)
                os.replace(tmp, path)
    typer.echo(f"exported {len(keys)} sample{'s' if len(keys) != 1 else ''} of {arrayset} to {target}")
