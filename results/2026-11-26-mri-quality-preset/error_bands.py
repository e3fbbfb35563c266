"""Where Sparse-DIP and L1-wavelet err on brain8 4× (stop 23): the error of each final image against the
reference (fastMRI crop, magnitude), split into foreground (reference > 10 % of its max) / background, and
into radial spatial-frequency bands (cycles per pixel) of the magnitude error; plus the PSNR of the two
images averaged (a diagnostic of how correlated the errors are, not a method).

    MRI_OES_SHARED=../shared python results/2026-11-26-mri-quality-preset/error_bands.py runs/mq7
"""
import sys
from pathlib import Path

import numpy as np

from mri_oes.experiments.mri_quality import problem
from mri_oes.io import write_json
from mri_oes.mri import metrics as M

BANDS = ((0.0, 0.05), (0.05, 0.15), (0.15, 0.3), (0.3, 1.0))


def analyse(out, scan="brain8", accel=4, seed=0):
    p = problem(out, scan, accel, seed, None)
    ref = p.reference
    runs = Path(out) / "runs"
    sd = np.abs(p.data_consistency(np.load(runs / f"{scan}_{accel}x_s{seed}_sparse-dip" / "final.npy")))
    l1 = np.abs(np.load(runs / f"{scan}_{accel}x_s{seed}_l1-wavelet" / "final.npy"))
    imgs = {"sparse-dip": M.center_crop(sd, ref.shape), "l1-wavelet": M.center_crop(l1, ref.shape)}
    fg = ref > 0.1 * ref.max()
    H, W = ref.shape
    ky, kx = np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij")
    radius = np.hypot(ky, kx)
    res = {"scan": scan, "accel": accel, "seed": seed, "foreground_fraction": float(fg.mean())}
    for name, img in imgs.items():
        err = img - ref
        spec = np.abs(np.fft.fft2(err)) ** 2 / err.size
        res[name] = {"psnr": M.mri_metrics(img, ref)["psnr"],
                     "mse_foreground": float(np.mean(err[fg] ** 2)), "mse_background": float(np.mean(err[~fg] ** 2)),
                     "error_energy_by_band": {f"{lo}-{hi}": float(spec[(radius >= lo) & (radius < hi)].sum())
                                              for lo, hi in BANDS}}
    res["psnr_of_the_average"] = M.mri_metrics(0.5 * (imgs["sparse-dip"] + imgs["l1-wavelet"]), ref)["psnr"]
    return res


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/mq7"
    rows = [analyse(out, seed=s) for s in (0, 1, 2)]
    for r in rows:
        print(f"seed {r['seed']}: PSNR sparse-dip {r['sparse-dip']['psnr']:.2f}, l1 {r['l1-wavelet']['psnr']:.2f}, "
              f"average {r['psnr_of_the_average']:.2f}")
        for k in ("mse_foreground", "mse_background"):
            print(f"  {k:<16} sparse-dip {r['sparse-dip'][k]:9.3f}  l1 {r['l1-wavelet'][k]:9.3f}")
        for b in r["sparse-dip"]["error_energy_by_band"]:
            print(f"  band {b:<9} sparse-dip {r['sparse-dip']['error_energy_by_band'][b]:9.1f}  "
                  f"l1 {r['l1-wavelet']['error_energy_by_band'][b]:9.1f}")
    write_json(Path(__file__).with_name("error_bands.json"), rows)
