"""File I/O: natural images, atomic writes, JSON results with provenance."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path in the destination folder; rename it onto ``path`` only on success,
    so a crash never leaves a half-written file and never clobbers the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def save_npy(path, arr):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(arr))


def versions() -> dict:
    """Versions recorded in every saved result."""
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("sigpy", "fastmri", "h5py", "scipy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional at import time
            pass
    from . import __version__
    out["mri_oes"] = __version__
    return out


def load_image(path, grayscale: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/... as float32 CHW in [0, 1] (Pillow). No resizing happens here."""
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if grayscale else "RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def save_image(path, img) -> None:
    """Write CHW (or HW) float in [0, 1] as an 8-bit PNG (values clipped), atomically."""
    from PIL import Image
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    a = (np.clip(np.nan_to_num(a), 0, 1) * 255 + 0.5).astype(np.uint8)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(a).save(tmp, format="PNG")


def crop_center(img: np.ndarray, size: int) -> np.ndarray:
    """Centre crop CHW to size×size (explicit; never a silent resize)."""
    C, H, W = img.shape
    if H < size or W < size:
        raise UserError(f"image {H}x{W} is smaller than the requested crop {size}")
    t, l = (H - size) // 2, (W - size) // 2
    return np.ascontiguousarray(img[:, t:t + size, l:l + size])
