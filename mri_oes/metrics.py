"""Image-quality metrics with an explicit data range.

Conventions (the same as ``fastmri.evaluate``):

* ``psnr = 10·log10(data_range² / MSE)``, MSE over all elements;
* ``ssim``: scikit-image's ``structural_similarity`` (7×7 uniform window, K1=0.01, K2=0.03), averaged
  over channels (natural images) or slices (MRI volumes), with the same ``data_range``;
* ``nmse = ||ref − x||² / ||ref||²``.

For natural images in [0, 1] use ``data_range=1``. For MRI, fastMRI compares magnitude images
centre-cropped to the recon size with ``data_range = ref.max()`` (see :mod:`mri_oes.mri.metrics`).
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def _np(a):
    try:
        import torch
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(a, dtype=np.float64)


def _check(x, ref):
    x, ref = _np(x), _np(ref)
    if x.shape != ref.shape:
        raise ValueError(f"metric: image shape {x.shape} differs from reference shape {ref.shape}")
    return x, ref


def mse(x, ref) -> float:
    x, ref = _check(x, ref)
    return float(np.mean((x - ref) ** 2))


def psnr(x, ref, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB; ``data_range`` is required (no guessing from the data)."""
    if not data_range > 0:
        raise ValueError(f"psnr: data_range must be > 0, got {data_range}")
    m = mse(x, ref)
    return float("inf") if m == 0 else float(10 * np.log10(data_range ** 2 / m))


def nmse(x, ref) -> float:
    x, ref = _check(x, ref)
    return float(np.sum((ref - x) ** 2) / np.sum(ref ** 2))


def ssim(x, ref, data_range: float) -> float:
    """Mean SSIM. 2-D: one image; 3-D: the mean over the leading axis (channels or slices)."""
    x, ref = _check(x, ref)
    if x.ndim == 2:
        x, ref = x[None], ref[None]
    if x.ndim != 3:
        raise ValueError(f"ssim: expected a 2-D image or a stack (N, H, W), got shape {x.shape}")
    return float(np.mean([structural_similarity(r, i, data_range=data_range) for r, i in zip(ref, x)]))


def image_metrics(x, ref, data_range: float = 1.0) -> dict:
    """PSNR, SSIM and NMSE of an image (CHW or HW) against a reference."""
    return {"psnr": psnr(x, ref, data_range), "ssim": ssim(x, ref, data_range), "nmse": nmse(x, ref)}
