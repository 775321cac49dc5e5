"""Loaders that feed arraysets to ML frameworks: PyTorch, TensorFlow and dask.

Each framework is an optional extra and is imported only when its loader is first used::

    from hangar.dataloaders import make_torch_dataset   # needs torch
    from hangar.dataloaders import make_tf_dataset      # needs tensorflow
    from hangar.dataloaders import dask_array           # needs dask[array]
"""

from __future__ import annotations

_LAZY = {
    "make_torch_dataset": "hangar.dataloaders.torchloader",
    "BlockShuffleSampler": "hangar.dataloaders.torchloader",
    "TorchDataset": "hangar.dataloaders.torchloader",
    "pad_collate": "hangar.dataloaders.torchloader",
    "make_tf_dataset": "hangar.dataloaders.tfloader",
    "dask_array": "hangar.dataloaders.daskarray",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):  # noqa: ANN202
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
