"""Natural-image commands: demo, learn-mask, fit, and the denoise / inpaint / super-resolve helpers."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..runner import METHODS, RunConfig, run


def add_common(p: argparse.ArgumentParser, default_steps=2000):
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=int, default=default_steps, help="training steps (default %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="one seed fixes init, z, noise and masks")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    g.add_argument("--out", default=None, help="output folder (default runs/<command>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="allow writing into a folder with a result")
    g.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate for the weights")
    g.add_argument("--log-every", type=int, default=50, help="log loss/PSNR every n steps")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    n = p.add_argument_group("generator")
    n.add_argument("--levels", type=int, default=None,
                   help="hourglass scales (paper: 6, needs >=256 px; default: largest that fits, max 6)")
    n.add_argument("--width", type=float, default=1.0, help="channel multiplier of the hourglass")
    m = p.add_argument_group("mask")
    m.add_argument("--density", type=float, default=0.05, help="kept fraction of weights (sparsity = 1 - density)")
    m.add_argument("--mask", dest="mask_path", default=None, help="use this mask file instead of learning one")
    m.add_argument("--fresh-init", action="store_true",
                   help="with --mask: apply the mask to a NEW init/z from --seed (default: the mask's own)")
    m.add_argument("--mask-steps", type=int, default=1000, help="OES mask-learning steps")
    m.add_argument("--mask-lr", type=float, default=1e-2)
    m.add_argument("--scope", choices=("weights", "all"), default="weights",
                   help="mask conv/linear weights (default) or every parameter (OES authors' code)")
    m.add_argument("--min-layer-density", type=float, default=0.0,
                   help="per-layer floor of kept weights (prevents layer collapse at low density)")
    m.add_argument("--temperature", type=float, default=0.2)
    m.add_argument("--lam", type=float, default=1e-9, help="KL weight")


def add_task(p: argparse.ArgumentParser, task=None):
    p.add_argument("image", nargs="?", default=None,
                   help="PNG/JPEG image (default: a bundled scikit-image photo)")
    if task is None:
        p.add_argument("--task", choices=("denoise", "inpaint", "super-resolution"), default="denoise")
    p.add_argument("--sigma", type=float, default=None,
                   help="noise std on the 0-255 scale (default: 25 for denoising, 0 otherwise)")
    p.add_argument("--keep-fraction", type=float, default=0.5, help="inpainting: observed pixel fraction")
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor (2, 4, 8)")
    p.add_argument("--crop", type=int, default=None, help="centre-crop the image to CROP×CROP (no resizing)")
    p.add_argument("--grayscale", action="store_true")


def default_levels(hw, requested=None):
    if requested is not None:
        return requested
    lv = 6
    while lv > 1 and min(hw) < 4 * 2 ** lv:
        lv -= 1
    return lv


def load_task_image(args):
    from ..io import crop_center, load_image
    if args.image is None:
        from skimage import data
        img = data.astronaut().transpose(2, 0, 1).astype(np.float32) / 255.0
        src = "skimage.data.astronaut"
    else:
        img = load_image(args.image, grayscale=args.grayscale)
        src = str(args.image)
    if args.crop:
        img = crop_center(img, args.crop)
    return img, src


def build_problem(args, task):
    if args.image is not None and str(args.image).endswith((".h5", ".hdf5")):
        try:
            from .mri import problem_from_args
        except ImportError:
            raise UserError("MRI input needs the MRI module (mri_oes.commands.mri)") from None
        return problem_from_args(args)
    from ..problem import natural_problem
    img, src = load_task_image(args)
    prob = natural_problem(img, task, sigma255=args.sigma, keep_fraction=args.keep_fraction,
                           factor=args.factor, seed=args.seed)
    prob.info["source"] = src
    return prob


def run_config(args, method, problem):
    return RunConfig(method=method, steps=args.steps, mask_steps=args.mask_steps, density=args.density,
                     lr=args.lr, mask_lr=args.mask_lr, seed=args.seed,
                     levels=default_levels(problem.image_hw, args.levels), width=args.width, scope=args.scope,
                     min_layer_density=args.min_layer_density, temperature=args.temperature, lam=args.lam,
                     sgld_std=getattr(args, "sgld_std", 0.0), log_every=args.log_every, device=args.device,
                     mask_path=args.mask_path, fresh_init=args.fresh_init, progress=not args.no_progress)


def out_dir(args, name):
    return Path(args.out) if args.out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def print_summary(m, out):
    f, b = m["final"], m["best"]
    line = f"{m['method']}: density {m['density']:.4f} (sparsity {m['sparsity']:.4f})"
    if "psnr" in f:
        line += f" | final PSNR {f['psnr']:.2f} dB SSIM {f.get('ssim', float('nan')):.3f}"
        line += f" | best PSNR {b['psnr']:.2f} dB @ step {m['best_step']}"
    print(line + f" | {m['wall_time_s']:.1f}s")
    print(f"outputs written to {out}/")


def cmd_fit(args):
    task = getattr(args, "task", None) or args.fixed_task
    problem = build_problem(args, task)
    rc = run_config(args, args.method, problem)
    out = out_dir(args, f"{args.method}-{task}")
    m = run(problem, rc, out, overwrite=args.overwrite)
    print_summary(m, out)
    if m.get("collapse") and m["collapse"]["collapsed"]:
        print("WARNING: layer collapse detected:", m["collapse"])
    return 0


def cmd_learn_mask(args):
    """Learn an OES mask only (no Sparse-DIP training): writes mask.safetensors + finding1.png."""
    problem = build_problem(args, args.task)
    rc = run_config(args, "sparse-dip", problem)
    rc.steps = 0
    out = out_dir(args, "mask")
    m = run(problem, rc, out, overwrite=args.overwrite)
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
    img = data.astronaut()[100:228:2, 150:278:2].transpose(2, 0, 1).astype(np.float32) / 255.0
    out = out_dir(args, "demo")
    rows = []
    for method in ("dip", "sparse-dip"):
        prob = natural_problem(img, "denoise", sigma255=25, seed=args.seed)
        prob.info["source"] = "skimage.data.astronaut()[100:228:2, 150:278:2] (64x64 RGB)"
        rc = RunConfig(method=method, steps=args.steps, mask_steps=args.mask_steps, density=args.density,
                       min_layer_density=min(0.005, args.density / 2), seed=args.seed, levels=4, width=0.5,
                       device=args.device, progress=not args.no_progress, log_every=25)
        m = run(prob, rc, out / method, overwrite=args.overwrite)
        print_summary(m, out / method)
        rows.append(m)
    print("\nmethod       density  best PSNR (step)   final PSNR   final-best")
    for m in rows:
        print(f"{m['method']:<12} {m['density']:.3f}   {m['best']['psnr']:6.2f} ({m['best_step']:>5})"
              f"     {m['final']['psnr']:6.2f}     {m['final']['psnr'] - m['best']['psnr']:+.2f}")
    print(f"\nall outputs under {out}/")
    return 0


def register(sub):
    p = sub.add_parser("demo", help="run the embedded default case (no download, a few minutes on a CPU)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--mask-steps", type=int, default=800)
    p.add_argument("--density", type=float, default=0.03,
                   help="kept fraction (default 0.03: ~0.3 kept weights per pixel value, cf. SPEC §8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("learn-mask", help="learn an OES mask on an image (or an MRI .h5 file)")
    add_task(p)
    add_common(p)
    p.add_argument("--slice", type=int, nargs="+", default=[0], help="MRI: slice index")
    p.add_argument("--accel", type=int, default=4, help="MRI: acceleration")
    p.add_argument("--mask-type", default="equispaced", help="MRI: k-space mask type")
    p.set_defaults(func=cmd_learn_mask)

    p = sub.add_parser("fit", help="fit dense DIP, Sparse-DIP (OES), deep decoder or GP-DIP to an image")
    add_task(p)
    p.add_argument("--method", choices=METHODS, default="sparse-dip")
    p.add_argument("--sgld-std", type=float, default=0.02,
                   help="gp-dip: std of the noise added to conv weights each step (Cheng et al.: 2*lr)")
    add_common(p)
    p.set_defaults(func=cmd_fit, fixed_task=None)

    for name, task in (("denoise", "denoise"), ("inpaint", "inpaint"), ("super-resolve", "super-resolution")):
        p = sub.add_parser(name, help=f"{task} an image (shortcut for fit --task {task})")
        add_task(p, task=task)
        p.add_argument("--method", choices=METHODS, default="sparse-dip")
        p.add_argument("--sgld-std", type=float, default=0.02)
        add_common(p)
        p.set_defaults(func=cmd_fit, fixed_task=task)
