"""ESPIRiT coil sensitivity maps (SigPy's :class:`sigpy.mri.app.EspiritCalib`) with an HDF5 cache.

Maps are calibrated from the auto-calibration (ACS) lines of the UNDERSAMPLED k-space only — never
from fully sampled data the reconstruction would not have.

``EspiritCalib`` takes a square ``calib_width × calib_width`` centre region. The phase-encode
extent of the ACS block limits it: at 8× (centre fraction 0.04) a 180-line brain has only 7 ACS
lines, so the default is ``calib_width = min(ACS width, 24)`` and
``kernel_width = clip(calib_width // 2, 3, 6)`` (7 ACS lines → 7×7 calibration, 3×3 kernels; 6×6
kernels there leave too few calibration rows and the eigenvalue crop removes everything), but 3 for 8–9
calibration lines too (4×4 kernels on a 96-wide 16-coil brain at 4×: L1-wavelet 0.9–1.9 dB and Sparse-DIP
1.7 dB lower on average; results/2026-12-05-small-grid-density/). The rule is within 0.05 dB of the best
width 3..8 on average over the shared scans at 4× and 8×; choosing the width per scan by L1-wavelet's
held-out lines matched it at 4× and lost 1.0–1.9 dB on 5 of 8 cases at 8× (results/2026-12-05-espirit-kernel-holdout/).

Few ACS lines (3 to 5: 8× on a 96-wide grid has 4 or 5): a square ``4 × 4`` or ``5 × 5`` region leaves
too few calibration rows (brain16 8×, seed 0, 4 × 4 region, 3 × 3 kernels: SENSE and L1-wavelet at most 19.2 dB
over a λ sweep, zero-filled 18.7). The readout axis is fully
sampled, so the calibration region is then rectangular, ``min(24, H)`` readout × the ACS width, with
``5 × 2`` kernels (SigPy's ESPIRiT computation on that region, :func:`espirit_rect`; brain16 8×, seed 0:
SENSE 22.9 dB, L1-wavelet 23.2 dB vs zero-filled 18.7; seed 1, 5 ACS lines: best-λ SENSE / L1 19.2 /
20.0 dB on the rectangle, 18.6 / 18.7 on the 5 × 5 square). The resolved parameters carry ``calib_shape``,
``kernel_shape`` and a one-line ``note`` that is also logged. Fewer than 3 ACS lines are refused.

Default ``crop = 0`` (maps everywhere). Measured here: with the classic 0.95 crop and a small ACS block
the crop cut away anatomy (a 128×128 cut of the brain kept 39% of the image at 4× and 3% at 8×;
L1-wavelet fell to 13.8 / 10.6 dB, below zero-filled), while crop 0 gave SENSE 30.6 / 21.6 dB there and
30.1 / 22.9 dB on the full brain (crop 0.95: 30.0 / 24.9). Pass ``crop=0.95`` for the classic behaviour.

Cache: one HDF5 file (default ``espirit_cache.h5`` beside the outputs); each entry is a group named
by a hash of (file fingerprint = path + size + mtime, slice, ESPIRiT parameters, ACS block position,
a hash of the calibration k-space itself). A second run with the same inputs reads the maps.
The cache file carries the root attribute ``mri_oes_cache = "espirit/1"``; a path that exists without
it (an input ``.h5``, any other file) is never opened for writing: :func:`check_cache_path` refuses it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional, Tuple

import h5py
import numpy as np

from ..errors import UserError
from .data import acs_lines

log = logging.getLogger(__name__)

DEFAULTS = {"calib_width": None, "kernel_width": None, "thresh": 0.02, "crop": 0.0, "max_iter": 100}
MAX_CALIB_WIDTH = 24
CACHE_MARK = ("mri_oes_cache", "espirit/1")
#: fewest ACS lines accepted; below SQUARE_MIN_ACS the automatic rule calibrates on a rectangle
MIN_ACS = 3
SQUARE_MIN_ACS = 6
#: rectangular calibration for few ACS lines: readout extent (capped at H) and kernel (readout, phase encode)
RECT_CALIB_READOUT = 24
RECT_KERNEL = (5, 2)
RULE = ("calib_width = min(ACS, 24), kernel_width = 3 up to 9 calibration lines, else clip(calib_width // 2, 3, 6); ACS 3-5: "
        "rectangular min(24, H) x ACS region, 5 x 2 kernels; thresh 0.02, crop 0; SENSE / L1-wavelet add the second "
        "eigenvector set (soft-SENSE, crop 0.5) when the second eigenvalue exceeds 0.9 on >= 0.5 % of the object, at "
        "the phase-encode edges at least as often as in the centre")


def espirit_params(mask: np.ndarray, calib_width: Optional[int] = None, kernel_width: Optional[int] = None,
                   thresh: float = 0.02, crop: float = 0.0, max_iter: int = 100, readout: Optional[int] = None
                   ) -> dict:
    """Resolve ESPIRiT parameters for a line mask (``calib_width``/``kernel_width`` ``None`` = auto).
    ``readout``: the k-space's readout size ``H`` (caps the rectangular region used for 3-5 ACS lines)."""
    _, acs = acs_lines(mask)
    if acs < MIN_ACS:
        raise UserError(f"mask has only {acs} fully sampled centre (ACS) lines; ESPIRiT needs >= {MIN_ACS} "
                        "(use a larger centre fraction or give coil maps another way)")
    if not 0 < thresh < 1:
        raise UserError(f"ESPIRiT thresh must be in (0, 1), got {thresh}")
    if not 0 <= crop < 1:
        raise UserError(f"ESPIRiT crop must be in [0, 1), got {crop}")
    if acs < SQUARE_MIN_ACS and calib_width is None and kernel_width is None:
        ro = min(RECT_CALIB_READOUT, int(readout) if readout else RECT_CALIB_READOUT)
        ks = (min(RECT_KERNEL[0], ro - 1), min(RECT_KERNEL[1], acs - 1))
        note = (f"only {acs} ACS lines: ESPIRiT calibrated on a {ro} x {acs} (readout x phase-encode) centre "
                f"region with {ks[0]} x {ks[1]} kernels")
        return {"calib_width": int(acs), "kernel_width": int(ks[1]), "calib_shape": [int(ro), int(acs)],
                "kernel_shape": [int(ks[0]), int(ks[1])], "thresh": float(thresh), "crop": float(crop),
                "max_iter": int(max_iter), "acs_width": int(acs), "rule": RULE, "note": note}
    cw = min(acs, MAX_CALIB_WIDTH) if calib_width is None else int(calib_width)
    if not 3 <= cw <= acs:
        raise UserError(f"ESPIRiT calib_width {cw} must be in 3..{acs} (the ACS width of the mask): "
                        "calibrating on unsampled lines would use zeros as data")
    # 8-9 lines: 3-wide kernels, not 4 (brain16 4x, 96 wide, 16 coils: L1-wavelet +0.9 / +1.9 dB, SENSE +1.2 / +2.8,
    # Sparse-DIP +1.7 dB mean over four line-set x network pairs; at 10-20 lines 3 loses 0.1-2.2 dB for L1-wavelet:
    # results/2026-12-05-small-grid-density/README.md)
    kw = (3 if cw <= 9 else int(np.clip(cw // 2, 3, 6))) if kernel_width is None else int(kernel_width)
    if not 2 <= kw < cw:
        raise UserError(f"ESPIRiT kernel_width {kw} must be in 2..{cw - 1} (below calib_width {cw})")
    return {"calib_width": cw, "kernel_width": kw, "thresh": float(thresh), "crop": float(crop),
            "max_iter": int(max_iter), "acs_width": int(acs), "rule": RULE}


def _kernel_covariance(ksp: np.ndarray, calib_shape, kernel_shape, thresh: float) -> np.ndarray:
    """ESPIRiT's image-domain kernel covariance ``(W, H, coils, coils)`` (SigPy's ``EspiritCalib``
    computation: calibration matrix of the centre ``calib_shape`` region, SVD with the relative
    threshold, kernels to the image domain)."""
    import sigpy as sp
    C = ksp.shape[0]
    kshape = [int(k) for k in kernel_shape]
    K = int(np.prod(kshape))
    calib = sp.resize(np.asarray(ksp), [C] + [int(c) for c in calib_shape])
    mat = sp.array_to_blocks(calib, kshape, [1, 1]).reshape([C, -1, K]).transpose([1, 0, 2]).reshape([-1, C * K])
    _, S, VH = np.linalg.svd(mat, full_matrices=False)
    VH = VH[S > thresh * S.max(), :]
    kernels = VH.reshape([len(VH), C] + kshape)
    img_shape = ksp.shape[1:]
    AHA = np.zeros(img_shape[::-1] + (C, C), dtype=ksp.dtype)
    for kernel in kernels:
        img_kernel = sp.ifft(sp.resize(kernel, ksp.shape), axes=(-2, -1))
        aH = np.expand_dims(img_kernel.T, axis=-1)
        AHA += aH @ np.conj(aH.swapaxes(-1, -2))
    AHA *= sp.prod(img_shape) / K
    return AHA


def _phase_to_coil0(m: np.ndarray) -> np.ndarray:
    return m * np.conj(m[0] / np.maximum(np.abs(m[0]), 1e-30))


def espirit_rect(ksp: np.ndarray, calib_shape, kernel_shape, thresh: float = 0.02, crop: float = 0.0,
                 max_iter: int = 100) -> np.ndarray:
    """SigPy's ``EspiritCalib`` (power iteration, phase relative to coil 0, eigenvalue crop) on a
    RECTANGULAR ``calib_shape`` region with ``kernel_shape`` kernels (2-D, CPU). ``ksp``:
    ``(coils, H, W)``; returns one map set ``(coils, H, W)``."""
    import sigpy as sp
    AHA = _kernel_covariance(ksp, calib_shape, kernel_shape, thresh)
    mps = np.ones(ksp.shape[::-1] + (1,), dtype=ksp.dtype)
    alg = sp.alg.PowerMethod(lambda x: AHA @ x, mps, max_iter=max_iter,
                             norm_func=lambda x: np.sum(np.abs(x) ** 2, axis=-2, keepdims=True) ** 0.5)
    while not alg.done():
        alg.update()
    return _phase_to_coil0(mps.T[0]) * (alg.max_eig.T[0] > crop)


#: the second (soft-SENSE) map set is kept where its eigenvalue exceeds this
SOFT_SENSE_CROP = 0.5
#: reference-free fold-over test (Uecker et al. 2014: where the FOV is smaller than the object, two
#: eigenvalues of ESPIRiT's kernel covariance are close to 1 where tissue overlaps; a clean scan has
#: one): two map sets when the second eigenvalue exceeds OVERLAP_EIGENVALUE on at least
#: OVERLAP_FRACTION of the object (zero-filled RSS of the measured k-space > OBJECT_LEVEL x its p99)
#: AND the overlap is anchored at the phase-encode edges, as a wrap's is (the tissue beyond one edge
#: lands next to the other, so the overlapping zones grow from both edges inwards): its fraction of the
#: object in the outer OVERLAP_EDGE of the FOV on each side is at least that in the centre. On the shared
#: scans (seeds 0-2, 4x/8x) the fraction is 0 except on brain8b at 4x (0.034, but in the centre: edge
#: 0.002-0.008, centre 0.05; two sets cost the network 0.3-0.6 dB there) and brain16 8x seed 1 (0.28, 5
#: ACS lines; edge 0.35, centre 0.22); the shared brains folded to 60-80 % give edge 0.07-0.88 against
#: centre 0-0.13 where it fires (results/2026-12-05-fold-over-severity/: it does not fire on some 60 %
#: folds at all, where ESPIRiT's second eigenvalue stays below 0.9)
OVERLAP_EIGENVALUE = 0.9
OVERLAP_FRACTION = 0.005
OVERLAP_EDGE = 0.25
OBJECT_LEVEL = 0.1


def fold_over_found(overlap: dict) -> bool:
    """ESPIRiT's fold-over test on the statistic of :func:`second_map_set_and_overlap`: enough of the object
    overlaps (``fraction``), and at the phase-encode edges at least as much as in the centre."""
    return overlap["fraction"] >= OVERLAP_FRACTION and overlap["edge"] >= overlap["centre"]


def second_map_set(kspace: np.ndarray, mask: np.ndarray, params: dict, crop: float = SOFT_SENSE_CROP
                   ) -> Tuple[np.ndarray, float]:
    """ESPIRiT's second eigenvector map set ``(coils, H, W)`` (soft-SENSE: where the FOV is smaller than
    the object two overlapping tissues need two sensitivities per pixel), zero where its eigenvalue is
    ``<= crop``, from the same calibration as ``params`` (the resolved :func:`espirit_params`). Returns
    the maps and the fraction of pixels where the set is kept."""
    m2, kept, _ = second_map_set_and_overlap(kspace, mask, params, crop)
    return m2, kept


def second_map_set_and_overlap(kspace: np.ndarray, mask: np.ndarray, params: dict,
                               crop: float = SOFT_SENSE_CROP) -> Tuple[np.ndarray, float, dict]:
    """:func:`second_map_set` and the fold-over statistic: the fraction of the object (zero-filled RSS
    of the measured k-space above ``OBJECT_LEVEL`` x its 99th percentile) where ESPIRiT's second
    eigenvalue exceeds ``OVERLAP_EIGENVALUE`` -- over the whole object (``fraction``), in the outer
    ``OVERLAP_EDGE`` of the phase-encode FOV on each side (``edge``) and between them (``centre``); 0
    where a region holds no object. Measured data only (the ACS block for the eigenvalues)."""
    k = np.asarray(kspace, np.complex64) * (np.asarray(mask).reshape(1, 1, -1) > 0)
    cs = params.get("calib_shape") or [params["calib_width"]] * 2
    ks = params.get("kernel_shape") or [params["kernel_width"]] * 2
    w, V = np.linalg.eigh(_kernel_covariance(k, cs, ks, params["thresh"]))
    w2 = w[..., -2].T
    keep = w2 > crop
    m2 = _phase_to_coil0(np.ascontiguousarray(V[..., -2].T)) * keep
    ax = (-2, -1)
    rss = np.sqrt((np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax))
                   ** 2).sum(0))
    obj = rss > OBJECT_LEVEL * np.percentile(rss, 99)
    hit = (w2 > OVERLAP_EIGENVALUE) & obj
    W = k.shape[-1]
    col = np.arange(W)
    edge = np.broadcast_to((col < OVERLAP_EDGE * W) | (col >= W - OVERLAP_EDGE * W), obj.shape)

    def share(region):
        n = int((obj & region).sum())
        return float(hit[region].sum() / n) if n else 0.0
    overlap = {"fraction": share(np.ones_like(obj)), "edge": share(edge), "centre": share(~edge)}
    return np.ascontiguousarray(m2, dtype=np.complex64), float(keep.mean()), overlap


def espirit_maps(kspace: np.ndarray, mask: np.ndarray, device=-1, **params) -> Tuple[np.ndarray, dict]:
    """ESPIRiT maps ``(coils, H, W)`` complex64 from undersampled k-space ``(coils, H, W)`` and its
    line mask ``(W,)``. Only the ACS region enters (``EspiritCalib`` crops the centre). Returns the
    maps and the resolved parameters. ``device``: SigPy device id (-1 = CPU)."""
    import sigpy as sp
    import sigpy.mri as mr
    params.pop("readout", None)
    p = espirit_params(mask, readout=np.shape(kspace)[-2], **params)
    k = np.asarray(kspace, np.complex64) * (np.asarray(mask).reshape(1, 1, -1) > 0)
    if "calib_shape" in p:
        log.warning("%s", p["note"])
        maps = espirit_rect(k, p["calib_shape"], p["kernel_shape"], p["thresh"], p["crop"], p["max_iter"])
    else:
        dev = sp.Device(device)
        maps = mr.app.EspiritCalib(sp.to_device(k, dev), calib_width=p["calib_width"],
                                   kernel_width=p["kernel_width"], thresh=p["thresh"], crop=p["crop"],
                                   max_iter=p["max_iter"], device=dev, show_pbar=False).run()
    # C order: a cached (h5) copy is C-ordered, and the coil sum of the scale rule must not depend on
    # the layout (a transposed array summed in another order gave a different y after a resume)
    maps = np.ascontiguousarray(sp.to_device(maps, sp.cpu_device), dtype=np.complex64)
    support = float((np.sum(np.abs(maps) ** 2, 0) > 0.25).mean())
    if support < 0.01:
        raise UserError(f"ESPIRiT (calib {p['calib_width']}, kernel {p['kernel_width']}, crop {p['crop']}) "
                        "cropped away the whole image; lower --espirit-crop or the kernel width")
    p["support_fraction"] = support
    return maps, p


def _calib_hash(kspace, mask, cw, ch=None) -> str:
    """Hash of the centre ``ch × cw`` region (``ch`` default ``cw``) of the masked k-space (what the
    calibration sees)."""
    C, H, W = kspace.shape
    ch = cw if ch is None else ch
    t, l = H // 2 - ch // 2, W // 2 - cw // 2   # sigpy.resize centre convention
    m = (np.asarray(mask).reshape(-1) > 0)[l:l + cw]
    region = np.ascontiguousarray(kspace[:, t:t + ch, l:l + cw] * m, dtype=np.complex64)
    return hashlib.sha1(region.tobytes()).hexdigest()


def cache_key(kspace, mask, params: dict, fingerprint: Optional[str] = None, slice_index: int = 0) -> str:
    """Key of a cache entry: (file fingerprint, slice, resolved parameters, ACS block, calib data)."""
    acs = acs_lines(mask)
    parts = {"file": fingerprint, "slice": int(slice_index),
             "params": {k: params[k] for k in ("calib_width", "kernel_width", "thresh", "crop", "max_iter")},
             "acs": [int(a) for a in acs], "shape": list(kspace.shape),
             "calib": _calib_hash(kspace, mask, params["calib_width"], (params.get("calib_shape") or [None])[0])}
    if "calib_shape" in params:   # rectangular calibration (few ACS lines)
        parts["params"].update(calib_shape=list(params["calib_shape"]), kernel_shape=list(params["kernel_shape"]))
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _cache_state(cache: Path) -> str:
    """``absent``, ``ours`` (a readable HDF5 file with the cache mark), ``damaged`` (empty, or an HDF5
    signature that no longer opens: a cache cut short; rebuilt) or ``foreign`` (anything else)."""
    if not cache.exists() and not cache.is_symlink():
        return "absent"
    if cache.is_symlink() or not cache.is_file():
        return "foreign"
    try:
        with open(cache, "rb") as fh:
            sig = fh.read(len(_HDF5_SIGNATURE))
    except OSError:
        return "foreign"
    if sig == b"":
        return "damaged"
    try:
        with h5py.File(cache, "r") as f:
            mark = f.attrs.get(CACHE_MARK[0])
    except (OSError, RuntimeError, ValueError):
        return "damaged" if sig == _HDF5_SIGNATURE else "foreign"
    if isinstance(mark, bytes):
        mark = mark.decode(errors="replace")
    return "ours" if mark == CACHE_MARK[1] else "foreign"


def check_cache_path(cache, inputs=()) -> Optional[Path]:
    """Refuse a cache path that is (or links to) one of ``inputs``, a symbolic link, a folder, or an
    existing file that is not an ESPIRiT cache this toolkit created (no ``mri_oes_cache`` attribute):
    the cache is never written into (or over) an input file or any other file. A damaged cache (an
    HDF5 file cut short, an empty file) is accepted: it is rebuilt. Returns the path (``None`` for no
    cache)."""
    if cache is None:
        return None
    cache = Path(cache)
    for inp in inputs or ():
        try:
            if cache.exists() and Path(inp).exists() and cache.resolve().samefile(Path(inp).resolve()):
                raise UserError(f"--espirit-cache {cache} is an input file; the cache must be a separate file")
        except OSError:
            continue
    if cache.is_dir() and not cache.is_symlink():
        raise UserError(f"--espirit-cache {cache} is a folder; give a file name (e.g. espirit_cache.h5)")
    if cache.is_symlink():
        raise UserError(f"--espirit-cache {cache} is a symbolic link; refusing to write through it")
    if _cache_state(cache) == "foreign":
        raise UserError(f"--espirit-cache {cache} exists and is not an ESPIRiT cache made by mri-oes; "
                        "refusing to write into it (choose a new file name)")
    return cache


def _valid_entry(f, key, shape):
    """The cached maps and info of ``key`` if the entry is whole and sane (shape, complex dtype, finite
    values, info a JSON object), else ``None``."""
    if key not in f or not isinstance(f[key], h5py.Group) or "maps" not in f[key]:
        return None
    ds = f[key]["maps"]
    if not isinstance(ds, h5py.Dataset) or tuple(ds.shape) != tuple(shape) or ds.dtype.kind != "c":
        return None
    maps = np.asarray(ds[()], np.complex64)
    if not np.isfinite(maps.view(np.float32)).all():
        return None
    info = json.loads(f[key].attrs["info"])
    if not isinstance(info, dict):
        return None
    return maps, info


def _write_cache(cache: Path, key: str, maps: np.ndarray, info: dict, keep_old: bool) -> None:
    """Write the cache file atomically (a new file renamed over the old one: a kill or a full disk
    never leaves a half-written cache): the old file's entries (when it is ours) plus ``key``."""
    from ..io import atomic_path
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs[CACHE_MARK[0]] = CACHE_MARK[1]
            if keep_old:
                try:
                    with h5py.File(cache, "r") as old:
                        for k in old.keys():
                            if k != key and isinstance(old[k], h5py.Group):
                                old.copy(old[k], f, name=k)
                except (OSError, RuntimeError, KeyError, ValueError):
                    pass   # old entries unreadable: dropped
            g = f.create_group(key)
            g.create_dataset("maps", data=maps, compression="gzip", compression_opts=1)
            g.attrs["info"] = json.dumps(info)


def cached_espirit_maps(kspace: np.ndarray, mask: np.ndarray, cache: Optional[Path] = None,
                        fingerprint: Optional[str] = None, slice_index: int = 0, device=-1,
                        **params) -> Tuple[np.ndarray, dict]:
    """:func:`espirit_maps` through an HDF5 cache file (``None``: no cache). The returned info has
    ``cache_hit`` (bool) and ``cache_key``. An entry is validated on read (shape, dtype, finite maps,
    info); a damaged entry or file is recomputed and the file rebuilt, written atomically (never
    fatal, never left half-written)."""
    p = espirit_params(mask, readout=np.shape(kspace)[-2], **params)
    if cache is None:
        maps, p = espirit_maps(kspace, mask, device=device, **params)
        return maps, {**p, "cache_hit": False, "cache_key": None}
    key = cache_key(kspace, mask, p, fingerprint, slice_index)
    cache = Path(cache)
    try:   # never write into a file this toolkit did not create (an input .h5, any other file...)
        check_cache_path(cache)
        writable = True
    except UserError as e:
        if cache.is_dir() and not cache.is_symlink():
            raise
        log.warning("%s; computing the maps without caching", e)
        writable = False
    state = _cache_state(cache) if writable else "foreign"
    if state == "ours":
        try:
            with h5py.File(cache, "r") as f:
                hit = _valid_entry(f, key, np.shape(kspace))
            if hit is not None:
                return hit[0], {**hit[1], "cache_hit": True, "cache_key": key}
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            log.warning("ESPIRiT cache %s entry unreadable (%s); recomputing", cache, e)
    elif state == "damaged":
        log.warning("ESPIRiT cache %s is damaged; rebuilding it", cache)
    maps, p = espirit_maps(kspace, mask, device=device, **params)
    if not writable:
        return maps, {**p, "cache_hit": False, "cache_key": key}
    try:
        _write_cache(cache, key, maps, {**p, "file_fingerprint": fingerprint, "slice": int(slice_index)},
                     keep_old=state == "ours")
    except OSError as e:
        log.warning("could not write ESPIRiT cache %s (%s)", cache, e)
    return maps, {**p, "cache_hit": False, "cache_key": key}


# ------------------------------------------------------------------ SPIRiT (maps-free) calibration
#: SPIRiT kernel (readout x phase-encode; the phase-encode size shrinks to 3 when the ACS block leaves
#: fewer than SPIRIT_MIN_POSITIONS kernel positions), the calibration region's readout extent (None: all
#: H rows; the phase-encode extent is the whole ACS block) and the kernel fit's Tikhonov weight relative
#: to trace(A^H A) / unknowns (Lustig's calibSPIRiT: 0.01). brain8 folded to 70 %, 8x seed 0 (6 ACS
#: lines), CG-SPIRiT: a 5 x 5 kernel on 64 rows 19.3 dB, on all rows 19.6, 5 x 3 on all rows 22.7
#: (zero-filled 21.5): two kernel positions do not calibrate 8 coils x 25 weights
SPIRIT_KERNEL = (5, 5)
SPIRIT_MIN_POSITIONS = 4
SPIRIT_CALIB_READOUT = None
SPIRIT_TIKHONOV = 0.01


def spirit_params(mask: np.ndarray, readout: int, kernel=SPIRIT_KERNEL, calib_readout=SPIRIT_CALIB_READOUT,
                  tikhonov: float = SPIRIT_TIKHONOV) -> dict:
    """Resolved SPIRiT calibration settings for a line mask: the whole ACS block (phase encode) x the centre
    ``min(calib_readout, H)`` readout rows (``None``: all); the kernel's phase-encode size is the largest
    odd number ``<= kernel[1]`` that leaves ``SPIRIT_MIN_POSITIONS`` kernel positions in the ACS block
    (3 at the least)."""
    _, acs = acs_lines(mask)
    if acs < 3:
        raise UserError(f"mask has only {acs} fully sampled centre (ACS) lines; SPIRiT calibration needs >= 3")
    kpe = int(kernel[1])
    while kpe > 3 and acs - kpe + 1 < SPIRIT_MIN_POSITIONS:
        kpe -= 2
    ro = int(readout if calib_readout is None else min(calib_readout, readout))
    kro = int(min(kernel[0], ro))
    return {"kernel_shape": [kro, kpe], "calib_shape": [ro, int(acs)], "tikhonov": float(tikhonov),
            "acs_width": int(acs)}


def spirit_kernels(kspace: np.ndarray, mask: np.ndarray, params: dict) -> np.ndarray:
    """SPIRiT k-space kernels ``w[c, d, ky, kx]`` (``(coils, coils, *kernel_shape)``) from the ACS block
    of the measured k-space: every coil's centre point as a linear combination of all coils' points in
    the kernel window (its own centre left out), a Tikhonov-regularised least-squares fit over every
    window position inside the calibration region. Measured data only."""
    C, H, W = kspace.shape
    lo, acs = acs_lines(mask)
    ro, pe = params["calib_shape"]
    kh, kw = params["kernel_shape"]
    r0 = H // 2 - ro // 2
    calib = np.asarray(kspace)[:, r0:r0 + ro, lo:lo + acs].astype(np.complex128)
    win = np.lib.stride_tricks.sliding_window_view(calib, (kh, kw), axis=(1, 2))   # (C, P1, P2, kh, kw)
    A = win.transpose(1, 2, 0, 3, 4).reshape(-1, C * kh * kw)
    AHA = A.conj().T @ A
    n = AHA.shape[0] - 1
    lam = params["tikhonov"] * float(np.real(np.trace(AHA))) / n
    centre = (kh // 2) * kw + kw // 2
    w = np.zeros((C, C * kh * kw), np.complex128)
    for c in range(C):
        t = c * kh * kw + centre
        keep = np.arange(C * kh * kw) != t
        M = AHA[np.ix_(keep, keep)] + lam * np.eye(n)
        w[c, keep] = np.linalg.solve(M, AHA[keep, t])
    # the fit solves (A^H A) w = A^H b: the prediction is A w, b_c(p) = Σ_{d,o} w[c,d,o] k_d(p + o)
    return w.reshape(C, C, kh, kw)


def spirit_image_kernels(weights: np.ndarray, shape) -> np.ndarray:
    """The SPIRiT kernels as image-domain weights ``g[c, d]`` ``(coils, coils, H, W)``: the k-space
    correlation ``(G k)_c(p) = Σ_{d,o} w[c,d,o] k_d(p + o)`` (window offsets ``o`` about its centre) is, for
    k-space of coil images ``x`` (``k = F x``, centred orthonormal FFT), ``F(Σ_d g[c,d] · x_d)`` with
    ``g = √(HW) · F^H h`` and ``h(o) = w(−o)`` placed about the k-space centre (circular at the edges)."""
    C, _, kh, kw = weights.shape
    H, W = (int(s) for s in shape)
    h = np.zeros((C, C, H, W), np.complex128)
    cy, cx = H // 2, W // 2
    flipped = weights[..., ::-1, ::-1]
    h[..., cy - kh // 2:cy - kh // 2 + kh, cx - kw // 2:cx - kw // 2 + kw] = flipped
    ax = (-2, -1)
    g = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(h, axes=ax), norm="ortho"), axes=ax) * np.sqrt(H * W)
    return g.astype(np.complex64)
