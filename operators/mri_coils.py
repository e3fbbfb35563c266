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

import numpy as np
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

    #: the classical ℓ1 solver thresholds the coil images (axis 0) jointly; it adds no ℓ2 term
    joint_sparse = True
    l2 = 0.0

    def with_mask(self, mask) -> "CoilImagesMRI":
        """The same coils and grid on other sampled lines, on this device."""
        return CoilImagesMRI(_as_tensor(mask), self.in_shape[0], self.in_shape[-2:]).to(self.device)

    def augment(self, y):
        """Measured k-space ``(coils, H, W)`` → the right-hand side of this operator: ``y`` itself."""
        return y

    def coil_images(self, x):
        """The coil images of an operator input: the input itself."""
        return x

    def combine(self, x):
        """The image of an operator input: the RSS of its coil images."""
        return CoilImagesMRI.rss(x)

    @staticmethod
    def rss(x):
        """Root-sum-of-squares over the coil axis (-3) of complex coil images (torch or numpy)."""
        if isinstance(x, torch.Tensor):
            return x.abs().pow(2).sum(-3).sqrt()
        return np.sqrt((np.abs(x) ** 2).sum(-3))

    @property
    def acceleration(self) -> float:
        return float(self.mask[0].numel() / self.mask[0].sum())

    def describe(self):
        return {**super().describe(), "coils": self.in_shape[0], "acceleration": self.acceleration}


class SpiritCoilImagesMRI(LinearOperator):
    """Maps-free coil images with SPIRiT's calibration consistency (Lustig & Pauly, MRM 2010):
    ``A x = (M F x_c,  √μ (G − I) x)``, out shape ``(2, coils, H, W)``.

    ``G`` is the SPIRiT k-space kernel (every coil's k-space point from all coils' neighbours, fitted
    on the ACS block), applied in the image domain: ``(G x)_c = Σ_d g[c, d] · x_d`` with
    ``g = √(HW) · F^H(kernel)`` per coil pair (``image_kernels``: ``(coils, coils, H, W)``, e.g.
    :func:`mri_oes.mri.espirit.spirit_image_kernels`). Least squares on ``A`` with ``y`` stacked on zeros
    (:meth:`augment`) is the penalised CG-SPIRiT; with an ℓ1 prox it is ℓ1-SPIRiT. No coil maps: fold-over
    and tiny ACS blocks, where ESPIRiT maps fail, stay representable. Exact adjoint. Not registered (it
    needs calibrated kernels; the classical methods build it: ``mri_oes.mri.baselines``)."""

    name = "mri-coil-images-spirit"
    in_dtype = torch.complex64
    out_dtype = torch.complex64

    #: the classical ℓ1 solver thresholds the coil images (axis 0) jointly (joint sparsity)
    joint_sparse = True

    def __init__(self, mask, image_kernels, mu: float = 1.0, l2: float = 0.01, noise=None):
        g = _as_tensor(image_kernels)
        if g.dim() != 4 or g.shape[0] != g.shape[1]:
            raise OperatorInputError(f"mri-coil-images-spirit: image_kernels must be (coils, coils, H, W), "
                                     f"got {tuple(g.shape)}")
        if not mu > 0:
            raise OperatorInputError(f"mri-coil-images-spirit: mu must be > 0, got {mu}")
        C, _, H, W = (int(s) for s in g.shape)
        self.data = CoilImagesMRI(mask, C, (H, W))
        self.mask = self.data.mask
        self.kernels = g.to(torch.complex64).contiguous()
        self.mu = float(mu)
        # ℓ2 (Tikhonov) weight the classical ℓ1 solver adds (CG-SPIRiT's λ), so ℓ1-SPIRiT tends to
        # CG-SPIRiT as its λ → 0 (mri_oes.mri.baselines sets it per scan)
        self.l2 = float(l2)
        super().__init__((C, H, W), (2, C, H, W), noise=noise)

    def _gmi(self, x):            # (G - I) x, x: (B, C, H, W)
        return torch.einsum("cdhw,bdhw->bchw", self.kernels.to(x.dtype), x) - x

    def _gmi_h(self, r):          # (G - I)^H r
        return torch.einsum("cdhw,bchw->bdhw", self.kernels.to(r.dtype).conj(), r) - r

    def _forward(self, x):
        return torch.stack([self.data._forward(x), self.mu ** 0.5 * self._gmi(x)], 1)

    def _adjoint(self, y):
        return self.data._adjoint(y[:, 0]) + self.mu ** 0.5 * self._gmi_h(y[:, 1])

    def coil_images(self, x):
        """The coil images of an operator input: the input itself (as :meth:`MultiCoilMRI.coil_images`)."""
        return x

    def combine(self, x):
        """The image of an operator input: the RSS of its coil images (as :meth:`MultiCoilMRI.combine`)."""
        return CoilImagesMRI.rss(x)

    def from_network(self, out):
        """A generator's ``2·coils`` output channels → coil images, as :meth:`CoilImagesMRI.from_network`
        (a network fitted through this operator is held to the data and to SPIRiT's calibration)."""
        return self.data.from_network(out)

    @property
    def network_channels(self):
        return self.data.network_channels

    def with_mask(self, mask) -> "SpiritCoilImagesMRI":
        """The same kernels, μ and ℓ2 weight on other sampled lines, on this device."""
        return SpiritCoilImagesMRI(_as_tensor(mask), self.kernels, self.mu, self.l2).to(self.device)

    def augment(self, y):
        """Measured k-space ``(coils, H, W)`` → this operator's right-hand side ``(2, coils, H, W)``."""
        return torch.stack([y, torch.zeros_like(y)], -4)

    @property
    def acceleration(self) -> float:
        return self.data.acceleration

    def describe(self):
        return {**super().describe(), "coils": self.in_shape[0], "mu": self.mu, "acceleration": self.acceleration}
