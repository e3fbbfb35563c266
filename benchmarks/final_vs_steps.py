"""Final quality against training length: does the last iterate degrade when training runs long?

The OES claim is that a sparse network's FINAL iterate does not degrade with training length (no early
stopping needed) while a dense DIP overfits. This benchmark measures, on real fully sampled scans
undersampled with fastMRI equispaced masks, the fastMRI-convention PSNR/SSIM of four images at every
logged step of ONE long run per (network, scan, acceleration):

* ``raw`` — the network's current iterate; ``avg`` — the running average of the iterates (the preset's
  ``output_average``, what ``recon`` returns before data consistency);
* ``raw_dc`` / ``avg_dc`` — each of those projected onto the measured k-space
  (:meth:`mri_oes.mri.problem.MRIProblem.data_consistency`; ``avg_dc`` is what ``recon`` returns).

One run gives the result at every shorter training length because the schedule does not depend on the
total step count: the learning rate is constant (the ``cpu`` preset's ``lr_final`` is ``None`` and it
has no ``lr_decay_start``; a preset override that sets a decay is refused), the bias-corrected running
average of :func:`mri_oes.core.fit` weighs iterate ``i`` of ``n`` the same way whatever the total, and
no stopping rule runs. The row at step ``s`` is the output after ``s`` updates.

Networks (``--net``), all from the ``cpu`` preset at that acceleration through the route of ``recon``
(:meth:`mri_oes.recipe.Recipe.from_preset` →
:func:`mri_oes.runner.run`):

* ``dip`` — dense DIP on the OES hourglass (the preset's depth cap and width);
* ``deep-decoder`` — the preset's dense deep decoder;
* ``sparse-dip`` — the same deep decoder with an OES mask at the preset's density rule;
* ``sparse-dip-hourglass`` — the hourglass with an OES mask at ``--hourglass-density`` (default 0.1,
  the OES paper's regime) and a per-layer floor of 0.005.

Scans (``--scan``): a fastMRI ``.h5`` file, ``brain16`` … (``<name>`` =
``$MRI_OES_SHARED/data/mri/<name>_full.h5``), or ``<name>-c<N>``: the central N×N of that scan's fully sampled k-space written as a fastMRI file into
``--data-dir`` (a lower-resolution acquisition of the full field of view; the reference is the RSS of
the cropped k-space).

Each run's curve is ``OUT/curves/<scan>_<accel>x_<net>.json``, rewritten atomically after every logged
row (a killed run keeps its rows; ``complete`` is false until the run ends); the network state is
checkpointed under ``--work`` so that the same command resumes a killed run, and a complete curve is
skipped. CPU-seconds are ``time.process_time`` of the process (mask learning included, ESPIRiT not);
use one torch thread.

    python benchmarks/final_vs_steps.py --scan brain16 --accel 4 --net dip --max-steps 5000 \\
        --out results/2026-12-05-final-vs-steps
    python benchmarks/final_vs_steps.py --table --out results/2026-12-05-final-vs-steps
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))   # time_to_quality's curve evaluator

SHARED = Path(os.environ.get("MRI_OES_SHARED", ROOT.parent / "shared")) / "data" / "mri"
NETS = ("dip", "deep-decoder", "sparse-dip", "sparse-dip-hourglass")
KINDS = ("raw", "avg", "raw_dc", "avg_dc")
#: the training lengths the table reports (those up to a run's last step)
TABLE_STEPS = (250, 500, 1000, 2000, 3000, 5000, 10000, 20000, 40000, 100000)
NET_LABEL = {"dip": "dense DIP (hourglass)", "deep-decoder": "dense deep decoder",
             "sparse-dip": "Sparse-DIP (deep decoder)", "sparse-dip-hourglass": "Sparse-DIP (hourglass)"}


# ------------------------------------------------------------------------------------------- data
def scan_file(scan: str, data_dir) -> Path:
    """The fastMRI file of ``--scan`` (writing the centre-cropped version on first use)."""
    if scan.endswith(".h5"):
        if not Path(scan).is_file():
            raise SystemExit(f"--scan {scan}: file not found")
        return Path(scan)
    m = re.fullmatch(r"([A-Za-z0-9_]+?)(?:-c(\d+))?", scan)
    if not m:
        raise SystemExit(f"--scan {scan!r}: expected NAME, NAME-cN (e.g. brain8b-c96) or a fastMRI .h5 file")
    name, n = m.group(1), m.group(2)
    src = SHARED / f"{name}_full.h5"
    if not src.is_file():
        raise SystemExit(f"--scan {scan}: {src} not found (set MRI_OES_SHARED to the shared folder)")
    if n is None:
        return src
    out = Path(data_dir) / f"{scan}.h5"
    if not out.is_file():
        write_centre_crop(src, out, int(n))
    return out


def write_centre_crop(src, out, n: int) -> None:
    """Write the central ``n×n`` of ``src``'s fully sampled k-space (slice 0) as a fastMRI file."""
    import h5py
    from data_scripts.make_fastmri_file import write_fastmri
    with h5py.File(src, "r") as f:
        k = f["kspace"][0]
    C, H, W = k.shape
    if not (8 <= n <= min(H, W)):
        raise SystemExit(f"--scan {Path(src).stem}-c{n}: crop {n} must be in 8..{min(H, W)}")
    h0, w0 = H // 2 - n // 2, W // 2 - n // 2
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_fastmri(out, k[:, h0:h0 + n, w0:w0 + n], acquisition="centre crop",
                  patient_id=f"{Path(src).stem} k-space centre {n}x{n}")


# ------------------------------------------------------------------------------------------- runs
def scan_name(scan: str) -> str:
    return Path(scan).stem if scan.endswith(".h5") else scan


def run_key(scan, accel, net) -> str:
    return f"{scan_name(scan)}_{accel}x_{net}"


def preset_config(accel, sets=None) -> dict:
    """The ``cpu`` preset at ``accel`` with overrides; refused if its schedule depends on the length."""
    from mri_oes.mri import presets
    cfg = presets.for_accel(presets.get("cpu"), accel)
    cfg.update(sets or {})
    if cfg.get("lr_final") is not None or cfg.get("lr_decay_start"):
        raise SystemExit("lr_final/lr_decay_start: a decaying learning rate depends on the total step count; "
                         "this benchmark reads every length off one run and needs a constant lr")
    if (cfg.get("stop_rule") or "none") != "none":
        raise SystemExit("stop_rule: this benchmark runs every step (stop_rule none)")
    return cfg


def net_recipe(net: str, accel, cfg: dict, seed: int, log_every: int, hourglass_density: float):
    """recon's recipe of ``net`` (:meth:`Recipe.from_preset`) at ``--max-steps`` set by the caller."""
    from mri_oes.recipe import Recipe
    common = dict(seed=seed, log_every=log_every)
    if net == "sparse-dip-hourglass":
        return Recipe.from_preset(cfg, accel, method="sparse-dip", generator="hourglass",
                                         density=hourglass_density, min_layer_density=min(0.005, hourglass_density),
                                         **common)
    if net not in NETS:
        raise SystemExit(f"--net must be one of {NETS}, got {net!r}")
    return Recipe.from_preset(cfg, accel, method=net, **common)


def default_steps(cfg: dict, image_hw) -> int:
    """The preset's default step count on this grid (:meth:`mri_oes.recipe.Recipe.for_grid`)."""
    from mri_oes.recipe import Recipe
    return Recipe.from_preset(cfg, method="dip").for_grid(image_hw).steps


def run_one(scan, accel, net, max_steps, out, work, data_dir, seed=0, log_every=50, hourglass_density=0.1,
            sets=None, verbose=True) -> dict:
    """One long run; its curve JSON is rewritten after every logged row. Returns the curve document."""
    from mri_oes.io import read_json, write_json
    from mri_oes.mri import presets
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    from mri_oes.mri.volume import network_operator
    from mri_oes.runner import run
    from time_to_quality import curve_evaluator

    path = Path(out) / "curves" / f"{run_key(scan, accel, net)}.json"
    old = read_json(path, what="curve") if path.is_file() else None
    if old and old.get("complete") and old.get("max_steps") == max_steps:
        if verbose:
            print(f"{path.name}: complete, skipped", flush=True)
        return old
    cfg = preset_config(accel, sets)
    file = scan_file(scan, data_dir)
    sl = load_slice(file, 0)
    esp = {k: v for k, v in presets.espirit_for(cfg, accel).items() if v is not None}
    p = build_problem(sl, accel, "equispaced", seed, espirit=esp or None)

    def metrics(img):
        m = p.metrics(img)
        return m["psnr"], m["ssim"]

    rc = net_recipe(net, accel, cfg, seed, log_every, hourglass_density).override(
        steps=int(max_steps), espirit=esp, progress=False)
    op = network_operator(p, rc)   # recon's map sets (two where fold-over is found)
    # the curve's evaluator is never read by the fit (core.fit): raw here, the running average on the 2nd call
    gp = p.as_problem({"kind": "mri", "task": "mri", "scan": scan_name(scan), "file": str(file), "accel": accel},
                      evaluate=curve_evaluator(p, op), operator=op)
    # rows of a killed run, replaced step by step by the resumed run (same seed: the same values)
    rows = {int(r["step"]): r for r in (old or {}).get("rows", [])} if old and old.get("max_steps") == max_steps else {}
    doc = {"scan": scan_name(scan), "file": str(file), "slice": 0, "accel": accel, "mask_type": "equispaced", "seed": seed,
           "net": net, "label": NET_LABEL[net], "max_steps": int(max_steps), "log_every": log_every,
           "preset": "cpu", "default_steps": default_steps(cfg, p.image_shape), "image_hw": list(p.image_shape),
           "coils": int(p.maps.shape[0]), "map_sets": int(op.sets), "lr": rc.lr, "lr_schedule": "constant",
           "output_average": rc.output_average,
           "generator": rc.for_problem(gp).generator_config(gp.out_channels, mri=True).to_dict(),
           "density": 1.0 if rc.method != "sparse-dip" else rc.for_problem(gp).density,
           "mask_steps": rc.mask_steps if rc.method == "sparse-dip" else 0,
           "metrics_convention": "fastmri", "kinds": {"raw": "network iterate", "avg": "running average",
                                                      "raw_dc": "iterate, data-consistent",
                                                      "avg_dc": "running average, data-consistent (recon's output)"},
           "zero_filled": dict(zip(("psnr", "ssim"), metrics(p.zero_filled("rss")))),
           "complete": False, "rows": []}
    t0 = time.process_time()
    cpu_before = (old or {}).get("cpu_s_total", 0.0) if rows else 0.0

    def flush():
        doc["rows"] = [rows[k] for k in sorted(rows)]
        write_json(path, doc)

    def cb(row):
        r = {"step": int(row["step"]), "cpu_s": cpu_before + time.process_time() - t0,
             "data_loss": row.get("data_loss")}
        for kind, pre in (("raw", ""), ("avg", "average_")):
            r[f"{kind}_psnr"], r[f"{kind}_ssim"] = row.get(f"{pre}psnr"), row.get(f"{pre}ssim")
            r[f"{kind}_dc_psnr"], r[f"{kind}_dc_ssim"] = row.get(f"{pre}dc_psnr"), row.get(f"{pre}dc_ssim")
        rows[r["step"]] = r
        doc["cpu_s_total"] = r["cpu_s"]
        flush()
        if verbose and (r["step"] in TABLE_STEPS or r["step"] % 1000 == 0 or r["step"] == max_steps):
            print(f"{path.stem} step {r['step']}: avg_dc {r['avg_dc_psnr']:.2f} raw {r['raw_psnr']:.2f} "
                  f"cpu {r['cpu_s']:.0f}s", flush=True)

    rec = run(gp, rc, Path(work) / run_key(scan, accel, net), command="final-vs-steps", callback=cb)
    doc["density"] = rec["density"]
    doc["kept_weights"], doc["maskable_weights"] = rec["kept_weights"], rec["maskable_weights"]
    fit = rows and max(rows)
    doc["s_per_step_cpu"] = (doc["cpu_s_total"] / fit) if fit else None
    doc["complete"] = True
    flush()
    return doc


# ------------------------------------------------------------------------------------------ table
def load_curves(out) -> list:
    from mri_oes.io import read_json
    docs = []
    for f in sorted((Path(out) / "curves").glob("*.json")):
        d = read_json(f, what="curve")
        if not isinstance(d, dict) or not isinstance(d.get("rows"), list) or not d["rows"]:
            continue
        docs.append(d)
    order = {n: i for i, n in enumerate(NETS)}
    return sorted(docs, key=lambda d: (d["scan"], d["accel"], order.get(d["net"], 99)))


def _at(rows, step, key):
    for r in rows:
        if r["step"] == step:
            return r.get(key)
    return None


def _f(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def table(docs, kind="avg_dc") -> str:
    """Markdown: scan × accel × net rows; PSNR / SSIM of ``kind`` at each reported length, the last
    logged step (final), the best over the run and final − best."""
    last = max((d["rows"][-1]["step"] for d in docs), default=0)
    cols = [s for s in TABLE_STEPS if s <= last]
    head = ["scan", "accel", "net", "density", "default steps"] + [f"{s:,}" for s in cols] + \
        ["final (step)", "best (step)", "final − best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in docs:
        rows = d["rows"]
        fin = rows[-1]
        best = max(rows, key=lambda r: r.get(f"{kind}_psnr") or -1e9)
        cells = [d["scan"], f"{d['accel']}×", d["label"], f"{d['density']:.3f}", f"{d['default_steps']:,}"]
        for s in cols:
            p, q = _at(rows, s, f"{kind}_psnr"), _at(rows, s, f"{kind}_ssim")
            cells.append("" if p is None else f"{p:.2f} / {q:.3f}")
        tag = "" if d.get("complete") else ", incomplete"
        cells.append(f"{fin[f'{kind}_psnr']:.2f} / {fin[f'{kind}_ssim']:.3f} ({fin['step']:,}{tag})")
        cells.append(f"{best[f'{kind}_psnr']:.2f} / {best[f'{kind}_ssim']:.3f} ({best['step']:,})")
        cells.append(f"{fin[f'{kind}_psnr'] - best[f'{kind}_psnr']:+.2f} / "
                     f"{fin[f'{kind}_ssim'] - best[f'{kind}_ssim']:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(docs, path) -> None:
    """Final PSNR vs steps (log x): one panel per scan × accel, one colour per net; solid = the averaged
    iterates after data consistency (recon's output), dashed = the raw iterate (no averaging, no DC)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mri_oes.io import atomic_path
    panels = sorted({(d["scan"], d["accel"]) for d in docs})
    n = max(len(panels), 1)
    ncol = min(n, 3)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.9 * nrow), squeeze=False)
    for ax, (scan, accel) in zip(axes.flat, panels):
        for d in docs:
            if (d["scan"], d["accel"]) != (scan, accel):
                continue
            c = f"C{NETS.index(d['net']) if d['net'] in NETS else 9}"
            rows = [r for r in d["rows"] if r["step"] > 0]
            st = [r["step"] for r in rows]
            ax.semilogx(st, [r["avg_dc_psnr"] for r in rows], "-", color=c,
                        label=f"{d['label']} (d={d['density']:.2f})")
            ax.semilogx(st, [r["raw_psnr"] for r in rows], "--", color=c, lw=0.8)
            if d["default_steps"] <= st[-1]:
                ax.axvline(d["default_steps"], color=c, lw=0.6, ls=":")
        zf = next(d["zero_filled"]["psnr"] for d in docs if (d["scan"], d["accel"]) == (scan, accel))
        ax.axhline(zf, color="k", lw=0.6, ls=":", label="zero-filled")
        ax.set_title(f"{scan}, {accel}×", fontsize=10)
        ax.set_xlabel("training steps")
        ax.set_ylabel("PSNR (dB)")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("PSNR of the output after N steps (solid: averaged + data consistency; dashed: raw iterate; "
                 "dotted vertical: the preset's default steps on this grid, where within the run)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_table(out) -> str:
    from mri_oes.io import atomic_path
    docs = load_curves(out)
    if not docs:
        raise SystemExit(f"--out {out}: no curves/*.json with rows")
    text = ("## Averaged iterates after data consistency (recon's output): PSNR / SSIM\n\n" + table(docs, "avg_dc")
            + "\n## Raw iterate, no averaging, no data consistency: PSNR / SSIM\n\n" + table(docs, "raw")
            + "\n## Raw iterate after data consistency: PSNR / SSIM\n\n" + table(docs, "raw_dc")
            + "\n## Averaged iterates, no data consistency: PSNR / SSIM\n\n" + table(docs, "avg"))
    with atomic_path(Path(out) / "table.md") as tmp:
        tmp.write_text(text)
    figure(docs, Path(out) / "final_vs_steps.png")
    return text


# ------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", help="brain16, brain8b-c96, ... (NAME or NAME-cN: the central N×N of k-space)")
    ap.add_argument("--accel", type=int, choices=(4, 8))
    ap.add_argument("--net", choices=NETS)
    ap.add_argument("--max-steps", type=int, help="training steps of the run (every shorter length is read off it)")
    ap.add_argument("--out", required=True, help="results folder (curves/*.json, table.md, final_vs_steps.png)")
    ap.add_argument("--work", default=None, help="checkpoints of running fits (default: OUT/.work)")
    ap.add_argument("--data-dir", default=None, help="centre-cropped scans are written here (default: OUT/.data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--hourglass-density", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="rebuild table.md and final_vs_steps.png from the curves")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if not a.table:
        missing = [f for f in ("scan", "accel", "net", "max_steps") if getattr(a, f) is None]
        if missing:
            ap.error("a run needs " + ", ".join("--" + m.replace("_", "-") for m in missing) + " (or --table)")
        if a.max_steps < 1 or a.log_every < 1 or a.max_steps % a.log_every:
            ap.error(f"--max-steps {a.max_steps} must be a positive multiple of --log-every {a.log_every}")
        if not 0 < a.hourglass_density < 1:
            ap.error(f"--hourglass-density must be in (0, 1), got {a.hourglass_density}")
        import torch
        torch.set_num_threads(a.threads)
        run_one(a.scan, a.accel, a.net, a.max_steps, out, a.work or out / ".work", a.data_dir or out / ".data",
                seed=a.seed, log_every=a.log_every, hourglass_density=a.hourglass_density)
    print(write_table(out))


if __name__ == "__main__":
    main()
