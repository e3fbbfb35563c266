"""benchmarks/final_vs_steps.py: the table and figure are rebuilt from the curve files alone, and a short
run on the bundled brain writes a curve carrying all four images (raw / averaged, with and without data
consistency) at every logged step."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("final_vs_steps", ROOT / "benchmarks" / "final_vs_steps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _curve(net, psnrs, complete=True, density=1.0):
    rows = []
    for i, (step, p) in enumerate(psnrs):
        r = {"step": step, "cpu_s": float(i), "data_loss": 1.0 / (i + 1)}
        for kind, off in (("raw", -2.0), ("avg", -1.0), ("raw_dc", -0.5), ("avg_dc", 0.0)):
            r[f"{kind}_psnr"], r[f"{kind}_ssim"] = p + off, 0.5 + p / 100
        rows.append(r)
    return {"scan": "toy", "accel": 4, "net": net, "label": net, "density": density, "default_steps": 3000,
            "zero_filled": {"psnr": 20.0, "ssim": 0.5}, "complete": complete, "max_steps": 2000, "rows": rows}


def test_table_mode_rebuilds_table_and_figure(tmp_path):
    fvs = _module()
    (tmp_path / "curves").mkdir()
    # a dense net that peaks at step 500 and degrades; a sparse one that keeps rising (killed at 1,000)
    dense = _curve("deep-decoder", [(0, 20.0), (250, 28.0), (500, 31.0), (1000, 30.0), (2000, 27.5)])
    sparse = _curve("sparse-dip", [(0, 20.0), (250, 27.0), (500, 29.0), (1000, 30.5)], complete=False, density=0.3)
    for d in (dense, sparse):
        (tmp_path / "curves" / f"toy_4x_{d['net']}.json").write_text(json.dumps(d))
    fvs.main(["--table", "--out", str(tmp_path)])
    text = (tmp_path / "table.md").read_text()
    assert (tmp_path / "final_vs_steps.png").stat().st_size > 10_000
    dd = next(line for line in text.splitlines() if "| deep-decoder |" in line)   # first table: avg_dc
    cells = [c.strip() for c in dd.strip("|").split("|")]
    # scan, accel, net, density, default, 250, 500, 1,000, 2,000, final, best, final - best
    assert cells[5:9] == ["28.00 / 0.780", "31.00 / 0.810", "30.00 / 0.800", "27.50 / 0.775"]
    assert cells[9] == "27.50 / 0.775 (2,000)" and cells[10] == "31.00 / 0.810 (500)"
    assert cells[11] == "-3.50 / -0.035"
    sp = next(line for line in text.splitlines() if "| sparse-dip |" in line)
    cells = [c.strip() for c in sp.strip("|").split("|")]
    assert cells[3] == "0.300" and cells[8] == "" and "(1,000, incomplete)" in cells[9]
    assert cells[11] == "+0.00 / +0.000"
    # the raw-iterate table reads the raw columns (2 dB below the averaged + DC ones here)
    raw = text.split("## Raw iterate, no averaging")[1]
    assert "29.00 / 0.810 (500)" in raw


def test_table_mode_without_curves_is_one_line(tmp_path):
    fvs = _module()
    with pytest.raises(SystemExit, match="no curves"):
        fvs.main(["--table", "--out", str(tmp_path)])


@pytest.mark.slow
def test_short_run_on_bundled_brain_writes_all_four_images(tmp_path):
    fvs = _module()
    fvs.main(["--scan", str(ROOT / "mri_oes" / "data" / "brain8_small.h5"), "--accel", "4", "--net", "deep-decoder",
              "--max-steps", "20", "--log-every", "10", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "curves" / "brain8_small_4x_deep-decoder.json").read_text())
    assert doc["complete"] and doc["lr_schedule"] == "constant" and doc["density"] == 1.0
    assert [r["step"] for r in doc["rows"]] == [0, 10, 20]
    for r in doc["rows"]:
        for kind in fvs.KINDS:
            assert 0 < r[f"{kind}_psnr"] < 60 and 0 < r[f"{kind}_ssim"] <= 1
    last = doc["rows"][-1]
    # data consistency puts the measured lines back: it never loses to the raw image this early
    assert last["raw_dc_psnr"] > last["raw_psnr"]
    assert (tmp_path / "table.md").is_file() and (tmp_path / "final_vs_steps.png").is_file()
