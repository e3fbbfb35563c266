"""Pruning at initialisation (SPEC §6): random, magnitude, SNIP, GraSP, SynFlow masks at ``theta_in``.

Every mask here is made at ``theta_in`` and then trained through the ONE fitting loop
(:func:`mri_oes.methods.train_generator` → :func:`mri_oes.core.fit`); nothing here trains by itself.

Pruning at initialisation — scores, all computed at ``theta_in`` with the DIP loss
``L = data_loss(A(G(theta, z)), y)`` (the core's per-entry mean squared error; a positive constant
factor does not change any ranking), network in train mode (batch statistics, as DIP uses it; BN
running statistics are restored afterwards). **Sign convention: every score function returns
"keep-scores" — the mask keeps the HIGHEST values** (exactly ``round(density·d)`` of them via
:func:`mri_oes.masks.topk_mask`, ties broken by a seeded random order):

* ``random``: i.i.d. U[0, 1) scores from the seed (uniform random mask at the given density);
* ``magnitude``: ``|theta|``;
* ``snip`` (Lee et al. 2019): ``|theta ⊙ ∂L/∂theta|``;
* ``grasp`` (Wang et al. 2020): the paper's score is ``S = −theta ⊙ (H g)`` with ``g = ∂L/∂theta``
  and ``H g`` the Hessian-gradient product (double backward of ``gᵀ stopgrad(g)``); GraSP REMOVES the
  highest ``S``. We return the keep-score ``−S = theta ⊙ (H g)`` so that keeping the highest keep-score
  is removing the highest ``S`` (:func:`grasp_scores` returns ``S`` itself, :func:`pai_scores` the
  keep-score). The Hessian is taken w.r.t. the maskable tensors only;
* ``synflow`` (Tanaka et al. 2020): data-free. On a deep copy of the network (made once per scoring
  round, never per training step) all parameters are replaced by their absolute values, BatchNorm is
  put in eval mode at its initial running statistics (mean 0, var 1: data-free even if the network's
  buffers were moved by earlier train-mode passes), an output sigmoid is switched off (it would saturate and zero every gradient), the
  input is all ones and the computation runs in float64 (overflow). ``R = Σ G(|theta| ⊙ m, 1)``, score
  ``|theta| ⊙ ∂R/∂theta`` (non-negative), keep the highest. Applied iteratively: ``rounds`` (100)
  rounds with the exponential schedule ``density^(k/rounds)``, k = 1..rounds, re-scoring with the
  current mask each round.

IMP / the Lottery Image Prior lives in :mod:`mri_oes.imp`; the multi-image operator in
:mod:`operators.stacked`.
"""
from __future__ import annotations

import copy
import sys
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from . import core, methods
from .errors import UserError
from .masks import Mask, check_density, flat_scores, maskable_parameters, topk_mask

PAI_METHODS = ("random", "magnitude", "snip", "grasp", "synflow")


def _dip_loss_fn(net, z, operator, y, scope):
    """``(params, loss(weights))``: the DIP loss as a function of replacement maskable tensors."""
    params = maskable_parameters(net, scope)

    def loss(weights):
        x = operator.from_network(core.generate(net, z, weights))
        return core.data_loss(operator(x), y)

    return params, loss


def random_scores(net, scope: str = "weights", seed: int = 0) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(core.derive_seed(seed, "pai-random"))
    return {k: torch.rand(p.shape, generator=g, dtype=torch.float64)
            for k, p in maskable_parameters(net, scope).items()}


def magnitude_scores(net, scope: str = "weights") -> Dict[str, torch.Tensor]:
    return {k: p.detach().abs().cpu() for k, p in maskable_parameters(net, scope).items()}


def snip_scores(net, z, operator, y, scope: str = "weights") -> Dict[str, torch.Tensor]:
    """SNIP keep-score ``|theta ⊙ ∂L/∂theta|`` at the current weights (keep the highest)."""
    with methods.train_mode_preserving_buffers(net):
        params, loss_fn = _dip_loss_fn(net, z, operator, y, scope)
        w = {k: p.detach().clone().requires_grad_(True) for k, p in params.items()}
        grads = torch.autograd.grad(loss_fn(w), list(w.values()), allow_unused=True)
        return {k: (w[k].detach() * (g if g is not None else torch.zeros_like(w[k]))).abs().cpu()
                for k, g in zip(w, grads)}


def grasp_scores(net, z, operator, y, scope: str = "weights") -> Dict[str, torch.Tensor]:
    """GraSP score ``S = −theta ⊙ (H g)`` as in the paper (REMOVE the highest; the keep-score used
    for ranking is ``−S``). ``H g`` = ∂/∂theta [g(theta)ᵀ stopgrad(g)] by double backward."""
    with methods.train_mode_preserving_buffers(net):
        params, loss_fn = _dip_loss_fn(net, z, operator, y, scope)
        w = {k: p.detach().clone().requires_grad_(True) for k, p in params.items()}
        ws = list(w.values())
        g = torch.autograd.grad(loss_fn(w), ws, create_graph=True, allow_unused=True)
        g = [gi if gi is not None else torch.zeros_like(wi) for gi, wi in zip(g, ws)]
        gz = sum((gi * gi.detach()).sum() for gi in g if gi.requires_grad)
        if not isinstance(gz, torch.Tensor) or not gz.requires_grad:
            hg = [torch.zeros_like(wi) for wi in ws]
        else:
            hg = torch.autograd.grad(gz, ws, allow_unused=True)
            hg = [h if h is not None else torch.zeros_like(wi) for h, wi in zip(hg, ws)]
        return {k: (-(w[k].detach() * h)).cpu() for k, h in zip(w, hg)}


def _synflow_net(net):
    """Linearised copy: |theta| everywhere, BN eval, no output sigmoid, float64."""
    lin = copy.deepcopy(net).double().eval()
    for mod in lin.modules():   # data-free: BN at its init statistics (mean 0, var 1), never data-derived
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            mod.reset_running_stats()
    with torch.no_grad():
        for p in lin.parameters():
            p.abs_()
            p.requires_grad_(False)
    if hasattr(lin, "sigmoid") and isinstance(getattr(lin, "sigmoid"), bool):
        lin.sigmoid = False
    return lin


# Modules that map a spatially constant input to a spatially constant output (given the substitutions
# below), and the top-level networks whose forward only chains their children.
_CONST_POINTWISE = (nn.modules.batchnorm._BatchNorm, nn.LeakyReLU, nn.ReLU, nn.Identity, nn.Sigmoid,
                    nn.Sequential)
_CONST_TOP = ("Hourglass", "DeepDecoder", "Sequential")


def _synflow_reduce(lin: nn.Module) -> Optional[nn.Module]:
    """SynFlow's input is all ones and, for the generators here, every layer maps a spatially constant
    map to a spatially constant map (reflection/replication-padded or unpadded convs, 2× average
    pooling, nearest/bilinear upsampling, BN in eval mode, pointwise activations). The whole
    computation is then that of ONE pixel: a copy of ``lin`` with pooling/upsampling removed and
    reflection padding replaced by replication padding (equal on constant maps, and valid on a 1×1
    map) computes ``G(|theta|, 1)``'s per-pixel value on a 1×1 input. ``None`` when ``lin`` has a
    layer outside that list (zero-padded convs, other forwards): scored at full size instead."""
    if type(lin).__name__ not in _CONST_TOP or "forward" in vars(lin):
        return None
    red = copy.deepcopy(lin)
    for name, mod in list(red.named_modules()):
        if mod is red:
            continue
        if isinstance(mod, nn.Conv2d):
            if any(p != 0 for p in mod.padding) and mod.padding_mode == "zeros":
                return None
            if isinstance(mod.padding, str) or mod.dilation != (1, 1) or mod.stride != (1, 1):
                return None
            if any(p != 0 for p in mod.padding):
                mod.padding_mode = "replicate"
            continue
        if isinstance(mod, (nn.ReflectionPad2d, nn.ReplicationPad2d)):
            repl = nn.ReplicationPad2d(mod.padding)
        elif isinstance(mod, nn.AvgPool2d):
            k, st = mod.kernel_size, mod.stride
            if mod.padding not in (0, (0, 0)) or k != st:
                return None
            repl = nn.Identity()
        elif isinstance(mod, nn.Upsample):
            if mod.mode not in ("nearest", "bilinear"):
                return None
            repl = nn.Identity()
        elif isinstance(mod, _CONST_POINTWISE):
            continue
        else:
            return None
        parent_name, _, child = name.rpartition(".")
        setattr(red.get_submodule(parent_name) if parent_name else red, child, repl)
    return red


class _SynFlowScorer:
    """Scores ``|theta| ⊙ ∂R/∂theta``, ``R = Σ G(|theta| ⊙ keep, 1)``, for one network and input shape.
    Uses the one-pixel computation of :func:`_synflow_reduce` when it applies and reproduces the
    full-size output (checked once, at full size, on the unmasked network): ``R = P · Σ_c g_c`` with
    ``P`` the output pixels and ``g`` the one-pixel output; equal to the full-size scores up to float64
    rounding (~1e-15 relative), ~10⁴× fewer FLOPs at 256². Otherwise the full-size pass."""

    def __init__(self, net, input_shape, lin=None):
        self.lin = lin if lin is not None else _synflow_net(net)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.device = next(self.lin.parameters()).device
        self.reduced, self.pixels = None, None
        red = _synflow_reduce(self.lin) if len(self.input_shape) == 4 else None
        if red is not None:
            ones = torch.ones(self.input_shape, dtype=torch.float64, device=self.device)
            small = torch.ones(self.input_shape[:2] + (1, 1), dtype=torch.float64, device=self.device)
            try:
                with torch.no_grad():
                    full = self.lin(ones)
                    one = red(small)
            except (RuntimeError, ValueError):
                full, one = None, None
            if (full is not None and full.dim() == 4 and one.shape[-2:] == (1, 1)
                    and one.shape[:2] == full.shape[:2]
                    and torch.allclose(full, one.expand_as(full), rtol=1e-9, atol=0)):
                self.reduced, self.pixels = red, full.shape[-2] * full.shape[-1]

    def scores(self, names, keep=None) -> Dict[str, torch.Tensor]:
        lparams = dict(self.lin.named_parameters())
        w = {}
        for k in names:
            t = lparams[k].detach().clone()
            if keep is not None:
                t = t * keep[k].to(t.device, t.dtype)
            w[k] = t.requires_grad_(True)
        if self.reduced is not None:
            small = torch.ones(self.input_shape[:2] + (1, 1), dtype=torch.float64, device=self.device)
            R = functional_call(self.reduced, w, (small,), strict=False).sum() * self.pixels
        else:
            ones = torch.ones(self.input_shape, dtype=torch.float64, device=self.device)
            R = functional_call(self.lin, w, (ones,), strict=False).sum()
        grads = torch.autograd.grad(R, list(w.values()), allow_unused=True)
        return {k: (w[k].detach() * (g if g is not None else torch.zeros_like(w[k]))).cpu()
                for k, g in zip(w, grads)}


def synflow_scores(net, input_shape: Sequence[int], scope: str = "weights",
                   keep: Optional[Dict[str, torch.Tensor]] = None, _lin=None) -> Dict[str, torch.Tensor]:
    """One SynFlow scoring pass: ``|theta| ⊙ ∂R/∂theta`` with ``R = Σ G(|theta| ⊙ keep, 1)`` (BN eval,
    all-ones input of ``input_shape``, float64, no output sigmoid). Keep the highest."""
    scorer = _lin if isinstance(_lin, _SynFlowScorer) else _SynFlowScorer(net, input_shape, lin=_lin)
    return scorer.scores(list(maskable_parameters(net, scope)), keep)


def _synflow_topk(scores: Dict[str, torch.Tensor], density: float, seed: int, meta=None) -> Mask:
    """:func:`~mri_oes.masks.topk_mask` (``min_layer_density`` = 0) without the full sort: the same
    kept set — every score above the k-th largest, and of the scores equal to it the ones first in
    topk_mask's seeded random order — from one selection (``kthvalue``); the random order is drawn
    only when such a tie has to be broken."""
    names, flat, k_total = flat_scores(scores, density)
    d = flat.numel()
    t = torch.kthvalue(flat, d - k_total + 1).values
    keep = flat > t
    need = k_total - int(keep.sum())
    tie = flat == t
    if need > 0:
        if int(tie.sum()) == need:
            keep |= tie
        else:
            perm = torch.randperm(d, generator=torch.Generator().manual_seed(int(seed)))
            pos = torch.empty(d, dtype=torch.long)
            pos[perm] = torch.arange(d)
            tie_idx = tie.nonzero().squeeze(1)
            keep[tie_idx[torch.argsort(pos[tie_idx])[:need]]] = True
    out, start = {}, 0
    for k in names:
        n = scores[k].numel()
        out[k] = keep[start:start + n].reshape(scores[k].shape)
        start += n
    return Mask(out, meta)


def synflow_mask(net, input_shape, density: float, rounds: int = 100, scope: str = "weights",
                 seed: int = 0, min_layer_density: float = 0.0, meta=None) -> Mask:
    """Iterative SynFlow: ``rounds`` rounds, density ``density^(k/rounds)``; pruned weights are
    ranked below every kept one (they never come back)."""
    density = check_density(density)
    scorer = _SynFlowScorer(net, input_shape)
    keep = None
    mask = None
    for k in range(1, int(rounds) + 1):
        s = synflow_scores(net, input_shape, scope, keep=keep, _lin=scorer)
        if keep is not None:
            s = {n: torch.where(keep[n], v, torch.full_like(v, -1.0)) for n, v in s.items()}
        dk = density if k == rounds else density ** (k / rounds)
        tie_seed = core.derive_seed(seed, f"synflow-{k}")
        if min(min_layer_density, dk) > 0:
            mask = topk_mask(s, dk, seed=tie_seed, min_layer_density=min(min_layer_density, dk), meta=meta)
        else:
            mask = _synflow_topk(s, check_density(dk), tie_seed, meta=meta)
        keep = mask.keep
    return mask


def pai_scores(method: str, net, z, operator=None, y=None, *, seed: int = 0,
               scope: str = "weights") -> Dict[str, torch.Tensor]:
    """Keep-scores (keep the highest) for the one-shot methods (not ``synflow``, which is iterative)."""
    if method == "random":
        return random_scores(net, scope, seed)
    if method == "magnitude":
        return magnitude_scores(net, scope)
    if method == "snip":
        return snip_scores(net, z, operator, y, scope)
    if method == "grasp":
        return {k: -v for k, v in grasp_scores(net, z, operator, y, scope).items()}
    if method == "synflow":
        return synflow_scores(net, z.shape, scope)
    raise UserError(f"pruning-at-init method must be one of {PAI_METHODS}, got {method!r}")


def prune_at_init(method: str, net, z, operator, y, density: float, *, seed: int = 0,
                  scope: str = "weights", min_layer_density: float = 0.0, synflow_rounds: int = 100,
                  meta: Optional[dict] = None) -> Mask:
    """A pruning-at-init mask at ``theta_in`` (``net`` unchanged) keeping exactly ``round(density·d)``
    maskable weights. Always runs :func:`mri_oes.methods.collapse_report`; the report is stored in
    ``mask.meta["collapse"]`` and a collapse is printed to stderr as well as warned."""
    if method not in PAI_METHODS:
        raise UserError(f"pruning-at-init method must be one of {PAI_METHODS}, got {method!r}")
    density = check_density(density)
    m = dict(meta or {})
    m.update({"method": method, "scope": scope, "requested_density": density,
              "min_layer_density": min_layer_density, "pai_seed": seed,
              "sign_convention": "keep highest keep-score" + (" (= remove highest GraSP S = -theta*Hg)"
                                                               if method == "grasp" else "")})
    tie_seed = core.derive_seed(seed, "pai-ties")
    if method == "synflow":
        m["synflow_rounds"] = int(synflow_rounds)
        mask = synflow_mask(net, z.shape, density, rounds=synflow_rounds, scope=scope, seed=tie_seed,
                            min_layer_density=min_layer_density, meta=m)
    else:
        scores = pai_scores(method, net, z, operator, y, seed=seed, scope=scope)
        mask = topk_mask(scores, density, seed=tie_seed, min_layer_density=min_layer_density, meta=m)
    rep = report_collapse(net, z, operator, mask, what=f"{method} mask at density {density:g}")
    mask.meta["collapse"] = rep
    return mask


def report_collapse(net, z, operator, mask, what: str = "mask") -> dict:
    """:func:`methods.collapse_report` plus a console line on stderr when it fires."""
    rep = methods.collapse_report(net, z, operator, mask)   # finding1 leaves BN statistics untouched
    if rep["collapsed"]:
        print(f"WARNING: layer collapse for {what}: {len(rep['empty_layers'])} empty layer(s) "
              f"{rep['empty_layers'][:4]}{', constant output' if rep['constant_output'] else ''}",
              file=sys.stderr)
    return rep
