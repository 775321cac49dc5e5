"""hangar: version control for tensor data, built on real git.

>>> from hangar import Repository, make_torch_dataset, make_tf_dataset
"""

__version__ = "0.1.0"

from hangar.repository import Repository  # noqa: E402


def make_torch_dataset(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """Build a ``torch.utils.data.Dataset`` over arraysets (see ``hangar.dataloaders``)."""
    from hangar.dataloaders.torchloader import make_torch_dataset as _make

    return _make(*args, **kwargs)


def make_tf_dataset(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """Build a ``tf.data.Dataset`` over arraysets (see ``hangar.dataloaders``)."""
    from hangar.dataloaders.tfloader import make_tf_dataset as _make

    return _make(*args, **kwargs)


__all__ = ["Repository", "make_torch_dataset", "make_tf_dataset", "__version__"]
