"""brain16 4x, seeds 0-2: recon's Sparse-DIP (the cpu preset's deep decoder) at fixed densities against
the density rule's 0.42 — summary.md, summary.json and density_curves.png from this folder's runs.

    python results/2026-12-05-small-grid-density/summarize.py

Reads (PSNR/SSIM: the averaged, data-consistent image, recon's output; fastMRI metric):

* this folder's ``rows.json`` and ``curves/`` (``benchmarks/time_to_quality.py --set density=D steps=8000
  steps_pixels=null``; tag ``dXXX-s8000``, and ``rule-s8000``: the density rule at 8,000 steps). These curves
  log PSNR only; their SSIM is the final one (step 8,000);
* ``dense/seed{1,2}/curves/brain16_4x_deep-decoder.json`` (``benchmarks/final_vs_steps.py --net
  deep-decoder``: the same network, no mask; PSNR and SSIM at every logged step); seed 0's is
  ``../2026-12-05-final-vs-steps/curves/brain16_4x_deep-decoder.json``;
* the density rule's 22,000-step curves and L1-wavelet per seed: ``../2026-12-05-default-seeds/``.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from mri_oes.io import atomic_path, read_json, write_json  # noqa: E402

SEEDS = (0, 1, 2)
STEPS = 8000
HALF = 4000
DEFAULT_SEEDS = ROOT / "results" / "2026-12-05-default-seeds"
LONG = {0: DEFAULT_SEEDS / "brain16-4x-seed0", 1: DEFAULT_SEEDS / "brain16", 2: DEFAULT_SEEDS / "brain16"}
DENSE = {0: ROOT / "results" / "2026-12-05-final-vs-steps" / "curves" / "brain16_4x_deep-decoder.json",
         1: HERE / "dense" / "seed1" / "curves" / "brain16_4x_deep-decoder.json",
         2: HERE / "dense" / "seed2" / "curves" / "brain16_4x_deep-decoder.json"}
TAGS = {0.15: "d015-s8000", 0.25: "d025-s8000", 0.9: "d090-s8000"}


def rows_of(folder: Path) -> dict:
    p = folder / "rows.json"
    return {r["key"]: r for r in read_json(p, what="rows")["rows"]} if p.is_file() else {}


def at(curve, step, key="psnr"):
    for c in curve:
        if c["step"] == step:
            return c.get(key)
    return None


def ttq_curve(path: Path) -> list:
    return [{"step": c["step"], "psnr": c["average_dc_psnr"], "cpu_s": c["cpu_s"]} for c in read_json(path, what="curve")]


def dense_curve(path: Path) -> list:
    return [{"step": r["step"], "psnr": r["avg_dc_psnr"], "ssim": r["avg_dc_ssim"], "cpu_s": r["cpu_s"]}
            for r in read_json(path, what="curve")["rows"]]


def entry(curve, upto, ssim_final=None, **extra):
    """Readings of one curve up to step ``upto``."""
    c = [r for r in curve if r["step"] <= upto]
    if not c or c[-1]["step"] < upto:
        return None
    best = max(c, key=lambda r: r["psnr"])
    end = at(c, upto)
    rise = end - at(c, upto - 2000)   # the last 2,000 steps
    if best["step"] >= upto - 1000 and rise > 0.05 and end - best["psnr"] > -0.15:
        shape = "rising"
    elif best["step"] < upto - 1000 and end - best["psnr"] < -0.3:
        shape = f"peak {best['step']:,}, falling"
    else:
        shape = "flat or bumpy"
    return {"psnr_4000": at(c, HALF), "ssim_4000": at(c, HALF, "ssim"), "psnr": end,
            "ssim": at(c, upto, "ssim") if ssim_final is None else ssim_final,
            "best": best["psnr"], "best_step": best["step"], "final_minus_best": end - best["psnr"],
            "last_2000_change": rise, "shape": shape,
            "mean_last_1000": sum(r["psnr"] for r in c if r["step"] >= upto - 1000) / sum(1 for r in c if r["step"] >= upto - 1000), **extra}


def collect():
    here = rows_of(HERE)
    long_rows = {s: rows_of(LONG[s])[f"brain16_4x_s{s}_none"] for s in SEEDS}
    table, curves, checks = {}, {}, []
    for s in SEEDS:
        lr = long_rows[s]
        lc = ttq_curve(LONG[s] / "curves" / f"brain16_4x_s{s}_none.json")
        rule = here.get(f"brain16_4x_s{s}_none_rule-s8000")
        if rule is not None:   # the 8,000-step run must be the 22,000-step curve read at 8,000 (constant lr)
            rc = ttq_curve(HERE / "curves" / f"{rule['key']}.json")
            diff = max(abs(a["psnr"] - b) for a in rc if (b := at(lc, a["step"])) is not None)
            checks.append(f"seed {s}: the density rule's 8,000-step run vs its 22,000-step curve read at the same "
                          f"steps: max |ΔPSNR| {diff:.4f} dB; final {rule['final_psnr']:.2f} vs {at(lc, STEPS):.2f}")
        e = entry(lc, STEPS, ssim_final=rule["final_ssim"] if rule else None, density=lr["density"],
                  steps_run=STEPS, source=str((LONG[s] / "curves" / f"brain16_4x_s{s}_none.json").relative_to(ROOT)))
        e.update(long_best=max(r["psnr"] for r in lc), long_best_step=max(lc, key=lambda r: r["psnr"])["step"],
                 long_final=at(lc, lr["steps_run"]), long_steps=lr["steps_run"])
        table[(s, round(lr["density"], 2))] = e
        curves[(s, round(lr["density"], 2))] = lc
        for d, tag in TAGS.items():
            r = here.get(f"brain16_4x_s{s}_none_{tag}")
            if r is None:
                continue
            c = ttq_curve(HERE / "curves" / f"{r['key']}.json")
            table[(s, d)] = entry(c, STEPS, ssim_final=r["final_ssim"], density=r["density"], sparsity=r["sparsity"],
                                  steps_run=r["steps_run"], steps_configured=r["steps_configured"],
                                  mask_steps=r["mask_steps"], cpu_s=r["total_cpu_s"], commit=r["commit"], key=r["key"])
            curves[(s, d)] = c
        if DENSE[s].is_file():
            doc = read_json(DENSE[s], what="curve")
            c = dense_curve(DENSE[s])
            e = entry(c, STEPS, density=doc["density"], steps_run=max(r["step"] for r in c), mask_steps=doc["mask_steps"],
                      source=str(DENSE[s].relative_to(ROOT)))
            if e is not None:
                e.update(psnr_end=c[-1]["psnr"], end_step=c[-1]["step"],
                         long_best=max(r["psnr"] for r in c), long_best_step=max(c, key=lambda r: r["psnr"])["step"])
                table[(s, 1.0)] = e
                curves[(s, 1.0)] = c
    l1 = {s: (long_rows[s]["l1_psnr"], long_rows[s]["l1_ssim"]) for s in SEEDS}
    swaps = {}   # (mask seed, init seed) -> entry, the density rule at 8,000 steps
    for s in SEEDS:
        swaps[(s, s)] = table[(s, round(long_rows[s]["density"], 2))]
    p = HERE / "swap_rows.json"
    for r in (read_json(p, what="rows")["rows"] if p.is_file() else []):
        if r.get("calib_width") is not None or r.get("kernel_width") is not None:
            continue   # ESPIRiT variants: the README's own section, not the mask/network swap table
        c = ttq_curve(HERE / "curves" / f"{r['key']}.json")
        e = entry(c, STEPS, ssim_final=r["final_ssim"], density=r["density"], steps_run=r["steps_run"],
                  l1_psnr=r["l1_psnr"], key=r["key"], commit=r["commit"])
        if e is not None:
            swaps[(r["mask_seed"], r["init_seed"])] = e
            curves[("swap", r["mask_seed"], r["init_seed"])] = c
    return table, curves, l1, checks, swaps


def f(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def markdown(table, l1, checks, swaps) -> str:
    dens = sorted({d for _, d in table})
    out = ["# brain16 4×: recon's Sparse-DIP density against seed (generated by summarize.py)", "",
           "PSNR dB / SSIM of the averaged, data-consistent image. `at 8k`: step 8,000; `best ≤8k (step)`: the "
           "highest logged value up to step 8,000; `8k − 6k`: the change over the last 2,000 steps; shape up to "
           "8,000: `rising` (best within the last 1,000 steps and +0.05 dB or more over the last 2,000), `peak S, "
           "falling` (best before step 7,000 and step 8,000 more than 0.3 dB below it), else `flat or bumpy`. `mean 7–8k`: the mean of the logged values from step 7,000 to 8,000 (less sensitive to one Adam bump than the value at 8,000). SSIM at 4,000 only where the curve "
           "logs it (the dense runs).", "",
           "| seed | L1-wavelet | density | at 4k | at 8k PSNR / SSIM | mean 7–8k | best ≤8k (step) | 8k − best | 8k − 6k | shape | "
           "8k − L1 | longer run: best (step) / last |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in SEEDS:
        for d in dens:
            e = table.get((s, d))
            if e is None:
                continue
            ss4 = f"{e['psnr_4000']:.2f}" + (f" / {e['ssim_4000']:.3f}" if e.get("ssim_4000") is not None else "")
            longer = "—"
            if e.get("long_steps"):
                longer = (f"{e['long_best']:.2f} ({e['long_best_step']:,}) / {e['long_final']:.2f} at "
                          f"{e['long_steps']:,}")
            elif e.get("end_step", 0) > STEPS:
                longer = f"{e['long_best']:.2f} ({e['long_best_step']:,}) / {e['psnr_end']:.2f} at {e['end_step']:,}"
            out.append(f"| {s} | {l1[s][0]:.2f} / {l1[s][1]:.3f} | {e['density']:.2f} | {ss4} | {e['psnr']:.2f} / "
                       f"{f(e['ssim'], '.3f')} | {e['mean_last_1000']:.2f} | {e['best']:.2f} ({e['best_step']:,}) | {e['final_minus_best']:+.2f} | {e['last_2000_change']:+.2f} | "
                       f"{e['shape']} | {e['psnr'] - l1[s][0]:+.2f} | {longer} |")
    out += ["", "Mean over the seeds at step 8,000 (densities with all three seeds):", "",
            "| density | mean PSNR at 8k | min over seeds | mean 8k − L1 | min 8k − L1 | mean of mean 7–8k | mean best ≤8k |",
            "|---|---|---|---|---|---|---|"]
    for d in dens:
        es = [(s, table.get((s, d))) for s in SEEDS]
        if any(e is None for _, e in es):
            continue
        ps = [e["psnr"] for _, e in es]
        gaps = [e["psnr"] - l1[s][0] for s, e in es]
        out.append(f"| {d:.2f} | {sum(ps) / 3:.2f} | {min(ps):.2f} | {sum(gaps) / 3:+.2f} | {min(gaps):+.2f} | "
                   f"{sum(e['mean_last_1000'] for _, e in es) / 3:.2f} | {sum(e['best'] for _, e in es) / 3:.2f} |")
    if len(swaps) > 3:
        out += ["", "k-space mask (equispaced offset, from `--seed`) against network seed, density rule (0.42), "
                "`swap_seed.py` (mask seed = network seed: the rows above):", "",
                "| mask seed | network seed | L1-wavelet | at 4k | at 8k PSNR / SSIM | mean 7–8k | best ≤8k (step) | 8k − L1 |",
                "|---|---|---|---|---|---|---|---|"]
        for (m, i), e in sorted(swaps.items()):
            out.append(f"| {m} | {i} | {l1[m][0]:.2f} | {e['psnr_4000']:.2f} | {e['psnr']:.2f} / {f(e['ssim'], '.3f')} | "
                       f"{e['mean_last_1000']:.2f} | {e['best']:.2f} ({e['best_step']:,}) | {e['psnr'] - l1[m][0]:+.2f} |")
    if checks:
        out += ["", "Reproduction:", ""] + [f"- {c}" for c in checks]
    return "\n".join(out) + "\n"


def figure(curves, l1, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    colours = {0.15: "tab:blue", 0.25: "tab:cyan", 0.42: "tab:red", 0.9: "tab:orange", 1.0: "black"}
    for ax, s in zip(axes, SEEDS):
        for k, c in sorted((k, c) for k, c in curves.items() if k[0] == "swap" and k[1] == s):
            c = [r for r in c if r["step"] >= 200]
            ax.plot([r["step"] for r in c], [r["psnr"] for r in c], color="tab:green", lw=1.0, ls="--",
                    label=f"density 0.42, network seed {k[2]}")
        for (seed, d), c in sorted((k, c) for k, c in curves.items() if k[0] != "swap"):
            if seed != s:
                continue
            c = [r for r in c if r["step"] >= 200]
            ax.plot([r["step"] for r in c], [r["psnr"] for r in c], color=colours.get(d, "gray"), lw=1.2,
                    label=f"density {d:.2f}" + (" (rule)" if d == 0.42 else " (dense)" if d == 1.0 else ""))
        ax.axhline(l1[s][0], color="gray", ls="--", lw=1, label="L1-wavelet")
        ax.axvline(STEPS, color="gray", ls=":", lw=0.8)
        ax.set_title(f"brain16 4×, seed {s} (k-space mask and network)")
        ax.set_xlabel("training step")
        ax.set_xlim(0, 22000)
        ax.set_ylim(30, 37)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR (dB), averaged + data-consistent")
    for ax in axes:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main():
    table, curves, l1, checks, swaps = collect()
    md = markdown(table, l1, checks, swaps)
    with atomic_path(HERE / "summary.md") as tmp:
        tmp.write_text(md)
    write_json(HERE / "summary.json", {"l1": {str(s): {"psnr": p, "ssim": q} for s, (p, q) in l1.items()},
                                       "entries": [{"seed": s, "density_label": d, **e}
                                                   for (s, d), e in sorted(table.items())],
                                       "mask_vs_network_seed": [{"mask_seed": m, "init_seed": i, **e}
                                                                for (m, i), e in sorted(swaps.items())],
                                       "checks": checks})
    figure(curves, l1, HERE / "density_curves.png")
    print(md)


if __name__ == "__main__":
    main()
