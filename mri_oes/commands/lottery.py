"""`mri-oes imp`, `mri-oes prune-at-init`, `mri-oes transfer`: lottery-ticket style baselines and mask
transfer (SPEC §5, §6, §7 transfer protocol). All training runs through ``core.fit``."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import UserError

TASKS = ("denoise", "inpaint", "super-resolution")


# ------------------------------------------------------------------------------------------ helpers
def load_natural(spec: str, crop=None, grayscale: bool = False) -> torch.Tensor:
    """CHW float tensor in [0, 1] from a file path or ``skimage:<name>`` (e.g. ``skimage:coffee``);
    ``crop``: explicit centre crop (never a silent resize)."""
    import numpy as np
    from ..io import crop_center, load_image
    if spec.startswith("skimage:"):
        from skimage import data
        name = spec.split(":", 1)[1]
        fn = getattr(data, name, None)
        if fn is None:
            raise UserError(f"unknown scikit-image sample {name!r}")
        a = np.asarray(fn(), dtype=np.float32)
        a = a / 255.0 if a.max() > 1 else a
        a = a[None] if a.ndim == 2 else a[..., :3].transpose(2, 0, 1)
        if grayscale and a.shape[0] == 3:
            a = a.mean(0, keepdims=True)
        img = np.ascontiguousarray(a)
    else:
        img = load_image(spec, grayscale=grayscale)
    if crop:
        img = crop_center(img, int(crop))
    return torch.from_numpy(img).float()


def auto_levels(hw, levels=None) -> int:
    if levels is not None:
        return int(levels)
    return max(1, min(6, int(math.floor(math.log2(max(min(hw) // 4, 1))))))


def _cfg(args, channels, hw):
    from ..generators import GeneratorConfig
    return GeneratorConfig.oes(out_channels=channels, levels=auto_levels(hw, args.levels), width=args.width)


def _add_problem_args(p, multi=False):
    p.add_argument("--task", choices=TASKS, default="denoise")
    p.add_argument("--sigma", type=float, default=25.0,
                   help="denoise noise std on the 0-255 scale (default 25; clipped to [0, 1])")
    p.add_argument("--keep-fraction", type=float, default=0.5, help="inpaint: observed pixel fraction")
    p.add_argument("--factor", type=int, default=4, choices=(2, 4, 8), help="super-resolution factor")
    p.add_argument("--crop", type=int, default=None, help="explicit centre crop to CROP×CROP (no resizing)")
    p.add_argument("--grayscale", action="store_true")
    p.add_argument("--levels", type=int, default=None, help="hourglass scales (default: min(6, log2(side/4)))")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--scope", choices=("weights", "all"), default="weights")
    p.add_argument("--min-layer-density", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", required=True, help="output folder")


def _problem(args, img, name):
    from ..transfer import natural_problem
    if not 0 < args.keep_fraction <= 1:
        raise UserError("--keep-fraction must be in (0, 1]")
    if args.sigma < 0:
        raise UserError("--sigma must be >= 0")
    return natural_problem(img, args.task, sigma255=args.sigma, keep_fraction=args.keep_fraction,
                           factor=args.factor, seed=args.seed, name=name)


def _img_out(op, x):
    x = x.detach().cpu()
    return x[0].clamp(0, 1).numpy()


# ---------------------------------------------------------------------------------------------- imp
def run_imp_cmd(args) -> int:
    from .. import pruning
    from ..io import save_image, versions, write_json
    imgs = [load_natural(s, args.crop, args.grayscale) for s in args.image]
    if len({tuple(i.shape) for i in imgs}) != 1:
        raise UserError(f"all images must have the same size, got {[tuple(i.shape) for i in imgs]}")
    if args.rounds is None and args.target_density is None:
        raise UserError("give --rounds or --target-density")
    hw = tuple(imgs[0].shape[-2:])
    cfg = _cfg(args, imgs[0].shape[0], hw)
    probs = [_problem(args, im, Path(s).stem) for im, s in zip(imgs, args.image)]
    rewind = args.rewind if args.rewind == "init" else int(args.rewind)
    out = Path(args.out)
    res = pruning.run_imp(cfg, hw, args.seed, [(p.operator, p.y) for p in probs], args.steps_per_round,
                          rounds=args.rounds, target_density=args.target_density,
                          prune_fraction=args.prune_fraction, rewind=rewind, scope=args.scope, out_dir=out,
                          evaluate=[p.evaluate for p in probs],
                          oracle_clean_target=imgs if args.oracle_clean_target else None,
                          stop_rising=args.stop_rising, resume=not args.no_resume,
                          shared_z=args.shared_z, bn=args.bn,
                          lr=args.lr, input_noise_std=args.input_noise_std,
                          min_layer_density=args.min_layer_density, log_every=args.log_every,
                          progress=args.progress)
    for i, p in enumerate(probs):
        save_image(out / f"y_{i}.png", p.y[0].clamp(0, 1).numpy())
    write_json(out / "imp_summary.json", {
        "images": args.image, "task": args.task, "image_hw": list(hw), "generator": cfg.to_dict(),
        "target": "oracle-clean" if args.oracle_clean_target else "y", "stopped_early": res["stopped_early"],
        "recommended_round": res["recommended_round"],
        "rounds": [{k: r[k] for k in ("round", "density", "sparsity", "kept_weights", "final_loss", "final",
                                      "best", "best_step", "collapse", "mask_file")} for r in res["rounds"]],
        "versions": versions()})
    print(f"IMP: {len(res['rounds'])} rounds, recommended round {res['recommended_round']} "
          f"(density {res['rounds'][res['recommended_round']]['density']:.4f}); results in {out}")
    return 0


# ------------------------------------------------------------------------------------ prune-at-init
def run_pai_cmd(args) -> int:
    from .. import methods, pruning
    from ..io import save_image, versions, write_json
    from ..masks import check_density
    from ..transfer import measurement_count
    check_density(args.density)
    if args.steps < 0:
        raise UserError("--steps must be >= 0")
    img = load_natural(args.image, args.crop, args.grayscale)
    hw = tuple(img.shape[-2:])
    cfg = _cfg(args, img.shape[0], hw)
    prob = _problem(args, img, Path(args.image).stem)
    net, z, seeds = methods.setup_generator(cfg, hw, args.seed)
    meta = {"generator": cfg.to_dict(), **seeds, "image_hw": list(hw), "image": args.image, "task": args.task}
    mask = pruning.prune_at_init(args.method, net, z, prob.operator, prob.y, args.density, seed=args.seed,
                                 scope=args.scope, min_layer_density=args.min_layer_density,
                                 synflow_rounds=args.synflow_rounds, meta=meta)
    out = Path(args.out)
    mask.save(out / "mask.safetensors")
    res = methods.train_generator(net, z, prob.operator, prob.y, steps=args.steps, mask=mask, lr=args.lr,
                                  evaluate=prob.evaluate, log_every=args.log_every, seed=args.seed,
                                  progress=args.progress, checkpoint=out / "fit.ckpt.pt",
                                  fingerprint=f"pai-{args.method}-{args.density}-{args.seed}-{args.steps}")
    s = res.summary()
    if res.output is not None:
        save_image(out / "recon.png", _img_out(prob.operator, res.output))
    if res.best_output is not None:
        save_image(out / "best.png", _img_out(prob.operator, res.best_output))
    n_meas = measurement_count(prob.operator)
    write_json(out / "metrics.json", {
        "method": args.method, "density": mask.density, "sparsity": mask.sparsity,
        "kept_weights": mask.n_kept, "maskable_weights": mask.n_total,
        "kept_per_measurement": mask.n_kept / n_meas, "collapse": mask.meta["collapse"],
        "per_layer_density": mask.per_layer_density(),
        "final_psnr": s["final"].get("psnr"), "final_ssim": s["final"].get("ssim"),
        "best_psnr": s["best"].get("psnr"), "best_ssim": s["best"].get("ssim"), "best_step": s["best_step"],
        "steps": args.steps, "lr": args.lr, "diverged": res.diverged, "image": args.image,
        "image_hw": list(hw), "problem": prob.info, "generator": cfg.to_dict(), "seeds": seeds,
        "history": res.history, "wall_time_s": s["wall_time_s"], "versions": versions()})
    col = " LAYER COLLAPSE" if mask.meta["collapse"]["collapsed"] else ""
    fp, bp = s["final"].get("psnr"), s["best"].get("psnr")
    print(f"{args.method} d={mask.density:.4f}: final PSNR {fp:.2f} dB, best {bp:.2f} dB @ {s['best_step']}"
          f"{col}; results in {out}" if fp is not None else f"done{col}; results in {out}")
    return 0


# ----------------------------------------------------------------------------------------- transfer
def run_transfer_cmd(args) -> int:
    from .. import transfer
    from ..generators import GeneratorConfig
    densities = [float(d) for d in args.densities]
    kw = dict(densities=densities, methods_=args.methods, mask_steps=args.mask_steps,
              train_steps=args.train_steps, imp_steps_per_round=args.imp_steps_per_round,
              imp_rounds=args.imp_rounds, lr=args.lr, dense_lr=args.dense_lr, scope=args.scope,
              min_layer_density=args.min_layer_density, log_every=args.log_every, progress=args.progress,
              seed=args.seed)
    if args.mri:
        targets = []
        for t in args.mri_targets or []:
            f, _, s = t.rpartition(":")
            if not f:
                raise UserError(f"--mri-targets entries are FILE:SLICE, got {t!r}")
            targets.append((f, int(s)))
        cfg = GeneratorConfig.oes(mri=True, levels=args.levels or 6, width=args.width)
        res = transfer.mri_transfer(args.mri, args.out, source_slice=args.mri_slice, targets=targets,
                                    accels=args.accels, cfg=cfg, **kw)
    else:
        if not args.image:
            raise UserError("give IMAGE(s) or --mri FILE")
        imgs = {}
        for s in args.image:
            name = Path(s.split(":", 1)[-1]).stem
            if name in imgs:
                name = f"{name}{len(imgs)}"
            imgs[name] = load_natural(s, args.crop, args.grayscale)
        hw = tuple(next(iter(imgs.values())).shape[-2:])
        cfg = _cfg(args, next(iter(imgs.values())).shape[0], hw)
        res = transfer.natural_transfer(imgs, args.out, source_task=args.source_task, tasks=args.tasks,
                                        cfg=cfg, sigma255=args.sigma, keep_fraction=args.keep_fraction,
                                        factor=args.factor, **kw)
    print(f"transfer: {len(res['rows'])} cases; table in {Path(args.out) / 'table.csv'}")
    return 0


# ----------------------------------------------------------------------------------------- register
def register(subparsers) -> None:
    p = subparsers.add_parser("imp", help="iterative magnitude pruning / Lottery Image Prior masks",
                              description="IMP (LIP Alg. 1-2): train N steps, prune 20%% of the remaining "
                                          "weights by global magnitude, rewind, repeat. Trains against "
                                          "the degraded image y (the clean image only with "
                                          "--oracle-clean-target).")
    p.add_argument("image", nargs="+", help="image file(s) or skimage:<name>; several = multi-image IMP")
    _add_problem_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rounds", type=int, default=None, help="number of pruning rounds")
    g.add_argument("--target-density", type=float, default=None, help="prune until density <= this")
    p.add_argument("--steps-per-round", type=int, default=1000)
    p.add_argument("--prune-fraction", type=float, default=0.2)
    p.add_argument("--rewind", default="init", help="'init' (theta_0) or a step number j")
    p.add_argument("--stop-rising", type=int, default=None, help="stop when the loss rose K rounds in a row")
    p.add_argument("--shared-z", action="store_true", help="multi-image: one z for all images")
    p.add_argument("--bn", choices=("per-image", "batch"), default="per-image",
                   help="multi-image BatchNorm statistics: per image (default) or pooled over the batch")
    p.add_argument("--oracle-clean-target", action="store_true",
                   help="ORACLE: train IMP against the clean image (the LIP authors' code)")
    p.add_argument("--input-noise-std", type=float, default=0.0)
    p.add_argument("--no-resume", action="store_true")
    p.set_defaults(func=run_imp_cmd)

    p = subparsers.add_parser("prune-at-init", help="random/magnitude/SNIP/GraSP/SynFlow mask, then train",
                              description="Mask at theta_in by a pruning-at-initialisation score (keep the "
                                          "highest keep-score; GraSP removes the highest -theta*Hg), "
                                          "then train the masked network.")
    p.add_argument("image", help="image file or skimage:<name>")
    p.add_argument("--method", choices=("random", "magnitude", "snip", "grasp", "synflow"), required=True)
    p.add_argument("--density", type=float, required=True, help="kept fraction")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--synflow-rounds", type=int, default=100)
    _add_problem_args(p)
    p.set_defaults(func=run_pai_cmd)

    p = subparsers.add_parser("transfer", help="mask transfer table (OES appendix H / Table 5)",
                              description="Learn OES and equal-density IMP masks on a source, reuse them on "
                                          "other images/tasks (natural) or slices/accelerations (MRI, --mri).")
    p.add_argument("image", nargs="*", help="natural images (first = source), files or skimage:<name>")
    _add_problem_args(p)
    p.add_argument("--source-task", choices=TASKS, default="denoise")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--densities", nargs="+", type=float, default=[0.5, 0.2, 0.1, 0.03])
    p.add_argument("--methods", nargs="+", choices=("dense", "oes", "imp"), default=["dense", "oes", "imp"])
    p.add_argument("--mask-steps", type=int, default=2000)
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--imp-steps-per-round", type=int, default=500)
    p.add_argument("--imp-rounds", type=int, default=None)
    p.add_argument("--dense-lr", type=float, default=None)
    p.add_argument("--mri", default=None, help="fastMRI multi-coil file of the source scan")
    p.add_argument("--mri-slice", type=int, default=0)
    p.add_argument("--mri-targets", nargs="*", default=None, help="FILE:SLICE of other scans")
    p.add_argument("--accels", nargs="+", type=int, choices=(4, 8), default=[4, 8])
    p.set_defaults(func=run_transfer_cmd)
