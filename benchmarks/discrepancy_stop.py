"""Would a discrepancy-principle stop find the 8x overfitting peak? Simulated on the committed curves.

The discrepancy principle stops an iterative fit once its data residual reaches the noise level of the
measurements: fitting further can only fit noise. For recon's network fit the residual is ``data_loss``
(:func:`mri_oes.core.data_loss`: the raw iterate's mean squared residual over ALL entries of ``y``, real and
imaginary parts counted separately, unmeasured entries contributing zeros), logged every 50 steps in every
committed curve (``results/*/curves/*.json``). Nothing is trained here: for each curve the problem is rebuilt
exactly as its run built it (the ``cpu`` preset's ESPIRiT settings at that acceleration, seed 0, equispaced
mask, slice 0; ``NAME-cN`` scans are the central N×N of k-space as in ``benchmarks/final_vs_steps.py``), and
from the measured data alone (never the reference):

* **noise level** ``sigma2`` (variance per real component, scaled units of ``y``, mean over coils;
  :func:`mri_oes.mri.problem.kspace_noise_sigma2`, what recon's ``discrepancy`` rule uses): the median
  absolute deviation of the real and imaginary parts of the measured samples in the k-space corners -- the
  outer ``1/8`` of the readout on each side, on the measured lines in the outer half of the measured
  phase-encode range, where the signal is weakest; ``1.4826 * MAD`` per coil;
* **noise floor** ``sigma2 * f`` (``f``: the fraction of k-space entries measured): the ``data_loss`` of
  the true image under white noise;
* **least-squares floor**: the lowest ``data_loss`` any image reaches through the operator (conjugate
  gradients on the normal equations, ``--cg-iters`` iterations): what the maps cannot represent plus the
  noise outside the operator's range; and the noise a perfect fit could absorb,
  ``sigma2 * min(f, 1/C)`` (rank of ``A`` at most the number of pixels);
* for evaluation only (it reads the fully sampled k-space, which a rule never sees): the ``data_loss`` of
  the true image (the fully sampled coil images combined through the maps), the level an ideal
  discrepancy rule would aim at.

Rules simulated on the logged rows (each stops at the first logged step where its condition holds, the
output being the averaged image logged there; a curve shows where any setting stops up to its horizon):

* ``discrepancy tau``: ``data_loss <= tau * sigma2 * f``;
* ``excess tau``: ``data_loss <= LS floor + tau * sigma2 * min(f, 1/C)``;
* ``oracle tau`` (evaluation only: the best any noise estimate could do): ``data_loss <= tau *`` the true
  image's ``data_loss``;
* ``plateau eps/W``: after ``W`` steps, the running minimum of ``data_loss`` fell by less than a fraction
  ``eps`` over the last ``W`` steps (the data-loss slope).

``--run SCAN ACCEL`` trains recon's default Sparse-DIP on that scan (the route of
``benchmarks/time_to_quality.py``: :meth:`mri_oes.recipe.Recipe.from_preset` → :func:`mri_oes.runner.run`,
seed 0) and logs, every 50 steps, the raw iterate's residual energy on each measured line (in ``data_loss``
units: their sum over the lines is the row's ``data_loss``), split into the central and the outer half of
the readout, beside the data-consistent PSNR; the same for the image of the fully sampled k-space through
the maps (evaluation only). It asks whether the fit starts fitting noise on the lines outside the ACS block
(where the maps' mismatch is smallest) when it starts to overfit. Curve: ``OUT/curves/<scan>_<accel>x_lines.json``.

Horizon: the curve's last step or the preset's default step count on that grid (8x: 2,000), whichever comes
first -- a rule that has not fired by then gives the default result. A curve *overfits* when its
data-consistent PSNR at the horizon is more than 0.5 dB below its best before the horizon (issue 27's bound).

    python benchmarks/discrepancy_stop.py --out results/2026-12-05-discrepancy-stop
    python benchmarks/discrepancy_stop.py --run phantom4 8 --out results/2026-12-05-discrepancy-stop
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mri_oes.io import read_json  # noqa: E402
from mri_oes.mri.problem import kspace_noise_sigma2  # noqa: E402

TAUS = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
EXCESS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
ORACLE = (1.0, 1.1, 1.2, 1.3, 1.5, 2.0)
PLATEAUS = ((0.02, 250), (0.05, 250), (0.02, 500), (0.05, 500), (0.1, 500))
OVERFIT_DB = 0.5


# ------------------------------------------------------------------------------------------- curves
def read_curve(path: Path):
    """``(scan, accel, net, rows)`` of a committed curve; rows ``{step, data_loss, psnr, cpu_s}`` with
    ``psnr`` the data-consistent averaged output's (recon's output). None for curves of a fit that held
    measurements out (its data loss is over other entries)."""
    d = read_json(path, what="curve")
    if isinstance(d, dict) and "measured_lines" in d:   # this script's --run
        rows = [{"step": r["step"], "data_loss": r["data_loss"], "psnr": r["average_dc_psnr"], "cpu_s": r["cpu_s"]}
                for r in d["rows"]]
        return d["scan"], int(d["accel"]), "sparse-dip", rows
    if isinstance(d, dict):   # benchmarks/final_vs_steps.py
        rows = [{"step": r["step"], "data_loss": r["data_loss"], "psnr": r["avg_dc_psnr"], "cpu_s": r["cpu_s"]}
                for r in d["rows"]]
        return d["scan"], int(d["accel"]), d["net"], rows
    name = path.name.split(".")[0]   # benchmarks/time_to_quality.py: SCAN_Ax_sSEED_RULE[_TAG]
    if any(r.get("holdout_loss") is not None for r in d):
        return None
    rows = [{"step": r["step"], "data_loss": r["data_loss"], "psnr": r["average_dc_psnr"], "cpu_s": r["cpu_s"]}
            for r in d]
    net = "sparse-dip" if "deep-decoder" not in name else "deep-decoder"
    return name.split("_")[0], int(name.split("_")[1].rstrip("x")), net, rows


# ------------------------------------------------------------------------------------------- problem
def build(scan: str, accel: int, data_dir):
    """The problem of a curve's run (seed 0, equispaced, slice 0, the preset's ESPIRiT settings)."""
    from final_vs_steps import scan_file
    from mri_oes.mri import presets
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    cfg = presets.for_accel(presets.get("cpu"), accel)
    esp = {k: v for k, v in presets.espirit_for(cfg, accel).items() if v is not None}
    return build_problem(load_slice(scan_file(scan, data_dir), 0), accel, "equispaced", 0, espirit=esp or None), cfg


def true_image(p) -> np.ndarray:
    """The fully sampled coil images combined through the maps (least squares per pixel), scaled units.
    Evaluation only: it reads the fully sampled k-space."""
    from mri_oes.mri.problem import ifft2c_np
    img = ifft2c_np(p.slice.kspace) * p.scale
    S = p.maps
    return ((np.conj(S) * img).sum(0) / np.maximum((np.abs(S) ** 2).sum(0), 1e-12)).astype(np.complex64)


def least_squares_floor(p, iters: int) -> float:
    """min over images of ``data_loss(A x, y)`` by conjugate gradients on ``A^H A x = A^H y``."""
    import torch
    from mri_oes.core import data_loss
    A, y = p.operator, p.y
    b = A.adjoint(y)
    x, r = torch.zeros_like(b), b.clone()
    d, rs = r.clone(), (r.abs() ** 2).sum()
    for _ in range(iters):
        Ad = A.adjoint(A(d))
        a = rs / (d.conj() * Ad).sum().real
        x, r = x + a * d, r - a * Ad
        rn = (r.abs() ** 2).sum()
        d, rs = r + (rn / rs) * d, rn
    return float(data_loss(A(x), y))


def true_loss(p) -> float:
    import torch
    from mri_oes.core import data_loss
    with torch.no_grad():
        return float(data_loss(p.operator(torch.from_numpy(true_image(p)).to(p.y.device)), p.y))


# ------------------------------------------------------------------------------------------- rules
def first_row(rows, cond):
    return next((r for r in rows if cond(r)), None)


def plateau_stop(rows, eps: float, window: int):
    best = []
    for i, r in enumerate(rows):
        best.append(min(r["data_loss"], best[-1] if best else float("inf")))
        if r["step"] < window:
            continue
        j = max(k for k in range(i + 1) if rows[k]["step"] <= r["step"] - window)
        if best[i] >= (1 - eps) * best[j]:
            return r
    return None


def simulate(rows, noise: dict):
    """``{setting: stop row or None}`` for every rule setting on ``rows`` (already cut at the horizon)."""
    floor, ls, fit = noise["noise_floor"], noise["ls_floor"], noise["fittable"]
    out = {}
    for t in TAUS:
        out[f"discrepancy {t:g}"] = first_row(rows, lambda r: r["data_loss"] <= t * floor)
    for t in EXCESS:
        out[f"excess {t:g}"] = first_row(rows, lambda r: r["data_loss"] <= ls + t * fit)
    for t in ORACLE:   # evaluation only: the level read from the fully sampled k-space
        out[f"oracle {t:g}"] = first_row(rows, lambda r: r["data_loss"] <= t * noise["true_image_loss"])
    for eps, w in PLATEAUS:
        out[f"plateau {eps:g}/{w}"] = plateau_stop(rows, eps, w)
    return out


def mark_duplicates(docs, losses) -> None:
    """A curve whose logged data losses (by step) are all on another curve of the same scan and acceleration
    is that run again (a copy in another results folder, a run a rule ended): it is marked ``duplicate_of``
    the longer (the first of equals) and left out of the summary."""
    for i, (si, ai, li) in enumerate(losses):
        for j, (sj, aj, lj) in enumerate(losses):
            if i == j or (si, ai) != (sj, aj) or len(li) > len(lj) or (len(li) == len(lj) and i < j):
                continue
            if all(k in lj and np.isclose(v, lj[k], rtol=1e-5, atol=0) for k, v in li.items()):
                docs[i]["duplicate_of"] = docs[j]["curve"]
                break


def summarise(curves) -> list:
    """Per rule setting, over the distinct Sparse-DIP curves: the worst PSNR change against the horizon on
    curves that do not overfit, and the share of the lost peak recovered on those that do."""
    out = []
    settings = list(curves[0]["stops"]) if curves else []
    for s in settings:
        rising = [c for c in curves if not c["overfits"]]
        over = [c for c in curves if c["overfits"]]
        d_rise = [c["stops"][s]["psnr"] - c["horizon_psnr"] for c in rising]
        rec = [(c["stops"][s]["psnr"] - c["horizon_psnr"]) / (c["peak_psnr"] - c["horizon_psnr"]) for c in over]
        out.append({"setting": s, "rising_worst_db": min(d_rise) if d_rise else None,
                    "rising_over_0.2": sum(d < -0.2 for d in d_rise), "rising_n": len(rising),
                    "overfit_recovered_mean": float(np.mean(rec)) if rec else None,
                    "overfit_recovered_min": min(rec) if rec else None, "overfit_n": len(over)})
    return out


def line_residuals(p, x) -> dict:
    """Residual energy of ``x`` (operator input, scaled) per measured line, in ``data_loss`` units, split
    into the central and outer half of the readout: ``{"centre": [...], "outer": [...]}`` over the measured
    lines in order."""
    import torch
    with torch.no_grad():
        r = (p.operator(x) - p.y).abs().pow(2)
    r = r.reshape(-1, *r.shape[-2:])   # (coils, H, W)
    C, H, W = r.shape
    cols = torch.from_numpy(np.nonzero(np.asarray(p.mask) > 0)[0])
    q = H // 4
    per = r[:, :, cols].sum(0) / (2.0 * C * H * W)   # (H, lines)
    return {"centre": per[q:H - q].sum(0).tolist(), "outer": (per[:q].sum(0) + per[H - q:].sum(0)).tolist()}


def run_lines(scan: str, accel: int, out: Path, data_dir) -> None:
    """recon's default Sparse-DIP on ``scan`` at ``accel``; every logged row gets the raw iterate's per-line
    residuals and the data-consistent PSNR of the averaged output (curve written after every row)."""
    import time
    import torch
    from mri_oes.io import write_json
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run
    p, cfg = build(scan, accel, data_dir)
    y, mask = p.y.numpy(), np.asarray(p.mask)
    s2 = kspace_noise_sigma2(y, mask)
    x_true = true_image(p)
    cols = np.nonzero(mask > 0)[0]
    from mri_oes.mri.data import acs_lines
    acs = acs_lines(mask)
    doc = {"scan": scan, "accel": accel, "seed": 0, "mask_type": "equispaced", "preset": "cpu",
           "measured_lines": cols.tolist(), "acs_lines": [int(c) for c in cols if acs[0] <= c < acs[0] + acs[1]],
           "sigma2": s2, "noise_per_line": {"centre": s2 * (p.y.shape[-2] - 2 * (p.y.shape[-2] // 4)) / (p.y.shape[-2] * p.y.shape[-1]),
                                            "outer": s2 * 2 * (p.y.shape[-2] // 4) / (p.y.shape[-2] * p.y.shape[-1])},
           "true_image_lines": line_residuals(p, torch.from_numpy(x_true.astype(np.complex64)).to(p.y.device)),
           "rows": []}
    raw = {"x": None}

    def evaluate(x_hat):   # first call of a row: the raw iterate; second: the running average
        if raw["x"] is None:
            raw["x"] = line_residuals(p, x_hat)
            return {}
        im = p.unscale(x_hat)
        im = im[0] if im.ndim == 3 else im
        return {"dc_psnr": p.metrics(p.data_consistency(im))["psnr"]}

    t0 = time.process_time()
    path = out / "curves" / f"{scan}_{accel}x_lines.json"

    def cb(row):
        doc["rows"].append({"step": row["step"], "cpu_s": time.process_time() - t0, "data_loss": row["data_loss"],
                            "average_dc_psnr": row.get("average_dc_psnr"), "lines": raw["x"]})
        raw["x"] = None
        write_json(path, doc)
        print(f"{scan} {accel}x step {row['step']}: dc_psnr {row.get('average_dc_psnr'):.2f} cpu {doc['rows'][-1]['cpu_s']:.0f}s",
              flush=True)

    gp = p.as_problem({"kind": "mri", "task": "mri"}, evaluate=evaluate)
    rc = Recipe.from_preset(cfg, accel, method="sparse-dip", seed=0, log_every=50)
    run(gp, rc, None, save_outputs=False, command="discrepancy-stop", callback=cb)
    doc["complete"] = True
    write_json(path, doc)


LINE_TAUS = (1.05, 1.1, 1.15, 1.2, 1.3, 1.5, 2.0)


def line_discrepancy(doc) -> list:
    """``(step, DC PSNR, discrepancy)`` per row of a ``--run`` curve: the raw iterate's residual on the
    measured lines outside the ACS block over ``sigma2 · lines / W`` (what ``fit`` logs as ``discrepancy``
    under ``--stop-rule discrepancy``)."""
    cols = np.asarray(doc["measured_lines"])
    other = ~np.isin(cols, doc["acs_lines"])
    level = (doc["noise_per_line"]["centre"] + doc["noise_per_line"]["outer"]) * int(other.sum())
    out = []
    for r in doc["rows"]:
        if r.get("lines") is None:
            continue
        res = (np.asarray(r["lines"]["centre"]) + np.asarray(r["lines"]["outer"]))[other].sum()
        out.append((r["step"], r["average_dc_psnr"], float(res / level)))
    return out


def lines_tables(out: Path) -> str:
    """Where ``--stop-rule discrepancy`` stops each ``--run`` curve, per ``discrepancy_tau``, and the
    curve itself (every 50 steps: DC PSNR, discrepancy)."""
    text = []
    for f in sorted((out / "curves").glob("*_lines.json")):
        doc = read_json(f, what="per-line curve")
        rows = line_discrepancy(doc)
        if not rows:
            continue
        peak = max(rows, key=lambda r: r[1])
        text.append(f"### {f.name}: {doc['scan']} {doc['accel']}x, sigma2 {doc['sigma2']:.4g}, "
                    f"peak {peak[1]:.2f} at step {peak[0]}, last {rows[-1][1]:.2f} at step {rows[-1][0]}\n")
        text.append("| discrepancy_tau | stops at step | DC PSNR there |\n|---|---|---|")
        for t in LINE_TAUS:
            hit = next((r for r in rows if r[2] <= t), None)
            text.append(f"| {t:g} | {hit[0] if hit else '— (never)'} | {(hit or rows[-1])[1]:.2f} |")
        text.append("\n| step | DC PSNR | discrepancy |\n|---|---|---|")
        text += [f"| {s} | {p:.2f} | {d:.3f} |" for s, p, d in rows]
        text.append("")
    return "\n".join(text) + "\n"


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--curves", nargs="*", default=None, help="curve files (default: results/*/curves/*.json)")
    ap.add_argument("--cg-iters", type=int, default=300)
    ap.add_argument("--run", nargs=2, metavar=("SCAN", "ACCEL"), default=None,
                    help="train recon's default on SCAN at ACCEL, logging per-line residuals (see above)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mri_oes.io import atomic_path, write_json
    from mri_oes.runtime import configure_runtime
    from final_vs_steps import default_steps
    configure_runtime(1)
    if args.run:
        with tempfile.TemporaryDirectory() as data_dir:
            run_lines(args.run[0], int(args.run[1]), Path(args.out), data_dir)
        return
    files = [Path(f) for f in args.curves] if args.curves else sorted(ROOT.glob("results/*/curves/*.json"))
    import subprocess
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    noise, docs, losses = {}, [], []
    with tempfile.TemporaryDirectory() as data_dir:
        for f in files:
            got = read_curve(f)
            if got is None:
                continue
            scan, accel, net, rows = got
            if (scan, accel) not in noise:
                p, cfg = build(scan, accel, data_dir)
                y, mask = p.y.numpy(), np.asarray(p.mask)
                C = y.shape[0]
                s2 = kspace_noise_sigma2(y, mask)
                frac = float((mask > 0).mean())
                noise[scan, accel] = {
                    "scan": scan, "accel": accel, "sigma2": s2, "measured_fraction": frac,
                    "noise_floor": s2 * frac, "fittable": s2 * min(frac, 1.0 / C),
                    "ls_floor": least_squares_floor(p, args.cg_iters),
                    "true_image_loss": true_loss(p),
                    "zero_loss": float(np.mean(np.abs(y) ** 2) / 2), "coils": C, "grid": list(y.shape[1:]),
                    "default_steps": default_steps(cfg, p.image_shape)}
                print(f"{scan} {accel}x: sigma2 {s2:.3e}, noise floor {s2 * frac:.3e}, LS floor "
                      f"{noise[scan, accel]['ls_floor']:.3e}", flush=True)
            nz = noise[scan, accel]
            horizon = min(rows[-1]["step"], nz["default_steps"])
            cut = [r for r in rows if r["step"] <= horizon]
            peak = max(cut, key=lambda r: r["psnr"])
            name = str(f.relative_to(ROOT)) if f.is_absolute() and ROOT in f.parents else str(f)
            doc = {"curve": name, "scan": scan, "accel": accel, "net": net, "last_step": rows[-1]["step"],
                   "horizon": horizon, "peak_step": peak["step"], "peak_psnr": peak["psnr"],
                   "horizon_psnr": cut[-1]["psnr"], "overfits": cut[-1]["psnr"] < peak["psnr"] - OVERFIT_DB,
                   "duplicate_of": None,
                   "loss_at_peak_over_floor": peak["data_loss"] / nz["noise_floor"],
                   "loss_at_horizon_over_floor": cut[-1]["data_loss"] / nz["noise_floor"],
                   "loss_at_peak_over_true": peak["data_loss"] / nz["true_image_loss"],
                   "loss_at_horizon_over_true": cut[-1]["data_loss"] / nz["true_image_loss"],
                   "min_loss_over_true": min(r["data_loss"] for r in cut) / nz["true_image_loss"],
                   "stops": {s: ({"step": r["step"], "psnr": r["psnr"], "cpu_s": r["cpu_s"]} if r is not None else
                                 {"step": None, "psnr": cut[-1]["psnr"], "cpu_s": cut[-1]["cpu_s"]})
                             for s, r in simulate(cut, nz).items()}}
            losses.append((scan, accel, {r["step"]: r["data_loss"] for r in rows}))
            docs.append(doc)
    mark_duplicates(docs, losses)
    main_set = [d for d in docs if d["net"] == "sparse-dip" and d["duplicate_of"] is None]
    summary = summarise(main_set)
    out = Path(args.out)
    write_json(out / "simulation.json", {"commit": commit, "cg_iters": args.cg_iters,
                                   "overfit_db": OVERFIT_DB, "noise": list(noise.values()), "curves": docs,
                                   "summary_sparse_dip": summary})
    lines = ["| scan | accel | coils, grid | sigma² (scaled) | noise floor σ²f | LS floor / σ²f | fittable / σ²f | "
             "true image / σ²f (evaluation only) | zero image / σ²f |", "|---|---|---|---|---|---|---|---|---|"]
    for n in noise.values():
        lines.append(f"| {n['scan']} | {n['accel']}× | {n['coils']}, {n['grid'][0]}×{n['grid'][1]} | {n['sigma2']:.3e} | "
                     f"{n['noise_floor']:.3e} | {n['ls_floor'] / n['noise_floor']:.2f} | "
                     f"{n['fittable'] / n['noise_floor']:.2f} | {n['true_image_loss'] / n['noise_floor']:.2f} | "
                     f"{n['zero_loss'] / n['noise_floor']:.0f} |")
    noise_md = "\n".join(lines) + "\n"
    show = ("discrepancy 2.5", "discrepancy 3", "discrepancy 5", "excess 1.5", "oracle 1.1", "oracle 1.3",
            "plateau 0.05/500")
    lines = ["| curve | net | horizon | peak step: PSNR | PSNR at horizon | data_loss / σ²f at peak, horizon | "
             "data_loss / true image's at peak, horizon (lowest) | " +
             " | ".join(show) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(show)]
    for d in docs:
        cells = [("—: " if d["stops"][s]["step"] is None else f"{d['stops'][s]['step']}: ") +
                 f"{d['stops'][s]['psnr']:.2f}" for s in show]
        tag = " (overfits)" if d["overfits"] else ""
        dup = f" = {Path(d['duplicate_of']).name}" if d["duplicate_of"] else ""
        lines.append(f"| {d['curve'].replace('results/', '').replace('/curves/', ': ')}{dup} | {d['net']} | "
                     f"{d['horizon']} | {d['peak_step']}: {d['peak_psnr']:.2f} | {d['horizon_psnr']:.2f}{tag} | "
                     f"{d['loss_at_peak_over_floor']:.2f}, {d['loss_at_horizon_over_floor']:.2f} | "
                     f"{d['loss_at_peak_over_true']:.2f}, {d['loss_at_horizon_over_true']:.2f} ({d['min_loss_over_true']:.2f}) | " +
                     " | ".join(cells) + " |")
    curves_md = "\n".join(lines) + "\n"
    lines = ["| rule setting | non-overfitting curves: worst Δ vs horizon (dB) | of them below −0.2 dB | "
             "overfitting curves: share of the lost peak recovered, mean (min) |", "|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['setting']} | {fmt(s['rising_worst_db'], '+.2f')} | {s['rising_over_0.2']} of {s['rising_n']} | "
                     f"{fmt(s['overfit_recovered_mean'], '.0%')} ({fmt(s['overfit_recovered_min'], '.0%')}) "
                     f"of {s['overfit_n']} |")
    summary_md = "\n".join(lines) + "\n"
    lines_md = lines_tables(out)
    for name, text in (("noise.md", noise_md), ("curves.md", curves_md), ("summary.md", summary_md),
                       ("lines.md", lines_md)):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
    print(noise_md, curves_md, summary_md, lines_md, sep="\n")


if __name__ == "__main__":
    main()
