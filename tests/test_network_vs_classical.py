"""benchmarks/network_vs_classical.py reads recon's own slice records beside benchmark row files: a record at
the default recipe counts (first file wins a case), one with ``--map-sets`` given does not, and the Δ against
max(SENSE, L1-wavelet) is the record's final minus the classical row of the same scan, acceleration and seed.
Committed result files only (no training)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import network_vs_classical as nvc  # noqa: E402

TWO_SETS = ROOT / "results" / "2026-12-05-fold-over-two-map-sets"
CLASSICAL = ROOT / "results" / "2026-12-05-classical-rules" / "after.json"


def test_recon_records_enter_the_table_only_at_the_default_recipe(tmp_path):
    default_s1 = TWO_SETS / "brain8b_4x_s1_two-sets_metrics.json"   # the rule's map sets: counts
    given_s0 = TWO_SETS / "brain8b_4x_one-set_metrics.json"          # --map-sets 1: does not
    assert nvc.main(["--network", str(default_s1), str(given_s0), "--classical", str(CLASSICAL),
                     "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "table.json").read_text())["rows"]
    assert [(r["scan"], r["accel"], r["seeds"]) for r in rows] == [("brain8b", 4, [1])]
    rec = json.loads(default_s1.read_text())
    l1 = next(r for r in json.loads(CLASSICAL.read_text())["rows"]
              if (r["scan"], r["accel"], r["seed"], r["method"]) == ("brain8b", 4, 1, "l1-wavelet"))
    seed = rows[0]["per_seed"][0]
    assert seed["best_classical"] == "l1-wavelet"
    assert seed["delta_psnr"] == pytest.approx(rec["final"]["psnr"] - l1["psnr"])
    assert rows[0]["density"] == pytest.approx(rec["density"])
    assert "| brain8b | 4x | 1 | 11000 |" in (tmp_path / "table.md").read_text()


def test_a_recon_record_names_its_scan_by_the_file_stem():
    row = nvc.recon_row({"command": "recon", "file": "/data/knee_12.h5", "scan": "knee_12", "accel": 8, "seed": 2,
                         "method": "sparse-dip", "final": {"psnr": 30.0, "ssim": 0.8}, "density": 0.4,
                         "steps": 2000, "stopped_at": 900, "config": {"map_sets": None}})
    assert (row["scan"], row["variant"]) == ("knee_12", "given")   # a stopped run is not the default recipe
