"""The masked-generator core: ONE fitting loop for every method.

    minimise  loss(A(G(theta ∘ m, z)), y)  [+ penalty]

Methods differ only in the :class:`Parametrization` — what is optimised and how the weights that
enter ``G`` are formed — never in the loop:

* :class:`TrainWeights` — dense DIP (no mask), Sparse-DIP / IMP rounds / pruning-at-init (fixed
  mask: the network sees ``theta ∘ m``, so pruned weights get zero gradient and stay at their init),
  GP-DIP (``sgld_std`` > 0: Gaussian noise added to the weights after each Adam step).
* :class:`ConcreteMask` — OES mask learning: ``theta_in`` frozen, Bernoulli logits ``v`` trained
  through Concrete (Gumbel-sigmoid) samples with a KL penalty to the prior ``p0 = density``.

The network is evaluated with :func:`torch.func.functional_call` on the masked tensors, so no copy
of the network is ever made (the authors' code deep-copies the net each step).
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
from torch.func import functional_call

from .masks import Mask, check_density, maskable_parameters
from .recipe import without_off_values


#: ``fit`` on the CPU feeds ``z`` in channels_last memory format (measured faster on the CPU; off on
#: GPUs, where it was not measured). Set to False to compare (the benchmark does).
CPU_CHANNELS_LAST = True


_CHANNELS_LAST_OK: Optional[bool] = None


def cpu_channels_last_ok() -> bool:
    """Whether this CPU's convolution backend gives channels_last convolutions the weight gradients it
    gives the float64 reference (checked once per process, a few ms). A network's first layer sees
    ``z``, which needs no gradient, so its backward computes the weight gradient alone; on one CI
    machine that layer's kept weights never moved in a channels_last fit (a backend's fault we could
    not reproduce here). Where they disagree, :func:`fit` feeds ``z`` contiguous and warns once."""
    global _CHANNELS_LAST_OK
    if _CHANNELS_LAST_OK is None:
        import torch.nn.functional as F
        gen = torch.Generator().manual_seed(0)
        ok = True
        # the hourglass's first layer (5x5, stride 1 and 2, reflection pad) and the deep decoder's (1x1)
        for cin, cout, k, stride, hw in ((32, 8, 5, 1, 64), (32, 8, 5, 2, 64), (64, 64, 1, 1, 16)):
            x = torch.rand(1, cin, hw, hw, generator=gen)
            w = torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5
            x = F.pad(x, (k // 2,) * 4, mode="reflect") if k > 1 else x
            out_hw = (x.shape[-1] - k) // stride + 1
            up = torch.randn(1, cout, out_hw, out_hw, generator=gen)

            def weight_grad(inp, dtype):
                wd = w.to(dtype).requires_grad_(True)
                (F.conv2d(inp.to(dtype), wd, stride=stride) * up.to(dtype)).sum().backward()
                return wd.grad.double() if wd.grad is not None else torch.zeros_like(w, dtype=torch.float64)

            ref = weight_grad(x, torch.float64)
            got = weight_grad(x.contiguous(memory_format=torch.channels_last), torch.float32)
            ok = ok and bool((got - ref).abs().max() <= 1e-3 * ref.abs().max())
        _CHANNELS_LAST_OK = ok
        if not ok:
            warnings.warn("this CPU's channels_last convolutions give wrong weight gradients (checked "
                          "against float64); fit feeds z contiguous (slower, correct)")
    return _CHANNELS_LAST_OK


def use_channels_last(z: torch.Tensor) -> bool:
    """:func:`fit` feeds ``z`` channels_last: a CPU 4-D input, where the backend
    checks out (:func:`cpu_channels_last_ok`)."""
    return CPU_CHANNELS_LAST and z.device.type == "cpu" and z.dim() == 4 and cpu_channels_last_ok()


#: ``fit(precision=...)``: the generator's forward (and so its backward) in this dtype under
#: ``torch.autocast``; parameters, Adam state, the operator and the loss stay float32.
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        from .errors import UserError
        raise UserError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")


#: ``fit(stop_rule=...)``: ``none`` (run every step), ``image-change`` (stop once the output changed
#: less than ``stop_tol`` throughout the last ``stop_patience`` steps), ``self-validation`` (stop once
#: the loss on held-out measurements has not improved for ``stop_patience`` steps) or ``discrepancy``
#: (stop once the residual on the caller's noise entries is down to ``discrepancy_tau`` times the noise's
#: own; see :func:`fit`)
STOP_RULES = ("none", "image-change", "self-validation", "discrepancy")


def check_stop_rule(stop_rule: str, stop_tol: float, stop_patience: int) -> None:
    from .errors import UserError
    if stop_rule not in STOP_RULES:
        raise UserError(f"--stop-rule must be one of {STOP_RULES}, got {stop_rule!r}")
    if not (stop_tol > 0 and math.isfinite(stop_tol)):
        raise UserError(f"--stop-tol must be a positive number, got {stop_tol!r}")
    if int(stop_patience) < 1:
        raise UserError(f"--stop-patience must be >= 1, got {stop_patience!r}")


def image_change(x: torch.Tensor, prev: torch.Tensor, steps: int) -> float:
    """Relative change ``||x - prev|| / ||x||`` of an output over ``steps`` steps, per 1,000 steps."""
    num = float(torch.linalg.vector_norm((x - prev).reshape(-1)))
    den = float(torch.linalg.vector_norm(x.reshape(-1)))
    return (num / den if den > 0 else math.inf) * 1000.0 / max(int(steps), 1)


def should_stop(history: List[dict], step: int, stop_tol: float, stop_patience: int) -> bool:
    """The ``image-change`` rule on the logged rows: every ``image_change`` logged over the last
    ``stop_patience`` steps (a window that the rows must cover back to its start) is below ``stop_tol``.
    A function of the logged rows only (the reference never enters), so a resumed run stops where
    an uninterrupted one does."""
    if step < stop_patience:
        return False
    rows = [h for h in history if h.get("image_change") is not None and step - stop_patience < h["step"] <= step]
    if not rows or min(h["step"] - h.get("image_change_over", 0) for h in rows) > step - stop_patience:
        return False
    return all(h["image_change"] < stop_tol for h in rows)


def discrepancy(pred: torch.Tensor, y: torch.Tensor, entries: Optional[torch.Tensor], noise_level: float) -> float:
    """The residual of ``pred`` on ``entries`` (0/1 broadcastable to ``y``; None: all) in :func:`data_loss`
    units (summed over those entries, divided by all of ``y``'s real entries), over ``noise_level``: the
    same quantity for measurement noise alone. 1 = the fit is down to the noise there."""
    d = pred - y if entries is None else (pred - y) * entries
    n_real = y.numel() * (2 if y.is_complex() else 1)
    return float(d.abs().pow(2).sum()) / n_real / noise_level


def holdout_loss(pred: torch.Tensor, y: torch.Tensor, holdout: torch.Tensor) -> float:
    """Relative squared error ``||h (pred - y)||² / ||h y||²`` on the held-out entries ``h`` (0/1)."""
    num = float(((pred - y) * holdout).abs().pow(2).sum())
    den = float((y * holdout).abs().pow(2).sum())
    return num / den if den > 0 else math.inf


def generation_context(precision: str, device: torch.device):
    """The autocast context of :func:`fit`'s generator passes (a no-op for ``float32``)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def derive_seed(seed: int, stream: str) -> int:
    """Independent, reproducible seeds from the one user seed: ``init``, ``z``, ``noise``, ``mask``..."""
    h = hashlib.sha256(f"{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def data_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all measurement entries (|.|² for complex data), as in the OES code;
    λ = 1e-9 of the KL term is calibrated for this per-entry mean."""
    d = pred - y
    if d.is_complex():
        d = torch.view_as_real(d)
    return d.pow(2).mean()


# ---------------------------------------------------------------------------------- parametrizations
class Parametrization:
    """What the loop optimises and which tensors replace the generator's parameters."""

    def trainable(self) -> List[torch.Tensor]:
        raise NotImplementedError

    def weights(self) -> Dict[str, torch.Tensor]:
        """``{param name: tensor}`` passed to ``functional_call`` for one forward pass."""
        raise NotImplementedError

    def penalty(self) -> torch.Tensor:
        return torch.zeros(())

    def after_step(self, lr: float) -> None:
        pass

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class TrainWeights(Parametrization):
    """Train ``theta`` of ``net`` (all parameters), the network seeing ``theta ∘ m`` when a mask is set.

    With a mask, a masked tensor is trained as the vector of its KEPT entries only (``theta[m]``):
    the network sees ``theta ∘ m`` rebuilt as zeros with the kept values scattered in (one write
    instead of a multiply each way), its gradient is gathered at the kept entries, and Adam updates
    only those. Per kept entry this is exactly the masked-gradient computation (Adam is elementwise;
    pruned entries had zero gradient and never moved), so the sparse step costs what the dense step
    costs (less Adam work). The kept values are written back into ``net``'s parameters after every
    step (checkpoints and the caller see the trained network); pruned entries of ``net`` are never
    touched (they stay at their init)."""

    def __init__(self, net: nn.Module, mask: Optional[Mask] = None, sgld_std: float = 0.0, seed: int = 0):
        self.net, self.sgld_std = net, float(sgld_std)
        self.params = dict(net.named_parameters())
        self.masks = {}
        self._idx, self._vals = {}, {}
        if mask is not None:
            mask.check_compatible(net)
            dev = next(net.parameters()).device
            # stored as 0/1 in the parameter's dtype once (not converted every step)
            self.masks = {k: m.to(dev, self.params[k].dtype) for k, m in mask.keep.items() if not m.all()}
            for k, m in self.masks.items():
                self._idx[k] = m.reshape(-1).nonzero().squeeze(1)
                self._vals[k] = self.params[k].detach().reshape(-1)[self._idx[k]].clone().requires_grad_(True)
        self._gen = None
        if self.sgld_std > 0:
            dev = next(net.parameters()).device
            self._gen = torch.Generator(device=dev).manual_seed(derive_seed(seed, "sgld"))

    def trainable(self):
        return [self._vals[k] if k in self._vals else p for k, p in self.params.items()]

    def weights(self):
        out = {}
        for k, v in self._vals.items():
            p = self.params[k]
            out[k] = torch.zeros(p.numel(), dtype=v.dtype, device=v.device).index_put_(
                (self._idx[k],), v).view(p.shape)
        return out

    @torch.no_grad()
    def _write_back(self):
        for k, v in self._vals.items():
            p = self.params[k]
            if p.is_contiguous():
                p.view(-1)[self._idx[k]] = v
            else:   # e.g. channels_last: boolean indexing enumerates entries in the same (logical) order
                p[self.masks[k].bool()] = v

    @torch.no_grad()
    def _read_back(self):
        for k, v in self._vals.items():
            v.copy_(self.params[k].detach().reshape(-1)[self._idx[k]])

    def after_step(self, lr):
        # GP-DIP / SGLD (Cheng et al. 2019, their code): conv/linear weights += N(0, sgld_std²) after
        # each step (their default std = 2·lr); pruned weights stay pruned.
        if self.sgld_std > 0:
            with torch.no_grad():
                for k in maskable_parameters(self.net, "weights"):
                    p = self.params[k]
                    noise = torch.randn(p.shape, generator=self._gen, device=p.device, dtype=p.dtype)
                    if k in self._vals:
                        self._vals[k].add_(noise.reshape(-1)[self._idx[k]], alpha=self.sgld_std)
                    else:
                        p.add_(noise, alpha=self.sgld_std)
        self._write_back()

    def state(self):
        return {"gen": self._gen.get_state()} if self._gen is not None else {}

    def load_state(self, state):
        if self._gen is not None and "gen" in state:
            self._gen.set_state(state["gen"])
        self._read_back()   # the checkpoint's network holds the trained kept values


class _ConcreteWeightFn(torch.autograd.Function):
    """``w = theta * sigmoid((v + logistic) / T)`` in one node; backward ``dv = g·theta·m(1−m)/T``
    (summed over a leading sample dimension when ``logistic`` has one). Saves ``m`` only: one pass
    over the weights each way instead of the ~8 elementwise nodes of the plain expression."""

    @staticmethod
    def forward(ctx, theta, v, logistic, temperature):
        m = torch.sigmoid((v + logistic) / temperature)
        ctx.save_for_backward(theta, m)
        ctx.temperature, ctx.v_shape = temperature, v.shape
        return theta * m

    @staticmethod
    def backward(ctx, g):
        theta, m = ctx.saved_tensors
        dv = g * theta * (m * (1 - m)) / ctx.temperature
        if dv.shape != ctx.v_shape:
            dv = dv.sum_to_size(ctx.v_shape)
        return None, dv, None, None


def _concrete_weight(theta, v, logistic, temperature):
    return _ConcreteWeightFn.apply(theta, v, logistic, temperature)


class _ConcreteKL(torch.autograd.Function):
    """``Σ KL(Bern(p) || Bern(p0))`` with ``p = sigmoid(v)``:
    ``KL = −softplus(v) − log(1 − p0) + p·(v − logit(p0))`` per entry (= ``p log(p/p0) + (1−p)
    log((1−p)/(1−p0))``), gradient ``p(1−p)(v − logit(p0))``: two transcendental passes instead of
    the five of the textbook expression."""

    @staticmethod
    def forward(ctx, v, p0):
        c = math.log(p0) - math.log1p(-p0)
        p = torch.sigmoid(v)
        d = v - c
        ctx.save_for_backward(p, d)
        return (p * d - nn.functional.softplus(v)).sum() - v.numel() * math.log1p(-p0)

    @staticmethod
    def backward(ctx, g):
        p, d = ctx.saved_tensors
        return g * (p * (1 - p) * d), None


class ConcreteMask(Parametrization):
    """OES mask learning (SPEC §4). Keep-probabilities ``p = sigmoid(v)``, ``v`` initialised at 0.
    Relaxed sample ``m̂ = sigmoid((v + g1 − g2) / T)``, ``g1, g2 ~ Gumbel(0, 1)`` (``v = log p − log(1−p)``).
    Penalty ``λ Σ KL(Bern(p) || Bern(p0))``. ``theta_in`` is frozen (no gradient)."""

    def __init__(self, net: nn.Module, density: float, temperature: float = 0.2, lam: float = 1e-9,
                 scope: str = "weights", seed: int = 0, batched_samples: Optional[bool] = None):
        self.net, self.p0 = net, check_density(density)
        # fit(samples=K > 1): K samples in one vmap pass instead of K passes. Default: on GPUs only
        # (on one CPU thread the K passes are FLOP-bound and the grouped convolutions were ~10%
        # slower for the OES net: benchmarks/core_speed.py); same result either way up to rounding.
        if batched_samples is None:
            from .vmap import supports_vmap
            batched_samples = next(net.parameters()).device.type != "cpu" and supports_vmap(net)
        self.batched_samples = bool(batched_samples)
        if not self.p0 < 1:
            raise ValueError("OES mask learning needs density < 1 (density 1 is the dense network)")
        self.temperature, self.lam, self.scope = float(temperature), float(lam), scope
        self.frozen = {k: p.detach() for k, p in maskable_parameters(net, scope).items()}
        for p in net.parameters():
            p.requires_grad_(False)
        self.logits = {k: torch.zeros_like(p, requires_grad=True) for k, p in self.frozen.items()}
        dev = next(net.parameters()).device
        self._gen = torch.Generator(device=dev).manual_seed(derive_seed(seed, "concrete"))

    def trainable(self):
        return list(self.logits.values())

    def probabilities(self) -> Dict[str, torch.Tensor]:
        return {k: torch.sigmoid(v.detach()) for k, v in self.logits.items()}

    def _logistic(self, v: torch.Tensor) -> torch.Tensor:
        """``g1 − g2`` for Gumbel ``g1, g2`` = ``logit(u)``, ``u ~ U(0, 1)`` clamped to [1e-7, 1 − 1e-7]."""
        u = torch.rand(v.shape, generator=self._gen, device=v.device, dtype=v.dtype)
        return torch.logit(u, eps=1e-7)

    def weights(self):
        return {k: _concrete_weight(self.frozen[k], v, self._logistic(v), self.temperature)
                for k, v in self.logits.items()}

    def sample_weights(self, samples: int) -> Dict[str, torch.Tensor]:
        """``samples`` independent draws of :meth:`weights` stacked on a new leading dimension
        ``(K, *shape)``; the generator is consumed in exactly the order of ``samples`` calls of
        :meth:`weights`, so the batched pass sees the same masks as the loop."""
        noise = {k: [] for k in self.logits}
        for _ in range(samples):
            for k, v in self.logits.items():
                noise[k].append(self._logistic(v))
        return {k: _concrete_weight(self.frozen[k], v, torch.stack(noise[k]), self.temperature)
                for k, v in self.logits.items()}

    def forward_samples(self, net: nn.Module, z: torch.Tensor, samples: int) -> torch.Tensor:
        """``G`` under ``samples`` independent Concrete masks in ONE batched pass (``torch.func.vmap``
        over the sample dimension: grouped convolutions; BatchNorm statistics per sample, exactly as
        ``samples`` separate passes). Returns ``(samples, *G(z).shape)``."""
        from .vmap import vmap_forward
        return vmap_forward(net, self.sample_weights(samples), z, z_batched=False, sequential_bn=True)

    def penalty(self):
        # KL(Bern(p) || Bern(p0)) summed, value and gradient fused (see _ConcreteKL)
        kl = 0.0
        for v in self.logits.values():
            kl = kl + _ConcreteKL.apply(v, self.p0)
        return self.lam * kl

    def state(self):
        return {"logits": {k: v.detach().cpu() for k, v in self.logits.items()}, "gen": self._gen.get_state()}

    def load_state(self, state):
        with torch.no_grad():
            for k, v in state["logits"].items():
                self.logits[k].copy_(v)
        self._gen.set_state(state["gen"])


# -------------------------------------------------------------------------------------------- loop
@dataclass
class FitResult:
    """What a fit returns. ``output``/``best_output``: operator-domain images (CPU tensors)."""

    history: List[dict] = field(default_factory=list)
    output: Optional[torch.Tensor] = None
    best_output: Optional[torch.Tensor] = None
    #: with ``output_average`` > 0: ``output``/``final_metrics`` are the averaged iterates and these
    #: the raw last iterate (else None / empty)
    last_output: Optional[torch.Tensor] = None
    last_metrics: dict = field(default_factory=dict)
    best_step: Optional[int] = None
    best_metrics: dict = field(default_factory=dict)
    final_metrics: dict = field(default_factory=dict)
    steps: int = 0
    wall_time_s: float = 0.0
    diverged: bool = False
    resumed_from: Optional[int] = None
    #: the step the stopping rule ended the fit at (None: it ran every step); ``steps`` is then this step
    stopped_at: Optional[int] = None
    stop_rule: str = "none"
    #: ``self-validation``: the logged step whose output had the lowest held-out loss (the output)
    holdout_best_step: Optional[int] = None

    def summary(self) -> dict:
        return {"steps": self.steps, "wall_time_s": self.wall_time_s, "best_step": self.best_step,
                "final": self.final_metrics, "best": self.best_metrics, "diverged": self.diverged,
                "final_loss": self.history[-1]["loss"] if self.history else None,
                "resumed_from": self.resumed_from, "stopped_at": self.stopped_at, "stop_rule": self.stop_rule,
                "holdout_best_step": self.holdout_best_step}


def generate(net: nn.Module, z: torch.Tensor, weights: Optional[Dict[str, torch.Tensor]] = None):
    """``G(theta', z)`` with ``weights`` replacing the named parameters (no copy of the network)."""
    return functional_call(net, weights or {}, (z,), strict=False) if weights else net(z)


# ------------------------------------------------------------------------------- checkpoint identity
def checkpoint_path(path) -> Path:
    """The state file a checkpoint argument names: ``X.pt`` → ``X.safetensors`` (pickles are never
    written or read), anything else unchanged."""
    path = Path(path)
    return path.with_suffix(".safetensors") if path.suffix == ".pt" else path


def _operator_identity(op) -> dict:
    from .statefile import canonical, tensor_digest
    d = {"describe": canonical(op.describe()) if hasattr(op, "describe") else type(op).__name__}
    tens = {k: tensor_digest(v) for k, v in sorted(vars(op).items()) if isinstance(v, torch.Tensor)}
    if tens:
        d["tensors"] = tens
    subs = getattr(op, "ops", None)
    if isinstance(subs, (list, tuple)):
        d["ops"] = [_operator_identity(o) for o in subs]
    return d


def _param_identity(param) -> dict:
    from .statefile import tensor_digest
    d = {"type": type(param).__name__}
    for k in ("sgld_std", "p0", "temperature", "lam", "scope"):
        if hasattr(param, k):
            d[k] = getattr(param, k)
    masks = getattr(param, "masks", None)
    if isinstance(masks, dict):
        d["mask"] = tensor_digest({k: v.to(torch.bool) for k, v in masks.items()}) if masks else None
    return d


def fit_identity(extra=None, fingerprint: str = "", *, net, z, operator, y, param, **hyper) -> dict:
    """Everything that determines a fit's result, for its checkpoint: digests of the initial network
    state (generator config + init seed, or IMP rewind weights), ``z``, ``y``, the operator (its
    description and tensors) and the mask; every hyperparameter in ``hyper``; device type; versions;
    and the caller's ``extra`` (a dict, e.g. method/task/data file digest) or legacy ``fingerprint``."""
    from . import __version__
    from .statefile import canonical, tensor_digest
    ident = {"kind": "mri_oes.fit", "init": tensor_digest(dict(net.state_dict())), "z": tensor_digest(z),
             "y": tensor_digest(y), "operator": _operator_identity(operator), "param": _param_identity(param),
             "hyper": canonical(hyper), "device": z.device.type,
             "versions": {"torch": torch.__version__, "mri_oes": __version__}}
    if isinstance(extra, str):   # backward compatibility: a fingerprint string
        fingerprint, extra = fingerprint or extra, None
    if fingerprint:
        ident["fingerprint"] = str(fingerprint)
    if extra:
        ident["run"] = canonical(extra)
    return ident


def cosine_lr(step: int, steps: int, lr: float, lr_final: float, decay_start: float = 0.0) -> float:
    """The learning rate of ``step`` (of ``steps``): ``lr`` until ``decay_start · steps``, then a cosine
    decay that reaches ``lr_final`` at the end."""
    start = int(round(decay_start * steps))
    t = max(step - start, 0) / max(steps - start, 1)
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * t))


#: where :func:`fit` reports its steps when it runs in a Ray worker (no terminal there):
#: ``callable(desc, step, total)``, set by :func:`mri_oes.parallel.run_tasks` around each task; None here
STEP_REPORTER: Optional[Callable] = None


def _sampled_loss(net, zin, operator, y, param: Parametrization, samples: int, precision: str, dtype, keep=None):
    """``(last output, data loss averaged over the samples)`` of one step: ``samples`` passes of ``G`` (K
    Concrete-mask samples in one batched pass where the parametrization offers it: same masks, same
    per-sample BatchNorm statistics as the loop), each output cast back to ``dtype`` before the operator.
    ``keep`` (0/1, broadcastable to ``y``): the entries the loss sees (``y`` already zero elsewhere)."""
    dl = 0.0
    if samples > 1 and getattr(param, "batched_samples", False):
        with generation_context(precision, zin.device):
            outs = param.forward_samples(net, zin, samples)
    else:
        outs = []
        for _ in range(samples):
            with generation_context(precision, zin.device):
                outs.append(generate(net, zin, param.weights()))
    x_hat = None
    for out in outs:
        x_hat = operator.from_network(out.to(dtype))
        pred = operator(x_hat)
        dl = dl + data_loss(pred if keep is None else pred * keep, y) / samples
    return x_hat, dl


def _resume(ck: dict, net, opt, param: Parametrization, noise_gen, log: "_FitLog") -> int:
    """Load a checkpoint's state into the fit; returns the step to continue from."""
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["opt"])
    param.load_state(ck["param"])
    noise_gen.set_state(ck["noise_gen"])
    log.load(ck)
    log.res.resumed_from = int(ck["step"])
    return log.res.resumed_from


class _FitLog:
    """What a fit logs and keeps besides the weights: the logged rows (losses, the image change since
    the previous row, ``evaluate``'s metrics of the output and of the running average), the oracle best
    output, and the running average of the outputs (``decay`` > 0); with ``holdout`` (0/1 over ``y``'s
    entries) the held-out loss of the output per row and the output with the lowest one; with ``noise``
    (``(entries, level)``) the raw iterate's :func:`discrepancy` per row."""

    def __init__(self, res: "FitResult", evaluate: Optional[Callable], callback: Optional[Callable],
                 decay: float, device, operator=None, y=None, holdout=None, noise=None):
        self.res, self.evaluate, self.callback, self.decay, self.device = res, evaluate, callback, decay, device
        self.operator, self.y, self.holdout, self.noise = operator, y, holdout, noise
        self.keep = None if holdout is None else 1.0 - holdout   # the entries the data loss sees
        self.t0 = time.perf_counter()
        self.avg = None                                   # running average of the outputs
        self.change = {"x": None, "step": None}          # the output at the previous logged row
        self.held = {"loss": math.inf, "step": None, "x": None}   # lowest holdout_loss, its step and output

    def fit_loss(self, pred, y) -> float:
        """The data loss of ``pred`` on the entries the fit sees (``y`` zero on the held-out ones)."""
        return float(data_loss(pred if self.keep is None else pred * self.keep, y))

    def average(self, x_hat: torch.Tensor, step: int) -> None:
        if self.decay > 0:
            xd = x_hat.detach()
            # bias-corrected EMA (as Adam's moments): iterate i of n weighs d^(n-i)(1-d)/(1-d^n), so a
            # short run is not dominated by the random-init output; long runs: the plain EMA
            w = (1 - self.decay) / (1 - self.decay ** (step + 1))
            self.avg = xd.clone() if self.avg is None else self.avg.add_(xd - self.avg, alpha=w)

    def record(self, step, loss, dloss, x_hat) -> dict:
        res, change = self.res, self.change
        # time_s: seconds since this call started (a resumed run's clock restarts at the resume)
        row = {"step": step, "loss": loss, "data_loss": dloss, "time_s": time.perf_counter() - self.t0}
        cur = (self.avg if self.avg is not None else x_hat).detach()
        if change["x"] is not None and step > change["step"]:
            row["image_change"] = image_change(cur, change["x"], step - change["step"])
            row["image_change_over"] = step - change["step"]
        if change["step"] is None or step > change["step"]:
            change["x"], change["step"] = cur.clone(), step
        if self.noise is not None:   # the raw iterate, whose residual data_loss reports
            with torch.no_grad():
                row["discrepancy"] = discrepancy(self.operator(x_hat.detach()), self.y, *self.noise)
        if self.holdout is not None:
            with torch.no_grad():
                row["holdout_loss"] = holdout_loss(self.operator(cur), self.y, self.holdout)
            if row["holdout_loss"] < self.held["loss"]:
                self.held.update(loss=row["holdout_loss"], step=step, x=cur.cpu().clone())
        if self.evaluate is not None:
            with torch.no_grad():
                m = self.evaluate(x_hat.detach())
            row.update(m)
            out_m, out_x = m, x_hat   # what the fit would return if it stopped here
            if self.avg is not None:
                with torch.no_grad():
                    out_m, out_x = self.evaluate(self.avg), self.avg
                row.update({f"average_{k}": v for k, v in out_m.items()})
            if "psnr" in out_m and (res.best_step is None or
                                    out_m["psnr"] > res.best_metrics.get("psnr", -math.inf)):
                res.best_step, res.best_metrics = step, dict(out_m)
                res.best_output = out_x.detach().cpu().clone()
        res.history.append(row)
        if self.callback is not None:
            self.callback(row)
        return row

    def state(self) -> dict:
        res = self.res
        return {"history": res.history, "best_step": res.best_step, "best_metrics": res.best_metrics,
                "best_output": res.best_output, "average_output": self.avg, "change_output": self.change["x"],
                "change_step": self.change["step"], "holdout_best_output": self.held["x"],
                "holdout_best_step": self.held["step"],
                "holdout_best_loss": self.held["loss"] if self.held["x"] is not None else None}

    def load(self, ck: dict) -> None:
        res = self.res
        res.history, res.best_step, res.best_metrics = ck["history"], ck["best_step"], ck["best_metrics"]
        res.best_output = ck["best_output"]
        avg = ck.get("average_output")
        self.avg = avg.to(self.device) if avg is not None else None
        if ck.get("change_output") is not None:
            self.change = {"x": ck["change_output"].to(self.device), "step": int(ck["change_step"])}
        if ck.get("holdout_best_output") is not None:
            self.held = {"loss": float(ck["holdout_best_loss"]), "step": int(ck["holdout_best_step"]),
                         "x": ck["holdout_best_output"]}

    def finish(self, net, z, operator, y, param: Parametrization, precision: str, end: int,
               select_held_out: bool = False):
        """The final iterate (the trained parameters' output, one more forward, no update) logged at
        ``end``; with a running average, that average is the fit's output and ``final_metrics``, the raw
        last iterate kept beside; with held-out measurements and ``select_held_out``, the output logged
        with the lowest held-out loss. Returns the output. ``y``: what the data loss sees."""
        res = self.res
        with torch.no_grad():
            with generation_context(precision, z.device):
                out = generate(net, z, param.weights())
            x_hat = operator.from_network(out.to(z.dtype))
            final_loss = self.fit_loss(operator(x_hat), y)
        row = self.record(end, final_loss + float(param.penalty().detach()), final_loss, x_hat)
        res.final_metrics = {k: v for k, v in row.items()
                             if k not in ("step", "image_change", "image_change_over") and not k.startswith("average_")}
        res.holdout_best_step = self.held["step"] if self.holdout is not None else None
        if self.avg is not None:
            held_avg = res.final_metrics.pop("holdout_loss", None)   # the row's is the average's
            res.last_output, res.last_metrics = x_hat.detach().cpu(), res.final_metrics
            with torch.no_grad():
                avg_loss = self.fit_loss(operator(self.avg), y)
            res.final_metrics = {"loss": avg_loss + float(param.penalty().detach()), "data_loss": avg_loss,
                                 **({"holdout_loss": held_avg} if held_avg is not None else {}),
                                 **{k[len("average_"):]: v for k, v in row.items() if k.startswith("average_")}}
            x_hat = self.avg
        if not select_held_out or self.held["x"] is None or self.held["step"] == end:
            return x_hat
        # the output with the lowest held-out loss (the one logged at that step)
        if res.last_output is None:
            res.last_output, res.last_metrics = x_hat.detach().cpu(), res.final_metrics
        x_hat = self.held["x"].to(z.device)
        with torch.no_grad():
            sel_loss = self.fit_loss(operator(x_hat), y)
            sel_m = self.evaluate(x_hat) if self.evaluate is not None else {}
        res.final_metrics = {"loss": sel_loss + float(param.penalty().detach()), "data_loss": sel_loss,
                             "holdout_loss": self.held["loss"], **sel_m}
        return x_hat


def fit(net: nn.Module, z: torch.Tensor, operator, y: torch.Tensor, param: Parametrization, *,
        steps: int, lr: float = 1e-2, samples: int = 1, evaluate: Optional[Callable] = None,
        log_every: int = 50, input_noise_std: float = 0.0, seed: int = 0,
        checkpoint: Optional[Path] = None, checkpoint_every: int = 500, fingerprint: str = "",
        identity: Optional[dict] = None,
        progress: bool = False, desc: str = "fit", callback: Optional[Callable] = None,
        lr_final: Optional[float] = None, lr_decay_start: float = 0.0, grad_clip: float = 0.0,
        output_average: float = 0.0, precision: str = "float32", stop_rule: str = "none",
        stop_tol: float = 0.05, stop_patience: int = 500,
        holdout: Optional[torch.Tensor] = None, noise_level: Optional[float] = None,
        noise_entries: Optional[torch.Tensor] = None, discrepancy_tau: float = 1.1) -> FitResult:
    """Fit ``operator(G(·, z)) ≈ y`` with Adam for ``steps`` steps.

    ``evaluate(x_hat) -> dict`` (optional; e.g. PSNR against a clean reference) is called every
    ``log_every`` steps and at the end on the current output; it never influences the fit. The output
    with the highest ``evaluate()["psnr"]`` is kept as ``best_output`` (oracle early stop, for reporting
    only; with ``output_average`` the output compared is the running average). ``checkpoint``: a state
    file (:mod:`mri_oes.statefile`, safetensors + JSON; a ``.pt`` name is mapped to ``.safetensors``, an
    old pickle there is never loaded) to save progress to every ``checkpoint_every`` steps and resume
    from. Its identity (:func:`fit_identity`: digests of the initial weights, ``z``, ``y``, the operator
    and the mask, every hyperparameter, seed, versions, plus the caller's ``identity`` dict / legacy
    ``fingerprint`` string) must match exactly, else :class:`mri_oes.errors.RunMismatch` names the
    differing keys. ``input_noise_std``: LIP/DIP input-noise regularisation (``z + N(0, std²)`` each
    step). ``samples``: K forward passes per step (OES K).
    ``lr_final``: cosine decay of the learning rate from ``lr`` to ``lr_final`` over ``steps``
    (``None``: constant); ``lr_decay_start`` in [0, 1): the decay starts after this fraction of the
    steps (constant ``lr`` before; 0: over the whole run). ``grad_clip`` > 0: clip the global gradient
    norm to it before each step.
    ``output_average`` in (0, 1): also keep the exponential moving average of the outputs
    (``avg <- d·avg + (1-d)·x``, the smoothing of the original DIP code, d = 0.99 there, with Adam's bias
    correction: iterate ``i`` of ``n`` weighs ``d^(n-i)(1-d)/(1-d^n)``, so the first iterates do not
    dominate a short run): it becomes
    the fit's ``output`` and ``final_metrics`` (the raw last iterate moves to ``last_output`` /
    ``last_metrics``); logged rows carry ``average_<metric>`` beside each metric of the raw iterate.
    ``precision``: ``float32`` (the default: nothing changes) or ``bfloat16`` (the generator under
    ``torch.autocast``, its output cast back to ``z``'s dtype before the operator; ~1.9x faster per step
    on a CPU with AVX-512 BF16 for the MRI deep decoder, ``benchmarks/precision.py``; the trajectory
    differs from float32 by bf16 rounding).
    Every logged row carries ``image_change``: the relative change of the output (the running average
    with ``output_average``) since the previous logged row, per 1,000 steps (``image_change_over``: the
    steps it spans). ``stop_rule``: ``none`` (all ``steps``) or ``image-change`` — stop at the first logged
    step where every ``image_change`` of the last ``stop_patience`` steps is below ``stop_tol``; the
    output is then the (averaged) output at that step, ``steps``/``stopped_at`` that step. The rule sees
    the network output only, never ``evaluate`` or a reference (ground-truth free).
    ``holdout``: 0/1 tensor broadcastable to ``y`` (1 = a held-out measurement): the data loss uses the
    other entries only, and every logged row carries ``holdout_loss`` (:func:`holdout_loss` of the
    output, the running average with ``output_average``). ``stop_rule`` ``self-validation`` (needs
    ``holdout``): stop at the first logged step ``stop_patience`` or more steps after the lowest
    ``holdout_loss`` so far; the output (and ``final_metrics``) is then the output logged at that lowest
    step (``holdout_best_step``), also when the rule never fired. ``stop_tol`` is not used by it.
    ``noise_level`` (> 0, :func:`data_loss` units) with ``noise_entries`` (0/1 broadcastable to ``y``; None:
    all entries): what measurement noise alone contributes to the data loss on those entries, from the
    caller's estimate (the measurements only, never a reference); every logged row then carries
    ``discrepancy`` (:func:`discrepancy`: the raw iterate's residual on those entries over that level).
    ``stop_rule`` ``discrepancy`` (needs ``noise_level``; the discrepancy principle): stop at the first
    logged step whose ``discrepancy`` is at most ``discrepancy_tau``; the output is then the (averaged)
    output at that step, as with ``image-change``. It reads the logged rows only (resumable).
    """
    check_precision(precision)
    check_stop_rule(stop_rule, stop_tol, stop_patience)
    if stop_rule == "self-validation" and holdout is None:
        raise ValueError("stop_rule 'self-validation' needs held-out measurements (holdout)")
    if stop_rule == "discrepancy" and noise_level is None:
        raise ValueError("stop_rule 'discrepancy' needs the measurements' noise level (noise_level)")
    if noise_level is not None and not (noise_level > 0 and math.isfinite(noise_level)):
        raise ValueError(f"noise_level must be a positive number, got {noise_level!r}")
    if not (discrepancy_tau > 0 and math.isfinite(discrepancy_tau)):
        raise ValueError(f"discrepancy_tau must be a positive number, got {discrepancy_tau!r}")
    noise = None
    if noise_level is not None:
        noise = (None if noise_entries is None else noise_entries.to(device=y.device, dtype=y.real.dtype),
                 float(noise_level))
    y_fit = y
    if holdout is not None:
        holdout = holdout.to(device=y.device, dtype=y.real.dtype)
        y_fit = y * (1.0 - holdout)   # the data loss sees the other entries only
    if not 0.0 <= output_average < 1.0:
        raise ValueError(f"output_average must be in [0, 1), got {output_average}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not 0.0 <= lr_decay_start < 1.0:
        raise ValueError(f"lr_decay_start must be in [0, 1), got {lr_decay_start}")
    net.train()   # DIP/OES use batch statistics throughout (batch of one)
    opt = torch.optim.Adam(param.trainable(), lr=lr)
    res = FitResult()
    noise_gen = torch.Generator(device=z.device).manual_seed(derive_seed(seed, "input-noise"))
    start = 0
    log = _FitLog(res, evaluate, callback, output_average, z.device, operator, y, holdout, noise)
    ck_path = ck_ident = None
    if checkpoint is not None:
        from .statefile import load_state, tensor_digest
        ck_path = checkpoint_path(checkpoint)
        ck_ident = fit_identity(identity, fingerprint, net=net, z=z, operator=operator, y=y, param=param,
                                steps=steps, lr=lr, samples=samples, log_every=log_every,
                                input_noise_std=input_noise_std, seed=seed, lr_final=lr_final,
                                grad_clip=grad_clip, output_average=output_average,
                                **without_off_values({"lr_decay_start": lr_decay_start, "precision": precision,
                                                      "stop_rule": stop_rule, "stop_tol": float(stop_tol),
                                                      "stop_patience": int(stop_patience)}),
                                **({"holdout": tensor_digest(holdout)} if holdout is not None else {}),
                                **({"noise_level": float(noise_level), "discrepancy_tau": float(discrepancy_tau),
                                    "noise_entries": None if noise_entries is None else tensor_digest(noise_entries)}
                                   if noise_level is not None else {}))
        legacy = ck_path.with_suffix(".pt")
        if legacy.is_file():
            warnings.warn(f"ignoring {legacy}: pickled checkpoints are never loaded (they can run code); "
                          f"this run checkpoints to {ck_path.name}")
        if ck_path.is_file():
            # identity checked from the header before any tensor is read; mismatch -> RunMismatch
            start = _resume(load_state(ck_path, ck_ident, what="checkpoint"), net, opt, param, noise_gen, log)

    def save_checkpoint(step):
        from .statefile import save_state
        save_state(ck_path, {"step": step, "net": net.state_dict(), "opt": opt.state_dict(),
                             "param": param.state(), "noise_gen": noise_gen.get_state(), **log.state()}, ck_ident)

    if use_channels_last(z):
        # oneDNN then keeps every activation in NHWC: ~14% less time per step on the CPU for dense,
        # Sparse-DIP and OES steps alike (benchmarks/core_speed.py); same values up to rounding
        z = z.contiguous(memory_format=torch.channels_last)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc=desc, leave=False, dynamic_ncols=True)
    x_hat, loss_v = None, float("nan")
    reported = 0.0
    for step in range(start, steps):
        opt.zero_grad(set_to_none=True)
        zin = z if input_noise_std <= 0 else \
            z + input_noise_std * torch.randn(z.shape, generator=noise_gen, device=z.device, dtype=z.dtype)
        x_hat, dl = _sampled_loss(net, zin, operator, y_fit, param, samples, precision, z.dtype, log.keep)
        log.average(x_hat, step)
        loss = dl + param.penalty().to(dl.device)
        loss_v, dl_v = float(loss.detach()), float(dl.detach())
        if not math.isfinite(loss_v):
            res.diverged = True
            warnings.warn(f"{desc}: loss became {loss_v} at step {step}; stopping")
            log.record(step, loss_v, dl_v, x_hat)
            break
        if step % log_every == 0:
            row = log.record(step, loss_v, dl_v, x_hat)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "psnr")})
            if stop_rule == "image-change" and should_stop(res.history, step, stop_tol, stop_patience):
                res.stopped_at = step   # before this step's update: the output is the one just logged
                break
            if stop_rule == "discrepancy" and row["discrepancy"] <= discrepancy_tau:
                res.stopped_at = step   # as image-change: the output is the one just logged
                break
            held_step = log.held["step"]
            if stop_rule == "self-validation" and held_step is not None and step - held_step >= stop_patience:
                res.stopped_at = step   # the output is the one logged at held_step
                break
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(param.trainable(), grad_clip)
        if lr_final is not None:
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, steps, lr, lr_final, lr_decay_start)
        opt.step()
        param.after_step(lr)
        if bar is not None:
            bar.update(1)
        elif STEP_REPORTER is not None and time.monotonic() - reported > 1.0:
            reported = time.monotonic()
            STEP_REPORTER(desc, step + 1, steps)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            save_checkpoint(step + 1)
    if bar is not None:
        bar.close()
    end = res.stopped_at if res.stopped_at is not None else steps
    res.stop_rule = stop_rule
    if not res.diverged:
        x_hat = log.finish(net, z, operator, y_fit, param, precision, end,
                           select_held_out=stop_rule == "self-validation")
    res.output = x_hat.detach().cpu() if x_hat is not None else None
    res.steps = end
    res.wall_time_s = time.perf_counter() - log.t0
    if ck_path is not None and ck_path.is_file():
        ck_path.unlink()   # finished: the result files replace the checkpoint
    return res
