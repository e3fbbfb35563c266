"""Binary keep-masks over a generator's weights.

What is masked (``scope``):

* ``"weights"`` (default): the weight tensors of every Conv/Linear layer. Biases and BatchNorm
  affine parameters stay dense: they are <0.2% of the OES net, and masking them collapses the network
  at short budgets (SPEC §4/§8: conv biases before BN get no data gradient, so the KL prior alone
  prunes them and BN scales die, killing whole channels).
* ``"all"``: every parameter tensor (what the OES authors' code does; offered for faithful
  reproduction).

``density`` = kept fraction, ``sparsity`` = 1 − density; both are recorded everywhere.
A mask is stored as safetensors (one bool tensor per parameter name) with JSON metadata: generator
config, init seed, ``z`` seed, density, method, source. It only means something together with the
init it was made at, so :meth:`Mask.build` rebuilds that exact ``theta_in`` and ``z``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn

from .errors import UserError
from .generators import GeneratorConfig, build_generator, make_input
from .io import atomic_path

SCOPES = ("weights", "all")
FORMAT = "mri_oes.mask/1"
#: most weights a mask file may declare (checked from its header before any tensor is loaded)
MAX_MASK_ELEMENTS = 1 << 26


def maskable_parameters(net: nn.Module, scope: str = "weights") -> Dict[str, nn.Parameter]:
    """Ordered ``{name: parameter}`` of the tensors a mask covers (see module docstring)."""
    if scope not in SCOPES:
        raise UserError(f"mask scope must be one of {SCOPES}, got {scope!r}")
    if scope == "all":
        return dict(net.named_parameters())
    out = {}
    for mname, mod in net.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Conv1d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)):
            out[f"{mname}.weight" if mname else "weight"] = mod.weight
    return out


def check_density(density: float) -> float:
    d = float(density)
    if not (0.0 < d <= 1.0) or math.isnan(d):
        raise UserError(f"density (kept fraction) must be in (0, 1], got {density!r} "
                        f"(sparsity = 1 - density; e.g. density 0.05 keeps 5% of the weights)")
    return d


class Mask:
    """``keep``: ``{param name: bool tensor}``; ``meta``: JSON-able provenance."""

    def __init__(self, keep: Dict[str, torch.Tensor], meta: Optional[dict] = None):
        self.keep = {k: v.detach().to(torch.bool).cpu() for k, v in keep.items()}
        self.meta = dict(meta or {})

    # ---- counts
    @property
    def n_total(self) -> int:
        return sum(v.numel() for v in self.keep.values())

    @property
    def n_kept(self) -> int:
        return int(sum(int(v.sum()) for v in self.keep.values()))

    @property
    def density(self) -> float:
        return self.n_kept / self.n_total

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def per_layer_density(self) -> Dict[str, float]:
        return {k: float(v.float().mean()) for k, v in self.keep.items()}

    def collapsed_layers(self) -> list:
        """Weight tensors with no kept entry: the layer's output no longer depends on its input
        (layer collapse); a network with one is dead."""
        return [k for k, v in self.keep.items() if v.numel() > 1 and not v.any()]

    def summary(self) -> dict:
        return {"density": self.density, "sparsity": self.sparsity, "kept_weights": self.n_kept,
                "maskable_weights": self.n_total, "collapsed_layers": self.collapsed_layers()}

    # ---- application
    def check_compatible(self, net: nn.Module, scope: Optional[str] = None) -> None:
        params = maskable_parameters(net, scope or self.meta.get("scope", "weights"))
        if set(params) != set(self.keep):
            missing, extra = set(self.keep) - set(params), set(params) - set(self.keep)
            raise UserError("mask does not fit this generator: "
                            f"mask-only tensors {sorted(missing)[:3]}, generator-only {sorted(extra)[:3]} "
                            f"(mask generator config: {self.meta.get('generator')})")
        for k, p in params.items():
            if tuple(p.shape) != tuple(self.keep[k].shape):
                raise UserError(f"mask tensor {k} has shape {tuple(self.keep[k].shape)} but the "
                                f"generator's has {tuple(p.shape)} (mask generator config: "
                                f"{self.meta.get('generator')})")

    def apply_(self, net: nn.Module) -> nn.Module:
        """Zero the pruned weights in place (for inspection/export; training uses the core's masking)."""
        self.check_compatible(net)
        params = dict(net.named_parameters())
        with torch.no_grad():
            for k, m in self.keep.items():
                params[k].mul_(m.to(params[k].device, params[k].dtype))
        return net

    @classmethod
    def ones(cls, net: nn.Module, scope: str = "weights", **meta) -> "Mask":
        return cls({k: torch.ones_like(p, dtype=torch.bool) for k, p in maskable_parameters(net, scope).items()},
                   {"scope": scope, "method": "dense", **meta})

    # ---- rebuild the exact init the mask belongs to
    def generator_config(self) -> GeneratorConfig:
        if "generator" not in self.meta:
            raise UserError("mask file has no generator config in its metadata")
        return GeneratorConfig.from_dict(self.meta["generator"])

    def build(self, image_hw, device=None, init_seed=None, z_seed=None):
        """Rebuild ``(net, z)`` at the mask's own init seed and ``z`` seed (or fresh ones when given:
        the 'fresh-init transfer' option), check the mask fits, and return them."""
        cfg = self.generator_config()
        init_seed = self.meta["init_seed"] if init_seed is None else init_seed
        z_seed = self.meta["z_seed"] if z_seed is None else z_seed
        net = build_generator(cfg, init_seed, image_hw, device=device)
        self.check_compatible(net)
        return net, make_input(cfg, image_hw, z_seed, device=device)

    # ---- files
    def save(self, path) -> Path:
        """Write ``path`` (.safetensors) atomically; metadata (with density AND sparsity) as JSON."""
        from safetensors.torch import save_file
        path = Path(path)
        meta = {**self.meta, **{k: v for k, v in self.summary().items()}, "format": FORMAT}
        tensors = {k: v.to(torch.uint8).contiguous() for k, v in self.keep.items()}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"mri_oes": json.dumps(meta, default=str)})
        return path

    @classmethod
    def load(cls, path) -> "Mask":
        from safetensors import safe_open
        path = Path(path)
        if not path.is_file():
            raise UserError(f"mask file not found: {path}")
        from .statefile import check_safetensors
        check_safetensors(path, MAX_MASK_ELEMENTS * 8, "mask file", max_elements=MAX_MASK_ELEMENTS, error=UserError)
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("mri_oes")
                meta = _parse_mask_meta(raw, path)   # metadata checked before any tensor is read
                stored = {k: f.get_tensor(k) for k in f.keys()}
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot read mask file {path}: not a valid safetensors mask ({e})") from None
        if not stored:
            raise UserError(f"mask file {path} holds no mask tensor")
        keep = {k: _binary(v, k, path) for k, v in stored.items()}
        n_total = sum(v.numel() for v in keep.values())
        n_kept = int(sum(int(v.sum()) for v in keep.values()))
        for key, actual in (("maskable_weights", n_total), ("kept_weights", n_kept)):
            if key in meta and meta[key] != actual:
                raise UserError(f"mask file {path}: metadata says {key} = {meta[key]!r} but the tensors "
                                f"hold {actual} (corrupt or edited file)")
        for k in ("density", "sparsity", "kept_weights", "maskable_weights", "collapsed_layers"):
            meta.pop(k, None)
        return cls(keep, meta)


def _parse_mask_meta(raw, path) -> dict:
    """The JSON metadata of a mask file, type-checked (one clear UserError otherwise)."""
    if raw is None:
        raise UserError(f"mask file {path} has no mri_oes metadata")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise UserError(f"mask file {path}: metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise UserError(f"mask file {path}: metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise UserError(f"mask file {path}: unsupported format {meta.get('format')!r}")
    types = {"generator": dict, "init_seed": int, "z_seed": int, "scope": str, "maskable_weights": int,
             "kept_weights": int, "method": str}
    for k, t in types.items():
        if k in meta and (not isinstance(meta[k], t) or isinstance(meta[k], bool) and t is int):
            raise UserError(f"mask file {path}: metadata field {k!r} is {type(meta[k]).__name__} "
                            f"{meta[k]!r:.40}, expected {t.__name__}")
    if "scope" in meta and meta["scope"] not in SCOPES:
        raise UserError(f"mask file {path}: metadata scope {meta['scope']!r} is not one of {SCOPES}")
    return meta


def _binary(t: torch.Tensor, name: str, path) -> torch.Tensor:
    """A stored mask tensor as bool; only 0/1 values (bool, integer or float) are accepted."""
    if t.dtype == torch.bool:
        return t
    if t.is_complex():
        raise UserError(f"mask file {path}: tensor {name} is complex; a mask holds 0/1 values")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise UserError(f"mask file {path}: tensor {name} contains NaN or Inf; a mask holds 0/1 values")
    if not ((t == 0) | (t == 1)).all():
        bad = t[(t != 0) & (t != 1)].reshape(-1)[:1].tolist()
        raise UserError(f"mask file {path}: tensor {name} has values other than 0/1 (e.g. {bad[0]}); "
                        "a mask must be binary")
    return t != 0


# ---------------------------------------------------------------------------------------- ranking
def flat_scores(scores: Dict[str, torch.Tensor], density: float):
    """``(names, flat float64 scores, kept count round(density · d))`` of a global ranking; refuses
    non-finite scores and a density that keeps nothing."""
    names = list(scores)
    flat = torch.cat([scores[k].detach().reshape(-1).double().cpu() for k in names])
    if not torch.isfinite(flat).all():
        raise UserError("mask scores contain NaN/Inf; cannot rank")
    k_total = int(round(density * flat.numel()))
    if k_total < 1:
        raise UserError(f"density {density} keeps no weight of {flat.numel()}")
    return names, flat, k_total


def topk_mask(scores: Dict[str, torch.Tensor], density: float, seed: int = 0,
              min_layer_density: float = 0.0, meta: Optional[dict] = None) -> Mask:
    """Keep exactly ``round(density · d)`` weights with the highest scores, ranked globally over all
    tensors; ties broken by a seeded random order. ``min_layer_density`` > 0 first guarantees each
    tensor its own top ``ceil(min_layer_density · n)`` weights (prevents layer collapse), the rest are
    ranked globally."""
    density = check_density(density)
    names, flat, k_total = flat_scores(scores, density)
    d = flat.numel()
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(d, generator=g)
    order = perm[torch.argsort(flat[perm], descending=True, stable=True)]  # ties in random order
    keep = torch.zeros(d, dtype=torch.bool)
    if min_layer_density > 0:
        if min_layer_density > density:
            raise UserError(f"min_layer_density {min_layer_density} exceeds density {density}")
        rank = torch.empty(d, dtype=torch.long)
        rank[order] = torch.arange(d)
        start = 0
        for k in names:
            n = scores[k].numel()
            need = int(math.ceil(min_layer_density * n))
            seg_rank = rank[start:start + n]
            keep[start + torch.argsort(seg_rank)[:need]] = True
            start += n
        remaining = k_total - int(keep.sum())
        if remaining > 0:
            cand = order[~keep[order]]
            keep[cand[:remaining]] = True
    else:
        keep[order[:k_total]] = True
    out, start = {}, 0
    for k in names:
        n = scores[k].numel()
        out[k] = keep[start:start + n].reshape(scores[k].shape)
        start += n
    return Mask(out, meta)
