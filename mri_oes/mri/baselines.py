"""Classical baselines with SigPy's apps (no hand-written solvers).

* :func:`zero_filled` — RSS of the zero-filled coil images (fastMRI's zero-filled baseline), or the
  ESPIRiT-combined ``S^H F^H y``;
* :func:`sense` — :class:`sigpy.mri.app.SenseRecon` (CG on ``A^H A + λI``);
* :func:`l1_wavelet` — :class:`sigpy.mri.app.L1WaveletRecon` (FISTA, Daubechies-4 wavelets).

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


def _sigpy_inputs(problem: MRIProblem):
    y = problem.y.detach().cpu().numpy()
    weights = np.broadcast_to(problem.mask.reshape(1, -1) > 0, y.shape[-2:]).astype(np.float32)
    return y, weights


def zero_filled(problem: MRIProblem, combine: str = "rss") -> np.ndarray:
    """Zero-filled reconstruction, original units (``rss``: magnitude; ``espirit``: complex)."""
    return problem.zero_filled(combine)


def sense(problem: MRIProblem, lamda: float = SENSE_LAMBDA, max_iter: int = SENSE_ITERS, device=-1) -> np.ndarray:
    """CG-SENSE with ℓ2 (Tikhonov) regularisation ``λ`` (:class:`sigpy.mri.app.SenseRecon`)."""
    import sigpy.mri as mr
    y, w = _sigpy_inputs(problem)
    x = mr.app.SenseRecon(y, problem.maps, lamda=lamda, weights=w, max_iter=max_iter, device=device,
                          show_pbar=False).run()
    return problem.unscale(np.asarray(x))


def l1_wavelet(problem: MRIProblem, lamda: float = L1_LAMBDA, max_iter: int = L1_ITERS, device=-1) -> np.ndarray:
    """ℓ1-wavelet compressed sensing (:class:`sigpy.mri.app.L1WaveletRecon`)."""
    import sigpy.mri as mr
    y, w = _sigpy_inputs(problem)
    x = mr.app.L1WaveletRecon(y, problem.maps, lamda=lamda, weights=w, max_iter=max_iter, device=device,
                              show_pbar=False).run()
    return problem.unscale(np.asarray(x))


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
