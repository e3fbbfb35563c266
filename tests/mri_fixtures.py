"""Small fastMRI-layout HDF5 files for the MRI tests (built with h5py; no fastMRI data needed).

* :func:`phantom_file` — 8 coils, 64×64, Shepp-Logan × birdcage maps (SigPy), 2 slices;
* :func:`brain_cut_file` — an image-space crop of the real ``brain8_full.h5`` (96×80), re-transformed
  to k-space (skipped when the shared data are absent).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

BRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mri" / "brain8_full.h5"
if not BRAIN.exists():
    BRAIN = Path("/work/shared/data/mri/brain8_full.h5")


def fft2c(x):
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho"), axes=ax)


def ifft2c(k):
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax)


def header_xml(h, w, rh=None, rw=None):
    """ISMRMRD header the fastMRI way: x = readout (H), y = phase encode (W)."""
    rh, rw = rh or h, rw or w
    enc = f"<matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>"
    rec = f"<matrixSize><x>{rh}</x><y>{rw}</y><z>1</z></matrixSize>"
    return ('<?xml version="1.0" encoding="utf-8"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
            f"<encoding><encodedSpace>{enc}</encodedSpace><reconSpace>{rec}</reconSpace>"
            "<encodingLimits><kspace_encoding_step_1><minimum>0</minimum>"
            f"<maximum>{w - 1}</maximum><center>{w // 2}</center></kspace_encoding_step_1>"
            "</encodingLimits></encoding></ismrmrdHeader>")


def write_file(path, kspace, rss=True, header=True, extra=None):
    k = np.asarray(kspace)
    with h5py.File(path, "w") as f:
        f["kspace"] = k
        if rss and k.ndim == 4:
            f["reconstruction_rss"] = np.sqrt((np.abs(ifft2c(k)) ** 2).sum(1)).astype(np.float32)
        if header:
            f["ismrmrd_header"] = header_xml(*k.shape[-2:])
        f.attrs["acquisition"] = "TEST"
        for name, v in (extra or {}).items():
            f[name] = v
    return Path(path)


def phantom_kspace(n=64, coils=8, slices=2, seed=0):
    import sigpy as sp
    import sigpy.mri as mr
    img = sp.shepp_logan((n, n)).astype(np.complex64)
    maps = mr.birdcage_maps((coils, n, n)).astype(np.complex64)
    rng = np.random.default_rng(seed)
    ks = []
    for s in range(slices):
        k = fft2c(maps * (img * (1 + 0.1 * s)))
        k = k + 1e-3 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        ks.append(k)
    return np.stack(ks).astype(np.complex64), img, maps


def brain_cut(hw=(96, 80), coils=8, mode="kspace"):
    """A small version of the real brain: ``mode="kspace"`` keeps the central ``hw`` of k-space (a
    low-resolution scan of the same field of view); ``mode="image"`` crops the coil images (the head
    then fills the field of view and the coil images wrap at its edges, which ESPIRiT with one map
    set cannot model: SENSE/L1 fall below zero-filled there, so the tests use the k-space cut)."""
    with h5py.File(BRAIN, "r") as f:
        k = f["kspace"][0][:coils]
    H, W = k.shape[-2:]
    t, l = (H - hw[0]) // 2, (W - hw[1]) // 2
    if mode == "kspace":
        return (k[:, t:t + hw[0], l:l + hw[1]] * np.sqrt(hw[0] * hw[1] / (H * W)))[None].astype(np.complex64)
    img = ifft2c(k)
    return fft2c(img[:, t:t + hw[0], l:l + hw[1]])[None].astype(np.complex64)


@pytest.fixture(scope="session")
def phantom_h5(tmp_path_factory):
    k, _, _ = phantom_kspace()
    return write_file(tmp_path_factory.mktemp("mri") / "phantom.h5", k)


@pytest.fixture(scope="session")
def brain_h5(tmp_path_factory):
    if not BRAIN.exists():
        pytest.skip("shared/data/mri/brain8_full.h5 not available")
    return write_file(tmp_path_factory.mktemp("mri") / "brain_cut.h5", brain_cut())


def reference_evaluator(problem, reference):
    """``evaluate`` for ``core.fit`` scoring the output against ``reference`` (PSNR / SSIM, fastMRI crop):
    the stop-rule tests pass a wrong one to show a rule never reads it."""
    from mri_oes.mri import metrics as M

    def evaluate(x_hat):
        mag = M.center_crop(np.abs(problem.unscale(x_hat)), problem.crop)
        return {k: v for k, v in M.slice_metrics(reference, mag, None).items() if k in ("psnr", "ssim")}
    return evaluate
