"""The discrepancy stopping rule: the training fit stops once its residual on the measured lines outside the
ACS block is down to a multiple of what k-space noise alone leaves there (``core.fit(stop_rule="discrepancy",
noise_level=..., noise_entries=...)``; ``MRIProblem.noise``; recon ``--stop-rule discrepancy``)."""
import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_kspace, reference_evaluator, write_file  # noqa: E402

from mri_oes import core, methods  # noqa: E402
from mri_oes.generators import GeneratorConfig  # noqa: E402

CFG = GeneratorConfig.oes(out_channels=2, levels=3, width=0.25, mri=True)
#: on the small phantom (whose sharp edges fill the k-space corners: its noise estimate is high) the fit's
#: discrepancy falls from ~8 to ~1.4 in 300 steps; 2.0 is crossed near step 160
TAU = 2.0


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    f = write_file(tmp_path_factory.mktemp("dp") / "phantom.h5", phantom_kspace(slices=1)[0])
    return build_problem(load_slice(f, 0), 4, "equispaced", 0), f


def test_noise_estimate_on_synthetic_kspace_with_known_sigma():
    """Smooth coil images plus white complex noise of known sigma: the corner estimate is within 10 %."""
    import sigpy.mri as mr
    from mri_oes.mri.data import make_mask
    from mri_oes.mri.problem import kspace_noise_sigma2
    n, coils = 128, 8
    yy, xx = np.mgrid[:n, :n] / n - 0.5
    img = sum(a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s ** 2))
              for a, cy, cx, s in ((1.0, 0, 0, 0.2), (0.5, 0.1, -0.15, 0.06), (0.3, -0.2, 0.1, 0.04)))
    coil = mr.birdcage_maps((coils, n, n)) * img
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    rng = np.random.default_rng(0)
    for sigma in (1e-3, 3e-3):
        noisy = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        mask, _ = make_mask(n, 4, "equispaced", 0, None, H=n)
        est = kspace_noise_sigma2(noisy * mask[None, None, :], mask)
        assert abs(est / sigma ** 2 - 1) < 0.1, (sigma, est)


def test_noise_entries_are_the_measured_lines_outside_acs(phantom):
    from mri_oes.mri.data import acs_lines
    p, _ = phantom
    nz = p.noise()
    entries = nz["entries"].numpy().reshape(-1) > 0
    measured = np.asarray(p.mask) > 0
    lo, w = acs_lines(measured)
    assert entries.any() and not (entries & ~measured).any() and not entries[lo:lo + w].any()
    assert entries.sum() == measured.sum() - w == nz["lines"]
    assert nz["level"] == pytest.approx(nz["sigma2"] * nz["lines"] / measured.size)
    # the level is what pure noise on those entries gives in data_loss units
    g = torch.Generator().manual_seed(0)
    noise = (torch.randn(p.y.shape, generator=g) + 1j * torch.randn(p.y.shape, generator=g)) * nz["sigma2"] ** 0.5
    d = core.discrepancy(p.y + noise * nz["entries"], p.y, nz["entries"], nz["level"])
    assert d == pytest.approx(1.0, rel=0.05)


def _fit(p, evaluate=None, steps=300, **kw):
    torch.manual_seed(0)
    nz = p.noise()
    net, z, _ = methods.setup_generator(CFG, p.image_shape, 0)
    return methods.train_generator(net, z, p.operator, p.y, steps=steps, lr=1e-2, seed=0, log_every=5,
                                   output_average=0.9, evaluate=evaluate, noise_level=nz["level"],
                                   noise_entries=nz["entries"], **{"stop_rule": "discrepancy",
                                                                   "discrepancy_tau": TAU, **kw})


def test_stop_fires_at_the_first_row_down_to_tau_and_truncates(phantom):
    """The fit stops at the first logged step whose discrepancy is <= tau; its output is the rule-free
    run's averaged output at that step (stopping only truncates)."""
    p, _ = phantom
    res = _fit(p)
    rows = [h for h in res.history if "discrepancy" in h]
    assert res.stop_rule == "discrepancy" and res.stopped_at is not None and res.steps == res.stopped_at < 300
    first = next(h for h in rows if h["discrepancy"] <= TAU)
    assert first["step"] == res.stopped_at
    assert all(h["discrepancy"] > TAU for h in rows if h["step"] < res.stopped_at)
    plain = _fit(p, steps=res.stopped_at + 1, stop_rule="none")
    assert plain.stopped_at is None and torch.allclose(plain.output, res.output, atol=1e-6)


def test_discrepancy_never_reads_the_reference(phantom):
    """A wrong reference (flipped, scaled) and none at all: the same stopped_at and image."""
    p, _ = phantom
    right = _fit(p, evaluate=reference_evaluator(p, p.reference))
    wrong = _fit(p, evaluate=reference_evaluator(p, np.flip(p.reference, -1) * 0.3 + 1.0))
    blind = _fit(p)
    assert right.stopped_at is not None
    assert wrong.stopped_at == blind.stopped_at == right.stopped_at
    assert torch.equal(wrong.output, right.output) and torch.equal(blind.output, right.output)
    assert wrong.final_metrics["psnr"] != right.final_metrics["psnr"]   # the references did differ


def test_discrepancy_resumes_to_the_same_stop(phantom, tmp_path):
    p, _ = phantom
    full = _fit(p)
    ck = tmp_path / "dp.safetensors"
    at = full.stopped_at // 2

    def crash(row):
        if row["step"] == at + 10:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _fit(p, checkpoint=ck, checkpoint_every=at, callback=crash)
    resumed = _fit(p, checkpoint=ck, checkpoint_every=at)
    assert resumed.resumed_from == at
    assert resumed.stopped_at == full.stopped_at and torch.allclose(resumed.output, full.output, atol=1e-6)


def test_rule_needs_a_noise_level_and_identity_holds_tau():
    import operators as O
    from mri_oes.recipe import Recipe
    A = O.Denoise((1, 16, 16))
    net, z, _ = methods.setup_generator(GeneratorConfig.oes(out_channels=1, levels=2, width=0.125), (16, 16), 0)
    with pytest.raises(ValueError, match="noise_level"):
        methods.train_generator(net, z, A, torch.zeros(1, 1, 16, 16), steps=2, stop_rule="discrepancy")
    base = Recipe.from_preset("cpu", 8, method="sparse-dip")
    assert "discrepancy_tau" not in base.identity()
    assert "discrepancy_tau" not in base.override(stop_rule="image-change", discrepancy_tau=1.3).identity()
    on = base.override(stop_rule="discrepancy", discrepancy_tau=1.3)
    assert on.identity()["stop_rule"] == "discrepancy" and on.identity()["discrepancy_tau"] == 1.3
    assert on.fit_options()["discrepancy_tau"] == 1.3


def test_recon_records_the_discrepancy_stop(phantom, tmp_path):
    """recon --stop-rule discrepancy --discrepancy-tau: the slice record carries the rule, the step it stopped
    at and the noise level used; the identity carries the multiple."""
    from mri_oes.cli import main
    _, f = phantom
    torch.set_num_threads(1)
    out = tmp_path / "out"
    args = ["recon", str(f), "--slice", "0", "--method", "dip", "--accel", "4", "--out", str(out), "--workers",
            "1", "--steps", "300", "--levels", "3", "--width", "0.25", "--log-every", "5",
            "--stop-rule", "discrepancy", "--discrepancy-tau", str(TAU)]
    assert main(args) == 0
    d = out / "dip_4x" / "slices" / "phantom" / "000"
    m = json.loads((d / "metrics.json").read_text())
    assert m["stop_rule"] == "discrepancy" and m["stopped_at"] is not None and m["steps"] == m["stopped_at"] < 300
    assert m["noise"]["discrepancy_tau"] == TAU and m["noise"]["level"] > 0 and m["noise"]["sigma2"] > 0
    assert any("discrepancy" in h for h in m["history"])
    ident = json.dumps(json.loads((d / "identity.json").read_text()))
    assert "discrepancy" in ident and '"discrepancy_tau": 2.0' in ident
