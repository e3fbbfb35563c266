"""Markdown tables of this folder's README from parts/diagnose.json (PSNR / SSIM per λ, SSIM split into
object and background, held-out λ rules scored offline) and parts/noise_floor.json.

    python results/2026-12-05-classical-checks/summarise.py > results/2026-12-05-classical-checks/summary.md
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mri_oes.mri.baselines import one_standard_error  # noqa: E402

D = Path(__file__).resolve().parent / "parts"


def per_seed():
    """The table at the defaults (parts/before.json), one row per scan x acceleration x seed."""
    by = {}
    for r in json.loads((D / "before.json").read_text())["rows"]:
        if r.get("scale", 1.0) == 1.0 and not r.get("refused"):
            by.setdefault((r["scan"], r["accel"], r["seed"]), {})[r["method"]] = r
    print("## At the defaults, per seed (PSNR dB / SSIM; parts/before.json)\n")
    print("| scan | accel | seed | zero-filled | SENSE | L1-wavelet | λ SENSE / L1 | ESPIRiT calib / kernel / map sets |")
    print("|---|---|---|---|---|---|---|---|")
    for (scan, accel, seed), d in by.items():
        e = d["l1-wavelet"]["espirit"]
        cal = "x".join(map(str, e.get("calib_shape") or [e["calib_width"]] * 2))
        ker = "x".join(map(str, e.get("kernel_shape") or [e["kernel_width"]] * 2))
        cells = [f"{d[m]['psnr']:.2f} / {d[m]['ssim']:.3f}" for m in ("zero-filled", "sense", "l1-wavelet")]
        print(f"| {scan} | {accel}x | {seed} | " + " | ".join(cells) +
              f" | {d['sense']['lambda']:g} / {d['l1-wavelet']['lambda']:g} | {cal} / {ker} / {e.get('map_sets', 1)} |")
    print()


def main():
    per_seed()
    rows = json.loads((D / "diagnose.json").read_text())["rows"]
    print("## PSNR dB / SSIM per λ on the ESPIRiT maps (defaults otherwise); * = the default rule's λ\n")
    print("| case | zero-filled | method | " + " | ".join(f"λ {v:g}" for v in rows[0]["l1_grid"]) + " |")
    print("|---|---|---|" + "---|" * len(rows[0]["l1_grid"]))
    for r in rows:
        E = np.asarray(r["l1_folds"])[:, :4]
        chosen = {"l1": int(np.argmin(E.sum(0))), "sense": list(r["sense_grid"]).index(0.01)}
        z = r["zero-filled"]
        for m, name in (("sense", "SENSE"), ("l1", "L1-wavelet")):
            cells = [f"{q['psnr']:.2f} / {q['ssim']:.3f}" + ("*" if j == chosen[m] else "") for j, q in enumerate(r[m])]
            print(f"| {r['scan']} {r['accel']}x s{r['seed']} | {z['psnr']:.2f} / {z['ssim']:.3f} | {name} | " + " | ".join(cells) + " |")
    print("\n## L1-wavelet λ rules on the same held-out errors (grid 1e-3 ... 0.03)\n")
    print("| case | SENSE (λ 0.01) | smallest summed error (default) | one-standard-error |")
    print("|---|---|---|---|")
    for r in rows:
        E = np.asarray(r["l1_folds"])[:, :4]
        a, b = int(np.argmin(E.sum(0))), one_standard_error(E)
        g = r["l1_grid"]
        s = r["sense"][2]["psnr"]
        print(f"| {r['scan']} {r['accel']}x s{r['seed']} | {s:.2f} | λ {g[a]:g}: {r['l1'][a]['psnr']:.2f} | λ {g[b]:g}: {r['l1'][b]['psnr']:.2f} |")
    for name, rule in (("smallest summed error (default)", lambda E: int(np.argmin(E.sum(0)))),
                       ("one-standard-error", one_standard_error)):
        fails = []
        for r in rows:
            q = r["l1"][rule(np.asarray(r["l1_folds"])[:, :4])]
            z, s = r["zero-filled"], r["sense"][2]
            tag = f"{r['scan']} {r['accel']}x s{r['seed']}"
            fails += [f"{tag} PSNR < SENSE"] * (q["psnr"] < s["psnr"]) + [f"{tag} PSNR < zero-filled"] * (q["psnr"] < z["psnr"]) \
                + [f"{tag} SSIM < zero-filled"] * (q["ssim"] < z["ssim"])
        print(f"\nL1-wavelet checks failed over {len(rows)} cases, {name}: {len(fails)}: " + "; ".join(fails))
    ph = [r for r in rows if r["scan"] == "phantom4"]
    if ph:
        print("\n## phantom4: SSIM object / background per λ (reference >= / < 5 % of its maximum)\n")
        print("| case | zero-filled | method | " + " | ".join(f"λ {v:g}" for v in ph[0]["l1_grid"]) + " |")
        print("|---|---|---|" + "---|" * len(ph[0]["l1_grid"]))
        for r in ph:
            z = r["zero-filled"]
            for m, name in (("sense", "SENSE"), ("l1", "L1-wavelet")):
                print(f"| {r['accel']}x s{r['seed']} | {z['ssim_object']:.3f} / {z['ssim_background']:.3f} | {name} | " +
                      " | ".join(f"{q['ssim_object']:.3f} / {q['ssim_background']:.3f}" for q in r[m]) + " |")
    nf = D / "noise_floor.json"
    if nf.exists():
        print("\n## phantom4 seed 0: the reference's noise floor\n")
        print("| accel | method | PSNR / SSIM | SSIM object / background | background mean (reference) | "
              "with the noise floor added: PSNR / SSIM | SSIM object / background |")
        print("|---|---|---|---|---|---|---|")
        for r in json.loads(nf.read_text())["rows"]:
            fl = (f"{r['floor_psnr']:.2f} / {r['floor_ssim']:.3f} | {r['floor_ssim_object']:.3f} / "
                  f"{r['floor_ssim_background']:.3f}") if "floor_psnr" in r else "— | —"
            print(f"| {r['accel']}x | {r['method']} | {r['psnr']:.2f} / {r['ssim']:.3f} | {r['ssim_object']:.3f} / "
                  f"{r['ssim_background']:.3f} | {r['mean_background']:.4f} ({r['ref_mean_background']:.4f}) | {fl} |")


if __name__ == "__main__":
    main()
