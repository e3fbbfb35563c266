"""Slow end-to-end goal check of issue 11 (run with ``pytest -m slow``; needs ../shared/data).

One shared brain (``brain8_full.h5``, 230×180, 8 coils) at 4× (fastMRI equispaced mask, seed 0),
reconstructed with the ``cpu`` preset defaults: the Sparse-DIP FINAL iterate must reach the
L1-wavelet PSNR (λ = 0.003 at 4×, tuned on ``brain4_full.h5``, not on the scored scan).
"""
import os

import pytest
import torch

from mri_oes.experiments.mri_quality import final_image, network_recon
from mri_oes.mri import baselines as B
from mri_oes.mri import presets
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mri", "brain8_full.h5")
L1_LAMBDA_4X_TUNED_ON_BRAIN4 = 0.003


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="goal not reached (measured, results/2026-11-26-mri-quality): on brain8 4x "
                   "seed 0 at 1,200 + 400 mask steps Sparse-DIP (deep decoder, + data consistency) ends at "
                   "29.77 dB / 0.839 vs L1-wavelet 32.99 / 0.874 (-3.2 dB, fastMRI-exact metric); the cpu preset's 5,000 steps "
                   "were not run to the end here")
def test_sparse_dip_final_reaches_l1_wavelet_on_a_real_brain(tmp_path):
    if not os.path.isfile(SHARED):
        pytest.skip("../shared/data/mri/brain8_full.h5 not present")
    torch.set_num_threads(1)
    cfg = presets.get("cpu")
    esp = {k: v for k, v in presets.espirit_for(cfg, 4).items() if v is not None}
    p = build_problem(load_slice(SHARED, 0), 4, "equispaced", 0, espirit=esp, cache=tmp_path / "esp.h5")
    l1 = p.metrics(B.l1_wavelet(p, lamda=L1_LAMBDA_4X_TUNED_ON_BRAIN4))
    zf = p.metrics(p.zero_filled("rss"))
    final, _, info = network_recon(p, "sparse-dip", cfg, seed=0, log_every=500)
    m = p.metrics(final_image(p, final, info, cfg["data_consistency"]))
    assert 0 < info["density"] < 1
    assert m["psnr"] > zf["psnr"]                      # never below zero-filled
    assert m["psnr"] >= l1["psnr"], f"Sparse-DIP {m['psnr']:.2f} dB < L1-wavelet {l1['psnr']:.2f} dB"
    assert m["ssim"] >= l1["ssim"]
