"""A candidate rule looked at: L1-wavelet on the ESPIRiT maps with SENSE's Tikhonov term added (elastic net,
``MultiCoilMRI.l2``), optionally another λ grid; per case ZF / SENSE / L1-wavelet at the defaults otherwise.

    python candidate_l2.py L2 GRID|- SCAN:ACCEL:SEED ...
"""
import os, sys, numpy as np
os.environ["OMP_NUM_THREADS"]="1"
from pathlib import Path; R = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(R)); sys.path.insert(0, str(R / "benchmarks"))
import torch; torch.set_num_threads(1)
from mri_oes.mri import baselines as B
from mri_oes.mri.problem import build_problem
from mri_baselines import _slice
from operators.mri import MultiCoilMRI
MultiCoilMRI.l2=float(sys.argv[1])
if len(sys.argv)>2 and sys.argv[2]!="-": B.L1_GRID=tuple(float(v) for v in sys.argv[2].split(","))
for c in sys.argv[3:]:
    scan,accel,seed=c.split(":"); base,_,f=scan.partition("-fold")
    p=build_problem(_slice(base,int(f)/100 if f else None),int(accel),"equispaced",int(seed))
    zf=p.metrics(B.zero_filled(p)); se=p.metrics(B.sense(p)); l1=p.metrics(B.l1_wavelet(p))
    ch=p.info["lamda_choice"]["l1-wavelet"]
    print(c,"ZF %.2f/%.3f SENSE %.2f/%.3f L1 %.2f/%.3f lam %s err %s"%(zf["psnr"],zf["ssim"],se["psnr"],se["ssim"],l1["psnr"],l1["ssim"],ch["lamda"],ch["holdout_error"]),flush=True)
