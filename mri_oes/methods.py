"""Methods as recipes on the core: they differ only in the mask source and what is optimised.

* :func:`learn_oes_mask` — OES: train Concrete mask logits at frozen ``theta_in``, rank globally.
* :func:`train_generator` — dense DIP (``mask=None``), Sparse-DIP (OES mask), IMP rounds,
  pruning-at-init masks, GP-DIP (``sgld_std``), deep decoder / ConvDecoder (another generator config).
* :func:`finding1` — ``G(theta_in ∘ m*, z)`` with no training (OES Finding 1).
* :func:`setup_generator` — the seeded ``(net, z)`` every method starts from.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Optional, Sequence

import torch

from . import core
from .generators import GeneratorConfig, build_generator, make_input
from .masks import Mask, check_density, topk_mask
from .metrics import image_metrics


def setup_generator(cfg: GeneratorConfig, image_hw: Sequence[int], seed: int, device=None):
    """``(net, z, seeds)``: init and ``z`` drawn from streams derived from the one ``seed``."""
    seeds = {"seed": int(seed), "init_seed": core.derive_seed(seed, "init"), "z_seed": core.derive_seed(seed, "z")}
    net = build_generator(cfg, seeds["init_seed"], image_hw, device=device)
    z = make_input(cfg, image_hw, seeds["z_seed"], device=device)
    return net, z, seeds


def natural_evaluator(reference: torch.Tensor, data_range: float = 1.0) -> Callable:
    """``evaluate(x_hat)`` for natural images: PSNR/SSIM of the clipped output vs a clean reference."""
    ref = reference.detach().cpu().numpy().astype("float64")
    if ref.ndim == 4:
        ref = ref[0]

    def evaluate(x_hat):
        x = x_hat.detach().cpu().clamp(0, data_range)[0].numpy().astype("float64")
        m = image_metrics(x, ref, data_range)
        return {"psnr": m["psnr"], "ssim": m["ssim"], "nmse": m["nmse"]}

    return evaluate


def output_is_constant(x: torch.Tensor, rel_tol: float = 1e-4) -> bool:
    """Layer collapse shows as a (spatially) constant output."""
    x = x.detach().float() if not x.is_complex() else x.detach().abs()
    spread = (x.amax(dim=(-2, -1)) - x.amin(dim=(-2, -1))).max()
    return bool(spread <= rel_tol * max(float(x.abs().max()), 1e-12))


def collapse_report(net, z, operator, mask: Optional[Mask]) -> dict:
    """Layer-collapse check of ``G(theta ∘ m, z)``: layers with no kept weight and constant output."""
    layers = mask.collapsed_layers() if mask is not None else []
    with torch.no_grad():
        x = finding1(net, z, operator, mask)
    const = output_is_constant(x)
    rep = {"collapsed": bool(layers) or const, "empty_layers": layers, "constant_output": const}
    if rep["collapsed"]:
        warnings.warn(f"LAYER COLLAPSE: {len(layers)} layer(s) keep no weight"
                      f"{' and the masked network outputs a constant image' if const else ''}; "
                      "the sparse network cannot represent an image (try a higher density or "
                      "min_layer_density)")
    return rep


def finding1(net, z, operator, mask: Optional[Mask]) -> torch.Tensor:
    """``G(theta_in ∘ m, z)`` without training (operator domain, on the CPU)."""
    param = core.TrainWeights(net, mask)
    with train_mode_preserving_buffers(net), torch.no_grad():
        x = operator.from_network(core.generate(net, z, param.weights()))
    return x.cpu()


@contextlib.contextmanager
def train_mode_preserving_buffers(net):
    """Run ``net`` in train mode (batch statistics, as DIP does) and restore its BN running
    statistics and mode afterwards, so probing ``theta_in`` never changes it."""
    saved = {k: b.detach().clone() for k, b in net.named_buffers()}
    was_training = net.training
    net.train()
    try:
        yield net
    finally:
        with torch.no_grad():
            for k, b in net.named_buffers():
                b.copy_(saved[k])
        net.train(was_training)


def learn_oes_mask(net, z, operator, y, density: float, *, steps: int, lr: float = 1e-2,
                   temperature: float = 0.2, lam: float = 1e-9, samples: int = 1,
                   scope: str = "weights", min_layer_density: float = 0.0, seed: int = 0,
                   meta: Optional[dict] = None, progress: bool = False, log_every: int = 100,
                   checkpoint=None, fingerprint: str = "", identity: Optional[dict] = None,
                   checkpoint_every: int = 500, precision: str = "float32", holdout=None):
    """OES (SPEC §4): returns ``(mask, fit_result)``. ``net`` holds ``theta_in`` (left unchanged).
    The final mask keeps the top ``density·d`` weights by keep-probability, ranked globally
    (``min_layer_density``: optional per-layer floor against layer collapse). ``checkpoint``: a state
    file to resume mask learning from (see :func:`mri_oes.core.fit`; ``identity`` names the run).
    ``holdout``: measurements left out of the data loss (:func:`mri_oes.core.fit`)."""
    check_density(density)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    param = core.ConcreteMask(net, density, temperature=temperature, lam=lam, scope=scope, seed=seed)
    res = core.fit(net, z, operator, y, param, steps=steps, lr=lr, samples=samples, seed=seed,
                   log_every=log_every, progress=progress, desc="OES mask", checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, fingerprint=fingerprint,
                   identity={"what": "oes-mask", **(identity or {})}, precision=precision, holdout=holdout)
    # theta_in is frozen, but BN running statistics moved during learning: restore them exactly
    net.load_state_dict(state)
    for p in net.parameters():
        p.requires_grad_(True)
    probs = param.probabilities()
    m = dict(meta or {})
    m.update({"method": "oes", "scope": scope, "steps": steps, "lr": lr, "temperature": temperature,
              "lambda": lam, "samples": samples, "min_layer_density": min_layer_density,
              "requested_density": density, "final_data_loss": res.history[-1]["data_loss"] if res.history else None})
    mask = topk_mask(probs, density, seed=core.derive_seed(seed, "ties"),
                     min_layer_density=min_layer_density, meta=m)
    return mask, res


def train_generator(net, z, operator, y, *, mask: Optional[Mask] = None, sgld_std: float = 0.0, seed: int = 0,
                    **fit_options) -> core.FitResult:
    """Train the weights of ``G(theta ∘ m, z)`` (dense when ``mask`` is None; ``sgld_std`` > 0: GP-DIP
    weight noise); ``fit_options`` are :func:`core.fit`'s (``steps``, ``lr``, the schedule, the stopping
    rule ..., e.g. a recipe's :meth:`~mri_oes.recipe.Recipe.fit_options`)."""
    param = core.TrainWeights(net, mask, sgld_std=sgld_std, seed=seed)
    return core.fit(net, z, operator, y, param, seed=seed, **fit_options)
