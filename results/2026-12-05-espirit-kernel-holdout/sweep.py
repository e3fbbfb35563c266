"""ESPIRiT kernel width against held-out measured lines: for every shared scan x {4x, 8x} x seed and every kernel
width 3..8 below the calibration width, the maps' held-out error (CG-SENSE at its default lambda fitted to the
training lines of the lambda rule's 5 folds, 1 - cos^2 against the held-out lines; measured data only) beside
SENSE, L1-wavelet (its own held-out lambda) and zero-filled PSNR/SSIM against the reference. One JSON line per
(scan, accel, seed, kernel_width); rows already in OUT are skipped, so a killed sweep resumes:

    OMP_NUM_THREADS=1 python results/2026-12-05-espirit-kernel-holdout/sweep.py \
        results/2026-12-05-espirit-kernel-holdout/sweep.jsonl [--scans brain16 brain8 ...] [--seeds 0 1 2]
"""
import argparse, json, os, time
from pathlib import Path
from mri_oes.runtime import configure_runtime
configure_runtime(1)
import numpy as np
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem
from mri_oes.mri import baselines as B

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--scans", nargs="+", default=["brain16", "brain8", "brain8b", "brain4", "phantom4"])
ap.add_argument("--accels", nargs="+", type=int, default=[4, 8])
ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
ap.add_argument("--kernels", nargs="+", type=int, default=[3, 4, 5, 6, 7, 8])
a = ap.parse_args()
done = set()
if Path(a.out).exists():
    for line in open(a.out):
        r = json.loads(line)
        done.add((r["scan"], r["accel"], r["seed"], r["kernel_width"]))
shared = Path(os.environ.get("MRI_OES_SHARED", Path(__file__).resolve().parents[3] / "shared"))
out = open(a.out, "a")
for scan in a.scans:
    sl = load_slice(shared / "data" / "mri" / f"{scan}_full.h5", 0)
    for accel in a.accels:
        for seed in a.seeds:
            rule = build_problem(sl, accel, "equispaced", seed).info["espirit"]
            if "calib_shape" in rule:   # 3-5 ACS lines: the rectangular calibration has its own kernel
                continue
            for kw in a.kernels:
                if kw >= rule["calib_width"] or (scan, accel, seed, kw) in done:
                    continue
                t = time.process_time()
                p = build_problem(sl, accel, "equispaced", seed, espirit={"kernel_width": kw})
                op = B.coil_operator(p)
                err = 0.0
                for fold in range(B.HOLDOUT_FOLDS):
                    train, val = B.holdout_split(p.mask, B.HOLDOUT_FRACTION, B.HOLDOUT_SEED, fold)
                    if val is not None:
                        err += B._holdout_errors(p, op, "sense", (B.SENSE_LAMBDA,), train, val)[0]
                row = {"scan": scan, "accel": accel, "seed": seed, "kernel_width": kw,
                       "calib_width": rule["calib_width"], "rule_kernel_width": rule["kernel_width"],
                       "map_sets": p.info["espirit"].get("map_sets", 1), "sense_holdout_error": round(err, 6)}
                for m in ("l1-wavelet", "sense", "zero-filled"):
                    r = p.metrics(B.run_baseline(p, m))
                    row[m] = [round(r["psnr"], 2), round(r["ssim"], 4)]
                lc = p.info["lamda_choice"]["l1-wavelet"]
                row["l1_lamda"] = lc["lamda"]
                row["l1_holdout_error"] = min(lc["holdout_error"]) if lc.get("holdout_error") else None
                row["cpu_s"] = round(time.process_time() - t, 1)
                out.write(json.dumps(row) + "\n"); out.flush()
                print(json.dumps(row), flush=True)
