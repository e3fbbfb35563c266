"""Several slices trained in one loop (``recon --batch-slices``, :mod:`mri_oes.batched`): the same result per
slice as one slice at a time (tiny phantom and synthetic operators, few steps, one thread)."""
import copy
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_h5  # noqa: F401,E402

from mri_oes import batched, core, methods  # noqa: E402
from mri_oes.cli import main  # noqa: E402
from mri_oes.masks import Mask, maskable_parameters  # noqa: E402
from mri_oes.recipe import Recipe  # noqa: E402
from operators.mri import MultiCoilMRI  # noqa: E402

H = W = 32


@pytest.fixture(autouse=True)
def contiguous_inputs(monkeypatch):
    """The one-slice fit feeds ``z`` channels_last on a CPU, the batched pass contiguous: the two agree
    only up to rounding, which 30 Adam steps can amplify; compare like with like."""
    monkeypatch.setattr(core, "CPU_CHANNELS_LAST", False)


def _slice_problem(coils, seed):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(coils, H, W, dtype=torch.complex64, generator=g) / coils ** 0.5
    lines = torch.zeros(W)
    lines[::3] = 1
    lines[14:18] = 1
    op = MultiCoilMRI(maps, lines)
    return op, op(torch.randn(1, H, W, dtype=torch.complex64, generator=g))[0]


NETWORKS = {"deep-decoder": {"generator": "deep-decoder", "layers": 3, "channels": 16},
            "conv-decoder": {"generator": "conv-decoder", "layers": 3, "channels": 8},
            "hourglass": {"generator": "hourglass", "levels": 2, "width": 0.0625}}


def _nets_and_masks(n, network="deep-decoder"):
    cfg = Recipe().override(method="sparse-dip", **NETWORKS[network]).generator_config(2, mri=True)
    g = torch.Generator().manual_seed(7)
    out = []
    for b in range(n):
        net, z, _ = methods.setup_generator(cfg, (H, W), seed=b)
        keep = {k: torch.rand(p.shape, generator=g) < 0.5 for k, p in maskable_parameters(net).items()}
        out.append((net, z, Mask(keep, {"scope": "weights"})))
    return out


def test_slice_batch_loss_is_the_sum_of_the_slices_losses():
    """Slices with 4 and 2 coils: the stacked, padded, weighted mean is the sum of the slices' own means."""
    probs = [_slice_problem(4, 1), _slice_problem(2, 2)]
    sb = batched.SliceBatch([op for op, _ in probs])
    x = torch.randn(2, H, W, dtype=torch.complex64)
    stacked = float(core.data_loss(sb(x), sb.stack([y for _, y in probs])))
    own = sum(float(core.data_loss(op(x[b:b + 1]), y.unsqueeze(0))) for b, (op, y) in enumerate(probs))
    assert stacked == pytest.approx(own, rel=1e-5)
    with pytest.raises(ValueError, match="one image grid"):
        batched.SliceBatch([probs[0][0], MultiCoilMRI(torch.ones(2, 16, 16, dtype=torch.complex64), torch.ones(16))])


@pytest.mark.parametrize("network,grouped", [("deep-decoder", True), ("deep-decoder", False),
                                             ("conv-decoder", True), ("hourglass", True)])
def test_batched_fit_equals_separate_fits(network, grouped):
    """Three slices (4, 2, 4 coils), each with its own init, z and pruning mask, 30 steps (10 for the
    ConvDecoder and the hourglass) with output averaging: one batched fit (the networks grouped into one, or vmapped) gives each slice the output,
    data loss and trained weights (BatchNorm statistics included) of its own fit."""
    probs = [_slice_problem(4, 1), _slice_problem(2, 2), _slice_problem(4, 3)]
    parts = _nets_and_masks(3, network)
    # the ConvDecoder and the hourglass turn rounding noise into lr-sized Adam steps (see below); on an
    # AVX-512 CPU their outputs after 30 steps differed by up to 6 % of the maximum between the two passes,
    # after 10 steps by 2e-5 to 6e-5
    steps = 30 if network == "deep-decoder" else 10
    alone = []
    for (op, y), (net, z, mask) in zip(probs, parts):
        net = copy.deepcopy(net)
        res = methods.train_generator(net, z, op, y.unsqueeze(0), mask=mask, steps=steps, lr=1e-2,
                                      output_average=0.9, log_every=10)
        alone.append((res, net))
    stacked = batched.StackedGenerator([copy.deepcopy(n) for n, _, _ in parts], grouped=grouped)
    assert stacked.mode == ("grouped" if grouped else "vmap")
    sb = batched.SliceBatch([op for op, _ in probs])
    ys = [y for _, y in probs]
    res = methods.train_generator(stacked, torch.stack([z for _, z, _ in parts]), sb, sb.stack(ys),
                                  mask=batched.StackedMask([m for _, _, m in parts]), steps=steps, lr=1e-2,
                                  output_average=0.9, log_every=10,
                                  evaluate=batched.batch_evaluator(sb.ops, ys, [None] * 3))
    for b, part in enumerate(batched.split_result(res, 3)):
        one, net = alone[b]
        assert part.output.shape == one.output.shape
        # rounding differs between the two passes; the hourglass and ConvDecoder amplify it more (below)
        tol = 1e-4 if network == "deep-decoder" else 3e-3
        assert float((part.output - one.output).abs().max()) <= tol * float(one.output.abs().max())
        assert part.final_metrics["data_loss"] == pytest.approx(one.final_metrics["data_loss"], rel=tol)
        assert [h["step"] for h in part.history] == [h["step"] for h in one.history]
        assert part.history[-2]["data_loss"] == pytest.approx(one.history[-2]["data_loss"], rel=tol)
        mine = stacked.unstack_into(b, copy.deepcopy(parts[b][0])).state_dict()
        # the deep decoder's tensors; the other two nets have a BatchNorm shift followed by a convolution
        # and another BatchNorm: its gradient is pure rounding noise, which Adam turns into steps of lr
        # size (differently in any two runs), moving that shift and the next layer's running mean but
        # not the output (compared above)
        compared = net.state_dict() if network == "deep-decoder" else {}
        for k, v in compared.items():
            assert torch.allclose(mine[k].float(), v.float(), atol=1e-4), k
        for k, keep in parts[b][2].keep.items():   # pruned weights never moved from their init
            assert torch.equal(mine[k][~keep], parts[b][0].state_dict()[k][~keep]), k


TINY = ["--accel", "4", "--workers", "1", "--threads", "1", "--steps", "20", "--log-every", "5",
        "--method", "sparse-dip", "--density", "0.5", "--mask-steps", "5", "--generator", "deep-decoder"]


def _recon(path, out, *extra):
    return main(["recon", str(path), "--out", str(out), *TINY, *extra])


def _records(out):
    root = out / "sparse-dip_4x" / "slices" / "phantom"
    return {d.name: json.loads((d / "metrics.json").read_text()) for d in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def one_at_a_time(phantom_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("b1")
    torch.set_num_threads(1)
    core.CPU_CHANNELS_LAST, saved = False, core.CPU_CHANNELS_LAST
    try:
        assert _recon(phantom_h5, out) == 0
    finally:
        core.CPU_CHANNELS_LAST = saved
    return _records(out)


def test_recon_batch_slices_matches_one_slice_at_a_time(phantom_h5, one_at_a_time, tmp_path):
    """Both slices of the phantom in one loop: the same final PSNR/SSIM per slice, the same run folder
    files (no checkpoint left), ``batch_slices`` in the record's config, not in the slice identity."""
    assert _recon(phantom_h5, tmp_path, "--batch-slices", "2") == 0
    recs = _records(tmp_path)
    assert sorted(recs) == sorted(one_at_a_time) == ["000", "001"]
    for name, rec in recs.items():
        one = one_at_a_time[name]
        assert rec["config"]["batch_slices"] == 2 and one["config"]["batch_slices"] == 1
        assert rec["final"]["psnr"] == pytest.approx(one["final"]["psnr"], abs=0.01)
        assert rec["final"]["ssim"] == pytest.approx(one["final"]["ssim"], abs=1e-3)
        assert rec["density"] == one["density"] and rec["steps"] == one["steps"] == 20
        assert [h["step"] for h in rec["history"]] == [h["step"] for h in one["history"]]
        folder = tmp_path / "sparse-dip_4x" / "slices" / "phantom" / name
        assert not list(folder.glob("checkpoint*"))
        assert "batch_slices" not in json.dumps(json.loads((folder / "identity.json").read_text()))


def test_killed_batch_resumes_to_the_uninterrupted_result(phantom_h5, one_at_a_time, tmp_path, monkeypatch):
    """Killed after its step-10 checkpoint, the same command resumes the batch from it (the checkpoint
    lives in the first slice's staging folder) and ends where the uninterrupted run ends."""
    real = batched.batch_evaluator
    calls = {"n": 0, "kill": 6}   # two evaluations per logged row (raw and averaged output)

    def counting(*a, **k):
        ev = real(*a, **k)

        def evaluate(x):
            calls["n"] += 1
            if calls["n"] == calls["kill"]:   # killed logging row 10, after the step-10 checkpoint
                raise KeyboardInterrupt
            return ev(x)
        return evaluate

    monkeypatch.setattr(batched, "batch_evaluator", counting)
    assert _recon(phantom_h5, tmp_path, "--batch-slices", "2", "--checkpoint-every", "10") == 130
    staged = list((tmp_path / "sparse-dip_4x" / "slices" / "phantom").glob(".000*/checkpoint-batch-*"))
    assert len(staged) == 1
    calls.update(n=0, kill=None)
    assert _recon(phantom_h5, tmp_path, "--batch-slices", "2", "--checkpoint-every", "10") == 0
    assert calls["n"] == 2 * 3   # rows 10, 15 and the final one: resumed, not restarted (that is 2 * 5)
    for name, rec in _records(tmp_path).items():
        assert rec["final"]["psnr"] == pytest.approx(one_at_a_time[name]["final"]["psnr"], abs=0.01)


def test_batch_slices_refuses_a_stopping_rule(phantom_h5, tmp_path, capsys):
    assert _recon(phantom_h5, tmp_path, "--batch-slices", "2", "--stop-rule", "image-change") == 2
    err = capsys.readouterr().err
    assert "--batch-slices 2 with --stop-rule image-change" in err
    assert not (tmp_path / "sparse-dip_4x").exists()


def test_run_batch_refuses_before_any_output(tmp_path):
    """A stopping rule, GP-DIP or two grids in one batch: one line, before any run folder exists."""
    from types import SimpleNamespace
    from mri_oes.errors import UserError
    from mri_oes.runner import run_batch
    p = SimpleNamespace(image_hw=(32, 32), info={"file": "a.h5"})
    q = SimpleNamespace(image_hw=(32, 16), info={"file": "b.h5"})
    r = Recipe().override(method="sparse-dip")
    outs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(UserError, match="--stop-rule none"):
        run_batch([p, p], [r.override(stop_rule="image-change")] * 2, outs)
    with pytest.raises(UserError, match="gp-dip"):
        run_batch([p, p], [r.override(method="gp-dip")] * 2, outs)
    with pytest.raises(UserError, match="one grid"):
        run_batch([p, q], [r, r], outs)
    assert not any(tmp_path.iterdir())
