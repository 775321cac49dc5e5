"""Arrayset verbs: ``hangar arrayset create|remove|list`` and ``hangar view``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

import typer

from hangar.cli.app import app
from hangar.cli.context import (
    CliError,
    branch_head,
    format_shape,
    not_fetched,
    open_repo,
    parse_key,
    parse_shape,
    reader,
    start_dir,
    writer,
)

if TYPE_CHECKING:
    import numpy as np

    from hangar.checkout import ReaderCheckout, WriterCheckout

arrayset_app = typer.Typer(help="Create, remove and list arraysets (staged; commit with hangar commit).",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(arrayset_app, name="arrayset")


@arrayset_app.command("create")
def create(
    name: str = typer.Argument(..., metavar="NAME", help="Name of the new arrayset."),
    shape: str = typer.Option(..., "--shape", metavar="SHAPE",
                              help="Sample shape (max shape with --variable-shape), e.g. 28,28."),
    dtype: str = typer.Option(..., "--dtype", metavar="DTYPE", help="numpy dtype of the samples, e.g. uint8, float32."),
    variable_shape: bool = typer.Option(False, "--variable-shape",
                                        help="Samples may be smaller than --shape (same rank)."),
    unnamed: bool = typer.Option(False, "--unnamed", help="Let hangar name the samples."),
    backend: Optional[str] = typer.Option(None, "--backend", metavar="NAME",
                                          help="Storage codec: auto, raw, lz4 or zstd."),
) -> None:
    """Stage a new arrayset on the current branch (commit it with hangar commit).

    Example: hangar arrayset create digits --shape 28,28 --dtype uint8
    """
    dims = parse_shape(shape)
    repo = open_repo()
    with writer(repo) as co:
        # init_arrayset takes any dtype-like
        aset = co.arraysets.init_arrayset(name, shape=dims, dtype=dtype, named_samples=not unnamed,  # type: ignore[arg-type]
                                          variable_shape=variable_shape, backend=backend)
        line = f"created arrayset {aset.name}: dtype {aset.dtype}, shape {format_shape(aset.shape)}"
    typer.echo(f"{line} (staged; commit with: hangar commit -m MSG)")


@arrayset_app.command("remove")
def remove(name: str = typer.Argument(..., help="Arrayset to remove.")) -> None:
    """Stage the removal of an arrayset and all its samples (commit it with hangar commit).

    Example: hangar arrayset remove digits
    """
    repo = open_repo()
    with writer(repo) as co:
        co.arraysets.remove_aset(name)
    typer.echo(f"removed arrayset {name} (staged; commit with: hangar commit -m MSG)")


@arrayset_app.command("list")
def list_(
    branch: Optional[str] = typer.Option(None, "--branch", metavar="BRANCH",
                                         help="List a branch head instead of the staging area."),
    commit: Optional[str] = typer.Option(None, "--commit", metavar="COMMIT",
                                         help="List a commit instead of the staging area."),
) -> None:
    """List arraysets: name, samples, dtype, shape, fixed|variable, named|unnamed (tab-separated).

    Without --branch/--commit the staging area is listed (committed plus staged changes).

    Example: hangar arrayset list --branch master
    """
    repo = open_repo()
    if branch or commit:
        with reader(repo, branch, commit) as co:
            rows = _arrayset_rows(co)
    else:
        try:
            with writer(repo) as co:
                rows = _arrayset_rows(co)
        except PermissionError as exc:  # another process is writing: list what is committed
            current = repo.writer_branch
            if branch_head(repo, current) is None:
                raise
            typer.echo(f"note: the staging area is in use ({exc}); listing the head of {current}", err=True)
            with reader(repo, current) as co:
                rows = _arrayset_rows(co)
    for row in rows:
        typer.echo(row)


def _arrayset_rows(co: Union[ReaderCheckout, WriterCheckout]) -> list[str]:
    rows = []
    for name in sorted(co.arraysets.keys()):
        aset = co.arraysets[name]
        rows.append("\t".join([name, str(len(aset)), str(aset.dtype), format_shape(aset.shape),
                               "variable" if aset.variable_shape else "fixed",
                               "named" if aset.named_samples else "unnamed"]))
    return rows


def _stats(arr: np.ndarray) -> list[str]:
    import numpy as np

    if arr.size == 0 or arr.dtype.fields is not None or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        return []
    values = arr.astype(np.float64) if arr.dtype == np.bool_ else arr
    if np.issubdtype(arr.dtype, np.complexfloating):
        return [f"mean: {complex(values.mean()):.6g}"]
    lo, hi = values.min(), values.max()
    return [f"min: {lo.item():.6g}" if np.issubdtype(values.dtype, np.floating) else f"min: {lo.item()}",
            f"max: {hi.item():.6g}" if np.issubdtype(values.dtype, np.floating) else f"max: {hi.item()}",
            f"mean: {float(values.mean()):.6g}", f"std: {float(values.std()):.6g}"]


@app.command("view")
def view(
    arrayset: str = typer.Argument(..., metavar="ARRAYSET", help="Arrayset holding the sample."),
    key: str = typer.Argument(..., metavar="KEY", help="Sample key (i:3 / s:3 to force an int / str key)."),
    branch: Optional[str] = typer.Option(None, "--branch", metavar="BRANCH",
                                         help="Branch head to read (default: current)."),
    commit: Optional[str] = typer.Option(None, "--commit", metavar="COMMIT",
                                         help="Commit to read instead of a branch head."),
    png: Optional[str] = typer.Option(None, "--png", metavar="FILE", help="Also write the sample as a PNG."),
) -> None:
    """Print a sample's shape, dtype and statistics; --png writes it as an image.

    Example: hangar view digits 7 --png seven.png
    """
    from hangar.errors import RemoteDataError

    repo = open_repo()
    with reader(repo, branch, commit) as co:
        aset = co.arraysets[arrayset]
        sample_key = parse_key(aset, key)
        try:
            arr = aset[sample_key]
        except RemoteDataError:
            raise not_fetched(repo, f"sample {sample_key!r}", arrayset, branch, commit) from None
    lines = [f"arrayset: {arrayset}", f"key: {sample_key!r}", f"dtype: {arr.dtype}",
             f"shape: {format_shape(arr.shape)}", *_stats(arr)]
    if png:
        from hangar.cli.images import write_image

        path = png if os.path.isabs(png) else os.path.join(start_dir(), png)
        if os.path.isdir(path):
            raise CliError(f"--png {png!r} is a directory; give a file name")
        write_image(arr, path)
        lines.append(f"png: {path}")
    typer.echo("\n".join(lines))
