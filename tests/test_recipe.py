"""The recipe: one frozen carrier of network options, its overrides, resolution, checks and identity."""
import dataclasses

import pytest
import torch

import operators as O
from mri_oes.errors import UserError
from mri_oes.problem import Problem
from mri_oes.recipe import Recipe


def test_frozen_and_read_through_its_parts():
    r = Recipe().override(steps=30, density=0.2, method="dip")
    assert (r.steps, r.density, r.method) == (30, 0.2, "dip")
    assert (r.training.steps, r.mask.density, r.network.method) == (30, 0.2, "dip")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.training.steps = 5
    assert Recipe().steps == 2000 and Recipe().density == 0.05   # one default per field, in the recipe


def test_override_refuses_an_unknown_option_naming_its_flag():
    with pytest.raises(UserError, match=r"unknown option --stop-rules"):
        Recipe().override(stop_rules="image-change")
    with pytest.raises(UserError, match=r"unknown option --min-layer-density-given"):
        Recipe().override(min_layer_density_given=True)


def test_override_ignores_options_not_given_and_a_given_density_replaces_the_rule():
    r = Recipe.from_preset("cpu", 4, method="sparse-dip")
    assert r.density is None and r.density_rule and r.steps_pixels
    assert r.override(steps=None, density=None) == r
    given = r.override(density=0.3, steps=40)
    assert given.density == 0.3 and given.density_rule is None and given.steps_pixels is None


def test_for_problem_resolves_depth_steps_and_density_rule():
    gp = Problem(O.Denoise((2, 32, 32)), torch.zeros(1, 2, 32, 32), (32, 32))
    r = Recipe.from_preset("cpu", 8, method="sparse-dip")
    fit = r.for_problem(gp)
    assert fit.resolved and not r.resolved
    assert fit.levels == 3 and fit.steps == r.steps   # 32x32: a 3-level hourglass; 8x: no steps scaling
    assert r.density_rule["density_min"] <= fit.density <= r.density_rule["density_max"]
    dense = Recipe.from_preset("cpu", 8, method="dip").for_problem(gp)
    assert dense.density == 0.05   # a dense run records the recipe's default density


def test_validate_checks_each_option_once_with_its_flag():
    with pytest.raises(UserError, match="--stop-rule must be one of"):
        Recipe().override(stop_rule="never").validate()
    with pytest.raises(UserError, match="--density must be < 1"):
        Recipe().override(density=1.0).validate()
    with pytest.raises(UserError, match="--method must be one of"):
        Recipe().override(method="oes").validate()
    with pytest.raises(UserError, match="--mask-source must be one of"):
        Recipe().override(mask_source="imp").validate()
    assert Recipe().validate() == Recipe()


def test_identity_leaves_off_options_out_and_never_runtime():
    r = Recipe().for_grid((64, 64))
    ident = r.identity()
    assert not {"precision", "lr_decay_start", "stop_rule", "stop_tol", "threads", "progress", "mask_source",
                "synflow_rounds"} & set(ident)
    assert ident["device"] == "cpu" and ident["density"] == 0.05 and ident["levels"] == 4
    assert r.with_runtime(threads=4, progress=True).identity() == ident
    on = r.override(precision="bfloat16", stop_rule="image-change", mask_source="snip").identity()
    assert on["precision"] == "bfloat16" and on["stop_rule"] == "image-change" and "stop_tol" in on
    assert on["mask_source"] == "snip"
    # a classical MRI run is identified by its acquisition and solver only
    l1 = Recipe.from_preset("cpu", 4, method="l1-wavelet")
    assert set(l1.identity()) == {"method", "accel", "mask_type", "center_fraction", "seed", "lamda", "max_iter",
                                  "espirit"}
    assert l1.override(steps=5, lr=0.5).identity() == l1.identity()


def test_learn_mask_on_an_mri_file_learns_the_mask_recon_learns(tmp_path):
    """One route: ``learn-mask FILE.h5`` trains the network ``recon --method sparse-dip`` trains (the
    preset's recipe at the slice's acceleration), so the mask it writes is the mask recon learns."""
    from mri_oes import datasets
    from mri_oes.cli import main
    from mri_oes.masks import Mask
    brain = str(datasets.bundled_brain())
    common = ["--accel", "4", "--mask-steps", "5", "--threads", "1", "--no-progress"]
    assert main(["learn-mask", brain, *common, "--out", str(tmp_path / "mask")]) == 0
    assert main(["recon", brain, "--slice", "0", "--method", "sparse-dip", "--steps", "1", "--workers", "1",
                 *common, "--out", str(tmp_path / "recon")]) == 0
    learned = Mask.load(tmp_path / "mask" / "mask.safetensors")
    recon = Mask.load(next((tmp_path / "recon").glob("sparse-dip_4x/slices/*/000/mask.safetensors")))
    assert learned.generator_config() == recon.generator_config()
    assert learned.generator_config().kind == "deep-decoder"
    assert learned.keep.keys() == recon.keep.keys()
    assert all(torch.equal(learned.keep[k], recon.keep[k]) for k in learned.keep)
