"""Dataset reconstruction throughput: slices/hour of `mri-oes recon` serial vs Ray with N workers.

A small dataset is built from real k-space (default: the shared 230×180 8-coil ``brain8_full.h5``, else
the bundled 96×80 brain): ``--volumes`` files × ``--slices`` slices, each slice the real scan shifted
in image space. Each (method, backend) runs as its own ``mri-oes recon`` process in a fresh folder
(wall time includes Python and Ray start-up and ESPIRiT, as a user sees it). Prints a table and writes
``benchmarks/results/recon_throughput.json``.

    python benchmarks/recon_throughput.py --methods zero-filled l1-wavelet dip --dip-steps 100 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make_dataset(folder: Path, volumes: int, slices: int, small: bool) -> tuple:
    from mri_fixtures import fft2c, ifft2c, write_file
    from mri_oes import datasets
    src = datasets.bundled_brain() if small else datasets.brain("brain8", fallback=True)
    with h5py.File(src) as f:
        k = np.asarray(f["kspace"][0])
    img = ifft2c(k)
    folder.mkdir(parents=True, exist_ok=True)
    for v in range(volumes):
        ks = [fft2c(np.roll(img, 3 * s + 5 * v, axis=-2)) * (1 - 0.05 * s) for s in range(slices)]
        write_file(folder / f"file_brain_AXT1_{v:03d}.h5", np.stack(ks).astype(np.complex64))
    return str(src), tuple(k.shape)


def run(data: Path, out: Path, method: str, workers: int, extra: list) -> dict:
    cmd = [sys.executable, "-m", "mri_oes", "recon", str(data), "--method", method, "--accel", "4",
           "--workers", str(workers), "--threads", "1", "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())["rows"][0]
    return {"wall_s": wall, "slices": summary["slices"], "psnr_mean": summary["psnr_mean"],
            "ssim_mean": summary["ssim_mean"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["zero-filled", "l1-wavelet", "dip"])
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dip-steps", type=int, default=100)
    ap.add_argument("--dip-width", type=float, default=0.25)
    ap.add_argument("--small", action="store_true", help="use the bundled 96x80 brain")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "recon_throughput.json"))
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        src, shape = make_dataset(data, a.volumes, a.slices, a.small)
        for method in a.methods:
            extra = ["--steps", str(a.dip_steps), "--width", str(a.dip_width)] if method in ("dip", "sparse-dip") else []
            res = {}
            for backend, w in (("serial", 1), ("ray", a.workers)):
                res[backend] = run(data, Path(tmp) / f"{method}-{backend}", method, w, extra)
                r = res[backend]
                r["slices_per_hour"] = 3600 * r["slices"] / r["wall_s"]
            rows.append({"method": method, "steps": a.dip_steps if extra else 0,
                         "width": a.dip_width if extra else None, **{f"{b}_{k}": v for b in res for k, v in res[b].items()},
                         "ray_over_serial": res["ray"]["slices_per_hour"] / res["serial"]["slices_per_hour"]})
            print(f"{method:12s} serial {res['serial']['slices_per_hour']:8.0f} slices/h  "
                  f"ray x{a.workers} {res['ray']['slices_per_hour']:8.0f} slices/h  "
                  f"ratio {rows[-1]['ray_over_serial']:.2f}  (PSNR {res['serial']['psnr_mean']:.2f} / "
                  f"{res['ray']['psnr_mean']:.2f} dB)", flush=True)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    result = {"rows": rows, "data": {"source": src, "slice_shape": shape, "volumes": a.volumes,
                                     "slices_per_volume": a.slices},
              "workers": a.workers, "threads_per_worker": 1, "cpu_count": os.cpu_count(),
              "load_average_at_end": load, "platform": platform.platform(),
              "note": "wall time of the whole command (Python + Ray start-up + ESPIRiT included)"}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
