"""Untrained generators ``G(theta, z)`` and their fixed random inputs ``z``.

* ``hourglass`` — the OES dense-DIP network: the Deep-Image-Prior "skip" net with every skip set to 0
  (SPEC §3). Per encoder scale: 5×5 conv → 2× average pool → BN → LeakyReLU(0.2) → 5×5 conv → BN →
  LeakyReLU; per decoder scale: nearest 2× upsample → BN → 3×3 conv → BN → LeakyReLU; head 1×1 conv
  (→ sigmoid for natural images, linear for MRI). Reflection padding, convs with bias. The default
  configuration (RGB) has exactly 3,008,867 parameters.
* ``deep-decoder`` — Heckel & Hand: per layer 1×1 conv (no bias) → bilinear 2× upsample (all but the
  last layer) → ReLU → BatchNorm; head 1×1 conv (no bias) → sigmoid. 6 layers × 128 channels RGB:
  100,224 parameters.
* ``convdecoder`` — Darestani & Heckel (2021) for MRI: bilinear upsampling to geometrically growing
  sizes → BN → 3×3 conv → BN → ReLU → 1×1 conv → BN → ReLU per block, then BN → 1×1 conv; convs
  without bias.

Every generator runs on a grid ``grid_size(cfg, hw)`` (a multiple of ``2**levels``, at least the image);
operators crop the output to the image (``LinearOperator.from_network``), never resample the data.
Initialisation is PyTorch's default, seeded: ``build_generator(cfg, seed)`` is bit-identical for the
same ``(cfg, seed)`` on the same software versions.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserError

KINDS = ("hourglass", "deep-decoder", "convdecoder")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator (everything needed to rebuild it, saved in mask/result files).

    ``channels``: per-scale channel counts (hourglass: encoder = decoder channels; deep decoder and
    ConvDecoder: one entry per layer). ``input_channels``: channels of ``z``. ``sigmoid``: output
    sigmoid (natural images) or linear output (MRI). ``input_scale``: ``z ~ U[0, 1) · input_scale``.
    ``input_size``: ConvDecoder's input spatial size (H, W).
    """

    kind: str = "hourglass"
    out_channels: int = 3
    channels: Tuple[int, ...] = (16, 32, 64, 128, 128, 128)
    input_channels: int = 32
    sigmoid: bool = True
    input_scale: float = 0.1
    input_size: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UserError(f"generator kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.input_size is not None:
            object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        if not self.channels or min(self.channels) < 1 or self.out_channels < 1:
            raise UserError(f"generator channels must be positive, got {self.channels}")

    @property
    def levels(self) -> int:
        """Number of 2× resolution steps between ``z`` and the output."""
        if self.kind == "hourglass":
            return len(self.channels)
        if self.kind == "deep-decoder":
            return len(self.channels) - 1
        return 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown generator config fields: {sorted(unknown)}")
        d = dict(d)
        for k in ("channels", "input_size"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    # ---- named configurations
    @classmethod
    def oes(cls, out_channels=None, levels=6, width=1.0, mri=False) -> "GeneratorConfig":
        """The OES hourglass (3,008,867 parameters for RGB at levels=6, width=1), optionally cut to
        fewer scales (small images) or narrowed by ``width``."""
        base = (16, 32, 64, 128, 128, 128, 128, 128)
        if not 1 <= levels <= len(base):
            raise UserError(f"levels must be in 1..{len(base)}, got {levels}")
        ch = tuple(max(1, int(round(c * width))) for c in base[:levels])
        return cls("hourglass", out_channels=_out_channels(out_channels, mri), channels=ch,
                   sigmoid=not mri)

    @classmethod
    def deep_decoder(cls, out_channels=None, layers=6, width=128, mri=False) -> "GeneratorConfig":
        """Heckel & Hand's deep decoder: ``layers`` 1×1-conv layers of ``width`` channels, or ``width``
        a list of per-layer widths (its length is the depth; e.g. a narrower full-resolution layer,
        where most of the compute is)."""
        chans = _layer_widths("deep decoder", layers, width)
        return cls("deep-decoder", out_channels=_out_channels(out_channels, mri), channels=chans,
                   input_channels=chans[0], sigmoid=not mri)

    @classmethod
    def convdecoder(cls, out_channels=2, layers=8, width=160, input_size=(8, 4)) -> "GeneratorConfig":
        """Darestani & Heckel's fastMRI-knee configuration (160 channels, 8 layers, input 8×4);
        brains: ``layers=5, width=64``; ``width`` may be a list of per-layer widths (as the deep
        decoder's). ``out_channels = 2·coils`` for the maps-free variant."""
        chans = _layer_widths("ConvDecoder", layers, width)
        return cls("convdecoder", out_channels=out_channels, channels=chans,
                   input_channels=chans[0], sigmoid=False, input_size=tuple(input_size))


def _out_channels(out_channels, mri: bool) -> int:
    """Output channels of a named configuration: as given, else 2 for MRI (real, imaginary of one
    complex image) and 3 (RGB) otherwise; a maps-free MRI operator asks for ``2·coils``."""
    return int(out_channels) if out_channels is not None else (2 if mri else 3)


def _layer_widths(name: str, layers, width) -> Tuple[int, ...]:
    """Per-layer widths of a decoder: ``width`` repeated ``layers`` times, or ``width`` itself when a
    list (its length is the depth; ``layers``, when given, must agree)."""
    if isinstance(width, (list, tuple)):
        chans = tuple(int(c) for c in width)
        if layers is not None and layers != len(chans):
            raise ValueError(f"{name}: {len(chans)} per-layer widths for {layers} layers")
        return chans
    return (int(width),) * layers


# --------------------------------------------------------------------------------------- building
def _conv(cin, cout, k, bias=True):
    """Conv with reflection padding (DIP's ``conv`` function)."""
    pad = (k - 1) // 2
    layers = []
    if pad:
        layers.append(nn.ReflectionPad2d(pad))
    layers.append(nn.Conv2d(cin, cout, k, bias=bias))
    return nn.Sequential(*layers) if len(layers) > 1 else layers[0]


#: :class:`PointwiseConv` computes channels_last inputs as one GEMM (``False``: always ``nn.Conv2d``'s
#: path; ``benchmarks/pointwise_conv.py`` times both).
POINTWISE_GEMM = True


class PointwiseConv(nn.Conv2d):
    """1×1 convolution (stride 1, no padding) that, on a channels_last input, runs as one matrix
    product over the pixels: ``(N·H·W, C_in) @ W^T``, on views, with no copy. Same parameters, state
    dict and values as ``nn.Conv2d(cin, cout, 1)`` (up to float rounding). Why: on the CPU a 1×1
    ``nn.Conv2d`` runs PyTorch's ``_slow_conv2d`` kernels, whose backward took 4× its forward on the
    ``cpu`` preset's 192→64 full-resolution layer. Measured on the 2-core CPU, 1 thread
    (``benchmarks/pointwise_conv.py``): the preset deep decoder's step alone 0.88×; the whole
    Sparse-DIP / OES mask step through ``core.fit`` 0.97× / 0.94×. The output keeps the input's memory
    format. Other inputs take ``nn.Conv2d``'s path."""

    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__(cin, cout, 1, bias=bias)

    def forward(self, x):
        if (POINTWISE_GEMM and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            w = self.weight   # the masked tensor under functional_call
            y = F.linear(x.permute(0, 2, 3, 1), w.reshape(w.shape[0], w.shape[1]), self.bias)
            return y.permute(0, 3, 1, 2)
        return super().forward(x)


def _act():
    return nn.LeakyReLU(0.2, inplace=False)


class Hourglass(nn.Module):
    """Encoder–decoder without skip connections (see module docstring)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        ch = cfg.channels
        enc, dec = [], []
        cin = cfg.input_channels
        for c in ch:
            enc.append(nn.Sequential(_conv(cin, c, 5), nn.AvgPool2d(2), nn.BatchNorm2d(c), _act(),
                                     _conv(c, c, 5), nn.BatchNorm2d(c), _act()))
            cin = c
        for i in reversed(range(len(ch))):
            c_in = ch[i + 1] if i + 1 < len(ch) else ch[i]
            dec.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.BatchNorm2d(c_in),
                                     _conv(c_in, ch[i], 3), nn.BatchNorm2d(ch[i]), _act()))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.head = PointwiseConv(ch[0], cfg.out_channels)
        self.sigmoid = cfg.sigmoid

    def forward(self, z):
        out = self.head(self.decoder(self.encoder(z)))
        return torch.sigmoid(out) if self.sigmoid else out


class DeepDecoder(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        ch = (cfg.input_channels,) + cfg.channels
        layers = []
        for i in range(len(cfg.channels)):
            layers.append(PointwiseConv(ch[i], ch[i + 1], bias=False))
            if i < len(cfg.channels) - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            layers += [nn.ReLU(), nn.BatchNorm2d(ch[i + 1])]
        self.body = nn.Sequential(*layers)
        self.head = PointwiseConv(ch[-1], cfg.out_channels, bias=False)
        self.sigmoid = cfg.sigmoid

    def forward(self, z):
        out = self.head(self.body(z))
        return torch.sigmoid(out) if self.sigmoid else out


class ConvDecoder(nn.Module):
    """Darestani & Heckel's ConvDecoder; the upsampling sizes grow geometrically from ``input_size``
    to the output grid (computed at build time from ``out_hw``)."""

    def __init__(self, cfg: GeneratorConfig, out_hw: Sequence[int]):
        super().__init__()
        n = len(cfg.channels)
        h0, w0 = cfg.input_size or (8, 4)
        H, W = out_hw
        fh, fw = (H / h0) ** (1 / n), (W / w0) ** (1 / n)
        self.sizes = [(int(math.ceil(h0 * fh ** (i + 1))), int(math.ceil(w0 * fw ** (i + 1))))
                      for i in range(n - 1)] + [(int(H), int(W))]
        ch = (cfg.input_channels,) + cfg.channels
        self.blocks = nn.ModuleList()
        for i in range(n):
            self.blocks.append(nn.Sequential(
                nn.BatchNorm2d(ch[i]), _conv(ch[i], ch[i + 1], 3, bias=False), nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU(), PointwiseConv(ch[i + 1], ch[i + 1], bias=False), nn.BatchNorm2d(ch[i + 1]),
                nn.ReLU()))
        self.final_bn = nn.BatchNorm2d(ch[-1])
        self.head = PointwiseConv(ch[-1], cfg.out_channels, bias=False)

    def forward(self, z):
        x = z
        for size, block in zip(self.sizes, self.blocks):
            x = block(nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return self.head(self.final_bn(x))


def grid_size(cfg: GeneratorConfig, hw: Sequence[int]) -> Tuple[int, int]:
    """Smallest grid ≥ ``hw`` on which the generator runs (multiple of ``2**levels``)."""
    m = 2 ** cfg.levels
    return tuple(int(math.ceil(int(s) / m) * m) for s in hw)


def check_image_size(cfg: GeneratorConfig, hw: Sequence[int]) -> None:
    """Clear error when an image is too small for the depth (reflection padding needs the
    bottleneck to be larger than the pad)."""
    if cfg.kind != "hourglass":
        return
    g = grid_size(cfg, hw)
    bottleneck = min(g) // 2 ** cfg.levels
    # the 5×5 conv after the last pooling pads by 2: reflection needs size > 2
    if bottleneck < 4:
        need = 4 * 2 ** cfg.levels
        raise UserError(
            f"image {tuple(hw)} is too small for a {cfg.levels}-level hourglass (needs >= {need} px per "
            f"side); use --levels {largest_levels(hw)} or fewer (Python: GeneratorConfig.oes(levels=...))")


def largest_levels(hw: Sequence[int], max_levels: int = 6) -> int:
    """The deepest hourglass (at most ``max_levels``; the paper's 6 needs >= 256 px) whose bottleneck
    on the padded grid of ``hw`` is still >= 4 px (the default of ``--levels`` on every command)."""
    for lv in range(max_levels, 0, -1):
        m = 2 ** lv
        if min(int(math.ceil(int(s) / m) * m) for s in hw) // m >= 4:
            return lv
    return 1




def build_generator(cfg: GeneratorConfig, seed: int, image_hw: Optional[Sequence[int]] = None,
                    device=None) -> nn.Module:
    """Build ``G`` with PyTorch's default init drawn from ``seed`` (bit-identical for the same seed).
    ``image_hw`` is needed for the ConvDecoder (its upsampling sizes) and to check sizes."""
    if image_hw is not None:
        check_image_size(cfg, image_hw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if cfg.kind == "hourglass":
            net = Hourglass(cfg)
        elif cfg.kind == "deep-decoder":
            net = DeepDecoder(cfg)
        else:
            if image_hw is None:
                raise UserError("the ConvDecoder needs the image size (image_hw)")
            net = ConvDecoder(cfg, grid_size(cfg, image_hw))
    return net.to(device) if device is not None else net


def make_input(cfg: GeneratorConfig, image_hw: Sequence[int], seed: int, device=None) -> torch.Tensor:
    """The fixed input ``z ~ U[0, 1) · input_scale`` of shape ``(1, input_channels, h, w)``: the
    generator grid for the hourglass, ``grid / 2**levels`` for the deep decoder, ``input_size`` for
    the ConvDecoder. Drawn on the CPU from ``seed`` (device-independent)."""
    g = grid_size(cfg, image_hw)
    if cfg.kind == "hourglass":
        hw = g
    elif cfg.kind == "deep-decoder":
        hw = tuple(s // 2 ** cfg.levels for s in g)
    else:
        hw = cfg.input_size or (8, 4)
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.rand((1, cfg.input_channels, *hw), generator=gen) * cfg.input_scale
    return z.to(device) if device is not None else z


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
