"""Reuse work across slices: what a reused OES mask and a warm start (``recon --init-from``) buy in CPU time.

One row per scan × acceleration × variant (seed 0, slice 0, equispaced mask, recon's ``cpu`` preset at
that acceleration through recon's route: ``Recipe.from_preset`` → ``warm_start`` →
:func:`mri_oes.runner.run`):

* ``cold`` — recon's defaults: ``sparse-dip`` with its own OES mask learned from the seeded random init;
* ``mask`` — the mask learned on the ``--source`` scan (as ``--pruning-mask``; no mask learning here),
  trained from this run's own seeded init;
* ``warm`` — the weights of the source's finished ``cold`` run (``--init-from``), with an OES mask
  learned on them here at the density the cold run's rule gives this scan (as ``--density``);
* ``both`` — ``--init-from`` the source's cold run alone: its weights and its mask (recon's behaviour);
* ``deep-decoder`` — the dense deep decoder at recon's defaults (``--method deep-decoder``).

``--stop-rule image-change`` adds the preset's ground-truth-free stop to every variant of the call (row
names gain ``_image-change``). Each row records the CPU-seconds (``time.process_time``, one torch
thread; generator set-up and mask learning included, ESPIRiT and the source run excluded) until the
data-consistent averaged image — what recon returns — first reaches L1-wavelet's PSNR on that slice (from
the logged rows, every ``--log-every`` steps; the data-consistent curve is the benchmark's own
``evaluate``, which the fit never reads), the CPU-seconds to the end, the final PSNR / SSIM, the best
data-consistent PSNR on the curve, density and sparsity. Run folders (with ``weights.safetensors`` and
``mask.safetensors``, the sources of later rows) go to ``--work``; rows to ``OUT/rows.json``, curves to
``OUT/curves/<row>.json``, the table to ``OUT/table.md``. A row already in ``rows.json`` is skipped.

    python benchmarks/reuse_across_slices.py --scan brain8b --variant cold --work /tmp/reuse \\
        --out results/2026-12-05-reuse-across-slices
    python benchmarks/reuse_across_slices.py --scan brain4 --source brain8b --variant both mask cold warm \\
        --work /tmp/reuse --out results/2026-12-05-reuse-across-slices
    python benchmarks/reuse_across_slices.py --out results/2026-12-05-reuse-across-slices --table-only --simulate
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from time_to_quality import CURVE_KEYS, SCANS, curve_evaluator, fmt, scan_file, time_to  # noqa: E402

VARIANTS = ("cold", "mask", "warm", "both", "deep-decoder")
NEEDS_SOURCE = ("mask", "warm", "both")


def row_key(scan, accel, variant, source, stop_rule, seed):
    key = f"{scan}_{accel}x_s{seed}_{variant}"
    if variant in NEEDS_SOURCE:
        key += f"_from-{source}"
    return key + ("" if stop_rule == "none" else f"_{stop_rule}")


def source_dir(work, source, accel, seed, suffix="") -> Path:
    d = Path(work) / (row_key(source, accel, "cold", None, "none", seed) + suffix)
    if not (d / "weights.safetensors").is_file():
        raise SystemExit(f"--source {source}: its cold run {d} is not finished (run --scan {source} --variant cold)")
    return d


def problem_of(scan, accel, seed):
    """recon's problem of slice 0 (ESPIRiT maps as recon) and L1-wavelet's metrics with recon's defaults."""
    from mri_oes.mri import presets
    from mri_oes.mri.baselines import run_baseline
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    cfg = presets.for_accel(presets.get("cpu"), accel)
    esp = {k: v for k, v in presets.espirit_for(cfg, accel).items() if v is not None}
    p = build_problem(load_slice(scan_file(scan), 0), accel, "equispaced", seed, espirit=esp or None)
    t = time.process_time()
    l1 = p.metrics(run_baseline(p, "l1-wavelet"))
    return p, cfg, {"psnr": l1["psnr"], "ssim": l1["ssim"], "cpu_s": time.process_time() - t}


def run_row(scan, accel, variant, source, stop_rule, seed, log_every, work, out, key, sets=None):
    from mri_oes.io import write_json
    from mri_oes.mri.volume import fixed_map_sets, network_operator, warm_start
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run
    p, cfg, l1 = problem_of(scan, accel, seed)
    cfg.update(sets or {})
    if stop_rule != "none":
        cfg["stop_rule"] = stop_rule
    given = {"seed": seed, "log_every": log_every}
    src = source_dir(work, source, accel, seed, "_set" if sets else "") if variant in NEEDS_SOURCE else None

    method = "deep-decoder" if variant == "deep-decoder" else "sparse-dip"
    if variant == "mask":
        given["mask_path"] = str(src / "mask.safetensors")
    if variant in ("warm", "both"):
        given["init_from"] = str(src)
    # recon's map sets (two where fold-over is found; a given mask or source run's weights fix them)
    given_rc = Recipe.from_preset(cfg, accel, method=method, **given)
    op = network_operator(p, given_rc, fixed_map_sets(given_rc, scan_file(scan), 0))
    gp = p.as_problem({"kind": "mri", "task": "mri", "scan": scan, "accel": accel},
                      evaluate=curve_evaluator(p, op), operator=op)
    if variant == "warm":   # the density the cold run's rule gives this scan: the same mask size as cold
        given["density"] = Recipe.from_preset(cfg, accel, method=method, seed=seed).for_problem(gp).density
    rc = warm_start(Recipe.from_preset(cfg, accel, method=method, **given), scan_file(scan), 0)

    curve, partial = [], Path(out) / "curves" / f"{key}.partial.json"
    t_start = time.process_time()

    def cb(row):
        row["cpu_s"] = time.process_time() - t_start
        curve.append({k: row.get(k) for k in CURVE_KEYS})
        write_json(partial, curve)
        print(f"{key} step {row['step']} dc_psnr {row.get('average_dc_psnr', row.get('dc_psnr')):.3f} "
              f"cpu {row['cpu_s']:.0f}s", flush=True)

    rec = run(gp, rc, Path(work) / key, command="reuse-across-slices", callback=cb)
    res = rec["_result"]
    total = time.process_time() - t_start
    fm, hist = res.final_metrics, res.history
    to_l1, to_l1_step = time_to(hist, l1["psnr"])
    src_rec = json.loads((src / "metrics.json").read_text()) if src is not None else None
    row = {"key": key, "scan": scan, "accel": accel, "seed": seed, "variant": variant, "method": method,
           "source": source if src is not None else None,
           "source_cpu_s": src_rec["time"].get("cpu_s") if src_rec else None,
           "init_from": rc.init_from, "mask_path": rc.mask_path,
           "stop_rule": rc.stop_rule, "stop_tol": rc.stop_tol, "stop_patience": rc.stop_patience,
           "steps_configured": rec["config"]["steps"], "mask_steps": rec["mask_steps"], "stopped_at": res.stopped_at,
           "steps_run": res.steps, "resumed_from": res.resumed_from,
           "density": rec["density"], "sparsity": rec["sparsity"], "map_sets": int(op.sets),
           "l1_psnr": l1["psnr"], "l1_ssim": l1["ssim"], "l1_cpu_s": l1["cpu_s"],
           "time_to_l1_cpu_s": to_l1, "time_to_l1_step": to_l1_step,
           "mask_cpu_s": curve[0]["cpu_s"] if curve else None, "total_cpu_s": total,
           "final_psnr": fm.get("dc_psnr"), "final_ssim": fm.get("dc_ssim"), "final_network_psnr": fm.get("psnr"),
           "best_dc_psnr": max((h.get("average_dc_psnr", -1) for h in hist), default=None),
           "set": sets or {}, "versions": rec["versions"], "device": rec["device"]}
    # the run's own record gains its CPU time (a later row's source cost)
    rec_file = Path(work) / key / "metrics.json"
    stored = json.loads(rec_file.read_text())
    stored["time"]["cpu_s"] = total
    write_json(rec_file, stored)
    return row, curve


def table(rows) -> str:
    lines = ["| scan | accel | variant | source | stop rule | density | mask steps | steps run | L1 PSNR | "
             "CPU-s to L1 (step) | CPU-s to end | final PSNR / SSIM | best DC PSNR |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        to = r["time_to_l1_cpu_s"]
        lines.append(
            f"| {r['scan']} | {r['accel']}× | {r['variant']} | {r['source'] or '—'} | {r['stop_rule']} | "
            f"{r['density']:.3f} | {r['mask_steps']} | {r['steps_run']} / {r['steps_configured']} | "
            f"{r['l1_psnr']:.2f} | {fmt(to, '.0f')}" + ("" if to is None else f" ({r['time_to_l1_step']})") +
            f" | {r['total_cpu_s']:.0f} | {fmt(r['final_psnr'], '.2f')} / {fmt(r['final_ssim'], '.3f')} | "
            f"{fmt(r['best_dc_psnr'], '.2f')} |")
    return "\n".join(lines) + "\n"


def simulate(rows, out, settings=((0.05, 500), (0.1, 500), (0.2, 500), (0.2, 250))) -> str:
    """Where the ``image-change`` rule would stop each row run without it, and the data-consistent PSNR
    there (the rule reads only the logged ``image_change``, so stopping only truncates the curve)."""
    from mri_oes.core import should_stop
    lines = ["| row | tol | patience | stops at step | CPU-s | DC PSNR there | final without the rule |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["stop_rule"] != "none":
            continue
        curve = json.loads((Path(out) / "curves" / f"{r['key']}.json").read_text())
        for tol, pat in settings:
            stop = next((h for i, h in enumerate(curve) if should_stop(curve[:i + 1], h["step"], tol, pat)), None)
            lines.append(f"| {r['key']} | {tol:g} | {pat} | {stop['step'] if stop else '— (no stop)'} | "
                         f"{fmt(stop['cpu_s'] if stop else None, '.0f')} | "
                         f"{fmt(stop['average_dc_psnr'] if stop else None, '.2f')} | {fmt(r['final_psnr'], '.2f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", nargs="+", choices=SCANS, default=["brain4"])
    ap.add_argument("--source", choices=SCANS, default=None, help="the scan whose cold run mask/warm/both reuse")
    ap.add_argument("--accel", type=int, choices=(4, 8), default=8)
    ap.add_argument("--variant", nargs="+", choices=VARIANTS, default=["cold"])
    ap.add_argument("--stop-rule", choices=("none", "image-change"), default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/reuse_across_slices", help="run folders (weights, masks)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="preset overrides (e.g. steps=20 mask_steps=5 for a quick check); the row name gains _set")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--simulate", action="store_true",
                    help="also write where the image-change rule would stop each row (OUT/stop_rule_settings.md)")
    args = ap.parse_args(argv)
    from time_to_quality import parse_sets
    sets = parse_sets(args.set)
    from mri_oes.io import atomic_path, write_json
    from mri_oes.runtime import configure_runtime
    configure_runtime(args.threads)
    out = Path(args.out)
    rows_file = out / "rows.json"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    if not args.table_only:
        for scan in args.scan:
            for variant in args.variant:
                if variant in NEEDS_SOURCE and not args.source:
                    raise SystemExit(f"--variant {variant} needs --source")
                key = row_key(scan, args.accel, variant, args.source, args.stop_rule, args.seed) + \
                    ("_set" if sets else "")
                rows = json.loads(rows_file.read_text())["rows"] if rows_file.is_file() else []
                if any(r["key"] == key for r in rows):
                    print(f"{key}: done", flush=True)
                    continue
                print(f"{key}: running", flush=True)
                row, curve = run_row(scan, args.accel, variant, args.source, args.stop_rule, args.seed,
                                     args.log_every, args.work, out, key, sets)
                row["commit"] = commit
                write_json(out / "curves" / f"{key}.json", curve)
                (out / "curves" / f"{key}.partial.json").unlink(missing_ok=True)
                rows = json.loads(rows_file.read_text())["rows"] if rows_file.is_file() else []
                rows = [r for r in rows if r["key"] != key] + [row]
                write_json(rows_file, {"rows": rows})
                print(f"{key}: final {row['final_psnr']:.2f} (L1 {row['l1_psnr']:.2f}), time to L1 "
                      f"{row['time_to_l1_cpu_s']} CPU-s, end {row['total_cpu_s']:.0f} CPU-s", flush=True)
                with atomic_path(out / "table.md") as tmp:
                    tmp.write_text(table(sorted(rows, key=lambda r: (r["accel"], r["scan"], r["key"]))))
    rows = json.loads(rows_file.read_text())["rows"] if rows_file.is_file() else []
    rows.sort(key=lambda r: (r["accel"], r["scan"], r["key"]))
    text = table(rows)
    if rows:
        with atomic_path(out / "table.md") as tmp:
            tmp.write_text(text)
    print(text)
    if args.simulate and rows:
        text = simulate(rows, out)
        with atomic_path(out / "stop_rule_settings.md") as tmp:
            tmp.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
