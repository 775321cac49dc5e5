"""hangar: version control for tensor data, built on real git.

>>> from hangar import Repository, make_torch_dataset, make_tf_dataset
"""

__version__ = "0.1.0"

from hangar.repository import Repository  # noqa: E402


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
