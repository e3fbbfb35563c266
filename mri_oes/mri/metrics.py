"""MRI image-quality metrics in the fastMRI convention (``fastmri.evaluate``, its own functions).

**Default = fastMRI-exact** (what ``python -m fastmri.evaluate`` computes on the written files):

* magnitude images; the target is the file's ``reconstruction_rss`` (else the RSS of the fully
  sampled coil images), our reconstruction is written at the target's size;
* target and reconstruction centre-cropped to ``W × W`` (``W`` = the target's last axis) with
  :func:`fastmri.data.transforms.center_crop` (a target with fewer rows than ``W`` keeps its rows);
* data range = the maximum of the cropped target **volume** (all slices of the file);
* per volume: PSNR and NMSE on the whole volume, SSIM = mean over slices (7×7 scikit-image SSIM with
  the volume maximum) — :func:`fastmri.evaluate.psnr` / ``nmse`` / ``ssim``;
* per slice (the per-slice table and the training PSNR curve): the same crop and the same volume
  data range on the one slice (for a one-slice file this IS the volume metric).

``full_fov`` (beside the default, named so): the same data range, no ``W × W`` crop — the whole
target-size image (the brain's 230×180 instead of 180×180).

Our reconstructions are ESPIRiT-combined images ``x`` (coil images ``S_c x``). With unit-norm maps
(``Σ_c |S_c|² = 1`` inside the support) ``|x|`` equals the RSS of the coil images, so the magnitudes
are directly comparable in the original k-space units; no fitting is done for the headline numbers.
``psnr_ls`` additionally reports PSNR after the least-squares scalar fit
``a = <|x|, ref> / <|x|, |x|>`` so a pure intensity-scale mismatch can be seen.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from operators.base import center_crop  # noqa: F401  (the one centre crop, fastMRI's convention)

METRIC_CROP = 320


def _np(a) -> np.ndarray:
    try:
        import torch
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(a)


def magnitude(x) -> np.ndarray:
    """``|x|`` as float64 (complex or real input)."""
    return np.abs(_np(x)).astype(np.float64)


def crop_size(recon_size: Sequence[int], image_shape: Sequence[int], max_size: int = METRIC_CROP
              ) -> Tuple[int, int]:
    """``min(max_size, recon size, image size)`` per axis."""
    return (int(min(max_size, recon_size[0], image_shape[-2])),
            int(min(max_size, recon_size[1], image_shape[-1])))


def rss(coil_images, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares coil combination (``fastmri.rss`` on numpy)."""
    return np.sqrt(np.sum(np.abs(_np(coil_images)) ** 2, axis=axis))


def fastmri_crop(shape: Sequence[int]) -> Tuple[int, int]:
    """fastMRI's evaluation crop for a target of shape ``(..., h, w)``: ``(w, w)`` (``fastmri.evaluate``
    crops to ``(target.shape[-1], target.shape[-1])``); rows are kept when ``h < w``."""
    h, w = int(shape[-2]), int(shape[-1])
    return min(h, w), w


def _vol(a) -> np.ndarray:
    a = magnitude(a)
    return a[None] if a.ndim == 2 else a


def volume_metrics(target, recon, data_range: Optional[float] = None) -> dict:
    """fastMRI volume metrics of ``recon`` against ``target`` (``[slices, h, w]`` or one ``(h, w)``
    slice), exactly as ``fastmri.evaluate.evaluate`` computes them on one file: both centre-cropped to
    :func:`fastmri_crop` of the target, PSNR/NMSE on the volume, SSIM averaged over slices, data range
    ``target.max()`` after the crop (``data_range`` overrides it: the whole file's maximum when only
    some slices are given). Also returns ``full_fov`` {psnr, ssim, nmse} (no W×W crop, same range)."""
    from fastmri import evaluate
    gt, pred = _vol(target), _vol(recon)
    h, w = gt.shape[-2:]
    if pred.shape[-2] < h or pred.shape[-1] < w:
        raise ValueError(f"reconstruction {pred.shape} is smaller than the target {gt.shape}")
    crop = fastmri_crop(gt.shape)
    # fastMRI crops the prediction straight to W x W (not via the target size: the two differ by a
    # pixel when the size parities differ)
    gt_c, pred_c = center_crop(gt, crop), center_crop(pred, crop)
    pred = center_crop(pred, (h, w))
    rng = float(gt_c.max()) if data_range is None else float(data_range)

    def three(g, p):
        return {"psnr": float(evaluate.psnr(g, p, maxval=rng)),
                "ssim": float(np.asarray(evaluate.ssim(g, p, maxval=rng)).reshape(-1)[0]),
                "nmse": float(evaluate.nmse(g, p))}

    out = three(gt_c, pred_c)
    out.update(data_range=rng, crop=[int(crop[0]), int(crop[1])], full_fov=three(gt, pred))
    return out


def slice_metrics(target, recon, data_range: Optional[float] = None) -> dict:
    """fastMRI-convention metrics of one slice (``data_range``: the volume maximum of the cropped
    target; default this slice's). Same keys as :func:`volume_metrics`."""
    return volume_metrics(magnitude(target)[None], magnitude(recon)[None], data_range)


def mri_metrics(x, reference, crop: Optional[Sequence[int]] = None, data_range: Optional[float] = None
                ) -> dict:
    """fastMRI-convention metrics of an image ``x`` (complex or magnitude, ``(H, W)``) against a
    magnitude reference (already cropped to the written size, or cropped here to ``crop``): ``x`` is
    centre-cropped to the reference's shape, then both to fastMRI's ``W × W``; data range
    ``data_range`` (the volume maximum) or the cropped reference's maximum. Returns ``psnr``,
    ``ssim``, ``nmse``, ``full_fov`` {psnr, ssim, nmse} (whole reference size, same range),
    ``psnr_ls`` (after a least-squares scalar fit), ``data_range``, ``crop`` and
    ``metrics_convention`` = ``"fastmri"``."""
    from fastmri import evaluate
    ref = magnitude(reference)
    if crop is not None:
        ref = center_crop(ref, crop)
    h, w = ref.shape[-2:]
    m = magnitude(x)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape[-2] < h or m.shape[-1] < w:
        raise ValueError(f"mri_metrics: image {m.shape} is smaller than the reference {ref.shape}")
    m = center_crop(m, (h, w))
    out = slice_metrics(ref, m, data_range)
    fc = fastmri_crop(ref.shape)
    rc, mc = center_crop(ref, fc), center_crop(m, fc)
    a = float((mc * rc).sum() / max((mc * mc).sum(), 1e-30))
    out.update(psnr_ls=float(evaluate.psnr(rc[None], a * mc[None], maxval=out["data_range"])),
               ls_scale=a, metrics_convention="fastmri")
    return out
