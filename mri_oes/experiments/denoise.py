"""OES denoising comparison at a size a CPU can do (OES Table 2 / SPEC §8), resumable.

    python -m mri_oes.experiments.denoise --out runs/denoise-table [--images ...] [--crop 128]

Per image (centre crop ``crop``×``crop``, no resizing; σ = 25/255, noisy image clipped to [0, 1]):
dense DIP (final iterate = "at convergence", and its oracle best), deep decoder, Sparse-DIP with OES
masks at each ``--density`` (optionally with a per-layer floor), all with no early stopping, plus the
Finding-1 image ``G(theta_in ∘ m*, z)`` for every mask. Writes ``table.csv``, ``table.json``,
``table.md`` and one run folder per case (skipped when it already holds ``metrics.json``: a killed run
resumes). Defaults follow SPEC §8's CPU-scale protocol (5-scale net, 128², Adam 1e-2); on a GPU use
``--crop 256 --levels 6 --steps 40000 --mask-steps 60000`` for the paper's protocol.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from operators.base import center_crop

from ..io import atomic_path, load_image
from ..problem import natural_problem
from ..recipe import Recipe
from ..runner import run

SHARED_IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images"


def default_images():
    names = ["pepper.png", "lena.png", "baboon.png", "barbara.png"]
    found = [str(SHARED_IMAGES / n) for n in names if (SHARED_IMAGES / n).is_file()]
    return found[:2] or ["skimage:coffee", "skimage:astronaut"]


def read(spec: str, size: int) -> np.ndarray:
    if spec.startswith("skimage:"):
        from skimage import data
        img = getattr(data, spec.split(":", 1)[1])().astype(np.float32) / 255.0
        img = img.transpose(2, 0, 1) if img.ndim == 3 else img[None]
    else:
        img = load_image(spec)
    return center_crop(img, (size, size))


def cases(args):
    out = [("dip", dict(method="dip", steps=args.steps)),
           ("deep-decoder", dict(method="deep-decoder", steps=args.steps))]
    for d in args.densities:
        # below 5% a per-layer floor keeps global ranking from emptying a layer (SPEC §8)
        floor = min(args.floor, d / 2) if (args.floor and d < 0.05) else 0.0
        out.append((f"oes-{d:g}" + (f"-floor{floor:g}" if floor else ""),
                    dict(method="sparse-dip", steps=args.steps, density=d, mask_steps=args.mask_steps,
                         min_layer_density=floor)))
    return out


def main(argv=None):
    from ..cli_common import (OneLineParser, add_generator_args, add_renamed, add_run_args, floor_density, mask_density,
                              nonneg_float, positive_int, setup_runtime)
    from ..schema import flatten
    p = OneLineParser(prog="python -m mri_oes.experiments.denoise", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="+", default=None, help="image files or skimage:NAME")
    p.add_argument("--crop", type=positive_int, default=128, help="centre crop CROP×CROP (default 128)")
    add_generator_args(p)
    p.add_argument("--steps", type=positive_int, default=6000, help="training steps (default 6000)")
    p.add_argument("--mask-steps", type=positive_int, default=3000, help="OES mask-learning steps (default 3000)")
    add_renamed(p, "--density", "--densities", dest="densities", metavar="DENSITY", type=mask_density, nargs="+",
                default=[0.05, 0.0125], help="OES mask densities, one or more (default 0.05 0.0125)")
    p.add_argument("--min-layer-density", type=floor_density, default=0.005,
                   help="per-layer floor for densities < 5%% (at most density/2; 0: none)")
    p.add_argument("--sigma", type=nonneg_float, default=25.0)
    add_run_args(p)
    p.set_defaults(log_every=250, levels=5)
    args = p.parse_args(argv)
    setup_runtime(args)
    args.floor = args.min_layer_density
    out = Path(args.out or "runs/denoise-table")
    rows = []
    for spec in args.images or default_images():
        img = read(spec, args.crop)
        name = Path(spec.split(":")[-1]).stem
        for label, kw in cases(args):
            folder = out / name / label
            if (folder / "metrics.json").exists():   # resumable: finished cases are read back
                m = json.loads((folder / "metrics.json").read_text())
            else:
                prob = natural_problem(img, "denoise", sigma255=args.sigma, seed=args.seed)
                prob.info["source"] = f"{spec} centre crop {args.crop}"
                prob.info["scan"] = name
                rc = Recipe().override(seed=args.seed, levels=args.levels, width=args.width, device=args.device,
                                       progress=bool(args.progress), log_every=args.log_every,
                                       checkpoint_every=args.checkpoint_every, **kw)
                m = run(prob, rc, folder, overwrite=args.overwrite, command="experiments.denoise")
            f1 = (m.get("mask_learning") or {}).get("finding1") or {}
            row = flatten(m, run_dir=str(folder))
            row.update(case=label, finding1_psnr=f1.get("psnr"),
                       collapsed=(m.get("collapse") or {}).get("collapsed"))
            rows.append(row)
            print(f"{name:10s} {label:24s} density {m['density']:.4f} final {row['final_psnr']:.2f} "
                  f"oracle best {row['best_psnr']:.2f}@{row['best_step']}", flush=True)
            write_tables(out, rows)
    return 0


def write_tables(out: Path, rows):
    from ..schema import write_table
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, out / "table")
    lines = ["| image | case | density | kept weights / pixel value | finding-1 | oracle best PSNR (step) | "
             "final PSNR | final SSIM |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"   # noqa: E731
    for r in rows:
        lines.append(f"| {r['scan']} | {r['case']} | {r['density']:.4f} | {r['kept_weights_per_measurement']:.2f} | "
                     f"{fmt(r['finding1_psnr'])} | {fmt(r['best_psnr'])} ({r['best_step']}) | "
                     f"{fmt(r['final_psnr'])} | {r['final_ssim']:.3f} |")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
