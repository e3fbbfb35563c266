"""brain8 (230 x 180, 8 coils) folded into 70 % of its phase-encode FOV (`mri_oes.mri.problem.fold_over`) as a
fastMRI-layout file, so `mri-oes recon` reads it as it would a scan acquired with that FOV:

    python results/2026-12-05-fold-over-network/make_folded.py OUT_DIR    # -> OUT_DIR/brain8_fold70.h5
"""
import subprocess, sys
from pathlib import Path
import numpy as np
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import fold_over

ROOT = Path(__file__).resolve().parents[2]
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
sl = fold_over(load_slice(ROOT.parent / "shared" / "data" / "mri" / "brain8_full.h5", 0), 0.7)
np.save(out / "brain8_fold70.npy", sl.kspace[None].astype(np.complex64))
subprocess.run([sys.executable, str(ROOT / "data_scripts" / "make_fastmri_file.py"), "from-array",
                str(out / "brain8_fold70.npy"), str(out / "brain8_fold70.h5")], check=True)
