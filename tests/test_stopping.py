"""The ground-truth-free stopping rule of the one fitting loop (``core.fit(stop_rule="image-change")``)."""
import pytest
import torch
from skimage import data

import operators as O
from mri_oes import core, methods
from mri_oes.errors import UserError
from mri_oes.generators import GeneratorConfig

CFG = GeneratorConfig.oes(levels=3, width=0.25)
#: a tolerance the small denoising fit meets after ~70 of its 200 steps (its averaged output settles)
RULE = dict(stop_rule="image-change", stop_tol=5.0, stop_patience=20)


@pytest.fixture(scope="module")
def case():
    img = torch.tensor(data.astronaut()[100:228:2, 150:278:2].transpose(2, 0, 1) / 255.0, dtype=torch.float32)
    A = O.Denoise(img.shape, noise=O.GaussianNoise(25 / 255, clip=(0, 1)))
    return img, A, A.measure(img[None], seed=1)


def _fit(A, y, steps=200, output_average=0.9, **kw):
    net, z, _ = methods.setup_generator(CFG, (64, 64), 0)
    return methods.train_generator(net, z, A, y, steps=steps, seed=0, log_every=5,
                                   output_average=output_average, **{**RULE, **kw})


def test_stop_rule_never_reads_the_reference(case):
    """A wrong reference (another image, and one that raises if the rule looked at its metrics)
    gives the identical image, stopped_at and steps: the rule sees the network output only."""
    img, A, y = case
    right = _fit(A, y, evaluate=methods.natural_evaluator(img))
    wrong_img = torch.flip(img, dims=(-1,)) * 0.5
    wrong = _fit(A, y, evaluate=methods.natural_evaluator(wrong_img))
    assert right.stopped_at is not None and 40 <= right.stopped_at < 150   # the rule fired, early
    assert wrong.stopped_at == right.stopped_at and wrong.steps == right.steps == right.stopped_at
    assert torch.equal(wrong.output, right.output)
    assert wrong.final_metrics["psnr"] != right.final_metrics["psnr"]   # the references did differ
    blind = _fit(A, y)   # no reference at all
    assert blind.stopped_at == right.stopped_at and torch.equal(blind.output, right.output)
    assert right.stop_rule == "image-change" and right.summary()["stopped_at"] == right.stopped_at


def test_stop_rule_output_is_the_unstopped_run_at_that_step(case):
    """Stopping only truncates: the output is the running average logged at ``stopped_at`` (iterates
    0..stopped_at), i.e. a rule-free run of ``stopped_at + 1`` steps (the rule changes no step before
    it); without averaging, the network output after ``stopped_at`` updates. Every logged row carries
    the change the rule used."""
    img, A, y = case
    stopped = _fit(A, y)
    plain = _fit(A, y, steps=stopped.stopped_at + 1, stop_rule="none")
    assert plain.stopped_at is None and plain.stop_rule == "none"
    assert torch.allclose(stopped.output, plain.output, atol=1e-6)
    rows = [h for h in stopped.history if h["step"] > stopped.stopped_at - RULE["stop_patience"]
            and "image_change" in h]
    assert rows and all(h["image_change"] < RULE["stop_tol"] for h in rows)
    assert any(h["image_change"] >= RULE["stop_tol"] for h in stopped.history if "image_change" in h)
    last = _fit(A, y, output_average=0.0, stop_tol=16.0)   # the raw iterates move more
    plain_last = _fit(A, y, steps=last.stopped_at, stop_rule="none", output_average=0.0)
    assert last.stopped_at is not None and torch.allclose(last.output, plain_last.output, atol=1e-6)


def test_stopped_fit_resumes_to_the_same_stop(case, tmp_path):
    img, A, y = case
    full = _fit(A, y)
    ck = tmp_path / "stop.safetensors"

    def crash(row):
        if row["step"] == 25:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _fit(A, y, checkpoint=ck, checkpoint_every=20, callback=crash)
    resumed = _fit(A, y, checkpoint=ck, checkpoint_every=20)
    assert resumed.resumed_from == 20
    assert resumed.stopped_at == full.stopped_at and torch.allclose(resumed.output, full.output, atol=1e-6)


def test_should_stop_needs_a_covered_window():
    rows = [{"step": s, "image_change": 0.01, "image_change_over": 50} for s in (50, 100, 150)]
    assert not core.should_stop(rows, 150, 0.05, 200)          # step < patience
    assert core.should_stop(rows, 150, 0.05, 100)               # rows 100, 150 cover (50, 150]
    assert not core.should_stop(rows[2:], 150, 0.05, 100)       # only row 150: (100, 150] uncovered
    assert not core.should_stop(rows + [{"step": 200, "image_change": 0.06, "image_change_over": 50}],
                                200, 0.05, 100)


@pytest.mark.parametrize("kw, flag", [({"stop_rule": "sometimes"}, "--stop-rule"),
                                      ({"stop_tol": 0.0}, "--stop-tol"),
                                      ({"stop_patience": 0}, "--stop-patience")])
def test_bad_stop_settings_are_one_clear_error(case, kw, flag):
    img, A, y = case
    with pytest.raises(UserError, match=flag):
        _fit(A, y, steps=1, **kw)


def test_stop_rule_is_in_the_identity_only_when_on():
    """Runs without a rule keep the resume identity they had before the option existed."""
    from mri_oes.recipe import Recipe
    base = Recipe.from_preset("cpu", 8, method="sparse-dip")
    assert not any(k.startswith("stop_") for k in base.identity())
    on = base.override(stop_rule="image-change", stop_tol=0.1, stop_patience=300)
    assert {k: on.identity()[k] for k in ("stop_rule", "stop_tol", "stop_patience")} == \
        {"stop_rule": "image-change", "stop_tol": 0.1, "stop_patience": 300}
    from mri_oes.recipe import without_off_values
    assert without_off_values({"stop_rule": "none", "stop_tol": 0.1, "stop_patience": 3}) == {}


def test_recon_records_the_rule(tmp_path):
    """recon --stop-rule reaches the fit (Recipe.from_preset -> runner -> fit): the slice record
    carries stop_rule, stopped_at and the steps run, run.json the rule; without the flag the preset's
    rule (none) runs every step."""
    import json
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from mri_fixtures import phantom_kspace, write_file
    from mri_oes.cli import main
    torch.set_num_threads(1)
    f = write_file(tmp_path / "phantom.h5", phantom_kspace(slices=1)[0])
    out = tmp_path / "out"
    args = ["recon", str(f), "--slice", "0", "--method", "dip", "--accel", "4", "--out", str(out), "--workers",
            "1", "--steps", "60", "--levels", "3", "--width", "0.25", "--log-every", "5",
            "--stop-rule", "image-change", "--stop-tol", "1000", "--stop-patience", "20"]
    assert main(args) == 0
    m = json.loads((out / "dip_4x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
    assert m["stop_rule"] == "image-change" and m["stopped_at"] == 20 and m["steps"] == 20
    run = json.loads((out / "dip_4x" / "run.json").read_text())
    assert "image-change" in json.dumps(run)
    assert main(args[:-6] + ["--out", str(tmp_path / "plain")]) == 0
    m0 = json.loads((tmp_path / "plain" / "dip_4x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
    assert m0["stop_rule"] == "none" and m0["stopped_at"] is None and m0["steps"] == 60
