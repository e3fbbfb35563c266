"""Allocator benchmark: a real Sparse-DIP run with glibc's default ``malloc`` vs the tuned one
(:func:`mri_oes.runtime.tune_allocator`), side by side, each in its own process.

Each case runs ``python -m mri_oes.experiments.mri_quality net`` (the ``cpu`` preset's network on a shared
brain, ``--steps`` training + ``--mask-steps`` mask steps, one torch thread) with
``MRI_OES_MALLOC=system`` or unset, one after the other (never two at once), and records wall, user
and system seconds, minor page faults and peak RSS of the child. Prints a table and writes
``benchmarks/results/allocator.json``.

    MRI_OES_SHARED=../shared python benchmarks/allocator.py --scan brain8b --steps 200 --mask-steps 100
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

ROOT = Path(__file__).resolve().parents[1]


def run_case(allocator: str, a) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    env.pop("MRI_OES_MALLOC", None)
    if allocator == "system":
        env["MRI_OES_MALLOC"] = "system"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mri_oes.experiments.mri_quality", "net", "--out", tmp,
               "--scan", a.scan, "--accel", str(a.accel), "--method", "sparse-dip", "--threads", str(a.threads),
               "--log-every", str(a.steps), "--set", f"steps={a.steps}", f"mask_steps={a.mask_steps}"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace")
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"allocator={allocator}: the run failed:\n{err[-2000:]}")
        res = json.loads(next(Path(tmp).glob("runs/*/result.json")).read_text())
    return {"allocator": allocator, "wall_s": round(wall, 2), "user_s": round(ru.ru_utime, 2),
            "system_s": round(ru.ru_stime, 2), "minor_faults": ru.ru_minflt,
            "peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "final_psnr": round(res["final_metrics"]["psnr"], 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", default="brain8b", choices=("brain8", "brain8b", "brain4"))
    ap.add_argument("--accel", type=int, default=4, choices=(4, 8))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--mask-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allocator.json"))
    a = ap.parse_args(argv)
    rows = [run_case(name, a) for name in ("system", "tuned")]
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup_wall"] = round(base / r["wall_s"], 2)
    cols = ("allocator", "wall_s", "user_s", "system_s", "minor_faults", "peak_rss_mib", "final_psnr", "speedup_wall")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    out = {"config": vars(a), "rows": rows, "python": platform.python_version(), "machine": platform.machine(),
           "cpus": os.cpu_count(), "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
