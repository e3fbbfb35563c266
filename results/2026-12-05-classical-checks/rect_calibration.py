"""A candidate rule looked at: ESPIRiT on the rectangular readout x ACS region also for 6-7 ACS lines
(``espirit.SQUARE_MIN_ACS``); brain8 folded to 70 % (8x seed 0) and brain8 8x seeds 0-2 at the defaults.

    python rect_calibration.py 8
"""
import os, sys, numpy as np
os.environ["OMP_NUM_THREADS"]="1"
from pathlib import Path; R = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(R)); sys.path.insert(0, str(R / "benchmarks"))
import torch; torch.set_num_threads(1)
from mri_oes.mri import baselines as B, espirit as E
from mri_oes.mri.problem import build_problem
from mri_baselines import _slice
E.SQUARE_MIN_ACS=int(sys.argv[1])
for scan,fold,accel,seed in [("brain8",0.7,8,0),("brain8",None,8,0),("brain8",None,8,1),("brain8",None,8,2)]:
    p=build_problem(_slice(scan,fold),accel,"equispaced",seed)
    zf=p.metrics(B.zero_filled(p))
    r={m:p.metrics(B.run_baseline(p,m)) for m in ("sense","l1-wavelet")}
    e=p.info["espirit"]
    print(scan,fold,accel,seed,"acs",e["acs_width"],e.get("calib_shape",e["calib_width"]),"sets",e["map_sets"],"ov",e["soft_sense"]["overlap_fraction"],
      "ZF %.2f/%.3f"%(zf["psnr"],zf["ssim"]), " ".join("%s %.2f/%.3f"%(m,q["psnr"],q["ssim"]) for m,q in r.items()), "l1lam",p.info["lamda_choice"]["l1-wavelet"]["lamda"],flush=True)
