"""One short run of every command through the CLI (subprocesses), final quality to 3 decimals: a
refactor that claims "behaviour unchanged" shows the same numbers before and after.

    python benchmarks/numbers_unchanged.py --out numbers.json [--work /tmp/numbers] [--only recon-dip ...]
    python benchmarks/numbers_unchanged.py --compare before.json after.json

Every case runs on bundled data (``mri_oes/data``: the 96x80 brain slice and the 128x128 pepper,
cropped to 64x64) at 1 thread on the CPU, where runs are deterministic. Per run folder the JSON
holds ``final`` PSNR / SSIM / NMSE, ``final_network`` where recorded, ``density`` and ``steps``
rounded to 3 decimals, and a digest of the run's resume identity (``identity.json`` with the work
folder removed): an unchanged digest means an interrupted run of the old code resumes under the new.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BRAIN = str(ROOT / "mri_oes" / "data" / "brain8_small.h5")
PEPPER = str(ROOT / "mri_oes" / "data" / "pepper_128.png")
IMG = [PEPPER, "--crop", "64"]
NET = ["--levels", "3", "--width", "0.25"]
RUN = ["--threads", "1", "--seed", "0", "--no-progress", "--log-every", "10"]
RECON = ["recon", BRAIN, "--accel", "4", "--steps", "30", "--mask-steps", "20", "--threads", "1", "--workers", "1",
         "--no-progress", "--log-every", "10"]

#: name -> mri-oes arguments (``--out`` is added)
CASES = {
    "fit-sparse-dip": ["fit", *IMG, "--method", "sparse-dip", "--steps", "40", "--mask-steps", "20",
                       "--density", "0.2", *NET, *RUN],
    "fit-dip-inpaint": ["fit", *IMG, "--task", "inpaint", "--method", "dip", "--steps", "40", *NET, *RUN],
    "denoise-deep-decoder": ["denoise", *IMG, "--method", "deep-decoder", "--steps", "40", *NET, *RUN],
    "denoise-gp-dip": ["denoise", *IMG, "--method", "gp-dip", "--steps", "40", *NET, *RUN],
    "inpaint-sparse-dip": ["inpaint", *IMG, "--steps", "40", "--mask-steps", "20", "--density", "0.1", *NET, *RUN],
    "super-resolve-dip": ["super-resolve", *IMG, "--method", "dip", "--steps", "40", "--factor", "2", *NET, *RUN],
    "learn-mask-image": ["learn-mask", *IMG, "--mask-steps", "20", "--density", "0.1", *NET, *RUN],
    "learn-mask-mri": ["learn-mask", BRAIN, "--mask-steps", "20", "--density", "0.1", *NET, *RUN],
    "recon-zero-filled": [*RECON, "--method", "zero-filled"],
    "recon-sense": [*RECON, "--method", "sense"],
    "recon-l1-wavelet": [*RECON, "--method", "l1-wavelet", "--max-iter", "20"],
    "recon-dip": [*RECON, "--method", "dip"],
    "recon-sparse-dip": [*RECON, "--method", "sparse-dip"],
    "recon-sparse-dip-density": [*RECON, "--method", "sparse-dip", "--density", "0.3", "--generator", "hourglass"],
    "recon-deep-decoder": [*RECON, "--method", "deep-decoder"],
    "transfer-image": ["transfer", PEPPER, "--crop", "64", "--tasks", "denoise", "inpaint", "--density", "0.2",
                       "--steps", "20", "--mask-steps", "20", "--imp-steps", "10", *NET, *RUN],
    "transfer-mri-preset": ["transfer", "--mri", BRAIN, "--preset", "cpu", "--accel", "4", "--density", "0.3",
                            "--mask-source", "none", "oes", "--steps", "20", "--mask-steps", "20", *RUN],
    "imp": ["imp", *IMG, "--rounds", "2", "--steps", "20", *NET, *RUN],
    "prune-at-init": ["prune-at-init", *IMG, "--mask-source", "snip", "--density", "0.1", "--steps", "30",
                      *NET, *RUN],
}
#: the Python entry point (``mri_oes.reconstruct``), as a subprocess too
API_CASE = ("import sys, json, mri_oes; im, rec = mri_oes.reconstruct(sys.argv[1], accel=4, method='sparse-dip', "
            "steps=30, mask_steps=20, threads=1, out=sys.argv[2])")


def _r(v):
    return None if v is None else round(float(v), 3)


def _identity_digest(folder: Path, work: Path):
    f = folder / "identity.json"
    if not f.is_file():
        return None
    text = f.read_text().replace(str(work), "<work>").replace(str(ROOT), "<root>")
    # key order is not part of an identity (runs compare canonical JSON)
    return hashlib.sha256(json.dumps(json.loads(text), sort_keys=True).encode()).hexdigest()[:12]


def collect(out: Path, work: Path) -> dict:
    rows = {}
    for f in sorted(out.rglob("metrics.json")):
        rec = json.loads(f.read_text())
        if rec.get("kind") == "collection" or "final" not in rec:
            continue
        row = {f"final_{k}": _r(v) for k, v in rec["final"].items() if k in ("psnr", "ssim", "nmse")}
        for k, v in (rec.get("final_network") or {}).items():
            if k in ("psnr", "ssim", "nmse"):
                row[f"final_network_{k}"] = _r(v)
        row.update(density=_r(rec.get("density")), steps=rec.get("steps"), identity=_identity_digest(f.parent, work))
        rows[str(f.parent.relative_to(out))] = row
    return rows


def run_cases(work: Path, only=None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    results = {}
    cases = dict(CASES, **{"api-reconstruct-sparse-dip": None})
    for name, argv in cases.items():
        if only and name not in only:
            continue
        out = work / name
        if out.exists():
            shutil.rmtree(out)
        if argv is None:
            cmd = [sys.executable, "-c", API_CASE, BRAIN, str(out)]
        else:
            cmd = [sys.executable, "-m", "mri_oes", *argv, "--out", str(out)]
        t0 = time.process_time()
        t = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        took = time.perf_counter() - t
        if p.returncode != 0:
            print(f"{name}: exit {p.returncode}\n{p.stderr[-2000:]}", file=sys.stderr)
            results[name] = {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}
            continue
        results[name] = collect(out, work)
        print(f"{name}: {len(results[name])} run(s), {took:.1f} s", file=sys.stderr, flush=True)
        del t0
    return results


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"


def compare(a: dict, b: dict) -> int:
    """Print every value that differs between two JSONs of this script; exit status 1 if any does."""
    ca, cb = a["cases"], b["cases"]
    n_diff = n_same = 0
    print(f"A: {a.get('commit')} ({a.get('date')})   B: {b.get('commit')} ({b.get('date')})")
    print(f"{'case / run folder':<62} {'value':<20} {'A':>10} {'B':>10}")
    for case in sorted(set(ca) | set(cb)):
        ra, rb = ca.get(case, {}), cb.get(case, {})
        if "error" in ra or "error" in rb or not ra or not rb:
            if ra != rb:
                print(f"{case:<62} {'(run)':<20} {str(ra.get('error', 'ok') if ra else 'absent'):>10} "
                      f"{str(rb.get('error', 'ok') if rb else 'absent'):>10}")
                n_diff += 1
            continue
        for run in sorted(set(ra) | set(rb)):
            va, vb = ra.get(run), rb.get(run)
            if va is None or vb is None:
                print(f"{case + '/' + run:<62} {'(folder)':<20} {'present' if va else 'absent':>10} "
                      f"{'present' if vb else 'absent':>10}")
                n_diff += 1
                continue
            for k in sorted(set(va) | set(vb)):
                if va.get(k) != vb.get(k):
                    print(f"{(case + '/' + run)[-62:]:<62} {k:<20} {str(va.get(k)):>10} {str(vb.get(k)):>10}")
                    n_diff += 1
                else:
                    n_same += 1
    print(f"{n_same} values equal, {n_diff} differ")
    return 1 if n_diff else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON file of the numbers")
    ap.add_argument("--work", default="/tmp/mri_oes-numbers", help="folder of the run folders (replaced per case)")
    ap.add_argument("--only", nargs="+", default=None, help="run these cases only")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="print the differences of two JSONs")
    ap.add_argument("--recollect", metavar="JSON", help="re-read the run folders under --work into this JSON's cases")
    args = ap.parse_args(argv)
    if args.recollect:
        doc = json.loads(Path(args.recollect).read_text())
        work = Path(args.work).resolve()
        doc["cases"] = {name: collect(work / name, work) for name in doc["cases"]}
        Path(args.recollect).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return 0
    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        return compare(a, b)
    if not args.out:
        ap.error("give --out FILE (or --compare A B)")
    import platform
    import torch
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cases = run_cases(work, args.only)
    doc = {"commit": _git_commit(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
           "torch": torch.__version__, "python": platform.python_version(), "device": "cpu", "threads": 1,
           "wall_s": round(time.perf_counter() - t0, 1), "cases": cases}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"{len(cases)} cases -> {args.out} ({doc['wall_s']} s)", file=sys.stderr)
    return 0 if all("error" not in c for c in cases.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
