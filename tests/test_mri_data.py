"""fastMRI file reading, undersampling, ESPIRiT maps and cache, metrics and the MRI operator."""
import os
import sys

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import brain_h5, ifft2c, fft2c, phantom_h5, phantom_kspace, write_file  # noqa: F401,E402

from mri_oes.errors import UserError  # noqa: E402
from mri_oes.mri import data as D  # noqa: E402
from mri_oes.mri.espirit import cached_espirit_maps, espirit_maps  # noqa: E402
from mri_oes.mri.metrics import mri_metrics  # noqa: E402
from mri_oes.mri.problem import build_problem  # noqa: E402


def test_load_phantom(phantom_h5):
    sls = D.load_slices(phantom_h5)
    assert len(sls) == 2
    sl = sls[1]
    assert sl.kspace.shape == (8, 64, 64) and sl.kspace.dtype == np.complex64
    assert sl.reference.shape == (64, 64) and sl.recon_size == (64, 64)
    assert sl.fully_sampled and sl.metadata["slice"] == 1 and sl.metadata["file"] == str(phantom_h5)
    assert sl.metadata["attrs"]["acquisition"] == "TEST"


def test_transposed_header_of_shared_brain():
    if not os.path.exists(D.__file__):
        pytest.skip()
    from mri_fixtures import BRAIN
    if not BRAIN.exists():
        pytest.skip("no brain file")
    sl = D.load_slice(BRAIN, 0)
    assert sl.kspace.shape == (8, 230, 180) and sl.recon_size == (230, 180)


@pytest.mark.parametrize("accel,cf", [(4, 0.08), (8, 0.04)])
@pytest.mark.parametrize("kind", ["random", "equispaced", "equispaced-fraction"])
def test_masks(accel, cf, kind):
    m, info = D.make_mask(180, accel, kind, seed=0)
    assert m.shape == (180,) and set(np.unique(m)) <= {0.0, 1.0}
    assert info["num_low_frequencies"] == round(180 * cf)
    assert D.acs_lines(m)[1] >= info["num_low_frequencies"]
    assert 0.6 * accel < info["acceleration"] < 1.4 * accel
    m2, _ = D.make_mask(180, accel, kind, seed=0)
    np.testing.assert_array_equal(m, m2)   # seeded


def test_impossible_acceleration():
    with pytest.raises(UserError, match="acceleration"):
        D.make_mask(20, 16, "equispaced", 0)
    with pytest.raises(UserError, match="mask type"):
        D.make_mask(180, 4, "spiral", 0)


def test_undersampled_file_keeps_its_mask(tmp_path):
    k, _, _ = phantom_kspace(slices=1)
    m, _ = D.make_mask(64, 4, "equispaced", 1)
    p = write_file(tmp_path / "us.h5", k * m, rss=False, extra={"mask": m.astype(bool)})
    sl = D.load_slice(p)
    assert sl.metadata["mask_source"] == "file" and sl.reference is None
    np.testing.assert_array_equal(sl.mask, m)
    p2 = write_file(tmp_path / "us2.h5", k * m, rss=False)   # inferred from zero lines
    sl2 = D.load_slice(p2)
    assert sl2.metadata["mask_source"] == "inferred"
    np.testing.assert_array_equal(sl2.mask, m)
    _, mask, info = D.undersample(sl2)
    np.testing.assert_array_equal(mask, m)
    with pytest.raises(UserError, match="already undersampled"):
        D.undersample(sl2, 16)


# ----------------------------------------------------------------------------------- bad inputs
def _bad_files(tmp_path):
    k, _, _ = phantom_kspace(n=16, coils=2, slices=1)
    out = {}
    (tmp_path / "text.h5").write_text("not hdf5")
    out["not a readable HDF5"] = tmp_path / "text.h5"
    good = write_file(tmp_path / "good.h5", k)
    data = good.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    out["truncated|not a readable"] = tmp_path / "trunc.h5"
    with h5py.File(tmp_path / "nok.h5", "w") as f:
        f["foo"] = np.zeros(3)
    out["'kspace'"] = tmp_path / "nok.h5"
    out["single-coil"] = write_file(tmp_path / "sc.h5", k[:, 0], rss=False)
    out["dtype"] = write_file(tmp_path / "real.h5", np.abs(k).astype(np.float32), rss=False)
    kn = k.copy()
    kn[0, 0, 3, 3] = np.nan
    out["NaN"] = write_file(tmp_path / "nan.h5", kn, rss=False)
    return out


def test_bad_files_raise_user_error(tmp_path):
    for msg, path in _bad_files(tmp_path).items():
        with pytest.raises(UserError) as e:
            D.load_slices(path)
        assert str(path) in str(e.value)
        assert any(m in str(e.value) for m in msg.split("|")), (msg, str(e.value))


def test_slice_out_of_range(phantom_h5):
    with pytest.raises(UserError, match="slice 5 out of range"):
        D.load_slices(phantom_h5, [5])
    with pytest.raises(UserError, match="out of range"):
        D.load_slices(phantom_h5, [-1])
    with pytest.raises(UserError, match="file not found"):
        D.load_slices(phantom_h5.parent / "missing.h5")


# -------------------------------------------------------------------------------------- ESPIRiT
def test_espirit_unit_norm_and_cache(phantom_h5, tmp_path):
    sl = D.load_slice(phantom_h5, 0)
    k, mask, _ = D.undersample(sl, 4, "equispaced", 0)
    cache = tmp_path / "cache.h5"
    maps, info = cached_espirit_maps(k, mask, cache=cache, fingerprint=D.file_fingerprint(phantom_h5))
    assert maps.shape == sl.kspace.shape and not info["cache_hit"]
    assert info["calib_width"] == D.acs_lines(mask)[1]
    norm = np.sqrt((np.abs(maps) ** 2).sum(0))
    inside = norm > 0.5
    assert inside.mean() > 0.2
    np.testing.assert_allclose(norm[inside], 1.0, atol=0.05)
    maps2, info2 = cached_espirit_maps(k, mask, cache=cache, fingerprint=D.file_fingerprint(phantom_h5))
    assert info2["cache_hit"] and info2["cache_key"] == info["cache_key"]
    np.testing.assert_array_equal(maps, maps2)
    # other parameters or another mask: a different entry
    _, info3 = cached_espirit_maps(k, mask, cache=cache, crop=0.9)
    assert not info3["cache_hit"]
    # a damaged cache is recomputed, not fatal
    cache.write_bytes(b"garbage")
    _, info4 = cached_espirit_maps(k, mask, cache=cache)
    assert not info4["cache_hit"]


def test_espirit_uses_only_acs(phantom_h5):
    """Changing k-space outside the ACS block does not change the maps."""
    sl = D.load_slice(phantom_h5, 0)
    k, mask, _ = D.undersample(sl, 4, "equispaced", 0)
    lo, w = D.acs_lines(mask)
    k2 = k.copy()
    k2[..., :lo] *= 3
    m1, _ = espirit_maps(k, mask)
    m2, _ = espirit_maps(k2, mask)
    np.testing.assert_allclose(m1, m2, atol=1e-5)


def test_espirit_needs_acs():
    m = np.zeros(64, np.float32)
    m[::4] = 1
    with pytest.raises(UserError, match="ACS"):
        espirit_maps(np.ones((2, 64, 64), np.complex64), m)


# --------------------------------------------------------------------------------- problem / A^H A
def test_normal_operator_matches_projection(phantom_h5):
    sl = D.load_slice(phantom_h5, 0)
    p = build_problem(sl, 4, "random", seed=3)
    S, M = p.maps, p.mask.reshape(1, 1, -1)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 64)) + 1j * rng.standard_normal((64, 64))).astype(np.complex64)
    expect = np.sum(np.conj(S) * ifft2c(M * fft2c(S * x)), 0)
    got = p.operator.normal(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expect, atol=1e-4, rtol=1e-4)
    # y is the scaled undersampled k-space; the zero-filled ESPIRiT image has p99 = 1
    zf = np.abs(p.operator.adjoint(p.y).numpy())
    assert abs(np.percentile(zf, 99) - 1) < 1e-3
    np.testing.assert_allclose(p.y.numpy() / p.scale, p.kspace, atol=1e-5)


def test_metrics_fastmri_convention():
    rng = np.random.default_rng(0)
    ref = rng.random((40, 30)) + 1
    assert mri_metrics(ref * np.exp(1j * 0.3), ref)["psnr"] == np.inf or \
        mri_metrics(ref * np.exp(1j * 0.3), ref)["psnr"] > 100
    m = mri_metrics(np.pad(ref + 0.01, 5), ref)       # larger image: centre-cropped to the reference
    from fastmri import evaluate
    from fastmri.data.transforms import center_crop
    gt = center_crop(ref[None], (30, 30))              # fastmri.evaluate: W x W crop, range = cropped max
    assert abs(m["psnr"] - evaluate.psnr(gt, gt + 0.01)) < 1e-9
    assert m["data_range"] == gt.max() and m["crop"] == [30, 30] and m["metrics_convention"] == "fastmri"
    assert abs(m["full_fov"]["psnr"] - evaluate.psnr(ref[None], ref[None] + 0.01, maxval=gt.max())) < 1e-9
    assert abs(mri_metrics(2 * ref, ref)["psnr_ls"]) > 100
