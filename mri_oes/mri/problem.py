"""Assemble a multi-coil MRI reconstruction problem from a fastMRI slice.

``build_problem(slice, accel, mask_type, seed)``:

1. undersample (seeded fastMRI line mask along W), or take the file's own mask;
2. ESPIRiT maps from the ACS lines of the undersampled data (cached);
3. k-space scaling: ``y = s · k_measured`` with ``s = 1 / p99(|S^H F^H k_measured|)`` so the
   zero-filled ESPIRiT-combined image has its 99th-percentile magnitude at 1 (networks and λ's see
   the same intensity range for every scan). :meth:`MRIProblem.unscale` divides by ``s`` again, so
   every saved image and metric is in the file's original units;
4. the operator ``A = M F S`` (:class:`operators.mri.MultiCoilMRI`) and ``y`` as torch complex64;
5. the reference for metrics (:mod:`mri_oes.mri.metrics`): ``reconstruction_rss`` cropped to the
   metric crop, else the RSS of the fully sampled k-space, else none (undersampled input files).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from operators.mri import MultiCoilMRI
from ..errors import UserError
from . import metrics as M
from .data import MRISlice, file_fingerprint, undersample
from .espirit import cached_espirit_maps


#: the noise estimate reads the outer ``1/8`` of the readout on each side of k-space
NOISE_EDGE = 0.125


def kspace_noise_sigma2(y: np.ndarray, mask: np.ndarray, edge: float = NOISE_EDGE) -> float:
    """Noise variance per real component of measured multi-coil k-space ``y`` ``(coils, H, W)`` (lines
    ``mask`` along W), mean over the coils, from the measurements alone: ``(1.4826 · MAD)²`` of the real and
    imaginary parts of the samples in the k-space corners -- the outer ``edge`` of the readout on each side,
    on the measured lines in the outer half of the measured phase-encode range, where the signal is
    weakest. On the shared scans with a white noise floor (phantom4, brain8) it equals the variance of the
    fully sampled k-space's residual through the maps to 1-2 %; on k-space that was filtered (brain4: made
    from processed coil images) it measures the filter's tail, not noise."""
    y = np.asarray(y)
    C, H, W = y.shape
    cols = np.nonzero(np.asarray(mask).reshape(-1) > 0)[0]
    dist = np.abs(cols - W / 2)
    cols = cols[dist >= np.quantile(dist, 0.5)]
    nh = max(1, int(round(edge * H)))
    sub = y[:, np.r_[0:nh, H - nh:H]][:, :, cols].reshape(C, -1)
    v = np.concatenate([sub.real, sub.imag], axis=1).astype(np.float64)   # per coil: real and imaginary parts
    mad = np.median(np.abs(v - np.median(v, axis=1, keepdims=True)), axis=1)
    return float(np.mean((1.4826 * mad) ** 2))


def ifft2c_np(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D FFT (numpy; same convention as ``fastmri.ifft2c``)."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax)


@dataclass
class MRIProblem:
    """Everything a reconstruction method needs. ``y`` and ``operator`` are in scaled units;
    images handed to :meth:`unscale` / :meth:`evaluate` are operator inputs (complex ``(H, W)`` or
    ``(B, H, W)``, scaled units)."""

    operator: MultiCoilMRI
    y: torch.Tensor                 # (coils, H, W) complex64, scaled
    scale: float                    # y = scale * measured k-space
    kspace: np.ndarray              # measured (undersampled) k-space, original units
    mask: np.ndarray                # (W,) line mask
    maps: np.ndarray                # (coils, H, W) ESPIRiT maps
    reference: Optional[np.ndarray]  # magnitude, cropped to `crop`, original units
    reference_source: Optional[str]
    crop: tuple
    slice: MRISlice
    info: dict = field(default_factory=dict)
    #: what the classical methods chose for this scan (operator with one or two map sets, held-out
    #: errors); filled by :mod:`mri_oes.mri.baselines`, not serialised
    classical: dict = field(default_factory=dict, repr=False)

    @property
    def image_shape(self):
        return tuple(self.kspace.shape[-2:])

    def unscale(self, x, operator=None) -> np.ndarray:
        """Operator input (scaled units, torch or numpy; a leading batch of one is dropped: ``(1, H, W)``, or
        ``(1, sets, H, W)`` for an ``operator`` of several map sets) → numpy complex in original units."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim == len((operator or self.operator).in_shape) + 1 and x.shape[0] == 1:
            x = x[0]
        return x / self.scale

    def zero_filled(self, combine: str = "rss") -> np.ndarray:
        """Zero-filled image, original units: ``rss`` = RSS of the zero-filled coil images (fastMRI's
        zero-filled baseline, a magnitude image); ``espirit`` = ``S^H F^H y`` (complex)."""
        coil = ifft2c_np(self.kspace)
        if combine == "rss":
            return M.rss(coil).astype(np.float32)
        if combine == "espirit":
            return np.sum(np.conj(self.maps) * coil, 0).astype(np.complex64)
        raise UserError(f"zero-filled combine must be 'rss' or 'espirit', got {combine!r}")

    def data_consistency(self, x, coil_images: bool = False, combine: str = "rss", maps=None) -> np.ndarray:
        """Project an estimate onto the measured k-space (Darestani & Heckel's post-processing):
        coil k-space ``F(S x)`` (or ``F x_c`` for maps-free coil images, ``coil_images=True``) with
        the sampled lines replaced by the measured ones. ``x`` in ORIGINAL units (numpy/torch,
        ``(H, W)`` or ``(coils, H, W)``; ``(sets, H, W)`` with ``maps`` of several map sets
        ``(sets, coils, H, W)``, coil images ``Σ_s S_s x_s``; default ``maps``: this problem's). Returns
        original units: ``rss`` = RSS magnitude of the projected coil images; ``espirit`` = ``S^H F^H k``
        (complex, one map set only)."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        maps = self.maps if maps is None else np.asarray(maps)
        sets = maps.shape[0] if maps.ndim == 4 else 1
        if not coil_images and x.ndim == (4 if sets > 1 else 3) and x.shape[0] == 1:
            x = x[0]
        if coil_images:
            coil = x
        elif sets > 1:
            coil = (maps * x[:, None]).sum(0)
        else:
            coil = maps * x[None]
        ax = (-2, -1)
        k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil, axes=ax), norm="ortho"), axes=ax)
        m = (np.asarray(self.mask).reshape(1, 1, -1) > 0)
        k = np.where(m, self.kspace, k)
        c = ifft2c_np(k)
        if combine == "rss":
            return M.rss(c).astype(np.float32)
        if combine == "espirit" and not coil_images and sets == 1:
            return np.sum(np.conj(maps) * c, 0).astype(np.complex64)
        raise UserError(f"data_consistency combine must be 'rss' or 'espirit' (one map set), got {combine!r}")

    def metrics(self, image_original_units) -> dict:
        """fastMRI metrics of an image in original units (``{}`` without a reference)."""
        if self.reference is None:
            return {}
        return M.mri_metrics(image_original_units, self.reference)

    def evaluate(self, x_hat) -> dict:
        """Callback for training loops: operator-input image (scaled) → psnr/ssim/nmse (first item)."""
        x = self.unscale(x_hat)
        if x.ndim == 3:
            x = x[0]
        m = self.metrics(x)
        return {k: m[k] for k in ("psnr", "ssim", "nmse")} if m else {}

    def holdout_lines(self, fraction: float, seed: int) -> torch.Tensor:
        """The measurements the ``self-validation`` stopping rule holds out: a seeded ``fraction`` of the
        measured phase-encode lines outside the ACS block (:func:`mri_oes.mri.baselines.holdout_split`),
        as a 0/1 tensor ``(1, 1, W)`` over ``y``'s entries. One clear error when no line can be held out."""
        from ..core import derive_seed
        from .baselines import holdout_split
        _, held = holdout_split(self.mask, fraction, derive_seed(seed, "holdout-lines"))
        if held is None:
            raise UserError(f"{self.slice.file}: --stop-rule self-validation: no measured line outside the "
                            "ACS block to hold out")
        return torch.from_numpy(held).reshape(1, 1, -1).to(self.y.device)

    def noise(self) -> dict:
        """What the ``discrepancy`` stopping rule compares the fit's residual with, from the measured
        k-space alone (never the reference): ``sigma2`` (:func:`kspace_noise_sigma2`, scaled units of ``y``),
        ``entries`` -- the measured lines outside the ACS block, as a 0/1 tensor ``(1, 1, W)`` over ``y``
        (on the ACS lines the maps' own mismatch, not noise, dominates the residual: 9-48× the noise on the
        shared scans) -- and ``level``: the :func:`mri_oes.core.data_loss` that noise alone contributes on
        those entries, ``sigma2 · lines / W``. One clear error when there is no such line or no noise."""
        from .data import lines_outside_acs
        m = np.asarray(self.mask).reshape(-1) > 0
        entries = lines_outside_acs(m)
        if not entries.any():
            raise UserError(f"{self.slice.file}: --stop-rule discrepancy: no measured line outside the ACS block")
        sigma2 = kspace_noise_sigma2(self.y.detach().cpu().numpy(), m)
        if not sigma2 > 0:
            raise UserError(f"{self.slice.file}: --stop-rule discrepancy: the k-space corners hold no noise "
                            "(zero-filled or filtered data); use another --stop-rule")
        level = sigma2 * int(entries.sum()) / m.shape[0]
        return {"sigma2": sigma2, "level": level, "lines": int(entries.sum()),
                "entries": torch.from_numpy(entries.astype(np.float32)).reshape(1, 1, -1).to(self.y.device)}

    def as_problem(self, info: dict, evaluate="reference", operator=None, vmax: Optional[float] = None,
                   show_measurements: bool = False):
        """This slice as a generic :class:`mri_oes.problem.Problem` for the runner (the one MRI adapter).
        ``evaluate``: a callback, None, or (default) :meth:`evaluate` when there is a reference;
        ``operator``: another operator on the same data (e.g. maps-free coil images); pictures show
        the magnitude over ``vmax`` (default: the reference's maximum, else the zero-filled image's);
        ``show_measurements``: the zero-filled image as the run's ``measurements.png``."""
        from ..problem import Problem
        zf = np.abs(self.zero_filled())
        if vmax is None:
            vmax = float(self.reference.max()) if self.reference is not None else float(zf.max())
        vmax = vmax or 1.0
        if isinstance(evaluate, str):
            evaluate = self.evaluate if self.reference is not None else None
        op = operator or self.operator
        return Problem(op, self.y, tuple(self.image_shape), evaluate=evaluate, kind="mri",
                       info=info, to_display=lambda x: np.abs(op.combine(self.unscale(x, op))) / vmax,
                       measurements_display=zf / vmax if show_measurements else None,
                       holdout=self.holdout_lines, noise=self.noise)

    def describe(self) -> dict:
        return {"file": self.slice.file, "slice": self.slice.index, "shape": list(self.kspace.shape),
                "scale": self.scale, "reference": self.reference_source, "metric_crop": list(self.crop),
                "recon_size": list(self.slice.recon_size), **self.info}


def build_problem(sl: MRISlice, accel: Optional[int] = None, mask_type: str = "equispaced", seed: int = 0,
                  center_fraction: Optional[float] = None, espirit: Optional[dict] = None,
                  cache: Optional[Path] = None, device="cpu") -> MRIProblem:
    """Undersample ``sl``, calibrate ESPIRiT maps (cached in ``cache``), scale, and build ``A``, ``y``."""
    k_us, mask, mask_info = undersample(sl, accel, mask_type, seed, center_fraction)
    try:
        fp = file_fingerprint(sl.file)
    except OSError:
        fp = None
    maps, esp = cached_espirit_maps(k_us, mask, cache=cache, fingerprint=fp, slice_index=sl.index,
                                    **(espirit or {}))
    coil = ifft2c_np(k_us)
    zf = np.abs(np.sum(np.conj(maps) * coil, 0))
    p99 = float(np.percentile(zf, 99))
    if not p99 > 0:
        raise UserError(f"{sl.file}: slice {sl.index}: zero-filled image is zero inside the coil maps")
    scale = 1.0 / p99
    H, W = k_us.shape[-2:]
    crop = M.crop_size(sl.recon_size, (H, W))
    if sl.reference is not None:
        rh, rw = sl.reference.shape
        crop = (min(crop[0], rh), min(crop[1], rw))
        reference, src = M.center_crop(sl.reference, crop), "reconstruction_rss"
    elif sl.fully_sampled:
        reference, src = M.center_crop(M.rss(ifft2c_np(sl.kspace)), crop), "rss of fully sampled kspace"
    else:
        reference, src = None, None
    op = MultiCoilMRI(torch.from_numpy(maps), torch.from_numpy(mask)).to(device)
    y = torch.from_numpy((k_us * scale).astype(np.complex64)).to(device)
    info = {"mask": mask_info, "espirit": esp, "scale_rule": "1 / p99(|S^H F^H y|)"}
    return MRIProblem(op, y, scale, k_us.astype(np.complex64), mask, maps,
                      None if reference is None else reference.astype(np.float32), src, crop, sl, info)


def fold_over(sl: MRISlice, fraction: float = 0.7) -> MRISlice:
    """A fold-over scan made from a fully sampled slice: the coil images are wrapped into
    ``round(fraction · W)`` phase-encode columns (every column ``u`` lands on ``u mod W'`` about the
    centre, as a smaller phase-encode FOV with the same resolution aliases the object), then
    transformed back. The reference is the RSS of the folded, fully sampled k-space (as a scan acquired
    with that FOV would have); the recon size is clipped to the new grid."""
    if not sl.fully_sampled:
        raise UserError(f"{sl.file}: fold_over needs a fully sampled slice")
    C, H, W = sl.kspace.shape
    Wn = int(round(fraction * W))
    Wn += Wn % 2
    if not 8 <= Wn < W:
        raise UserError(f"fold_over: fraction {fraction} of W={W} gives {Wn} columns; need 8..{W - 1}")
    img = ifft2c_np(sl.kspace)
    out = np.zeros((C, H, Wn), np.complex128)
    target = (np.arange(W) - W // 2 + Wn // 2) % Wn
    np.add.at(out, (slice(None), slice(None), target), img)
    ax = (-2, -1)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(out, axes=ax), norm="ortho"), axes=ax).astype(np.complex64)
    meta = {**sl.metadata, "file": f"{sl.file} (fold-over {fraction:g})", "fold_over": float(fraction)}
    return MRISlice(k, None, (min(sl.recon_size[0], H), min(sl.recon_size[1], Wn)), None, meta)
