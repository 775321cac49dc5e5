"""The package-level loaders ``hangar.make_torch_dataset`` / ``hangar.make_tf_dataset``.

They import their framework when called, not when looked up, so ``hangar.make_torch_dataset``
(exported lazily by :mod:`hangar._lazy`) shows its signature without importing torch; the
loaders of :mod:`hangar.dataloaders` import it on lookup.
"""

from __future__ import annotations


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


