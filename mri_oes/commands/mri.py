"""mri-oes recon: reconstruct fastMRI multi-coil volumes and datasets, slice by slice, in parallel,
resumably, written and evaluated the fastMRI way.

    mri-oes recon DATA_DIR/ FILE.h5 ... --method l1-wavelet dip --accel 4 8 --out runs/recon
    mri-oes recon FILE.h5 --slice 0 --accel 4 --method sparse-dip --pruning-mask runs/mask/mask.safetensors
    mri-oes recon multicoil_test/ --method sense            # undersampled files: their own mask, no metrics

Inputs: fastMRI multi-coil files and directories (searched recursively for *.h5; train / val / test /
challenge layouts, knee and brain); all slices unless --slice selects. Fully sampled files are
undersampled with a seeded fastMRI k-space sampling mask (--accel, --mask-type, --center-fraction; the
same mask for every slice of a volume); already undersampled files (a "mask" dataset, no reference) use
their own sampling mask and get no metrics.

Methods: zero-filled, sense, l1-wavelet (SigPy), dip (dense hourglass; the FINAL iterate is the result,
the best-PSNR step is an oracle reported only), sparse-dip (the network restricted to an OES pruning
mask: --pruning-mask FILE for every slice, or learned at --density per slice, or once per file or per
protocol with --share-pruning-mask volume|protocol), deep-decoder, gp-dip.
Several methods and accelerations run in one pass. Network settings not given as flags come from
--preset (mri_oes/mri/presets.py) at each acceleration; the help of each such flag lists the values.

Output, per method and acceleration, in OUT/<method>_<accel>x/ (own-mask for undersampled files):
reconstructions/<file name>.h5 ("reconstruction" [slices, h, w], written by
fastmri.save_reconstructions once every slice of the file is done), volumes/<stem>/metrics.json and
volumes.csv (fastMRI volume metrics: PSNR/NMSE on the volume, SSIM averaged over slices, W x W crop,
volume max; full_fov beside them), slices/<stem>/<NNN>/ (one complete-or-absent folder per slice:
metrics.json, reconstruction.npy, pictures) and slices.csv; masks/<key>/ (a shared pruning mask);
OUT/summary.csv = mean and std over volumes per method and acceleration, and the CPU-seconds per slice
(amortised over shared masks beside the cold cost).

Parallel: one Ray task per slice when more than one slice is pending: --workers N local processes with
--threads torch threads each, --gpus-per-task 0.25 shares a GPU between 4 slices, --ray-address uses an
existing cluster. Without Ray (pip install -e .[cluster]) the slices run one after the other.
Resumable: rerun the same command after a kill; finished slices are skipped, network fits continue
from their checkpoints (--checkpoint-every).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..cli_common import (_ranged, add_generator_args, add_mask_args, add_renamed, add_run_args, add_stop_args,
                          add_training_args,
                          nonneg_int, positive_float, positive_int)
from ..errors import UserError
from ..mri.volume import METHODS, NETWORK

accel_int = _ranged(int, 2, what="an integer acceleration >= 2")
center_frac = _ranged(float, 0, 1, lo_open=True, hi_open=True, what="a fraction in (0, 1)")
gpu_share = _ranged(float, 0, 1, what="a GPU share in [0, 1] (0.25 = four slices per GPU)")


def _per_preset(key: str, show=None) -> str:
    """Each preset's value of ``key`` at 4x and 8x, read from mri_oes.mri.presets: "cpu: 4x A, 8x B; gpu: C"."""
    from ..mri.presets import NAMES, for_accel, get
    parts = []
    for name in NAMES:
        v4, v8 = ((show or _value)(for_accel(get(name), a), key) for a in (4, 8))
        parts.append(f"{name}: {v4}" if v4 == v8 else f"{name}: 4x {v4}, 8x {v8}")
    return "; ".join(parts)


def _from_preset(key: str, show=None, what: str = "") -> str:
    """Help text of a flag whose value comes from --preset (the values a run uses when it is not given)."""
    return f"from --preset{what} ({_per_preset(key, show)})"


def _value(pre, key):
    v = pre.get(key)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _steps(pre, key):
    if pre.get("steps_pixels"):
        side = int(round(pre["steps_pixels"] ** 0.5))
        cap = f", at most {pre['steps_scale_max']:g}x as many" if pre.get("steps_scale_max") else ""
        return f"{pre['steps']} for a {side}x{side} grid, proportionally more on smaller grids{cap}"
    return str(pre["steps"])


def _density(pre, key):
    if pre.get("density") is not None:
        return f"{pre['density']:g}"
    return (f"{pre['kept_per_measurement']:g} kept weights per measured value, within "
            f"[{pre['density_min']:g}, {pre['density_max']:g}]")


def _levels(pre, key):
    return str(pre.get("levels") or 6)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recon", help="reconstruct fastMRI multi-coil volumes/datasets (zero-filled, SENSE, L1, DIP, Sparse-DIP ...)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="fastMRI multi-coil files and/or directories")
    p.add_argument("--method", nargs="+", choices=METHODS, required=True, help="one or more methods")
    g = p.add_argument_group("data and k-space sampling mask")
    g.add_argument("--slice", type=nonneg_int, nargs="+", default=None, help="slice indices (default: all)")
    g.add_argument("--accel", type=accel_int, nargs="+", default=None,
                   help="acceleration(s) of the k-space sampling mask for fully sampled files, e.g. 4 8 "
                        "(undersampled files use their own mask)")
    g.add_argument("--mask-type", choices=("random", "equispaced", "equispaced-fraction"), default="equispaced",
                   help="fastMRI k-space sampling mask (default equispaced = fastmri EquiSpacedMaskFunc)")
    g.add_argument("--center-fraction", type=center_frac, default=None,
                   help="fully sampled centre of the sampling mask (default: 0.08 at 4x, 0.04 at 8x)")
    from ..mri import baselines as B
    from ..mri.espirit import MAX_CALIB_WIDTH
    g = p.add_argument_group("classical methods")
    add_renamed(g, "--reg-weight", "--lamda", dest="lamda", metavar="WEIGHT", type=positive_float, default=None,
                help="regularisation weight of sense (Tikhonov, L2) and l1-wavelet (L1 of the wavelet "
                     "coefficients): SigPy's lamda, in the scaled units of the k-space (the zero-filled "
                     f"image's 99th percentile is 1) (default: sense {B.SENSE_LAMBDA:g}; l1-wavelet chosen per scan "
                     f"from {', '.join(f'{v:g}' for v in B.L1_GRID)} by the prediction of held-out measured "
                     "lines, never the reference; recorded as lamda_choice)")
    g.add_argument("--max-iter", type=positive_int, default=None,
                   help=f"iterations of the sense / l1-wavelet solver (default: sense {B.SENSE_ITERS}, "
                        f"l1-wavelet {B.L1_ITERS})")
    g = p.add_argument_group("ESPIRiT coil maps (SigPy)")
    g.add_argument("--espirit-calib-width", type=positive_int, default=None,
                   help="calibration region width in phase-encode lines (default: the fully sampled "
                        f"centre of the sampling mask, at most {MAX_CALIB_WIDTH})")
    g.add_argument("--espirit-kernel-width", type=positive_int, default=None,
                   help="ESPIRiT kernel width (default: 3 up to 9 calibration lines, else half the calibration width, "
                        "at most 6)")
    g.add_argument("--espirit-thresh", type=center_frac, default=0.02,
                   help="singular-value threshold of the calibration matrix (default 0.02)")
    g.add_argument("--espirit-crop", type=_ranged(float, 0, 1, hi_open=True), default=0.0,
                   help="eigenvalue crop (default 0 = maps everywhere: robust with few ACS lines)")
    g.add_argument("--map-sets", type=int, choices=(1, 2), default=None,
                   help="ESPIRiT map sets of every method (default: two where ESPIRiT finds fold-over -- the "
                        "second eigenvalue near 1 on part of the object, at the phase-encode edges at least as "
                        "often as in the centre; measured data only -- else one; a network then outputs one image per set and "
                        "the result is their RSS; a network whose output layer comes from --init-from, --pruning-mask "
                        "or --share-pruning-mask keeps that file's sets); recorded as problem.espirit.map_sets")
    g.add_argument("--no-espirit-cache", action="store_true", help="do not cache maps in OUT/.espirit/")
    add_training_args(p, steps=_from_preset("steps", _steps), lr=_from_preset("lr", _value),
                      precision=_from_preset("precision", _value))
    add_stop_args(p, rule=_from_preset("stop_rule", _value), tol=_from_preset("stop_tol", _value),
                  patience=_from_preset("stop_patience", _value))
    add_generator_args(p, levels_cap=f"the preset's depth ({_per_preset('levels', _levels)})",
                       width=_from_preset("width", _value))
    mg = add_mask_args(p, density=_from_preset("density", _density, "'s rule, sparse-dip only"),
                       mask_steps=_from_preset("mask_steps", _value), floor=_from_preset("min_layer_density", _value))
    from ..recipe import SHARE_MODES
    mg.add_argument("--share-pruning-mask", dest="share_mask", choices=SHARE_MODES, default="none",
                    help="sparse-dip with a learned mask: none (default): every slice learns its own OES mask "
                         "(--mask-steps per slice); volume: one mask per file, learned on its centre slice and "
                         "used by each of its slices; protocol: one mask per network problem (grid HxW and "
                         "acceleration: every file of that grid in the run), learned on the centre slice of the "
                         "first such file by name and used by all their slices. The mask is learned once into "
                         "OUT/<method>_<accel>x/masks/<key>/ (mask.safetensors, metrics.json naming its source "
                         "slice, sha256, density, CPU-seconds), reused by a rerun with the same settings and "
                         "source data and refused otherwise; every slice records the mask it used "
                         "(shared_mask); the summary gives CPU-seconds per slice amortised beside cold. The "
                         "mode is part of the run's settings. Default none: protocol was measured only at 8x on "
                         "three 256x256 scans (within 0.4 dB of their own masks, mask learning paid once; "
                         "results/2026-12-05-shared-masks)")
    p.add_argument("--init-from", metavar="RUN", default=None,
                   help="network methods: start the network from the trained weights of a finished run instead "
                        "of its seeded random init: RUN is a slice folder (.../slices/<file>/<NNN>) or a recon "
                        "--out folder (each slice starts from the slice of the same file and index there). The "
                        "network must match (method, depth, width); z stays this run's own (--seed, this grid). "
                        "sparse-dip also reuses RUN's mask (no mask learning) unless --pruning-mask or --density "
                        "is given, or RUN has none (then the mask is learned on the loaded weights). The "
                        "weights' digest is part of the run identity")
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                   help="network settings not given as flags, per acceleration (mri_oes/mri/presets.py: steps, "
                        "mask steps, depth cap, width, lr, density rule, per-layer floor, data consistency): "
                        "cpu (default; sized for about 30 min per slice on a 2-core CPU) or gpu (the "
                        "paper's step counts); flags given explicitly win")
    p.add_argument("--generator", choices=("hourglass", "deep-decoder", "conv-decoder"), default=None,
                   help="sparse-dip: the network the OES mask is learned on (default "
                        + _from_preset("generator") + "; the decoders at the preset's depth and width); "
                        "dip is always the dense hourglass, deep-decoder the dense deep decoder")
    p.add_argument("--data-consistency", action=argparse.BooleanOptionalAction, default=None,
                   help="network methods: project the final image onto the measured k-space; final is then "
                        "the projected image, final_network the raw output (default "
                        + _from_preset("data_consistency") + ")")
    g = p.add_argument_group("parallel")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="local Ray worker processes (default: usable cores / --threads; 1 = one slice at a "
                        "time in this process, no Ray). When fewer slices run at once than there are "
                        "cores and --threads is not given, each slice gets the idle cores as torch threads")
    g.add_argument("--gpus-per-task", type=gpu_share, default=0.0,
                   help="GPU share per slice task, e.g. 0.25 = four slices per GPU (Ray; default 0)")
    g.add_argument("--ray-address", default=None, help="existing Ray cluster (e.g. auto or ray://host:10001)")
    g.add_argument("--batch-slices", type=positive_int, default=1,
                   help="network methods: train up to this many slices of one grid in one loop (their networks "
                        "stacked: one batched pass per step, each slice's own masks, data and result; the same "
                        "result per slice as one at a time, up to float rounding). For a GPU, where one small "
                        "slice leaves it mostly idle (on a CPU a slice costs 1.5-1.75x more in a batch: "
                        "results/2026-12-05-batched-slices); each slice records its share of the batch's time. "
                        "Needs --stop-rule none (default 1: one slice per loop)")
    g.add_argument("--retries", type=nonneg_int, default=2,
                   help="retries of a failed slice task (default 2; bad input is never retried)")
    add_run_args(p)
    p.set_defaults(func=run_recon)


# ------------------------------------------------------------------------------------- validation
def _check_mask_file(path):
    from ..masks import Mask
    try:
        mask = Mask.load(path)
        mcfg = mask.generator_config()
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--pruning-mask {path}: not a readable mask file ({e})") from None
    if mcfg.out_channels != 2 or mcfg.sigmoid:
        raise UserError(f"--pruning-mask {path} belongs to a generator with {mcfg.out_channels} output channels "
                        f"(sigmoid={mcfg.sigmoid}); MRI needs 2 linear channels (real, imag): learn the mask "
                        "on an MRI file (mri-oes learn-mask FILE.h5)")


def _validate(args, vols):
    """Every check that can fail on user input, before anything is written."""
    from ..mri.data import load_slice, make_mask
    from ..mri.espirit import espirit_params
    from ..generators import GeneratorConfig, check_image_size
    if args.share_mask != "none":
        if "sparse-dip" not in args.method:
            raise UserError("--share-pruning-mask is only for --method sparse-dip (it shares the pruning mask "
                            "sparse-dip learns)")
        if args.mask_path:
            raise UserError("--share-pruning-mask with --pruning-mask: the given mask is already used by every "
                            "slice; drop one of them")
        if args.init_from:
            raise UserError("--share-pruning-mask with --init-from: sparse-dip then starts each slice from its "
                            "source run (its weights and mask); drop one of them")
    if args.mask_path and "sparse-dip" not in args.method:
        raise UserError("--pruning-mask is only for --method sparse-dip")
    if args.batch_slices > 1:
        from ..runner import check_batchable
        for method in args.method:
            check_batchable(method, args.stop_rule or "none", args.batch_slices)
    if args.density is not None and "sparse-dip" not in args.method:
        raise UserError("--density is only for --method sparse-dip")
    if args.mask_path:
        _check_mask_file(args.mask_path)
    if args.init_from and not any(m in NETWORK for m in args.method):
        raise UserError("--init-from is only for the network methods (" + ", ".join(NETWORK) + ")")
    if args.gpus_per_task > 0 and not args.device.startswith("cuda"):
        raise UserError(f"--gpus-per-task {args.gpus_per_task} needs --device cuda (the slices run on the GPU)")
    full = [v for v in vols if not v.undersampled]
    if full and not args.accel:
        raise UserError(f"{full[0].path} is fully sampled: give --accel (e.g. --accel 4 8)")
    esp = _espirit(args)
    from ..mri.data import check_slices
    from ..mri.volume import register_inputs
    for v in vols:   # every selected slice read and checked (NaN/Inf, header, zeros) before any output
        check_slices(v.path, v.slices)
        if args.share_mask != "none":   # the centre slice a shared mask may be learned on
            from ..mri.volume import centre_slice
            check_slices(v.path, [centre_slice(v)])
    register_inputs(vols)
    for v in vols:
        W = v.shape[-1]
        if v.undersampled:
            sl = load_slice(v.path, v.slices[0])
            if args.accel and not full:
                raise UserError(f"--accel: {v.path} is already undersampled (its own mask is used); drop --accel")
            espirit_params(sl.mask, **esp)
        else:
            for a in args.accel:
                try:
                    m, _ = make_mask(W, a, args.mask_type, args.seed, args.center_fraction)
                except UserError as e:
                    raise UserError(f"--accel {a} / --center-fraction: {v.path}: {e}") from None
                try:
                    espirit_params(m, **esp)
                except UserError as e:
                    raise UserError(f"{v.path} at --accel {a}: {e}") from None
        if any(m in NETWORK for m in args.method) and args.levels:
            check_image_size(GeneratorConfig.oes(levels=args.levels, mri=True), v.shape[-2:])
    return esp


def _espirit(args) -> dict:
    return {"calib_width": args.espirit_calib_width, "kernel_width": args.espirit_kernel_width,
            "thresh": args.espirit_thresh, "crop": args.espirit_crop}


def _check_run_folder(root: Path, settings, overwrite: bool) -> None:
    """``root/run.json`` pins a run's settings: a rerun with others is refused (or, with
    --overwrite, the run folder is replaced, but only a folder carrying mri-oes's run marker that
    holds no input: a user's own folder is never deleted). A new run folder is created here, marked."""
    import shutil
    from ..io import read_json
    from ..rundir import CLI_INPUTS, MARKER_FILE, canonical, check_out_name, held_inputs, identity_diff, \
        is_ours, write_marker
    check_out_name(root.parent, "--out")
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise UserError(f"{root} is a symbolic link or a file, not an mri-oes recon run folder; choose another --out")
    ident = canonical(settings.identity())
    f = root / "run.json"
    if f.is_file():
        old = read_json(f, max_bytes=1 << 20, what="run settings")
        if old != ident:
            if not overwrite:
                diff = identity_diff(old if isinstance(old, dict) else {}, ident)
                raise UserError(f"{root} holds a run with other settings (differs in: {', '.join(diff[:8])}); "
                                "rerun with its settings to resume it, choose another --out, or pass --overwrite")
    if root.exists() and any(root.iterdir()):
        held = held_inputs(root, CLI_INPUTS)
        if held:
            raise UserError(f"{root} holds an input of this run ({held[0]}); it is never replaced: choose another --out")
        if not is_ours(root) and (overwrite or not f.is_file()):
            raise UserError(f"{root} exists and is not an mri-oes recon run folder (no {MARKER_FILE} marker); it is "
                            "never replaced or deleted: choose another --out")
        if overwrite:
            shutil.rmtree(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_marker(root)
    except OSError as e:
        raise UserError(f"--out {root.parent}: cannot create {root} ({e.strerror or e})") from None


# --------------------------------------------------------------------------------------------- run
def _status(job, rec, elapsed=None) -> str:
    if isinstance(rec, dict):
        fin = rec.get("final") or {}
        q = (f"{fin['psnr']:.2f} dB / SSIM {fin['ssim']:.3f}" if fin.get("psnr") is not None else "no reference")
        how = "already done" if rec.get("_skipped") else f"{rec['time']['total_s']:.1f} s"
        return f"{job}: {q} ({how})"
    return f"{job}: FAILED ({rec})"


def recon_recipe(args, method: str, accel, espirit: dict, threads: int = 1, workers: int = 1):
    """The :class:`~mri_oes.recipe.Recipe` of one recon run: ``--preset`` at ``accel`` with the flags
    that were given (:meth:`Recipe.from_preset`, the route of ``reconstruct`` and the MRI experiment)."""
    from ..cli_common import recipe_from_args
    return recipe_from_args(
        args, args.preset, accel, method=method, espirit=espirit, threads=threads,
        mask_path=str(Path(args.mask_path).resolve()) if (args.mask_path and method == "sparse-dip") else None,
        init_from=str(Path(args.init_from).resolve()) if (args.init_from and method in NETWORK) else None,
        share_mask=args.share_mask if method == "sparse-dip" else "none",
        fresh_init=bool(args.fresh_init and args.mask_path), progress=bool(args.progress) and workers == 1)


def run_recon(args) -> int:
    from .. import parallel
    from ..cli_common import out_path, setup_runtime
    from ..io import write_json
    from ..mri.dataset import discover, reference_volume
    from ..mri.volume import volume_data_range
    from ..runtime import usable_cores

    threads_given = args.threads is not None or os.environ.get("OMP_NUM_THREADS", "").strip().isdigit()
    setup_runtime(args)
    threads = int(args.threads)
    vols = discover(args.paths, args.slice)
    esp = _validate(args, vols)
    out = out_path(args, "recon")
    workers = args.workers or max(1, usable_cores() // threads)
    if args.device.startswith("cuda") and args.gpus_per_task == 0 and (workers > 1 or args.ray_address):
        args.gpus_per_task = round(1.0 / workers, 4)   # the local GPU(s) shared by the workers
    if args.gpus_per_task > 0:
        args.device = "cuda"   # Ray sets CUDA_VISIBLE_DEVICES per task: its GPU is cuda:0 there

    runs = _plan_runs(args, vols, esp, threads, workers, out)
    # targets and data ranges (fastMRI: the volume max of the cropped target), once per file
    targets = {v.path: (t, volume_data_range(t)) for v in vols
               for t in [reference_volume(v) if v.has_reference else None]}
    jobs, total, done0 = _slice_jobs(runs, out, targets, None if args.no_espirit_cache else out / ".espirit")
    grids = {str(v.path): tuple(v.shape[-2:]) for v in vols}   # --batch-slices batches one grid
    from ..mri.volume import batch_jobs
    n_tasks = len(batch_jobs(jobs, grids, args.batch_slices))
    runs, jobs, workers, threads, in_process = _share_cores(args, runs, jobs, workers, threads, threads_given,
                                                            n_tasks)
    from ..mri.volume import plan_shared_masks
    mask_jobs, jobs = plan_shared_masks(runs, out, jobs, targets,
                                        None if args.no_espirit_cache else out / ".espirit")
    backend = parallel.describe_backend(workers, threads, args.gpus_per_task, args.ray_address, len(jobs))
    write_json(out / "recon.json", {"command": " ".join(sys.argv), "inputs": [v.describe() for v in vols],
                                    "runs": [s.run_name for s, _ in runs], "parallel": backend,
                                    # the flags as given (None: from --preset at each acceleration) ...
                                    "config": {k: v for k, v in vars(args).items() if k != "func"},
                                    # ... and what each run used (per-acceleration preset values applied)
                                    "settings": {s.run_name: s.flat() for s, _ in runs}})

    def log(msg):
        print(msg, file=sys.stderr)

    log(f"mri-oes recon: {len(vols)} file(s), {total} slice task(s) in {len(runs)} run(s) "
        f"({done0} already done) -> {out}; {backend['backend']}"
        + (f", {backend['workers']} workers x {threads} thread(s)" if backend["backend"] == "ray" else ""))

    failures = []
    if mask_jobs:
        jobs, failures = _learn_shared_masks(args, mask_jobs, jobs, workers, threads, log)
    rows, fails, wall = _run_jobs(args, out, runs, jobs, targets, total, done0, workers, threads, in_process, log,
                                  grids)
    failures += fails
    from ..mri.figures import write_recon_figures
    figs = write_recon_figures(out)   # every method of an acceleration side by side, per slice/volume
    if figs:
        log(f"mri-oes recon: {len(figs)} figure(s) -> {out / 'figures'}")
    return _report(args, out, rows, failures, len(jobs), wall, log)


def _run_jobs(args, out, runs, jobs, targets, total, done0, workers, threads, in_process, log, grids):
    """Run the pending slices (Ray or here), assemble each volume once all its slices are done (a resumed
    run's finished volumes first), write the tables; ``(summary rows, failures, wall seconds)``."""
    from .. import parallel
    from ..mri.volume import assemble_volume, batch_jobs, dataset_summary, is_done, slice_dir, write_tables

    def try_assemble(s, v):
        t, rng = targets[v.path]
        return assemble_volume(out / s.run_name, v, s, t, rng)

    # volumes whose slices were all done before (a resumed run) are assembled now
    by_key = {}
    for s, vs in runs:
        for v in vs:
            by_key[(s.run_name, str(v.path))] = (s, v)
            if all(is_done(slice_dir(out / s.run_name, v.path, sl)) for sl in v.slices):
                try_assemble(s, v)

    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=done0, desc="slices", unit="slice", dynamic_ncols=True,
               disable=not args.progress, file=sys.stderr)
    say = bar.write if args.progress else log
    failures, n_done = [], done0
    t0 = time.perf_counter()
    step_bars = _StepBars() if args.progress and not in_process else None   # slices in Ray workers
    try:
        tasks, fn = jobs, _run_slice_job
        if args.batch_slices > 1:   # several slices of one grid per task, trained in one loop
            tasks, fn = batch_jobs(jobs, grids, args.batch_slices), _run_batch_job
        for task, result in parallel.run_tasks(fn, tasks, workers=workers, threads=threads,
                                               gpus_per_task=args.gpus_per_task, ray_address=args.ray_address,
                                               retries=args.retries, log=say, on_steps=step_bars):
            if fn is _run_slice_job:
                pairs = [(task, result)]
            elif isinstance(result, parallel.TaskFailure):
                pairs = [(job, result) for job in task]
            else:
                pairs = list(zip(task, result))
            for job, rec in pairs:
                bar.update(1)
                n_done += 1
                say(f"[{n_done}/{total}] {_status(job, rec)}")
                if isinstance(rec, parallel.TaskFailure):
                    failures.append((job, rec))
                    continue
                s, v = by_key[(job.settings.run_name, job.file)]
                if all(is_done(slice_dir(out / s.run_name, v.path, sl)) for sl in v.slices):
                    vrec = try_assemble(s, v)
                    if vrec is not None and vrec["final"]["psnr"] is not None:
                        say(f"    volume {v.name} {s.run_name}: PSNR {vrec['final']['psnr']:.2f} dB, "
                            f"SSIM {vrec['final']['ssim']:.4f}, NMSE {vrec['final']['nmse']:.4f} (fastMRI)")
    finally:
        if step_bars is not None:
            step_bars.close()
        bar.close()
        for s, _ in runs:
            if (out / s.run_name).exists():
                write_tables(out / s.run_name)
        rows = dataset_summary(out, [out / s.run_name for s, _ in runs])
    return rows, failures, time.perf_counter() - t0


def _learn_shared_masks(args, mask_jobs, jobs, workers, threads, log):
    """Learn the shared pruning masks (``--share-pruning-mask``) before any slice that uses them;
    ``(slice jobs left, failures)``: the slices of a mask that failed are not run (a rerun retries)."""
    from .. import parallel
    failures, failed = [], set()
    log(f"mri-oes recon: learning {len(mask_jobs)} shared pruning mask(s) first")
    for mj, rec in parallel.run_tasks(_run_mask_job, mask_jobs, workers=max(1, min(workers, len(mask_jobs))),
                                      threads=threads, gpus_per_task=args.gpus_per_task,
                                      ray_address=args.ray_address, retries=args.retries, log=log):
        if isinstance(rec, parallel.TaskFailure):
            failures.append((mj, rec))
            failed.add(str(mj.out))
            log(f"{mj}: FAILED ({rec})")
            continue
        log(f"{mj}: density {rec['density']:.4f}, {rec['mask_steps']} mask steps, "
            f"{rec['time']['cpu_s']:.0f} CPU-s -> {mj.out}")
    left = [j for j in jobs if j.mask_run not in failed]
    if len(left) < len(jobs):
        log(f"mri-oes recon: {len(jobs) - len(left)} slice(s) not run: their shared mask failed")
    return left, failures


def _share_cores(args, runs, jobs, workers, threads, threads_given, n_tasks=None):
    """``(runs, jobs, workers, threads, in_process)`` with the cores shared out: Ray starts only when more
    than one slice task runs (:func:`mri_oes.parallel.uses_ray`; a single pending slice runs here, with its
    step bar under the slices bar); fewer slices at a time than cores get the idle cores as torch threads;
    worker processes draw no bars."""
    from .. import parallel
    from ..runtime import configure_threads, threads_for_tasks, usable_cores
    n_tasks = len(jobs) if n_tasks is None else n_tasks   # slice tasks (--batch-slices: batches)
    workers = max(1, min(workers, n_tasks))
    concurrent = min(n_tasks, workers)
    in_process = not parallel.uses_ray(workers, n_tasks, args.gpus_per_task, args.ray_address)
    if not threads_given and 0 < concurrent < usable_cores() and args.device == "cpu" and not args.ray_address:
        threads = threads_for_tasks(concurrent)
        configure_threads(threads)
    runs = [(s.with_runtime(progress=bool(args.progress) and in_process, threads=threads), vs) for s, vs in runs]
    jobs = [replace(j, settings=next(s for s, _ in runs if s.run_name == j.settings.run_name)) for j in jobs]
    return runs, jobs, workers, threads, in_process


def _plan_runs(args, vols, esp, threads, workers, out) -> list:
    """``[(recipe, volumes)]``: every method at every acceleration (undersampled files: their own mask),
    each ``--init-from`` source and run folder checked before any output."""
    from ..mri.volume import check_warm_start
    accels = list(dict.fromkeys(args.accel or []))
    runs = []
    for method in args.method:
        for accel in (accels if any(not v.undersampled for v in vols) else []) + \
                     ([None] if any(v.undersampled for v in vols) else []):
            s = recon_recipe(args, method, accel, esp, threads, workers)
            runs.append((s, [v for v in vols if v.undersampled == (accel is None)]))
    for s, vs in runs:   # every slice's --init-from source found and its network checked before any output
        for v in vs if s.init_from else []:
            for sl in v.slices:
                check_warm_start(s, v.path, sl, v.shape[-2:])
    for s, _ in runs:
        _check_run_folder(out / s.run_name, s, args.overwrite)
    return runs


def _slice_jobs(runs, out, targets, cache):
    """``(pending slice jobs, slices in all, slices already done)``; each run folder's ``run.json``."""
    from ..io import write_json
    from ..mri.volume import SliceJob, is_done, slice_dir
    jobs, total, done0 = [], 0, 0
    for s, vs in runs:
        root = out / s.run_name
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "run.json", s.identity())
        for v in vs:
            for sl in v.slices:
                total += 1
                if is_done(slice_dir(root, v.path, sl)):
                    done0 += 1
                    continue
                jobs.append(SliceJob(str(v.path), int(sl), s, str(root), targets[v.path][1],
                                     str(cache / f"{v.stem}_{sl:03d}.h5") if cache else None))
    return jobs, total, done0


def _report(args, out, rows, failures, n_jobs, wall, log) -> int:
    """The summary lines per run, and ``failures.json`` with its exit status 1 when a slice failed."""
    from .. import parallel
    from ..io import write_json
    for r in rows:
        if r.get("psnr_mean") is None:
            q = "no reference"
        elif r["volumes"] == 1:   # one volume: no spread to report
            q = f"PSNR {r['psnr_mean']:.2f} dB, SSIM {r['ssim_mean']:.4f} (n=1)"
        else:
            q = (f"PSNR {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} dB, SSIM {r['ssim_mean']:.4f} ± "
                 f"{r['ssim_std']:.4f} (n={r['volumes']})")
        if r.get("amortised_cpu_s_per_slice") is not None:
            q += (f"; CPU-s per slice {r['amortised_cpu_s_per_slice']:.0f} amortised, "
                  f"{r['cold_cpu_s_per_slice']:.0f} cold" + (f" ({r['shared_masks']} shared mask(s))"
                                                              if r["shared_masks"] else ""))
        print(f"{r['run']}: {r['volumes']} volume(s), {r['slices']} slice(s): {q}")
    if failures:
        write_json(out / "failures.json", [{"task": str(j), "file": j.file, "slice": j.slice,
                                            "run": j.settings.run_name, "error": f.error, "retried": f.retried, "detail": f.detail}
                                           for j, f in failures])
        n_input = sum(not f.retried for _, f in failures)
        how = (f"after {args.retries} retries" if not n_input else
               f"({n_input} for bad input, not retried; the others after {args.retries} retries)"
               if n_input < len(failures) else "for bad input (not retried)")
        log(f"mri-oes recon: {len(failures)} slice(s) failed {how} (see "
            f"{out / 'failures.json'}); rerun the same command to retry them:\n"
            + parallel.summarize_failures(failures))
        return 1
    print(f"{n_jobs} slice(s) reconstructed in {wall:.1f} s -> {out}")
    return 0


class _StepBars:
    """A step bar per slice running in a Ray worker, under the slices bar, fed with the workers'
    reports (:class:`mri_oes.parallel.StepBoard` snapshots ``{slice: (desc, step, total)}``)."""

    def __init__(self):
        self.bars = {}

    def __call__(self, snapshot: dict) -> None:
        from tqdm.auto import tqdm
        for key in [k for k in self.bars if k not in snapshot]:
            self.bars.pop(key).close()
        for key, (desc, step, total) in snapshot.items():
            bar = self.bars.get(key)
            label = f"{key}: {desc}"
            if bar is None or bar.total != total or bar.desc != label:   # mask learning, then training
                if bar is not None:
                    bar.close()
                bar = self.bars[key] = tqdm(total=total, desc=label, unit="step", leave=False,
                                            dynamic_ncols=True, file=sys.stderr)
            bar.update(max(0, step - bar.n))

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _run_slice_job(job):
    """Ray/serial task entry point (module level: pickled by reference)."""
    from ..mri.volume import run_slice
    return run_slice(job)


def _run_batch_job(jobs):
    """Ray/serial task entry point of a batch of slices (``--batch-slices``)."""
    from ..mri.volume import run_slices
    return run_slices(list(jobs))


def _run_mask_job(job):
    """Ray/serial task entry point of a shared pruning mask."""
    from ..mri.volume import learn_shared_mask
    return learn_shared_mask(job)


def problem_from_args(args):
    """An MRI file as a generic :class:`mri_oes.problem.Problem` (used by ``mri-oes learn-mask FILE.h5``):
    slice ``args.slice[0]``, fastMRI mask ``args.accel``/``args.mask_type`` seeded by ``args.seed``."""
    from ..mri.data import load_slice
    from ..mri.problem import build_problem
    sl = load_slice(args.image, args.slice if isinstance(args.slice, int) else args.slice[0])
    accel = None if sl.mask is not None else args.accel
    p = build_problem(sl, accel=accel, mask_type=args.mask_type, seed=args.seed)
    return p.as_problem({"kind": "mri", "accel": accel, **p.describe()}, show_measurements=True)
