#!/usr/bin/env bash
# Set up mri_oes in ./.venv on a fresh machine (idempotent; safe to re-run).
# - torch is pinned to 2.13.0: on these machines that is a CPU wheel already on disk; an unpinned
#   torch would download a multi-GB CUDA build. On a GPU machine, install your CUDA torch first and set
#   MRI_OES_TORCH="" to keep it.
# - fastmri is installed with --no-deps: its metadata pulls torchvision + pytorch-lightning, which do not
#   work beside the CPU torch; the parts we use (data.subsample, data.transforms, evaluate, fftc,
#   coil_combine) only need the light dependencies in the "fastmri-deps" extra.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_SPEC=${MRI_OES_TORCH-torch==2.13.0}
if [ "${1:-}" = "interop" ]; then
  # Optional interop extra (deepinv adapters) in its OWN venv .venv-interop; .venv is not touched.
  # deepinv needs torchvision, which does not install beside the pinned CPU torch 2.13.0; torch 2.14.1 +
  # torchvision 0.29.1 do (a CUDA build that also runs on the CPU; measured here from scratch: 7.7 min
  # wall on a busy 2-core machine, I/O bound; 1.5 min when already installed; 5.5 GB on disk).
  [ -x .venv-interop/bin/python ] || "$PY" -m venv .venv-interop
  IPY=.venv-interop/bin/python
  # shellcheck disable=SC2086  # the spec is two requirements on purpose
  $IPY -m pip install -q ${MRI_OES_INTEROP_TORCH-torch==2.14.1 torchvision==0.29.1}
  $IPY -m pip install -q --no-deps "fastmri==0.3.0"
  $IPY -m pip install -q -e ".[test,fastmri-deps,interop]"
  $IPY -c "import torch, deepinv, mri_oes, operators; print('interop ready (.venv-interop): torch', torch.__version__, '| deepinv', deepinv.__version__)"
  exit 0
fi
if [ "${1:-}" = "notebooks" ]; then
  # Optional notebooks extra (JupyterLab + ipywidgets) into .venv, which must exist (./install.sh first).
  # Not installed in CI: tests/test_notebooks.py runs the notebooks with nbclient + ipykernel (extra "test").
  [ -x .venv/bin/python ] || { echo "run ./install.sh first (it creates .venv)" >&2; exit 1; }
  .venv/bin/python -m pip install -q -e ".[notebooks]"
  .venv/bin/python -c "import jupyterlab, ipywidgets; print('notebooks ready: jupyterlab', jupyterlab.__version__, '| ipywidgets', ipywidgets.__version__, '-> .venv/bin/jupyter lab notebooks/')"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ -n "$TORCH_SPEC" ]; then python -m pip install -q "$TORCH_SPEC"; fi
python -m pip install -q --no-deps "fastmri==0.3.0"
# cluster = Ray (parallel `mri-oes recon`; its tests run with it)
python -m pip install -q -e ".[test,fastmri-deps,cluster]"
python -c "import torch, sigpy, fastmri.data.subsample, mri_oes, operators; print('mri_oes ready: torch', torch.__version__, '| sigpy', sigpy.__version__)"
