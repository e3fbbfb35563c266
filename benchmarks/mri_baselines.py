"""Classical baselines (zero-filled, SENSE, L1-wavelet) on the shared fastMRI scans.

    python benchmarks/mri_baselines.py [FILE] [--mask-type equispaced] [--seed 0] [--sweep] [--out results.json]
    python benchmarks/mri_baselines.py table [--scans brain8 brain8b brain4 brain16 phantom4] [--accels 4 8]
            [--seeds 0 1 2] [--bart-seeds 0] [--fold-over 0.7] [--scales 1e-4 2e4] [--jobs N] --out DIR/NAME
    python benchmarks/mri_baselines.py merge --inputs A.json B.json [--bart-from OLD.json] [--before OLD.json]
            --out DIR/NAME

The first form: one file at 4x/8x, the library defaults and (``--sweep``) a small λ sweep.

``table``: every scan x acceleration x seed (fastMRI equispaced masks, the toolkit's centre fractions)
at the library DEFAULTS (``run_baseline(problem, method)``: no λ, no ESPIRiT settings given), PSNR /
SSIM in the fastMRI convention (:mod:`mri_oes.mri.metrics`) with the maps and λ each run used. For the
seeds in ``--bart-seeds`` it adds ``bart pics -S -l1 -i 100`` with the SAME (toolkit) maps at BART's
best λ of a sweep (an oracle that reads the reference, a benchmark reference only; needs the ``bart``
command). ``--fold-over F`` adds a fold-over scan made from the first scan
(:func:`mri_oes.mri.problem.fold_over`: the coil images wrapped into ``F`` of the phase-encode FOV;
a scan named ``NAME-foldNN`` is the same with ``NN`` %);
``--scales`` reruns seed 0 of the first scan with the k-space multiplied by each factor and records
the largest relative change of the (rescaled) image. Writes ``NAME.json`` and ``NAME.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mri_oes.mri import baselines as B  # noqa: E402
from mri_oes.mri.data import load_slice  # noqa: E402
from mri_oes.mri.problem import build_problem  # noqa: E402

SCANS = ("brain8", "brain8b", "brain4", "brain16", "phantom4")
BART_LAMBDAS = (0.001, 0.003, 0.01, 0.03, 0.1)
METHODS = B.METHODS


def single(args):
    sl = load_slice(args.file, args.slice)
    rows = []
    for accel in (4, 8):
        t = time.perf_counter()
        p = build_problem(sl, accel, args.mask_type, args.seed)
        setup = time.perf_counter() - t
        runs = [("zero-filled", None), ("sense", None), ("l1-wavelet", None)]
        if args.sweep:
            runs += [("sense", lam) for lam in (0.0, 1e-3, 1e-2, 3e-2)] + \
                    [("l1-wavelet", lam) for lam in (1e-3, 3e-3, 1e-2, 3e-2)]
        for method, lam in runs:
            t = time.perf_counter()
            x = B.run_baseline(p, method, lamda=lam)
            m = p.metrics(x)
            used = lam if lam is not None else _lamda_used(p, method)
            row = {"accel": accel, "method": method, "lambda": used, "lambda_given": lam is not None,
                   "psnr": m["psnr"], "ssim": m["ssim"], "nmse": m["nmse"], "psnr_ls": m["psnr_ls"],
                   "time_s": time.perf_counter() - t, "espirit_s": setup, "espirit": p.info["espirit"]}
            rows.append(row)
            print(f"{accel}x {method:12s} λ={used!s:8s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  "
                  f"NMSE {m['nmse']:.4f}  {row['time_s']:.1f}s (ESPIRiT {setup:.1f}s)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, default=str))


# ------------------------------------------------------------------------------------------ table
def _lamda_used(p, method):
    """The λ a default run used: the per-scan choice recorded in ``problem.info`` or the fixed constant."""
    choice = (p.info.get("lamda_choice") or {}).get(method)
    if choice is not None:
        return choice["lamda"]
    return {"sense": getattr(B, "SENSE_LAMBDA", None), "l1-wavelet": getattr(B, "L1_LAMBDA", None)}.get(method)


def _slice(scan, fold):
    from mri_oes import datasets
    sl = load_slice(datasets.path(f"mri/{scan}_full.h5"), 0)
    if fold:
        from mri_oes.mri.problem import fold_over
        sl = fold_over(sl, fold)
    return sl


def _bart_best(p, tmp, env):
    from bart_compare import bart, read_cfl, to_bart_kspace, write_cfl
    write_cfl(os.path.join(tmp, "ksp"), to_bart_kspace(p.y.numpy()))
    write_cfl(os.path.join(tmp, "maps"), to_bart_kspace(p.maps))
    sweep = {}
    for lam in BART_LAMBDAS:
        dt = bart("pics", "-S", "-l1", "-r", lam, "-i", 100, os.path.join(tmp, "ksp"), os.path.join(tmp, "maps"),
                  os.path.join(tmp, "rec"), env=env)
        m = p.metrics(p.unscale(__import__("numpy").squeeze(read_cfl(os.path.join(tmp, "rec")))))
        sweep[lam] = {"psnr": float(m["psnr"]), "ssim": float(m["ssim"]), "time_s": round(dt, 3)}
    lam, best = max(sweep.items(), key=lambda kv: kv[1]["psnr"])
    return lam, best, sweep


def _case(scan, label, accel, seed, fold, bart_on, tmp, env, scale=1.0):
    import numpy as np
    sl = _slice(scan, fold)
    if scale != 1.0:
        sl.kspace = (sl.kspace * scale).astype(np.complex64)
        if sl.reference is not None:
            sl.reference = (sl.reference * scale).astype(np.float32)
    base = {"scan": label, "accel": accel, "seed": seed, "scale": scale}
    t = time.perf_counter()
    try:
        p = build_problem(sl, accel, "equispaced", seed)
    except Exception as e:   # a refused scan is a result too (the message is what a user sees)
        return [{**base, "method": m, "refused": str(e)} for m in METHODS], None
    t_maps = time.perf_counter() - t
    rows, images = [], {}
    for method in METHODS:
        t = time.perf_counter()
        x = B.run_baseline(p, method)
        dt = time.perf_counter() - t
        m = p.metrics(x)
        images[method] = x
        choice = (p.info.get("lamda_choice") or {}).get(method)
        esp = {k: v for k, v in p.info["espirit"].items() if k not in ("cache_hit", "cache_key")}
        rows.append({**base, "method": method, "psnr": float(m["psnr"]), "ssim": float(m["ssim"]),
                     "lambda": _lamda_used(p, method), "lambda_rule": None if choice is None else choice.get("rule"),
                     "rule_s": None if choice is None else choice.get("time_s"), "time_s": round(dt, 3),
                     "maps_s": round(t_maps, 3), "espirit": esp,
                     "mask_acceleration": p.info["mask"]["acceleration"]})
    if bart_on:
        lam, best, sweep = _bart_best(p, tmp, env)
        rows.append({**base, "method": "bart pics (best λ)", "psnr": best["psnr"], "ssim": best["ssim"],
                     "lambda": lam, "lambda_rule": "oracle (best PSNR of the sweep)", "time_s": best["time_s"],
                     "espirit": esp, "sweep": {str(k): v for k, v in sweep.items()}})
    return rows, (p, images)


def _case_rows(case, env):
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        return _case(*case[:5], case[5], tmp, env)[0]


def merge(args):
    """Rows of several table JSONs in one table; ``--bart-from``: BART rows of an earlier table for the
    (scan, accel, seed) cases that have none, when that table's ESPIRiT maps were calibrated with the
    same settings (the BART column uses the toolkit's first map set, so it does not change otherwise)."""
    parts = [json.loads(Path(f).read_text()) for f in args.inputs]
    seen, rows = set(), []
    for r in (r for p in parts for r in p["rows"]):   # first occurrence of a case wins
        k = (r["scan"], r["accel"], r["seed"], r["method"], r.get("scale", 1.0))
        if k not in seen:
            seen.add(k)
            rows.append(r)
    scale_rows = [r for p in parts for r in p.get("scale_rows", [])]
    have = {(r["scan"], r["accel"], r["seed"]) for r in rows if r["method"].startswith("bart")}
    borrowed = []
    for f in args.bart_from or []:
        old = json.loads(Path(f).read_text())["rows"]
        for r in old:
            k = (r["scan"], r["accel"], r["seed"])
            if not r["method"].startswith("bart") or k in have or r.get("refused"):
                continue
            mine = [q for q in rows if (q["scan"], q["accel"], q["seed"]) == k and q.get("espirit")]
            same = mine and all(mine[0]["espirit"].get(x) == r["espirit"].get(x)
                                for x in ("calib_width", "kernel_width", "thresh", "crop", "acs_width"))
            if same:
                rows.append({**r, "borrowed_from": str(f)})
                borrowed.append(k)
                have.add(k)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"benchmark": "mri_baselines table", "date": time.strftime("%Y-%m-%d"), "commit": commit,
              "command": "python benchmarks/mri_baselines.py " + " ".join(sys.argv[1:]),
              "inputs": {f: {k: p.get(k) for k in ("command", "commit", "config", "wall_s", "host")}
                         for f, p in zip(args.inputs, parts)},
              "bart_borrowed": [list(k) for k in borrowed], "rows": rows, "scale_rows": scale_rows,
              "checks_failed": checks(rows)}
    before_rows = None
    if args.before:   # the before-table on the same (scan, accel, seed) cases only: same seeds in every mean
        cases = {(r["scan"], r["accel"], r["seed"]) for r in rows}
        before_rows = [r for r in json.loads(Path(args.before).read_text())["rows"]
                       if (r["scan"], r["accel"], r["seed"]) in cases]
        result["before"] = {"file": str(args.before), "checks_failed_same_cases": checks(before_rows)}
    _write(Path(args.out), result, rows, scale_rows)
    if args.before:
        md = before_after_md(before_rows, rows)
        out = Path(args.out).with_name(Path(args.out).name + "_vs_before.md")
        tmp = out.with_suffix(".md.tmp")
        fb, fa = result["before"]["checks_failed_same_cases"], result["checks_failed"]
        tmp.write_text(f"# Before ({args.before}) → after ({args.out}.json)\n\nMean PSNR dB / SSIM over the seeds "
                       "of the after-table (the before-table restricted to the same scan x acceleration x seed "
                       "cases; fastMRI metrics); BART pics seed 0 at its best λ (oracle).\n\n" + md +
                       f"\n\n## Failed checks on these cases: {len(fb)} before → {len(fa)} after\n\nBefore:\n\n" +
                       "\n".join(f"* {c}" for c in fb) + "\n\nAfter:\n\n" +
                       ("\n".join(f"* {c}" for c in fa) or "* all pass") + "\n")
        os.replace(tmp, out)
        print(md)


def before_after_md(before_rows, after_rows):
    """Mean PSNR / SSIM per scan x accel x method, ``before → after`` (seeds each table has)."""
    import numpy as np

    def cell(rows, scan, accel, m):
        rs = [r for r in rows if r["scan"] == scan and r["accel"] == accel and r["method"] == m
              and r.get("scale", 1.0) == 1.0]
        if not rs:
            return "—"
        ok = [r for r in rs if not r.get("refused")]
        if not ok:
            return "refused"
        txt = f"{np.mean([r['psnr'] for r in ok]):.2f} / {np.mean([r['ssim'] for r in ok]):.3f}"
        return txt + (f" ({len(ok)} of {len(rs)} seeds; others refused)" if len(ok) < len(rs) else "")

    def lam(rows, scan, accel, m):
        rs = sorted((r for r in rows if r["scan"] == scan and r["accel"] == accel and r["method"] == m
                     and not r.get("refused") and r.get("scale", 1.0) == 1.0), key=lambda r: r["seed"])
        return ",".join(str(r.get("lambda")) for r in rs) or "—"

    def maps(rows, scan, accel):
        rs = sorted((r for r in rows if r["scan"] == scan and r["accel"] == accel and r["method"] == "l1-wavelet"
                     and not r.get("refused") and r.get("scale", 1.0) == 1.0), key=lambda r: r["seed"])
        out = []
        for r in rs:
            e = r.get("espirit") or {}
            shape = "x".join(map(str, e.get("calib_shape") or [e.get("calib_width")] * 2))
            free = (e.get("maps_free") or {}).get("chosen") == "maps-free"
            out.append(f"{shape}/{e.get('map_sets', 1)}" + ("/free" if free else ""))
        return ",".join(out) or "—"

    keys = list(dict.fromkeys((r["scan"], r["accel"]) for r in after_rows if r.get("scale", 1.0) == 1.0))
    cols = list(METHODS) + ["bart pics (best λ)"]
    out = ["| scan | accel | " + " | ".join(f"{c} before → after" for c in cols) +
           " | λ SENSE after (seeds) | λ L1 after (seeds) | ESPIRiT calib / map sets[/free: maps-free chosen] after (seeds) |",
           "|---|---|" + "---|" * (len(cols) + 3)]
    for scan, accel in keys:
        cells = [f"{cell(before_rows, scan, accel, c)} → {cell(after_rows, scan, accel, c)}" for c in cols]
        out.append(f"| {scan} | {accel}x | " + " | ".join(cells) + f" | {lam(after_rows, scan, accel, 'sense')} | "
                   f"{lam(after_rows, scan, accel, 'l1-wavelet')} | {maps(after_rows, scan, accel)} |")
    return "\n".join(out)


def _fmt(r):
    if r is None:
        return "—"
    if r.get("refused"):
        return "refused"
    return f"{r['psnr']:.2f} / {r['ssim']:.3f}"


def table_md(rows):
    """Mean over seeds per scan x accel x method (PSNR / SSIM), with the λ used (seed 0)."""
    import numpy as np
    keys = []
    for r in rows:
        k = (r["scan"], r["accel"])
        if r.get("scale", 1.0) == 1.0 and k not in keys:
            keys.append(k)
    cols = list(METHODS) + ["bart pics (best λ)"]
    out = ["| scan | accel | " + " | ".join(cols) + " | λ SENSE / L1 (seed 0) | maps (seed 0) | seeds |",
           "|---|---|" + "---|" * len(cols) + "---|---|---|"]
    for scan, accel in keys:
        cells, lam, maps, seeds = [], {}, "", set()
        for c in cols:
            rs = [r for r in rows if r["scan"] == scan and r["accel"] == accel and r["method"] == c
                  and r.get("scale", 1.0) == 1.0]
            if not rs:
                cells.append("—")
                continue
            if any(r.get("refused") for r in rs):
                cells.append("refused")
                continue
            seeds |= {r["seed"] for r in rs}
            cells.append(f"{np.mean([r['psnr'] for r in rs]):.2f} / {np.mean([r['ssim'] for r in rs]):.3f}")
            r0 = min(rs, key=lambda r: r["seed"])
            lam[c] = r0.get("lambda")
            e = r0.get("espirit") or {}
            if e and not maps:
                maps = (f"calib {e.get('calib_shape', e.get('calib_width'))}, kernel "
                        f"{e.get('kernel_shape', e.get('kernel_width'))}, thresh {e.get('thresh')}, crop {e.get('crop')}"
                        f", ACS {e.get('acs_width')}")
        out.append(f"| {scan} | {accel}x | " + " | ".join(cells) +
                   f" | {lam.get('sense', '—')} / {lam.get('l1-wavelet', '—')} | {maps} | {len(seeds)} |")
    return "\n".join(out)


def map_sets_md(rows):
    """Per scan x accel: the fold-over statistic of each seed and the map sets it chose."""
    by = {}
    for r in rows:
        if r["method"] != "l1-wavelet" or r.get("refused") or r.get("scale", 1.0) != 1.0:
            continue
        soft = (r.get("espirit") or {}).get("soft_sense") or {}
        free = (r.get("espirit") or {}).get("maps_free") or {}
        err = free.get("holdout_error") or {}
        by.setdefault((r["scan"], r["accel"]), []).append(
            (r["seed"], soft.get("overlap_fraction"), (r.get("espirit") or {}).get("map_sets", 1),
             soft.get("fraction_threshold"), free.get("chosen", "—"),
             f"{err['maps']:.3f} / {err['maps-free']:.3f}" if err else "—"))
    out = ["| scan | accel | overlap fraction (seeds) | map sets (seeds) | coil operator (seeds) | "
           "held-out error maps / maps-free (seeds) |", "|---|---|---|---|---|---|"]
    for (scan, accel), v in by.items():
        v.sort()
        out.append(f"| {scan} | {accel}x | {', '.join('—' if o is None else f'{o:.4f}' for _, o, *_ in v)} | "
                   f"{', '.join(str(q[2]) for q in v)} | {', '.join(q[4] for q in v)} | "
                   f"{'; '.join(q[5] for q in v)} |")
    thr = next((q[3] for v in by.values() for q in v if q[3] is not None), None)
    return "\n".join(out) + (f"\n\nTwo sets when the overlap fraction is >= {thr:g}; maps-free (SPIRiT coil images) "
                             "when its held-out error is the smaller." if thr is not None else "")


def checks(rows):
    """Per seed: SENSE and L1-wavelet >= zero-filled (PSNR and SSIM), L1-wavelet >= SENSE (PSNR)."""
    out = []
    by = {}
    for r in rows:
        if r.get("refused") or r.get("scale", 1.0) != 1.0:
            continue
        by.setdefault((r["scan"], r["accel"], r["seed"]), {})[r["method"]] = r
    for (scan, accel, seed), d in sorted(by.items()):
        zf = d.get("zero-filled")
        for m in ("sense", "l1-wavelet"):
            if zf and m in d:
                for q in ("psnr", "ssim"):
                    if d[m][q] < zf[q]:
                        out.append(f"{scan} {accel}x seed {seed}: {m} {q} {d[m][q]:.3f} < zero-filled {zf[q]:.3f}")
        if "sense" in d and "l1-wavelet" in d and d["l1-wavelet"]["psnr"] < d["sense"]["psnr"]:
            out.append(f"{scan} {accel}x seed {seed}: l1-wavelet PSNR {d['l1-wavelet']['psnr']:.2f} < "
                       f"sense {d['sense']['psnr']:.2f}")
    return out


def table(args):
    import numpy as np
    import torch
    torch.set_num_threads(1)
    bart_on = bool(args.bart_seeds) and shutil.which("bart") is not None
    if args.bart_seeds and not bart_on:
        print("bart not installed: the BART column is left out (apt-get install -y bart)", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    cases = []
    for s in args.scans:   # NAME-foldNN: the fold-over scan made from NAME with NN % of the FOV
        base, _, f = s.partition("-fold")
        cases.append((base, s, int(f) / 100 if f else None))
    if args.fold_over:
        cases.append((args.scans[0], f"{args.scans[0]}-fold{int(round(100 * args.fold_over))}", args.fold_over))
    rows, scale_rows = [], []
    t0 = time.perf_counter()
    todo = [(scan, label, accel, seed, fold, bart_on and seed in args.bart_seeds)
            for scan, label, fold in cases for accel in args.accels for seed in args.seeds]
    if args.jobs > 1:   # one case per process (1 thread each)
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs) as ex:
            for rs in ex.map(_case_rows, todo, [env] * len(todo)):
                rows += rs
                print(" | ".join(f"{r['scan']} {r['accel']}x s{r['seed']} {r['method']}: {_fmt(r)} "
                                 f"λ={r.get('lambda')}" for r in rs), flush=True)
        todo = []
    with tempfile.TemporaryDirectory() as tmp:
        for scan, label, accel, seed, fold, b_on in todo:
            rs, _ = _case(scan, label, accel, seed, fold, b_on, tmp, env)
            rows += rs
            print(" | ".join(f"{label} {accel}x s{seed} {r['method']}: {_fmt(r)} λ={r.get('lambda')}"
                             for r in rs), flush=True)
        for accel in args.accels if args.scales else ():
            _, (p1, im1) = _case(args.scans[0], args.scans[0], accel, 0, None, False, None, env)
            for s in args.scales:
                rs, res = _case(args.scans[0], args.scans[0], accel, 0, None, False, None, env, scale=s)
                if res is None:
                    scale_rows += rs
                    continue
                p2, im2 = res
                for r in rs:
                    a, b = im1[r["method"]], im2[r["method"]] / s
                    r["relative_change"] = float(np.linalg.norm(b - a) / np.linalg.norm(a))
                    scale_rows.append(r)
                    print(f"scale {s:g} {accel}x {r['method']}: λ {r['lambda']} rel. change {r['relative_change']:.2e}"
                          f" PSNR {r['psnr']:.2f}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    import platform
    result = {"benchmark": "mri_baselines table", "date": time.strftime("%Y-%m-%d"), "commit": commit,
              "command": "python benchmarks/mri_baselines.py " + " ".join(sys.argv[1:]),
              "config": {"scans": args.scans, "accels": args.accels, "seeds": args.seeds,
                         "bart_seeds": args.bart_seeds if bart_on else [], "fold_over": args.fold_over,
                         "mask": "fastmri equispaced", "threads": 1, "jobs": args.jobs, "bart_lambdas": BART_LAMBDAS,
                         "maps_free": B.MAPS_FREE},
              "host": f"{platform.node()} ({os.cpu_count()} cores)",
              "wall_s": round(time.perf_counter() - t0, 1), "rows": rows, "scale_rows": scale_rows,
              "checks_failed": checks(rows)}
    _write(Path(args.out), result, rows, scale_rows)


def _write(out, result, rows, scale_rows):
    commit = result["commit"]
    out.parent.mkdir(parents=True, exist_ok=True)
    from mri_oes.io import write_json
    write_json(out.with_suffix(".json"), result)
    md = [f"# Classical defaults (`{result['command']}`, commit {commit[:10]})", "",
          "Mean PSNR dB / SSIM over the seeds (fastMRI metrics); BART pics: seed 0, its best λ of "
          f"{list(BART_LAMBDAS)} (oracle), toolkit maps (first set).", "", table_md(rows), "",
          "## Checks (per seed: SENSE, L1 >= zero-filled in PSNR and SSIM; L1 >= SENSE in PSNR)", ""]
    md += [f"* {c}" for c in result["checks_failed"]] or ["* all pass"]
    md += ["", "## Map sets (soft-SENSE rule: ESPIRiT's second eigenvalue > threshold on a fraction of the object) "
           "and maps / maps-free (held-out measured lines)",
           "", map_sets_md(rows)]
    if scale_rows:
        md += ["", "## Raw-scale invariance (seed 0; image / factor vs the unscaled run)", ""]
        md += [f"* {r['scan']} {r['accel']}x x{r['scale']:g} {r['method']}: " +
               (f"refused ({r['refused']})" if r.get("refused") else
                f"λ {r['lambda']}, relative change {r['relative_change']:.1e}, PSNR {r['psnr']:.2f}")
               for r in scale_rows]
    tmp_md = out.with_suffix(".md.tmp")
    tmp_md.write_text("\n".join(md) + "\n")
    os.replace(tmp_md, out.with_suffix(".md"))
    print("\n".join(md))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["table"]:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--scans", nargs="+", default=list(SCANS))
        ap.add_argument("--accels", nargs="+", type=int, default=[4, 8])
        ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        ap.add_argument("--bart-seeds", nargs="*", type=int, default=[0])
        ap.add_argument("--fold-over", type=float, default=None)
        ap.add_argument("--scales", nargs="*", type=float, default=[])
        ap.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes (1 thread each)")
        ap.add_argument("--maps-free", choices=("off", "on", "holdout"), default=None,
                        help="SENSE / L1-wavelet operator: ESPIRiT maps (off), SPIRiT coil images (on), or per scan "
                             "by held-out lines (holdout); default: baselines.MAPS_FREE")
        ap.add_argument("--out", required=True)
        args = ap.parse_args(argv[1:])
        if args.maps_free is not None:   # set before the cases run (forked workers inherit it)
            B.MAPS_FREE = {"off": False, "on": True, "holdout": "holdout"}[args.maps_free]
        return table(args)
    if argv[:1] == ["merge"]:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--inputs", nargs="+", required=True)
        ap.add_argument("--bart-from", nargs="*", default=[])
        ap.add_argument("--before", default=None, help="a table JSON to compare with (writes OUT_vs_before.md)")
        ap.add_argument("--out", required=True)
        return merge(ap.parse_args(argv[1:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", default=str(ROOT.parent / "shared" / "data" / "mri" / "brain8_full.h5"))
    ap.add_argument("--slice", type=int, default=0)
    ap.add_argument("--mask-type", default="equispaced")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweep", action="store_true", help="also sweep λ (SENSE, L1-wavelet)")
    ap.add_argument("--out", default=None)
    single(ap.parse_args(argv))


if __name__ == "__main__":
    main()
