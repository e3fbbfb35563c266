"""Classical baselines with SigPy's apps (no hand-written solvers).

* :func:`zero_filled` — RSS of the zero-filled coil images (fastMRI's zero-filled baseline), or the
  ESPIRiT-combined ``S^H F^H y``;
* :func:`sense` — CG on ``A^H A + λI`` (SigPy's ``LinearLeastSquares``, the solver inside
  :class:`sigpy.mri.app.SenseRecon`);
* :func:`l1_wavelet` — ℓ1-wavelet CS (SigPy's FISTA, the solver of
  :class:`sigpy.mri.app.L1WaveletRecon`, with BART ``pics``' wavelet prox: Daubechies-2, 4 levels,
  random shifts, coarse band unthresholded; :func:`cycle_spin_wavelet_prox`).

Both run SigPy's solvers on THE OPERATOR ITSELF (:func:`operators.to_sigpy`: ``A``, ``A^H`` and the
normal operator ``A^H A`` are the operator's own torch code, on the operator's device), so they work
for any operator plugin, not only for ``MultiCoilMRI`` with ESPIRiT maps; :func:`sense_operator` /
:func:`l1_wavelet_operator` take an operator and ``y`` directly. On the built-in MRI operator the
SENSE result equals SigPy's ``SenseRecon`` with the same maps (measured on ``brain8_full.h5`` at 4×
and 8×: same PSNR to 0.01 dB).

All run on the problem's scaled ``y`` (zero-filled ESPIRiT image p99 = 1, a scale taken from the
undersampled data), so λ does not depend on the scanner's intensity units, and return complex images
``(H, W)`` in original units.

λ per scan (``lamda=None``, the default; :func:`choose_lamda`), from the measured data alone (neither
the reference nor the fully sampled k-space is read):

* L1-wavelet: self-validation. Five disjoint seeded sets of 20 % of the measured lines outside the ACS
  block are held out in turn; the method runs on the rest for each λ of ``L1_GRID`` (scaled units); the
  λ whose images predict the held-out k-space lines best (summed ``1 − cos²`` between ``M_val F S x`` and
  ``y_val``, blind to a global scale, so shrinking a poor prediction is not rewarded) is kept, and the
  method reruns on all lines with it;
* SENSE: ``SENSE_LAMBDA`` relative to the data scale (see :func:`choose_lamda` for why not the same);
* coil maps: one ESPIRiT map set, two (soft-SENSE) when ESPIRiT's second eigenvalue is close to 1 on a
  part of the object (fold-over: :func:`classical_operator`);
* maps or maps-free (:func:`coil_operator`): the ESPIRiT maps, or SPIRiT on the coil images (no maps:
  :func:`spirit_operator`; SENSE becomes CG-SPIRiT, L1-wavelet ℓ1-SPIRiT with a joint-sparse wavelet prox;
  the image is the RSS of the coil images), whichever predicts held-out measured lines better.

The choice (λ, rule, grid, held-out errors and lines, seconds) is recorded in
``problem.info["lamda_choice"]``, the map sets and the maps-free choice (``maps_free``, ``coil_operator``)
in ``problem.info["espirit"]`` (``metrics.json``:
``problem.lamda_choice``, ``problem.espirit``). A λ given explicitly is used as is.
``results/2026-12-05-classical-defaults/README.md`` and ``results/2026-12-05-classical-rules/README.md`` have
the before/after tables.
"""
from __future__ import annotations

import numpy as np

from ..schema import CLASSICAL_METHODS
from .problem import MRIProblem

#: the former fixed values (tuned on brain8_full.h5 at 4x, equispaced, seed 0), scaled units
SENSE_LAMBDA = 0.01
SENSE_ITERS = 30
L1_LAMBDA = 0.003
L1_ITERS = 100
#: L1-wavelet's transform (BART pics' choices: Daubechies-2, a few levels, random shifts, the coarse
#: band unthresholded; brain8 8x seed 0, λ 0.003: 24.80 dB against 23.55 with SigPy's db4 over all
#: levels and every band thresholded, and BART's best 24.57)
L1_WAVELET = "db2"
L1_LEVELS = 4
#: λ grids of the per-scan rule (scaled units: zero-filled ESPIRiT image p99 = 1)
SENSE_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
L1_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
#: ESPIRiT's second map set (soft-SENSE) per scan: ``"eigenvalue"`` = the fold-over statistic of
#: :func:`classical_operator` (a held-out-lines choice between one and two sets was unreliable: it kept
#: one set on a fold-over brain at 4x where two gave +5 dB, and took two on brain8 8x seed 2, -2 dB)
SOFT_SENSE = "eigenvalue"
#: fraction of the measured non-ACS lines held out per fold, folds (disjoint: 5 x 20 % holds out every
#: line once; 2 folds held out 2-4 lines each at 8x, and the choice swung between 3e-4 and 0.1 over
#: seeds), seed of the draw
HOLDOUT_FRACTION = 0.2
HOLDOUT_FOLDS = 5
HOLDOUT_SEED = 0
#: maps-free fallback (:func:`coil_operator`): ``"holdout"`` = per scan, ESPIRiT maps (one or two sets, as
#: :func:`classical_operator` chose) or SPIRiT on the coil images (:class:`operators.mri_coils.
#: SpiritCoilImagesMRI`), whichever predicts the held-out measured lines better (CG fits, the λ rule's
#: folds); ``True`` / ``False``: always / never maps-free. Off by default: on 24 shared scan × acceleration ×
#: seed cases the held-out rule chose maps-free on every one (it does not single out failing maps), raised
#: SENSE everywhere but lowered L1-wavelet by 0.9-3.5 dB on most clean scans: failed checks 20 -> 22
#: (results/2026-12-05-maps-free/README.md); ``benchmarks/mri_baselines.py table --maps-free holdout`` reruns it
MAPS_FREE = False
#: Tikhonov λ grid of CG-SPIRiT (scaled units), chosen per scan with the maps / maps-free rule: the
#: penalty competes with SPIRiT's weak constraint on the unmeasured lines, so it matters far more than
#: SENSE's (bundled brain 4x: λ 0 32.5 dB, 1e-3 32.1, 0.01 28.6; brain8 folded to 70 %, 8x seed 0: 0 19.8,
#: 1e-3 20.7, 0.01 22.5, 0.03 22.5; zero-filled 20.6 / 21.5); 0 is left out (noise amplification at 8x,
#: where the held-out error hardly separates the λ's: there the smallest error picked 1e-3 on seed 1,
#: 19.3 dB against zero-filled 21.4, hence the one-standard-error rule, :func:`one_standard_error`)
SPIRIT_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
#: weight μ of SPIRiT's calibration-consistency rows against the data rows (brain8 folded to 70 %, 8x
#: seed 0, CG: 0.3 gave 22.7 dB, 1.0 22.0; brain8 4x: 1.0 gave 30.2, 0.1 27.1)
SPIRIT_MU = 0.5

METHODS = CLASSICAL_METHODS


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


def max_eig(op, iters: int = 30, seed: int = 0) -> float:
    """Largest eigenvalue of ``A^H A`` by a power iteration from a SEEDED start (SigPy's own power
    iteration starts from an unseeded random vector, which made L1-wavelet differ run to run)."""
    import torch
    g = torch.Generator().manual_seed(int(seed))
    shape = tuple(op.in_shape)
    x = torch.randn(shape, generator=g, dtype=torch.float32)
    if op.in_dtype.is_complex:
        x = torch.complex(x, torch.randn(shape, generator=g, dtype=torch.float32))
    x = x.to(device=op.device, dtype=op.in_dtype)
    lam = 0.0
    with torch.no_grad():
        for _ in range(iters):
            x = x / x.abs().pow(2).sum().sqrt().clamp_min(1e-30)
            z = op.normal(x)
            lam = float(torch.real((x.conj() * z).sum()))
            x = z
    return lam


def wavelet_levels(shape, levels: int = L1_LEVELS, wave_name: str = L1_WAVELET) -> int:
    """Wavelet levels for an image grid: ``levels``, fewer on small grids (the coarsest band keeps at
    least 4 pixels a side and is no shorter than the filter)."""
    import pywt
    n = max(int(min(shape[-2:])), 2)
    return int(max(1, min(levels, int(np.log2(n)) - 2, pywt.dwt_max_level(n, wave_name))))


def cycle_spin_wavelet_prox(shape, lamda, wave_name=L1_WAVELET, levels=L1_LEVELS, seed=0, joint: bool = False):
    """SigPy prox of ``λ‖W x‖₁`` over the last two axes, with BART's choices: an orthogonal wavelet
    (``wave_name``, periodic, ``levels`` levels on the grid zero-padded to a multiple of ``2**levels``),
    the coarse approximation band NOT thresholded, and a random circular shift of the image before each
    transform (cycle spinning, drawn from a SEEDED generator: the same input gives the same image).
    Complex soft thresholding; a real input stays real. ``joint``: the coefficients of axis 0 (coil
    images) are thresholded together by their ℓ2 norm (joint sparsity, ``λ Σ ‖(W x)[:, i]‖₂``)."""
    import pywt
    import sigpy as sp

    lv = wavelet_levels(shape, levels, wave_name)
    rng = np.random.default_rng(int(seed))

    # the prox closes over the wavelet, its levels and the seeded shift generator
    class _Prox(sp.prox.Prox):
        def _prox(self, alpha, x):
            x = np.asarray(x)
            H, W = x.shape[-2:]
            m = 2 ** lv
            pad = np.zeros(x.shape[:-2] + (-(-H // m) * m, -(-W // m) * m), x.dtype)
            pad[..., :H, :W] = x
            shift = tuple(int(v) for v in rng.integers(0, m, 2))
            c = pywt.wavedec2(np.roll(pad, shift, axis=(-2, -1)), wave_name, mode="periodization",
                              level=lv, axes=(-2, -1))
            tau = float(alpha) * lamda

            def mag(d):
                return np.sqrt((np.abs(d) ** 2).sum(0, keepdims=True)) if joint else np.abs(d)
            out = [c[0]] + [tuple(d * (np.maximum(mag(d) - tau, 0) / np.maximum(mag(d), 1e-30))
                                  for d in band) for band in c[1:]]
            r = pywt.waverec2(out, wave_name, mode="periodization", axes=(-2, -1))
            r = np.roll(r, tuple(-v for v in shift), axis=(-2, -1))[..., :H, :W]
            return r.astype(x.dtype, copy=False)

    return _Prox(tuple(shape))


def l1_wavelet_operator(op, y, lamda: float = L1_LAMBDA, max_iter: int = L1_ITERS,
                        wave_name: str = L1_WAVELET, alpha=None, levels: int = L1_LEVELS,
                        seed: int = 0, joint: bool = False, l2: float = 0.0) -> np.ndarray:
    """``min_x ½‖A x − y‖² + λ‖W x‖₁`` (SigPy's FISTA; ``W``: :func:`cycle_spin_wavelet_prox`, a
    ``wave_name`` wavelet over the last two axes of ``op.in_shape`` (per map set; ``joint``: coil images
    thresholded jointly over axis 0) with random shifts and the approximation band unthresholded); step
    ``alpha`` (``None``: ``1 / (max_eig(op) + l2)``, seeded, so the result is reproducible); ``l2``: an
    added ``(l2 / 2)‖x‖²`` (elastic net; the maps-free operator's CG-SPIRiT Tikhonov term)."""
    import sigpy as sp
    from operators import to_sigpy
    proxg = cycle_spin_wavelet_prox(tuple(op.in_shape), lamda, wave_name, levels, seed, joint)
    if alpha is None:
        alpha = 1.0 / max(max_eig(op) + l2, 1e-12)
    return np.asarray(sp.app.LinearLeastSquares(to_sigpy(op), _numpy_y(y), proxg=proxg, alpha=alpha, lamda=l2,
                                                max_iter=max_iter, show_pbar=False).run())


# ------------------------------------------------------------------------------ λ per scan
def holdout_split(mask: np.ndarray, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED, fold: int = 0):
    """``(train, held_out)`` line masks: fold ``fold`` of a seeded permutation of the measured lines
    OUTSIDE the ACS block, ``fraction`` of them (at least one line) per fold; the ACS block always stays
    in ``train`` (the maps and the low frequencies need it). ``held_out`` is ``None`` when there is no
    line to hold out in that fold."""
    from .data import lines_outside_acs
    m = np.asarray(mask).reshape(-1) > 0
    cand = np.flatnonzero(lines_outside_acs(m))
    n = max(1, int(round(fraction * cand.size)))
    held = np.random.default_rng(int(seed)).permutation(cand)[fold * n:(fold + 1) * n]
    if cand.size < 2 or held.size == 0:
        return m.astype(np.float32), None
    val = np.zeros_like(m)
    val[held] = True
    return (m & ~val).astype(np.float32), val.astype(np.float32)


def _solve(op, y, method: str, lam: float, iters: int, alpha=None) -> np.ndarray:
    """``method`` on operator ``op`` for measured k-space ``y``: the operator gives the right-hand side
    (``op.augment``: maps-free, ``y`` stacked on zeros), L1-wavelet's joint sparsity over the coil images
    (``op.joint_sparse``) and its ℓ2 term (``op.l2``: maps-free, CG-SPIRiT's λ, so ℓ1-SPIRiT tends to
    CG-SPIRiT as λ → 0 (without it SPIRiT's noise amplification at 8x took L1 below zero-filled: brain8
    folded to 70 %, 8x seed 0, λ 0.003: 20.6 dB against CG-SPIRiT's 22.5 and zero-filled 21.5); 0 with maps)."""
    if method == "sense":
        return sense_operator(op, op.augment(y), lam, iters)
    return l1_wavelet_operator(op, op.augment(y), lam, iters, alpha=alpha, joint=op.joint_sparse, l2=op.l2)


def _holdout_errors(problem: MRIProblem, op, method: str, grid, train, val, max_iter=None):
    """Held-out error per λ of ``method`` fitted to the ``train`` lines: ``1 − |⟨p, y⟩|² / (‖p‖² ‖y‖²)``
    between its prediction ``p`` of the held-out lines ``val`` and the measured ``y`` there. ``op``: the
    ESPIRiT-maps operator or the maps-free SPIRiT one."""
    import torch

    from operators.mri import fft2c
    op_t = op.with_mask(train)   # the same maps (or SPIRiT kernels, μ and ℓ2 weight) on the train lines
    dev = problem.y.device
    mt = torch.from_numpy(train).to(dev).reshape(1, 1, -1)
    mv = torch.from_numpy(val).to(dev).reshape(1, 1, -1)
    y_t, y_v = problem.y * mt, problem.y * mv
    ref = float(y_v.abs().pow(2).sum())
    iters = max_iter or (SENSE_ITERS if method == "sense" else L1_ITERS)
    alpha = 1.0 / max(max_eig(op_t) + op_t.l2, 1e-12) if method == "l1-wavelet" else None
    errors = []
    for lam in grid:
        x = _solve(op_t, y_t, method, lam, iters, alpha)
        x = torch.from_numpy(np.asarray(x, np.complex64)).to(dev)
        pred = mv * fft2c(op_t.coil_images(x[None])[0])
        # scale-invariant: 1 - cos² between predicted and measured held-out k-space (a plain relative
        # error rewarded shrinkage: a large λ scales a poor prediction towards zero, error -> 1)
        num = float((pred.conj() * y_v).sum().abs() ** 2)
        errors.append(1.0 - num / max(float(pred.abs().pow(2).sum()) * ref, 1e-30))
    return errors


def one_standard_error(errors) -> int:
    """Index of the LARGEST λ (columns in increasing order) whose held-out error is not worse than the
    smallest by more than one standard error of the paired per-fold differences (the one-standard-error
    rule of cross-validation, Hastie, Tibshirani & Friedman, ESL 7.10): where the held-out lines hardly
    tell the λ's apart (8x: errors near 1), the most regularised one stays. ``errors``: ``(folds, λ's)``."""
    E = np.asarray(errors, float)
    best = int(np.argmin(E.sum(0)))
    if E.shape[0] < 2:
        return best
    pick = best
    for j in range(best + 1, E.shape[1]):
        d = E[:, j] - E[:, best]
        if d.mean() <= d.std(ddof=1) / np.sqrt(E.shape[0]):
            pick = j
    return pick


def spirit_operator(problem: MRIProblem):
    """The maps-free operator of this scan: SPIRiT kernels calibrated on the ACS block of the measured
    k-space (:func:`mri_oes.mri.espirit.spirit_kernels`), applied to the coil images
    (:class:`operators.mri_coils.SpiritCoilImagesMRI`, μ ``SPIRIT_MU``). Built once per problem;
    its settings go to ``problem.info["espirit"]["maps_free"]["spirit"]``."""
    import time

    import torch

    from operators.mri_coils import SpiritCoilImagesMRI

    from . import espirit as E
    c = problem.classical
    if "spirit" not in c:
        t0 = time.perf_counter()
        params = E.spirit_params(problem.mask, problem.image_shape[0])
        w = E.spirit_kernels(problem.kspace, problem.mask, params)
        g = E.spirit_image_kernels(w, problem.image_shape)
        op = SpiritCoilImagesMRI(torch.from_numpy(problem.mask), torch.from_numpy(g), SPIRIT_MU, l2=SENSE_LAMBDA)
        c["spirit"] = op.to(problem.operator.device)
        c["spirit_params"] = {**params, "mu": SPIRIT_MU, "time_s": round(time.perf_counter() - t0, 3)}
    return c["spirit"]


def classical_operator(problem: MRIProblem, soft_sense=None):
    """The operator of the classical methods for this scan: the ESPIRiT maps (one set), or soft-SENSE
    with ESPIRiT's second map set as well (:func:`mri_oes.mri.espirit.second_map_set_and_overlap`).
    ``soft_sense`` ``None`` (default, ``SOFT_SENSE``): two sets where ESPIRiT finds fold-over
    (:func:`mri_oes.mri.espirit.fold_over_found`: the fraction of the object where the second eigenvalue
    exceeds ``OVERLAP_EIGENVALUE`` reaches ``OVERLAP_FRACTION``, at the phase-encode edges at least as
    often as in the centre); ``True`` / ``False``: two / one set. Measured data only. Built once per problem
    and choice (a network's ``--map-sets`` may differ from the classical methods' rule on the same problem);
    the latest is recorded in ``problem.info["espirit"]`` (``map_sets``, ``soft_sense``)."""
    import time

    from operators.mri import MultiCoilMRI

    from . import espirit as E
    c = problem.classical
    choice = SOFT_SENSE if soft_sense is None else soft_sense
    if ("operator", choice) in c:
        return c[("operator", choice)]
    t0 = time.perf_counter()
    esp = problem.info.setdefault("espirit", {})
    if "second_map_set" not in c:   # one eigen-decomposition per problem, whichever choices are asked for
        c["second_map_set"] = E.second_map_set_and_overlap(problem.kspace, problem.mask, esp)
    m2, kept, overlap = c["second_map_set"]
    found = E.fold_over_found(overlap)
    two = found if choice == "eigenvalue" else bool(choice)
    op, sets = problem.operator, 1
    if two and kept > 0:
        op, sets = MultiCoilMRI(np.stack([problem.maps, m2]), problem.mask).to(problem.operator.device), 2
    esp["soft_sense"] = {"rule": ("two map sets when ESPIRiT's second eigenvalue exceeds "
                                  f"{E.OVERLAP_EIGENVALUE} on >= {E.OVERLAP_FRACTION:g} of the object "
                                  f"(zero-filled RSS > {E.OBJECT_LEVEL} x p99), in the outer {E.OVERLAP_EDGE:g} "
                                  "of the phase-encode FOV on each side at least as often as in the centre")
                         if choice == "eigenvalue" else f"given: {'two map sets' if two else 'one map set'}",
                         "statistic": "overlap_fraction", "overlap_fraction": round(overlap["fraction"], 4),
                         "overlap_edge": round(overlap["edge"], 4), "overlap_centre": round(overlap["centre"], 4),
                         "found": found,
                         "eigenvalue_threshold": E.OVERLAP_EIGENVALUE, "fraction_threshold": E.OVERLAP_FRACTION,
                         "crop": E.SOFT_SENSE_CROP, "kept_fraction": round(kept, 4),
                         "time_s": round(time.perf_counter() - t0, 3)}
    esp["map_sets"] = sets
    c[("operator", choice)] = op
    return op


def coil_operator(problem: MRIProblem, maps_free=None, fraction: float = HOLDOUT_FRACTION,
                  seed: int = HOLDOUT_SEED, folds: int = HOLDOUT_FOLDS):
    """The operator SENSE and L1-wavelet run on for this scan: the ESPIRiT maps of
    :func:`classical_operator`, or the maps-free SPIRiT operator on the coil images
    (:func:`spirit_operator`) where the maps cannot be trusted. ``maps_free`` ``None`` (``MAPS_FREE``,
    ``"holdout"``): the measured lines outside the ACS block are held out in ``folds`` disjoint sets
    (:func:`holdout_split`, the λ rule's folds); on the rest each candidate is fitted by CG (SENSE's λ and
    iterations; SPIRiT at each λ of ``SPIRIT_GRID``, keeping its best) and predicts the held-out lines;
    the smaller summed error (``1 − cos²``, as the λ rule) wins. ``True`` / ``False``: maps-free / maps.
    Measured data only. Decided once per problem; recorded
    in ``problem.info["espirit"]["maps_free"]`` (rule, chosen, held-out errors, SPIRiT settings, seconds)."""
    import time
    c = problem.classical
    if "coil_operator" in c:
        return c["coil_operator"]
    t0 = time.perf_counter()
    maps_op = classical_operator(problem)
    choice = MAPS_FREE if maps_free is None else maps_free
    esp = problem.info.setdefault("espirit", {})
    rec = {"rule": ("maps-free (SPIRiT coil images) when its CG fit predicts the held-out measured lines "
                    f"better than the ESPIRiT maps' ({folds} folds of {fraction:g}, seed {seed})")
           if choice == "holdout" else f"given: {'maps-free' if choice else 'maps'}"}
    spirit = None
    try:   # not calibrated when the maps are given: the default costs no SPIRiT fit
        spirit = spirit_operator(problem) if choice is not False else None
    except Exception as e:   # e.g. too few ACS lines to calibrate: the maps stay
        rec["spirit_error"] = str(e)
    if spirit is not None:   # CG-SPIRiT's λ: the grid value predicting held-out lines best
        err_m, per_fold = 0.0, []
        for fold in range(folds):
            train, val = holdout_split(problem.mask, fraction, seed, fold)
            if val is None:
                continue
            per_fold.append(_holdout_errors(problem, spirit, "sense", SPIRIT_GRID, train, val))
            if choice == "holdout":
                err_m += _holdout_errors(problem, maps_op, "sense", (SENSE_LAMBDA,), train, val)[0]
        E_f = np.asarray(per_fold).reshape(-1, len(SPIRIT_GRID))
        err_f = E_f.sum(0)
        best = one_standard_error(E_f) if len(E_f) else SPIRIT_GRID.index(SENSE_LAMBDA)
        spirit.l2 = float(SPIRIT_GRID[best])
        rec["spirit_lamda"] = {"rule": "self-validation (CG-SPIRiT, same folds), one-standard-error rule",
                               "grid": list(SPIRIT_GRID), "holdout_error": [round(float(e), 6) for e in err_f],
                               "smallest_error_lamda": float(SPIRIT_GRID[int(np.argmin(err_f))]) if len(E_f) else None,
                               "lamda": spirit.l2}
        if choice == "holdout":
            rec["holdout_error"] = {"maps": round(float(err_m), 6), "maps-free": round(float(err_f[best]), 6)}
            free = err_f[best] < err_m
        else:
            free = bool(choice)
    else:
        free = False
    if spirit is not None:
        rec["spirit"] = c["spirit_params"]
    rec["chosen"] = "maps-free" if free else "maps"
    rec["time_s"] = round(time.perf_counter() - t0, 3)
    esp["maps_free"] = rec
    esp["coil_operator"] = ("SPIRiT coil images (maps-free), RSS" if free
                            else f"ESPIRiT maps ({esp.get('map_sets', 1)} set{'s' if esp.get('map_sets', 1) > 1 else ''})")
    c["coil_operator"] = spirit if free else maps_op
    return c["coil_operator"]


def choose_lamda(problem: MRIProblem, method: str, max_iter=None, grid=None,
                 fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED, folds: int = HOLDOUT_FOLDS) -> dict:
    """λ of ``method`` for this scan from the measured k-space only (never the reference).

    ``l1-wavelet`` (or ``sense`` with an explicit ``grid``): self-validation. ``folds`` disjoint
    held-out sets (:func:`holdout_split`); for each, the method is fitted to the remaining lines for every
    λ of ``grid``; the λ with the smallest summed held-out error (:func:`_holdout_errors`) is kept.
    ``sense`` by default: ``SENSE_LAMBDA`` relative to the data scale (``y`` is scaled so the zero-filled
    ESPIRiT image has p99 = 1): self-validation picked a worse SENSE λ than this on 4 of 6 scan x
    acceleration cases (the held-out error of CG-SENSE barely varies with λ), while 0.01 was within
    0.12 dB of SENSE's best grid λ on all 8 (brain8, brain8b, brain16 at 4x; brain8, brain4, brain16,
    phantom4 at 8x; a synthetic phantom at 4x; seed 0). Returns the record stored under
    ``problem.info["lamda_choice"][method]``."""
    import time
    t0 = time.perf_counter()
    if method == "sense" and grid is None:
        coil_operator(problem)
        if problem.info["espirit"]["maps_free"]["chosen"] == "maps-free":
            return {**problem.info["espirit"]["maps_free"]["spirit_lamda"], "time_s": 0.0,
                    "note": "maps-free (CG-SPIRiT): chosen with the maps / maps-free rule (espirit.maps_free)"}
        return {"rule": "fixed relative to the data scale (zero-filled ESPIRiT image p99 = 1)",
                "lamda": SENSE_LAMBDA, "time_s": 0.0}
    grid = tuple(grid or (SENSE_GRID if method == "sense" else L1_GRID))
    op = coil_operator(problem)
    base = {"rule": "self-validation", "grid": list(grid), "holdout_fraction": fraction,
            "holdout_folds": folds, "holdout_seed": seed}
    total, lines = np.zeros(len(grid)), []
    for fold in range(folds):
        train, val = holdout_split(problem.mask, fraction, seed, fold)
        if val is None:
            continue
        lines += [int(i) for i in np.flatnonzero(val)]
        total += np.asarray(_holdout_errors(problem, op, method, grid, train, val, max_iter))
    if not lines:   # nothing to hold out (e.g. a fully sampled centre only): the middle of the grid
        return {**base, "lamda": grid[len(grid) // 2], "holdout_lines": [], "holdout_error": None,
                "note": "no measured line outside the ACS block to hold out; middle of the grid",
                "time_s": round(time.perf_counter() - t0, 3)}
    best = int(np.argmin(total))
    return {**base, "lamda": float(grid[best]), "holdout_lines": sorted(lines),
            "holdout_error": [round(float(e), 6) for e in total], "time_s": round(time.perf_counter() - t0, 3)}


def _lamda(problem: MRIProblem, method: str, lamda, max_iter) -> float:
    """A given λ, else the per-scan choice (computed once per problem and method, recorded in
    ``problem.info["lamda_choice"]``)."""
    if lamda is not None:
        return float(lamda)
    choices = problem.info.setdefault("lamda_choice", {})
    if method not in choices:
        choices[method] = choose_lamda(problem, method, max_iter)
    return choices[method]["lamda"]


def zero_filled(problem: MRIProblem, combine: str = "rss") -> np.ndarray:
    """Zero-filled reconstruction, original units (``rss``: magnitude; ``espirit``: complex)."""
    return problem.zero_filled(combine)


def sense(problem: MRIProblem, lamda=None, max_iter: int = SENSE_ITERS) -> np.ndarray:
    """CG-SENSE with ℓ2 (Tikhonov) regularisation ``λ`` through ``problem.operator`` (``None``: chosen
    per scan by :func:`choose_lamda`)."""
    lam = _lamda(problem, "sense", lamda, max_iter)
    op = coil_operator(problem)
    # the image in original units: with maps the image (RSS over two sets), maps-free the RSS of the coil images
    return problem.unscale(op.combine(_solve(op, problem.y, "sense", lam, max_iter)))


def l1_wavelet(problem: MRIProblem, lamda=None, max_iter: int = L1_ITERS) -> np.ndarray:
    """ℓ1-wavelet compressed sensing through ``problem.operator`` (``λ`` ``None``: chosen per scan)."""
    lam = _lamda(problem, "l1-wavelet", lamda, max_iter)
    op = coil_operator(problem)
    # the image in original units: with maps the image (RSS over two sets), maps-free the RSS of the coil images
    return problem.unscale(op.combine(_solve(op, problem.y, "l1-wavelet", lam, max_iter)))


def run_baseline(problem: MRIProblem, method: str, lamda=None, max_iter=None) -> np.ndarray:
    """Dispatch by CLI method name (``lamda``/``max_iter`` ``None``: the defaults; λ chosen per scan)."""
    kw = {"lamda": lamda, **({"max_iter": max_iter} if max_iter is not None else {})}
    if method == "zero-filled":
        return zero_filled(problem)
    if method == "sense":
        return sense(problem, **kw)
    if method == "l1-wavelet":
        return l1_wavelet(problem, **kw)
    raise ValueError(f"unknown baseline {method!r}; choose from {METHODS}")
