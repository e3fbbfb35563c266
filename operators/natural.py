"""Natural-image forward models: denoising, inpainting, super-resolution.

Images are real tensors ``(C, H, W)`` (any leading batch dims). Noise is optional and given as a
:class:`~operators.base.GaussianNoise` or a plain ``sigma`` (std on the [0, 1] intensity scale;
"sigma 25" on the 0–255 scale is ``25/255``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import GaussianNoise, LinearOperator, OperatorInputError
from .registry import register


def _shape3(shape) -> tuple:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise OperatorInputError(f"shape must be a sequence (C, H, W), got {shape!r}") from None
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or min(shape) < 1:
        raise OperatorInputError(f"image shape must be (C, H, W) with positive sizes, got {shape}")
    return shape


def _noise(noise):
    if noise is None or isinstance(noise, GaussianNoise):
        return noise
    return GaussianNoise(float(noise))


@register("denoise")
class Denoise(LinearOperator):
    """Identity: ``y = x + noise``."""

    name = "denoise"

    def __init__(self, shape: Sequence[int], noise=None):
        shape = _shape3(shape)
        super().__init__(shape, shape, noise=_noise(noise))

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y


@register("inpaint")
class Inpaint(LinearOperator):
    """Pixel mask ``y = m ⊙ x``; self-adjoint.

    ``keep_fraction`` in (0, 1]: exactly ``round(keep_fraction·H·W)`` pixels are kept (all channels
    of a pixel together), chosen uniformly with ``seed``. Or pass ``mask`` (H, W) / (C, H, W), nonzero =
    observed. The output has the image's shape; missing pixels are zero.
    """

    name = "inpaint"

    def __init__(self, shape: Sequence[int], keep_fraction: Optional[float] = None, seed: int = 0,
                 mask=None, noise=None):
        shape = _shape3(shape)
        super().__init__(shape, shape, noise=_noise(noise))
        C, H, W = shape
        if mask is not None:
            m = torch.as_tensor(np.asarray(mask)) != 0
            if m.dim() == 2:
                m = m.unsqueeze(0)
            if m.dim() != 3 or tuple(m.shape[-2:]) != (H, W) or m.shape[0] not in (1, C):
                raise OperatorInputError(
                    f"inpaint: mask has shape {tuple(np.shape(mask))}; expected (H, W)=({H}, {W}) or (C, H, W)")
        else:
            if keep_fraction is None:
                raise OperatorInputError("inpaint: give keep_fraction in (0, 1] or a mask")
            p = float(keep_fraction)
            if not (0 < p <= 1) or math.isnan(p):
                raise OperatorInputError(f"inpaint: keep_fraction must be in (0, 1], got {keep_fraction!r}")
            n_keep = int(round(p * H * W))
            if n_keep < 1:
                raise OperatorInputError(f"inpaint: keep_fraction {p} keeps no pixel of a {H}x{W} image")
            g = torch.Generator().manual_seed(int(seed))
            flat = torch.zeros(H * W, dtype=torch.bool)
            flat[torch.randperm(H * W, generator=g)[:n_keep]] = True
            m = flat.reshape(1, H, W)
        self.mask = m.float()
        self.keep_fraction = float(self.mask.mean())
        self.seed = seed

    def _forward(self, x):
        return x * self.mask.to(x.dtype)

    _adjoint = _forward

    def describe(self):
        return {**super().describe(), "keep_fraction": self.keep_fraction, "seed": self.seed}


def _lanczos(x, a=3):
    x = np.asarray(x, dtype=np.float64)
    out = np.sinc(x) * np.sinc(x / a)
    out[np.abs(x) >= a] = 0
    return out


def downsampling_kernel(factor: int, kernel: str = "lanczos3") -> np.ndarray:
    """1-D anti-alias kernel (sum 1), applied separably.

    * ``lanczos3``: Lanczos window a=3 stretched by ``factor`` (6·factor taps), the Deep Image Prior
      super-resolution kernel; output pixel ``i`` is centred on input coordinate ``factor·i + (factor−1)/2``.
    * ``box``: mean over each ``factor``-pixel block (= average pooling).
    """
    f = int(factor)
    if kernel == "box":
        return np.full(f, 1.0 / f)
    if kernel == "lanczos3":
        L = 6 * f
        d = (np.arange(L) - (L - 1) / 2) / f
        k = _lanczos(d, 3)
        return k / k.sum()
    raise OperatorInputError(f"super-resolution: unknown kernel {kernel!r}; use 'lanczos3' or 'box'")


@register("super-resolution")
class SuperResolution(LinearOperator):
    """Anti-aliased downsampling by ``factor`` (2, 4 or 8): separable filter + decimation with
    circular (periodic) boundaries, so the adjoint is exact (transposed convolution, wrap-add)."""

    name = "super-resolution"

    def __init__(self, shape: Sequence[int], factor: int = 4, kernel: str = "lanczos3", noise=None):
        shape = _shape3(shape)
        C, H, W = shape
        if factor not in (2, 4, 8):
            raise OperatorInputError(f"super-resolution: factor must be 2, 4 or 8, got {factor!r}")
        if H % factor or W % factor:
            raise OperatorInputError(
                f"super-resolution: factor {factor} does not divide the image size {H}x{W}")
        k = downsampling_kernel(factor, kernel)
        self.pad = (len(k) - factor) // 2
        if self.pad >= min(H, W):
            raise OperatorInputError(
                f"super-resolution: image {H}x{W} is too small for the {kernel} kernel at factor {factor}")
        super().__init__(shape, (C, H // factor, W // factor), noise=_noise(noise))
        self.factor, self.kernel_name = int(factor), kernel
        self.kernel = torch.tensor(k, dtype=torch.float64)

    # 1-D functions on the last axis of a (N, 1, L) tensor
    def _down1d(self, x):
        k = self.kernel.to(x.dtype).view(1, 1, -1)
        if self.pad:
            x = torch.cat([x[..., -self.pad:], x, x[..., : self.pad]], dim=-1)
        return F.conv1d(x, k, stride=self.factor)

    def _down1d_adjoint(self, y, n):
        k = self.kernel.to(y.dtype).view(1, 1, -1)
        z = F.conv_transpose1d(y, k, stride=self.factor)  # length n + 2*pad
        p = self.pad
        if not p:
            return z
        out = z[..., p: p + n].clone()
        out[..., n - p:] += z[..., :p]
        out[..., :p] += z[..., p + n:]
        return out

    def _apply_axes(self, t, fn, sizes):
        # t: (B, C, H, W). Apply fn along W, then along H.
        B, C, H, W = t.shape
        t = fn(t.reshape(-1, 1, W), sizes[1]).reshape(B, C, H, -1)
        W2 = t.shape[-1]
        t = t.transpose(-1, -2).reshape(-1, 1, H)
        t = fn(t, sizes[0]).reshape(B, C, W2, -1).transpose(-1, -2)
        return t.contiguous()

    def _forward(self, x):
        return self._apply_axes(x, lambda t, n: self._down1d(t), (None, None))

    def _adjoint(self, y):
        return self._apply_axes(y, self._down1d_adjoint, self.in_shape[1:])

    def describe(self):
        return {**super().describe(), "factor": self.factor, "kernel": self.kernel_name}
