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
