"""A reconstruction problem: everything a method needs besides the generator.

``operator`` (any :class:`operators.LinearOperator`), measurements ``y``, the image grid ``image_hw``,
an optional ``evaluate(x_hat) -> dict`` against a reference (never used by the fit),
``to_display(x_hat) -> ndarray`` for PNGs (CHW/HW float in [0, 1]), and an optional
``holdout(fraction, seed) -> tensor`` choosing the measurements the ``self-validation`` stopping rule
holds out (0/1, broadcastable to ``y``; MRI: measured phase-encode lines), and an optional ``noise() ->
{"level", "entries", "sigma2", ...}``: the measurements' noise for the ``discrepancy`` stopping rule
(:meth:`mri_oes.mri.problem.MRIProblem.noise`). Natural-image tasks are built
here; MRI problems come from :mod:`mri_oes.mri.problem`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

import operators as O

from .errors import UserError

TASKS = ("denoise", "inpaint", "super-resolution")


@dataclass
class Problem:
    operator: O.LinearOperator
    y: torch.Tensor
    image_hw: tuple
    evaluate: Optional[Callable] = None
    reference: Optional[torch.Tensor] = None
    kind: str = "natural"
    info: dict = field(default_factory=dict)
    to_display: Optional[Callable] = None
    measurements_display: Optional[np.ndarray] = None
    holdout: Optional[Callable] = None
    noise: Optional[Callable] = None

    @property
    def out_channels(self) -> int:
        return self.operator.network_channels

    @property
    def n_measurements(self) -> int:
        return measurement_count(self.operator)

    def to(self, device):
        self.operator.to(device)
        self.y = self.y.to(device)
        return self


def measurement_count(operator: O.LinearOperator) -> int:
    """Real-valued numbers actually measured: nonzero entries of ``A(u)`` for a seeded random ``u``
    (unobserved pixels and unsampled k-space excluded; complex entries count twice). A random input,
    not ones: for maps-free coil images ``A(1)`` is non-zero only at the k-space centre."""
    g = torch.Generator().manual_seed(0)
    u = torch.rand(operator.in_shape, generator=g, dtype=torch.float64) + 0.5
    if operator.in_dtype.is_complex:
        u = torch.complex(u, torch.rand(operator.in_shape, generator=g, dtype=torch.float64))
    with torch.no_grad():
        out = operator(u.to(dtype=operator.in_dtype, device=operator.device))
    n = int((out != 0).sum())
    return 2 * n if out.is_complex() else n


def natural_problem(image: np.ndarray, task: str, *, sigma255: Optional[float] = None, keep_fraction: float = 0.5,
                    factor: int = 4, seed: int = 0, clip: bool = True) -> Problem:
    """Degrade a clean CHW image in [0, 1] for ``task`` (noise std ``sigma255/255``; the OES protocol
    clips noisy images to [0, 1]). Default noise: σ = 25 for denoising, none for inpainting and
    super-resolution (as in DIP). The noise is seeded."""
    from .core import derive_seed
    from .methods import natural_evaluator
    if task not in TASKS:
        raise UserError(f"task must be one of {TASKS}, got {task!r}")
    if not np.isfinite(image).all():
        raise UserError("image contains NaN or Inf")
    if sigma255 is None:
        sigma255 = 25.0 if task == "denoise" else 0.0
    if sigma255 < 0:
        raise UserError(f"sigma must be >= 0 (0-255 scale), got {sigma255}")
    x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)
    noise = O.GaussianNoise(sigma255 / 255.0, clip=(0.0, 1.0) if clip else None) if sigma255 > 0 else None
    shape = tuple(x.shape)
    if task == "denoise":
        A = O.Denoise(shape, noise=noise)
    elif task == "inpaint":
        A = O.Inpaint(shape, keep_fraction=keep_fraction, seed=derive_seed(seed, "inpaint-mask"), noise=noise)
    else:
        A = O.SuperResolution(shape, factor=factor, noise=noise)
    y = A.measure(x[None], seed=derive_seed(seed, "noise"))
    info = {"task": task, "sigma_255": sigma255, "image_shape": list(shape), "operator": A.describe()}
    disp = y[0].numpy()
    return Problem(A, y, shape[-2:], evaluate=natural_evaluator(x), reference=x, kind="natural", info=info,
                   to_display=lambda xh: xh.detach().cpu()[0].clamp(0, 1).numpy(), measurements_display=disp)


def operator_problem(image: np.ndarray, name: str, operator_args="{}", *, sigma255: Optional[float] = None,
                     seed: int = 0, clip: bool = True) -> Problem:
    """A problem from any registered operator plugin (``--operator NAME --operator-args JSON``): the
    operator is built as ``build(name, shape=(C, H, W), **args)``, measurements ``y = A(x) + noise``
    (σ/255, seeded; default none)."""
    import json
    from .methods import natural_evaluator
    if isinstance(operator_args, str):
        try:
            kwargs = json.loads(operator_args)
        except ValueError as e:
            raise UserError(f"--operator-args: not a JSON object ({e})") from None
    else:
        kwargs = dict(operator_args or {})
    if not isinstance(kwargs, dict):
        raise UserError("--operator-args: expected a JSON object like '{\"factor\": 2}'")
    if name not in O.available():
        raise UserError(f"--operator {name!r}: not registered; available: {', '.join(O.available())}")
    x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)
    sigma255 = sigma255 or 0.0
    if not (np.isfinite(sigma255) and sigma255 >= 0):
        raise UserError(f"--sigma must be a finite number >= 0, got {sigma255}")
    noise = O.GaussianNoise(sigma255 / 255.0, clip=(0.0, 1.0) if clip else None) if sigma255 > 0 else None
    try:
        A = O.build(name, shape=tuple(x.shape), noise=noise, **kwargs)
    except TypeError as e:
        raise UserError(f"--operator {name}: cannot build it with shape=..., noise=... and {kwargs}: {e}") from None
    from .core import derive_seed
    y = A.measure(x[None], seed=derive_seed(seed, "noise"))
    info = {"task": name, "sigma_255": sigma255, "image_shape": list(x.shape), "operator": A.describe()}
    disp = y[0].detach().cpu().numpy() if y[0].shape == x.shape and not y.is_complex() else None
    return Problem(A, y, tuple(x.shape[-2:]), evaluate=natural_evaluator(x), reference=x, kind="natural",
                   info=info, to_display=lambda xh: xh.detach().cpu()[0].clamp(0, 1).numpy(),
                   measurements_display=disp)
