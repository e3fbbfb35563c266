"""`mri-oes recon`: reconstruct slices of a fastMRI multi-coil file.

    mri-oes recon FILE.h5 --slice 0 --accel 4 --mask-type equispaced --method l1-wavelet --out DIR

Methods: ``zero-filled``, ``sense``, ``l1-wavelet`` (SigPy), ``dip`` (dense hourglass, no early
stopping: the final iterate is saved; the best-PSNR step is only reported) and ``sparse-dip`` (the
hourglass restricted to an OES mask: ``--mask FILE`` from ``mri-oes learn-mask``, or ``--density D``
to learn the mask on this slice first).

Per slice, under ``DIR/<file stem>_slice<NNN>_<method>_<accel>x/``: ``<file name>`` (fastMRI reconstruction file: dataset
``reconstruction`` [1, h, w] float32 magnitude at the metric crop, like
``fastmri.save_reconstructions``), ``recon.png``, ``zero_filled.png``, ``reference.png``,
``error.png`` (|recon − reference| × ``error_gain`` / data range), ``metrics.json``, and for network
methods ``psnr_curve.png``. Everything is validated (file, slices, mask, options) before any output
is created.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import UserError

METHODS = ("zero-filled", "sense", "l1-wavelet", "dip", "sparse-dip")
ERROR_GAIN = 5.0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recon", help="reconstruct fastMRI multi-coil slices (zero-filled, SENSE, L1-wavelet, DIP, Sparse-DIP)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="fastMRI multi-coil HDF5 file (kspace [slices, coils, H, W])")
    p.add_argument("--slice", type=int, nargs="+", default=[0], help="slice index/indices (default 0)")
    p.add_argument("--accel", type=int, choices=(4, 8), default=None,
                   help="acceleration for fully sampled files (omit for files that are already undersampled)")
    p.add_argument("--mask-type", choices=("random", "equispaced", "equispaced-fraction"), default="equispaced",
                   help="fastMRI line mask (default equispaced = fastmri EquiSpacedMaskFunc)")
    p.add_argument("--center-fraction", type=float, default=None, help="default: 0.08 at 4x, 0.04 at 8x")
    p.add_argument("--method", choices=METHODS, required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--mask", dest="oes_mask", default=None, help="sparse-dip: OES mask file (.safetensors)")
    g.add_argument("--density", type=float, default=None,
                   help="sparse-dip: learn an OES mask of this density on the slice first")
    p.add_argument("--steps", type=int, default=2000, help="network methods: training steps")
    p.add_argument("--oes-steps", type=int, default=None, help="sparse-dip --density: mask-learning steps (default --steps)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--levels", type=int, default=6, help="network methods: hourglass scales")
    p.add_argument("--width", type=float, default=1.0, help="network methods: channel width multiplier")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--lamda", type=float, default=None, help="sense / l1-wavelet regularisation (scaled units)")
    p.add_argument("--max-iter", type=int, default=None, help="sense / l1-wavelet iterations")
    p.add_argument("--seed", type=int, default=0, help="seed of the k-space mask and of the network")
    p.add_argument("--device", default="cpu")
    p.add_argument("--espirit-calib-width", type=int, default=None)
    p.add_argument("--espirit-kernel-width", type=int, default=None)
    p.add_argument("--espirit-thresh", type=float, default=0.02)
    p.add_argument("--espirit-crop", type=float, default=0.0,
                   help="ESPIRiT eigenvalue crop (default 0 = maps everywhere: robust with few ACS lines; "
                        "0.95 = classic support crop, which can cut anatomy when the ACS region is small)")
    p.add_argument("--espirit-cache", default=None, help="ESPIRiT cache file (default DIR/espirit_cache.h5)")
    p.add_argument("--no-espirit-cache", action="store_true")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run_recon)


# ------------------------------------------------------------------------------------------ helpers
def _device(name):
    import torch
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return dev


def _validate(args):
    """Every check that can fail on user input, before anything is written."""
    from ..mri.data import load_slices, make_mask
    from ..mri.espirit import espirit_params
    if args.steps < 0:
        raise UserError(f"--steps must be >= 0, got {args.steps}")
    if args.method != "sparse-dip" and (args.oes_mask or args.density is not None):
        raise UserError("--mask / --density are only for --method sparse-dip")
    if args.method == "sparse-dip" and not (args.oes_mask or args.density is not None):
        raise UserError("--method sparse-dip needs --mask MASKFILE or --density D")
    if args.density is not None and not 0 < args.density <= 1:
        raise UserError(f"--density must be in (0, 1], got {args.density}")
    dev = _device(args.device)
    oes_mask = None
    if args.oes_mask:
        from ..masks import Mask
        oes_mask = Mask.load(args.oes_mask)
        mcfg = oes_mask.generator_config()   # raises if the file cannot rebuild its generator
        if mcfg.out_channels != 2 or mcfg.sigmoid:
            raise UserError(f"mask {args.oes_mask} belongs to a generator with {mcfg.out_channels} output "
                            f"channels (sigmoid={mcfg.sigmoid}); MRI needs 2 linear channels (real, imag): "
                            "learn the mask on an MRI file (mri-oes learn-mask FILE.h5)")
    slices = load_slices(args.file, args.slice)
    esp = {"calib_width": args.espirit_calib_width, "kernel_width": args.espirit_kernel_width,
           "thresh": args.espirit_thresh, "crop": args.espirit_crop}
    for sl in slices:
        if sl.mask is None:
            if args.accel is None:
                raise UserError(f"{args.file}: slice {sl.index} is fully sampled: give --accel 4 or 8")
            m, _ = make_mask(sl.kspace.shape[-1], args.accel, args.mask_type, args.seed, args.center_fraction)
        else:
            m = sl.mask
        espirit_params(m, **esp)
    return slices, esp, dev, oes_mask


def _norm(img, vmax):
    return np.abs(img) / max(vmax, 1e-30)


def _write_recon_h5(path, image, attrs):
    import h5py
    from ..io import atomic_path
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=np.asarray(image, np.float32)[None])
            for k, v in attrs.items():
                f.attrs[k] = v


def _psnr_curve(path, history, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..io import atomic_path
    rows = [r for r in history if "psnr" in r]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in rows], [r["psnr"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _network_recon(args, problem, dev, oes_mask):
    """dip / sparse-dip through the lead's core. Returns (image original units, extra metrics dict)."""
    from ..generators import GeneratorConfig
    from ..methods import learn_oes_mask, setup_generator, train_generator, collapse_report
    op, y = problem.operator.to(dev), problem.y.to(dev)
    hw = problem.image_shape
    extra = {}
    if oes_mask is not None:
        net, z = oes_mask.build(hw, device=dev)
        mask, cfg = oes_mask, oes_mask.generator_config()
        extra["oes_mask_file"] = str(args.oes_mask)
    else:
        cfg = GeneratorConfig.oes(levels=args.levels, width=args.width, mri=True)
        net, z, seeds = setup_generator(cfg, hw, args.seed, device=dev)
        extra["seeds"] = seeds
        mask = None
        if args.method == "sparse-dip":
            meta = {"generator": cfg.to_dict(), "init_seed": seeds["init_seed"], "z_seed": seeds["z_seed"],
                    "operator": op.describe(), "source": f"{problem.slice.file} slice {problem.slice.index}"}
            mask, mres = learn_oes_mask(net, z, op, y, args.density, steps=args.oes_steps or args.steps,
                                        lr=args.lr, seed=args.seed, meta=meta)
            extra["oes_steps"] = args.oes_steps or args.steps
    if mask is not None:
        extra.update(density=mask.density, sparsity=mask.sparsity, collapse=collapse_report(net, z, op, mask))
    else:
        extra.update(density=1.0, sparsity=0.0)
    res = train_generator(net, z, op, y, steps=args.steps, mask=mask, lr=args.lr, evaluate=problem.evaluate,
                          log_every=args.log_every, seed=args.seed, desc=args.method)
    extra.update(generator=cfg.to_dict(), best_psnr=res.best_metrics.get("psnr"), best_step=res.best_step,
                 best=res.best_metrics, diverged=res.diverged, history=res.history, train_time_s=res.wall_time_s)
    return problem.unscale(res.output), extra, mask


# --------------------------------------------------------------------------------------------- run
def run_recon(args) -> int:
    from ..io import save_image, versions, write_json
    from ..mri.baselines import run_baseline
    from ..mri.metrics import center_crop
    from ..mri.problem import build_problem

    slices, esp, dev, oes_mask = _validate(args)
    out = Path(args.out)
    cache = None if args.no_espirit_cache else Path(args.espirit_cache or out / "espirit_cache.h5")
    stem = Path(args.file).stem
    summary = []
    for sl in slices:
        t0 = time.perf_counter()
        problem = build_problem(sl, args.accel if sl.mask is None else None, args.mask_type, args.seed,
                                args.center_fraction, espirit=esp, cache=cache)
        t_setup = time.perf_counter() - t0
        extra, learned = {}, None
        if args.method in ("dip", "sparse-dip"):
            x, extra, learned = _network_recon(args, problem, dev, oes_mask)
        else:
            x = run_baseline(problem, args.method, args.lamda, args.max_iter)
        runtime = time.perf_counter() - t0
        zf = problem.zero_filled("rss")
        m = problem.metrics(x)
        m_zf = problem.metrics(zf)
        crop = problem.crop
        mag = center_crop(np.abs(x), crop)
        tag = f"{args.accel}x" if sl.mask is None else "own-mask"
        d = out / f"{stem}_slice{sl.index:03d}_{args.method}_{tag}"
        d.mkdir(parents=True, exist_ok=True)
        vmax = float(problem.reference.max()) if problem.reference is not None else float(center_crop(zf, crop).max())
        _write_recon_h5(d / Path(args.file).name, mag, {"method": args.method, "slice": sl.index,
                                                       "accel": str(args.accel), "seed": args.seed})
        save_image(d / "recon.png", _norm(mag, vmax))
        save_image(d / "zero_filled.png", _norm(center_crop(zf, crop), vmax))
        if problem.reference is not None:
            save_image(d / "reference.png", _norm(problem.reference, vmax))
            save_image(d / "error.png", ERROR_GAIN * np.abs(mag - problem.reference) / vmax)
        history = extra.pop("history", None)
        if history:
            _psnr_curve(d / "psnr_curve.png", history, f"{args.method} {stem} slice {sl.index} {args.accel}x")
        if learned is not None and args.density is not None:
            learned.save(d / "oes_mask.safetensors")
        record = {
            "method": args.method, "file": str(args.file), "slice": sl.index, "accel": args.accel,
            "mask_type": args.mask_type if sl.mask is None else problem.info["mask"]["mask_type"],
            "seed": args.seed, **{k: m.get(k) for k in ("psnr", "ssim", "nmse", "psnr_ls")},
            "zero_filled": {k: m_zf.get(k) for k in ("psnr", "ssim", "nmse")},
            "data_range": m.get("data_range"), "metric_crop": list(crop),
            "reference": problem.reference_source, "error_gain": ERROR_GAIN,
            "runtime_s": runtime, "setup_s": t_setup, **extra,
            "problem": problem.describe(), "operator": problem.operator.describe(),
            "config": {k: v for k, v in vars(args).items() if k != "func"},
            "versions": versions(),
        }
        if history:
            record["history"] = history
        write_json(d / "metrics.json", record)
        summary.append({k: record.get(k) for k in ("slice", "method", "accel", "psnr", "ssim", "nmse",
                                                   "best_psnr", "best_step", "runtime_s")})
        psnr = f"{m['psnr']:.2f} dB / SSIM {m['ssim']:.3f}" if m else "no reference"
        print(f"{stem} slice {sl.index} {args.method} {args.accel}x: {psnr}  "
              f"(zero-filled {m_zf.get('psnr', float('nan')):.2f} dB) {runtime:.1f}s -> {d}")
    write_json(out / "summary.json", {"file": str(args.file), "results": summary})
    return 0


def problem_from_args(args):
    """An MRI file as a generic :class:`mri_oes.problem.Problem` (used by ``mri-oes learn-mask FILE.h5``):
    slice ``args.slice[0]``, fastMRI mask ``args.accel``/``args.mask_type`` seeded by ``args.seed``."""
    from ..mri.data import load_slice
    from ..mri.problem import build_problem
    from ..problem import Problem
    sl = load_slice(args.image, args.slice[0])
    accel = None if sl.mask is not None else args.accel
    p = build_problem(sl, accel=accel, mask_type=args.mask_type, seed=args.seed)
    vmax = float(p.reference.max()) if p.reference is not None else float(np.abs(p.zero_filled()).max())

    def to_display(x_hat):
        return np.abs(p.unscale(x_hat)) / vmax

    return Problem(p.operator, p.y, p.image_shape, evaluate=p.evaluate if p.reference is not None else None,
                   kind="mri", info={"kind": "mri", "accel": accel, **p.describe()}, to_display=to_display,
                   measurements_display=np.abs(p.zero_filled()) / vmax)
