"""Named MRI defaults for the network methods (``mri-oes recon --preset {cpu,gpu}``).

``get(name) -> dict`` returns a fresh copy of a preset; :func:`density_for` turns the preset's
density rule into a density for one problem. Every field (the comment next to each value of ``_CPU``
says why, naming the results README that holds its numbers):

* ``generator`` — the network ``sparse-dip`` masks: ``hourglass`` (the OES net), ``deep-decoder``
  or ``conv-decoder``; ``operator`` — ``maps`` (``A = M F S``, ESPIRiT) or ``coils`` (maps-free
  :class:`operators.mri_coils.CoilImagesMRI`, the generator outputs ``2·coils`` channels).
* ``levels``, ``width`` — hourglass scales and channel multiplier (``GeneratorConfig.oes``);
  ``layers``, ``channels`` — deep decoder / ConvDecoder depth and width (``channels`` may be a list of
  per-layer widths; its length is then the depth).
* ``steps`` — training steps (dense and sparse; the FINAL iterate is the result, no early stop);
  ``mask_steps`` — OES mask-learning steps for ``sparse-dip`` with a density; ``steps_pixels`` (optional)
  — the grid size (pixels) ``steps`` were sized for: a smaller grid gets proportionally more steps (the
  same compute per slice, :meth:`mri_oes.recipe.Recipe.for_grid`), at most ``steps_scale_max`` times as
  many (optional); a ``--steps`` flag is taken as is.
* ``kept_per_measurement`` — density rule: keep this many weights per measured real value
  (:func:`density_for`), clipped to ``[density_min, density_max]``; ``density`` (not ``None``)
  overrides the rule with a fixed fraction.
* ``min_layer_density`` — per-layer floor of the OES top-k (against layer collapse).
* ``lr`` — Adam learning rate (weights and mask logits); ``lr_final`` — cosine decay target
  (``None`` = constant); ``lr_decay_start`` (optional) — the fraction of the steps after which the
  decay begins (constant ``lr`` before; 0 = over the whole run); ``grad_clip`` — global gradient-norm
  clip (0 = off).
* ``input_noise_std`` — std of the noise added to ``z`` each step (0 = off).
* ``precision`` — ``float32`` or ``bfloat16``: the generator's passes under ``torch.autocast``
  (:func:`mri_oes.core.fit`; weights, Adam, operator and loss stay float32).
* ``output_average`` — the result is the running average of the iterates with this decay (the
  original DIP code's smoothing, 0.99 there); 0 = the last iterate.
* ``stop_rule``, ``stop_tol``, ``stop_patience``, ``discrepancy_tau`` — the ground-truth-free stop of the training fit
  (:func:`mri_oes.core.fit`): ``none`` (every step), ``image-change`` (stop once the averaged output
  changed less than ``stop_tol`` per 1,000 steps throughout the last ``stop_patience`` steps) or
  ``self-validation`` (``holdout_fraction`` of the measured lines outside the ACS block left out of the
  fit; stop ``stop_patience`` steps after their lowest prediction error, the output of that step) or
  ``discrepancy`` (stop at the first logged step whose residual on the measured lines outside the ACS
  block is at most ``discrepancy_tau`` times what the k-space noise alone leaves there; the noise from
  the k-space corners, :meth:`mri_oes.mri.problem.MRIProblem.noise`).
* ``data_consistency`` — project the final image onto the measured k-space and report the RSS of
  the projected coil images (:meth:`mri_oes.mri.problem.MRIProblem.data_consistency`).
* ``espirit`` — ESPIRiT settings per acceleration (``{accel: {calib_width, thresh, crop}}``,
  ``None`` values = the automatic rule of :func:`mri_oes.mri.espirit.espirit_params`).
* ``by_accel`` — per-acceleration overrides of any of these keys (``{accel: {key: value}}``, applied by
  :func:`for_accel`; an undersampled file of unknown acceleration gets the base values).

The ``cpu`` step counts are sized for about 30 minutes per slice on a 2-core CPU (a lone slice gets both
cores through recon's idle-core rule, :func:`mri_oes.runtime.threads_for_tasks`; a dataset runs two
1-thread slices at a time). :meth:`mri_oes.recipe.Recipe.from_preset` turns a preset into the recipe
every MRI entry point trains.
"""
from __future__ import annotations

import copy

_ESPIRIT = {4: {"calib_width": None, "thresh": 0.02, "crop": 0.0},
            8: {"calib_width": None, "thresh": 0.02, "crop": 0.0}}

# One sentence per value says why; the numbers are in the README of the results folder it names (PSNR of
# the data-consistent final image, fastMRI metric, shared brains): R1 = results/2026-11-26-mri-quality/
# (1,200-step protocol), R2 = results/2026-11-26-mri-quality-preset/ (the cpu preset at its step counts,
# section "Preset values and the measurements behind them"), R3 = results/2026-11-27-mri-gpu/.
_CPU = {
    # the deep decoder through the ESPIRiT maps fitted brain8 4x best per CPU minute of the three networks
    # (R2); the maps-free coil operator lost 1.5 dB at 8x (R1); levels/width: the hourglass of dense DIP
    "generator": "deep-decoder", "operator": "maps", "levels": 5, "width": 0.5,
    # 6 x 128 beat 6 x 64 trained 8,000 steps in 60 % of its CPU time (R2)
    "layers": 6, "channels": 128,
    # the 8x curves peak near 3,000 steps (brain4 8x 31.15 at 3,000, 30.79 at 5,000) and 3,000 + 1,000 fit
    # 30 CPU-min on 256x256; 300 mask steps instead of 1,000 lost 0.37 dB at 4x (R2)
    "steps": 3000, "mask_steps": 1000,
    # the density rule beat a fixed 5 % by 1.3 dB (R1); at 8x it clips at 0.5 on the 128-channel decoder
    "kept_per_measurement": 0.5, "density": None, "density_min": 0.02, "density_max": 0.5,
    # a guard against an emptied layer; no effect at these densities (R1)
    "min_layer_density": 0.005,
    # lr 2e-2 / 5e-3 fitted slower (-0.51 / -0.39 dB at step 2,000) and a cosine decay cost 0.39-0.48 dB in
    # 11,000-12,000-step runs (R2); gradient clipping lost 0.7 dB, input noise 1.5 dB (R1)
    "lr": 1e-2, "lr_final": None, "grad_clip": 0.0, "input_noise_std": 0.0,
    # averaging 0.99 absorbs most late Adam bumps, 0.999 only lags the rising curve; bfloat16 runs 1.9x faster
    # per step but fitted 0.56-0.7 dB lower at equal steps on brain8 4x (R2)
    "output_average": 0.99, "precision": "float32",
    # stop rule off: image-change cut brain16 4x to 9.2 CPU-min but 0.26 dB below the rule-free curve, never fired at
    # 8x, and is unmeasured on the 256x256 brains at 4x (results/2026-12-05-time-to-quality/README.md)
    "stop_rule": "none", "stop_tol": 0.05, "stop_patience": 500,
    # +0.2 to +3.0 dB and +0.01 to +0.18 SSIM on every network run (R2)
    "data_consistency": True,
    # no ESPIRiT variant helped on all three scans (crop 0.95 at 8x: L1 +1.2 dB brain8, -2.7 brain8b; R1);
    # a lone slice on both cores runs 1.96x the 1-thread speed, which the 30-minute budget counts on (R2)
    "espirit": _ESPIRIT,
    # 4x: 192 channels beat 128 by 0.57 dB at equal steps and the 64-wide full-resolution layer runs 1.75x
    # faster per step; at constant lr the fit gains ~0.05 dB per 1,000 steps, so 11,000 steps on 256x256
    # (17,413 on 230x180) fill the 30-minute budget; the 10 % floor keeps the 128-weight head trainable
    # (at 0.005 it kept 4 weights on brain8b and training stopped at step ~200) (R2); 0.9 kept weights per
    # measured value lifted brain8's 3-seed mean from 32.75 to 33.14 dB (L1-wavelet 32.87) (R3)
    # a smaller grid gets proportionally more steps, at most 2x: brain16 (96x96) at the unlimited 78,222 steps ended
    # at 34.90 dB, 0.69 below its peak near step 23,000; at 22,000 steps it stands at 35.37 in 12 instead of 43
    # CPU-min (results/2026-12-05-time-to-quality-4x/README.md); brain8 (230x180, 1.58x) keeps its 17,413
    "by_accel": {4: {"channels": [192] * 5 + [64], "steps": 11000, "steps_pixels": 256 * 256, "steps_scale_max": 2.0,
                     "min_layer_density": 0.1, "kept_per_measurement": 0.9, "density_max": 0.9},
                 # 8x: the constant-lr curve at 2,000 steps equals the 3,000-step final on brain8b (27.17 vs 27.14)
                 # and brain4 (31.14 vs 31.15), is above it on brain16 (24.74 vs 24.09) and 0.23 dB below on brain8
                 # for a third less training, while a 64-wide last layer, 300 mask steps or a cosine decay each lost 0.7-1.1 dB on
                 # brain8b (results/2026-12-05-levers-8x/README.md)
                 8: {"steps": 2000}},
}

PRESETS = {
    "cpu": _CPU,
    # the same recipe at the paper's step counts (OES: 40k training, 60k mask steps) and Heckel & Hand's
    # 128-channel deep decoder; not measured (its 60,000 mask steps did not finish in the 470-s GPU run, R3)
    "gpu": {**_CPU, "levels": 6, "width": 1.0, "channels": 128, "steps": 40000, "mask_steps": 60000,
            # the cpu preset's per-layer floor at 4x (a tiny head can lose nearly all its weights)
            "by_accel": {4: {"channels": 192, "min_layer_density": 0.1}}},
}

NAMES = tuple(PRESETS)


def get(name: str = "cpu") -> dict:
    """A copy of preset ``name`` (``cpu`` or ``gpu``)."""
    from ..errors import UserError
    if name not in PRESETS:
        raise UserError(f"--preset must be one of {NAMES}, got {name!r}")
    return copy.deepcopy(PRESETS[name])


def density_for(n_measurements: int, n_weights: int, kept_per_measurement: float = 0.5,
                density_min: float = 0.02, density_max: float = 0.5) -> float:
    """Density that keeps ``kept_per_measurement`` weights per measured real value
    (``n_measurements``: :func:`mri_oes.problem.measurement_count`; ``n_weights``: maskable weights),
    clipped to ``[density_min, density_max]``."""
    if n_measurements <= 0 or n_weights <= 0:
        raise ValueError(f"density_for needs positive counts, got {n_measurements}, {n_weights}")
    d = kept_per_measurement * n_measurements / n_weights
    return float(min(max(d, density_min), density_max))


def for_accel(preset: dict, accel) -> dict:
    """A copy of ``preset`` with its ``by_accel`` overrides for ``accel`` (4, 8, or ``None``) applied."""
    out = copy.deepcopy(preset)
    by = out.pop("by_accel", None) or {}
    if accel is not None:
        out.update(by.get(accel) or by.get(int(accel), None) or {})
    return out


def espirit_for(preset: dict, accel) -> dict:
    """ESPIRiT keyword arguments of ``preset`` at ``accel`` (4 or 8; other values use 8×'s)."""
    e = preset["espirit"]
    return dict(e.get(accel) or e.get(int(accel or 8), e[8]))
