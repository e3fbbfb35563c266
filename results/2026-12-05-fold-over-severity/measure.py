"""How far the classical defaults and ESPIRiT's fold-over statistic hold as the fold-over grows: the shared
brains folded into 55-90 % of their phase-encode FOV (`mri_oes.mri.problem.fold_over`) and the clean scans,
at 4x and 8x, seed 0 (``--seeds``), slice 0:

    python results/2026-12-05-fold-over-severity/measure.py OUT.jsonl [--folds 0.6 0.7 0.8] [--scans ...] [--seeds 0]
    python results/2026-12-05-fold-over-severity/measure.py OUT.jsonl --table     # the README's table

One JSON line per case (OUT rewritten atomically after each; a case already in OUT is skipped): the rule's record
(`problem.espirit.soft_sense`: the fraction of the object where the second eigenvalue exceeds 0.9 -- all of it,
its outer quarters of the phase-encode FOV, its central half --, the kept fraction; the map sets), SENSE and
L1-wavelet at their defaults, CG-SPIRiT (maps-free, `coil_operator(maps_free=True)`), zero-filled (fastMRI
metric, PSNR dB / SSIM), and the normalised difference between the SENSE and CG-SPIRiT images. Measured with
the library's own functions; no network is trained."""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from mri_oes.io import atomic_path
from mri_oes.mri import baselines as B
from mri_oes.mri.data import acs_lines, load_slice
from mri_oes.mri.problem import build_problem, fold_over

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mri"


def case_name(scan, fold, accel, seed) -> str:
    return f"{scan}{'-fold%g' % fold if fold else ''}_{accel}x_s{seed}"


def metrics(p, x):
    m = p.metrics(np.abs(x))
    return [round(m["psnr"], 2), round(m["ssim"], 3)]


def case(scan, fold, accel, seed=0):
    sl = load_slice(SHARED / f"{scan}_full.h5", 0)
    if fold:
        sl = fold_over(sl, fold)
    t0 = time.process_time()
    p = build_problem(sl, accel, "equispaced", seed)
    rec = {"case": case_name(scan, fold, accel, seed), "scan": scan, "fold": fold,
           "accel": accel, "seed": seed, "acs_lines": acs_lines(p.mask)[1]}
    sense, l1 = B.run_baseline(p, "sense"), B.run_baseline(p, "l1-wavelet")
    esp = p.info["espirit"]
    rec.update({k: esp["soft_sense"][k] for k in ("overlap_fraction", "kept_fraction", "overlap_edge", "overlap_centre")},
               map_sets=esp["map_sets"])
    q = build_problem(sl, accel, "equispaced", seed)
    B.coil_operator(q, maps_free=True)
    spirit = B.run_baseline(q, "sense")
    rec.update(zero_filled=metrics(p, p.zero_filled()), sense=metrics(p, sense), l1_wavelet=metrics(p, l1),
               cg_spirit=metrics(q, spirit),
               sense_vs_cg_spirit=round(float(np.linalg.norm(np.abs(sense) - np.abs(spirit))
                                              / np.linalg.norm(np.abs(spirit))), 3),
               cpu_s=round(time.process_time() - t0, 1))
    return rec


def table(rows) -> str:
    """Markdown: one line per case; PSNR / SSIM; **bold** where a default falls below zero-filled's PSNR."""
    def cell(r, k):
        v = r[k]
        txt = f"{v[0]:.2f} / {v[1]:.3f}"
        return f"**{txt}**" if k != "zero_filled" and v[0] < r["zero_filled"][0] else txt
    lines = ["| case | ACS lines | overlap: all / edge / centre | map sets | zero-filled | SENSE | L1-wavelet | "
             "CG-SPIRiT (maps-free) | SENSE vs CG-SPIRiT |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['acs_lines']} | {r['overlap_fraction']:.3f} / {r['overlap_edge']:.3f} / "
                     f"{r['overlap_centre']:.3f} | {r['map_sets']} | {cell(r, 'zero_filled')} | {cell(r, 'sense')} | "
                     f"{cell(r, 'l1_wavelet')} | {cell(r, 'cg_spirit')} | {r['sense_vs_cg_spirit']:.3f} |")
    return "\n".join(lines)


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("out")
    a.add_argument("--folds", type=float, nargs="*", default=[0.6, 0.7, 0.8])
    a.add_argument("--fold-scans", nargs="+", default=["brain8", "brain8b", "brain4"])
    a.add_argument("--scans", nargs="+", default=["brain8", "brain8b", "brain4", "brain16", "phantom4"])
    a.add_argument("--accels", type=int, nargs="+", default=[4, 8])
    a.add_argument("--seeds", type=int, nargs="+", default=[0], help="mask seeds (equispaced line offsets)")
    a.add_argument("--table", action="store_true", help="print the markdown table of OUT and stop")
    args = a.parse_args()
    out = Path(args.out)
    if args.table:
        print(table([json.loads(line) for line in out.read_text().splitlines()]))
        return
    lines = out.read_text().splitlines() if out.is_file() else []
    done = {json.loads(line)["case"] for line in lines}
    todo = [(s, f, acc, sd) for sd in args.seeds for acc in args.accels for f in args.folds for s in args.fold_scans]
    todo += [(s, None, acc, sd) for sd in args.seeds for acc in args.accels for s in args.scans]
    for scan, fold, accel, seed in todo:
        if case_name(scan, fold, accel, seed) in done:
            continue
        lines.append(json.dumps(case(scan, fold, accel, seed)))
        with atomic_path(out) as tmp:   # the cases so far, never a half-written line
            tmp.write_text("\n".join(lines) + "\n")
        print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
