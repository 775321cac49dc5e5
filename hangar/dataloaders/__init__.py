"""Loaders that feed arraysets to ML frameworks: PyTorch, TensorFlow and dask.

Each framework is an optional extra and is imported only when its loader is first used
(:mod:`hangar._lazy`, the mechanism of the ``hangar`` package too)::

    from hangar.dataloaders import make_torch_dataset   # needs torch
    from hangar.dataloaders import make_tf_dataset      # needs tensorflow
    from hangar.dataloaders import dask_array           # needs dask[array]
"""

from __future__ import annotations

from hangar._lazy import lazy_exports

_EXPORTS = {
    "make_torch_dataset": "hangar.dataloaders.torchloader",
    "BlockShuffleSampler": "hangar.dataloaders.torchloader",
    "TorchDataset": "hangar.dataloaders.torchloader",
    "pad_collate": "hangar.dataloaders.torchloader",
    "make_tf_dataset": "hangar.dataloaders.tfloader",
    "dask_array": "hangar.dataloaders.daskarray",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
