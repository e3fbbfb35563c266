"""recon's default Sparse-DIP recipe (the cpu preset at ACCEL) on the folded brain8 with the network on the coil
images (maps-free `CoilImagesMRI`, the preset's `operator = coils`; recon itself has no such option) or on the
ESPIRiT maps (`maps`), seed 0, through the one runner (`mri_oes.experiments.mri_quality.network_recon`); prints one
JSON line (data-consistent final, the raw output, the best logged step, the data-consistent curve every 200 steps):

    python results/2026-12-05-fold-over-network/maps_free_network.py FOLDED.h5 ACCEL coils|maps
"""
import json, sys, time
from mri_oes.runtime import configure_runtime
configure_runtime(1)
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem
from mri_oes.mri import presets
from mri_oes.experiments.mri_quality import network_recon, _image_metrics
path, accel, op = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = presets.for_accel(presets.get("cpu"), accel); cfg["operator"] = op
p = build_problem(load_slice(path, 0), accel, "equispaced", 0)
final, best, info = network_recon(p, "sparse-dip", cfg, 0, 50, accel=accel, verbose=False)
kind = "coils" if op == "coils" else "complex"
dc = _image_metrics(p, final, kind, dc=True)
curve = [(r["step"], round(r.get("dc_psnr", float("nan")), 2)) for r in info["history"] if "dc_psnr" in r]
print(json.dumps({"accel": accel, "operator": op, "final_dc": dc, "final_raw": info["final_metrics"],
                  "best": info["best_metrics"], "best_step": info["best_step"], "density": info["density"],
                  "cpu_min": info["time_total_s"] / 60, "curve": curve[::4]}))
