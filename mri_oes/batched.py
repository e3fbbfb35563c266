"""Several slices trained as one: B generators of one architecture in one pass, for the one loop.

:func:`mri_oes.core.fit` trains ``operator(G(theta, z)) ≈ y``. With B slices of one grid (the slices of a
volume, or volumes of one protocol) the three pieces become batched and the loop is unchanged:

* :class:`StackedGenerator` — the B networks' parameters and BatchNorm buffers stacked on a leading
  dimension, run in one pass: as one network with every layer grouped B ways (:func:`grouped_network`),
  else :func:`torch.func.vmap` over the one network (:func:`mri_oes.vmap.vmap_forward`); BatchNorm
  statistics per slice, as in a batch-of-one fit; its input is the B inputs ``z`` stacked;
* :class:`StackedMask` — the B slices' pruning masks stacked the same way (``None`` for dense);
* :class:`SliceBatch` — the B slices' operators, each applied to its own slice. Its output and the
  stacked measurements (:meth:`SliceBatch.stack`) carry a weight per slice chosen so that
  :func:`mri_oes.core.data_loss` of the stack is the SUM of the slices' own data losses: slice ``b``'s
  weights get exactly the gradient of its own fit, and Adam (elementwise) moves them as that fit would.
  Slices with fewer coils are padded with zero coils (zero in prediction and data: no loss, no gradient).

So a batched fit is B independent fits (up to float rounding), at the cost of one pass: on a GPU the
generator's kernels run on B times the work. :func:`split_result` turns the batched
:class:`~mri_oes.core.FitResult` into the B per-slice results :func:`mri_oes.runner.run_batch` records.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .core import FitResult, data_loss
from .masks import Mask
from .vmap import supports_vmap, vmap_forward
from torch.func import functional_call

_SEP = "__"   # parameter names of the stacked module: "layers.0.weight" -> "layers__0__weight"


def _stacked_name(name: str) -> str:
    return name.replace(".", _SEP)


class GroupedPointwise(nn.Module):
    """B independent 1×1 convolutions (``cin → cout`` each, stride 1) on a ``(1, B·cin, H, W)`` input as
    one batched matrix product (``torch.bmm``): the grouped form of :class:`~mri_oes.generators.PointwiseConv`
    (a grouped 1×1 ``nn.Conv2d`` runs PyTorch's slow convolution kernels on a CPU)."""

    def __init__(self, batch: int, cin: int, cout: int, bias: bool):
        super().__init__()
        self.batch, self.cin, self.cout = batch, cin, cout
        self.weight = nn.Parameter(torch.empty(batch * cout, cin, 1, 1))
        self.bias = nn.Parameter(torch.empty(batch * cout)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if n != 1:
            raise ValueError("GroupedPointwise takes one stacked input (N = 1)")
        y = torch.bmm(self.weight.reshape(self.batch, self.cout, self.cin),
                      x.reshape(self.batch, self.cin, h * w))
        if self.bias is not None:
            y = y + self.bias.reshape(self.batch, self.cout, 1)
        return y.reshape(1, self.batch * self.cout, h, w)


#: generators whose forward only chains layers channel by channel (no concatenation or reshaping across
#: channels): their B copies run as ONE network with every layer grouped B ways (:func:`grouped_network`)
def _groupable_types():
    from .generators import ConvDecoder, DeepDecoder, Hourglass
    return (DeepDecoder, ConvDecoder, Hourglass)


_LAYOUT_FREE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Upsample, nn.ReflectionPad2d, nn.AvgPool2d, nn.Identity)


def grouped_network(net: nn.Module, batch: int) -> Optional[nn.Module]:
    """``net``'s architecture with every layer grouped ``batch`` ways — convolutions with ``batch`` times the
    groups (1×1 ones as :class:`GroupedPointwise`), BatchNorm over ``batch`` times the channels (its
    statistics per channel, so per slice) — taking ``(1, batch·C, h, w)``; its parameters are the stacked
    ones reshaped (``(B, *shape)`` → ``(B·shape[0], *shape[1:])``). None where a layer has no grouped form."""
    import copy
    if not isinstance(net, _groupable_types()):
        return None
    out = copy.deepcopy(net)

    def convert(mod: nn.Module) -> Optional[nn.Module]:
        if isinstance(mod, nn.Conv2d):
            k, st, pad, dil = mod.kernel_size, mod.stride, mod.padding, mod.dilation
            if k == (1, 1) and st == (1, 1) and pad in ((0, 0), "valid") and mod.groups == 1 and dil == (1, 1):
                return GroupedPointwise(batch, mod.in_channels, mod.out_channels, mod.bias is not None)
            if mod.padding_mode != "zeros":
                return None
            return nn.Conv2d(batch * mod.in_channels, batch * mod.out_channels, k, stride=st, padding=pad,
                             dilation=dil, groups=batch * mod.groups, bias=mod.bias is not None)
        if isinstance(mod, nn.BatchNorm2d):
            if mod.momentum is None:
                return None
            return nn.BatchNorm2d(batch * mod.num_features, eps=mod.eps, momentum=mod.momentum,
                                  affine=mod.affine, track_running_stats=mod.track_running_stats)
        return mod if isinstance(mod, _LAYOUT_FREE) else None

    def walk(parent: nn.Module) -> bool:
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                if not walk(child):
                    return False
                continue
            new = convert(child)
            if new is None:
                return False
            if new is not child:
                setattr(parent, name, new)
        return True

    return out if walk(out) else None


class StackedGenerator(nn.Module):
    """B generators of one architecture as one module (parameters and buffers ``(B, *shape)``).

    ``forward(z)`` takes the inputs stacked, ``(B, *z_one.shape)``, and returns ``(B, *G(z_one).shape)``
    (each slice's output keeps its own batch-of-one dimension). Where every layer has a grouped form
    (:func:`grouped_network`: the deep decoder, ConvDecoder and hourglass) the B networks run as one
    grouped network (batched matrix products and grouped convolutions: one kernel per layer for all
    slices); otherwise as :func:`torch.func.vmap` over the one network. :meth:`unstack_into` copies slice
    ``b``'s trained parameters and buffers back into a network of the original architecture."""

    def __init__(self, nets: Sequence[nn.Module], grouped: bool = True):
        super().__init__()
        if not nets:
            raise ValueError("StackedGenerator needs at least one network")
        base = nets[0]
        self.batch = len(nets)
        self.names = [n for n, _ in base.named_parameters()]
        self.buffer_names = [n for n, _ in base.named_buffers()]
        for n in nets[1:]:
            shapes = [tuple(p.shape) for p in n.parameters()]
            if shapes != [tuple(p.shape) for p in base.parameters()]:
                raise ValueError("StackedGenerator: the networks differ in architecture")
        with torch.no_grad():
            for name in self.names:
                self.register_parameter(_stacked_name(name), nn.Parameter(
                    torch.stack([n.get_parameter(name).detach() for n in nets]).contiguous()))
            for name in self.buffer_names:
                self.register_buffer(_stacked_name(name), torch.stack([n.get_buffer(name) for n in nets]).clone())
        grouped_net = grouped_network(base, self.batch) if grouped else None
        if grouped_net is None and not supports_vmap(base):
            raise ValueError("StackedGenerator needs BatchNorm layers with a fixed momentum")
        if grouped_net is not None:
            grouped_net.to(next(base.parameters()).device)
        #: how the B networks run: "grouped" (one grouped network) or "vmap"
        self.mode = "grouped" if grouped_net is not None else "vmap"
        # the template the pass calls (not a submodule: its own tensors are never used)
        object.__setattr__(self, "_template", grouped_net if grouped_net is not None else base)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != self.batch:
            raise ValueError(f"StackedGenerator: {self.batch} networks but {z.shape[0]} inputs")
        weights = {n: getattr(self, _stacked_name(n)) for n in self.names}
        buffers = {n: getattr(self, _stacked_name(n)) for n in self.buffer_names}
        self._template.train(self.training)
        if self.mode == "vmap":
            return vmap_forward(self._template, weights, z, z_batched=True, buffers_b=buffers)
        if z.shape[1] != 1:
            raise ValueError("StackedGenerator: each slice's input must be a batch of one")
        B = self.batch
        flat = {n: t.reshape(B * t.shape[1], *t.shape[2:]) for n, t in weights.items()}
        for n, t in buffers.items():
            if n.endswith("num_batches_tracked"):
                if self.training:
                    t.add_(1)   # as each slice's BatchNorm counts its passes; the grouped layer's own is scratch
                flat[n] = t.new_zeros(())
            else:
                flat[n] = t.view(B * t.shape[1], *t.shape[2:])   # updated in place: the stacked buffer
        out = functional_call(self._template, flat, (z.reshape(1, B * z.shape[2], *z.shape[3:]),), strict=True)
        return out.reshape(B, 1, out.shape[1] // B, *out.shape[2:])

    @torch.no_grad()
    def unstack_into(self, b: int, net: nn.Module) -> nn.Module:
        """Write slice ``b``'s parameters and buffers into ``net`` (same architecture); returns it."""
        for name in self.names:
            net.get_parameter(name).copy_(getattr(self, _stacked_name(name))[b])
        for name in self.buffer_names:
            net.get_buffer(name).copy_(getattr(self, _stacked_name(name))[b])
        return net

class StackedMask(Mask):
    """B slices' masks (one architecture) stacked like :class:`StackedGenerator`'s parameters, for
    :class:`mri_oes.core.TrainWeights` on the stacked module."""

    def __init__(self, masks: Sequence[Mask]):
        keys = list(masks[0].keep)
        if any(list(m.keep) != keys for m in masks[1:]):
            raise ValueError("StackedMask: the masks cover different tensors")
        super().__init__({_stacked_name(k): torch.stack([m.keep[k] for m in masks]) for k in keys},
                         {"scope": masks[0].meta.get("scope", "weights"), "method": "stacked"})

    def check_compatible(self, net: nn.Module, scope: Optional[str] = None) -> None:
        params = dict(net.named_parameters())
        for k, m in self.keep.items():
            if k not in params or tuple(params[k].shape) != tuple(m.shape):
                raise ValueError(f"StackedMask: tensor {k} does not fit the stacked generator")


class SliceBatch:
    """B slices' operators (one image grid; coil counts may differ) applied slice by slice.

    ``from_network((B, 1, C, H, W))`` → the stacked operator inputs ``(B, *in_shape)``; calling it on
    those gives the weighted predictions ``(B, coils_max, H, W)``; :meth:`stack` gives the measurements
    in the same layout and weights. The weight ``sqrt(B · n_max / n_b)`` (``n``: entries per slice)
    makes the mean over the stack — :func:`mri_oes.core.data_loss` — the sum of the slices' own means."""

    name = "slice-batch"

    def __init__(self, ops: Sequence):
        self.ops = list(ops)
        if not self.ops:
            raise ValueError("SliceBatch needs at least one operator")
        in_shape = tuple(self.ops[0].in_shape)
        for op in self.ops[1:]:
            if tuple(op.in_shape) != in_shape:
                raise ValueError(f"SliceBatch: operator inputs differ ({tuple(op.in_shape)} vs {in_shape}); "
                                 "slices batched together need one image grid")
        self.in_shape = in_shape
        outs = [tuple(op.out_shape) for op in self.ops]
        if any(len(o) != len(outs[0]) or o[1:] != outs[0][1:] for o in outs):
            raise ValueError(f"SliceBatch: measurement shapes differ beyond the coil count: {outs}")
        self.out_shape = (max(o[0] for o in outs), *outs[0][1:])
        n_max = math.prod(self.out_shape)
        self.weights = [math.sqrt(len(self.ops) * n_max / math.prod(o)) for o in outs]

    @property
    def batch(self) -> int:
        return len(self.ops)

    def _pad(self, t: torch.Tensor) -> torch.Tensor:
        """``(C_b, ...)`` → ``(coils_max, ...)`` with zero coils appended."""
        missing = self.out_shape[0] - t.shape[0]
        return t if missing == 0 else torch.cat([t, t.new_zeros((missing, *t.shape[1:]))])

    def from_network(self, out: torch.Tensor) -> torch.Tensor:
        return torch.cat([op.from_network(out[b]) for b, op in enumerate(self.ops)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._pad(op(x[b:b + 1])[0]) * w
                            for b, (op, w) in enumerate(zip(self.ops, self.weights))])

    def stack(self, ys: Sequence[torch.Tensor]) -> torch.Tensor:
        """The slices' measurements in this operator's output layout (padded, weighted)."""
        if len(ys) != self.batch:
            raise ValueError(f"SliceBatch: {self.batch} operators but {len(ys)} measurements")
        return torch.stack([self._pad(y.reshape(op.out_shape)) * w
                            for y, op, w in zip(ys, self.ops, self.weights)])

    def describe(self) -> dict:
        return {"name": self.name, "ops": [op.describe() if hasattr(op, "describe") else type(op).__name__
                                           for op in self.ops]}

    def to(self, device) -> "SliceBatch":
        for op in self.ops:
            op.to(device)
        return self


def batch_evaluator(ops: Sequence, ys: Sequence[torch.Tensor],
                    evaluates: Sequence[Optional[Callable]]) -> Callable:
    """``evaluate(x_stack)`` for a batched fit: ``slices`` (per slice: its own ``data_loss`` and its
    ``evaluate``'s metrics) and, when every slice has a PSNR, their mean as ``psnr`` (the batch's
    oracle best; each slice's own best is read from its rows by :func:`split_result`)."""

    def evaluate(x: torch.Tensor) -> dict:
        rows = []
        for b, (op, y, ev) in enumerate(zip(ops, ys, evaluates)):
            xb = x[b:b + 1]
            m = {"data_loss": float(data_loss(op(xb), y.reshape(1, *op.out_shape)))}
            if ev is not None:
                m.update(ev(xb))
            rows.append(m)
        out: Dict[str, object] = {"slices": rows}
        if rows and all(isinstance(r.get("psnr"), (int, float)) for r in rows):
            out["psnr"] = sum(r["psnr"] for r in rows) / len(rows)
        return out

    return evaluate


def _slice_row(row: dict, b: int) -> dict:
    """Slice ``b``'s logged row of a batched fit: step and clock, its own loss and metrics (the
    averaged output's as ``average_*``). The batch's image change is not a slice's: left out."""
    out = {"step": row["step"], "time_s": row.get("time_s")}
    own = (row.get("slices") or [None] * (b + 1))[b]
    if own is not None:
        out["loss"] = own["data_loss"]   # TrainWeights has no penalty: the loss is the data loss
        out.update(own)
    avg = (row.get("average_slices") or [None] * (b + 1))[b]
    if avg is not None:
        out.update({f"average_{k}": v for k, v in avg.items()})
    return out


def split_result(res: FitResult, batch: int) -> List[FitResult]:
    """The B per-slice :class:`~mri_oes.core.FitResult` of a batched fit (run with
    :func:`batch_evaluator`): each slice's rows, final metrics (the averaged output's, as a single
    fit's), output, and best logged step by its own PSNR (its output is not kept: ``best_output`` None)."""
    out = []
    for b in range(batch):
        r = FitResult(history=[_slice_row(row, b) for row in res.history], steps=res.steps,
                      wall_time_s=res.wall_time_s, diverged=res.diverged, resumed_from=res.resumed_from,
                      stopped_at=res.stopped_at, stop_rule=res.stop_rule)
        if res.output is not None:
            r.output = res.output[b:b + 1]
        if res.last_output is not None:
            r.last_output = res.last_output[b:b + 1]
            r.last_metrics = {**(res.last_metrics.get("slices") or [{}] * batch)[b]}
        final = (res.final_metrics.get("slices") or [None] * batch)[b]
        if final is not None:
            r.final_metrics = {"loss": final["data_loss"], **final}
        key = "average_psnr" if any("average_psnr" in h for h in r.history) else "psnr"
        scored = [h for h in r.history if isinstance(h.get(key), (int, float))]
        if scored:
            best = max(scored, key=lambda h: h[key])
            r.best_step = best["step"]
            pre = "average_" if key == "average_psnr" else ""
            r.best_metrics = {k[len(pre):]: v for k, v in best.items()
                              if k.startswith(pre) and k[len(pre):] not in ("step", "time_s")
                              and (pre or not k.startswith("average_"))}
        out.append(r)
    return out
