"""Maps-free multi-coil Cartesian MRI: the unknowns are the per-coil complex images.

``A x = M · F · x_c`` for every coil ``c`` (no sensitivity maps), i.e. ``y_c = M F x_c``.

* ``x``: complex coil images ``(coils, H, W)``; ``y``: multi-coil k-space ``(coils, H, W)``, zero where
  not sampled. ``F``: the centred orthonormal 2-D FFT (fastMRI's ``fft2c``); ``M``: binary sampling mask
  (``(W,)`` line mask, ``(H, W)`` or ``(coils, H, W)``).
* Exact adjoint: ``A^H y = F^H (M · y_c)`` per coil (M binary, F unitary).
* :meth:`from_network`: a generator with ``2·coils`` output channels, interleaved per coil as
  ``(re_0, im_0, re_1, im_1, ...)`` (the ConvDecoder authors' layout: ``view(coils, 2, H, W)``), is
  centre-cropped to the image grid and turned into ``(B, coils, H, W)`` complex.
* :meth:`rss`: the root-sum-of-squares magnitude image of coil images (what one compares with
  fastMRI's ``reconstruction_rss``).
"""
from __future__ import annotations

import torch

from .base import LinearOperator, OperatorInputError, center_crop
from .mri import _as_tensor, fft2c, ifft2c
from .registry import register


@register("mri-coil-images")
class CoilImagesMRI(LinearOperator):
    """``y_c = M F x_c``. ``mask``: ``(W,)``, ``(H, W)`` or ``(coils, H, W)``; ``coils``, ``shape=(H, W)``
    give the image grid when the mask is a line mask."""

    name = "mri-coil-images"
    in_dtype = torch.complex64
    out_dtype = torch.complex64

    def __init__(self, mask, coils: int, shape=None, noise=None):
        mask = _as_tensor(mask)
        coils = int(coils)
        if coils < 1:
            raise OperatorInputError(f"mri-coil-images: coils must be >= 1, got {coils}")
        if mask.dim() == 1:
            if shape is None:
                raise OperatorInputError("mri-coil-images: a line mask (W,) needs shape=(H, W)")
            H, W = (int(s) for s in shape)
            if mask.shape[0] != W:
                raise OperatorInputError(f"mri-coil-images: line mask has {mask.shape[0]} entries, W={W}")
            mask = mask.reshape(1, 1, W).expand(1, H, W)
        elif mask.dim() == 2:
            mask = mask.unsqueeze(0)
        if mask.dim() != 3 or mask.shape[0] not in (1, coils):
            raise OperatorInputError(f"mri-coil-images: mask shape {tuple(mask.shape)} does not fit "
                                     f"{coils} coils")
        H, W = mask.shape[-2:]
        if shape is not None and tuple(int(s) for s in shape) != (H, W):
            raise OperatorInputError(f"mri-coil-images: mask grid {(H, W)} != shape {tuple(shape)}")
        if mask.is_complex():
            mask = mask.abs()
        self.mask = (mask != 0).to(torch.float32).contiguous()
        if self.mask.sum() == 0:
            raise OperatorInputError("mri-coil-images: sampling mask samples nothing")
        super().__init__((coils, H, W), (coils, H, W), noise=noise)

    def _forward(self, x):
        return self.mask.to(x.real.dtype) * fft2c(x)

    def _adjoint(self, y):
        return ifft2c(self.mask.to(y.real.dtype) * y)

    def from_network(self, out):
        C = self.in_shape[0]
        if out.shape[1] != 2 * C:
            raise OperatorInputError(f"mri-coil-images: the generator must output 2·coils = {2 * C} "
                                     f"channels (re, im per coil), got {out.shape[1]}")
        out = center_crop(out, self.in_shape[-2:])
        out = out.reshape(out.shape[0], C, 2, *out.shape[-2:])
        return torch.complex(out[:, :, 0], out[:, :, 1])

    @property
    def network_channels(self):
        return 2 * self.in_shape[0]

    @staticmethod
    def rss(x: torch.Tensor) -> torch.Tensor:
        """Root-sum-of-squares over the coil axis (-3) of complex coil images."""
        return x.abs().pow(2).sum(-3).sqrt()

    @property
    def acceleration(self) -> float:
        return float(self.mask[0].numel() / self.mask[0].sum())

    def describe(self):
        return {**super().describe(), "coils": self.in_shape[0], "acceleration": self.acceleration}
