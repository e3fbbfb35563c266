"""Named MRI defaults for the network methods (``mri-oes recon --preset {cpu,gpu}``).

``get(name) -> dict`` returns a fresh copy of a preset; :func:`density_for` turns the preset's
density rule into a density for one problem. Every field (values measured in
``results/2026-11-26-mri-quality/``; see its README for the numbers behind each choice):

* ``generator`` — the network ``sparse-dip`` masks: ``hourglass`` (the OES net), ``deep-decoder``
  or ``conv-decoder``; ``operator`` — ``maps`` (``A = M F S``, ESPIRiT) or ``coils`` (maps-free
  :class:`operators.mri_coils.CoilImagesMRI`, the generator outputs ``2·coils`` channels).
* ``levels``, ``width`` — hourglass scales and channel multiplier (``GeneratorConfig.oes``);
  ``layers``, ``channels`` — deep decoder / ConvDecoder depth and width (``channels`` may be a list of
  per-layer widths; its length is then the depth).
* ``steps`` — training steps (dense and sparse; the FINAL iterate is the result, no early stop);
  ``mask_steps`` — OES mask-learning steps for ``sparse-dip`` with a density; ``steps_pixels`` (optional)
  — the grid size (pixels) ``steps`` were sized for: a smaller grid gets proportionally more steps (the
  same compute per slice, :func:`mri_oes.mri.volume.steps_for_grid`); a ``--steps`` flag is taken as is.
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
* ``data_consistency`` — project the final image onto the measured k-space and report the RSS of
  the projected coil images (:meth:`mri_oes.mri.problem.MRIProblem.data_consistency`).
* ``espirit`` — ESPIRiT settings per acceleration (``{accel: {calib_width, thresh, crop}}``,
  ``None`` values = the automatic rule of :func:`mri_oes.mri.espirit.espirit_params`).
* ``by_accel`` — per-acceleration overrides of any of these keys (``{accel: {key: value}}``, applied by
  :func:`for_accel`; an undersampled file of unknown acceleration gets the base values).
* ``threads`` — torch threads per slice the preset was sized for; ``budget_min`` — the wall-time target
  per slice (cpu: 30 min on this 2-core CPU: a lone slice gets both cores through recon's idle-core
  rule, :func:`mri_oes.runtime.threads_for_tasks`; a dataset runs two 1-thread slices at a time).
"""
from __future__ import annotations

import copy

_ESPIRIT = {4: {"calib_width": None, "thresh": 0.02, "crop": 0.0},
            8: {"calib_width": None, "thresh": 0.02, "crop": 0.0}}

# Choices and the measurement behind each (brain8 4x, seed 0, 1 thread; PSNR / SSIM of the final image,
# data-consistent; results/2026-11-26-mri-quality-preset/README.md has the tables and curves):
# * generator: deep decoder 6 layers x 128 channels through the ESPIRiT maps, OES mask at density 0.5:
#   31.58 / 0.868 after 1,000 + 5,000 steps (20 CPU-min), still rising. Same loop with 64 channels:
#   30.53 after 8,000 steps (13 CPU-min, flat from 6,000); OES hourglass (5 scales, half width) at
#   density 0.49: 30.42 after 8,000 steps (14 CPU-min); at density 0.20 it spiked at step 7,500 (final
#   24.4, best 29.3). ConvDecoder 6x64 through the maps: +0.6 dB raw over the 64-channel deep decoder
#   at 1,200 steps for 3x the CPU time. Dense hourglass DIP (not Sparse-DIP) 31.22 / 0.873 at 5,000;
# * density rule 0.5 kept weights per measured real value: clips at density_max 0.5 on the deep
#   decoder (99k weights); on the hourglass 0.20 beat a fixed 5 % by 1.3 dB at 1,200 steps;
# * output_average 0.99 (running average of the iterates): +0.2 dB raw, +0.04 dB after data
#   consistency at 8,000 steps (64 channels), and it smooths the late iterates; kept;
# * lr decay off: cosine 1e-2 -> 1e-3 changed the data-consistent result by +0.01 dB at 8,000 steps
#   (64 channels) and lost 0.7 dB at 1,200; gradient clipping and input noise lost 0.7 / 1.5 dB;
# * per-layer floor 0.005: no effect at these densities; kept as a guard;
# * data consistency on: +0.2 to +3.0 dB and +0.01 to +0.18 SSIM on every network run;
# * ESPIRiT default (crop 0, thresh 0.02, auto calib): no tested variant helps on all three scans
#   at 8x (crop 0.95: +1.2 dB L1 on brain8, -2.7 dB on brain8b);
# * cpu step counts sized by measured time (1 thread, two runs sharing the 2-core CPU): 0.19 CPU-s per
#   step on 230x180 and 0.45 on 256x256 (mask steps 0.2 / 0.45 s). 5,000 steps took 20 / 45 CPU-min;
#   3,000 + 1,000 mask steps take ~13 / ~30 CPU-min, within the 30-minute budget. The 5,000-step
#   curves at step 3,000 (data-consistent, averaged): brain8 4x 31.21 (5,000: 31.58), brain8b 8x 27.14
#   (27.36), brain4 8x 31.15 (30.79: the average passed its peak there).
# * allocator tuning (runtime.tune_allocator) halved the 256x256 step time: 128 channels 0.2 s/step,
#   192 channels 0.38 s/step (1 thread, two runs sharing the CPU);
# * by_accel 4x -> 192 channels (same 3,000 + 1,000 steps): brain8 31.78 / 0.873 (19 CPU-min; 128
#   channels: 31.21 / 0.861, 8,000 steps of 128: 31.81 / 0.873 in 25), brain8b 35.46 / 0.917 (26 CPU-min),
#   brain4 38.97 / 0.957 (25 CPU-min); L1-wavelet 32.87 / 0.870, 35.47 / 0.873, 39.61 / 0.942.
# * by_accel 4x -> 7,000 training steps (stop 18), sized for a lone slice on both cores (2 threads: 1.96x
#   the 1-thread speed, 192 channels on 230x180; recon gives a lone slice the idle cores), seed 0: brain8
#   32.42 / 0.885 (37 CPU-min = ~19 min wall at 2 threads; 3,000 steps: 31.78), brain8b 36.14 / 0.920
#   (53 CPU-min = ~27 min; its final 0.64 dB below its best: an Adam bump at step 6,800), brain4 40.26 /
#   0.962 (48 CPU-min); L1-wavelet 32.87 / 0.870, 35.47 / 0.873, 39.61 / 0.942. Still rising ~0.1 dB per 1,000.
#   More steps beat a wider net at equal time: 256 channels (density 0.26, the same kept weights) gave
#   32.17 after 5,000 steps in 41 CPU-min.
# * precision float32: bfloat16 autocast runs 1.9x faster per step on this CPU (benchmarks/precision.py)
#   but fitted worse per step: brain8 4x, 192 channels, 31.05 at step 3,000 (float32 31.78), 31.96 after
#   8,000 (22 CPU-min); 256 channels 32.06 after 5,000 (float32 32.17). Not adopted (one run each).
# * by_accel 4x -> cosine lr decay 1e-2 -> 1e-3 over the 7,000 steps (stop 19): brain8 32.41 / 0.882
#   (constant 32.42), brain8b 36.39 / 0.919 with its final at its best (constant: 36.14, 0.64 dB below its
#   best after an Adam bump at step 6,800). Not adopted: a narrower full-resolution layer (channels
#   [192]*5 + [64]; that layer is most of a step's compute), 1.75x faster per step: brain8 32.80 / 0.889
#   after 12,000 steps in 36 CPU-min (seed 0), but on brain8b the sparse net stopped training at step ~200
#   (loss flat at 0.0084, 26.1 dB after DC): its OES mask keeps 4 of the 128 output-head weights (3.1 %;
#   the per-layer floor 0.005 does not protect so small a layer).
# * stop 20, not adopted: per-layer floor 0.25 (the head keeps >= 25 %, not ~5 %): brain8 4x 32.09 (-0.32),
#   brain8b 36.47 (+0.08). 11,000 steps on brain8 (steps_pixels = 256*256: equal compute per slice): cosine
#   32.30 (its DC image peaks mid-decay), constant lr 32.69 / 0.889 (L1 mean 32.87) - but constant lr gave
#   brain8b its late Adam bump; 58 CPU-min. brain4 4x at this preset: 40.29 / 0.963 (L1 mean 39.61 / 0.942),
#   final = best, 26 min wall at 2 threads.
# * stop 21, by_accel 4x -> channels [192]*5 + [64], 11,000 steps sized for 256x256 (steps_pixels; 17,413 on
#   brain8's 230x180), constant lr, per-layer floor 0.1 (the 64->2 head keeps >= 13 of 128 weights; without
#   the floor it kept 4 on brain8b and the net stopped training), seed 0, 1 thread, two runs sharing the
#   CPU: brain8 32.89 / 0.890 (was 32.41 / 0.882; L1 mean 32.87 / 0.870) in 52.6 CPU-min (~27 min wall at
#   2 threads), brain8b 36.47 / 0.918 (36.39 / 0.919) in 44.3, brain4 40.55 / 0.962 (40.29 / 0.963) in
#   44.5; final = best on all three (no late Adam bump at constant lr in these runs). Seed 1: brain8 32.51 /
#   0.881 (L1 seed 1 32.63 / 0.862), brain8b 37.13 / 0.926 (35.44 / 0.875).
# * stop 22, not adopted: output averaging 0.999 at 4x (a ~1,000-step window, not ~100): brain8 seed 0
#   32.885 / 0.890 (0.99: 32.887), seed 1 32.487 / 0.881 (32.509); the iterates are bit-identical, so the
#   longer window only lags the still-rising curve: the brain8 gap is bias, not iterate noise.
# * stop 23, lr kept at 1e-2: brain8 4x seed 0, average_dc_psnr at step 2,000 (of 17,413): lr 1e-2 31.51,
#   2e-2 31.00 (-0.51), 5e-3 31.12 (-0.39). More steps (12,500 x 256^2/pixels = 19,787 on brain8,
#   seed 1): 32.56 / 0.882 (+0.05; L1 32.63), over the 30-minute budget to close the gap that way. The dense
#   deep decoder (same net and steps, no mask) reaches 33.10 / 0.895 on brain8 seed 0 (Sparse-DIP 32.89, L1
#   32.99): at this budget nothing overfits (final = best), and the mask's lower capacity limits brain8;
#   a higher density (0.9) across seeds is the next measurement.
# * stop 24, by_accel 4x -> density rule 0.9 kept weights per measured value, clipped at 0.9 (was 0.5 / 0.5);
#   results/2026-11-27-mri-gpu/README.md. brain8 33.14 / 0.894 over seeds 0-2 (seed 0 on this CPU 33.18 / 0.895
#   in 51 CPU-min; seeds 1, 2 on an H200) against L1-wavelet 32.87 / 0.870 (density 0.5: 32.75 / 0.888);
#   brain8b 36.79 / 0.923 over seeds 0-2 (seeds 1, 2 on this CPU: -0.37 and +0.16 against density 0.5 on
#   those seeds; L1 35.47); brain4 41.17 / 0.965 over seeds 0-2 (density clips at 0.74 there; seed 1 +1.07
#   against 0.5; L1 39.61). Final = best (raw) on
#   brain8/brain4, 0.18 / 0.18 / 0.34 dB below on brain8b seeds 0-2 (Adam spikes at this density). GPU runs of one seed are not
#   bitwise repeatable (two runs differed by up to 0.5 dB at one step; their 3-seed means by 0.00).
#   Density 0.75 (stop 22) sat between: brain8 s0 32.81, s1 32.74.
_CPU = {
    "generator": "deep-decoder", "operator": "maps", "levels": 5, "width": 0.5,
    "layers": 6, "channels": 128,
    "steps": 3000, "mask_steps": 1000,
    "kept_per_measurement": 0.5, "density": None, "density_min": 0.02, "density_max": 0.5,
    "min_layer_density": 0.005,
    "lr": 1e-2, "lr_final": None, "grad_clip": 0.0, "input_noise_std": 0.0,
    "output_average": 0.99, "precision": "float32",
    "data_consistency": True,
    "espirit": _ESPIRIT, "threads": 2, "budget_min": 30,
    # 4x measures twice the values of 8x: a wider net trained longer (the 8x curves peak near 3,000
    # steps: brain4 8x 31.15 at 3,000, 30.79 at 5,000). Stop 21: 192 channels but a 64-wide full-resolution
    # layer (1.75x faster per step), 11,000 steps on 256x256 and proportionally more on smaller grids
    # (brain8's 230x180: 17,413), constant lr, a per-layer floor of 10 % (the 128-weight head kept 4
    # weights without it and the net stopped training on brain8b)
    # Stop 24: at 4x the mask keeps 90 % of the weights (0.9 per measured value, at most 0.9): brain8's limit
    # was the mask's capacity (the dense net 33.10 > Sparse-DIP 0.5 32.89), not overfitting (final = best)
    "by_accel": {4: {"channels": [192] * 5 + [64], "steps": 11000, "steps_pixels": 256 * 256,
                     "min_layer_density": 0.1, "kept_per_measurement": 0.9, "density_max": 0.9}},
}

PRESETS = {
    "cpu": _CPU,
    # the same recipe at the paper's step counts (OES: 40k training, 60k mask steps) and Heckel & Hand's
    # 128-channel deep decoder; NOT run here (no GPU in this session)
    "gpu": {**_CPU, "levels": 6, "width": 1.0, "channels": 128, "steps": 40000, "mask_steps": 60000,
            "threads": None, "budget_min": None,
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
