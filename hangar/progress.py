"""Progress bars for long operations: drawn on stderr when it is a terminal, silent otherwise.

The one progress implementation: the command line's imports and exports and the remote
transfers (fetch, push) use it. ``rich`` is imported only when a bar is drawn, so importing
this module costs nothing.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

#: ``advance(n, new_total=None)``: ``n`` more units done; ``new_total`` updates the expected amount
Advance = Callable[..., None]


def _silent(n: int, new_total: Optional[int] = None) -> None:
    """No bar: nothing to draw."""


@contextlib.contextmanager
def progress_bar(description: str, total: Optional[int], unit_bytes: bool = False) -> Iterator[Advance]:
    """A progress bar on stderr when it is a terminal (silent otherwise, or when ``total`` is 0).

    Parameters
    ----------
    description : str
        Text left of the bar.
    total : int or None
        Expected amount (None: unknown until ``advance(n, new_total)`` says).
    unit_bytes : bool
        Show amounts as bytes and a transfer speed, rather than ``done/total`` counts.

    Yields
    ------
    callable
        ``advance(n, new_total=None)``.
    """
    if not sys.stderr.isatty() or (total is not None and total <= 0):
        yield _silent
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    cols = [TextColumn("{task.description}"), BarColumn()]
    cols += [DownloadColumn(), TransferSpeedColumn()] if unit_bytes else [MofNCompleteColumn()]
    with Progress(*cols, TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int, new_total: Optional[int] = None) -> None:
            if new_total is not None:
                bar.update(task, total=new_total)
            bar.advance(task, n)

        yield advance


def progress(items: Iterable[T], total: Optional[int], description: str) -> Iterator[T]:
    """Yield ``items``, advancing a :func:`progress_bar` of ``total`` items by one per item."""
    with progress_bar(description, total) as advance:
        for item in items:
            yield item
            advance(1)
