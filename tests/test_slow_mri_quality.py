"""Slow end-to-end quality check of ``recon``'s defaults on a real brain (run with ``pytest -m slow``; needs
../shared/data).

One shared brain (``brain8_full.h5``, 230×180, 8 coils) at 4× (fastMRI equispaced mask, seed 0),
reconstructed by ``mri-oes recon`` at its DEFAULTS (``--preset cpu``): the Sparse-DIP final image
must reach L1-wavelet's PSNR and SSIM at its default λ (0.003 at 4×, the value tuned on
``brain4_full.h5``, not on the scored scan), and stay above zero-filled. Measured on 2026-11-27 (commit
ff7e66e, the same preset through ``mri_quality net``, the 2-core CPU): Sparse-DIP 33.18 / 0.895 against L1-wavelet 32.99 / 0.874.
About 52 CPU-minutes (the 4x preset trains 17,413 steps on this 230x180 grid: 11,000 sized for 256x256;
one thread here, as the test pins ``--threads 1``). Runs repeat exactly on one CPU, but another machine's
rounding moves a single run like a seed does: two GPU runs of this seed read 33.00 and 33.44 at step 15,100 (the 3-seed mean
over L1-wavelet is +0.20 dB), so on other hardware this is a check with a thin margin.
"""
import json
import os

import pytest

from mri_oes.cli import main

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mri", "brain8_full.h5")


@pytest.mark.slow
def test_sparse_dip_final_reaches_l1_wavelet_on_a_real_brain(tmp_path):
    if not os.path.isfile(SHARED):
        pytest.skip("../shared/data/mri/brain8_full.h5 not present")
    out = tmp_path / "out"
    assert main(["recon", SHARED, "--slice", "0", "--accel", "4", "--method", "zero-filled", "l1-wavelet",
                 "sparse-dip", "--threads", "1", "--no-progress", "--out", str(out)]) == 0

    def final(method):
        d = out / f"{method}_4x" / "slices" / "brain8_full" / "000"
        return json.loads((d / "metrics.json").read_text())

    zf, l1, sd = final("zero-filled"), final("l1-wavelet"), final("sparse-dip")
    assert 0 < sd["density"] < 1 and sd["data_consistency"] is True
    assert sd["final"]["psnr"] > zf["final"]["psnr"]                      # never below zero-filled
    assert sd["final"]["psnr"] >= l1["final"]["psnr"], \
        f"Sparse-DIP {sd['final']['psnr']:.2f} dB < L1-wavelet {l1['final']['psnr']:.2f} dB"
    assert sd["final"]["ssim"] >= l1["final"]["ssim"]
