"""`mri-oes evaluate`: the README's evaluation commands run as printed (subprocesses) on a real recon
output, their numbers are fastMRI's (``fastmri.evaluate.evaluate`` called on the same files), and bad
input is refused in one line."""
import argparse
import csv
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mri_oes.cli import main

ROOT = Path(__file__).resolve().parents[1]
BRAIN = ROOT / "mri_oes" / "data" / "brain8_small.h5"


def readme_evaluation_block():
    """The ``mri-oes`` lines of the README's bash block that holds ``mri-oes evaluate``."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = [ln.split("#")[0].strip() for ln in block.splitlines()]
        lines = [ln for ln in lines if ln.startswith("mri-oes ")]
        if any(ln.startswith("mri-oes evaluate ") for ln in lines):
            return lines
    pytest.fail("README has no bash block with an `mri-oes evaluate` line")


def cli():
    exe = Path(sys.executable).parent / "mri-oes"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "mri_oes"]


def fastmri_means(target_dir, pred_dir):
    """``fastmri.evaluate.evaluate`` (its own function) on a target folder and a prediction folder."""
    from fastmri import evaluate
    args = argparse.Namespace(target_path=Path(target_dir), predictions_path=Path(pred_dir),
                              acquisition=None, acceleration=None)
    return {k: float(np.asarray(v).reshape(-1)[0])
            for k, v in evaluate.evaluate(args, "reconstruction_rss").means().items()}


@pytest.fixture
def recon_out(tmp_path, monkeypatch):
    """The README's recon input and output names: ``scan.h5`` (the bundled brain) reconstructed
    zero-filled and with SENSE at 4x into ``runs/recon``."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(BRAIN, tmp_path / "scan.h5")
    rc = main(["recon", "scan.h5", "--accel", "4", "--method", "zero-filled", "sense", "--out", "runs/recon",
               "--workers", "1", "--no-progress"])
    assert rc == 0
    return tmp_path


def test_readme_evaluation_commands_run_as_printed(recon_out):
    lines = readme_evaluation_block()
    env = {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    outputs = {}
    for line in lines:
        argv = shlex.split(line)
        p = subprocess.run(cli() + argv[1:], cwd=recon_out, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"README line failed: {line}\n{p.stderr[-2000:]}"
        outputs[argv[1]] = (argv, p.stdout)
    argv, stdout = outputs["evaluate"]
    assert "zero-filled_4x" in stdout and "sense_4x" in stdout and "mean of 1" in stdout
    csv_path = recon_out / argv[argv.index("--csv") + 1]
    rows = list(csv.DictReader(csv_path.open()))
    assert {(r["run"], r["level"]) for r in rows} == {("zero-filled_4x", "volume"), ("zero-filled_4x", "mean"),
                                                      ("sense_4x", "volume"), ("sense_4x", "mean")}
    # the same numbers as fastMRI's evaluate() on a folder holding only the target (ours in float64,
    # fastMRI's on the files' float32: equal to ~1e-9 dB)
    targets = recon_out / "targets"
    targets.mkdir()
    shutil.copy(recon_out / "scan.h5", targets / "scan.h5")
    for r in rows:
        if r["level"] != "volume":
            continue
        ref = fastmri_means(targets, recon_out / "runs" / "recon" / r["run"] / "reconstructions")
        assert float(r["psnr"]) == pytest.approx(ref["PSNR"], abs=1e-6)
        assert float(r["ssim"]) == pytest.approx(ref["SSIM"], abs=1e-7)
        assert float(r["nmse"]) == pytest.approx(ref["NMSE"], rel=1e-6)
    # and the volume record recon wrote agrees (one metric implementation)
    import json
    vol = json.loads((recon_out / "runs/recon/sense_4x/volumes/scan/metrics.json").read_text())
    sense = next(r for r in rows if r["run"] == "sense_4x" and r["level"] == "volume")
    assert float(sense["psnr"]) == pytest.approx(vol["final"]["psnr"], abs=1e-9)
    if "report" in outputs:
        assert (recon_out / "runs" / "recon" / "report.html").is_file()


def _write(path, key, arr, **attrs):
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=arr)
        f.attrs.update(attrs)
    return path


def test_evaluate_two_volumes_mean_is_fastmri(tmp_path, capsys):
    """Two volumes of different sizes and slice counts: per-volume rows and the mean row equal
    fastMRI's per-file metrics and their mean; non-fastMRI files beside the targets are ignored."""
    rng = np.random.default_rng(0)
    tdir, pdir = tmp_path / "targets", tmp_path / "preds"
    tdir.mkdir(), pdir.mkdir()
    for name, shape in (("a.h5", (2, 40, 32)), ("b.h5", (3, 36, 36))):
        gt = rng.random(shape).astype(np.float32) + 0.5
        _write(tdir / name, "reconstruction_rss", gt, acquisition="AXT1")
        _write(pdir / name, "reconstruction", (gt + 0.05 * rng.standard_normal(shape)).astype(np.float32))
    ref = fastmri_means(tdir, pdir)   # fastMRI's mean over the two files (it needs targets only there)
    (tdir / "notes.txt").write_text("not a target")
    csv_path = tmp_path / "ev.csv"
    assert main(["evaluate", str(pdir), str(tdir), "--csv", str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["level"] for r in rows] == ["volume", "volume", "mean"]
    mean = rows[-1]
    assert float(mean["psnr"]) == pytest.approx(ref["PSNR"], abs=1e-6)
    assert float(mean["ssim"]) == pytest.approx(ref["SSIM"], abs=1e-7)
    assert int(mean["volumes"]) == 2 and int(mean["slices"]) == 5
    assert "mean of 2" in capsys.readouterr().out
    # an existing --csv is kept unless --overwrite
    assert main(["evaluate", str(pdir), str(tdir), "--csv", str(csv_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("case,msg", [
    ("not-hdf5", "not an HDF5 file"),
    ("no-rss", "no 'reconstruction_rss' dataset"),
    ("no-target", "no file named p.h5"),
    ("no-pred", "no .h5 reconstruction files"),
    ("not-recon", "no 'reconstruction' dataset"),
    ("slices", "has 1 slice(s), TARGET"),
])
def test_evaluate_bad_input_one_line(case, msg, tmp_path, capsys):
    tdir, pdir = tmp_path / "t", tmp_path / "p"
    tdir.mkdir(), pdir.mkdir()
    img = np.ones((2, 16, 16), np.float32)
    _write(pdir / "p.h5", "reconstruction", img)
    if case == "not-hdf5":
        (tdir / "p.h5").write_text("plain text, not HDF5")
    elif case == "no-rss":
        _write(tdir / "p.h5", "reconstruction_esc", img)
    elif case == "no-pred":
        (pdir / "p.h5").unlink()
    elif case == "not-recon":
        _write(pdir / "p.h5", "kspace", img)
        _write(tdir / "p.h5", "reconstruction_rss", img)
    elif case == "slices":
        _write(pdir / "p.h5", "reconstruction", img[:1])
        _write(tdir / "p.h5", "reconstruction_rss", img)
    assert main(["evaluate", str(pdir), str(tdir)]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_recon_of_some_slices(tmp_path):
    """`recon --slice 0 2` of a 3-slice file: the reconstruction file holds 2 slices; evaluate scores
    them against those target slices (the run's volume record names them) with the whole volume's
    data range, the numbers recon recorded; the cross-method montage of the volume is written."""
    sys.path.insert(0, str(Path(__file__).parent))
    from mri_fixtures import phantom_kspace, write_file
    k, _, _ = phantom_kspace(n=64, coils=4, slices=3)
    src = write_file(tmp_path / "phantom.h5", k)
    out = tmp_path / "out"
    assert main(["recon", str(src), "--slice", "0", "2", "--accel", "4", "--method", "zero-filled", "sense",
                 "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert (out / "figures" / "phantom_4x_montage.png").is_file()
    csv_path = tmp_path / "ev.csv"
    assert main(["evaluate", str(out), str(src), "--csv", str(csv_path)]) == 0
    import json
    for r in csv.DictReader(csv_path.open()):
        assert r["slices"] == "2"
        vol = json.loads((out / r["run"] / "volumes" / "phantom" / "metrics.json").read_text())
        assert float(r["psnr"]) == pytest.approx(vol["final"]["psnr"], abs=1e-9)
        assert float(r["ssim"]) == pytest.approx(vol["final"]["ssim"], abs=1e-12)
