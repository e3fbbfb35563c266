"""brain16 4x: which half of ``--seed`` makes seed 1 worse — the k-space mask or the network's seed?

``--seed`` sets both the equispaced mask's offset (:func:`mri_oes.mri.data.undersample`: on the 96-line
grid seeds 0 and 2 draw the same lines, seed 1 lines shifted by one) and the network's seed (weights,
input, OES mask learning). This runs :func:`benchmarks.time_to_quality.run_row` (recon's route, the density
rule, no stop rule) with the problem built from ``--mask-seed`` and the network seeded by ``--init-seed``:

    python results/2026-12-05-small-grid-density/swap_seed.py --mask-seed 1 --init-seed 0 --steps 8000 \
        --work /tmp/sgd-runs

``--calib-width N`` calibrates ESPIRiT on N centre lines instead of the mask's fully sampled centre (seed
0's lines give 9 contiguous centre lines, seed 1's 8). Rows go to ``swap_rows.json`` (key ``brain16_4x_mask{M}_init{I}_s{steps}``, with ``mask_seed`` and
``init_seed``), curves to ``curves/<key>.json``; one torch thread.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mask-seed", type=int, required=True)
    ap.add_argument("--init-seed", type=int, required=True)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--work", default="/tmp/sgd-runs")
    ap.add_argument("--calib-width", type=int, default=None,
                    help="ESPIRiT calibration width in lines (default: the mask's fully sampled centre)")
    ap.add_argument("--kernel-width", type=int, default=None,
                    help="ESPIRiT kernel width (default: the rule's, half the calibration width within 3-6)")
    a = ap.parse_args(argv)
    from mri_oes.io import read_json, write_json
    from mri_oes.runtime import configure_runtime
    import mri_oes.mri.problem as mp
    import time_to_quality as ttq
    configure_runtime(1)
    build = mp.build_problem

    def build_with_mask_seed(sl, accel=None, mask_type="equispaced", seed=0, **kw):
        if a.calib_width is not None:
            kw["espirit"] = {**(kw.get("espirit") or {}), "calib_width": a.calib_width}
        if a.kernel_width is not None:
            kw["espirit"] = {**(kw.get("espirit") or {}), "kernel_width": a.kernel_width}
        return build(sl, accel, mask_type, a.mask_seed, **kw)

    mp.build_problem = build_with_mask_seed   # run_row imports it at call time
    key = f"brain16_4x_mask{a.mask_seed}_init{a.init_seed}_s{a.steps}" + (
        f"_calib{a.calib_width}" if a.calib_width is not None else "") + (
        f"_kernel{a.kernel_width}" if a.kernel_width is not None else "")
    rows_file = HERE / "swap_rows.json"
    rows = read_json(rows_file, what="rows")["rows"] if rows_file.is_file() else []
    if any(r["key"] == key for r in rows):
        print(f"{key}: done")
        return
    row, curve = ttq.run_row("brain16", 4, "none", a.init_seed, {"steps": a.steps, "steps_pixels": None}, 50, HERE,
                             key, work=Path(a.work))
    row.update(key=key, mask_seed=a.mask_seed, init_seed=a.init_seed, calib_width=a.calib_width, kernel_width=a.kernel_width,
               commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip())
    write_json(HERE / "curves" / f"{key}.json", curve)
    (HERE / "curves" / f"{key}.partial.json").unlink(missing_ok=True)
    rows = read_json(rows_file, what="rows")["rows"] if rows_file.is_file() else []
    write_json(rows_file, {"rows": [r for r in rows if r["key"] != key] + [row]})
    print(f"{key}: final {row['final_psnr']:.2f} / {row['final_ssim']:.3f}, best {row['best_dc_psnr']:.2f}, "
          f"L1 {row['l1_psnr']:.2f}, density {row['density']:.3f}")


if __name__ == "__main__":
    main()
