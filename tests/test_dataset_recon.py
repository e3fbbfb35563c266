"""`mri-oes recon` over a small dataset built from real k-space: 2 volumes × 3 slices (the bundled
8-coil brain, each slice shifted/scaled in image space, the second volume flipped), Ray local with 2
workers: per-volume fastMRI files, metrics equal to ``fastmri.evaluate`` on them, and a run killed
mid-way (SIGKILL of the whole process group) that resumes to the same files."""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import BRAIN, brain_cut, fft2c, ifft2c, write_file  # noqa: E402

from mri_oes.cli import main  # noqa: E402

NAMES = ("file_brain_AXT1_a.h5", "file_brain_AXT1_b.h5")
TINY_DIP = ["--steps", "30", "--levels", "3", "--width", "0.25", "--log-every", "10", "--checkpoint-every", "5"]


def _real_slice():
    try:
        from mri_oes import datasets
        path = datasets.bundled_brain()
        if Path(path).is_file():
            with h5py.File(path) as f:
                return np.asarray(f["kspace"][0])
    except ImportError:
        pass
    if BRAIN.exists():
        return brain_cut()[0]
    pytest.skip("no real brain k-space (bundled or shared)")


def make_dataset(folder: Path) -> Path:
    """2 fastMRI multi-coil volumes × 3 slices (96×80, 8 coils) from one real slice."""
    img = ifft2c(_real_slice())
    folder.mkdir(parents=True, exist_ok=True)
    for v, name in enumerate(NAMES):
        ks = []
        for s in range(3):
            im = np.roll(img, 3 * s + 5 * v, axis=-2)
            if v:
                im = im[::-1, ::-1]
            ks.append(fft2c(im) * (1 - 0.1 * s))
        write_file(folder / name, np.stack(ks).astype(np.complex64))
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("dataset") / "multicoil_val")


def _fastmri_evaluate(target_file, predictions):
    """``fastmri.evaluate.evaluate`` on one target file (its own folder) and our reconstructions."""
    from fastmri import evaluate
    d = Path(predictions).parent / "targets" / Path(target_file).stem
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(target_file, d)
    m = evaluate.evaluate(argparse.Namespace(target_path=d, predictions_path=Path(predictions),
                                             acquisition=None, acceleration=None), "reconstruction_rss")
    return {k.lower(): float(np.asarray(v).reshape(-1)[0]) for k, v in m.means().items()}


def test_dataset_discovery(dataset, tmp_path):
    from mri_oes.errors import UserError
    from mri_oes.mri.data import make_mask
    from mri_oes.mri.dataset import discover
    k = h5py.File(dataset / NAMES[0])["kspace"][()]
    m, _ = make_mask(80, 4, "equispaced", 0)
    test_dir = tmp_path / "multicoil_test"
    test_dir.mkdir()
    write_file(test_dir / "file_brain_AXT1_c.h5", k * m, rss=False, extra={"mask": m})
    vols = discover([dataset, test_dir])
    assert [v.name for v in vols] == list(NAMES) + ["file_brain_AXT1_c.h5"]
    assert [v.split for v in vols] == ["val", "val", "test"] and {v.anatomy for v in vols} == {"brain"}
    assert [v.undersampled for v in vols] == [False, False, True] and vols[0].slices == [0, 1, 2]
    assert discover([dataset], slices=[2, 1])[0].slices == [1, 2]
    with pytest.raises(UserError, match="--slice 3 out of range"):
        discover([dataset], slices=[3])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no \\*.h5"):
        discover([tmp_path / "empty"])


def test_dataset_ray_two_workers_fastmri_files_and_metrics(dataset, tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    rc = main(["recon", str(dataset), "--method", "zero-filled", "l1-wavelet", "--accel", "4",
               "--workers", "2", "--threads", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and "ray, 2 workers x 1 thread(s)" in err and "[6/12]" in err
    assert json.loads((out / "recon.json").read_text())["parallel"]["backend"] == "ray"
    for run in ("zero-filled_4x", "l1-wavelet_4x"):
        for name in NAMES:
            f = out / run / "reconstructions" / name
            with h5py.File(f) as h:
                assert list(h) == ["reconstruction"]
                assert h["reconstruction"].shape == (3, 96, 80) and h["reconstruction"].dtype == np.float32
            rec = json.loads((out / run / "volumes" / Path(name).stem / "metrics.json").read_text())
            ev = _fastmri_evaluate(dataset / name, out / run / "reconstructions")
            for k in ("psnr", "ssim", "nmse"):
                assert abs(rec["final"][k] - ev[k]) < 1e-6, (run, name, k, rec["final"][k], ev[k])
            assert rec["metrics_convention"] == "fastmri" and rec["slices"] == [0, 1, 2]
            assert rec["full_fov"]["psnr"] is not None and rec["metric_crop"] == [80, 80]   # W x W
            # per-slice SSIMs (volume max as data range) average to the volume SSIM, as in fastMRI
            srecs = [json.loads((out / run / "slices" / Path(name).stem / f"{s:03d}" / "metrics.json").read_text())
                     for s in range(3)]
            assert abs(np.mean([r["final"]["ssim"] for r in srecs]) - rec["final"]["ssim"]) < 1e-9
            assert len({r["data_range"] for r in srecs}) == 1
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and summary[0].startswith("method,accel")
    import csv
    rows = list(csv.DictReader(open(out / "l1-wavelet_4x" / "slices.csv")))
    assert len(rows) == 6 and {r["final_psnr"] != "" for r in rows} == {True}
    zf = json.loads((out / "summary.json").read_text())["rows"]
    assert zf[1]["psnr_mean"] > zf[0]["psnr_mean"] + 3   # L1-wavelet well above zero-filled on real data
    # a rerun with the same command does nothing new; other settings are refused
    assert main(["recon", str(dataset), "--method", "zero-filled", "--accel", "4", "--workers", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert "6 already done" in capsys.readouterr().err
    assert main(["recon", str(dataset), "--method", "zero-filled", "--accel", "4", "--mask-type", "random",
                 "--workers", "1", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_dataset_serial_without_ray_says_how_to_get_it(dataset, tmp_path, capsys, monkeypatch):
    from mri_oes import parallel
    monkeypatch.setattr(parallel, "ray_available", lambda: False)
    out = tmp_path / "out"
    rc = main(["recon", str(dataset / NAMES[0]), "--method", "zero-filled", "--accel", "4", "--slice", "0", "2",
               "--workers", "2", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and "pip install -e .[cluster]" in err
    with h5py.File(out / "zero-filled_4x" / "reconstructions" / NAMES[0]) as h:
        assert h["reconstruction"].shape == (2, 96, 80)


def _recon_cmd(dataset, out):
    return [sys.executable, "-m", "mri_oes", "recon", str(dataset), "--method", "dip", "--accel", "4",
            *TINY_DIP, "--workers", "2", "--threads", "1", "--out", str(out), "--no-progress"]


def _volumes(out):
    res = {}
    for name in NAMES:
        with h5py.File(out / "dip_4x" / "reconstructions" / name) as h:
            res[name] = h["reconstruction"][()]
    return res


def test_dataset_killed_and_resumed_equals_uninterrupted(dataset, tmp_path):
    """SIGKILL the whole process group (driver, Ray and its workers) once two slices are complete, with
    fits still running; rerun the same command: finished slices are skipped, unfinished fits resume
    from their checkpoints, and the volume files equal an uninterrupted run's."""
    pytest.importorskip("ray")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"   # the uninterrupted reference: serial, in this process (same results as Ray)
    assert main(_recon_cmd(dataset, full)[3:-7] + ["--workers", "1", "--threads", "1", "--out", str(full),
                                                    "--no-progress"]) == 0
    ref = _volumes(full)

    out = tmp_path / "killed"
    p = subprocess.Popen(_recon_cmd(dataset, out), env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    done = lambda: glob.glob(str(out / "dip_4x" / "slices" / "*" / "[0-9][0-9][0-9]" / "metrics.json"))  # noqa: E731
    try:
        while len(done()) < 2 and p.poll() is None and time.time() - t0 < 300:
            time.sleep(0.05)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    n_done = len(done())
    assert 2 <= n_done < 6, n_done
    assert not (out / "dip_4x" / "reconstructions" / NAMES[1]).exists()   # never a partial volume
    time.sleep(1)
    r = subprocess.run(_recon_cmd(dataset, out), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # finished slices are skipped: those renamed into place before the kill, plus any whose result was
    # fully staged (metrics.json written) but not yet renamed when the kill came
    m = re.search(r"\((\d+) already done\)", r.stderr)
    assert m and n_done <= int(m.group(1)) < 6, r.stderr[-2000:]
    got = _volumes(out)
    for name in NAMES:
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-6 * float(ref[name].max()))
    assert not glob.glob(str(out / "dip_4x" / "slices" / "*" / ".*.partial"))


def test_dataset_bad_slice_refused_before_any_output(dataset, tmp_path, capsys):
    """A slice whose input is bad (NaN k-space in slice 1 of one volume only) is found when the inputs
    are validated, before any run folder exists: one line naming the file and the slice, exit 2,
    nothing written (the slice is never sent to a worker, so nothing is retried)."""
    with h5py.File(dataset / NAMES[0]) as f:
        k = f["kspace"][()]
    k[1, :, 10, 10] = np.nan
    bad = tmp_path / "data"
    bad.mkdir()
    write_file(bad / "file_brain_AXT1_bad.h5", k)
    shutil.copy(dataset / NAMES[1], bad / NAMES[1])
    out = tmp_path / "out"
    rc = main(["recon", str(bad), "--method", "zero-filled", "--accel", "4", "--workers", "2", "--retries", "1",
               "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "file_brain_AXT1_bad.h5" in err[0] and "slice 1" in err[0] \
        and "contains NaN" in err[0], err
    assert not out.exists()


def test_ray_task_with_bad_input_fails_once_not_retried(dataset, tmp_path):
    """Bad input met inside a Ray task (here: a slice task built directly for a NaN slice, past the
    up-front validation) comes back as a TaskFailure marked not retried, while a good task succeeds."""
    pytest.importorskip("ray")
    from mri_oes import parallel
    from mri_oes.commands.mri import _run_slice_job
    from mri_oes.mri.volume import SliceJob
    from mri_oes.recipe import Recipe
    with h5py.File(dataset / NAMES[0]) as f:
        k = f["kspace"][()]
    k[1, :, 10, 10] = np.nan
    bad = write_file(tmp_path / "file_brain_AXT1_bad.h5", k)
    s = Recipe.from_preset("cpu", 4, method="zero-filled")
    jobs = [SliceJob(str(bad), 1, s, str(tmp_path / "out" / s.run_name)),
            SliceJob(str(bad), 0, s, str(tmp_path / "out" / s.run_name))]
    res = dict((j.slice, r) for j, r in parallel.run_tasks(_run_slice_job, jobs, workers=2, retries=1))
    assert isinstance(res[1], parallel.TaskFailure) and not res[1].retried and "contains NaN" in res[1].error
    assert not isinstance(res[0], parallel.TaskFailure) and res[0]["final"]["psnr"] > 10


def test_dataset_batch_slices_on_ray(dataset, tmp_path, capsys):
    """``--batch-slices 4`` over 2 volumes x 3 slices of one grid: two Ray tasks (4 and 2 slices), each
    trained in one loop; every slice and volume written as without batching, each slice recording the
    size of the batch it trained in and its share of the batch's CPU-seconds."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    rc = main(["recon", str(dataset), "--method", "dip", "--accel", "4", *TINY_DIP, "--batch-slices", "4",
               "--workers", "2", "--threads", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and "ray, 2 workers x 1 thread(s)" in err and "[6/6]" in err
    sizes = []
    for name in NAMES:
        with h5py.File(out / "dip_4x" / "reconstructions" / name) as h:
            assert h["reconstruction"].shape == (3, 96, 80)
        for s in range(3):
            rec = json.loads((out / "dip_4x" / "slices" / Path(name).stem / f"{s:03d}" / "metrics.json").read_text())
            assert rec["steps"] == 30 and rec["final"]["psnr"] is not None
            assert rec["time"]["cpu_s"] > 0
            sizes.append(rec["config"]["batch_slices"])
    assert sorted(sizes) == [2, 2, 4, 4, 4, 4]
