"""The batched generator pass: ``G`` under B stacked weight sets in ONE pass (:func:`torch.func.vmap`
over :func:`torch.func.functional_call`), BatchNorm statistics per element, and the sequential
write-back of running statistics. Used by :mod:`mri_oes.core` (K Concrete-mask samples of one network in one pass).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.func import functional_call, vmap


def _bn_modules(net: nn.Module) -> Dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in net.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None}


def supports_vmap(net: nn.Module) -> bool:
    """Whether :func:`vmap_forward` can run ``net``: every BatchNorm with running statistics needs a
    fixed ``momentum`` (``momentum=None``, the cumulative average, reads the batched counter as a
    Python number)."""
    return all(m.momentum is not None for m in _bn_modules(net).values())


def vmap_forward(net: nn.Module, weights_b: Dict[str, torch.Tensor], z: torch.Tensor, *,
                 z_batched: bool = False, buffers_b: Optional[Dict[str, torch.Tensor]] = None,
                 sequential_bn: bool = False):
    """``G`` for a batch of parameter sets in one pass.

    ``weights_b``: ``{param name: (B, *shape)}`` replacing those parameters (the others are the
    module's own, shared). ``z``: one input (``z_batched=False``) or ``(B, *z.shape)``.
    ``buffers_b``: ``{buffer name: (B, *shape)}`` per-element buffers (BN running statistics), updated
    in place by train-mode BatchNorm; ``None``: the module's buffers, expanded.
    ``sequential_bn=True`` (K samples of one network): afterwards the module's running statistics
    become those of B sequential batch-of-one passes. Returns ``(B, *G(z).shape)`` (and, when
    ``buffers_b`` is given, nothing else: the caller reads the updated ``buffers_b``)."""
    if not weights_b:
        raise ValueError("vmap_forward needs at least one stacked parameter")
    B = next(iter(weights_b.values())).shape[0]
    own_buffers = buffers_b is None
    if own_buffers:
        buffers_b = {}
        if net.training:
            for name, mod in _bn_modules(net).items():
                pre = f"{name}." if name else ""
                # start from zero statistics: the per-element update is then exactly f·(batch stat)
                for b in ("running_mean", "running_var"):
                    buf = getattr(mod, b)
                    buffers_b[pre + b] = torch.zeros((B, *buf.shape), dtype=buf.dtype, device=buf.device)
                nbt = mod.num_batches_tracked
                buffers_b[pre + "num_batches_tracked"] = nbt.detach().expand(B, *nbt.shape).clone()

    def one(w, bufs, zz):
        return functional_call(net, {**w, **bufs}, (zz,), strict=False)

    out = vmap(one, in_dims=(0, 0, 0 if z_batched else None))(weights_b, buffers_b, z)
    if own_buffers and net.training and sequential_bn:
        _sequential_bn_update(net, buffers_b, B)
    return out


@torch.no_grad()
def _sequential_bn_update(net: nn.Module, buffers_b: Dict[str, torch.Tensor], B: int) -> None:
    """Write back the K per-sample statistic updates as K sequential momentum updates (what K
    separate train-mode passes do): ``r ← (1−f) r + f s_k``, k = 1..K. ``buffers_b`` started at zero,
    so it holds ``f·s_k``."""
    for name, mod in _bn_modules(net).items():
        pre = f"{name}." if name else ""
        f = float(mod.momentum)
        for b in ("running_mean", "running_var"):
            r = getattr(mod, b)
            upd = buffers_b[pre + b]           # (K, C) = f · s_k
            for k in range(B):
                r.mul_(1 - f).add_(upd[k])
        mod.num_batches_tracked.add_(B)
