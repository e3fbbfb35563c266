"""`mri-oes imp`, `mri-oes prune-at-init`, `mri-oes transfer`: lottery-ticket style baselines and mask
transfer (the OES paper's transfer protocol). All training runs through ``core.fit``."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..cli_common import (_ranged, add_generator_args, add_mask_args, add_operator_args, add_renamed,
                          add_run_args, add_task_args, add_training_args, floor_density, mask_density,
                          nonneg_float, nonneg_int, out_path, positive_float, positive_int, recipe_from_args,
                          setup_runtime)
from ..errors import UserError
from ..recipe import without_off_values

TASKS = ("denoise", "inpaint", "super-resolution")


# ---------------------------------------------------------------------------------------- utilities
def load_natural(spec: str, crop=None, grayscale: bool = False) -> torch.Tensor:
    """CHW float tensor in [0, 1] from a file path or ``skimage:<name>`` (e.g. ``skimage:coffee``);
    ``crop``: explicit centre crop (never a silent resize)."""
    import numpy as np
    from operators.base import center_crop
    from ..io import load_image
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
        img = center_crop(img, (int(crop), int(crop)))
    return torch.from_numpy(img).float()


def _cfg(args, channels, hw):
    from ..generators import GeneratorConfig, largest_levels
    return GeneratorConfig.oes(out_channels=channels, levels=args.levels or largest_levels(hw), width=args.width)


def _add_problem_args(p, operator=False, task=True):
    add_task_args(p, task=task)
    if operator:
        add_operator_args(p)
    add_generator_args(p)


def _identity(args, images, command) -> dict:
    """Run identity for the whole command: every option plus digests of the inputs."""
    from ..statefile import tensor_digest
    cfg = {k: v for k, v in vars(args).items() if k not in ("func", "progress", "out", "overwrite", "threads")}
    if command in ("imp", "transfer"):   # checkpoints do not change a result (flag added after their first runs)
        cfg.pop("checkpoint_every", None)
    if command == "transfer":
        cfg.setdefault("task", "denoise")   # identity of runs made when transfer listed an unused --task
    if cfg.get("operator") is None:   # runs without a plugin keep the identity they had before the flag
        cfg.pop("operator", None), cfg.pop("operator_args", None)
    return {"command": command, "config": cfg, "inputs": [tensor_digest(t) for t in images]}


def _problem(args, img, name):
    if getattr(args, "operator", None):
        from ..problem import operator_problem
        p = operator_problem(img.detach().cpu().numpy(), args.operator, args.operator_args,
                             sigma255=args.sigma, seed=args.seed)
        p.info.update({"image": name, "scan": name})
        return p
    from ..transfer import natural_problem
    sigma = 25.0 if args.sigma is None else args.sigma
    return natural_problem(img, args.task, sigma255=sigma, keep_fraction=args.keep_fraction,
                           factor=args.factor, seed=args.seed, name=name)


# ---------------------------------------------------------------------------------------------- imp
def run_imp_cmd(args) -> int:
    from .. import imp
    from ..io import save_image, write_json
    from ..rundir import RunDir
    from ..schema import make_record, flatten, write_table
    from ..transfer import measurement_count
    dev = setup_runtime(args)
    imgs = [load_natural(s, args.crop, args.grayscale) for s in args.image]
    if len({tuple(i.shape) for i in imgs}) != 1:
        raise UserError(f"all images must have the same size, got {[tuple(i.shape) for i in imgs]}")
    if args.rounds is None and args.target_density is None:
        raise UserError("give --rounds or --target-density")
    hw = tuple(imgs[0].shape[-2:])
    cfg = _cfg(args, imgs[0].shape[0], hw)
    from ..generators import check_image_size
    check_image_size(cfg, hw)
    probs = [_problem(args, im, Path(s).stem) for im, s in zip(imgs, args.image)]
    rewind = args.rewind if args.rewind == "init" else int(args.rewind)
    out = out_path(args, "imp")
    with RunDir(out, _identity(args, imgs, "imp"), args.overwrite) as rd:
        res = imp.run_imp(cfg, hw, args.seed, [(p.operator, p.y) for p in probs], args.steps,
                              rounds=args.rounds, target_density=args.target_density,
                              prune_fraction=args.prune_fraction, rewind=rewind, scope=args.scope,
                              out_dir=rd.work, evaluate=[p.evaluate for p in probs],
                              oracle_clean_target=imgs if args.oracle_clean_target else None,
                              stop_rising=args.stop_rising, resume=True,
                              shared_z=args.shared_z, bn=args.bn, device=dev,
                              lr=args.lr, input_noise_std=args.input_noise_std, precision=args.precision,
                              min_layer_density=args.min_layer_density, log_every=args.log_every,
                              progress=args.progress, checkpoint_every=args.checkpoint_every)
        for i, p in enumerate(probs):
            save_image(rd.work / f"y_{i}.png", p.y[0].clamp(0, 1).numpy())
        n_meas = sum(measurement_count(p.operator) for p in probs)
        scan = "+".join(Path(s).stem for s in args.image)
        records = []
        for r in res["rounds"]:
            rec = make_record(
                command="imp", method="dip" if r["round"] == 0 else "sparse-dip",
                mask_source="none" if r["round"] == 0 else "imp", density=r["density"],
                kept_weights=r["kept_weights"], maskable_weights=round(r["kept_weights"] / max(r["density"], 1e-12)),
                measurements=n_meas, steps=args.steps, mask_steps=0, lr=args.lr, seed=args.seed,
                final=r.get("final"), best=r.get("best"), best_step=r.get("best_step"),
                time_total_s=r.get("wall_time_s") or 0.0, device=str(dev),
                config={k: v for k, v in vars(args).items() if k != "func"}, task=args.operator or args.task,
                scan=scan,
                round=r["round"], final_loss=r.get("final_loss"), collapse=r.get("collapse"),
                mask_file=r.get("mask_file"), target="oracle-clean" if args.oracle_clean_target else "y",
                generator=cfg.to_dict())
            write_json(rd.work / f"round_{r['round']:02d}" / "metrics.json", rec)
            records.append(rec)
        best = dict(records[res["recommended_round"]])
        best.update(rounds=[flatten(r) for r in records], stopped_early=res["stopped_early"],
                    recommended_round=res["recommended_round"])
        write_table([flatten(r, run_dir=str(out / f"round_{r['round']:02d}")) for r in records], rd.work / "table")
        write_json(rd.work / "metrics.json", best)
        rd.commit()
    rr = res["recommended_round"]
    print(f"IMP: {len(res['rounds'])} rounds, recommended round {rr} "
          f"(density {res['rounds'][rr]['density']:.4f}); results in {out}")
    return 0


# ------------------------------------------------------------------------------------ prune-at-init
def run_pai_cmd(args) -> int:
    from ..runner import run
    setup_runtime(args)
    recipe = recipe_from_args(args, method="sparse-dip")
    img = load_natural(args.image, args.crop, args.grayscale)
    prob = _problem(args, img, Path(args.image).stem)
    out = out_path(args, "prune-at-init")
    m = run(prob, recipe, out, overwrite=args.overwrite, command="prune-at-init")
    collapsed = " LAYER COLLAPSE" if m["collapse"] and m["collapse"]["collapsed"] else ""
    fp, bp = m["final"].get("psnr"), m["best"].get("psnr")
    print(f"{args.mask_source} d={m['density']:.4f}: final PSNR {fp:.2f} dB, oracle best {bp:.2f} dB @ "
          f"{m['best'].get('step')}{collapsed}; results in {out}" if fp is not None else f"done{collapsed}; results in {out}")
    if m["diverged"]:
        print(f"error: the fit diverged (non-finite loss); see {out}/metrics.json", file=sys.stderr)
        return 3
    return 0


# ----------------------------------------------------------------------------------------- transfer
#: the recipe options transfer takes from --preset, or else from the recipe with the protocol's mask steps
TRANSFER_OPTIONS = ("steps", "mask_steps", "lr", "precision")
PROTOCOL_MASK_STEPS = 2000


def _transfer_recipe(args):
    """``--preset``'s sparse-dip recipe at the source's 4x (one network for every target: the masks are
    reused across accelerations), or the paper's protocol (the OES hourglass, 2,000 mask steps); the
    flags not given are filled from it."""
    from ..recipe import Recipe
    if args.preset:
        from ..mri import presets
        if presets.for_accel(presets.get(args.preset), 4).get("operator", "maps") != "maps":
            raise UserError(f"--preset {args.preset}: transfer needs the maps operator")
        recipe = Recipe.from_preset(args.preset, 4, method="sparse-dip")
    else:
        recipe = Recipe().override(mask_steps=PROTOCOL_MASK_STEPS)
    for k in TRANSFER_OPTIONS:
        if getattr(args, k) is None:
            setattr(args, k, getattr(recipe, k))
    return recipe


def _preset_network(recipe, hw):
    """``(generator config, fit options, data consistency)`` of a preset recipe on the source grid."""
    cfg = recipe.for_grid(hw).generator_config(2, mri=True)   # the maps operator's network: 2 outputs
    fit = {k: getattr(recipe, k) for k in ("lr_final", "grad_clip", "input_noise_std", "output_average")}
    return cfg, without_off_values({**fit, "lr_decay_start": recipe.lr_decay_start}), recipe.data_consistency


def run_transfer_cmd(args) -> int:
    from .. import transfer
    from ..generators import GeneratorConfig, largest_levels
    from ..rundir import RunDir
    if args.preset and not args.mri:
        raise UserError("--preset is for MRI transfer (--mri FILE)")
    setup_runtime(args)
    recipe = _transfer_recipe(args)
    preset_cfg = None
    if args.preset:
        from ..mri.data import load_slice
        preset_cfg = _preset_network(recipe, tuple(load_slice(args.mri, args.slice).kspace.shape[-2:]))
    densities = [float(d) for d in args.densities]
    kw = dict(densities=densities, methods_=args.mask_sources, mask_steps=args.mask_steps,
              train_steps=args.steps, imp_steps_per_round=args.imp_steps,
              imp_rounds=args.imp_rounds, lr=args.lr, dense_lr=args.dense_lr, scope=args.scope,
              min_layer_density=args.min_layer_density, log_every=args.log_every, progress=args.progress,
              seed=args.seed, precision=args.precision, checkpoint_every=args.checkpoint_every)
    out = out_path(args, "transfer")
    if args.mri:
        from ..mri.data import load_slice
        targets = []
        for t in args.mri_targets or []:
            f, _, s = t.rpartition(":")
            if not f or not s.isdigit():
                raise UserError(f"--mri-targets entries are FILE:SLICE, got {t!r}")
            targets.append((f, int(s)))
        src = load_slice(args.mri, args.slice)   # validates the file before anything is written
        hw = tuple(src.kspace.shape[-2:])
        for f, sl in targets:
            load_slice(f, sl)
        if preset_cfg is not None:
            cfg, fit_options, dc = preset_cfg
        else:
            cfg = GeneratorConfig.oes(mri=True, levels=args.levels or largest_levels(hw), width=args.width)
            fit_options, dc = None, False
        from ..statefile import file_digest
        ident = {"command": "transfer", "config": {k: v for k, v in vars(args).items()
                                                   if k not in ("func", "progress", "out", "overwrite", "threads",
                                                                "checkpoint_every")
                                                   and not (k == "preset" and v is None)},
                 "inputs": [file_digest(args.mri)] + [file_digest(f) for f, _ in targets]}
        with RunDir(out, ident, args.overwrite) as rd:
            res = transfer.mri_transfer(args.mri, rd.work, source_slice=args.slice, targets=targets,
                                        accels=args.accels, cfg=cfg, data_consistency=dc,
                                        fit_options=fit_options, **kw)
            _transfer_record(rd, res, args)
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
        from ..generators import check_image_size
        check_image_size(cfg, hw)
        sigma = 25.0 if args.sigma is None else args.sigma
        with RunDir(out, _identity(args, list(imgs.values()), "transfer"), args.overwrite) as rd:
            res = transfer.natural_transfer(imgs, rd.work, source_task=args.source_task, tasks=args.tasks,
                                            cfg=cfg, sigma255=sigma, keep_fraction=args.keep_fraction,
                                            factor=args.factor, **kw)
            _transfer_record(rd, res, args)
    print(f"transfer: {len(res['rows'])} cases; table in {out / 'table.csv'}")
    return 0


def _transfer_record(rd, res, args):
    """One schema record per case (``cases/<case>/metrics.json``); the run's own ``metrics.json`` is a
    collection listing them (``summarize`` reads the cases)."""
    from ..io import write_json
    for r in res["rows"]:
        write_json(rd.work / "cases" / r["case"] / "metrics.json", {k: v for k, v in r.items() if k != "curve"})
    write_json(rd.work / "metrics.json", {"schema": "mri_oes.result/1", "kind": "collection",
                                          "records": [f"cases/{r['case']}/metrics.json" for r in res["rows"]]})
    rd.commit()


# ----------------------------------------------------------------------------------------- register
def register(subparsers) -> None:
    _register_imp(subparsers)
    _register_prune_at_init(subparsers)
    _register_transfer(subparsers)


def _register_imp(subparsers) -> None:
    p = subparsers.add_parser("imp", help="iterative magnitude pruning / Lottery Image Prior masks",
                              description="IMP (LIP Alg. 1-2): train --steps steps, prune 20% of the remaining "
                                          "weights by global magnitude, rewind, repeat. Trains against "
                                          "the degraded image y (the clean image only with "
                                          "--oracle-clean-target). Each round gets round_NN/metrics.json. "
                                          "Resumable: rerun the same command after a kill (finished rounds "
                                          "are kept, the running round continues from its checkpoint).")
    p.add_argument("image", nargs="+", help="image file(s) or skimage:<name>; several = multi-image IMP")
    _add_problem_args(p, operator=True)
    add_training_args(p, steps=1000)
    g = p.add_argument_group("IMP")
    r = g.add_mutually_exclusive_group()
    r.add_argument("--rounds", type=positive_int, default=None, help="number of pruning rounds")
    r.add_argument("--target-density", type=mask_density, default=None, help="prune until density <= this")
    g.add_argument("--prune-fraction", type=_ranged(float, 0, 1, lo_open=True, hi_open=True), default=0.2,
                   help="fraction of the remaining weights pruned per round (default 0.2)")
    g.add_argument("--rewind", default="init",
                   help="where the surviving weights are rewound after each round: 'init' (theta_0, "
                        "default) or a step number j of round 0")
    g.add_argument("--stop-rising", type=positive_int, default=None,
                   help="stop when the loss rose K rounds in a row (default: never)")
    g.add_argument("--shared-z", action="store_true", help="multi-image: one z for all images")
    g.add_argument("--bn", choices=("per-image", "batch"), default="per-image",
                   help="multi-image BatchNorm statistics: per image (default) or pooled over the batch")
    g.add_argument("--oracle-clean-target", action="store_true",
                   help="ORACLE: train IMP against the clean image (the LIP authors' code)")
    g.add_argument("--input-noise-std", type=nonneg_float, default=0.0,
                   help="std of the noise added to the network input z each step (default 0 = off)")
    g.add_argument("--min-layer-density", type=floor_density, default=0.0,
                   help="per-layer floor of kept weights (default 0)")
    g.add_argument("--scope", choices=("weights", "all"), default="weights",
                   help="prune conv/linear weights only (default) or every parameter")
    add_run_args(p)
    p.set_defaults(func=run_imp_cmd)


def _register_prune_at_init(subparsers) -> None:
    p = subparsers.add_parser("prune-at-init", help="random/magnitude/SNIP/GraSP/SynFlow mask, then Sparse-DIP",
                              description="Mask at theta_in by a pruning-at-initialisation score (keep the "
                                          "highest keep-score; GraSP removes the highest -theta*Hg), "
                                          "then train the masked network (method sparse-dip).")
    p.add_argument("image", help="image file or skimage:<name>")
    p.add_argument("--mask-source", choices=("random", "magnitude", "snip", "grasp", "synflow"), required=True,
                   help="pruning-at-init score (the result's mask_source)")
    p.add_argument("--synflow-rounds", type=positive_int, default=100,
                   help="SynFlow: iterative scoring rounds (default 100)")
    _add_problem_args(p, operator=True)
    add_training_args(p)
    add_mask_args(p, learn=False, reuse=False)
    add_run_args(p)
    p.set_defaults(func=run_pai_cmd)


def _register_transfer(subparsers) -> None:
    p = subparsers.add_parser("transfer", help="mask transfer table (OES appendix H / Table 5)",
                              description="Learn OES and equal-density IMP masks on a source, reuse them on "
                                          "other images/tasks (natural) or scans/accelerations (MRI, --mri). "
                                          "Resumable: rerun the same command after a kill (finished cases "
                                          "and masks are kept, running fits continue from their checkpoints).")
    p.add_argument("image", nargs="*", help="natural images (first = source), files or skimage:<name>")
    _add_problem_args(p, task=False)
    add_training_args(p, steps="2000, or from --preset", lr="0.01, or from --preset",
                      precision="float32, or from --preset")   # resolved in run_transfer_cmd
    g = p.add_argument_group("transfer")
    g.add_argument("--source-task", choices=TASKS, default="denoise",
                   help="natural images: the task the masks are learned on (default denoise)")
    g.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                   help="natural images: the tasks the masks are reused on (default all three)")
    add_renamed(g, "--density", "--densities", dest="densities", metavar="DENSITY", nargs="+", type=mask_density, default=[0.5, 0.2, 0.1, 0.03],
                help="mask densities, one or more (default 0.5 0.2 0.1 0.03)")
    add_renamed(g, "--mask-source", "--mask-sources", dest="mask_sources", nargs="+", choices=("none", "oes", "imp"),
                default=["none", "oes", "imp"], help="what to compare, one or more: none (dense DIP), oes, "
                                                     "imp (default all)")
    g.add_argument("--mask-steps", type=positive_int, default=None,
                   help=f"OES mask-learning steps (default {PROTOCOL_MASK_STEPS}, or from --preset)")
    g.add_argument("--imp-steps", type=positive_int, default=500,
                   help="IMP training steps per round (default 500)")
    g.add_argument("--imp-rounds", type=positive_int, default=None,
                   help="IMP pruning rounds (default: enough rounds of 20%% pruning to reach each density)")
    g.add_argument("--dense-lr", type=positive_float, default=None, help="learning rate of dense DIP (default --lr)")
    g.add_argument("--min-layer-density", type=floor_density, default=0.0,
                   help="per-layer floor of kept weights (default 0)")
    g.add_argument("--scope", choices=("weights", "all"), default="weights",
                   help="mask conv/linear weights only (default) or every parameter")
    m = p.add_argument_group("MRI (--mri)")
    m.add_argument("--mri", default=None, help="fastMRI multi-coil file of the source scan")
    m.add_argument("--slice", type=nonneg_int, default=0, help="slice of the source scan (default 0)")
    m.add_argument("--mri-targets", nargs="*", default=None, help="FILE:SLICE of other scans")
    add_renamed(m, "--accel", "--accels", dest="accels", nargs="+", type=int, choices=(4, 8), default=[4, 8],
                help="k-space accelerations, one or more (default 4 8)")
    m.add_argument("--preset", choices=("cpu", "gpu"), default=None,
                   help="train recon's network (mri_oes.mri.presets at the source's 4x: generator and width, "
                        "lr and its schedule, output averaging, data consistency, precision; steps and mask "
                        "steps unless given) instead of the paper's OES hourglass; the densities stay the "
                        "protocol's. final = the data-consistent image, final_network = the network output")
    add_run_args(p)
    p.set_defaults(func=run_transfer_cmd)
