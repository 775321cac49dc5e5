"""PNG/JPEG <-> numpy for ``hangar import``, ``export --format png`` and ``view --png`` (Pillow)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from hangar.cli.context import CliError

if TYPE_CHECKING:  # numpy is imported by the functions that use it: `hangar --help` stays fast
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MODE_FOR_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise CliError("images need Pillow: pip install 'hangar[images]' (or: pip install pillow)") from None
    return Image


def read_image(path: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """Pixels of the image at ``path``, converted to the layout of an arrayset of ``shape``.

    Rank 2 -> grayscale ``(H, W)``; rank 3 with 1/3/4 channels -> ``(H, W, C)`` as L/RGB/RGBA.
    Without ``shape`` the image keeps its own mode (palette images become RGB or RGBA).
    """
    import numpy as np

    image_mod = _pillow()
    with image_mod.open(path) as img:
        channels = None
        if shape is not None and len(shape) == 2:
            if img.mode not in ("L", "1", "I", "I;16", "F"):
                img = img.convert("L")
        elif shape is not None and len(shape) == 3 and shape[-1] in _MODE_FOR_CHANNELS:
            channels = shape[-1]
            mode = _MODE_FOR_CHANNELS[channels]
            if img.mode != mode:
                img = img.convert(mode)
        elif img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        arr = np.asarray(img)
    if channels == 1:
        arr = arr[..., np.newaxis]
    return np.ascontiguousarray(arr)


def write_image(arr: np.ndarray, path: str) -> None:
    """Write ``arr`` as a PNG: uint8 ``(H, W)``, ``(H, W, 1|3|4)``, uint16 ``(H, W)``, or bool ``(H, W)``."""
    import numpy as np

    image_mod = _pillow()
    data = arr
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    ok = (data.dtype == np.uint8 and (data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (3, 4)))) \
        or (data.dtype in (np.uint16, np.bool_) and data.ndim == 2)
    if not ok:
        raise CliError(f"an array of dtype {arr.dtype} and shape {arr.shape} cannot be written as PNG; "
                       "PNG needs uint8 (H,W), (H,W,1), (H,W,3), (H,W,4) or uint16/bool (H,W); "
                       "use --format npy")
    img = image_mod.fromarray(np.ascontiguousarray(data))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
