"""hangar: version control for tensor data, built on real git.

>>> from hangar import Repository, make_torch_dataset, make_tf_dataset

Every export is imported on first use (:mod:`hangar._lazy`): ``Repository`` loads numpy and
pygit2 (~0.2 s), the loaders their framework only when a dataset is made.
"""

from typing import TYPE_CHECKING

from hangar._lazy import lazy_exports
from hangar._version import __version__

if TYPE_CHECKING:
    from hangar.dataloaders.deferred import make_tf_dataset, make_torch_dataset
    from hangar.repository import Repository

_EXPORTS = {
    "Repository": "hangar.repository",
    # wrappers that import their framework when called (the dataloaders' own import it on lookup)
    "make_torch_dataset": "hangar.dataloaders.deferred",
    "make_tf_dataset": "hangar.dataloaders.deferred",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["Repository", "make_torch_dataset", "make_tf_dataset", "__version__"]
