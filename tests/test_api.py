"""mri_oes.reconstruct: one call reconstructs a slice exactly as `mri-oes recon` does (same files, same
numbers), from a fastMRI file or a NumPy k-space with a sampling mask; bad input is one clear error."""
import h5py
import numpy as np
import pytest

import mri_oes
from mri_oes import datasets
from mri_oes.cli import main
from mri_oes.errors import UserError
from mri_oes.mri.data import make_mask

BRAIN = datasets.bundled_brain()


def _slice():
    with h5py.File(BRAIN) as f:
        return f["kspace"][0], f["reconstruction_rss"][0]


@pytest.mark.parametrize("method", ["zero-filled", "l1-wavelet"])
def test_reconstruct_a_file_equals_recon(method, tmp_path, capsys):
    image, record = mri_oes.reconstruct(BRAIN, accel=4, method=method)
    k, ref = _slice()
    assert image.shape == ref.shape and image.dtype == np.float32
    assert record["method"] == method and record["accel"] == 4 and record["level"] == "slice"
    assert record["metrics_convention"] == "fastmri" and record["final"]["psnr"] > 15
    # image in the file's original units: the same scale as the fastMRI target
    assert 0.5 < np.percentile(image, 99) / np.percentile(ref, 99) < 2
    # `mri-oes recon` on the same slice: the same image and metrics
    out = tmp_path / "recon"
    assert main(["recon", str(BRAIN), "--method", method, "--accel", "4", "--out", str(out), "--no-progress"]) == 0
    theirs = np.load(out / f"{method}_4x" / "slices" / BRAIN.stem / "000" / "reconstruction.npy")
    np.testing.assert_allclose(image, theirs, rtol=1e-5, atol=1e-6 * float(theirs.max()))
    if method == "zero-filled":
        assert record["final"]["psnr"] == pytest.approx(record["zero_filled"]["psnr"])
    else:
        zf, _ = mri_oes.reconstruct(BRAIN, accel=4, method="zero-filled")
        assert record["final"]["psnr"] > record["zero_filled"]["psnr"] + 3   # L1 beats zero-filling here


def test_reconstruct_an_array_with_a_sampling_mask(tmp_path):
    k, ref = _slice()
    mask, _ = make_mask(k.shape[-1], 4, "equispaced", 0)
    image, record = mri_oes.reconstruct(k, mask=mask, method="l1-wavelet", reference=ref, reg_weight=0.003,
                                        out=tmp_path / "keep")
    same, _ = mri_oes.reconstruct(BRAIN, accel=4, method="l1-wavelet",   # the same mask drawn from accel=4
                                  reg_weight=0.003)
    np.testing.assert_allclose(image, same, rtol=1e-4, atol=1e-5 * float(same.max()))
    assert record["final"]["psnr"] is not None and record["lamda"] == 0.003
    # the run folder is kept with `out`, as recon writes it
    assert list((tmp_path / "keep").glob("l1-wavelet_own-mask/slices/*/000/metrics.json"))
    # a fully sampled array given with its mask gets its own RSS target (metrics without `reference`)
    _, rec2 = mri_oes.reconstruct(k, mask=mask, method="zero-filled")
    assert rec2["final"]["psnr"] is not None


def test_reconstruct_sparse_dip_few_steps():
    image, record = mri_oes.reconstruct(BRAIN, accel=4, method="sparse-dip", preset="cpu", steps=3, mask_steps=2,
                                        density=0.5, levels=2)
    assert image.shape == _slice()[1].shape and np.isfinite(image).all()
    assert record["method"] == "sparse-dip" and record["steps"] == 3 and record["mask_steps"] == 2
    assert record["density"] == pytest.approx(0.5, abs=0.01)


def test_bad_input_is_one_clear_error():
    k, _ = _slice()
    with pytest.raises(UserError, match="unknown setting 'stpes'"):
        mri_oes.reconstruct(BRAIN, accel=4, stpes=3)
    with pytest.raises(UserError, match="mask= .* or accel="):
        mri_oes.reconstruct(k, method="zero-filled")
    with pytest.raises(UserError, match="line mask of W=80"):
        mri_oes.reconstruct(k, mask=np.ones(7), method="zero-filled")
    with pytest.raises(UserError, match="method must be one of"):
        mri_oes.reconstruct(BRAIN, accel=4, method="cs")
    with pytest.raises(UserError, match="expected a complex array"):
        mri_oes.reconstruct(np.abs(k), accel=4)
