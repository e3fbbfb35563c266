"""Time to quality: CPU-seconds until recon's default Sparse-DIP reaches L1-wavelet's PSNR on a slice.

For each selected scan × acceleration × stopping rule, one row (seed 0 unless ``--seed``):

* L1-wavelet with recon's defaults on the same slice (λ, ESPIRiT maps as ``recon``): PSNR / SSIM and
  its CPU-seconds;
* ``sparse-dip`` at ``recon``'s ``cpu`` preset at that acceleration (the same route as ``recon``:
  :meth:`mri_oes.recipe.Recipe.from_preset` → :func:`mri_oes.runner.run`, via
  :func:`mri_oes.experiments.mri_quality.network_recon`, which adds the data-consistent curve and the
  CPU clock to every logged row), with ``--stop-rule`` (and any ``--set key=value`` preset override);
* CPU-seconds (``time.process_time``, mask learning included, ESPIRiT excluded) until the
  data-consistent image (the averaged iterates projected onto the measured k-space: what ``recon``
  returns) first reaches L1-wavelet's PSNR, CPU-seconds to the end, final PSNR / SSIM, ``stopped_at``,
  the training CPU-seconds per step (after mask learning), density, sparsity, versions and the commit.

``--pruning-mask FILE`` (recon's flag) trains on a saved mask instead of learning one (e.g. the scan's own
mask from an earlier cold run: training levers measured without the mask learning; the mask's generator is
used). The levers of ``results/2026-12-05-levers-8x/``:

    python benchmarks/time_to_quality.py --scan brain8b --accel 8 --stop-rule none --tag ownmask-s1500-cos \
        --pruning-mask RUN/mask.safetensors --set steps=1500 lr_final=0.001 --out results/2026-12-05-levers-8x

Resumable per row: the rows live in ``OUT/rows.json`` (rewritten atomically after each row), a row already
there is skipped; each row's logged curve goes to ``OUT/curves/<row>.json``. Resumable within a row: each
row's network run has a run folder ``WORK/<row>`` (``--work``, default ``OUT/runs``; the runner's, as
``recon --out``: ``weights.safetensors``, ``mask.safetensors``, ``recon.npy``, ``metrics.json``: a few MB
a row; give ``--work`` outside a results folder to keep them out of it), staged in ``WORK/.<row>.partial``
with a checkpoint every ``--checkpoint-every`` steps (the recipe's 500), so the same command after a kill
continues the row from its last checkpoint (L1-wavelet and the mask learning run again; mask learning
killed midway resumes from its own checkpoint). A changed setting (``--set``, ``--log-every``,
``--pruning-mask``, ``--checkpoint-every``, ...) under the same row name is refused with the differing
keys, never resumed from the other run: give another ``--tag`` or ``--work``. A resumed row keeps the
curve rows logged before its checkpoint (with their CPU-seconds) and continues the CPU clock from them:
the first row after the checkpoint is placed after the last kept row by the kept rows' mean training CPU-s
per step times the steps between them. A resumed row's CPU-seconds are thus those of the first attempt up
to the checkpoint plus the replay-free continuation only (the replayed problem set-up, L1-wavelet and mask
learning, and the steps between the checkpoint and the kill, are not counted); it records
``resumed_from_step`` (None: not resumed) and ``mask_resumed_from_step`` (mask learning resumed from its
checkpoint: the mask steps before it are missing from its CPU-seconds). ``total_cpu_s`` is the clock at
the final logged row (the output's; the run folder's files are written after it). ``OUT/table.md``
is rewritten and printed after every row. ``--simulate`` prints, for rows run without a rule, where
the ``image-change`` rule would have stopped for a grid of tolerances and patiences (the rule reads
only the logged ``image_change``, so a run without it shows where any setting of it stops, and the
data-consistent PSNR there). Use one torch thread (``--threads 1``, the default): CPU-seconds are
then robust to other processes sharing the machine; wall time is not.

    python benchmarks/time_to_quality.py --scan brain16 brain8b --accel 8 --stop-rule none image-change \\
        --out results/2026-12-05-time-to-quality
    python benchmarks/time_to_quality.py --out results/2026-12-05-time-to-quality --table-only --simulate
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("MRI_OES_SHARED", ROOT.parent / "shared")) / "data" / "mri"
SCANS = ("brain16", "brain8", "brain8b", "brain4", "phantom4")


def scan_file(name: str) -> Path:
    p = SHARED / f"{name}_full.h5"
    if not p.is_file():
        raise SystemExit(f"--scan {name}: {p} not found (set MRI_OES_SHARED to the shared folder)")
    return p


def parse_sets(pairs):
    out = {}
    for s in pairs or []:
        k, sep, v = s.partition("=")
        if not sep:
            raise SystemExit(f"--set {s!r}: expected KEY=VALUE")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def row_key(scan, accel, rule, seed, tag):
    return f"{scan}_{accel}x_s{seed}_{rule}" + (f"_{tag}" if tag else "")


def time_to(history, target, key="average_dc_psnr"):
    """(cpu_s, step) of the first logged row whose ``key`` reaches ``target`` (None if never)."""
    for h in history:
        v = h.get(key, h.get("dc_psnr"))
        if v is not None and target is not None and v >= target:
            return h.get("cpu_s"), h["step"]
    return None, None


def curve_evaluator(p, op=None):
    """PSNR/SSIM of the network output on ``op``'s map sets (default the problem's one set) and of its
    data-consistent image, for the curve only (the fit never reads it, core.fit)."""
    op = op or p.operator
    maps = op.maps.cpu().numpy()

    def metrics(x_hat, dc):
        img = p.unscale(x_hat, op)
        m = p.metrics(p.data_consistency(img, maps=maps) if dc else np.abs(op.combine(img)))
        return {k: m[k] for k in ("psnr", "ssim")}

    def evaluate(x_hat):
        return {**metrics(x_hat, False), **{f"dc_{k}": v for k, v in metrics(x_hat, True).items()}}
    return evaluate


def run_row(scan, accel, rule, seed, sets, log_every, out, key, verbose=True, mask_path=None, l1_run=True,
            work=None, checkpoint_every=None):
    """One row: L1-wavelet, then recon's sparse-dip on the same slice through the runner (the route of
    ``recon``: Recipe.from_preset -> runner.run), its logged rows carrying the
    data-consistent metrics and the CPU clock; the curve is rewritten to ``OUT/curves/<key>.partial.json``
    after every logged row (a killed row keeps its curve). ``work``: the folder of the row's run folder
    ``work/<key>`` (checkpointed: a rerun resumes it, see the module docstring; None: no run folder, no
    resume); ``checkpoint_every``: steps between its checkpoints (None: the recipe's)."""
    from mri_oes.errors import RunMismatch
    from mri_oes.io import write_json
    from mri_oes.rundir import is_complete
    from mri_oes.statefile import load_state
    from mri_oes.mri import presets
    from mri_oes.mri.baselines import run_baseline
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    from mri_oes.mri.volume import fixed_map_sets, network_operator
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run
    cfg = presets.for_accel(presets.get("cpu"), accel)
    cfg.update(sets)
    if rule is not None:
        cfg["stop_rule"] = rule
    run_dir = Path(work) / key if work is not None else None
    staged = run_dir.parent / f".{run_dir.name}.partial" if run_dir is not None else None
    if run_dir is not None and is_complete(run_dir):
        raise SystemExit(f"{key}: {run_dir} holds a finished run but {Path(out) / 'rows.json'} has no row for it; "
                         f"delete {run_dir} to run the row again")
    sl = load_slice(scan_file(scan), 0)
    esp = {k: v for k, v in presets.espirit_for(cfg, accel).items() if v is not None}
    p = build_problem(sl, accel, "equispaced", seed, espirit=esp or None)
    t = time.process_time()
    l1 = p.metrics(run_baseline(p, "l1-wavelet")) if l1_run else {"psnr": None, "ssim": None}
    l1_cpu = time.process_time() - t if l1_run else None

    given = {"mask_path": str(mask_path)} if mask_path else {}
    if checkpoint_every is not None:
        given["checkpoint_every"] = checkpoint_every
    rc = Recipe.from_preset(cfg, accel, method="sparse-dip", seed=seed, log_every=log_every, **given)
    op = network_operator(p, rc, fixed_map_sets(rc))   # recon's map sets (two where fold-over is found)
    evaluate = curve_evaluator(p, op)

    curve, partial = [], Path(out) / "curves" / f"{key}.partial.json"
    mask_ck = staged / "mask_checkpoint.safetensors" if staged is not None else None
    mask_resumed = load_state(mask_ck, None)["step"] if mask_ck is not None and mask_ck.is_file() else None
    clock = {"offset": 0.0, "first": True}
    t_start = time.process_time()

    def resume_clock(row):
        """At the first logged row of a run resumed from its checkpoint: the checkpoint's rows (logged
        before it, carrying the first attempt's clock) start the curve, and the clock continues from them."""
        ck = staged / "checkpoint.safetensors" if staged is not None else None
        if row["step"] == 0 or ck is None or not ck.is_file():
            return
        kept = [h for h in load_state(ck, None)["history"] if h["step"] < row["step"]]
        if not kept or kept[-1].get("cpu_s") is None:
            return
        span = kept[-1]["step"] - kept[0]["step"]
        per_step = (kept[-1]["cpu_s"] - kept[0]["cpu_s"]) / span if span > 0 else 0.0
        want = kept[-1]["cpu_s"] + per_step * (row["step"] - kept[-1]["step"])
        clock["offset"] = want - (time.process_time() - t_start)
        curve.extend({k: h.get(k) for k in CURVE_KEYS} for h in kept)
        if verbose:
            print(f"{key}: resumed at step {row['step']} ({len(kept)} logged rows kept, clock continues at "
                  f"{want:.0f} CPU-s)", flush=True)

    def cb(row):
        if clock["first"]:
            clock["first"] = False
            resume_clock(row)
        row["cpu_s"] = time.process_time() - t_start + clock["offset"]
        curve.append({k: row.get(k) for k in CURVE_KEYS})
        write_json(partial, curve)
        if verbose:
            print(f"{key} step {row['step']} dc_psnr {row.get('average_dc_psnr', row.get('dc_psnr')):.3f} "
                  f"change {row.get('image_change')} cpu {row['cpu_s']:.0f}s", flush=True)

    gp = p.as_problem({"kind": "mri", "task": "mri"}, evaluate=evaluate, operator=op)
    try:
        rec = run(gp, rc, run_dir, save_outputs=run_dir is not None, command="time-to-quality", callback=cb)
    except RunMismatch as e:
        raise SystemExit(f"{key}: {staged} holds this row's unfinished run with other settings (differs in: "
                         f"{', '.join(e.keys[:8])}); rerun with its settings to resume it, or give another "
                         f"--tag or --work (or delete that folder)") from None
    res = rec["_result"]
    total = curve[-1]["cpu_s"] if curve else time.process_time() - t_start + clock["offset"]
    hist = res.history
    fm = res.final_metrics
    to_l1, to_l1_step = time_to(hist, l1["psnr"])
    row = {"scan": scan, "accel": accel, "seed": seed, "stop_rule": rc.stop_rule,
           "stop_tol": rc.stop_tol, "stop_patience": rc.stop_patience,
           "set": sets, "steps_configured": rec["config"]["steps"], "mask_steps": rec["mask_steps"],
           "stopped_at": res.stopped_at, "steps_run": res.steps, "holdout_best_step": res.holdout_best_step,
           "holdout_fraction": rc.holdout_fraction if rc.stop_rule == "self-validation" else None,
           "discrepancy_tau": rc.discrepancy_tau if rc.stop_rule == "discrepancy" else None,
           "noise": rec.get("noise"),
           "density": rec["density"], "l1_psnr": l1["psnr"], "l1_ssim": l1["ssim"], "l1_cpu_s": l1_cpu,
           "time_to_l1_cpu_s": to_l1, "time_to_l1_step": to_l1_step,
           "mask_cpu_s": curve[0]["cpu_s"] if curve else None, "total_cpu_s": total,
           "final_psnr": fm.get("dc_psnr"), "final_ssim": fm.get("dc_ssim"),
           "final_network_psnr": fm.get("psnr"),
           "best_dc_psnr": max((h.get("average_dc_psnr", -1) for h in hist), default=None),
           "train_cpu_s_per_step": (curve[-1]["cpu_s"] - curve[0]["cpu_s"]) / max(curve[-1]["step"] - curve[0]["step"], 1)
           if len(curve) > 1 else None,
           "mask_path": rc.mask_path, "sparsity": rec.get("sparsity"), "generator": rec.get("generator"),
           "resumed_from_step": res.resumed_from, "mask_resumed_from_step": mask_resumed,
           "run_dir": str(run_dir) if run_dir is not None else None,
           "config": rec.get("config"), "versions": rec.get("versions")}
    return row, curve


CURVE_KEYS = ("step", "cpu_s", "average_dc_psnr", "dc_psnr", "average_psnr", "psnr", "image_change",
              "image_change_over", "data_loss", "holdout_loss", "discrepancy")


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(rows) -> str:
    lines = ["| scan | accel | stop rule | L1 PSNR | time to L1 (CPU-min) | steps run | end (CPU-min) | "
             "final PSNR / SSIM | best DC PSNR on the curve | train CPU-s / step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rule = r["stop_rule"] + ("" if r["stop_rule"] == "none" else
                                 f" (held out {r.get('holdout_fraction') or 0.2:g}, patience {r['stop_patience']}, "
                                 f"output of step {r.get('holdout_best_step')})"
                                 if r["stop_rule"] == "self-validation" else
                                 f" (tau {r.get('discrepancy_tau'):g})" if r["stop_rule"] == "discrepancy" else
                                 f" (tol {r['stop_tol']:g}, patience {r['stop_patience']})")
        if r.get("set"):
            rule += " " + " ".join(f"{k}={v}" for k, v in r["set"].items())
        if r.get("mask_path"):
            rule += f" mask={Path(r['mask_path']).parent.name}"
        to = r["time_to_l1_cpu_s"]
        lines.append(
            f"| {r['scan']} | {r['accel']}× | {rule} | {fmt(r['l1_psnr'], '.2f')} | "
            f"{fmt(None if to is None else to / 60, '.1f')} | {r['steps_run']} / {r['steps_configured']} | "
            f"{r['total_cpu_s'] / 60:.1f} | {fmt(r['final_psnr'], '.2f')} / {fmt(r['final_ssim'], '.3f')} | "
            f"{fmt(r['best_dc_psnr'], '.2f')} | {fmt(r.get('train_cpu_s_per_step'), '.3f')} |")
    return "\n".join(lines) + "\n"


def l1_reference(scan, accel, seed=0):
    """L1-wavelet's PSNR with recon's defaults on ``scan`` at ``accel`` (as :func:`run_row`)."""
    from mri_oes.mri import presets
    from mri_oes.mri.baselines import run_baseline
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    cfg = presets.for_accel(presets.get("cpu"), accel)
    esp = {k: v for k, v in presets.espirit_for(cfg, accel).items() if v is not None}
    p = build_problem(load_slice(scan_file(scan), 0), accel, "equispaced", seed, espirit=esp or None)
    return p.metrics(run_baseline(p, "l1-wavelet"))["psnr"]


def simulate(out, tols=(0.02, 0.05, 0.1, 0.2), patiences=(250, 500, 1000)) -> str:
    """Where the image-change rule would stop each logged curve (complete or ``.partial``), and the
    data-consistent PSNR there. Stopping only truncates a fit, so a curve shows where any rule setting
    stops up to its last step (a curve that a rule ended shows settings that stop no later than it).
    The ``discrepancy`` rule's stops are simulated by ``benchmarks/discrepancy_stop.py`` (it needs the
    per-line residuals that its ``--run`` curves log)."""
    from mri_oes.core import should_stop
    lines = ["| curve (last step) | L1 PSNR | time to L1 (CPU-min) | tol | patience | stops at step | CPU-min | "
             "DC PSNR there |", "|---|---|---|---|---|---|---|---|"]
    l1 = {}
    for f in sorted((Path(out) / "curves").glob("*.json")):
        curve = json.loads(f.read_text())
        name = f.name[:-len(".json")]
        scan, accel = name.split("_")[0], int(name.split("_")[1].rstrip("x"))
        if (scan, accel) not in l1:
            l1[scan, accel] = l1_reference(scan, accel)
        to, _ = time_to(curve, l1[scan, accel])
        for tol in tols:
            for pat in patiences:
                stop = None
                for i, h in enumerate(curve):
                    if should_stop(curve[:i + 1], h["step"], tol, pat):
                        stop = h
                        break
                lines.append(f"| {name} ({curve[-1]['step']}) | {l1[scan, accel]:.2f} | "
                             f"{fmt(None if to is None else to / 60, '.1f')} | {tol:g} | {pat} | "
                             f"{stop['step'] if stop else '— (beyond the curve)'} | "
                             f"{fmt(stop['cpu_s'] / 60 if stop else None, '.1f')} | "
                             f"{fmt(stop['average_dc_psnr'] if stop else None, '.2f')} |")
    return "\n".join(lines) + "\n"


def at_steps(out, steps, extra=()) -> str:
    """Each curve (``OUT/curves/*.json`` and the ``extra`` curve files) read at the given steps: the CPU-s
    and the data-consistent PSNR there, and the time to L1-wavelet (recon's defaults now). A run at a
    constant lr without a stop is, up to step N, the run of N steps (nothing in it depends on the step
    count), so its curve read at N is the N-step run; a curve with a decaying lr is not (marked). L1-wavelet's
    PSNR is the rows' (``--refresh-l1``: the code now) or, for a scan without a row, computed here."""
    rows = {}
    rf = Path(out) / "rows.json"
    if rf.is_file():
        rows = {r["key"]: r for r in json.loads(rf.read_text())["rows"]}
    lines = ["| curve | lr decay | mask CPU-s | train CPU-s / step | time to L1 CPU-s (step) | " +
             " | ".join(f"step {n}: CPU-s, DC PSNR" for n in steps) + " |",
             "|---|---|---|---|---|" + "---|" * len(steps)]
    l1 = {(r["scan"], r["accel"]): r["l1_psnr"] for r in rows.values() if r.get("l1_psnr") is not None}
    for f in sorted((Path(out) / "curves").glob("*.json")) + [Path(e) for e in extra]:
        name = f.name[:-len(".json")]
        curve = json.loads(f.read_text())
        scan, accel = name.split("_")[0], int(name.split("_")[1].rstrip("x"))
        if (scan, accel) not in l1:
            l1[scan, accel] = l1_reference(scan, accel)
        decay = (rows.get(name, {}).get("set") or {}).get("lr_final")
        to, to_step = time_to(curve, l1[scan, accel])
        per = (curve[-1]["cpu_s"] - curve[0]["cpu_s"]) / max(curve[-1]["step"] - curve[0]["step"], 1)
        cells = []
        for n in steps:
            h = next((h for h in curve if h["step"] == n), None)
            cells.append("—" if h is None else f"{h['cpu_s']:.0f}, {h['average_dc_psnr']:.2f}")
        lines.append(f"| {name}{' (partial)' if name.endswith('.partial') else ''} | "
                     f"{'cosine to ' + format(decay, 'g') if decay else 'none'} | {curve[0]['cpu_s']:.0f} | {per:.3f} | "
                     f"{fmt(to, '.0f')}" + ("" if to is None else f" ({to_step})") + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", nargs="+", choices=SCANS, default=["brain16"])
    ap.add_argument("--accel", nargs="+", type=int, choices=(4, 8), default=[8])
    ap.add_argument("--stop-rule", nargs="+", choices=("preset", "none", "image-change", "self-validation", "discrepancy"),
                    default=["preset"],
                    help="stopping rules to run (preset: the cpu preset's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="preset overrides (e.g. stop_tol=0.1 mask_steps=300); recorded in the row")
    ap.add_argument("--tag", default="", help="row name suffix for runs with --set")
    ap.add_argument("--skip-l1", action="store_true",
                    help="do not run L1-wavelet before the network (its PSNR and the time to it come from a later "
                         "--refresh-l1 call)")
    ap.add_argument("--pruning-mask", default=None, metavar="FILE",
                    help="train on this saved mask (mask.safetensors of an earlier run) instead of learning one")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=None, metavar="DIR",
                    help="the rows' run folders WORK/<row> (weights, mask, checkpoints: a killed row resumes from "
                         "its last checkpoint on a rerun of the same command); default OUT/runs")
    ap.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                    help="steps between a row's checkpoints (default: the recipe's, 500); part of the run's "
                         "identity: a resume needs the same value")
    ap.add_argument("--table-only", action="store_true", help="print the table of the rows so far")
    ap.add_argument("--refresh-l1", action="store_true",
                    help="recompute every row's L1-wavelet PSNR with the code now (recon's classical defaults "
                         "change independently of the network rows) and its time to L1 from the row's curve; "
                         "the value at run time is kept as l1_psnr_at_run")
    ap.add_argument("--simulate", action="store_true",
                    help="also print where the image-change rule would stop the rule-free runs")
    ap.add_argument("--at-steps", nargs="+", type=int, default=None, metavar="N",
                    help="also write OUT/at_steps.md: every curve read at these steps (a constant-lr curve read "
                         "at N is the N-step run)")
    ap.add_argument("--curve", nargs="*", default=[], metavar="FILE",
                    help="more curve files for --at-steps (e.g. the cold runs of another results folder)")
    args = ap.parse_args(argv)
    from mri_oes.io import write_json, atomic_path
    from mri_oes.runtime import configure_runtime
    configure_runtime(args.threads)
    out = Path(args.out)
    rows_file = out / "rows.json"
    rows = json.loads(rows_file.read_text())["rows"] if rows_file.is_file() else []
    sets = parse_sets(args.set)
    if args.pruning_mask and not Path(args.pruning_mask).is_file():
        raise SystemExit(f"--pruning-mask {args.pruning_mask}: not a file")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise SystemExit(f"--checkpoint-every {args.checkpoint_every}: must be >= 1")
    work = Path(args.work) if args.work else out / "runs"
    import subprocess
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    if not args.table_only:
        from mri_oes.mri import presets
        for scan in args.scan:
            for accel in args.accel:
                for rule in args.stop_rule:
                    rname = presets.get("cpu").get("stop_rule", "none") if rule == "preset" else rule
                    key = row_key(scan, accel, rname, args.seed, args.tag)
                    if any(r["key"] == key for r in rows):
                        print(f"{key}: done", flush=True)
                        continue
                    print(f"{key}: running", flush=True)
                    row, curve = run_row(scan, accel, None if rule == "preset" else rule, args.seed, sets,
                                         args.log_every, out, key, mask_path=args.pruning_mask,
                                         l1_run=not args.skip_l1, work=work, checkpoint_every=args.checkpoint_every)
                    row["key"] = key
                    row["commit"] = commit
                    write_json(out / "curves" / f"{key}.json", curve)
                    (out / "curves" / f"{key}.partial.json").unlink(missing_ok=True)
                    rows = json.loads(rows_file.read_text())["rows"] if rows_file.is_file() else []
                    rows = [r for r in rows if r["key"] != key] + [row]   # another process may have added rows
                    write_json(rows_file, {"rows": rows})
                    print(f"{key}: final {row['final_psnr']:.2f} (L1 {fmt(row['l1_psnr'], '.2f')}), time to L1 "
                          f"{row['time_to_l1_cpu_s']} CPU-s, end {row['total_cpu_s']:.0f} CPU-s", flush=True)
                    with atomic_path(out / "table.md") as tmp:
                        tmp.write_text(table(rows))
    if args.refresh_l1 and rows:
        l1 = {}
        for r in rows:
            if (r["scan"], r["accel"]) not in l1:
                l1[r["scan"], r["accel"]] = l1_reference(r["scan"], r["accel"], r["seed"])
            r.setdefault("l1_psnr_at_run", r["l1_psnr"])
            r["l1_psnr"], r["l1_commit"] = l1[r["scan"], r["accel"]], commit
            curve = json.loads((out / "curves" / f"{r['key']}.json").read_text())
            r["time_to_l1_cpu_s"], r["time_to_l1_step"] = time_to(curve, r["l1_psnr"])
        write_json(rows_file, {"rows": rows})
    rows.sort(key=lambda r: (r["scan"], r["accel"], r["key"]))
    text = table(rows)
    if rows:
        with atomic_path(out / "table.md") as tmp:
            tmp.write_text(text)
    print(text)
    if args.at_steps:
        text = at_steps(out, args.at_steps, args.curve)
        with atomic_path(out / "at_steps.md") as tmp:
            tmp.write_text(text)
        print(text)
    if args.simulate:
        text = simulate(out)
        with atomic_path(out / "stop_rule_settings.md") as tmp:
            tmp.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
