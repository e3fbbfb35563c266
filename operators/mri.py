"""Multi-coil Cartesian MRI: ``A x = M · F · (S_c x)``.

* ``x``: complex image ``(H, W)``; ``y``: multi-coil k-space ``(coils, H, W)``, zero where not sampled.
* ``F``: centred, orthonormal 2-D FFT (``fftshift(fft2(ifftshift(.), norm="ortho"))``), the fastMRI
  convention (``fastmri.fft2c``); DC sits at the array centre.
* ``S_c``: coil sensitivity maps (e.g. ESPIRiT); ``M``: binary sampling mask broadcast over coils
  (``(W,)`` line mask, ``(H, W)`` or ``(coils, H, W)``).
* Several map sets (soft-SENSE, ESPIRiT's second eigenvector where the FOV is smaller than the
  object): maps ``(sets, coils, H, W)``, ``x`` ``(sets, H, W)``, ``A x = M F Σ_s S_{s,c} x_s``; the image
  is the RSS over the sets (:meth:`MultiCoilMRI.combine`).
* Adjoint: ``A^H y = Σ_c conj(S_c) · F^H (M · y_c)`` (M is binary, so ``M^H M = M``).
* Generators produce 2 channels (real, imaginary) per map set on a grid that may be larger than ``(H, W)``
  (a multiple of ``2**levels``); :meth:`from_network` centre-crops, forms the complex image and zeroes
  it outside the maps' support (there ``A`` sees nothing, so a network would put arbitrary values
  there — SENSE/CG keep those null-space components at zero for the same reason).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import LinearOperator, OperatorInputError, center_crop
from .registry import register


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two dims of a complex tensor."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT over the last two dims."""
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


def _as_tensor(a):
    if isinstance(a, torch.Tensor):
        return a
    return torch.as_tensor(np.asarray(a)) if a is not None else None


@register("mri")
class MultiCoilMRI(LinearOperator):
    """``A = M F S``. ``maps``: complex ``(coils, H, W)``; ``mask``: ``(W,)``, ``(H, W)`` or
    ``(coils, H, W)``, nonzero = sampled (values are binarised)."""

    name = "mri"
    in_dtype = torch.complex64
    out_dtype = torch.complex64

    def __init__(self, maps, mask, noise=None):
        maps = _as_tensor(maps)
        if maps.dim() == 2:
            maps = maps.unsqueeze(0)
        if maps.dim() == 4 and maps.shape[0] == 1:
            maps = maps[0]
        if maps.dim() not in (3, 4):
            raise OperatorInputError(f"mri: maps must be (coils, H, W) or (sets, coils, H, W), got shape "
                                     f"{tuple(maps.shape)}")
        if not maps.is_complex():
            raise OperatorInputError(f"mri: maps must be complex, got dtype {maps.dtype}")
        if not torch.isfinite(torch.view_as_real(maps)).all():
            raise OperatorInputError("mri: maps contain NaN or Inf")
        C, H, W = maps.shape[-3:]
        self.sets = int(maps.shape[0]) if maps.dim() == 4 else 1
        mask = _as_tensor(mask)
        if mask.dim() == 1:
            if mask.shape[0] != W:
                raise OperatorInputError(
                    f"mri: line mask has {mask.shape[0]} entries but k-space has W={W} phase-encode lines")
            mask = mask.reshape(1, 1, W).expand(1, H, W)
        elif mask.dim() == 2:
            mask = mask.unsqueeze(0)
        if mask.dim() != 3 or tuple(mask.shape[-2:]) != (H, W) or mask.shape[0] not in (1, C):
            raise OperatorInputError(
                f"mri: mask shape {tuple(mask.shape)} does not match maps (coils, H, W)=({C}, {H}, {W})")
        if mask.is_complex():
            mask = mask.abs()
        self.maps = maps.to(torch.complex64 if maps.dtype != torch.complex128 else maps.dtype)
        self.mask = (mask != 0).to(self.maps.real.dtype).contiguous()
        # pixels where every coil map is zero (ESPIRiT's crop) are in the null space of A: nothing
        # constrains them, so generated images are restricted to the maps' support
        self.support = (self.maps.abs().pow(2).reshape(-1, H, W).sum(0) > 0).to(self.maps.real.dtype)
        if self.mask.sum() == 0:
            raise OperatorInputError("mri: sampling mask samples nothing")
        super().__init__((H, W) if self.sets == 1 else (self.sets, H, W), (C, H, W), noise=noise)

    @property
    def acceleration(self) -> float:
        return float(self.mask.numel() / self.mask.sum())

    def _cast(self, t):
        maps = self.maps.to(t.dtype) if self.maps.dtype != t.dtype else self.maps
        return maps, self.mask.to(t.real.dtype)

    def coil_images(self, x):
        """Coil images ``S x`` of a batched operator input ``(B, [sets,] H, W)`` → ``(B, coils, H, W)``
        (summed over the map sets)."""
        maps, _ = self._cast(x)
        if self.sets > 1:
            return (maps * x.unsqueeze(2)).sum(1)
        return maps * x.unsqueeze(1)

    def _forward(self, x):
        return self._cast(x)[1] * fft2c(self.coil_images(x))

    def _adjoint(self, y):
        maps, mask = self._cast(y)
        if self.sets > 1:
            return (maps.conj() * ifft2c(mask * y).unsqueeze(1)).sum(2)
        return (maps.conj() * ifft2c(mask * y)).sum(1)

    #: the classical ℓ1 solver thresholds the input's axis 0 separately (one image, or one per map set)
    joint_sparse = False
    #: ℓ2 (Tikhonov) weight the classical ℓ1 solver adds on this operator: none with maps
    l2 = 0.0

    def with_mask(self, mask) -> "MultiCoilMRI":
        """The same maps on other sampled lines (``mask`` as in the constructor), on this device."""
        return MultiCoilMRI(self.maps, _as_tensor(mask)).to(self.device)

    def augment(self, y):
        """Measured k-space ``(coils, H, W)`` → the right-hand side of this operator: ``y`` itself."""
        return y

    def combine(self, x):
        """Image of an operator input: ``x`` itself for one map set, the RSS over the sets (magnitude)
        for several (numpy or torch, sets on axis -3)."""
        if self.sets == 1:
            return x
        if isinstance(x, torch.Tensor):
            return x.abs().pow(2).sum(-3).sqrt()
        return np.sqrt((np.abs(x) ** 2).sum(-3))

    def from_network(self, out):
        """Generator output ``(B, 2·sets, ...)`` (real and imaginary part of each map set's image, in that
        order) → operator input ``(B, [sets,] H, W)``, centre-cropped and zero outside the maps' support."""
        if out.shape[1] != 2 * self.sets:
            raise OperatorInputError(
                f"mri: a generator for MRI with {self.sets} map set{'s' if self.sets > 1 else ''} must output "
                f"{2 * self.sets} channels (real, imag per set), got {out.shape[1]}")
        out = center_crop(out, self.in_shape[-2:])
        x = torch.complex(out[:, 0::2], out[:, 1::2]) * self.support.to(out.dtype)
        return x if self.sets > 1 else x[:, 0]

    @property
    def network_channels(self):
        return 2 * self.sets

    def describe(self):
        d = {**super().describe(), "coils": int(self.maps.shape[-3]), "acceleration": self.acceleration}
        return {**d, "map_sets": self.sets} if self.sets > 1 else d
