"""recon's Sparse-DIP recipe (the cpu preset at ACCEL, seed SEED) with the network on the coil images held to the
data and to SPIRiT's calibration (`baselines.spirit_operator`: the operator of CG-SPIRiT, y stacked on zeros),
through the one runner; optionally on the slice folded into FOLD of its phase-encode FOV. recon has no such option
yet. Prints one JSON line: the data-consistent final (PSNR, SSIM), zero-filled, density, CPU minutes, the
data-consistent curve of the running average every 200 steps:

    python results/2026-12-05-fold-over-severity/spirit_network.py FILE.h5 ACCEL SEED [FOLD]
"""
import json, sys, time
from mri_oes.runtime import configure_runtime
configure_runtime(1)
import numpy as np
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem, fold_over
from mri_oes.mri import presets, baselines as B
from mri_oes.problem import Problem
from mri_oes.recipe import Recipe
from mri_oes.runner import run
path, accel, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fold = float(sys.argv[4]) if len(sys.argv) > 4 else None
sl = load_slice(path, 0)
if fold: sl = fold_over(sl, fold)
p = build_problem(sl, accel, "equispaced", seed)
op = B.spirit_operator(p)
cfg = presets.for_accel(presets.get("cpu"), accel)
def ev(x):
    img = p.unscale(x)
    img = img[0] if img.ndim == 4 else img
    m = p.metrics(np.abs(op.combine(img))); d = p.metrics(p.data_consistency(img, coil_images=True))
    return {"psnr": m["psnr"], "ssim": m["ssim"], "dc_psnr": d["psnr"], "dc_ssim": d["ssim"]}
gp = Problem(op, op.augment(p.y), tuple(p.image_shape), evaluate=ev, kind="mri", info={"kind": "mri", "task": "mri"})
rc = Recipe.from_preset(cfg, accel, method="sparse-dip", seed=seed, log_every=100)
t = time.process_time()
rec = run(gp, rc, None, save_outputs=False, command="spirit-network")
res = rec["_result"]
img = p.unscale(res.output); img = img[0] if img.ndim == 4 else img
d = p.metrics(p.data_consistency(img, coil_images=True))
curve = [(h["step"], round(h.get("average_dc_psnr", h.get("dc_psnr", float("nan"))), 2)) for h in res.history if "dc_psnr" in h or "average_dc_psnr" in h]
print(json.dumps({"final_dc": [d["psnr"], d["ssim"]], "zf": p.metrics(p.zero_filled())["psnr"], "density": rec["density"],
                  "cpu_min": (time.process_time() - t) / 60, "curve": curve[::2]}))
