"""Baselines and the `mri-oes recon` command end to end (small fixtures, CPU, fast)."""
import json
import os
import sys

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import brain_h5, phantom_h5, phantom_kspace, write_file  # noqa: F401,E402

from mri_oes.cli import main  # noqa: E402
from mri_oes.mri import baselines as B  # noqa: E402
from mri_oes.mri.data import load_slice  # noqa: E402
from mri_oes.mri.problem import build_problem  # noqa: E402


@pytest.mark.parametrize("which", ["phantom", "brain"])
def test_baselines_beat_zero_filled(which, phantom_h5, request):
    path = phantom_h5 if which == "phantom" else request.getfixturevalue("brain_h5")
    p = build_problem(load_slice(path, 0), 4, "equispaced", seed=0)
    zf = p.metrics(B.zero_filled(p))["psnr"]
    se = p.metrics(B.sense(p))["psnr"]
    l1 = p.metrics(B.l1_wavelet(p))["psnr"]
    assert zf < se and zf < l1, (zf, se, l1)
    assert l1 > zf + 2


def _recon(tmp_path, path, method, *extra, accel="4"):
    out = tmp_path / "out"
    args = ["recon", str(path), "--slice", "0", "--method", method, "--out", str(out), "--workers", "1"]
    if accel:
        args += ["--accel", accel]
    return main(args + list(extra)), out


@pytest.mark.parametrize("method", ["zero-filled", "sense", "l1-wavelet"])
def test_recon_cli_classical(method, phantom_h5, tmp_path):
    rc, out = _recon(tmp_path, phantom_h5, method, "--slice", "0", "1")
    assert rc == 0
    run = out / f"{method}_4x"
    for s in (0, 1):
        d = run / "slices" / "phantom" / f"{s:03d}"
        for f in ("reconstruction.npy", "recon.png", "figure.png", "metrics.json"):
            assert (d / f).is_file(), f
        m = json.loads((d / "metrics.json").read_text())
        assert m["method"] == method and m["accel"] == 4 and m["slice"] == s and m["seed"] == 0
        assert m["metrics_convention"] == "fastmri" and m["level"] == "slice"
        assert np.isfinite(m["final"]["psnr"]) and 0 < m["final"]["ssim"] <= 1 and m["final"]["nmse"] >= 0
        assert np.isfinite(m["full_fov"]["psnr"]) and "versions" in m and "config" in m
    with h5py.File(run / "reconstructions" / "phantom.h5") as f:   # fastmri.save_reconstructions layout
        assert list(f) == ["reconstruction"]
        assert f["reconstruction"].shape == (2, 64, 64) and f["reconstruction"].dtype == np.float32
    v = json.loads((run / "volumes" / "phantom" / "metrics.json").read_text())
    assert v["level"] == "volume" and v["slices"] == [0, 1] and np.isfinite(v["final"]["psnr"])
    assert (out / ".espirit").is_dir() and (out / "summary.csv").is_file() and (run / "slices.csv").is_file()


def test_recon_cli_espirit_cache_hit(phantom_h5, tmp_path):
    _recon(tmp_path, phantom_h5, "zero-filled")
    rc, out = _recon(tmp_path, phantom_h5, "sense")
    m = json.loads((out / "sense_4x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
    assert rc == 0 and m["problem"]["espirit"]["cache_hit"] is True


def test_recon_cli_undersampled_file(tmp_path):
    from mri_oes.mri.data import make_mask
    k, _, _ = phantom_kspace(slices=1)
    m, _ = make_mask(64, 4, "random", 2)
    p = write_file(tmp_path / "us.h5", k * m, rss=False, extra={"mask": m})
    rc, out = _recon(tmp_path, p, "l1-wavelet", accel=None)
    assert rc == 0
    d = out / "l1-wavelet_own-mask" / "slices" / "us" / "000"
    met = json.loads((d / "metrics.json").read_text())
    assert met["final"]["psnr"] is None and met["accel"] == 4 and (d / "recon.png").is_file()
    assert (d / "figure.png").is_file() and not (d / "error.png").exists()   # no reference: no error maps
    with h5py.File(out / "l1-wavelet_own-mask" / "reconstructions" / "us.h5") as f:
        assert f["reconstruction"].shape == (1, 64, 64)


@pytest.mark.parametrize("case,args,msg", [
    ("slice", ["--slice", "7"], "slice 7 out of range"),
    ("no accel", ["--accel-none"], "--accel"),
    ("density w/o sparse", ["--density", "0.1"], "only for --method sparse-dip"),
    ("accel impossible", ["--center-fraction", "0.5"], "not possible"),
    ("espirit", ["--espirit-calib-width", "40"], "calib_width"),
])
def test_recon_cli_bad_input_writes_nothing(case, args, msg, phantom_h5, tmp_path, capsys):
    accel = "4"
    if args == ["--accel-none"]:
        args, accel = [], None
    rc, out = _recon(tmp_path, phantom_h5, "sense", *args, accel=accel)
    assert rc == 2
    assert msg in capsys.readouterr().err
    assert not out.exists()


def test_recon_cli_bad_files_write_nothing(tmp_path, capsys):
    k, _, _ = phantom_kspace(n=16, coils=2, slices=1)
    bad = write_file(tmp_path / "sc.h5", k[:, 0], rss=False)
    rc, out = _recon(tmp_path, bad, "zero-filled")
    assert rc == 2 and "single-coil" in capsys.readouterr().err and not out.exists()
    rc, out = _recon(tmp_path, tmp_path / "nope.h5", "zero-filled")
    assert rc == 2 and "file not found" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("method,extra", [("dip", []), ("sparse-dip", ["--density", "0.5", "--mask-steps", "10"]),
                                          ("sparse-dip", ["--density", "0.5", "--mask-steps", "10",
                                                          "--generator", "conv-decoder"])])
def test_recon_cli_network(method, extra, phantom_h5, tmp_path):
    pytest.importorskip("mri_oes.methods")
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny net: 2 threads on the shared 2-core box were ~100x slower
    try:
        _network_case(method, extra, phantom_h5, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _network_case(method, extra, phantom_h5, tmp_path):
    rc, out = _recon(tmp_path, phantom_h5, method, "--steps", "30", "--levels", "3", "--width", "0.25",
                     "--log-every", "10", *extra)
    assert rc == 0
    d = out / f"{method}_4x" / "slices" / "phantom" / "000"
    m = json.loads((d / "metrics.json").read_text())
    assert (d / "curve.png").is_file() and (d / "recon.png").is_file() and (d / "figure.png").is_file()
    # one name per thing: the result is reconstruction.npy, the raw network output network_output.npy
    assert np.iscomplexobj(np.load(d / "network_output.npy")) and not (d / "recon.npy").exists()
    fin, net_final, best = m["final"], m["final_network"], m["best"]
    # best = oracle best network iterate >= the final network iterate; the default preset projects the
    # final image onto the measured k-space (data consistency), which helps on this phantom
    assert np.isfinite(fin["psnr"]) and best["psnr"] >= net_final["psnr"] - 1e-9 and best["step"] is not None
    assert m["data_consistency"] is True and fin["psnr"] > net_final["psnr"]
    assert 0 < m["density"] <= 1 and abs(m["density"] + m["sparsity"] - 1) < 1e-9
    assert m["metrics_convention"] == "fastmri" and m["command"] == "recon"
    if method == "sparse-dip":
        assert abs(m["density"] - 0.5) < 0.05 and (d / "mask.safetensors").is_file()
        kind = {"conv-decoder": "convdecoder"}.get(extra[-1], "deep-decoder")   # default: the preset's
        # real and imaginary part per ESPIRiT map set (the test phantom fires the fold-over statistic: two)
        sets = m["problem"]["espirit"]["map_sets"]
        assert m["generator"]["kind"] == kind and m["generator"]["out_channels"] == 2 * sets == 4


def test_recon_cli_refuses_mask_of_another_generator(phantom_h5, tmp_path, capsys):
    """A mask learned for a natural-image (3-channel, sigmoid) generator cannot drive an MRI recon."""
    import torch
    from mri_oes.generators import GeneratorConfig
    from mri_oes.masks import maskable_parameters, topk_mask
    from mri_oes.methods import setup_generator
    cfg = GeneratorConfig.oes(levels=3, width=0.25)
    net, z, seeds = setup_generator(cfg, (64, 64), 0)
    m = topk_mask({k: torch.rand(p.shape) for k, p in maskable_parameters(net).items()}, 0.1,
                  meta={"generator": cfg.to_dict(), **seeds})
    path = m.save(tmp_path / "natural.safetensors")
    rc, out = _recon(tmp_path, phantom_h5, "sparse-dip", "--pruning-mask", str(path), "--steps", "2")
    assert rc == 2 and "MRI needs 2 linear channels" in capsys.readouterr().err and not out.exists()


def test_recon_preset_sizes_the_network_per_acceleration(phantom_h5, tmp_path):
    """The cpu preset's ``by_accel``: Sparse-DIP's deep decoder is wider at 4x than at 8x, and each
    run records the width it used."""
    from mri_oes.mri import presets
    cpu = presets.get("cpu")
    rc, out = _recon(tmp_path, phantom_h5, "sparse-dip", "--accel", "4", "8", "--center-fraction", "0.08",
                     "--steps", "2", "--mask-steps", "2", accel=None)
    assert rc == 0
    for accel in (4, 8):
        run = json.loads((out / f"sparse-dip_{accel}x" / "run.json").read_text())
        assert run["channels"] == presets.for_accel(cpu, accel)["channels"], (accel, run)
    def widest(c):
        return max(c) if isinstance(c, list) else c
    assert widest(presets.for_accel(cpu, 4)["channels"]) > widest(presets.for_accel(cpu, 8)["channels"])


def test_recon_takes_precision_and_steps_per_acceleration_from_the_preset(phantom_h5, tmp_path, monkeypatch):
    """``by_accel`` may set any preset key (here steps and precision at 4x); an explicit flag wins at
    every acceleration; each run records what it used."""
    from mri_oes.mri import presets
    patched = presets.get("cpu")
    patched.update(steps=3, mask_steps=2)
    patched["by_accel"] = {4: {"channels": [8, 8, 8, 8, 8, 4], "steps": 4, "precision": "bfloat16",
                               "lr_final": 1e-3}}
    monkeypatch.setitem(presets.PRESETS, "cpu", patched)
    rc, out = _recon(tmp_path, phantom_h5, "sparse-dip", "--accel", "4", "8", "--center-fraction", "0.08",
                     accel=None)
    assert rc == 0
    r4, r8 = (json.loads((out / f"sparse-dip_{a}x" / "run.json").read_text()) for a in (4, 8))
    assert (r4["steps"], r4["precision"], r4["channels"], r4["lr_final"]) == (4, "bfloat16", [8] * 5 + [4], 1e-3), r4
    # run.json is the resume identity: float32 runs leave precision out (the identity they always had)
    assert (r8["steps"], r8.get("precision"), r8["lr_final"]) == (3, None, patched["lr_final"]), r8
    m4 = json.loads((out / "sparse-dip_4x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
    assert m4["generator"]["channels"] == [8] * 5 + [4]   # the per-layer widths reach the network
    m8 = json.loads((out / "sparse-dip_8x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
    assert m8["config"]["precision"] == "float32"   # the slice record always names it
    # recon.json: the flags as given (steps not given: None, never the preset's base value that the 4x
    # run did not use) beside what each run used
    top = json.loads((out / "recon.json").read_text())
    assert (top["settings"]["sparse-dip_4x"]["steps"], top["settings"]["sparse-dip_8x"]["steps"]) == (4, 3)
    assert (top["config"]["steps"], top["config"]["preset"]) == (None, "cpu"), top["config"]
    rc, out2 = _recon(tmp_path / "b", phantom_h5, "sparse-dip", "--accel", "4", "--center-fraction", "0.08",
                      "--steps", "2", "--precision", "float32", accel=None)
    assert rc == 0
    r = json.loads((out2 / "sparse-dip_4x" / "run.json").read_text())
    assert (r["steps"], r.get("precision")) == (2, None), r
    assert json.loads((out2 / "recon.json").read_text())["config"]["steps"] == 2


def test_recon_gives_a_lone_slice_the_idle_cores(phantom_h5, tmp_path, monkeypatch):
    """Without --threads / OMP_NUM_THREADS, fewer pending slices than idle cores share the cores as
    torch threads (recorded per slice); an explicit --threads wins."""
    import os
    import torch
    from mri_oes import runtime
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    try:
        rc, out = _recon(tmp_path, phantom_h5, "zero-filled")
        assert rc == 0
        m = json.loads((out / "zero-filled_4x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
        assert m["threads"] == 2, m.get("threads")
        rc, out = _recon(tmp_path / "b", phantom_h5, "zero-filled", "--threads", "1")
        m = json.loads((out / "zero-filled_4x" / "slices" / "phantom" / "000" / "metrics.json").read_text())
        assert rc == 0 and m["threads"] == 1
    finally:
        torch.set_num_threads(before)
