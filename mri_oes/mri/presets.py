"""Named MRI defaults for the network methods (``mri-oes recon --preset {cpu,gpu}``).

``get(name) -> dict`` returns a fresh copy of a preset; :func:`density_for` turns the preset's
density rule into a density for one problem. Every field (values measured in
``results/2026-11-26-mri-quality/``; see its README for the numbers behind each choice):

* ``generator`` — the network ``sparse-dip`` masks: ``hourglass`` (the OES net), ``deep-decoder``
  or ``conv-decoder``; ``operator`` — ``maps`` (``A = M F S``, ESPIRiT) or ``coils`` (maps-free
  :class:`operators.mri_coils.CoilImagesMRI`, the generator outputs ``2·coils`` channels).
* ``levels``, ``width`` — hourglass scales and channel multiplier (``GeneratorConfig.oes``);
  ``layers``, ``channels`` — deep decoder / ConvDecoder depth and width.
* ``steps`` — training steps (dense and sparse; the FINAL iterate is the result, no early stop);
  ``mask_steps`` — OES mask-learning steps for ``sparse-dip`` with a density.
* ``kept_per_measurement`` — density rule: keep this many weights per measured real value
  (:func:`density_for`), clipped to ``[density_min, density_max]``; ``density`` (not ``None``)
  overrides the rule with a fixed fraction.
* ``min_layer_density`` — per-layer floor of the OES top-k (against layer collapse).
* ``lr`` — Adam learning rate (weights and mask logits); ``lr_final`` — cosine decay target
  (``None`` = constant); ``grad_clip`` — global gradient-norm clip (0 = off).
* ``input_noise_std`` — std of the noise added to ``z`` each step (0 = off).
* ``output_average`` — the result is the running average of the iterates with this decay (the
  original DIP code's smoothing, 0.99 there); 0 = the last iterate.
* ``data_consistency`` — project the final image onto the measured k-space and report the RSS of
  the projected coil images (:meth:`mri_oes.mri.problem.MRIProblem.data_consistency`).
* ``espirit`` — ESPIRiT settings per acceleration (``{accel: {calib_width, thresh, crop}}``,
  ``None`` values = the automatic rule of :func:`mri_oes.mri.espirit.espirit_params`).
* ``threads`` — torch threads the preset was timed with; ``budget_min`` — the wall-time target per
  slice it was sized for (cpu: 30 min on this 2-core CPU).
"""
from __future__ import annotations

import copy

_ESPIRIT = {4: {"calib_width": None, "thresh": 0.02, "crop": 0.0},
            8: {"calib_width": None, "thresh": 0.02, "crop": 0.0}}

# Choices and the measurement behind each (seed 0, 1,200 steps + 400 mask steps, 1 thread, final
# iterate; results/2026-11-26-mri-quality/README.md has the tables):
# * generator: deep decoder 6 layers x 64 channels through the ESPIRiT maps. Sparse-DIP on it
#   30.41 dB / 0.850 (+DC) on brain8 4x vs 28.72 / 0.822 on the OES hourglass (5 scales, half width);
#   dense deep decoder beat the dense hourglass on brain8 (29.74 vs 28.37) and on brain4 4x, the held-out
#   scan (33.11 vs 32.54). Maps-free ConvDecoder 5x32: 24.69; maps-free hourglass at 8x: 19.7 vs 21.2;
# * density rule 0.5 kept weights per measured real value: hourglass Sparse-DIP 0.20 density 28.72
#   vs fixed 5 % 27.40 (brain8 4x); on the 25k-weight deep decoder the rule clips at density_max 0.5;
# * per-layer floor 0.005: no effect at these densities (identical to floor 0); kept as a guard;
# * data consistency on: +0.2 to +3.0 dB and +0.01 to +0.18 SSIM on every network run;
# * lr decay / grad clipping off: cosine 1e-2 -> 1e-3 + clip 1.0 lost 0.7 dB (+DC) at 1,200 steps;
# * input noise off: std 0.05 lost 1.5 dB (+DC);
# * ESPIRiT default (crop 0, thresh 0.02, auto calib): no tested variant helps on all three scans
#   at 8x (crop 0.95: +1.2 dB L1 on brain8, -2.7 dB on brain8b);
# * cpu step counts are sized by time, NOT measured for quality (only 1,200 steps were run): about
#   0.11 CPU-s per deep-decoder step on 230x180 at 1 thread -> 5,000 + 1,500 mask steps ~ 12-25 CPU-min.
_CPU = {
    "generator": "deep-decoder", "operator": "maps", "levels": 5, "width": 0.5,
    "layers": 6, "channels": 64,
    "steps": 5000, "mask_steps": 1500,
    "kept_per_measurement": 0.5, "density": None, "density_min": 0.02, "density_max": 0.5,
    "min_layer_density": 0.005,
    "lr": 1e-2, "lr_final": None, "grad_clip": 0.0, "input_noise_std": 0.0,
    "output_average": 0.0,
    "data_consistency": True,
    "espirit": _ESPIRIT, "threads": 1, "budget_min": 30,
}

PRESETS = {
    "cpu": _CPU,
    # the same recipe at the paper's step counts (OES: 40k training, 60k mask steps) and Heckel & Hand's
    # 128-channel deep decoder; NOT run here (no GPU in this session)
    "gpu": {**_CPU, "levels": 6, "width": 1.0, "channels": 128, "steps": 40000, "mask_steps": 60000,
            "threads": None, "budget_min": None},
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


def espirit_for(preset: dict, accel) -> dict:
    """ESPIRiT keyword arguments of ``preset`` at ``accel`` (4 or 8; other values use 8×'s)."""
    e = preset["espirit"]
    return dict(e.get(accel) or e.get(int(accel or 8), e[8]))
