"""Several generator passes in ONE batched pass: K Concrete-mask samples of one network (OES), or B
independent fits (B slices/images, each with its own weights, mask, ``z``, operator and data).

Mechanism: :func:`torch.func.vmap` over :func:`torch.func.functional_call` with parameters stacked on a
leading dimension. vmap's convolution rule with a batched weight runs ONE grouped convolution
(``groups = B``) instead of B convolutions, i.e. it *is* the grouped-convolution formulation, generated
for every layer type of the generators (reflection padding, pooling, upsampling, BatchNorm, activations)
without a hand-written batched copy of each network. BatchNorm runs in train mode with its statistics
per batch element — exactly as B separate batch-of-one passes (it is not a batch of B, which would pool
the statistics). Running statistics are carried per element and written back (for K samples of one
network: as K sequential momentum updates, what the loop does).

:func:`fit_batched` is :func:`mri_oes.core.fit` for B independent fits advanced together: one Adam over
the stacked parameters (Adam is elementwise, so this is B separate Adams), the summed loss (each fit's
gradient only depends on its own loss). Results equal B sequential ``train_generator`` fits up to float
rounding (tests/test_speed_equivalence.py).

Speed (``benchmarks/core_speed.py``): on a GPU the batched pass keeps the device busy where one small
slice leaves it idle; on one CPU thread the FLOPs are the same as the loop, so the gain there is the
per-op overhead only (see the benchmark's closing note for the measured numbers).
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from . import core
from .core import FitResult, data_loss, derive_seed
from .errors import UserError
from .masks import Mask


from .vmap import batching_pays, supports_vmap, vmap_forward  # noqa: F401 - re-exported


# -------------------------------------------------------------------------------- batched fitting
def _check_same_architecture(nets: Sequence[nn.Module]) -> None:
    ref = nets[0]
    ref_shapes = {k: (tuple(v.shape), v.dtype) for k, v in ref.state_dict().items()}
    for i, n in enumerate(nets[1:], 1):
        shapes = {k: (tuple(v.shape), v.dtype) for k, v in n.state_dict().items()}
        if type(n) is not type(ref) or shapes != ref_shapes or repr(n) != repr(ref) \
                or getattr(n, "sizes", None) != getattr(ref, "sizes", None):
            raise UserError(f"fit_batched: network {i} has another architecture than network 0 "
                            "(batched fits need one generator config and one grid size)")


def fit_batched(nets: Sequence[nn.Module], zs: Sequence[torch.Tensor], operators: Sequence,
                ys: Sequence[torch.Tensor], masks: Optional[Sequence[Optional[Mask]]] = None, *,
                steps: int, lr: float = 1e-2, evaluate: Optional[Sequence[Optional[Callable]]] = None,
                log_every: int = 50, input_noise_std: float = 0.0, seeds: Optional[Sequence[int]] = None,
                progress: bool = False, desc: str = "fit-batched",
                callback: Optional[Callable] = None, vectorize: Optional[bool] = None) -> List[FitResult]:
    """B independent Sparse-DIP / dense-DIP fits advanced in one batched step.

    Fit ``b`` is exactly ``methods.train_generator(nets[b], zs[b], operators[b], ys[b],
    mask=masks[b], steps=steps, lr=lr, evaluate=evaluate[b], log_every=log_every,
    input_noise_std=input_noise_std, seed=seeds[b])`` (same Adam, same input-noise stream, same
    logging/best-iterate rules), up to float rounding; returns the B :class:`~mri_oes.core.FitResult`
    in order, and leaves each ``nets[b]`` holding its trained weights and BN statistics, as
    ``train_generator`` does.

    Requirements: all ``nets`` share one architecture (same generator config and grid; each has its
    own weights), all on one device; ``zs[b]`` of one shape; operators/data may differ (e.g. slices
    with their own coil maps and sampling masks). ``masks[b]``: a :class:`~mri_oes.masks.Mask` or
    ``None`` (dense). Not supported here (use :func:`mri_oes.core.fit`): checkpoints, GP-DIP noise,
    OES mask learning. ``callback(b, row)`` is called with each logged row of fit ``b``.
    ``progress``: one tqdm bar for the batch.

    ``vectorize``: ``True`` — one vmap pass for all B (grouped convolutions); ``False`` — the B
    forward passes one after another inside the step (same stacked Adam, same results); ``None``
    (default) — :func:`batching_pays` for the device: vmap on GPUs, the loop on CPUs, where the
    grouped convolutions measured slower (``benchmarks/core_speed.py``). Either way the call is safe
    to use whenever several fits share a device.
    """
    B = len(nets)
    if B < 1:
        raise UserError("fit_batched needs at least one fit")
    for name, seq in (("zs", zs), ("operators", operators), ("ys", ys)):
        if len(seq) != B:
            raise UserError(f"fit_batched: {name} has {len(seq)} entries for {B} networks")
    masks = list(masks) if masks is not None else [None] * B
    evaluate = list(evaluate) if evaluate is not None else [None] * B
    seeds = [0] * B if seeds is None else [int(s) for s in seeds]
    if len(masks) != B or len(evaluate) != B or len(seeds) != B:
        raise UserError(f"fit_batched: masks/evaluate/seeds need {B} entries each")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    _check_same_architecture(nets)
    if not supports_vmap(nets[0]):
        raise UserError("fit_batched: BatchNorm with momentum=None is not supported")
    if len({tuple(z.shape) for z in zs}) != 1:
        raise UserError("fit_batched: all inputs z need one shape")
    dev = zs[0].device
    if vectorize is None:
        vectorize = batching_pays(dev)
    template = nets[0]
    for n in nets:
        n.train()
    names = [k for k, _ in template.named_parameters()]
    params = {k: torch.stack([dict(n.named_parameters())[k].detach() for n in nets]).clone().requires_grad_(True)
              for k in names}
    buf_names = [k for k, _ in template.named_buffers()]
    buffers = {k: torch.stack([dict(n.named_buffers())[k].detach() for n in nets]).clone() for k in buf_names}
    stacked_masks = {}
    for b, m in enumerate(masks):
        if m is None:
            continue
        m.check_compatible(nets[b])
        for k, keep in m.keep.items():
            if keep.all():
                continue
            if k not in stacked_masks:
                stacked_masks[k] = torch.ones_like(params[k], dtype=params[k].dtype).detach()
            stacked_masks[k][b] = keep.to(dev, params[k].dtype)
    Z = torch.stack(list(zs))
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    noise_gens = [torch.Generator(device=dev).manual_seed(derive_seed(s, "input-noise")) for s in seeds]
    results = [FitResult() for _ in range(B)]
    active = [True] * B

    def record(b, step, loss, dloss, x_hat):
        res = results[b]
        row = {"step": step, "loss": loss, "data_loss": dloss}
        if evaluate[b] is not None:
            with torch.no_grad():
                met = evaluate[b](x_hat.detach())
            row.update(met)
            if "psnr" in met and (res.best_step is None or met["psnr"] > res.best_metrics.get("psnr", -math.inf)):
                res.best_step, res.best_metrics = step, dict(met)
                res.best_output = x_hat.detach().cpu().clone()
        res.history.append(row)
        if callback is not None:
            callback(b, row)
        return row

    def forward(zin):
        w = {k: (p * stacked_masks[k] if k in stacked_masks else p) for k, p in params.items()}
        if vectorize:
            return vmap_forward(template, w, zin, z_batched=True, buffers_b=buffers)
        outs = []
        for b in range(B):   # views into the stacked tensors: gradients and BN updates land there
            zb = zin[b]
            if core.use_channels_last(zb):
                zb = zb.contiguous(memory_format=torch.channels_last)   # as core.fit does
            outs.append(functional_call(template, {**{k: v[b] for k, v in w.items()},
                                                   **{k: v[b] for k, v in buffers.items()}}, (zb,), strict=False))
        return outs

    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True)
    x_hats = [None] * B
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        if input_noise_std > 0:
            zin = torch.stack([z + input_noise_std * torch.randn(z.shape, generator=g, device=dev, dtype=z.dtype)
                               for z, g in zip(zs, noise_gens)])
        else:
            zin = Z
        outs = forward(zin)
        losses = []
        for b in range(B):
            x_hats[b] = operators[b].from_network(outs[b])
            losses.append(data_loss(operators[b](x_hats[b]), ys[b]))
        values = torch.stack([l.detach() for l in losses]).tolist()   # one device sync for all B
        total = 0.0
        for b in range(B):
            if not active[b]:
                continue
            if not math.isfinite(values[b]):
                results[b].diverged = True
                warnings.warn(f"{desc}[{b}]: loss became {values[b]} at step {step}; stopping this fit")
                record(b, step, values[b], values[b], x_hats[b])
                results[b].output = x_hats[b].detach().cpu()
                active[b] = False
                continue
            if step % log_every == 0:
                record(b, step, values[b], values[b], x_hats[b])
            total = total + losses[b]
        if not any(active):
            break
        frozen = {b for b in range(B) if not active[b]}
        if frozen:   # diverged fits keep their weights (as core.fit stops them)
            keep_vals = {k: p.detach()[sorted(frozen)].clone() for k, p in params.items()}
        total.backward()
        opt.step()
        if frozen:
            with torch.no_grad():
                for k, p in params.items():
                    p[sorted(frozen)] = keep_vals[k]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    with torch.no_grad():
        outs = forward(Z) if any(active) else None
        for b in range(B):
            if not active[b]:
                continue
            x_hat = operators[b].from_network(outs[b])
            final_loss = float(data_loss(operators[b](x_hat), ys[b]))
            row = record(b, steps, final_loss, final_loss, x_hat)
            results[b].final_metrics = {k: v for k, v in row.items() if k != "step"}
            results[b].output = x_hat.detach().cpu()
        # the networks hold their trained weights and BN statistics, as after core.fit
        for b, n in enumerate(nets):
            own = dict(n.named_parameters())
            for k in names:
                own[k].copy_(params[k][b])
            own_b = dict(n.named_buffers())
            for k in buf_names:
                own_b[k].copy_(buffers[k][b])
    wall = time.perf_counter() - t0
    for r in results:
        r.steps = steps
        r.wall_time_s = wall
    return results
