"""SENSE / L1-wavelet images of the bundled brain (4x, 8x; maps, maps-free, the held-out maps rule, two map
sets) written to an .npz: run before and after a refactor and compare bit for bit.

    python bit_identity.py OUT.npz
"""
import os, sys, numpy as np
os.environ["OMP_NUM_THREADS"]="1"
from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch; torch.set_num_threads(1)
from mri_oes import datasets
from mri_oes.mri import baselines as B
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem
out={}
sl=load_slice(datasets.bundled_brain(),0)
for accel in (4,8):
    for mode in ("maps","free","holdout","two"):
        p=build_problem(sl,accel,"equispaced",0)
        if mode=="free": B.coil_operator(p,maps_free=True)
        if mode=="holdout": B.coil_operator(p,maps_free="holdout")
        if mode=="two": B.classical_operator(p,soft_sense=True)
        for m in ("sense","l1-wavelet"):
            out[f"{accel}_{mode}_{m}"]=B.run_baseline(p,m)
            print(accel,mode,m,p.info["lamda_choice"][m]["lamda"],flush=True)
np.savez(sys.argv[1],**out)
