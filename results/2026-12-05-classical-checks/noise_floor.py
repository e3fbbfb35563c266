"""phantom4: is SENSE / L1-wavelet's SSIM deficit against zero-filled the reference's noise floor?

The reference (``reconstruction_rss``) is the RSS of the fully sampled, noisy coil images: where there is
no object its magnitude is the RSS of noise (a positive floor), which a denoised image does not have.
Per case this prints the default images' SSIM against zero-filled's, split into object (reference >= 5 %
of its maximum) and background, and the SSIM of ``sqrt(|x|^2 + C sigma^2)``: the image with the expected
noise power of a C-coil RSS added back, sigma^2 the per-coil k-space noise variance estimated from the
MEASURED lines only (median of |y|^2 over the outer 1/16 of the readout rows of the measured non-ACS lines,
/ ln 2). A diagnostic of the metric, not a default (it adds no information to the image).

    python results/2026-12-05-classical-checks/noise_floor.py --out results/2026-12-05-classical-checks/noise_floor.json
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diagnose import split_ssim  # noqa: E402
from mri_oes import datasets  # noqa: E402
from mri_oes.io import write_json  # noqa: E402
from mri_oes.mri import baselines as B  # noqa: E402
from mri_oes.mri.data import acs_lines, load_slice  # noqa: E402
from mri_oes.mri.problem import build_problem  # noqa: E402


def noise_power(p, edge=1 / 16):
    """Sum over coils of the k-space noise variance (original units), measured lines only."""
    y = np.asarray(p.kspace)   # the measured k-space, original units
    C, H, W = y.shape
    m = p.mask > 0
    lo, w = acs_lines(p.mask)
    outer = m.copy()
    outer[lo:lo + w] = False
    e = max(1, int(round(H * edge)))
    rows = np.r_[0:e, H - e:H]
    s2 = np.median(np.abs(y[:, rows][:, :, outer]) ** 2, axis=(1, 2)) / np.log(2)
    return float(s2.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accels", nargs="+", type=int, default=[4, 8])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for accel in a.accels:
        for seed in a.seeds:
            p = build_problem(load_slice(datasets.path("mri/phantom4_full.h5"), 0), accel, "equispaced", seed)
            P = noise_power(p)
            for method in ("zero-filled", "sense", "l1-wavelet"):
                x = np.abs(B.run_baseline(p, method))
                m = p.metrics(x)
                r = {"accel": accel, "seed": seed, "method": method, "psnr": float(m["psnr"]), "ssim": float(m["ssim"]),
                     **split_ssim(p, x), "noise_power": P}
                if method != "zero-filled":
                    f = p.metrics(np.sqrt(x ** 2 + P))
                    r.update(floor_psnr=float(f["psnr"]), floor_ssim=float(f["ssim"]),
                             floor_relative=float(np.sqrt(P) / np.asarray(p.reference).max()),
                             **{"floor_" + k: v for k, v in split_ssim(p, np.sqrt(x ** 2 + P)).items()})
                rows.append(r)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
            write_json(Path(a.out), {"command": " ".join(sys.argv), "rows": rows})


if __name__ == "__main__":
    main()
