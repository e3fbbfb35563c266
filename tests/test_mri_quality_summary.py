"""``mri_quality summary``: tables and summaries rebuilt from committed ``table.json`` files."""
import json
from pathlib import Path

import pytest

from mri_oes.experiments.mri_quality import main, merge_tables

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "results" / "2026-11-27-mri-gpu"


def _row(run, **kw):
    base = {"run": run, "scan": "brain8", "accel": 4, "seed": 0, "method": "sparse-dip", "variant": "default",
            "density": 0.5, "steps": 3000, "device": "cpu"}
    return {**base, **kw}


def test_merge_tables_later_wins_relabels_and_keeps_one_default_per_seed(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([_row("r1"), _row("r2", seed=1), _row("r8", accel=8, steps=5000)]))
    b.write_text(json.dumps([_row("r2", seed=1, density=0.9, variant="d90"),
                             _row("g0", density=0.9, variant="d90", device="cuda"),
                             _row("c0", density=0.9, variant="d90")]))
    rules = [{"variant": "d50", "match": {"method": "sparse-dip", "accel": 4, "variant": "default"},
              "at_most": {"density": 0.5}},
             {"variant": "default", "match": {"variant": "d90"}},
             {"variant": "s5000", "match": {"accel": 8, "steps": 5000}, "tables": [0]}]
    rows = {r["run"]: r for r in merge_tables([a, b], rules)}
    assert [r for r in rows] == ["r1", "r8", "r2", "g0", "c0"]       # r2 of the later table replaces a's
    assert rows["r1"]["variant"] == "d50" and rows["r8"]["variant"] == "s5000"
    assert rows["r2"]["variant"] == "default" and rows["r2"]["density"] == 0.9
    assert rows["c0"]["variant"] == "default"                         # the CPU run of seed 0 stays default
    assert rows["g0"]["variant"] == "default-cuda"                    # the GPU run of that seed does not
    assert rows["r1"]["source"] == str(a) and rows["g0"]["source"] == str(b)


def test_summary_rebuilds_the_committed_gpu_table_and_summary(tmp_path):
    main(["summary", "--tables", str(ROOT / "results/2026-11-26-mri-quality-preset/table.json"),
          str(GPU / "table_new.json"), "--relabel", str(GPU / "relabel.json"), "--out", str(tmp_path)])
    assert (tmp_path / "summary.md").read_text() == (GPU / "summary.md").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "source"} for r in rows]   # noqa: E731
    assert strip(json.loads((tmp_path / "table.json").read_text())) == \
        strip(json.loads((GPU / "table.json").read_text()))


def test_summary_names_a_missing_table(tmp_path):
    with pytest.raises(SystemExit, match=r"summary: error: --tables: .*nope.json not found"):
        main(["summary", "--tables", str(tmp_path / "nope.json"), "--out", str(tmp_path)])


def _fake_run(out, name, scan, accel, seed, history):
    d = out / "runs" / name
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"scan": scan, "accel": accel, "seed": seed, "history": history}))


def test_curves_are_compacted_and_redrawn_from_committed_json(tmp_path):
    from mri_oes.experiments.mri_quality import compact_curves
    hist = [{"step": s, "psnr": 20 + s / 100, "average_dc_psnr": 22 + s / 100, "cpu_s": 6.0 * s} for s in (0, 50, 100)]
    _fake_run(tmp_path, "brain8_4x_s0_sparse-dip", "brain8", 4, 0, hist)
    _fake_run(tmp_path, "brain8_4x_s0_dip", "brain8", 4, 0, [{"step": 0, "psnr": 19.0}, {"step": 50, "psnr": 21.5}])
    _fake_run(tmp_path, "brain4_8x_s1_dip", "brain4", 8, 1, [{"step": 0, "psnr": 18.0}])
    _fake_run(tmp_path, "brain8_4x_s0_l1-wavelet", "brain8", 4, 0, [])          # no curve: left out
    curves = compact_curves(tmp_path)
    assert sorted(curves) == ["brain4_8x_s1_dip", "brain8_4x_s0_dip", "brain8_4x_s0_sparse-dip"]
    sd = curves["brain8_4x_s0_sparse-dip"]
    assert sd["key"] == "average_dc_psnr" and sd["step"] == [0, 50, 100]
    assert sd["reported"] == [22.0, 22.5, 23.0] and sd["psnr"] == [20.0, 20.5, 21.0] and sd["cpu_min"] == [0.0, 5.0, 10.0]
    assert curves["brain8_4x_s0_dip"]["key"] == "psnr" and curves["brain8_4x_s0_dip"]["reported"] == [19.0, 21.5]
    (tmp_path / "curves.json").write_text(json.dumps(curves))
    (tmp_path / "table.json").write_text(json.dumps(
        [{"scan": "brain8", "accel": 4, "seed": 0, "method": "l1-wavelet", "variant": "default", "final_psnr": 24.0}]))
    fig_dir = tmp_path / "figs"
    main(["plots", "--table", str(tmp_path / "table.json"), "--curves", str(tmp_path / "curves.json"),
          "--out", str(fig_dir)])
    # one figure per scenario that has a seed-0 curve or any curve at all (brain4 8x: seed 1 only, empty panels)
    assert sorted(p.name for p in fig_dir.iterdir()) == ["curves_brain4_8x.png", "curves_brain8_4x.png"]
    assert (fig_dir / "curves_brain8_4x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_names_an_unreadable_curves_file(tmp_path):
    (tmp_path / "table.json").write_text("[]")
    with pytest.raises(SystemExit, match=r"plots: error: --curves: .*missing.json is not a readable JSON file"):
        main(["plots", "--table", str(tmp_path / "table.json"), "--curves", str(tmp_path / "missing.json"),
              "--out", str(tmp_path)])
