"""What the data loaders accept, named below the porcelain so the loaders' machinery need not import it.

:class:`hangar.arrayset.ArraysetDataReader` derives from :class:`LoaderSource`; the grouping
and reading machinery of the loaders (``hangar.dataloaders.common``, the dask array that
``ArraysetDataReader.to_dask`` builds) works on any ``LoaderSource`` through its
:meth:`~LoaderSource.loader_view`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LoaderSource:
    """Base of the arrayset handles hangar's data loaders read (the attributes they use, overridden)."""

    @property
    def name(self) -> str:
        """Name of the arrayset."""
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        """Datatype of its samples."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape (or max shape) of its samples."""
        raise NotImplementedError

    @property
    def variable_shape(self) -> bool:
        """Whether samples may be smaller than ``shape``."""
        raise NotImplementedError

    @property
    def iswriteable(self) -> bool:
        """Whether the handle belongs to a write-enabled checkout."""
        raise NotImplementedError

    def loader_view(self) -> Any:  # hangar.arrayset.LoaderView (a layer up)
        """The records and store behind this arrayset, as the loaders read them (a ``LoaderView``)."""
        raise NotImplementedError
