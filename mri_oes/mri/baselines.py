"""Classical baselines with SigPy's apps (no hand-written solvers).

* :func:`zero_filled` — RSS of the zero-filled coil images (fastMRI's zero-filled baseline), or the
  ESPIRiT-combined ``S^H F^H y``;
* :func:`sense` — CG on ``A^H A + λI`` (SigPy's ``LinearLeastSquares``, the solver inside
  :class:`sigpy.mri.app.SenseRecon`);
* :func:`l1_wavelet` — ℓ1-wavelet CS (FISTA, Daubechies-4 wavelets; the solver and prox of
  :class:`sigpy.mri.app.L1WaveletRecon`).

Both run SigPy's solvers on THE OPERATOR ITSELF (:func:`operators.to_sigpy`: ``A``, ``A^H`` and the
normal operator ``A^H A`` are the operator's own torch code, on the operator's device), so they work
for any operator plugin, not only for ``MultiCoilMRI`` with ESPIRiT maps; :func:`sense_operator` /
:func:`l1_wavelet_operator` take an operator and ``y`` directly. On the built-in MRI operator the
results equal SigPy's ``SenseRecon`` / ``L1WaveletRecon`` with the same maps (measured on
``brain8_full.h5`` at 4× and 8×: same PSNR to 0.01 dB; SigPy's power iteration for the FISTA step
starts from an unseeded random vector, so L1-wavelet differs run to run at that level).

All run on the problem's scaled ``y`` (zero-filled ESPIRiT image p99 = 1), so the λ defaults do not
depend on the scanner's intensity units, and return complex images ``(H, W)`` in original units.
Defaults were tuned on ``brain8_full.h5`` (4× equispaced, seed 0; see ``benchmarks/mri_baselines.py``).
"""
from __future__ import annotations

import numpy as np

from .problem import MRIProblem

#: tuned on brain8_full.h5 at 4x (equispaced, seed 0), scaled units
SENSE_LAMBDA = 0.01
SENSE_ITERS = 30
L1_LAMBDA = 0.003
L1_ITERS = 100

METHODS = ("zero-filled", "sense", "l1-wavelet")


def _numpy_y(y):
    import torch
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def sense_operator(op, y, lamda: float = SENSE_LAMBDA, max_iter: int = SENSE_ITERS) -> np.ndarray:
    """CG on ``(A^H A + λ I) x = A^H y`` for any :class:`operators.LinearOperator` ``op``; returns
    ``x`` (numpy, shape ``op.in_shape``) in the units of ``y``."""
    import sigpy as sp
    from operators import to_sigpy
    return np.asarray(sp.app.LinearLeastSquares(to_sigpy(op), _numpy_y(y), lamda=lamda, max_iter=max_iter,
                                                show_pbar=False).run())


def l1_wavelet_operator(op, y, lamda: float = L1_LAMBDA, max_iter: int = L1_ITERS,
                        wave_name: str = "db4") -> np.ndarray:
    """``min_x ½‖A x − y‖² + λ‖W x‖₁`` (FISTA; ``W`` a ``wave_name`` wavelet over ``op.in_shape``)."""
    import sigpy as sp
    from operators import to_sigpy
    W = sp.linop.Wavelet(tuple(op.in_shape), wave_name=wave_name)
    proxg = sp.prox.UnitaryTransform(sp.prox.L1Reg(W.oshape, lamda), W)
    if not op.in_dtype.is_complex:           # real images (natural-image plugins): keep iterates real
        inner = proxg

        class _RealProx(sp.prox.Prox):
            def __init__(self):
                super().__init__(inner.shape)

            def _prox(self, alpha, input):
                return np.real(inner(alpha, input)).astype(input.dtype, copy=False)

        proxg = _RealProx()

    def g(x):
        return lamda * float(np.sum(np.abs(W(x))))

    return np.asarray(sp.app.LinearLeastSquares(to_sigpy(op), _numpy_y(y), proxg=proxg, g=g,
                                                max_iter=max_iter, show_pbar=False).run())


def zero_filled(problem: MRIProblem, combine: str = "rss") -> np.ndarray:
    """Zero-filled reconstruction, original units (``rss``: magnitude; ``espirit``: complex)."""
    return problem.zero_filled(combine)


def sense(problem: MRIProblem, lamda: float = SENSE_LAMBDA, max_iter: int = SENSE_ITERS) -> np.ndarray:
    """CG-SENSE with ℓ2 (Tikhonov) regularisation ``λ`` through ``problem.operator``."""
    return problem.unscale(sense_operator(problem.operator, problem.y, lamda, max_iter))


def l1_wavelet(problem: MRIProblem, lamda: float = L1_LAMBDA, max_iter: int = L1_ITERS) -> np.ndarray:
    """ℓ1-wavelet compressed sensing through ``problem.operator``."""
    return problem.unscale(l1_wavelet_operator(problem.operator, problem.y, lamda, max_iter))


def run_baseline(problem: MRIProblem, method: str, lamda=None, max_iter=None) -> np.ndarray:
    """Dispatch by CLI method name."""
    kw = {k: v for k, v in (("lamda", lamda), ("max_iter", max_iter)) if v is not None}
    if method == "zero-filled":
        return zero_filled(problem)
    if method == "sense":
        return sense(problem, **kw)
    if method == "l1-wavelet":
        return l1_wavelet(problem, **kw)
    raise ValueError(f"unknown baseline {method!r}; choose from {METHODS}")
