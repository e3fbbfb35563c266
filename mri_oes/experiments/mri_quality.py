"""MRI quality at the final iterate: untrained priors vs classical recon on real brains.

Resumable: every run is one folder ``OUT/runs/<key>/`` with ``result.json`` (config, seed, times,
density/sparsity, versions) and the reconstructions as ``.npy`` in ORIGINAL units (``final``,
``best``; complex ESPIRiT images ``(H, W)`` or maps-free coil images ``(coils, H, W)``), so tables
are recomputed from the saved images (``table``) whenever the metric convention changes. A run whose
``result.json`` exists is skipped.

    python -m mri_oes.experiments.mri_quality baselines --out OUT [--scans ...] [--accel 4 8] [--seeds 0 1 2]
    python -m mri_oes.experiments.mri_quality net --out OUT --scan brain8 --accel 4 --seed 0 \\
           --method sparse-dip [--preset cpu] [--set steps=1500 lr_final=0.001 ...] [--tag NAME]
    python -m mri_oes.experiments.mri_quality table --out OUT
    python -m mri_oes.experiments.mri_quality plots --table DIR/table.json --curves DIR/curves.json --out DIR
    python -m mri_oes.experiments.mri_quality summary --tables A/table.json B/table.json [--relabel R.json] --out DIR
    python -m mri_oes.experiments.mri_quality error-bands --out OUT [--scan brain8 --accel 4 --seeds 0 1 2]

``net`` trains through the one runner (:func:`mri_oes.runner.run`, as ``recon`` does: the same seeds,
mask learning and fit; identical numbers) and adds the data-consistent curve (``dc_*``) and the CPU
clock (``cpu_s``) to every logged row. ``baselines``: zero-filled, SENSE, and L1-wavelet with λ tuned per acceleration on ANOTHER scan
(``TUNE_ON``; seed 0 of that scan, grid ``L1_GRID``) then applied to the scored scan. It also runs
the ESPIRiT variants (``ESPIRIT_VARIANTS``) for SENSE/L1 at 8×. ``table``: ``table.csv/json/md``
(every run: final/best, with and without data-consistency projection), ``summary.md``, ``curves.json`` and
``curves_<scan>_<accel>x.png`` (PSNR against steps and CPU minutes per scenario). ``summary``: ``table.json`` and ``summary.md`` rebuilt from committed
``table.json`` files (several merged, variants relabelled by rules), no run folders needed. ``plots``: the curves again from
the ``curves.json`` that ``table`` writes beside ``table.json``. ``error-bands``:
where Sparse-DIP and L1-wavelet err (:func:`error_bands`).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ..cli_common import add_renamed, device_name
from ..mri.baselines import METHODS as BASELINE_METHODS
from ..schema import CLASSICAL_METHODS, EXPERIMENT_NETWORK_METHODS

SHARED = Path(os.environ.get("MRI_OES_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
SCANS = {"brain8": "data/mri/brain8_full.h5", "brain8b": "data/mri/brain8b_full.h5",
         "brain4": "data/mri/brain4_full.h5"}
#: L1-wavelet λ is tuned on a different scan than the one scored
TUNE_ON = {"brain8": "brain4", "brain8b": "brain4", "brain4": "brain8b"}
L1_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
ESPIRIT_VARIANTS = {
    "default": {},
    "thresh0.005": {"thresh": 0.005},
    "thresh0.05": {"thresh": 0.05},
    "crop0.95": {"crop": 0.95},
    "calib_all_kw3": {"kernel_width": 3},
}


def scan_path(name):
    p = SHARED / SCANS[name]
    if not p.is_file():
        raise SystemExit(f"--scan {name}: {p} not found (set MRI_OES_SHARED to the shared folder)")
    return p


_PROBLEMS = {}


def problem(out, scan, accel, seed, espirit=None):
    from ..mri.data import load_slice
    from ..mri.problem import build_problem
    key = (scan, accel, seed, json.dumps(espirit or {}, sort_keys=True))
    if key not in _PROBLEMS:
        sl = load_slice(scan_path(scan), 0)
        _PROBLEMS[key] = build_problem(sl, accel, "equispaced", seed, espirit=espirit or None,
                                       cache=Path(out) / "espirit_cache.h5")
    return _PROBLEMS[key]


def _save_run(d, result, arrays):
    from ..io import save_npy, write_json, versions
    d.mkdir(parents=True, exist_ok=True)
    for k, a in arrays.items():
        save_npy(d / f"{k}.npy", a)
    result["versions"] = versions()
    write_json(d / "result.json", result)   # last: its presence marks the run done


def _base_record(p, scan, accel, seed, method, device="cpu"):
    return {"scan": scan, "accel": accel, "seed": seed, "method": method, "task": "mri",
            "scenario": f"{scan}-{accel}x", "mask_type": "equispaced", "problem": p.describe(),
            "device": device, "threads": int(__import__("torch").get_num_threads())}


# ------------------------------------------------------------------------------------- baselines
def run_baselines(args):
    from ..mri import baselines as B
    out = Path(args.out)
    lam_for = {}
    for accel in args.accels:
        for scan in args.scans:
            tune = TUNE_ON[scan]
            if (tune, accel) in lam_for:
                continue
            d = out / "runs" / f"tune-l1_{tune}_{accel}x"
            if not (d / "result.json").exists():
                p = problem(out, tune, accel, 0)
                scores = {}
                for lam in L1_GRID:
                    scores[lam] = p.metrics(B.l1_wavelet(p, lamda=lam))["psnr"]
                best = max(scores, key=scores.get)
                _save_run(d, {"tuned_on": tune, "accel": accel, "seed": 0, "grid": list(L1_GRID),
                              "psnr": [scores[l] for l in L1_GRID], "lamda": best}, {})
            lam_for[(tune, accel)] = json.loads((d / "result.json").read_text())["lamda"]
            print(f"L1 λ at {accel}x tuned on {tune}: {lam_for[(tune, accel)]}", flush=True)
        for scan in args.scans:
            for seed in args.seeds:
                variants = ESPIRIT_VARIANTS if (accel == 8 and seed == 0 and args.espirit_variants) else \
                    {"default": {}}
                for vname, esp in variants.items():
                    for method in BASELINE_METHODS:
                        if method == "zero-filled" and vname != "default":
                            continue
                        tag = "" if vname == "default" else f"_esp-{vname}"
                        d = out / "runs" / f"{scan}_{accel}x_s{seed}_{method}{tag}"
                        if (d / "result.json").exists():
                            continue
                        try:
                            p = problem(out, scan, accel, seed, esp)
                        except Exception as e:   # an ESPIRiT variant that crops everything
                            print(f"skip {d.name}: {e}", flush=True)
                            continue
                        t0 = time.process_time()
                        lam = lam_for[(TUNE_ON[scan], accel)] if method == "l1-wavelet" else None
                        x = B.run_baseline(p, method, lamda=lam)
                        cpu = time.process_time() - t0
                        rec = _base_record(p, scan, accel, seed, method)
                        rec.update({"variant": f"espirit-{vname}" if tag else "default", "espirit": esp,
                                    "lamda": lam, "time_total_s": cpu, "density": None, "sparsity": None,
                                    "steps": None, "image": "magnitude" if method == "zero-filled" else "complex"})
                        _save_run(d, rec, {"final": x.astype(np.complex64 if np.iscomplexobj(x) else np.float32)})
                        print(f"{d.name}: {p.metrics(x)['psnr']:.2f} dB  {cpu:.1f}s", flush=True)


# ------------------------------------------------------------------------------------ networks
def parse_sets(pairs):
    out = {}
    for s in pairs or []:
        k, _, v = s.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def network_recon(p, method: str, cfg: dict, seed: int = 0, log_every: int = 50, evaluate: bool = True,
                  accel=None, device: str = "cpu", verbose: bool = False):
    """Reconstruct problem ``p`` with a network ``method`` under preset dict ``cfg``, through the one
    runner (:func:`mri_oes.runner.run`, as ``recon``). Returns ``(final, best, info)``: images in
    ORIGINAL units (complex ``(H, W)``, or coil images ``(coils, H, W)`` for ``operator = coils``) and a
    record (density, sparsity, times, history with the data-consistent curve ``dc_*``)."""
    import torch
    from ..recipe import Recipe
    from ..runner import run
    from operators.mri_coils import CoilImagesMRI
    t_start, wall_start = time.process_time(), time.perf_counter()
    coils = p.maps.shape[0]
    kind = "coils" if cfg["operator"] == "coils" else "complex"
    op = CoilImagesMRI(torch.from_numpy(p.mask), coils, p.image_shape) if kind == "coils" else p.operator

    def unscaled(x):   # network output -> original units without the batch axis: (H, W) or (C, H, W)
        a = p.unscale(x)
        return a[0] if a.ndim == (4 if kind == "coils" else 3) else a

    def evaluate_fn(x_hat):
        raw = unscaled(x_hat)
        out = _image_metrics(p, raw, kind, dc=False)
        if cfg.get("data_consistency"):   # the curve of the image a user gets (projected), beside the raw one
            out.update({f"dc_{k}": v for k, v in _image_metrics(p, raw, kind, dc=True).items() if k != "nmse"})
        return out

    def cb(row):   # the CPU and wall clocks of the curves (mask learning included)
        row["cpu_s"] = time.process_time() - t_start
        row["wall_s"] = time.perf_counter() - wall_start
        if verbose:   # one line per logged row: a long or killed run still shows its curve
            dc = row.get("average_dc_psnr", row.get("dc_psnr"))
            print(f"step {row.get('step')}  dc_psnr {dc if dc is None else round(dc, 3)}  "
                  f"wall {row['wall_s']:.0f}s  cpu {row['cpu_s']:.0f}s", flush=True)

    gp = p.as_problem({"kind": "mri", "task": "mri"}, operator=op,
                      evaluate=evaluate_fn if evaluate and p.reference is not None else None)
    # recon's recipe of this preset (conv-decoder: dense DIP on the ConvDecoder at the preset's depth and width)
    recipe = Recipe.from_preset(cfg, accel, method="dip" if method == "conv-decoder" else method,
                                       seed=seed, log_every=log_every, device=device)
    if method == "conv-decoder":
        recipe = recipe.override(generator="conv-decoder", layers=cfg["layers"], channels=cfg["channels"])
    rec = run(gp, recipe, None, save_outputs=False, command="mri-quality", callback=cb)
    res, mask = rec["_result"], rec["_mask"]
    final = unscaled(res.output)
    best = unscaled(res.best_output) if res.best_output is not None else final
    t_mask = rec["mask_learning"]["time_s"] if "mask_learning" in rec else 0.0
    info = {"config": cfg, "generator": rec["generator"], "seeds": rec["seeds"], "n_weights": rec["maskable_weights"],
            "n_measurements": rec["measurements"],   # measured real values: 2 · coils · sampled entries
            "density": rec["density"], "sparsity": rec["sparsity"], "per_layer_density": rec["per_layer_density"],
            "steps": rec["config"]["steps"], "mask_steps": cfg["mask_steps"] if mask is not None else 0,
            "time_mask_s": t_mask, "time_fit_s": res.wall_time_s, "time_total_s": time.process_time() - t_start,
            "time_wall_s": time.perf_counter() - wall_start,
            "time_s_per_step": res.wall_time_s / max(rec["config"]["steps"], 1), "best_step": res.best_step,
            "final_metrics": res.final_metrics, "best_metrics": res.best_metrics,
            "last_metrics": res.last_metrics, "diverged": res.diverged, "image": kind,
            "history": res.history,
            "mask_history": rec["mask_learning"]["history"] if "mask_learning" in rec else None}
    return final, best, info


def run_network(args):
    from ..mri import presets   # threads: main() ran configure_runtime(--threads)
    cfg = presets.for_accel(presets.get(args.preset), args.accel)
    cfg.update(parse_sets(args.set))
    key = f"{args.scan}_{args.accel}x_s{args.seed}_{args.method}" + (f"_{args.tag}" if args.tag else "")
    d = Path(args.out) / "runs" / key
    if (d / "result.json").exists() and not args.overwrite:
        print(f"{key}: done", flush=True)
        return
    from ..runtime import resolve_device
    device = str(resolve_device(args.device))   # before ESPIRiT: a missing GPU fails at once; "auto" as chosen
    esp = {k: v for k, v in presets.espirit_for(cfg, args.accel).items() if v is not None}
    p = problem(args.out, args.scan, args.accel, args.seed, esp)
    final, best, info = network_recon(p, args.method, cfg, args.seed, args.log_every, accel=args.accel,
                                      device=device, verbose=args.verbose)
    rec = _base_record(p, args.scan, args.accel, args.seed, args.method, device)
    rec.update({"variant": args.tag or "default", "preset": args.preset, **info})
    _save_run(d, rec, {"final": final.astype(np.complex64), "best": best.astype(np.complex64)})
    print(f"{key}: final {info['final_metrics'].get('psnr'):.2f} best {info['best_metrics'].get('psnr'):.2f} "
          f"@{info['best_step']}  density {rec['density']:.4f}  {rec['time_total_s'] / 60:.1f} CPU-min", flush=True)


# ---------------------------------------------------------------------------------------- table
def _image_metrics(p, arr, kind, dc):
    from ..mri.metrics import rss
    if dc:
        if kind == "magnitude":
            return None
        img = p.data_consistency(arr, coil_images=(kind == "coils"))
    else:
        img = rss(arr) if kind == "coils" else arr
    m = p.metrics(img)
    return {k: m[k] for k in ("psnr", "ssim", "nmse")}


CLASSICAL = BASELINE_METHODS


def _run_files(out, only=None):
    """``result.json`` of every run under ``out/runs`` (``only``: glob patterns on the run folder names)."""
    import fnmatch
    files = sorted((Path(out) / "runs").glob("*/result.json"))
    return [f for f in files if not only or any(fnmatch.fnmatch(f.parent.name, pat) for pat in only)]
METHOD_ORDER = CLASSICAL + EXPERIMENT_NETWORK_METHODS


def build_table(args):
    from ..io import write_json
    out = Path(args.out)
    rows = []
    for f in _run_files(out, args.only):
        r = json.loads(f.read_text())
        if "method" not in r:
            continue
        esp = r.get("espirit")
        if esp is None and "config" in r:
            esp = {k: v for k, v in r["config"]["espirit"][str(r["accel"])].items() if v is not None}
        p = problem(out, r["scan"], r["accel"], r["seed"], esp or None)
        row = {k: r.get(k) for k in ("scan", "accel", "seed", "method", "variant", "density", "sparsity",
                                     "steps", "mask_steps", "best_step", "time_total_s", "time_fit_s",
                                     "time_s_per_step", "lamda", "threads", "time_wall_s")}
        row["run"] = f.parent.name
        row["device"] = r.get("device", "cpu")
        row["cpu_min"] = (r.get("time_total_s") or 0) / 60
        # recon's vocabulary: ``final`` = the image a user gets (a network's output projected onto the
        # measured k-space when data consistency is on), ``final_network`` = the raw network output,
        # ``best`` = the oracle best raw iterate (comparable to ``final_network``)
        network = r["method"] not in CLASSICAL
        dc_on = network and r.get("config", {}).get("data_consistency", True)
        kind = r.get("image", "complex")
        # final.npy: the network's output (the averaged iterates when output averaging ran)
        for col, fname, dc in (("final", "final", dc_on), ("final_network", "final", False),
                               ("best", "best", False)):
            if (col != "final" and not network) or not (f.parent / f"{fname}.npy").exists():
                continue
            m = _image_metrics(p, np.load(f.parent / f"{fname}.npy"), kind, dc)
            if m:
                for k, v in m.items():
                    row[f"{col}_{k}"] = v
        rows.append(row)
    write_json(out / "table.json", rows)
    cols = sorted({k for r in rows for k in r}, key=lambda c: (c not in ("run",), c))
    import csv
    from ..io import atomic_path, csv_cell
    with atomic_path(out / "table.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)   # no cell read as a formula
    md = ["| run | final PSNR/SSIM | final_network | best PSNR (step) | density | CPU min |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        def f2(a, b):
            return f"{r[a]:.2f} / {r[b]:.3f}" if r.get(a) is not None else "–"
        best = f"{r['best_psnr']:.2f} ({r.get('best_step')})" if r.get("best_psnr") is not None else "–"
        dens = f"{r['density']:.4f}" if r.get("density") is not None else "–"
        md.append(f"| {r['run']} | {f2('final_psnr', 'final_ssim')} | "
                  f"{f2('final_network_psnr', 'final_network_ssim')} | {best} | {dens} | {r['cpu_min']:.1f} |")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summarize(rows))
    curves = compact_curves(out, args.only)
    write_json(out / "curves.json", curves)
    _plots(out, rows, curves)
    print(f"{len(rows)} runs -> {out / 'table.md'}")


def build_ensemble(args):
    """Average the network outputs (``final.npy``) of runs on ONE problem (same scan, acceleration and
    seed, so the same sampling mask), project onto the measured k-space and score it; the runs' CPU
    minutes add up. A lever measured after the fact: nothing in ``recon`` ensembles. Appends to
    ``ensembles.json``."""
    from ..io import write_json
    out = Path(args.out)
    recs = []
    for name in args.runs:
        f = out / "runs" / name / "result.json"
        if not f.is_file():
            raise SystemExit(f"--runs {name}: no {f}")
        recs.append((name, json.loads(f.read_text())))
    probs = {(r["scan"], r["accel"], r["seed"]) for _, r in recs}
    if len(probs) != 1 or any(r["method"] in CLASSICAL for _, r in recs):
        raise SystemExit(f"--runs must be network runs of one scan/accel/seed (same sampling mask), got {sorted(probs)}")
    scan, accel, seed = probs.pop()
    _, r0 = recs[0]
    esp = {k: v for k, v in r0["config"]["espirit"][str(accel)].items() if v is not None}
    p = problem(out, scan, accel, seed, esp or None)
    x = np.mean([np.load(out / "runs" / n / "final.npy") for n, _ in recs], axis=0)
    row = {"runs": [n for n, _ in recs], "scan": scan, "accel": accel, "seed": seed,
           "cpu_min": sum((r.get("time_total_s") or 0) for _, r in recs) / 60,
           "final": _image_metrics(p, x, "complex", True), "final_network": _image_metrics(p, x, "complex", False),
           "members_final": {n: _image_metrics(p, np.load(out / "runs" / n / "final.npy"), "complex", True)
                             for n, _ in recs}}
    f = out / "ensembles.json"
    rows = json.loads(f.read_text()) if f.is_file() else []
    rows = [q for q in rows if q["runs"] != row["runs"]] + [row]
    write_json(f, rows)
    m = row["final"]
    members = ", ".join(f"{v['psnr']:.2f}" for v in row["members_final"].values())
    print(f"{' + '.join(row['runs'])}: final {m['psnr']:.2f} / {m['ssim']:.4f} (members {members}), "
          f"{row['cpu_min']:.1f} CPU-min")


def _mean(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None]
    return (float(np.mean(v)), len(v)) if v else (None, 0)


def _on_cpu(r):   # rows of runs recorded before the device was (always "cpu" then)
    return r.get("device", "cpu") == "cpu"


def _minutes(r):   # CPU minutes of a CPU run; wall minutes of a GPU run (its process time is the host's)
    if _on_cpu(r) or not r.get("time_wall_s"):
        return f"{r['cpu_min']:.1f}"
    return f"{r['time_wall_s'] / 60:.1f} wall ({r['device']})"


def summarize(rows) -> str:
    """Main table (scan × accel; baselines mean over their seeds, network methods seed 0 unless more
    exist; default variant) and the per-variant table (every network variant per scenario)."""
    def cell(rs, key, dec=2):
        ps, n = _mean(rs, f"{key}_psnr")
        ss, _ = _mean(rs, f"{key}_ssim")
        return "–" if ps is None else f"{ps:.{dec}f} / {ss:.3f}" + (f" (n={n})" if n != 1 else "")

    scen = sorted({(r["scan"], r["accel"]) for r in rows}, key=lambda t: (t[1], t[0]))
    cols = [("zero-filled", "final"), ("sense", "final"), ("l1-wavelet", "final"), ("dip", "final"),
            ("dip", "final_network"), ("dip", "best"), ("sparse-dip", "final"), ("sparse-dip", "final_network"),
            ("sparse-dip", "best"), ("conv-decoder", "final"), ("deep-decoder", "final")]
    out = ["## Main table: PSNR dB / SSIM (fastMRI metric); n = seeds averaged", "",
           "| scan | accel | " + " | ".join(f"{m} {k}" for m, k in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for scan, accel in scen:
        cells = []
        for m, k in cols:
            rs = [r for r in rows if (r["scan"], r["accel"], r["method"]) == (scan, accel, m)
                  and r.get("variant") == "default"]
            cells.append(cell(rs, k))
        out.append(f"| {scan} | {accel}x | " + " | ".join(cells) + " |")
    out += ["", "## CPU minutes per slice (1 thread, process time; networks: mask learning included; mean over the "
            "runs on a CPU)",
            "", "| scan | accel | " + " | ".join(m for m in METHOD_ORDER) + " |", "|---|---|" + "---|" * len(METHOD_ORDER)]
    for scan, accel in scen:
        cells = []
        for m in METHOD_ORDER:
            v, n = _mean([r for r in rows if (r["scan"], r["accel"], r["method"]) == (scan, accel, m)
                          and r.get("variant") == "default" and _on_cpu(r)], "cpu_min")
            cells.append("–" if v is None else (f"{v:.1f}" if v >= 0.1 else f"{v * 60:.1f} s"))
        out.append(f"| {scan} | {accel}x | " + " | ".join(cells) + " |")
    out += ["", "## Every network run: final (data-consistent when on), final_network (raw output), oracle best "
            "raw iterate", "",
            "| scenario | method | variant | density | steps (+mask) | final | final_network | best (step) | "
            "best − final_network | CPU min (GPU: wall min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["accel"], r["scan"], r["method"], r.get("variant") or "")):
        if r["method"] in CLASSICAL:
            continue
        gap = (r["best_psnr"] - r["final_network_psnr"]) if r.get("best_psnr") is not None else None
        out.append(f"| {r['scan']} {r['accel']}x s{r['seed']} | {r['method']} | {r.get('variant')} | "
                   f"{(r.get('density') or 0):.4f} | {r.get('steps')} (+{r.get('mask_steps') or 0}) | "
                   f"{cell([r], 'final')} | {cell([r], 'final_network')} | {cell([r], 'best')} ({r.get('best_step')}) | "
                   f"{'–' if gap is None else f'{gap:.2f}'} | {_minutes(r)} |")
    out += ["", "## Baseline variants (ESPIRiT settings), seed 0", "",
            "| scenario | method | variant | PSNR / SSIM |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["accel"], r["scan"], r["method"], r.get("variant") or "")):
        if r["method"] in ("sense", "l1-wavelet") and r["seed"] == 0:
            out.append(f"| {r['scan']} {r['accel']}x | {r['method']} | {r.get('variant')} | {cell([r], 'final')} |")
    return "\n".join(out) + "\n"


def _relabel(row, index, rules):
    """The variant of ``row`` (read from the ``index``-th table) under the first matching rule."""
    for rule in rules:
        if "tables" in rule and index not in rule["tables"]:
            continue
        if any(row.get(k) != v for k, v in (rule.get("match") or {}).items()):
            continue
        if any(row.get(k) is None or row[k] > v + 1e-9 for k, v in (rule.get("at_most") or {}).items()):
            continue
        return rule["variant"]
    return row.get("variant")


def merge_tables(tables, rules=()):
    """Rows of several ``table.json`` files as one table. A run name in a later table replaces the earlier
    row; each row records its file in ``source``; ``rules`` (first match wins, on the row as read):
    ``{"variant": NEW, "match": {key: value}, "at_most": {key: value}, "tables": [indices]}``. Then one run
    per seed in the means: where a scenario, seed and method has a ``default`` run on a CPU, a ``default``
    run on another device becomes ``default-<device>`` (CPU runs are deterministic)."""
    loaded = [(str(t), json.loads(Path(t).read_text())) for t in tables]
    rows = []
    for i, (name, trows) in enumerate(loaded):
        later = {r["run"] for _, rs in loaded[i + 1:] for r in rs}
        rows += [{**r, "variant": _relabel(r, i, rules), "source": name} for r in trows if r["run"] not in later]
    cpu_default = {(r["scan"], r["accel"], r["seed"], r["method"]) for r in rows
                   if r.get("variant") == "default" and r.get("device", "cpu") == "cpu"}
    for r in rows:
        if r.get("variant") == "default" and r.get("device", "cpu") != "cpu" and \
                (r["scan"], r["accel"], r["seed"], r["method"]) in cpu_default:
            r["variant"] = f"default-{r['device']}"
    return rows


def build_summary(args):
    """``OUT/table.json`` and ``OUT/summary.md`` from committed ``table.json`` files (no run folders
    needed): :func:`merge_tables` with the relabel rules of ``--relabel`` (a JSON list)."""
    from ..errors import UserError
    from ..io import atomic_path, write_json
    for t in args.tables:
        if not Path(t).is_file():
            raise UserError(f"--tables: {t} not found")
    rules = []
    if args.relabel:
        try:
            rules = json.loads(Path(args.relabel).read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"--relabel: {args.relabel} is not a readable JSON list of rules ({e})") from None
    rows = merge_tables(args.tables, rules)
    out = Path(args.out)
    write_json(out / "table.json", rows)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summarize(rows))
    print(f"{len(rows)} rows from {len(args.tables)} tables -> {out / 'summary.md'}")


ERROR_BANDS = ((0.0, 0.05), (0.05, 0.15), (0.15, 0.3), (0.3, 1.0))


def error_bands(out, scan="brain8", accel=4, seed=0):
    """Where Sparse-DIP and L1-wavelet err on one problem: the error of each final image against the
    reference (fastMRI crop, magnitude; Sparse-DIP's after data consistency), split into foreground
    (reference > 10 % of its max) / background and into radial spatial-frequency bands (cycles per pixel,
    ``ERROR_BANDS``) of the magnitude error; plus the PSNR of the two images averaged (how correlated the
    errors are; a diagnostic, not a method). Reads ``OUT/runs/<scan>_<accel>x_s<seed>_{sparse-dip,l1-wavelet}``."""
    from ..mri import metrics as M
    p = problem(out, scan, accel, seed, None)
    ref = p.reference
    runs = Path(out) / "runs"
    sd = np.abs(p.data_consistency(np.load(runs / f"{scan}_{accel}x_s{seed}_sparse-dip" / "final.npy")))
    l1 = np.abs(np.load(runs / f"{scan}_{accel}x_s{seed}_l1-wavelet" / "final.npy"))
    imgs = {"sparse-dip": M.center_crop(sd, ref.shape), "l1-wavelet": M.center_crop(l1, ref.shape)}
    fg = ref > 0.1 * ref.max()
    H, W = ref.shape
    ky, kx = np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij")
    radius = np.hypot(ky, kx)
    res = {"scan": scan, "accel": accel, "seed": seed, "foreground_fraction": float(fg.mean())}
    for name, img in imgs.items():
        err = img - ref
        spec = np.abs(np.fft.fft2(err)) ** 2 / err.size
        res[name] = {"psnr": M.mri_metrics(img, ref)["psnr"],
                     "mse_foreground": float(np.mean(err[fg] ** 2)), "mse_background": float(np.mean(err[~fg] ** 2)),
                     "error_energy_by_band": {f"{lo}-{hi}": float(spec[(radius >= lo) & (radius < hi)].sum())
                                              for lo, hi in ERROR_BANDS}}
    res["psnr_of_the_average"] = M.mri_metrics(0.5 * (imgs["sparse-dip"] + imgs["l1-wavelet"]), ref)["psnr"]
    return res


def build_error_bands(args):
    from ..io import write_json
    rows = [error_bands(args.out, args.scan, args.accel, s) for s in args.seeds]
    for r in rows:
        print(f"seed {r['seed']}: PSNR sparse-dip {r['sparse-dip']['psnr']:.2f}, l1 {r['l1-wavelet']['psnr']:.2f}, "
              f"average {r['psnr_of_the_average']:.2f}")
        for k in ("mse_foreground", "mse_background"):
            print(f"  {k:<16} sparse-dip {r['sparse-dip'][k]:9.3f}  l1 {r['l1-wavelet'][k]:9.3f}")
        for b in r["sparse-dip"]["error_energy_by_band"]:
            print(f"  band {b:<9} sparse-dip {r['sparse-dip']['error_energy_by_band'][b]:9.1f}  "
                  f"l1 {r['l1-wavelet']['error_energy_by_band'][b]:9.1f}")
    write_json(Path(args.json) if args.json else Path(args.out) / "error_bands.json", rows)


def compact_curves(out, only=None) -> dict:
    """The curve of every run under ``out/runs`` that logged one, small enough to commit beside a table:
    ``{run: {scan, accel, seed, key, step, psnr, reported, cpu_min}}`` (column lists). ``reported`` is the
    curve of the image a user gets (``key``: the data-consistent averaged PSNR when logged; runs from
    before the DC curve was logged report the raw output), ``psnr`` the raw iterate's."""
    curves = {}
    for f in _run_files(out, only):
        r = json.loads(f.read_text())
        h = [x for x in r.get("history") or [] if "psnr" in x]
        if not h:
            continue
        key = next((k for k in ("average_dc_psnr", "dc_psnr", "average_psnr") if k in h[-1]), "psnr")
        curves[f.parent.name] = {"scan": r["scan"], "accel": r["accel"], "seed": r["seed"], "key": key,
                                 "step": [x["step"] for x in h],
                                 "psnr": [round(float(x["psnr"]), 4) for x in h],
                                 "reported": [round(float(x.get(key, x["psnr"])), 4) for x in h],
                                 "cpu_min": [round(x.get("cpu_s", 0) / 60, 4) for x in h]}
    return curves


def _plots(out, rows, curves):
    """``curves_<scan>_<accel>x.png`` in ``out``: the seed-0 curves of :func:`compact_curves` against steps
    and CPU minutes, the classical baselines of ``rows`` (a table) as dashed lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..io import atomic_path
    scen = sorted({(c["scan"], c["accel"]) for c in curves.values()})
    for scan, accel in scen:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for name, c in curves.items():
            if (c["scan"], c["accel"]) != (scan, accel) or c["seed"] != 0:
                continue
            lab = name.split("_s0_", 1)[-1]
            # the reported image: data-consistent and averaged when logged; the raw iterate dotted when it differs
            line, = ax.plot(c["step"], c["reported"], label=lab, lw=1)
            ax2.plot(c["cpu_min"], c["reported"], label=lab, lw=1, color=line.get_color())
            if c["key"] != "psnr":
                ax.plot(c["step"], c["psnr"], lw=0.5, ls=":", color=line.get_color())
        for r in rows:
            if (r["scan"], r["accel"], r["seed"]) == (scan, accel, 0) and r["method"] in CLASSICAL_METHODS \
                    and r.get("variant") == "default":
                for a in (ax, ax2):
                    a.axhline(r["final_psnr"], ls="--", lw=0.8, color={"l1-wavelet": "k", "sense": "grey",
                                                                     "zero-filled": "r"}[r["method"]])
                ax2.annotate(r["method"], (0, r["final_psnr"]), fontsize=7)
        ax.set_xlabel("step")
        ax2.set_xlabel("CPU minutes (1 thread, incl. mask learning)")
        for a in (ax, ax2):
            a.set_ylabel("PSNR (dB)")
            a.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.suptitle(f"{scan} {accel}x seed 0 (dashed: L1-wavelet black, SENSE grey, zero-filled red)", fontsize=9)
        fig.tight_layout()
        with atomic_path(Path(out) / f"curves_{scan}_{accel}x.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)


def build_plots(args):
    """``curves_*.png`` again from a committed ``table.json`` and ``curves.json`` (no run folders)."""
    from ..errors import UserError
    loaded = []
    for flag, path in (("--table", args.table), ("--curves", args.curves)):
        try:
            loaded.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise UserError(f"{flag}: {path} is not a readable JSON file ({e})") from None
    rows, curves = loaded
    _plots(Path(args.out), rows, curves)
    print(f"{len(curves)} curves -> {args.out}/curves_*.png")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baselines")
    b.add_argument("--out", required=True)
    b.add_argument("--scans", nargs="+", default=list(SCANS), choices=list(SCANS))
    add_renamed(b, "--accel", "--accels", dest="accels", nargs="+", type=int, default=[4, 8],
                help="accelerations, one or more (default 4 8)")
    b.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    b.add_argument("--no-espirit-variants", dest="espirit_variants", action="store_false")
    n = sub.add_parser("net")
    n.add_argument("--out", required=True)
    n.add_argument("--scan", required=True, choices=list(SCANS))
    n.add_argument("--accel", type=int, required=True, choices=(4, 8))
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--method", required=True, choices=EXPERIMENT_NETWORK_METHODS)
    n.add_argument("--preset", default="cpu")
    n.add_argument("--set", nargs="*", help="preset overrides KEY=JSON")
    n.add_argument("--tag", default="")
    n.add_argument("--threads", type=int, default=1)
    n.add_argument("--verbose", action="store_true", help="print each logged row (step, DC PSNR, clocks)")
    n.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    n.add_argument("--log-every", type=int, default=50)
    n.add_argument("--overwrite", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--out", required=True)
    t.add_argument("--only", nargs="+", default=None, help="glob patterns on run folder names (default: all)")
    e = sub.add_parser("ensemble", help="score the average of several runs' outputs on one problem")
    e.add_argument("--out", required=True)
    e.add_argument("--runs", nargs="+", required=True, help="run folder names under OUT/runs")
    pl = sub.add_parser("plots", help="curves_*.png from a committed table.json and curves.json")
    pl.add_argument("--table", required=True, help="table.json (the baselines' dashed lines)")
    pl.add_argument("--curves", required=True, help="curves.json written by table")
    pl.add_argument("--out", required=True, help="folder for curves_<scan>_<accel>x.png")
    s = sub.add_parser("summary", help="table.json and summary.md from committed table.json files")
    s.add_argument("--tables", nargs="+", required=True, help="table.json files; a run in a later one wins")
    s.add_argument("--relabel", default=None, help="JSON list of variant relabel rules (see merge_tables)")
    s.add_argument("--out", required=True, help="folder for table.json and summary.md")
    eb = sub.add_parser("error-bands", help="where Sparse-DIP and L1-wavelet err (foreground/background, "
                                            "frequency bands)")
    eb.add_argument("--out", required=True, help="the OUT of the net and baselines runs")
    eb.add_argument("--scan", default="brain8", choices=list(SCANS))
    eb.add_argument("--accel", type=int, default=4, choices=(4, 8))
    eb.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    eb.add_argument("--json", default=None, help="where to write the result (default OUT/error_bands.json)")
    a = ap.parse_args(argv)
    from ..runtime import configure_runtime
    configure_runtime(getattr(a, "threads", 1))
    from ..errors import USER_ERRORS
    try:
        {"baselines": run_baselines, "net": run_network, "table": build_table, "ensemble": build_ensemble,
         "summary": build_summary, "error-bands": build_error_bands,
         "plots": build_plots}[a.cmd](a)
    except USER_ERRORS as e:   # one clear line, as the mri-oes CLI reports them (cli.main)
        raise SystemExit(f"mri_quality {a.cmd}: error: {' '.join(str(e).split())}") from None


if __name__ == "__main__":
    main()
