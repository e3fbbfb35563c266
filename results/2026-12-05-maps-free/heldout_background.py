"""Held-out error of SENSE with the ESPIRiT maps, and with the maps zeroed outside the object
(zero-filled RSS > T x its p99), brain8 4x seed 0 (results/2026-12-05-maps-free/README.md).

    OMP_NUM_THREADS=1 python results/2026-12-05-maps-free/heldout_background.py 0.2
"""
import sys, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, "benchmarks")
from mri_baselines import _slice
from mri_oes.mri import baselines as B
from mri_oes.mri.problem import build_problem
from operators.mri import MultiCoilMRI
sl=_slice("brain8", None)
p = build_problem(sl, 4, "equispaced", 0)
mo=B.classical_operator(p)
zf=np.abs(p.zero_filled("rss")); obj=(zf>0.1*np.percentile(zf,99))
from scipy.ndimage import binary_dilation
obj=(zf>float(sys.argv[1])*np.percentile(zf,99))
maps_c=p.maps*obj[None]
mc=MultiCoilMRI(torch.from_numpy(maps_c.astype(np.complex64)), torch.from_numpy(p.mask))
for name,o in (("maps",mo),("maps-object-only",mc)):
    e=0
    for f in range(5):
        tr,va=B.holdout_split(p.mask,0.2,0,f); e+=B._holdout_errors(p,o,"sense",(0.01,),tr,va)[0]
    r=p.metrics(p.unscale(o.combine(B.sense_operator(o,p.y,0.01,30))))
    print(name, round(e,3), round(r['psnr'],2), round(r['ssim'],3), "object frac", obj.mean().round(3))
