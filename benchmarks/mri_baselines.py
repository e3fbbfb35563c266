"""Classical baselines on brain8_full.h5 (or any fastMRI file): zero-filled, SENSE, L1-wavelet at 4x/8x,
with a small λ sweep for SENSE / L1 (the defaults in mri_oes.mri.baselines were picked from it at 4x).

    python benchmarks/mri_baselines.py [FILE] [--mask-type equispaced] [--seed 0] [--sweep] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mri_oes.mri import baselines as B  # noqa: E402
from mri_oes.mri.data import load_slice  # noqa: E402
from mri_oes.mri.problem import build_problem  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file", nargs="?", default=str(ROOT.parent / "shared" / "data" / "mri" / "brain8_full.h5"))
    ap.add_argument("--slice", type=int, default=0)
    ap.add_argument("--mask-type", default="equispaced")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweep", action="store_true", help="also sweep λ (SENSE, L1-wavelet)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    sl = load_slice(args.file, args.slice)
    rows = []
    for accel in (4, 8):
        t = time.perf_counter()
        p = build_problem(sl, accel, args.mask_type, args.seed)
        setup = time.perf_counter() - t
        runs = [("zero-filled", None), ("sense", B.SENSE_LAMBDA), ("l1-wavelet", B.L1_LAMBDA)]
        if args.sweep:
            runs += [("sense", l) for l in (0.0, 1e-3, 3e-2)] + [("l1-wavelet", l) for l in (1e-3, 1e-2, 3e-2)]
        for method, lam in runs:
            t = time.perf_counter()
            x = B.run_baseline(p, method, lamda=lam)
            m = p.metrics(x)
            row = {"accel": accel, "method": method, "lambda": lam, "psnr": m["psnr"], "ssim": m["ssim"],
                   "nmse": m["nmse"], "psnr_ls": m["psnr_ls"], "time_s": time.perf_counter() - t,
                   "espirit_s": setup, "espirit": {k: p.info["espirit"][k] for k in ("calib_width", "kernel_width")}}
            rows.append(row)
            print(f"{accel}x {method:12s} λ={lam!s:7s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  "
                  f"NMSE {m['nmse']:.4f}  {row['time_s']:.1f}s (ESPIRiT {setup:.1f}s)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
