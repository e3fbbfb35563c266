"""File I/O: natural images, atomic writes, JSON results with provenance."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path in the destination folder; rename it onto ``path`` only on success,
    so a crash never leaves a half-written file and never clobbers the old one. The result gets
    ordinary permissions (``0666 & ~umask``, not ``mkstemp``'s 0600). A killed writer's hidden temp
    file (``.<name>.<random><suffix>``) is removed by :func:`clean_stale_temps`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: hidden temp files of :func:`atomic_path`: ``.<name>.<8 random chars from mkstemp><suffix>``
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<rand>[a-z0-9_]{8})(?P<suffix>\.[A-Za-z0-9]+)?$")


def is_stale_temp(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s hidden temp files."""
    return bool(_TEMP_RE.match(name))


def clean_stale_temps(folder, recursive: bool = True, min_age_s: float = 0.0) -> list:
    """Remove the hidden temp files a killed writer left in ``folder`` (and its sub-folders when
    ``recursive``); only files matching :func:`atomic_path`'s naming and older than ``min_age_s``.
    Call it while holding the folder (no other writer). Returns the removed paths."""
    import time
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for p in (folder.rglob(".*") if recursive else folder.glob(".*")):
        try:
            if not p.is_file() or p.is_symlink() or not is_stale_temp(p.name):
                continue
            if min_age_s and now - p.stat().st_mtime < min_age_s:
                continue
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            continue
    return removed


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


#: largest image (pixels) :func:`load_image` decodes; checked from the header before decoding
MAX_IMAGE_PIXELS = 1 << 26   # 67 Mpx (8192 x 8192)


def load_image(path, grayscale: bool = False, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/... as float32 CHW in [0, 1] (Pillow) at its real bit depth: 8-bit
    modes / 255, 16-bit (``I;16*``, 16-bit PNG) / 65535, float (``F``) as stored (must be finite, in
    [0, 1]); palette, CMYK, YCbCr... → RGB; an alpha channel is dropped (with a warning). The pixel
    count is checked from the header before anything is decoded (``max_pixels``). No resizing."""
    import warnings
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)   # reads the header only
        with im:
            w, h = im.size
            if w * h > max_pixels or w < 1 or h < 1:
                raise UserError(f"image {path} declares {w}x{h} = {w * h:,} pixels; the limit is "
                                f"{max_pixels:,} (refused before decoding)")
            arr = _decode(im, path, grayscale)
    except Image.DecompressionBombError as e:
        raise UserError(f"image {path} is too large to decode ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot read image {path}: {e}") from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _decode(im, path, grayscale: bool) -> np.ndarray:
    """HW or HWC float32 in [0, 1] from an open Pillow image, at its real bit depth."""
    import warnings
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        warnings.warn(f"image {path}: alpha channel dropped (mode {mode}); the colour channels are used "
                      "as stored, not composited")
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        if mode == "I" and (a.min() < 0 or a.max() > 65535):
            raise UserError(f"image {path}: 32-bit integer pixels outside 0..65535 are not supported")
        a = (a / 65535.0).astype(np.float32)
        return a if grayscale else np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise UserError(f"image {path}: float pixels must be finite and in [0, 1] "
                            f"(range {np.nanmin(a):g}..{np.nanmax(a):g})")
        return a if grayscale else np.repeat(a[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if grayscale:
        im = im.convert("L")
    else:
        im = im.convert("RGB")   # L, 1, LA, RGBA, CMYK, YCbCr, ... (alpha dropped)
    return np.asarray(im, dtype=np.float32) / 255.0


def save_image(path, img) -> None:
    """Write CHW (or HW) float in [0, 1] as an 8-bit PNG (values clipped), atomically."""
    from PIL import Image
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    a = (np.clip(np.nan_to_num(a), 0, 1) * 255 + 0.5).astype(np.uint8)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(a).save(tmp, format="PNG")


# ------------------------------------------------------------------------------- bounded reads
#: largest JSON file read by :func:`read_json` (a run record with a long training history is < 10 MB)
MAX_JSON_BYTES = 64 << 20
#: deepest nesting of objects/arrays :func:`read_json` accepts
MAX_JSON_DEPTH = 64


def check_regular_file(path, what: str = "file"):
    """``os.stat`` of ``path`` (symbolic links followed) if it is a regular file; a FIFO, a device
    (``/dev/zero``), a socket, a folder or a missing path is a :class:`UserError` naming it."""
    import stat
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {path}: file not found") from None
    except OSError as e:
        raise UserError(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise UserError(f"{what} {path} is {kind}, not a regular file")
    return st


def read_bytes_bounded(path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refusing (before reading) a file larger than
    ``max_bytes`` and anything that is not a regular file (a FIFO is never opened: no hang)."""
    import stat
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise UserError(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())   # the file actually opened (a swap after the check is caught here)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{what} {path} is not a regular file")
        if st.st_size > max_bytes:
            raise UserError(f"{what} {path} is {st.st_size:,} bytes; the limit is {max_bytes:,} "
                            "(refused before reading)")
        data = f.read(min(st.st_size, max_bytes) + 1)   # (a buffer of the file size, not the limit)
    if len(data) > max_bytes:
        raise UserError(f"{what} {path} is larger than the limit {max_bytes:,} bytes")
    return data


def json_depth(obj) -> int:
    """Nesting depth of a parsed JSON value (0 for a scalar), iteratively."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            depth = max(depth, d)
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            depth = max(depth, d)
            stack.extend((v, d + 1) for v in o)
    return depth


def loads_bounded(text, source: str = "JSON", max_bytes: int = MAX_JSON_BYTES,
                  max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` with a size and a nesting-depth limit; every failure is one :class:`UserError`."""
    if len(text) > max_bytes:
        raise UserError(f"{source}: {len(text):,} bytes of JSON; the limit is {max_bytes:,}")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise UserError(f"{source}: JSON nested deeper than the limit {max_depth}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{source}: not valid JSON ({e})") from None
    if json_depth(obj) > max_depth:
        raise UserError(f"{source}: JSON nested deeper than the limit {max_depth}")
    return obj


def read_json(path, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON file"):
    """A JSON file read with limits: only a regular file (no FIFO, no device), at most ``max_bytes``
    (checked from its size before reading), nested at most ``max_depth``. One UserError otherwise."""
    data = read_bytes_bounded(path, max_bytes, what)
    return loads_bounded(data, f"{what} {path}", max_bytes, max_depth)


# ------------------------------------------------------------------------------------- tables
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def csv_cell(v):
    """A value as a CSV cell a spreadsheet never evaluates: a STRING starting with ``=``, ``+``,
    ``-``, ``@`` (or tab / carriage return) gets a leading ``'`` unless it is a plain number
    (``-1.5``, ``-inf``); numbers, booleans and ``None`` (→ empty) are left as they are."""
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_FORMULA_START) and not _NUMBER_RE.match(v.strip()):
        return "'" + v
    return v
