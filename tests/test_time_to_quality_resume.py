"""benchmarks/time_to_quality.py resumes a killed row from its run folder's checkpoint: the resumed row's
final image, PSNR and logged curve equal an uninterrupted run's, the curve rows logged before the checkpoint
keep the first attempt's CPU-seconds, and a changed setting under the same row name is refused."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from mri_fixtures import phantom_kspace, write_file  # noqa: E402

import time_to_quality as ttq  # noqa: E402

KEY = "phantom4_8x_s0_none"
#: a tiny 8x row: 64x64 phantom, a 16-channel decoder, 60 steps logged every 10, a checkpoint every 20
ARGS = ["--scan", "phantom4", "--accel", "8", "--stop-rule", "none", "--skip-l1", "--log-every", "10",
        "--checkpoint-every", "20", "--set", "channels=16", "steps=60", "mask_steps=20"]
NO_CPU = [k for k in ttq.CURVE_KEYS if k != "cpu_s"]


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return write_file(tmp_path_factory.mktemp("ttq") / "phantom.h5", phantom_kspace(slices=1)[0])


def run(out, scan, monkeypatch, extra=(), kill_at=None):
    """main() on the phantom; ``kill_at``: the run raises after the logged row of that step (a kill)."""
    import mri_oes.runner as runner
    monkeypatch.setattr(ttq, "scan_file", lambda name: scan)
    orig = runner.run

    def killed_run(*a, callback=None, **kw):
        def cb(row):
            callback(row)
            if row["step"] >= kill_at:
                raise Killed(row["step"])
        return orig(*a, callback=cb, **kw)
    if kill_at is not None:
        monkeypatch.setattr(runner, "run", killed_run)
    try:
        ttq.main(ARGS + list(extra) + ["--out", str(out)])
    finally:
        monkeypatch.setattr(runner, "run", orig)


def read(out):
    rows = json.loads((out / "rows.json").read_text())["rows"]
    assert [r["key"] for r in rows] == [KEY]
    return rows[0], json.loads((out / "curves" / f"{KEY}.json").read_text())


def test_killed_row_resumes_to_the_uninterrupted_result(tmp_path, scan, monkeypatch):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run(whole, scan, monkeypatch)
    ref, ref_curve = read(whole)
    assert ref["resumed_from_step"] is None and ref["run_dir"] == str(whole / "runs" / KEY)
    assert (whole / "runs" / KEY / "metrics.json").is_file()

    with pytest.raises(Killed):
        run(cut, scan, monkeypatch, kill_at=50)       # checkpoints at 20 and 40: resumes at 40
    assert not (cut / "rows.json").exists()
    assert (cut / "runs" / f".{KEY}.partial" / "checkpoint.safetensors").is_file()
    first = json.loads((cut / "curves" / f"{KEY}.partial.json").read_text())
    assert [h["step"] for h in first] == [0, 10, 20, 30, 40, 50]

    # the same row name with another setting: refused, naming the key; the unfinished run is kept
    with pytest.raises(SystemExit, match="differs in: .*lr"):
        run(cut, scan, monkeypatch, extra=["lr=0.005"])
    assert (cut / "runs" / f".{KEY}.partial" / "checkpoint.safetensors").is_file()

    run(cut, scan, monkeypatch)                        # the same command again: resumes
    row, curve = read(cut)
    assert row["resumed_from_step"] == 40 and row["mask_resumed_from_step"] is None
    assert row["steps_run"] == ref["steps_run"] == 60
    assert [{k: h[k] for k in NO_CPU} for h in curve] == [{k: h[k] for k in NO_CPU} for h in ref_curve]
    for k in ("final_psnr", "final_ssim", "final_network_psnr", "best_dc_psnr", "density", "sparsity"):
        assert row[k] == ref[k], k
    np.testing.assert_array_equal(np.load(cut / "runs" / KEY / "recon.npy"), np.load(whole / "runs" / KEY / "recon.npy"))
    # the rows before the checkpoint keep the first attempt's clock; the clock runs on from them
    assert [h["cpu_s"] for h in curve[:4]] == [h["cpu_s"] for h in first[:4]]
    cpu = [h["cpu_s"] for h in curve]
    assert all(b > a for a, b in zip(cpu, cpu[1:]))
    assert row["total_cpu_s"] == cpu[-1] and row["mask_cpu_s"] == first[0]["cpu_s"]
    assert not (cut / "curves" / f"{KEY}.partial.json").exists()

    # a finished row is skipped; its run folder without its row is refused in one line
    run(cut, scan, monkeypatch)
    assert read(cut)[0] == row
    (cut / "rows.json").unlink()
    with pytest.raises(SystemExit, match="holds a finished run"):
        run(cut, scan, monkeypatch)
