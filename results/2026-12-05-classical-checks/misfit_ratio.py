"""A statistic looked at for failing maps: the residual of the SENSE fit (maps as the defaults choose them,
λ 0.01) on the ACS lines over the noise energy expected there ((coils - sets) / coils of it; per-coil noise
variance from the median |y|^2 of the measured non-ACS lines in the outer EDGE of the readout rows).

    python misfit_ratio.py EDGE SCAN ...
"""
import os, sys, numpy as np, json
os.environ["OMP_NUM_THREADS"]="1"
from pathlib import Path; R = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(R)); sys.path.insert(0, str(R / "benchmarks"))
import torch; torch.set_num_threads(1)
from mri_oes.mri import baselines as B
from mri_oes.mri.data import acs_lines
from mri_oes.mri.problem import build_problem
from mri_baselines import _slice
from operators.mri import fft2c
out=[]
for scan in sys.argv[2:]:
  base,_,f=scan.partition("-fold")
  for accel in (4,8):
    for seed in (0,1,2):
      p=build_problem(_slice(base,int(f)/100 if f else None),accel,"equispaced",seed)
      op=B.coil_operator(p)
      x=B.sense_operator(op,op.augment(p.y),0.01,30)
      xt=torch.from_numpy(np.asarray(x,np.complex64))
      pred=fft2c(op.coil_images(xt[None])[0]).numpy()
      y=p.y.numpy(); C,H,W=y.shape
      m=p.mask>0; lo,w=acs_lines(p.mask); acs=np.zeros(W,bool); acs[lo:lo+w]=True
      outer=m&~acs
      e=int(round(H*float(sys.argv[1])))
      rows=np.r_[0:e,H-e:H]
      s2=np.median(np.abs(y[:,rows][:,:,outer])**2,axis=(1,2))/np.log(2)   # per coil
      res=np.abs(pred-y)[:,:,acs]**2
      sets=p.info["espirit"]["map_sets"]
      expected=(s2.sum()*res.shape[1]*res.shape[2])*(C-sets)/C
      ratio=res.sum()/expected
      r={"case":[scan,accel,seed],"acs":w,"sets":sets,"ratio":float(ratio),"r_acs":float(res.sum()/(np.abs(y[:,:,acs])**2).sum()),"snr_edge":float((np.abs(y[:,rows][:,:,outer])**2).mean()/s2.mean())}
      out.append(r); print(r,flush=True)
