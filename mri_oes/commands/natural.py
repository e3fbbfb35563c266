"""Natural-image commands: demo, learn-mask, fit, and the denoise / inpaint / super-resolve shortcuts."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..cli_common import (accel_int, add_generator_args, add_mask_args, add_operator_args, add_run_args,
                          add_task_args, add_training_args, floor_density, mask_density, nonneg_float, nonneg_int,
                          out_path, positive_int, recipe_from_args, setup_runtime)
from ..errors import UserError
from ..runner import run
from ..schema import RECON_NETWORK_METHODS


def add_task(p: argparse.ArgumentParser, task=None):
    p.add_argument("image", nargs="?", default=None,
                   help="PNG/JPEG image (default: a bundled scikit-image photo)")
    add_task_args(p, task=task is None, fixed=task)


def load_task_image(args):
    from operators.base import center_crop
    from ..io import load_image
    if args.image is None:
        from skimage import data
        img = data.astronaut().transpose(2, 0, 1).astype(np.float32) / 255.0
        src = "skimage.data.astronaut"
    else:
        img = load_image(args.image, grayscale=args.grayscale)
        src = str(args.image)
    if args.crop:
        img = center_crop(img, (args.crop, args.crop))
    return img, src


def is_mri_file(path) -> bool:
    return path is not None and str(path).lower().endswith((".h5", ".hdf5"))


def build_problem(args, task):
    if is_mri_file(args.image):
        if not getattr(args, "mri_ok", False):
            raise UserError(f"{args.image}: an MRI file; reconstruct it with `mri-oes recon {args.image} "
                            f"--method ...` (or learn a mask with `mri-oes learn-mask {args.image}`)")
        if getattr(args, "operator", None):
            raise UserError(f"--operator {args.operator}: operator plugins act on images; {args.image} is an "
                            "MRI file (its operator is the multi-coil MRI model)")
        from .mri import problem_from_args
        return problem_from_args(args)
    from ..problem import natural_problem, operator_problem
    img, src = load_task_image(args)
    if getattr(args, "operator", None):
        prob = operator_problem(img, args.operator, args.operator_args, sigma255=args.sigma, seed=args.seed)
    else:
        prob = natural_problem(img, task, sigma255=args.sigma, keep_fraction=getattr(args, "keep_fraction", 0.5),
                               factor=getattr(args, "factor", 4), seed=args.seed)
    prob.info["source"] = src
    prob.info["scan"] = Path(src).stem if args.image is not None else src
    return prob


def print_summary(m, out):
    f, b = m["final"], m["best"]
    line = f"{m['method']}: density {m['density']:.4f} (sparsity {m['sparsity']:.4f})"
    if f.get("psnr") is not None:
        line += f" | final PSNR {f['psnr']:.2f} dB SSIM {f['ssim']:.3f}"
        if b.get("psnr") is not None:
            line += f" | oracle best PSNR {b['psnr']:.2f} dB @ step {b['step']}"
    print(line + f" | {m['time']['total_s']:.1f}s")
    print(f"outputs written to {out}/")


def finish(m, out) -> int:
    """Exit status of a training command: 0, or 3 when the fit diverged (the result says so)."""
    if m.get("collapse") and m["collapse"]["collapsed"]:
        print("WARNING: layer collapse detected:", m["collapse"])
    if m.get("diverged"):
        print(f"error: the fit diverged (non-finite loss); see {out}/metrics.json", file=sys.stderr)
        return 3
    return 0


def cmd_fit(args):
    setup_runtime(args)
    task = getattr(args, "task", None) or args.fixed_task
    problem = build_problem(args, task)
    out = out_path(args, args.command)
    m = run(problem, recipe_from_args(args), out, overwrite=args.overwrite, command=args.command)
    print_summary(m, out)
    return finish(m, out)


def cmd_learn_mask(args):
    """Learn an OES mask only (no Sparse-DIP training): writes mask.safetensors + finding1.png."""
    setup_runtime(args)
    args.mri_ok = True
    problem = build_problem(args, args.task)
    # an MRI file: the network and mask options of `recon --method sparse-dip` (its preset at the
    # slice's acceleration), so the mask learned here is the one recon learns and reuses
    recipe = recipe_from_args(args, args.preset if problem.kind == "mri" else None, problem.info.get("accel"),
                              method="sparse-dip", steps=0)
    out = out_path(args, args.command)
    m = run(problem, recipe, out, overwrite=args.overwrite, command="learn-mask")
    f1 = (m.get("mask_learning") or {}).get("finding1") or {}
    print(f"OES mask: density {m['density']:.4f} (sparsity {m['sparsity']:.4f}), "
          f"{m['kept_weights']} of {m['maskable_weights']} weights kept"
          + (f"; finding-1 PSNR {f1['psnr']:.2f} dB" if "psnr" in f1 else ""))
    if m["collapse"]["collapsed"]:
        print("WARNING: layer collapse detected:", m["collapse"])
    print(f"mask written to {out / 'mask.safetensors'}")
    return 0


def cmd_demo(args):
    """Embedded default: denoise a 64×64 crop of a bundled photo (σ = 25) with dense DIP and OES
    Sparse-DIP (3% density, per-layer floor 0.5%), both without early stopping."""
    from skimage import data
    from ..problem import natural_problem
    from ..schema import flatten, write_table
    setup_runtime(args)
    img = data.astronaut()[100:228:2, 150:278:2].transpose(2, 0, 1).astype(np.float32) / 255.0
    out = out_path(args, "demo")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    rows, status = [], 0
    for method in ("dip", "sparse-dip"):
        prob = natural_problem(img, "denoise", sigma255=25, seed=args.seed)
        prob.info["source"] = "skimage.data.astronaut()[100:228:2, 150:278:2] (64x64 RGB)"
        prob.info["scan"] = "astronaut64"
        recipe = recipe_from_args(args, method=method, levels=4, width=0.5,
                                  min_layer_density=min(args.min_layer_density, args.density / 2))
        m = run(prob, recipe, out / method, overwrite=args.overwrite, command="demo")
        print_summary(m, out / method)
        status = max(status, finish(m, out / method))
        rows.append(flatten(m, run_dir=str(out / method)))
    write_table(rows, out / "table")
    print("\nmethod       density   final PSNR   oracle best PSNR (step)   final - best")
    for r in rows:
        print(f"{r['method']:<12} {r['density']:.3f}     {r['final_psnr']:6.2f}       "
              f"{r['best_psnr']:6.2f} ({r['best_step']:>5})          {r['final_psnr'] - r['best_psnr']:+.2f}")
    print("(final = the image a user gets; best = oracle early stop using the clean image, for reporting)")
    print(f"\nall outputs under {out}/ (table.csv, table.json)")
    return status


def register(sub):
    p = sub.add_parser("demo", help="run the embedded default case (no download, a few minutes on a CPU)",
                       description=cmd_demo.__doc__)
    add_training_args(p)
    g = p.add_argument_group("mask")
    g.add_argument("--density", type=mask_density, default=0.03,
                   help="kept fraction of the network weights (default 0.03: about 0.3 kept weights per "
                        "pixel value of the 64x64 RGB image)")
    g.add_argument("--min-layer-density", type=floor_density, default=0.005,
                   help="per-layer floor (default 0.005, at most density/2)")
    g.add_argument("--mask-steps", type=positive_int, default=800, help="OES mask-learning steps (default 800)")
    add_run_args(p)
    p.set_defaults(func=cmd_demo, log_every=25)

    p = sub.add_parser("learn-mask", help="learn an OES mask on an image (or an MRI .h5 file)",
                       description="Learn an OES mask at random initialisation (no Sparse-DIP training): "
                                   "writes mask.safetensors, finding1.png and metrics.json.")
    add_task(p)
    add_operator_args(p)
    from ..recipe import MaskOptions, Network
    mri = "; an MRI file: --preset's"
    add_generator_args(p, width=f"{Network.width:g}{mri}")
    add_mask_args(p, reuse=False, density=f"{MaskOptions.density:g}{mri} density rule",
                  floor=f"{MaskOptions.min_layer_density:g}{mri}", mask_steps=f"{MaskOptions.mask_steps}{mri}")
    m = p.add_argument_group("MRI input (.h5): the network of recon --method sparse-dip")
    m.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                   help="MRI: network, density rule and mask options not given as flags, as recon's "
                        "(mri_oes/mri/presets.py at the acceleration; default cpu)")
    m.add_argument("--slice", type=nonneg_int, default=0, help="MRI: slice index (default 0)")
    m.add_argument("--accel", type=accel_int, default=4, help="MRI: acceleration (default 4)")
    m.add_argument("--mask-type", choices=("random", "equispaced", "equispaced-fraction"), default="equispaced",
                   help="MRI: fastMRI k-space sampling mask (default equispaced)")
    add_run_args(p)
    p.set_defaults(func=cmd_learn_mask)

    def fit_like(p, fixed_task):
        add_task(p, task=fixed_task)
        p.add_argument("--method", choices=RECON_NETWORK_METHODS, default="sparse-dip",
                       help="dip (dense), sparse-dip (OES mask), deep-decoder, gp-dip (default sparse-dip)")
        p.add_argument("--sgld-std", type=nonneg_float, default=0.02,
                       help="gp-dip: std of the noise added to conv weights each step (Cheng et al.: 2*lr)")
        if fixed_task is None:   # the task shortcuts fix the operator
            add_operator_args(p)
        add_training_args(p)
        add_generator_args(p)
        add_mask_args(p)
        add_run_args(p)
        p.set_defaults(func=cmd_fit, fixed_task=fixed_task)

    fit_like(sub.add_parser("fit", help="fit dense DIP, Sparse-DIP (OES), deep decoder or GP-DIP to an image"),
             None)
    for name, task in (("denoise", "denoise"), ("inpaint", "inpaint"), ("super-resolve", "super-resolution")):
        fit_like(sub.add_parser(name, help=f"{task} an image (shortcut for fit --task {task})"), task)
