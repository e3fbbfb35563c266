"""ESPIRiT kernel width 3 against the automatic rule's, seed 0, the five shared scans at 4x and 8x: L1-wavelet,
SENSE and zero-filled at recon's classical defaults otherwise (PSNR, SSIM; one JSON line per case):

    OMP_NUM_THREADS=1 python results/2026-12-05-small-grid-density/kernel_width_sweep.py \
        results/2026-12-05-small-grid-density/kernel_width_sweep.jsonl
"""
import json, os, sys, time
from pathlib import Path
from mri_oes.runtime import configure_runtime
configure_runtime(1)
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem
from mri_oes.mri.baselines import run_baseline
out = open(sys.argv[1], "a")
for scan in ("brain16", "brain8", "brain8b", "brain4", "phantom4"):
    shared = Path(os.environ.get("MRI_OES_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    sl = load_slice(shared / "data" / "mri" / f"{scan}_full.h5", 0)
    for accel in (4, 8):
        for kw in (None, 3):
            t = time.process_time()
            p = build_problem(sl, accel, "equispaced", 0, espirit={"kernel_width": kw} if kw else None)
            row = {"scan": scan, "accel": accel, "kernel_width": p.info["espirit"].get("kernel_width"),
                   "calib_width": p.info["espirit"].get("calib_width"), "rule": kw is None}
            for m in ("l1-wavelet", "sense", "zero-filled"):
                r = p.metrics(run_baseline(p, m))
                row[m] = [round(r["psnr"], 2), round(r["ssim"], 4)]
            row["cpu_s"] = round(time.process_time() - t)
            out.write(json.dumps(row) + "\n"); out.flush()
            print(row, flush=True)
