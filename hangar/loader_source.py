"""What the data loaders accept, named below the porcelain so the loaders' machinery need not import it.

:class:`hangar.arrayset.ArraysetDataReader` derives from :class:`LoaderSource`; the grouping
and reading machinery of the loaders (``hangar.dataloaders.common``, the dask array that
``ArraysetDataReader.to_dask`` builds) works on any ``LoaderSource`` through its
:meth:`~LoaderSource.loader_view`.
"""

from __future__ import annotations

from typing import Any


class LoaderSource:
    """Base of the arrayset handles hangar's data loaders read."""

    def loader_view(self) -> Any:  # noqa: ANN401 - hangar.arrayset.LoaderView (a layer up)
        """The records and store behind this arrayset, as the loaders read them (a ``LoaderView``)."""
        raise NotImplementedError
