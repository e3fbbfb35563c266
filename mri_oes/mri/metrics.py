"""MRI image-quality metrics in the fastMRI convention (``fastmri.evaluate``, used directly here).

* magnitude images;
* centre crop to ``min(320, recon size, image size)`` per axis (knee: 320×320; the 230×180 brain
  file: its whole recon size), with :func:`fastmri.data.transforms.center_crop`;
* PSNR / SSIM / NMSE from :mod:`fastmri.evaluate` (scikit-image PSNR and 7×7 SSIM) with
  ``data range = reference.max()``.

Reference: the file's ``reconstruction_rss`` (fastMRI's ground truth), or, without it, the RSS of the
fully sampled coil images. Our reconstructions are ESPIRiT-combined images ``x`` (coil images
``S_c x``). With unit-norm maps (``Σ_c |S_c|² = 1`` inside the support) ``|x|`` equals the RSS of the
coil images, so the magnitudes are directly comparable in the original k-space units; no fitting is
done for the headline numbers. Two known differences remain and are NOT corrected: ESPIRiT's
eigenvalue crop zeroes the background where the RSS keeps noise (costs a little PSNR), and the
ESPIRiT map norm dips below 1 at the support edge. ``psnr_ls`` additionally reports PSNR after the
least-squares scalar fit ``a = <|x|, ref> / <|x|, |x|>`` so a pure intensity-scale mismatch can be seen.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

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


def center_crop(img, hw: Sequence[int]) -> np.ndarray:
    """fastMRI's :func:`fastmri.data.transforms.center_crop` on the last two axes."""
    from fastmri.data.transforms import center_crop as _cc
    return np.ascontiguousarray(_cc(_np(img), (int(hw[0]), int(hw[1]))))


def rss(coil_images, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares coil combination (``fastmri.rss`` on numpy)."""
    return np.sqrt(np.sum(np.abs(_np(coil_images)) ** 2, axis=axis))


def mri_metrics(x, reference, crop: Optional[Sequence[int]] = None) -> dict:
    """fastMRI metrics of an image ``x`` (complex or magnitude, ``(H, W)``) against a magnitude
    reference (already cropped, or cropped here to ``crop``). ``x`` is centre-cropped to the
    reference's shape. Returns ``psnr``, ``ssim``, ``nmse``, ``psnr_ls`` (after a least-squares
    scalar fit), ``data_range`` and ``crop``."""
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
    rng = float(ref.max())
    gt, pred = ref[None], m[None]
    a = float((m * ref).sum() / max((m * m).sum(), 1e-30))
    return {"psnr": float(evaluate.psnr(gt, pred, maxval=rng)),
            "ssim": float(np.asarray(evaluate.ssim(gt, pred, maxval=rng)).reshape(-1)[0]),
            "nmse": float(evaluate.nmse(gt, pred)),
            "psnr_ls": float(evaluate.psnr(gt, a * pred, maxval=rng)),
            "ls_scale": a, "data_range": rng, "crop": [int(h), int(w)]}
