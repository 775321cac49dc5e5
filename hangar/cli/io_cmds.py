"""Bulk data verbs: ``hangar import`` (.npy/.npz/PNG/JPEG files, directories) and ``hangar export``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from hangar.cli.app import app
from hangar.cli.context import CliError, open_repo, reader, start_dir, writer
from hangar.cli.images import IMAGE_SUFFIXES
from hangar.cli.progress import progress

if TYPE_CHECKING:
    import numpy as np

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
                dirs.sort()
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
) -> None:
    """Import array and image files into ARRAYSET as one commit; samples are named after the files.

    Example: hangar import digits ./pngs -m "add digit images"
    """
    repo = open_repo()
    files = collect_files(paths)
    if not files:
        raise CliError(f"no importable files in {', '.join(paths)} (known: {', '.join(IMPORT_SUFFIXES)})")
    current = repo.writer_branch
    with writer(repo, branch) as co:
        if co.diff.status() != "CLEAN":
            raise CliError(f"the staging area of branch {co.branch_name!r} has uncommitted changes; "
                           "commit them (hangar commit -m MSG) or drop them (hangar reset) before importing")
        try:
            count = _stage_files(co, arrayset, files, create)
        except BaseException:
            if co.diff.status() != "CLEAN":
                co.reset_staging_area()  # nothing half-imported stays staged
            raise
        text = message or f"import {count} sample{'s' if count != 1 else ''} into {arrayset}"
        new = co.commit(text)
        on = co.branch_name
    if on != current and current in repo.list_branches():
        with writer(repo, current):
            pass  # importing into another branch leaves the current branch as it was
    typer.echo(f"[{on} {new}] {text}")
    typer.echo(f"imported {count} sample{'s' if count != 1 else ''} from {len(files)} "
               f"file{'s' if len(files) != 1 else ''} into {arrayset}")


def _stage_files(co, arrayset: str, files: list[str], create: bool) -> int:  # noqa: ANN001
    aset = co.arraysets[arrayset] if arrayset in co.arraysets else None
    if aset is None and not create:
        raise CliError(f"no arrayset named {arrayset!r}; create it first (hangar arrayset create "
                       f"{arrayset} --shape ... --dtype ...) or pass --create")
    seen: dict[str, str] = {}
    count = 0
    for path in progress(files, len(files), f"importing into {arrayset}"):
        shape = tuple(aset.shape) if aset is not None else None
        try:
            for name, arr in read_samples(path, shape):
                if aset is None:
                    aset = co.arraysets.init_arrayset(arrayset, prototype=arr)
                if aset.named_samples:
                    if name in seen:
                        raise CliError(f"sample name {name!r} comes from both {seen[name]} and {path}")
                    seen[name] = path
                    aset[name] = arr
                else:
                    aset.add(arr)
                count += 1
        except CliError:
            raise
        except (ValueError, OSError) as exc:
            raise CliError(f"{path}: {exc}") from exc
    return count


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
