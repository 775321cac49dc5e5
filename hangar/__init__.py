"""hangar: version control for tensor data, built on real git.

>>> from hangar import Repository, make_torch_dataset, make_tf_dataset
"""

from typing import TYPE_CHECKING

from hangar._version import __version__

if TYPE_CHECKING:
    from hangar.repository import Repository


def __getattr__(name: str):  # noqa: ANN202
    # Repository (numpy, pygit2: ~0.2 s) is imported on first use, so ``import hangar`` and the
    # CLI's ``hangar --help`` stay fast (PEP 562)
    if name == "Repository":
        from hangar.repository import Repository

        globals()["Repository"] = Repository
        return Repository
    raise AttributeError(f"module 'hangar' has no attribute {name!r}")


def make_torch_dataset(arraysets, keys=None, index_range=None, field_names=None):  # noqa: ANN001, ANN201
    """Build a ``torch.utils.data.Dataset`` over arraysets (torch is imported only here).

    See :func:`hangar.dataloaders.torchloader.make_torch_dataset` for the parameters,
    return value and errors.
    """
    from hangar.dataloaders.torchloader import make_torch_dataset as _make

    return _make(arraysets, keys=keys, index_range=index_range, field_names=field_names)


def make_tf_dataset(arraysets, keys=None, index_range=None, shuffle=True):  # noqa: ANN001, ANN201
    """Build a ``tf.data.Dataset`` over arraysets (tensorflow is imported only here).

    See :func:`hangar.dataloaders.tfloader.make_tf_dataset` for the parameters, return
    value and errors.
    """
    from hangar.dataloaders.tfloader import make_tf_dataset as _make

    return _make(arraysets, keys=keys, index_range=index_range, shuffle=shuffle)


__all__ = ["Repository", "make_torch_dataset", "make_tf_dataset", "__version__"]
