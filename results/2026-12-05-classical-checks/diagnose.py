"""Per case: the held-out errors of every fold and every λ (L1-wavelet and SENSE, ESPIRiT maps as the
defaults choose them) beside the PSNR / SSIM each λ gives, SSIM split into object (reference >= 5 % of
its maximum) and background; the reference is read only for the metrics. Any λ rule that uses the
held-out errors can then be scored offline on every case.

    python results/2026-12-05-classical-checks/diagnose.py --scans brain8 ... --out FILE.json
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mri_oes.io import write_json  # noqa: E402
from mri_oes.mri import baselines as B  # noqa: E402
from mri_oes.mri.problem import build_problem  # noqa: E402
from operators.base import center_crop  # noqa: E402

L1_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SENSE_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def split_ssim(p, x):
    from skimage.metrics import structural_similarity
    ref = np.asarray(p.reference, float)
    w = ref.shape[-1]
    crop = (min(ref.shape[-2], w), w)
    r, q = center_crop(ref, crop), center_crop(np.abs(np.asarray(x)).astype(float), crop)
    _, S = structural_similarity(r, q, data_range=r.max(), full=True, win_size=7)
    bg = r < 0.05 * r.max()
    return {"ssim_object": float(S[~bg].mean()), "ssim_background": float(S[bg].mean()),
            "mean_background": float(q[bg].mean() / r.max()), "ref_mean_background": float(r[bg].mean() / r.max())}


def case(scan, accel, seed):
    from mri_baselines import _slice
    base, _, f = scan.partition("-fold")
    p = build_problem(_slice(base, int(f) / 100 if f else None), accel, "equispaced", seed)
    op = B.coil_operator(p)
    t0 = time.process_time()
    l1, se = [], []
    for fold in range(B.HOLDOUT_FOLDS):
        train, val = B.holdout_split(p.mask, B.HOLDOUT_FRACTION, B.HOLDOUT_SEED, fold)
        if val is None:
            continue
        l1.append(B._holdout_errors(p, op, "l1-wavelet", L1_GRID, train, val))
        se.append(B._holdout_errors(p, op, "sense", SENSE_GRID, train, val))

    def row(x):
        m = p.metrics(x)
        return {"psnr": float(m["psnr"]), "ssim": float(m["ssim"]), **split_ssim(p, x)}
    out = {"scan": scan, "accel": accel, "seed": seed, "acs": p.info["espirit"].get("acs_width"),
           "map_sets": p.info["espirit"].get("map_sets"), "l1_grid": L1_GRID, "sense_grid": SENSE_GRID,
           "l1_folds": l1, "sense_folds": se, "zero-filled": row(B.zero_filled(p)),
           "l1": [row(B.l1_wavelet(p, lamda=lam)) for lam in L1_GRID],
           "sense": [row(B.sense(p, lamda=lam)) for lam in SENSE_GRID]}
    out["cpu_s"] = round(time.process_time() - t0, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", nargs="+", required=True)
    ap.add_argument("--accels", nargs="+", type=int, default=[4, 8])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for s in a.scans:
        for acc in a.accels:
            for seed in a.seeds:
                rows.append(case(s, acc, seed))
                r = rows[-1]
                print(s, acc, seed, "L1", [round(q["psnr"], 2) for q in r["l1"]], "SENSE",
                      [round(q["psnr"], 2) for q in r["sense"]], "ZF", round(r["zero-filled"]["psnr"], 2), flush=True)
                write_json(Path(a.out), {"command": " ".join(sys.argv), "rows": rows})


if __name__ == "__main__":
    main()
