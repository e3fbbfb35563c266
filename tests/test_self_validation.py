"""The self-validation stopping rule: held-out measured k-space lines decide when the training fit stops
(``core.fit(holdout=..., stop_rule="self-validation")``; recon ``--stop-rule self-validation``)."""
import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_kspace, reference_evaluator, write_file  # noqa: E402

from mri_oes import methods  # noqa: E402
from mri_oes.generators import GeneratorConfig  # noqa: E402

CFG = GeneratorConfig.oes(out_channels=2, levels=3, width=0.25, mri=True)
RULE = dict(stop_rule="self-validation", stop_patience=30)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    f = write_file(tmp_path_factory.mktemp("sv") / "phantom.h5", phantom_kspace(slices=1)[0])
    return build_problem(load_slice(f, 0), 4, "equispaced", 0), f


def test_holdout_lines_are_measured_outside_acs_disjoint_and_seeded(phantom):
    from mri_oes.mri.data import acs_lines
    p, _ = phantom
    h = p.holdout_lines(0.2, 0)
    assert tuple(h.shape) == (1, 1, p.mask.size)
    held = h.numpy().reshape(-1) > 0
    measured = np.asarray(p.mask) > 0
    lo, w = acs_lines(measured)
    outside = measured.copy()
    outside[lo:lo + w] = False
    assert held.any() and not (held & ~outside).any()          # measured, never ACS
    assert held.sum() == max(1, round(0.2 * outside.sum()))
    assert torch.equal(p.holdout_lines(0.2, 0), h)              # seeded
    assert not torch.equal(p.holdout_lines(0.2, 1), h)          # another seed, other lines
    assert p.holdout_lines(0.5, 0).sum() > h.sum()


def _fit(p, evaluate=None, steps=150, **kw):
    torch.manual_seed(0)
    net, z, _ = methods.setup_generator(CFG, p.image_shape, 0)
    return methods.train_generator(net, z, p.operator, p.y, steps=steps, lr=1e-2, seed=0, log_every=5,
                                   output_average=0.9, evaluate=evaluate, holdout=p.holdout_lines(0.3, 0),
                                   **{**RULE, **kw})


def test_stop_fires_and_returns_the_lowest_held_out_output(phantom):
    p, _ = phantom
    res = _fit(p, steps=400)
    rows = [h for h in res.history if "holdout_loss" in h]
    assert rows and all(np.isfinite(h["holdout_loss"]) for h in rows)
    assert res.stop_rule == "self-validation" and res.stopped_at is not None and res.steps == res.stopped_at < 400
    best = min(rows, key=lambda h: h["holdout_loss"])
    assert res.holdout_best_step == best["step"] and res.stopped_at - best["step"] >= RULE["stop_patience"]
    assert res.final_metrics["holdout_loss"] == best["holdout_loss"]
    # the output is the averaged output at that step: a rule-free run of that many steps ends there
    plain = _fit(p, steps=best["step"] + 1, stop_rule="none")
    assert torch.allclose(res.output, plain.output, atol=1e-5)
    assert res.summary()["holdout_best_step"] == best["step"]


def test_held_out_lines_are_left_out_of_the_data_loss(phantom):
    """The fit's data loss ignores the held-out lines: changing y there changes no step of the fit."""
    p, _ = phantom
    h = p.holdout_lines(0.3, 0)
    net, z, _ = methods.setup_generator(CFG, p.image_shape, 0)
    a = methods.train_generator(net, z, p.operator, p.y, steps=20, seed=0, log_every=5, holdout=h)
    net, z, _ = methods.setup_generator(CFG, p.image_shape, 0)
    y2 = p.y + 5.0 * h * p.y
    b = methods.train_generator(net, z, p.operator, y2, steps=20, seed=0, log_every=5, holdout=h)
    assert torch.equal(a.output, b.output)
    assert [r["data_loss"] for r in a.history] == [r["data_loss"] for r in b.history]
    assert a.history[-1]["holdout_loss"] != b.history[-1]["holdout_loss"]


def test_self_validation_never_reads_the_reference(phantom):
    """A wrong reference (flipped, scaled) and none at all: the same stopped_at, step and image."""
    p, _ = phantom
    right = _fit(p, evaluate=reference_evaluator(p, p.reference))
    wrong = _fit(p, evaluate=reference_evaluator(p, np.flip(p.reference, -1) * 0.3 + 1.0))
    blind = _fit(p)
    assert right.stopped_at is not None
    assert wrong.stopped_at == blind.stopped_at == right.stopped_at
    assert wrong.holdout_best_step == blind.holdout_best_step == right.holdout_best_step
    assert torch.equal(wrong.output, right.output) and torch.equal(blind.output, right.output)
    assert wrong.final_metrics["psnr"] != right.final_metrics["psnr"]   # the references did differ


def test_rule_needs_held_out_measurements():
    import operators as O
    A = O.Denoise((1, 16, 16))
    net, z, _ = methods.setup_generator(GeneratorConfig.oes(out_channels=1, levels=2, width=0.125), (16, 16), 0)
    with pytest.raises(ValueError, match="holdout"):
        methods.train_generator(net, z, A, torch.zeros(1, 1, 16, 16), steps=2, stop_rule="self-validation")


def test_identity_includes_rule_and_fraction():
    from mri_oes.errors import UserError
    from mri_oes.recipe import Recipe
    base = Recipe.from_preset("cpu", 8, method="sparse-dip")
    assert "holdout_fraction" not in base.identity()
    assert "holdout_fraction" not in base.override(stop_rule="image-change", holdout_fraction=0.3).identity()
    on = base.override(stop_rule="self-validation", holdout_fraction=0.3)
    assert on.identity()["stop_rule"] == "self-validation" and on.identity()["holdout_fraction"] == 0.3
    assert on.identity() != base.override(stop_rule="self-validation").identity()
    assert "holdout_fraction" not in on.fit_options()
    with pytest.raises(UserError, match="--holdout-fraction"):
        base.override(holdout_fraction=1.0).validate()


def test_recon_records_self_validation(phantom, tmp_path):
    """recon --stop-rule self-validation --holdout-fraction: the slice record carries the rule, the step
    it stopped at, the step of its output and the fraction; the final image is data-consistent with
    every measured line (held-out ones included)."""
    from mri_oes.cli import main
    _, f = phantom
    torch.set_num_threads(1)
    out = tmp_path / "out"
    args = ["recon", str(f), "--slice", "0", "--method", "dip", "--accel", "4", "--out", str(out), "--workers",
            "1", "--steps", "1000", "--levels", "3", "--width", "0.25", "--log-every", "5",
            "--stop-rule", "self-validation", "--stop-patience", "30", "--holdout-fraction", "0.3",
            "--data-consistency"]
    assert main(args) == 0
    d = out / "dip_4x" / "slices" / "phantom" / "000"
    m = json.loads((d / "metrics.json").read_text())
    assert m["stop_rule"] == "self-validation" and m["holdout_fraction"] == 0.3
    # the phantom fires ESPIRiT's fold-over statistic: two map sets, stopped at step 595 (one set: 220)
    assert m["stopped_at"] is not None and m["steps"] == m["stopped_at"] < 1000
    assert m["holdout_best_step"] <= m["stopped_at"] - 30
    assert any("holdout_loss" in h for h in m["history"])
    ident = json.loads((d / "identity.json").read_text())
    assert "self-validation" in json.dumps(ident) and '"holdout_fraction": 0.3' in json.dumps(ident)


def test_self_validation_resumes_to_the_same_stop(phantom, tmp_path):
    """A killed fit resumes with its lowest held-out output (checkpointed): same stop, same image."""
    p, _ = phantom
    full = _fit(p)
    ck = tmp_path / "sv.safetensors"

    def crash(row):
        if row["step"] == full.holdout_best_step + 10:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _fit(p, checkpoint=ck, checkpoint_every=full.holdout_best_step + 5, callback=crash)
    resumed = _fit(p, checkpoint=ck, checkpoint_every=full.holdout_best_step + 5)
    assert resumed.resumed_from == full.holdout_best_step + 5
    assert resumed.stopped_at == full.stopped_at and resumed.holdout_best_step == full.holdout_best_step
    assert torch.allclose(resumed.output, full.output, atol=1e-6)
