"""MRI presets, the density rule and the data-consistency projection (fast; phantom file)."""
import numpy as np
import pytest

from mri_oes.errors import UserError
from mri_oes.mri import presets
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem, ifft2c_np
from mri_oes.mri.metrics import rss

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_h5  # noqa: F401,E402


def test_presets_have_every_field_and_are_copies():
    cpu, gpu = presets.get("cpu"), presets.get("gpu")
    assert set(cpu) == set(gpu)
    assert gpu["steps"] > cpu["steps"]
    cpu["steps"] = -1
    assert presets.get("cpu")["steps"] != -1          # get() returns a copy
    with pytest.raises(UserError, match="--preset"):
        presets.get("tpu")
    assert presets.espirit_for(presets.get("cpu"), 8).keys() >= {"thresh", "crop"}


def test_for_accel_applies_the_per_acceleration_overrides():
    cpu = presets.get("cpu")
    assert presets.for_accel(cpu, 4)["channels"] == cpu["by_accel"][4]["channels"] != cpu["channels"]
    assert presets.for_accel(cpu, 8)["channels"] == cpu["channels"]
    assert presets.for_accel(cpu, None)["channels"] == cpu["channels"]   # unknown acceleration: base
    assert "by_accel" not in presets.for_accel(cpu, 4) and "by_accel" in cpu   # a copy, input untouched
    assert presets.for_accel(cpu, 4)["steps"] > cpu["steps"] > presets.for_accel(cpu, 8)["steps"] == 2000
    gpu = presets.get("gpu")   # the paper's step counts at every acceleration (the cpu 4x steps do not leak)
    assert presets.for_accel(gpu, 4)["steps"] == presets.for_accel(gpu, 8)["steps"] == gpu["steps"] == 40000


def test_density_rule_counts_weights_per_measurement_and_clips():
    assert presets.density_for(100_000, 1_000_000, 0.5) == pytest.approx(0.05)
    assert presets.density_for(10, 1_000_000, 0.5, density_min=0.02) == 0.02
    assert presets.density_for(10_000_000, 1_000_000, 0.5, density_max=0.5) == 0.5
    # half the measurements (8x instead of 4x) -> half the density
    assert presets.density_for(50_000, 1_000_000, 0.5) == pytest.approx(0.5 * presets.density_for(100_000, 1_000_000, 0.5))
    with pytest.raises(ValueError):
        presets.density_for(0, 10)


def test_data_consistency_keeps_measured_lines_and_fills_the_rest(phantom_h5):  # noqa: F811
    p = build_problem(load_slice(phantom_h5, 0), accel=4, seed=0)
    full = load_slice(phantom_h5, 0).kspace
    # zero estimate -> the projection is exactly the zero-filled RSS
    np.testing.assert_allclose(p.data_consistency(np.zeros(p.image_shape, np.complex64)),
                               p.zero_filled("rss"), rtol=1e-5, atol=1e-6)
    # the true coil images -> the fully sampled RSS (measured lines are the true ones)
    coil_true = ifft2c_np(full)
    np.testing.assert_allclose(p.data_consistency(coil_true, coil_images=True), rss(coil_true),
                               rtol=1e-4, atol=1e-5 * float(rss(coil_true).max()))
    # a maps-based estimate: projection never worsens the error on the measured lines
    x = p.zero_filled("espirit")
    assert p.metrics(p.data_consistency(x))["psnr"] >= p.metrics(p.zero_filled("rss"))["psnr"] - 1e-6
    with pytest.raises(UserError):
        p.data_consistency(coil_true, coil_images=True, combine="espirit")


@pytest.mark.parametrize("method,operator", [("sparse-dip", "maps"), ("conv-decoder", "coils")])
def test_experiment_networks_go_through_the_runner(phantom_h5, method, operator):  # noqa: F811
    """``mri_quality net`` trains through ``runner.run`` (as ``recon``): the density rule's exact
    density, the data-consistent curve beside the raw one, the CPU clock on every row, and the maps-free
    ConvDecoder (2·coils outputs) the runner builds from ``generator = conv-decoder``."""
    from mri_oes.experiments.mri_quality import network_recon
    p = build_problem(load_slice(phantom_h5, 0), accel=4, seed=0)
    cfg = presets.for_accel(presets.get("cpu"), 8)
    cfg.update(steps=4, mask_steps=2, layers=3, channels=8, operator=operator)
    final, best, info = network_recon(p, method, cfg, seed=0, log_every=2)
    coils = p.maps.shape[0]
    assert final.shape == ((coils,) if operator == "coils" else ()) + tuple(p.image_shape)
    if method == "sparse-dip":
        want = presets.density_for(info["n_measurements"], info["n_weights"], cfg["kept_per_measurement"],
                                   cfg["density_min"], cfg["density_max"])
        assert abs(info["density"] - want) < 1.0 / info["n_weights"] + 1e-12
        assert info["mask_steps"] == 2 and info["mask_history"]
    else:
        assert info["generator"]["kind"] == "convdecoder" and info["generator"]["out_channels"] == 2 * coils
        assert info["density"] == 1.0 and info["mask_steps"] == 0
    assert info["density"] + info["sparsity"] == pytest.approx(1.0)
    if method == "sparse-dip":   # every masked tensor's kept fraction (a starved output head shows here)
        pl = info["per_layer_density"]
        assert list(pl) == ["body.0.weight", "body.4.weight", "body.8.weight", "head.weight"]
        assert all(0 < v <= 1 for v in pl.values())
    rows = [h for h in info["history"] if "psnr" in h]
    assert [h["step"] for h in rows] == [0, 2, 4]
    assert all("dc_psnr" in h and h["cpu_s"] > 0 and h["wall_s"] > 0 for h in rows)
    assert info["time_wall_s"] >= rows[-1]["wall_s"]
    assert info["final_metrics"]["dc_psnr"] >= info["final_metrics"]["psnr"] - 1e-6   # DC never hurts here


@pytest.mark.parametrize("method", ["sparse-dip", "dip", "deep-decoder"])
@pytest.mark.parametrize("accel", [4, 8])
def test_experiment_and_recon_take_one_route_from_the_preset(method, accel):
    """``mri_quality net`` and ``recon FILE --method M --accel A`` build the same recipe from the
    preset (Recipe.from_preset): every field that shapes the network and its training agrees."""
    from mri_oes.cli import build_parser
    from mri_oes.commands.mri import recon_recipe
    from mri_oes.recipe import Recipe
    args = build_parser().parse_args(["recon", "x.h5", "--method", method, "--accel", str(accel)])
    ours = Recipe.from_preset(presets.for_accel(presets.get("cpu"), accel), accel, method=method,
                                     seed=0, log_every=50).flat()
    theirs = recon_recipe(args, method, accel, {}).flat()
    differ = {k for k in ours if ours[k] != theirs[k]}
    assert differ <= {"espirit", "threads", "progress", "device", "checkpoint_every"}, differ
    if method == "sparse-dip":
        assert ours["density_rule"] and ours["generator"] == "deep-decoder"
        assert ours["channels"] == ([192] * 5 + [64] if accel == 4 else 128)
        assert ours["steps"] == (11000 if accel == 4 else 2000)
        kept = 0.9 if accel == 4 else 0.5   # the 4x mask keeps up to 90 % of the weights (2026-11-27)
        assert ours["density_rule"] == {"kept_per_measurement": kept, "density_min": 0.02, "density_max": kept}


def test_steps_scale_with_the_grid_at_equal_compute():
    """``steps_pixels``: a grid smaller than the one the steps were sized for gets proportionally more
    steps (same compute per slice), a larger one never fewer; a given step count is taken as is."""
    from mri_oes.recipe import Recipe
    sized = Recipe().override(steps=7000, steps_pixels=256 * 256)
    assert sized.for_grid((230, 180)).steps == round(7000 * 65536 / 41400) == 11081
    assert sized.for_grid((256, 256)).steps == 7000
    assert sized.for_grid((320, 320)).steps == 7000
    assert Recipe().override(steps=7000).for_grid((230, 180)).steps == 7000
    pre = presets.for_accel(presets.get("cpu"), 4)
    pre["steps_pixels"], pre["steps_scale_max"] = 64 * 64, None
    assert Recipe.from_preset(pre, 4, method="dip").for_grid((32, 32)).steps == 4 * pre["steps"]
    given = Recipe.from_preset(pre, 4, method="dip", steps=50)
    assert given.steps_pixels is None and given.for_grid((32, 32)).steps == 50
    # without the key nothing changes, and the resume identity stays what it was
    plain = Recipe.from_preset("cpu", 8, method="dip")   # 8x: no steps_pixels
    assert plain.for_grid((32, 32)).steps == plain.steps and "steps_pixels" not in plain.identity()
    assert Recipe.from_preset(pre, 4, method="dip").identity()["steps_pixels"] == 64 * 64


def test_steps_scale_at_most_steps_scale_max():
    """``steps_scale_max`` limits the grid scaling (the 4x preset: 2x, so brain16's 96x96 grid trains 22,000
    steps, not 78,222); it is in the resume identity, dropped with a given step count, and a value below 1 is
    one error naming the field."""
    import pytest
    from mri_oes.errors import UserError
    from mri_oes.recipe import Recipe
    cpu4 = Recipe.from_preset("cpu", 4, method="sparse-dip")
    assert cpu4.steps_scale_max == 2.0
    assert cpu4.for_grid((96, 96)).steps == 22000          # 11,000 x min(65536 / 9216, 2)
    assert cpu4.for_grid((230, 180)).steps == 17413        # 1.58x: under the limit, unchanged
    assert cpu4.for_grid((256, 256)).steps == 11000
    assert cpu4.identity()["steps_scale_max"] == 2.0
    assert "steps_scale_max" not in cpu4.for_grid((96, 96)).identity()   # resolved: the steps themselves count
    given = Recipe.from_preset("cpu", 4, method="sparse-dip", steps=500)
    assert given.steps_scale_max is None and given.for_grid((96, 96)).steps == 500
    pre = presets.for_accel(presets.get("cpu"), 4)
    pre["steps_scale_max"] = 0.5
    with pytest.raises(UserError, match="steps_scale_max"):
        Recipe.from_preset(pre, 4, method="sparse-dip").validate()


def test_lr_decay_start_reaches_the_run_and_its_identity():
    """A preset's ``lr_decay_start`` reaches the resolved recipe and both resume identities; without
    it, recon's and the runner's resume identities are those of earlier runs."""
    import torch
    import operators as O
    from mri_oes.problem import Problem
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run_identity
    gp = Problem(O.Denoise((2, 32, 32)), torch.zeros(1, 2, 32, 32), (32, 32))
    pre = presets.for_accel(presets.get("cpu"), 4)
    plain = Recipe.from_preset(pre, 4, method="sparse-dip")
    assert plain.lr_decay_start == 0.0 and "lr_decay_start" not in plain.identity()
    assert "lr_decay_start" not in run_identity(gp, plain.for_problem(gp), "recon")["config"]
    late = Recipe.from_preset({**pre, "lr_decay_start": 0.8}, 4, method="sparse-dip")
    rc = late.for_problem(gp)
    assert rc.lr_decay_start == 0.8 and late.identity()["lr_decay_start"] == 0.8
    assert run_identity(gp, rc, "recon")["config"]["lr_decay_start"] == 0.8
    assert Recipe.from_preset({**pre, "lr_decay_start": 0.8}, 4, method="l1-wavelet").identity() == \
        Recipe.from_preset(pre, 4, method="l1-wavelet").identity()


def test_preset_floor_never_exceeds_the_density_the_rule_gives():
    """On a problem with few measurements the density rule may fall below the 4x preset's per-layer
    floor (0.1): the floor then becomes the density (no impossible mask request); so does a given
    density below it; a given density above it keeps the preset's floor. A floor the user gave is never
    lowered: above the rule's density it is refused, as against a given density."""
    import torch
    import operators as O
    from mri_oes.problem import Problem
    from mri_oes.recipe import Recipe
    pre = presets.for_accel(presets.get("cpu"), 4)
    assert pre["min_layer_density"] == 0.1

    def recipe(**given):
        return Recipe.from_preset(pre, 4, method="sparse-dip", **given)

    gp = Problem(O.Denoise((2, 16, 16)), torch.zeros(1, 2, 16, 16), (16, 16))
    rc = recipe().for_problem(gp)
    assert rc.density == pre["density_min"] < 0.1 and rc.min_layer_density == rc.density
    given = recipe(density=0.3).for_problem(gp)
    assert (given.density, given.min_layer_density) == (0.3, 0.1)
    low = recipe(density=0.05)   # recon --density 0.05 at 4x
    assert low.min_layer_density == 0.05 and low.for_problem(gp).min_layer_density == 0.05
    # an explicit floor is the user's: kept as given (the mask then refuses the impossible request)
    assert recipe(density=0.05, min_layer_density=0.2).min_layer_density == 0.2
    # ... and above the rule's density it is refused, not silently lowered; at or below it, it is kept
    with pytest.raises(UserError, match="--min-layer-density 0.1 is above the density 0.0200"):
        recipe(min_layer_density=0.1).for_problem(gp)
    explicit = recipe(min_layer_density=0.01)
    assert explicit.for_problem(gp).min_layer_density == 0.01
    # whether the floor was given never enters the resume identity (it only decides cap or refuse)
    assert explicit.identity() == Recipe.from_preset({**pre, "min_layer_density": 0.01}, 4,
                                                            method="sparse-dip").identity()


def test_summary_counts_cpu_minutes_of_cpu_runs_only():
    """A GPU run's process time is the host's, not a CPU reconstruction's: the CPU-minutes table leaves it
    out and the every-run table shows its wall minutes with the device."""
    from mri_oes.experiments.mri_quality import summarize
    base = {"scan": "b", "accel": 4, "seed": 0, "method": "sparse-dip", "variant": "default", "density": 0.9,
            "steps": 10, "mask_steps": 1, "best_step": 10, "final_psnr": 30.0, "final_ssim": 0.8,
            "final_network_psnr": 29.0, "final_network_ssim": 0.7, "best_psnr": 29.0, "best_ssim": 0.7}
    rows = [{**base, "run": "cpu", "cpu_min": 40.0},
            {**base, "run": "gpu", "seed": 1, "cpu_min": 2.5, "device": "cuda", "time_wall_s": 180.0}]
    text = summarize(rows)
    cpu_table = text.split("## CPU minutes")[1].split("##")[0]
    assert "| b | 4x | – | – | – | – | 40.0 |" in cpu_table      # the mean of the CPU run alone
    assert "3.0 wall (cuda)" in text and "| 40.0 |" in text
    assert "30.00 / 0.800 (n=2)" in text                            # both seeds in the quality table


def test_experiment_names_a_missing_gpu_in_one_line(tmp_path):
    """``mri_quality net --device cuda`` on a machine without CUDA stops before any work, naming the flag."""
    import torch
    from mri_oes.experiments.mri_quality import main
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit) as e:
        main(["net", "--out", str(tmp_path), "--scan", "brain8", "--accel", "4", "--method", "sparse-dip",
              "--device", "cuda"])
    assert "--device cuda" in str(e.value) and not any(tmp_path.iterdir())
