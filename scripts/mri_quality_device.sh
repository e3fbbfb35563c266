#!/usr/bin/env bash
# MRI quality runs on a GPU machine (H100/H200), many at once: the two device calls of 2026-11-27
# (results/2026-11-27-mri-gpu/: jobs.txt, jobs_call2.txt) ran this script.
#   DEADLINE=470 PAR=14 JOBS=results/2026-11-27-mri-gpu/jobs.txt bash scripts/mri_quality_device.sh
# Needs: .whl (sigpy, PyWavelets, fastmri, runstats for the image's python3) and .gpudata/data/mri/*.h5
# carried; the image's own torch/numpy/scipy/h5py/scikit-image. Prepared on the CPU machine (both in
# .git/info/exclude):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     sigpy==0.1.27 fastmri==0.3.0 runstats PyWavelets
#   mkdir -p .gpudata/data/mri && cp ../shared/data/mri/brain*_full.h5 .gpudata/data/mri/ Every job is one
# `mri_quality net --device cuda` run in its own OUT folder (its own ESPIRiT cache: no shared writes).
# JOBS: a file of "NAME ARGS..." lines, run in order, PAR at a time; at DEADLINE seconds the
# jobs still running are stopped (their logs keep the curve so far) and everything is packed.
set -u
T0=$(date +%s)
DEVICE=${DEVICE:-cuda}; PAR=${PAR:-14}; DEADLINE=${DEADLINE:-480}; JOBS=${JOBS:?set JOBS to a file of "NAME ARGS..." lines, e.g. results/2026-11-27-mri-gpu/jobs.txt}
[ -n "${NO_WHL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD MRI_OES_SHARED=$PWD/.gpudata OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
W=/tmp/w; mkdir -p $W/logs
nvidia-smi -L
python3 -c "import torch, sigpy, fastmri.evaluate, fastmri.data.subsample, mri_oes.experiments.mri_quality; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 4
run_job() {   # $1 = name, rest = net args
  local name=$1; shift
  python3 -m mri_oes.experiments.mri_quality net --out $W/$name "$@" --device $DEVICE --threads 1 \
    --log-every 100 --verbose > $W/logs/$name.log 2>&1
  local rc=$?; echo "$(date +%s) done $name rc=$rc" >> $W/logs/_done.txt
}
export -f run_job; export W DEVICE
( grep -v '^#' "$JOBS" | grep . | xargs -P "$PAR" -L 1 bash -c 'run_job "$@"' _ ) &
POOL=$!
while kill -0 $POOL 2>/dev/null && [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do
  sleep 10
  [ $(( ($(date +%s) - T0) % 60 )) -lt 10 ] && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> $W/logs/_gpu.txt
done
pkill -f "mri_quality net --out $W/" ; sleep 2   # only this script's jobs
echo "elapsed $(( $(date +%s) - T0 )) s"; cat $W/logs/_done.txt 2>/dev/null
for f in $W/logs/*.log; do echo "== $(basename $f): $(grep -c '^step' $f) rows; $(tail -n 1 $f)"; done
# pack: logs + result.json in one file, the images in up to 6 more (<= 16 MB each comes back)
cd $W && tar -czf $OUT/gpu_logs.tar.gz logs $(find . -name result.json) && python3 - <<'PY'
import os, tarfile, glob
files = sorted(glob.glob("*/runs/*/*.npy")); out = os.environ["OUT"]; part, size, tf = 0, 0, None
for f in files:
    if tf is None or size + os.path.getsize(f) > 14e6:
        if tf: tf.close()
        part += 1; size = 0; tf = tarfile.open(f"{out}/gpu_npy_{part}.tar", "w")
    tf.add(f); size += os.path.getsize(f)
if tf: tf.close()
PY
ls -la $OUT
