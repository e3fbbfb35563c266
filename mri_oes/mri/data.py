"""fastMRI multi-coil HDF5 files: reading slices and Cartesian undersampling.

File layout (as fastMRI stores it; https://github.com/facebookresearch/fastMRI):

* ``kspace``: complex64 ``[slices, coils, H, W]`` — H = readout (frequency encode, fully sampled),
  W = phase encode (the axis fastMRI's line masks undersample); DC at the array centre.
* ``reconstruction_rss`` (train/val only): float32 ``[slices, h, w]``, the root-sum-of-squares of the
  fully sampled coil images centre-cropped to the recon size (knee 320×320).
* ``ismrmrd_header``: ISMRMRD XML; ``encodedSpace`` / ``reconSpace`` matrix sizes (``x`` = readout =
  H, ``y`` = phase encode = W), parsed with :func:`fastmri.data.mri_data.et_query` as in
  ``fastmri.data.SliceDataset._retrieve_metadata``.
* ``mask`` (test/challenge files only): ``[W]`` line mask of an already undersampled ``kspace``.
* attrs: ``acquisition``, ``max``, ``norm``, ``patient_id``, ``acceleration``, ``num_low_frequency``...

Every bad input raises :class:`mri_oes.errors.UserError` naming the file and the field.
"""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as etree
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import h5py
import numpy as np

from ..errors import UserError

#: fastMRI's centre fractions per acceleration (fastMRI challenge: 4× → 0.08, 8× → 0.04)
CENTER_FRACTIONS = {4: 0.08, 8: 0.04}
#: largest slice (coils × H × W complex entries, 1 GiB of complex64) read from a file; checked from the
#: dataset's declared shape before anything is allocated
MAX_SLICE_ELEMENTS = 1 << 27
#: largest matrix size accepted from an ISMRMRD header (per axis), and largest k-space grid axis
MAX_MATRIX = 1 << 14
#: most slices a file may declare (fastMRI volumes have <= ~50; checked before any index list is made)
MAX_SLICES = 4096
#: most coils a file may declare
MAX_COILS = 1024
#: largest whole-volume image (slices x h x w) read at once (the reference volume)
MAX_VOLUME_ELEMENTS = 1 << 28
#: largest ``ismrmrd_header`` (bytes) read; checked from the declared size (fixed-length strings) or read
#: through a buffer of this size (variable-length strings), never whole
MAX_HEADER_BYTES = 1 << 20
#: largest root attribute (bytes) copied into records; larger ones are noted, not read
MAX_ATTR_BYTES = 1 << 16
#: most root attributes copied into records
MAX_ATTRS = 256
#: k-space whose largest magnitude is below this cannot be scaled in float32 (denormal data)
MIN_KSPACE_MAX = 1e-30
#: an own mask's acceleration may differ this much (relative) from a given --accel
ACCEL_TOLERANCE = 0.2
MASK_TYPES = ("random", "equispaced", "equispaced-fraction")


# --------------------------------------------------------------------------------------- the slice
@dataclass
class MRISlice:
    """One multi-coil slice.

    ``kspace``: complex64 ``(coils, H, W)`` numpy array (as stored; possibly already undersampled);
    ``reference``: fully sampled RSS image ``(h, w)`` float32 from ``reconstruction_rss`` or ``None``;
    ``recon_size``: ``(h, w)`` from the header (readout, phase encode), clipped to the k-space size;
    ``mask``: ``(W,)`` float32 line mask when the file is already undersampled (``mask`` dataset, or
    inferred from all-zero phase-encode lines), else ``None``;
    ``metadata``: ``file``, ``slice``, ``attrs``, ``encoding_size``, header notes.
    """

    kspace: np.ndarray
    reference: Optional[np.ndarray]
    recon_size: Tuple[int, int]
    mask: Optional[np.ndarray] = None
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.kspace.shape)

    @property
    def fully_sampled(self) -> bool:
        return self.mask is None

    @property
    def file(self) -> str:
        return self.metadata.get("file", "?")

    @property
    def index(self) -> int:
        return int(self.metadata.get("slice", 0))


# --------------------------------------------------------------------------------------- utilities
def file_fingerprint(path) -> str:
    """A short hash of (absolute path, size, mtime): changes when the file is replaced or edited. Not
    a content identity (a resume compares :func:`slice_digest`)."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


#: digests already computed in this process, keyed by (file identity, what)
_DIGESTS: dict = {}


def _stat_key(path):
    p = Path(path).resolve()
    st = p.stat()
    return (str(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest_blocks(blocks) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in blocks:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{tuple(a.shape)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def slice_digest(path, index: int, loaded: Optional["MRISlice"] = None) -> str:
    """blake2b (128 bit) of slice ``index``'s k-space bytes and, when the file has one, its
    ``reconstruction_rss`` image: the content identity of one slice (a resume reuses a finished slice
    only when it matches). Cached per (path, inode, size, mtime, ctime) within the process; ``loaded``
    (the slice as :func:`load_slices` read it) is digested instead of reading the file again."""
    key = (_stat_key(path), "slice", int(index))
    if key in _DIGESTS:
        return _DIGESTS[key]
    if loaded is not None:
        blocks = [loaded.kspace] + ([loaded.reference] if loaded.reference is not None else [])
    else:
        with _open(path) as f:
            ds = _check_kspace_dataset(f, path)
            if not 0 <= int(index) < ds.shape[0]:
                raise UserError(f"{path}: slice {index} out of range: 'kspace' has {ds.shape[0]} slice(s)")
            rss = _member(f, "reconstruction_rss", path)
            try:
                blocks = [np.asarray(ds[int(index)]).astype(np.complex64, copy=False)] + \
                    ([np.asarray(rss[int(index)], dtype=np.float32)] if isinstance(rss, h5py.Dataset) else [])
            except OSError as e:
                raise UserError(f"{path}: cannot read 'kspace' slice {index} (truncated file? {e})") from None
    _DIGESTS[key] = _digest_blocks(blocks)
    return _DIGESTS[key]


def _read_string(obj, path, name, max_bytes):
    """A scalar string dataset/attribute (fixed or variable length) read through a buffer of
    ``max_bytes + 1`` (never whole); longer is a UserError naming the limit."""
    dt = obj.dtype
    shape = obj.shape
    if shape not in ((), (1,)):
        raise UserError(f"{path}: field {name!r} has shape {shape}; expected one string")
    if dt.kind == "S" and dt.itemsize > max_bytes:
        raise UserError(f"{path}: field {name!r} declares {dt.itemsize:,} bytes; the limit is {max_bytes:,} "
                        "(refused before reading)")
    if dt.kind not in "SO" or (dt.kind == "O" and h5py.check_string_dtype(dt) is None):
        raise UserError(f"{path}: field {name!r} has dtype {dt}; expected a string")
    buf = np.zeros(shape, dtype=f"S{max_bytes + 1}")
    try:
        if isinstance(obj, h5py.Dataset):
            obj.read_direct(buf)
        else:
            obj.read(buf, mtype=h5py.h5t.py_create(buf.dtype))
    except (OSError, TypeError, ValueError) as e:
        raise UserError(f"{path}: field {name!r} cannot be read ({e})") from None
    raw = bytes(buf.reshape(-1)[0])
    if len(raw) > max_bytes:
        raise UserError(f"{path}: field {name!r} is longer than the limit {max_bytes:,} bytes")
    return raw


def _attrs(obj, path="?") -> dict:
    """The object's attributes as JSON-able values, capped: at most :data:`MAX_ATTRS` of them, each at
    most :data:`MAX_ATTR_BYTES` (checked from the declared size before reading; a larger one is
    recorded as a note, not read)."""
    out = {}
    names = list(obj.attrs.keys())
    for i, k in enumerate(names):
        if i >= MAX_ATTRS:
            out["_not_copied"] = f"{len(names) - MAX_ATTRS} more attribute(s) (limit {MAX_ATTRS})"
            break
        try:
            aid = h5py.h5a.open(obj.id, k.encode())
            tid = aid.get_type()
            if isinstance(tid, h5py.h5t.TypeStringID) and not tid.is_variable_str() and \
                    tid.get_size() > MAX_ATTR_BYTES:
                out[k] = f"<string attribute of {tid.get_size():,} bytes, above the limit {MAX_ATTR_BYTES:,}; not copied>"
                continue
            dt, shape = aid.dtype, aid.shape
            n = int(np.prod(shape)) if shape else 1
            vstr = dt.kind == "O" and h5py.check_string_dtype(dt) is not None
            if dt.kind == "O" and not vstr:
                out[k] = f"<variable-length attribute of dtype {dt}, not copied>"
                continue
            if not vstr and n * dt.itemsize > MAX_ATTR_BYTES:
                out[k] = f"<attribute of {n * dt.itemsize:,} bytes, above the limit {MAX_ATTR_BYTES:,}; not copied>"
                continue
            if vstr:
                if n != 1:
                    out[k] = f"<{n} variable-length strings, not copied>"
                    continue
                try:
                    v = _read_string(aid, path, k, MAX_ATTR_BYTES).decode(errors="replace")
                except UserError:
                    out[k] = f"<string attribute above the limit {MAX_ATTR_BYTES:,} bytes; not copied>"
                    continue
            else:
                v = obj.attrs[k]
        except (OSError, TypeError, ValueError, KeyError) as e:
            out[k] = f"<unreadable attribute: {type(e).__name__}>"
            continue
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        if isinstance(v, float) and not np.isfinite(v):
            v = str(v)
        out[k] = v
    return out


def parse_header(xml, path="?") -> dict:
    """Encoded / recon matrix sizes and the phase-encode limits from an ISMRMRD header, the way
    ``fastmri.data.SliceDataset._retrieve_metadata`` reads them (``x`` = readout, ``y`` = phase
    encode). Returns ``{}`` when there is no header; a header that does not parse is a UserError."""
    from fastmri.data.mri_data import et_query
    if isinstance(xml, (bytes, np.bytes_)):
        xml = bytes(xml)
    try:
        root = etree.fromstring(xml)
        enc = ["encoding", "encodedSpace", "matrixSize"]
        rec = ["encoding", "reconSpace", "matrixSize"]
        out = {"encoding_size": tuple(int(et_query(root, enc + [a])) for a in "xyz"),
               "recon_size": tuple(int(et_query(root, rec + [a])) for a in "xyz")}
    except Exception as e:  # ParseError, RuntimeError("Element ... not found"), ValueError
        raise UserError(f"{path}: field 'ismrmrd_header' is not a readable ISMRMRD header ({e})") from None
    try:
        lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
        center = int(et_query(root, lims + ["center"]))
        maximum = int(et_query(root, lims + ["maximum"])) + 1
        out["padding_left"] = out["encoding_size"][1] // 2 - center
        out["padding_right"] = out["padding_left"] + maximum
    except Exception:
        pass
    return out


def read_header(f, path) -> dict:
    """The parsed ``ismrmrd_header`` of an open file (``{}`` without one), read through a bounded
    buffer (:data:`MAX_HEADER_BYTES`) after the link/storage checks of :func:`_member`."""
    ds = _member(f, "ismrmrd_header", path)
    if ds is None:
        return {}
    if not isinstance(ds, h5py.Dataset):
        raise UserError(f"{path}: field 'ismrmrd_header' is a group, not a dataset")
    return parse_header(_read_string(ds, path, "ismrmrd_header", MAX_HEADER_BYTES), path)


def check_slices(path, slices: Optional[Sequence[int]] = None) -> None:
    """Read and validate the given slices (default: all) of a file one at a time, as
    :func:`load_slices` does (header, NaN/Inf, all-zero and denormal k-space, all-zero reference),
    keeping none of them, and record each slice's :func:`slice_digest` on the way."""
    n = num_slices(path)
    for s in (range(n) if slices is None else slices):
        slice_digest(path, int(s), loaded=load_slices(path, [int(s)])[0])


def _open(path) -> h5py.File:
    """Open an input HDF5 file read-only: a regular file (a symbolic link to one is followed; a
    FIFO, device or folder is refused without opening it, :func:`mri_oes.io.check_regular_file`);
    every failure one UserError."""
    from ..io import check_regular_file
    p = Path(path)
    check_regular_file(p, "input file")
    try:
        return h5py.File(p, "r")
    except OSError as e:
        raise UserError(f"{p}: not a readable HDF5 file (truncated or wrong format: {e})") from None


def _member(f, name, path):
    """``f[name]`` only when it is a plain member of this file: a soft link (dangling, looping or
    not), an external link, a dataset with external storage (raw data in another file) or a virtual
    dataset (data mapped from other files) is refused with one UserError. ``None`` when absent."""
    try:
        link = f.get(name, getlink=True)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path}: field {name!r} cannot be resolved ({e})") from None
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise UserError(f"{path}: field {name!r} is an external link to {link.filename}:{link.path}; "
                        "links out of the file are not followed")
    if isinstance(link, h5py.SoftLink):
        raise UserError(f"{path}: field {name!r} is a soft link to {link.path!r}; links are not followed "
                        "(store the data itself)")
    try:
        obj = f[name]
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path}: field {name!r} cannot be opened ({e})") from None
    if isinstance(obj, h5py.Dataset):
        try:
            external, virtual = obj.external, obj.is_virtual
        except (OSError, RuntimeError) as e:
            raise UserError(f"{path}: field {name!r}: storage cannot be inspected ({e})") from None
        if external:
            raise UserError(f"{path}: field {name!r} uses external storage ({external[0][0]!r}...); "
                            "raw data outside the file is not read")
        if virtual:
            raise UserError(f"{path}: field {name!r} is a virtual dataset (data mapped from other files); "
                            "not read")
        _check_type(obj.id.get_type(), path, name)
        try:
            obj.dtype
        except (TypeError, ValueError, OSError) as e:
            raise UserError(f"{path}: field {name!r} has a data type that cannot be read ({e})") from None
    return obj


def _check_type(tid, path, name) -> None:
    """Refuse a fixed-length string type above :data:`MAX_HEADER_BYTES` from its declared size
    (before numpy is asked to represent it or anything is read)."""
    if isinstance(tid, h5py.h5t.TypeStringID) and not tid.is_variable_str() and tid.get_size() > MAX_HEADER_BYTES:
        raise UserError(f"{path}: field {name!r} declares {tid.get_size():,}-byte strings; the limit is "
                        f"{MAX_HEADER_BYTES:,} (refused before reading)")


def _check_kspace_dataset(f, path):
    ds = _member(f, "kspace", path)
    if ds is None:
        raise UserError(f"{path}: no 'kspace' dataset (found: {sorted(f.keys())[:20]}); "
                        "expected fastMRI multi-coil layout kspace[slices, coils, H, W]")
    if not isinstance(ds, h5py.Dataset):
        raise UserError(f"{path}: 'kspace' is a group, not a dataset")
    if ds.ndim == 3:
        raise UserError(f"{path}: 'kspace' has shape {ds.shape} = [slices, H, W], a single-coil file; "
                        "the multi-coil path needs kspace[slices, coils, H, W]")
    if ds.ndim != 4:
        raise UserError(f"{path}: 'kspace' has shape {ds.shape}; expected [slices, coils, H, W]")
    if ds.dtype.kind != "c":
        raise UserError(f"{path}: 'kspace' has dtype {ds.dtype}; expected complex64 (fastMRI layout)")
    if min(ds.shape) < 1:
        raise UserError(f"{path}: 'kspace' has an empty dimension, shape {ds.shape}")
    n, C, H, W = (int(a) for a in ds.shape)
    for what, v, lim in (("slices", n, MAX_SLICES), ("coils", C, MAX_COILS), ("readout lines H", H, MAX_MATRIX),
                         ("phase-encode lines W", W, MAX_MATRIX)):
        if v > lim:
            raise UserError(f"{path}: 'kspace' declares {v:,} {what} (shape {ds.shape}); the limit is {lim:,} "
                            "(refused before reading)")
    n_el = C * H * W
    if n_el > MAX_SLICE_ELEMENTS:
        raise UserError(f"{path}: 'kspace' declares slices of {ds.shape[1]} coils x {ds.shape[2]} x "
                        f"{ds.shape[3]} = {n_el:,} entries, above the limit {MAX_SLICE_ELEMENTS:,} "
                        "(refused before reading)")
    if n * H * W > MAX_VOLUME_ELEMENTS:
        raise UserError(f"{path}: 'kspace' declares a volume of {n} x {H} x {W} = {n * H * W:,} image "
                        f"pixels, above the limit {MAX_VOLUME_ELEMENTS:,} (refused before reading)")
    return ds


def num_slices(path) -> int:
    """Number of slices in a multi-coil fastMRI file (validates the ``kspace`` dataset)."""
    with _open(path) as f:
        return int(_check_kspace_dataset(f, path).shape[0])


def infer_mask(kspace: np.ndarray) -> Optional[np.ndarray]:
    """Line mask ``(W,)`` of phase-encode lines that hold data; ``None`` if every line holds data."""
    sampled = np.any(np.abs(kspace) > 0, axis=tuple(range(kspace.ndim - 1)))
    return None if sampled.all() else sampled.astype(np.float32)


# ------------------------------------------------------------------------------------------ reading
def load_slices(path, slices: Optional[Sequence[int]] = None) -> List[MRISlice]:
    """Read slices (default: all) of a multi-coil fastMRI file; validates everything before returning.

    Negative slice indices are not accepted (a typo should not silently pick the last slice)."""
    path = str(path)
    with _open(path) as f:
        ds = _check_kspace_dataset(f, path)
        n, C, H, W = ds.shape
        idx = list(range(n)) if slices is None else [int(s) for s in slices]
        for s in idx:
            if not 0 <= s < n:
                raise UserError(f"{path}: slice {s} out of range: 'kspace' has {n} slice(s) (0..{n - 1})")
        header = read_header(f, path)
        attrs = _attrs(f, path)
        recon_size, notes = _recon_size(header, H, W, path)
        rss = _member(f, "reconstruction_rss", path)
        if rss is not None:
            if not isinstance(rss, h5py.Dataset) or rss.ndim != 3 or rss.shape[0] != n:
                raise UserError(f"{path}: 'reconstruction_rss' has shape {getattr(rss, 'shape', None)}; "
                                f"expected [{n}, h, w] (one image per kspace slice)")
            if rss.dtype.kind not in "fiu":
                raise UserError(f"{path}: 'reconstruction_rss' has dtype {rss.dtype}; expected float32 images")
            if rss.shape[1] > H or rss.shape[2] > W:
                raise UserError(f"{path}: 'reconstruction_rss' images {rss.shape[1:]} are larger than "
                                f"the k-space grid {(H, W)}")
        file_mask = None
        mds = _member(f, "mask", path)
        if mds is not None:
            if not isinstance(mds, h5py.Dataset) or mds.dtype.kind not in "biuf":
                raise UserError(f"{path}: 'mask' must be a numeric dataset, got "
                                f"{getattr(mds, 'dtype', type(mds).__name__)}")
            size = int(np.prod(mds.shape)) if mds.shape else 1
            if size != W:   # declared size checked before reading
                raise UserError(f"{path}: 'mask' has {size} entries (shape {mds.shape}) but kspace has "
                                f"W={W} phase-encode lines")
            file_mask = np.asarray(mds[()]).astype(np.float32).reshape(-1)
            if not np.isfinite(file_mask).all() or not np.isin(file_mask, (0.0, 1.0)).all():
                raise UserError(f"{path}: 'mask' must hold 0/1 values (found NaN/Inf or other values)")
            if not file_mask.any():
                raise UserError(f"{path}: 'mask' samples no phase-encode line")
        out = []
        for s in idx:
            try:
                k = np.asarray(ds[s]).astype(np.complex64, copy=False)
                ref = None if rss is None else np.asarray(rss[s], dtype=np.float32)
            except OSError as e:
                raise UserError(f"{path}: cannot read 'kspace' slice {s} (truncated file? {e})") from None
            if not np.isfinite(k.view(np.float32)).all():
                raise UserError(f"{path}: 'kspace' slice {s} contains NaN or Inf")
            if ref is not None and not np.isfinite(ref).all():
                raise UserError(f"{path}: 'reconstruction_rss' slice {s} contains NaN or Inf")
            if not np.any(k):
                raise UserError(f"{path}: 'kspace' slice {s} is all zeros")
            kmax = float(np.abs(k).max())
            if kmax < MIN_KSPACE_MAX:
                raise UserError(f"{path}: 'kspace' slice {s} holds only denormal/tiny values (max |k| = "
                                f"{kmax:.3g} < {MIN_KSPACE_MAX:g}); it cannot be reconstructed in float32")
            if ref is not None and not float(np.max(ref, initial=0.0)) > MIN_KSPACE_MAX:
                raise UserError(f"{path}: 'reconstruction_rss' slice {s} is all zeros (max "
                                f"{float(np.max(ref, initial=0.0)):.3g}); no metric can be computed against it")
            mask = file_mask if file_mask is not None else infer_mask(k)
            meta = {"file": path, "slice": s, "attrs": attrs, "num_slices": n,
                    "mask_source": "file" if file_mask is not None else ("inferred" if mask is not None else None),
                    **{k_: v for k_, v in header.items() if k_ != "recon_size"}, **notes}
            out.append(MRISlice(k, ref, recon_size, mask, meta))
    return out


def load_slice(path, index: int = 0) -> MRISlice:
    return load_slices(path, [index])[0]


def _recon_size(header: dict, H: int, W: int, path) -> Tuple[Tuple[int, int], dict]:
    """Recon size ``(h, w)`` in k-space axis order, clipped to ``(H, W)``.

    fastMRI headers give ``x`` = readout = H, ``y`` = phase encode = W. Some hand-made files write
    the matrix transposed (x = W, y = H); when the encoded size matches ``(W, H)`` but not ``(H, W)``
    the header is read transposed and ``header_transposed`` is recorded."""
    notes = {}
    if not header:
        return (H, W), {"recon_size_source": "kspace shape (no ismrmrd_header)"}
    ex, ey = header["encoding_size"][:2]
    rx, ry = header["recon_size"][:2]
    for name, v in (("encodedSpace", (ex, ey)), ("reconSpace", (rx, ry))):
        if not all(1 <= int(a) <= MAX_MATRIX for a in v):
            raise UserError(f"{path}: 'ismrmrd_header' {name} matrix size {v} is outside 1..{MAX_MATRIX}")
    if (ex, ey) != (H, W) and (ex, ey) == (W, H):
        rx, ry = ry, rx
        notes["header_transposed"] = True
        header.pop("padding_left", None)   # computed from the transposed sizes: meaningless
        header.pop("padding_right", None)
    notes["recon_size_source"] = "ismrmrd_header reconSpace"
    return (min(rx, H), min(ry, W)), notes


# ------------------------------------------------------------------------------------ undersampling
def mask_function(accel: int, mask_type: str = "equispaced", center_fraction: Optional[float] = None):
    """fastMRI mask function for one acceleration.

    ``random`` → :class:`fastmri.data.subsample.RandomMaskFunc`; ``equispaced`` →
    :class:`~fastmri.data.subsample.EquiSpacedMaskFunc` (what ``create_mask_for_mask_type('equispaced')``
    gives, and what the fastMRI challenge used); ``equispaced-fraction`` →
    :class:`~fastmri.data.subsample.EquispacedMaskFractionFunc` (exact overall acceleration).
    Centre fraction: 0.08 at 4×, 0.04 at 8× (fastMRI), otherwise ``0.32 / accel`` unless given."""
    from fastmri.data import subsample
    if mask_type not in MASK_TYPES:
        raise UserError(f"mask type must be one of {MASK_TYPES}, got {mask_type!r}")
    if isinstance(accel, float) and not float(accel).is_integer():
        raise UserError(f"acceleration must be a whole number (fastMRI line masks), got {accel}")
    accel = int(accel)
    if accel < 2:
        raise UserError(f"acceleration must be >= 2, got {accel}")
    cf = CENTER_FRACTIONS.get(accel, 0.32 / accel) if center_fraction is None else float(center_fraction)
    if not 0 < cf < 1:
        raise UserError(f"center fraction must be in (0, 1), got {cf}")
    cls = {"random": subsample.RandomMaskFunc, "equispaced": subsample.EquiSpacedMaskFunc,
           "equispaced-fraction": subsample.EquispacedMaskFractionFunc}[mask_type]
    return cls([cf], [accel]), cf


def make_mask(W: int, accel: int, mask_type: str = "equispaced", seed: int = 0,
              center_fraction: Optional[float] = None, H: int = 1) -> Tuple[np.ndarray, dict]:
    """A seeded fastMRI line mask ``(W,)`` (float32 0/1) and info (``num_low_frequencies``,
    ``center_fraction``, actual ``acceleration``). Raises UserError when the mask function cannot
    make the requested acceleration on ``W`` lines (centre alone already exceeds ``W / accel``)."""
    func, cf = mask_function(accel, mask_type, center_fraction)
    n_low = round(W * cf)
    if n_low < 1:
        raise UserError(f"acceleration {accel}: centre fraction {cf} of W={W} lines is no line at all")
    if n_low * accel >= W or W / accel < 2:
        raise UserError(f"acceleration {accel} with centre fraction {cf} is not possible on W={W} "
                        f"phase-encode lines ({n_low} centre lines already give >= 1/{accel})")
    m, n_low = func((1, H, W, 2), seed=int(seed))
    m = m.numpy().reshape(-1).astype(np.float32)
    return m, {"num_low_frequencies": int(n_low), "center_fraction": cf, "mask_type": mask_type,
               "acceleration_nominal": int(accel), "acceleration": float(W / m.sum()), "seed": int(seed)}


def acs_lines(mask: np.ndarray) -> Tuple[int, int]:
    """``(start, width)`` of the contiguous block of sampled lines around the k-space centre
    ``W // 2`` (the auto-calibration signal). Width 0 if the centre line is not sampled."""
    m = np.asarray(mask).reshape(-1) > 0
    c = m.shape[0] // 2
    if not m[c]:
        return c, 0
    lo = c
    while lo > 0 and m[lo - 1]:
        lo -= 1
    hi = c
    while hi + 1 < m.shape[0] and m[hi + 1]:
        hi += 1
    return lo, hi - lo + 1


def lines_outside_acs(mask: np.ndarray) -> np.ndarray:
    """Boolean ``(W,)``: the sampled lines outside the ACS block (:func:`acs_lines`)."""
    m = np.asarray(mask).reshape(-1) > 0
    lo, w = acs_lines(m)
    out = m.copy()
    out[lo:lo + w] = False
    return out


def own_mask_acceleration(sl: MRISlice, accel: Optional[float] = None) -> float:
    """The actual acceleration ``W / sampled lines`` of an already undersampled slice's own mask.
    A given ``accel`` that differs from it by more than ``ACCEL_TOLERANCE`` (relative) is a
    UserError: the file's own mask is what the reconstruction uses, never the requested one."""
    if sl.mask is None:
        raise UserError(f"{sl.file}: slice {sl.index} is fully sampled (no own mask)")
    W = sl.kspace.shape[-1]
    own = float(W / max(float(np.sum(sl.mask > 0)), 1.0))
    if accel is not None and abs(own - float(accel)) > ACCEL_TOLERANCE * float(accel):
        raise UserError(f"{sl.file}: slice {sl.index} is already undersampled with its own mask (from "
                        f"{sl.metadata.get('mask_source')}, actual acceleration {own:.2f}x); --accel {accel} "
                        "differs: omit --accel to use the file's mask")
    return own


def undersample(sl: MRISlice, accel: Optional[int] = None, mask_type: str = "equispaced", seed: int = 0,
                center_fraction: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Undersampled k-space ``(coils, H, W)``, its line mask ``(W,)`` and mask info.

    Fully sampled slice: apply a seeded fastMRI mask (``accel`` required). Already undersampled slice
    (``sl.mask`` set): its own mask is used; asking for a different acceleration is a UserError."""
    C, H, W = sl.kspace.shape
    if sl.mask is not None:
        own = own_mask_acceleration(sl, accel)
        info = {"mask_type": f"from-{sl.metadata.get('mask_source')}", "acceleration": own,
                "num_low_frequencies": acs_lines(sl.mask)[1], "seed": None}
        return sl.kspace * sl.mask[None, None, :], sl.mask.astype(np.float32), info
    if accel is None:
        raise UserError(f"{sl.file}: slice {sl.index} is fully sampled: give an acceleration (--accel)")
    mask, info = make_mask(W, accel, mask_type, seed, center_fraction, H=H)
    return (sl.kspace * mask[None, None, :]).astype(np.complex64), mask, info
