"""Mask transfer driver: table, plots, equal-density IMP masks, resumable per case."""
import csv
import json

import torch

from mri_oes import methods, transfer
from mri_oes.generators import GeneratorConfig
from mri_oes.schema import validate

TINY = GeneratorConfig.oes(levels=3, width=0.25)


def _images():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, generator=g)
    b = torch.rand(3, 32, 32, generator=g)
    return {"a": a, "b": b}


KW = dict(cfg=TINY, densities=(0.3,), mask_steps=3, train_steps=3, imp_steps_per_round=2, imp_rounds=2,
          log_every=3, tasks=("denoise", "inpaint"))


def test_natural_transfer_table_and_resume(tmp_path, monkeypatch):
    out = tmp_path / "t"
    res = transfer.natural_transfer(_images(), out, **KW)
    rows = res["rows"]
    # 4 scenarios (self/cross × 2 tasks) × (dense + oes + imp)
    assert len(rows) == 4 * 3
    # tidy columns: scenario, task and scan apart (no packed strings)
    assert {(r["scenario"], r["task"], r["scan"]) for r in rows} == {
        ("self", "denoise", "a"), ("cross-task", "inpaint", "a"), ("cross-image", "denoise", "b"),
        ("cross-image-task", "inpaint", "b")}
    for r in rows:
        validate(r)
    oes = [r for r in rows if r["mask_source"] == "oes"][0]
    imp = [r for r in rows if r["mask_source"] == "imp"][0]
    assert oes["method"] == imp["method"] == "sparse-dip"
    assert oes["kept_weights"] == imp["kept_weights"]       # IMP mask of equal density
    assert abs(oes["density"] - 0.3) < 1e-4 and oes["final"]["psnr"] is not None
    dense = [r for r in rows if r["mask_source"] == "none"]
    assert {r["method"] for r in dense} == {"dip"} and all(r["density"] == 1 for r in dense)
    inp = [r for r in dense if r["scenario"] == "cross-task"][0]
    den = [r for r in dense if r["scenario"] == "self"][0]
    assert inp["measurements"] == 3 * round(0.5 * 32 * 32) and den["measurements"] == 3 * 32 * 32
    with open(out / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12 and {"final_psnr", "best_psnr", "scenario", "task", "scan"} <= set(table[0])
    assert json.loads((out / "table.json").read_text())["rows"]
    assert (out / "psnr_self-denoise.png").is_file() and (out / "layer_density_d0p3.png").is_file()

    # rerun: everything finished -> no training at all
    calls = []
    real = methods.train_generator
    monkeypatch.setattr(methods, "train_generator", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(methods, "learn_oes_mask", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    transfer.natural_transfer(_images(), out, **KW)
    assert calls == []
    # a killed run (one case missing) redoes exactly that case
    (out / "cases" / "cross-b-inpaint__oes__d0p3.json").unlink()
    res2 = transfer.natural_transfer(_images(), out, **KW)
    assert len(calls) == 1 and len(res2["rows"]) == 12
    again = [r for r in res2["rows"] if r["case"] == "cross-b-inpaint__oes__d0p3"][0]
    first = [r for r in rows if r["case"] == "cross-b-inpaint__oes__d0p3"][0]
    assert again["final"]["psnr"] == first["final"]["psnr"]       # deterministic redo


def test_mri_transfer_protocol(tmp_path):
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from mri_fixtures import phantom_kspace, write_file
    k, _, _ = phantom_kspace(n=64, coils=4, slices=2)
    f = write_file(tmp_path / "ph.h5", k)
    cfg = GeneratorConfig.oes(levels=3, width=0.25, mri=True)
    res = transfer.mri_transfer(f, tmp_path / "mri", source_slice=0, targets=[(f, 1)], accels=(4, 8), cfg=cfg,
                                densities=(0.3,), mask_steps=2, train_steps=2, imp_steps_per_round=1,
                                imp_rounds=1, log_every=2, espirit_cache=tmp_path / "esp.h5",
                                center_fraction=0.09)   # 64 lines: fastMRI 0.04 at 8x leaves 3 ACS lines
    scen = {(r["scenario"], r["accel"]) for r in res["rows"]}
    assert scen == {("self", 4), ("cross-accel", 8), ("cross-scan", 4), ("cross-scan-accel", 8)}
    r8 = [r for r in res["rows"] if r["scenario"] == "cross-accel" and r["mask_source"] == "oes"][0]
    r4 = [r for r in res["rows"] if r["scenario"] == "self" and r["mask_source"] == "oes"][0]
    assert r8["measurements"] < r4["measurements"] and r4["final"]["psnr"] is not None
    # quality per CPU minute: timed curves, and each target's classical references (zero-filled below L1)
    assert all(len(c) == 3 and c[2] >= 0 for c in r4["curve"])
    base = json.loads((tmp_path / "mri" / "table_info.json").read_text())["baselines"]
    assert set(base) == {"self/4x", "self/8x", "cross-1/4x", "cross-1/8x"}
    assert all(set(b) == {"zero-filled", "sense", "l1-wavelet"} for b in base.values())
    assert base["self/4x"]["l1-wavelet"]["psnr"] > base["self/4x"]["zero-filled"]["psnr"]
    assert base["self/8x"]["zero-filled"]["psnr"] < base["self/4x"]["zero-filled"]["psnr"]
    assert (tmp_path / "mri" / "quality_per_cpu_minute.png").stat().st_size > 1000


def test_cli_prune_at_init_and_errors(tmp_path):
    from mri_oes.cli import main
    out = tmp_path / "pai"
    rc = main(["prune-at-init", "skimage:coffee", "--crop", "32", "--mask-source", "snip", "--density", "0.2",
               "--steps", "3", "--levels", "3", "--width", "0.25", "--log-every", "1", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert abs(m["density"] - 0.2) < 1e-4 and abs(m["sparsity"] - 0.8) < 1e-4
    validate(m)
    assert m["method"] == "sparse-dip" and m["mask_source"] == "snip" and m["collapse"] is not None
    assert m["mask_steps"] == 0 and m["config"]["mask_source"] == "snip"   # one runner, the recipe's source
    assert m["final"]["psnr"] is not None and m["kept_weights_per_measurement"] > 0
    assert (out / "recon.png").is_file() and (out / "mask.safetensors").is_file()
    assert main(["prune-at-init", "skimage:coffee", "--mask-source", "snip", "--density", "1.5",
                 "--out", str(out)]) == 2
    assert main(["imp", str(tmp_path / "missing.png"), "--rounds", "1", "--out", str(out)]) == 2
    rc = main(["imp", "skimage:coffee", "--crop", "32", "--rounds", "1", "--steps", "2",
               "--levels", "3", "--width", "0.25", "--out", str(tmp_path / "imp")])
    assert rc == 0 and (tmp_path / "imp" / "round_01.safetensors").is_file()
    for f in ("metrics.json", "round_00/metrics.json", "round_01/metrics.json"):
        validate(json.loads((tmp_path / "imp" / f).read_text()))
    r1 = json.loads((tmp_path / "imp" / "round_01" / "metrics.json").read_text())
    assert r1["mask_source"] == "imp" and abs(r1["density"] - 0.8) < 1e-3


def test_mri_transfer_with_the_recon_preset(tmp_path, monkeypatch):
    """``transfer --mri --preset``: recon's network (the preset's deep decoder at 4x, output averaging,
    data consistency) for every case; ``final`` is the data-consistent image, ``final_network`` the
    output; explicit flags win; --preset without --mri is one clear error."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from mri_fixtures import phantom_kspace, write_file
    from mri_oes.cli import main
    from mri_oes.mri import presets
    patched = presets.get("cpu")
    patched["by_accel"] = {4: {"channels": 16, "layers": 4, "steps": 5}}
    monkeypatch.setitem(presets.PRESETS, "cpu", patched)
    k, _, _ = phantom_kspace(n=64, coils=4, slices=1)
    f = write_file(tmp_path / "ph.h5", k)
    out = tmp_path / "t"
    rc = main(["transfer", "--mri", str(f), "--preset", "cpu", "--accel", "4", "--density", "0.5",
               "--mask-steps", "2", "--imp-steps", "1", "--imp-rounds", "1", "--log-every", "1",
               "--out", str(out)])
    assert rc == 0
    rows = json.loads((out / "table.json").read_text())
    cases = [json.loads(p.read_text()) for p in sorted((out / "cases").glob("*.json"))]
    assert {c["mask_source"] for c in cases} == {"none", "oes", "imp"} and len(rows) == 3
    for c in cases:
        g = c["config"]["generator"]
        assert g["kind"] == "deep-decoder" and g["channels"] == [16] * 4
        assert c["steps"] == 5 and c["mask_steps"] in (0, 2)   # preset's steps at 4x, --mask-steps given
        assert c["config"]["output_average"] == patched["output_average"] and c["data_consistency"]
        # the projected image keeps the measured lines: never worse than the raw output here
        assert c["final"]["psnr"] >= c["final_network"]["psnr"] - 1e-6
        assert c["final"]["psnr"] != c["final_network"]["psnr"]
    with open(out / "table.csv") as fh:   # the tidy table carries both (schema columns)
        assert all(float(r["final_network_psnr"]) < float(r["final_psnr"]) for r in csv.DictReader(fh))
    assert main(["transfer", "skimage:coffee", "--preset", "cpu", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
