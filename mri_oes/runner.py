"""Run a method on a :class:`~mri_oes.problem.Problem` and write its outputs (shared by the CLI for
natural images and MRI, the demo and the experiment scripts).

Every run directory gets ``metrics.json`` (method, density AND sparsity, steps, seed, final/best
metrics, wall time, config, versions), ``recon.png`` + ``recon.npy``, ``curve.png`` (PSNR/loss), and
for OES ``mask.safetensors`` + ``finding1.png``; a network run's trained weights are
``weights.safetensors`` (what ``init_from`` starts another run from). All files are written atomically.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional


from . import methods
from .errors import UserError
from .schema import CLASSICAL_METHODS
from .generators import GeneratorConfig, count_parameters
from .io import save_image, save_npy, versions, write_json
from .masks import Mask, maskable_parameters
from .recipe import Recipe
from .runtime import resolve_device
from .statefile import file_digest, tensor_digest

#: a finished network run's trained weights (statefile; ``net`` = the generator's state_dict)
WEIGHTS_FILE = "weights.safetensors"


def run_identity(problem, recipe: Recipe, command: str) -> dict:
    """Everything that determines a run's result (resume only on an exact match): the resolved recipe's
    identity (:meth:`Recipe.identity`) and the data."""
    ident = {"command": command, "config": recipe.identity(), "measurements": tensor_digest(problem.y),
             "operator": problem.operator.describe(), "problem": problem.info,
             "versions": {k: v for k, v in versions().items() if k in ("mri_oes", "torch")}}
    if problem.reference is not None:
        ident["reference"] = tensor_digest(problem.reference)
    if recipe.mask_path:
        ident["mask_file"] = file_digest(recipe.mask_path)
    if recipe.init_from:
        ident["init_file"] = file_digest(recipe.init_from)
    return ident


def load_init_weights(path, net) -> dict:
    """The generator state of a finished run's :data:`WEIGHTS_FILE` ``path``, checked against ``net``
    (same layers, same shapes: one UserError naming the file and the first layer that differs)."""
    from .statefile import load_state
    import torch
    tree = load_state(path, None, what="weights file")
    state = tree.get("net") if isinstance(tree, dict) else None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UserError(f"--init-from {path}: not a weights file of mri-oes (no network state)")
    here = net.state_dict()
    for k in list(here) + [k for k in state if k not in here]:
        a = tuple(state[k].shape) if k in state else "absent"
        b = tuple(here[k].shape) if k in here else "absent"
        if a != b:
            raise UserError(f"--init-from {path}: its network differs from this run's at layer {k} "
                            f"({a} there, {b} here); use a run of the same method, depth and width")
    return state


def plot_curve(path: Path, history: list, title: str = "", final_psnr: Optional[float] = None,
               final_label: str = "final") -> None:
    """``curve.png``: the data loss per step (left) and, with a reference, the PSNR of the network's
    output per step (right; the oracle best step marked). ``final_psnr``: the table's ``final`` PSNR,
    drawn as a labelled horizontal line (for MRI with data consistency it is the data-consistent image,
    which differs from the network output the curve follows)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .io import atomic_path
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].semilogy(steps, [max(h["data_loss"], 1e-12) for h in history])
    axes[0].set_xlabel("step"); axes[0].set_ylabel("data loss (MSE)")
    axes[0].set_title("data fidelity: MSE of A x - y (scaled units)", fontsize=9)
    if history and "psnr" in history[0]:
        ps = [h["psnr"] for h in history]
        axes[1].plot(steps, ps, label="network output (per logged step)")
        k = max(range(len(ps)), key=lambda i: ps[i])
        axes[1].plot([steps[k]], [ps[k]], "o", color="C0", label=f"best (oracle) {ps[k]:.2f} dB, step {steps[k]}")
        if final_psnr is not None:
            axes[1].axhline(final_psnr, color="C3", ls="--", label=f"{final_label}: {final_psnr:.2f} dB")
        axes[1].set_xlabel("step"); axes[1].set_ylabel("PSNR (dB)")
        axes[1].set_title("PSNR against the reference", fontsize=9)
        axes[1].legend(fontsize=8, loc="lower right")
    else:
        axes[1].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _display(problem, x):
    return problem.to_display(x) if problem.to_display else x[0].detach().cpu().numpy()


def holdout_of(problem, rc: Recipe):
    """The measurements ``rc``'s stopping rule holds out of every fit (``self-validation``: the problem's
    seeded choice at ``--holdout-fraction``), else None."""
    if rc.stop_rule != "self-validation":
        return None
    if problem.holdout is None:
        raise UserError(f"--stop-rule self-validation needs measurements to hold out; this {problem.kind} "
                        "problem has no rule to choose them (MRI k-space lines only)")
    return problem.holdout(rc.holdout_fraction, rc.seed)


def noise_of(problem, rc: Recipe) -> Optional[dict]:
    """The measurements' noise (``problem.noise()``) for the ``discrepancy`` stopping rule, else None."""
    if rc.stop_rule != "discrepancy":
        return None
    if problem.noise is None:
        raise UserError(f"--stop-rule discrepancy needs the measurements' noise level; this {problem.kind} problem "
                        "has no estimate of it (MRI k-space only)")
    return problem.noise()


def get_mask(problem, rc: Recipe, device, out: Optional[Path], cfg: GeneratorConfig, net, z, seeds,
             identity: Optional[dict] = None, holdout=None):
    """The mask for a sparse method: a given file (rebuilding its own theta_in and z), a pruning-at-init
    score (``rc.mask_source``), or OES-learned."""
    if rc.mask_path:
        mask = Mask.load(rc.mask_path)
        mcfg = mask.generator_config()
        if mcfg.out_channels != problem.out_channels:
            raise UserError(f"mask {rc.mask_path} is for a generator with {mcfg.out_channels} output "
                            f"channels; this problem needs {problem.out_channels}")
        # init_from: the weights come from that run, z from this run's seed on this grid
        fresh = {"init_seed": seeds["init_seed"], "z_seed": seeds["z_seed"]} if rc.fresh_init or rc.init_from else {}
        net, z = mask.build(problem.image_hw, device=device, **fresh)
        seeds = {"seed": rc.seed, "init_seed": fresh.get("init_seed", mask.meta["init_seed"]),
                 "z_seed": fresh.get("z_seed", mask.meta["z_seed"]), "mask_file": str(rc.mask_path),
                 "fresh_init": rc.fresh_init}
        if rc.init_from:
            net.load_state_dict(load_init_weights(rc.init_from, net))
        return mask, mcfg, net, z, seeds, None
    meta = {"generator": cfg.to_dict(), **seeds, "source": problem.info}
    if rc.mask_source != "oes":   # a pruning-at-init score at theta_in
        from .pruning import prune_at_init
        mask = prune_at_init(rc.mask_source, net, z, problem.operator, problem.y, rc.density, seed=rc.seed,
                             scope=rc.scope, min_layer_density=rc.min_layer_density,
                             synflow_rounds=rc.synflow_rounds, meta=meta)
        if out is not None:
            mask.save(out / "mask.safetensors")
        return mask, cfg, net, z, seeds, None
    mask, res = methods.learn_oes_mask(
        net, z, problem.operator, problem.y, rc.density, steps=rc.mask_steps, lr=rc.mask_lr,
        temperature=rc.temperature, lam=rc.lam, scope=rc.scope, min_layer_density=rc.min_layer_density,
        seed=rc.seed, meta=meta, progress=rc.progress,
        checkpoint=(out / "mask_checkpoint.safetensors") if out is not None else None,
        identity=identity, checkpoint_every=rc.checkpoint_every, precision=rc.precision, holdout=holdout)
    if out is not None:
        mask.save(out / "mask.safetensors")
    return mask, cfg, net, z, seeds, res


def mask_source_of(rc: Recipe, mask: Optional[Mask]) -> str:
    if mask is None:
        return "none"
    if rc.mask_path:
        return "file"
    return rc.mask_source


def _prepare(problem, recipe: Recipe, command: str):
    """``(resolved recipe, generator config, identity, device)``: the checks of the recipe on this problem
    (:func:`_open` then asks for the held-out lines and the noise estimate, which may be refused too),
    before any output exists."""
    from .generators import build_generator, check_image_size
    if recipe.method in CLASSICAL_METHODS:
        raise UserError(f"--method {recipe.method} is a classical MRI method: reconstruct with mri-oes recon")
    device = resolve_device(recipe.device)
    problem.to(device)
    rc = recipe.for_problem(problem).validate()
    cfg = rc.generator_config(problem.out_channels, mri=problem.kind == "mri")
    check_image_size(cfg, problem.image_hw)
    if rc.init_from:   # a mismatched network is refused before any output exists
        mcfg = Mask.load(rc.mask_path).generator_config() if rc.method == "sparse-dip" and rc.mask_path else cfg
        load_init_weights(rc.init_from, build_generator(mcfg, 0, problem.image_hw))
    return rc, cfg, run_identity(problem, rc, command), device


def _record(problem, rc: Recipe, command, device, cfg, net, mask, mask_res, res, f1, report, seeds, total,
            noise=None):
    """The run's schema record (:func:`mri_oes.schema.make_record`)."""
    from .schema import make_record
    n_weights = mask.n_total if mask is not None else sum(p.numel() for p in maskable_parameters(net).values())
    kept = mask.n_kept if mask is not None else n_weights
    learned = rc.method == "sparse-dip" and not rc.mask_path and rc.mask_source == "oes"
    final = res.final_metrics if res is not None else (problem.evaluate(f1) if problem.evaluate and f1 is not None else {})
    record = make_record(
        command=command, method=rc.method if rc.steps > 0 else "oes-mask",
        mask_source=mask_source_of(rc, mask), density=kept / n_weights,
        kept_weights=kept, maskable_weights=n_weights, measurements=problem.n_measurements,
        steps=res.steps if res is not None else rc.steps, mask_steps=rc.mask_steps if learned else 0,
        lr=rc.lr if rc.steps > 0 else None, seed=rc.seed, seeds=seeds, final=final,
        best=res.best_metrics if res is not None else {}, best_step=res.best_step if res is not None else None,
        time_total_s=total, time_fit_s=res.wall_time_s if res is not None else total,
        device=str(device), config=rc.flat(), diverged=bool(res.diverged) if res is not None else False,
        task=problem.info.get("task", problem.kind), scan=problem.info.get("scan"), accel=problem.info.get("accel"),
        parameters=count_parameters(net), generator=cfg.to_dict(), problem=problem.info,
        operator=problem.operator.describe(), collapse=report,
        # a starved layer (e.g. an output head keeping 3 % while hidden layers keep 50 %) shows here
        per_layer_density=mask.per_layer_density() if mask is not None else None,
        history=res.history if res is not None else [],
        stop_rule=rc.stop_rule if res is not None else None,
        stopped_at=res.stopped_at if res is not None else None,
        **({"holdout_best_step": res.holdout_best_step, "holdout_fraction": rc.holdout_fraction}
           if res is not None and rc.stop_rule == "self-validation" else {}),
        **({"noise": {"sigma2": noise["sigma2"], "level": noise["level"], "lines": noise["lines"],
                      "discrepancy_tau": rc.discrepancy_tau}}
           if res is not None and noise is not None else {}))
    if mask_res is not None:
        record["mask_learning"] = {"history": mask_res.history, "time_s": mask_res.wall_time_s,
                                   "finding1": problem.evaluate(f1) if problem.evaluate else None}
    return record


def _write_outputs(work: Path, problem, rc: Recipe, cfg, identity, net, mask, res, record, writer) -> None:
    """The run folder's files; ``metrics.json`` last (it marks the run complete)."""
    if res is not None:
        from .statefile import save_state
        save_state(work / WEIGHTS_FILE, {"net": net.state_dict(), "generator": cfg.to_dict()},
                   {"what": "weights", "run": identity})
        if mask is not None and rc.mask_path:
            mask.save(work / "mask.safetensors")   # a sparse run folder holds the mask it trained with
        save_npy(work / "recon.npy", res.output[0].numpy())
        save_image(work / "recon.png", _display(problem, res.output))
        plot_curve(work / "curve.png", res.history, f"{rc.method} density={record['density']:.4f}")
    if problem.measurements_display is not None:
        save_image(work / "measurements.png", problem.measurements_display)
    if writer is not None:
        writer(problem, res, work, record)
    write_json(work / "metrics.json", record)


@dataclass
class _SliceRun:
    """One problem's run up to its training: resolved recipe, run folder, network, input, mask."""
    problem: object
    rc: Recipe
    cfg: GeneratorConfig
    identity: dict
    device: object
    rd: object
    work: Optional[Path]
    t0: float
    net: object
    z: object
    seeds: dict
    mask: Optional[Mask] = None
    mask_res: object = None
    report: object = None
    f1: object = None
    holdout: object = None
    noise: Optional[dict] = None


def _open(problem, recipe: Recipe, out, overwrite: bool, save_outputs: bool, command: str,
          stack: contextlib.ExitStack) -> _SliceRun:
    """Checks, the run folder (entered on ``stack``), the generator and the mask: everything before training."""
    from .rundir import RunDir
    rc, cfg, identity, device = _prepare(problem, recipe, command)
    holdout = holdout_of(problem, rc)   # never fitted, mask learning included; none to hold out: refused here
    noise = noise_of(problem, rc)       # no noise estimate: refused here
    inputs = [rc.mask_path, rc.init_from, problem.info.get("source"), problem.info.get("file")]
    rd = RunDir(out, identity, overwrite, inputs=[i for i in inputs if isinstance(i, str)]) if save_outputs else None
    if rd is not None:
        rd.check()
        stack.enter_context(rd)
    work = rd.work if rd is not None else None
    t0 = time.perf_counter()
    net, z, seeds = methods.setup_generator(cfg, problem.image_hw, rc.seed, device=device)
    if rc.init_from:   # (a learned OES mask then ranks these weights; a mask file rebuilds the net)
        net.load_state_dict(load_init_weights(rc.init_from, net))
    s = _SliceRun(problem, rc, cfg, identity, device, rd, work, t0, net, z, seeds, holdout=holdout, noise=noise)
    if rc.method == "sparse-dip":
        s.mask, s.cfg, s.net, s.z, s.seeds, s.mask_res = get_mask(problem, rc, device, work, cfg, net, z, seeds,
                                                                  identity=identity, holdout=s.holdout)
        s.report = methods.collapse_report(s.net, s.z, problem.operator, s.mask)
        s.f1 = methods.finding1(s.net, s.z, problem.operator, s.mask)
        if work is not None:
            save_image(work / "finding1.png", _display(problem, s.f1))
    return s


def _train(s: _SliceRun, callback=None):
    rc = s.rc
    return methods.train_generator(
        s.net, s.z, s.problem.operator, s.problem.y, mask=s.mask,
        sgld_std=rc.sgld_std if rc.method == "gp-dip" else 0.0, evaluate=s.problem.evaluate,
        progress=rc.progress, desc=rc.method,
        checkpoint=(s.work / "checkpoint.safetensors") if s.work is not None else None,
        identity=s.identity, callback=callback, holdout=s.holdout, **rc.fit_options(),
        **({"noise_level": s.noise["level"], "noise_entries": s.noise["entries"]} if s.noise is not None else {}))


def _close(s: _SliceRun, res, command: str, writer) -> dict:
    """The record and the run folder's files (committed: the folder becomes complete)."""
    record = _record(s.problem, s.rc, command, s.device, s.cfg, s.net, s.mask, s.mask_res, res, s.f1, s.report,
                     s.seeds, time.perf_counter() - s.t0, s.noise)
    if s.work is not None:
        _write_outputs(s.work, s.problem, s.rc, s.cfg, s.identity, s.net, s.mask, res, record, writer)
        s.rd.commit()
    record["_result"] = res
    record["_mask"] = s.mask
    return record


def run(problem, recipe: Recipe, out, overwrite: bool = False, save_outputs: bool = True,
        command: str = "fit", writer=None, callback=None) -> dict:
    """Run ``recipe`` on ``problem``; write outputs to ``out``; return the result record.

    The recipe is resolved on the problem's grid (:meth:`Recipe.for_problem`: depth, steps, density rule)
    and validated before any output exists. The run folder is complete or absent
    (:class:`~mri_oes.rundir.RunDir`): files are staged in ``.<out>.partial`` (checkpoints too, so a
    killed run resumes with the same command) and renamed into place last. ``writer(problem, res,
    work_dir, record)`` (optional) writes extra outputs (e.g. the fastMRI reconstruction file) before
    the record; ``callback(row)`` sees every logged training row (:func:`mri_oes.core.fit`).
    ``steps == 0`` learns a mask only (``learn-mask``)."""
    with contextlib.ExitStack() as stack:
        s = _open(problem, recipe, out, overwrite, save_outputs, command, stack)
        res = _train(s, callback) if s.rc.steps > 0 else None
        return _close(s, res, command, writer)


def check_batchable(method: str, stop_rule: str, batch_slices: int) -> None:
    """What one loop over several slices cannot do (``--batch-slices``), one line: a stopping rule (it stops
    one slice's fit) or GP-DIP (its weight noise is drawn per network)."""
    if stop_rule != "none":
        raise UserError(f"--batch-slices {batch_slices} with --stop-rule {stop_rule}: slices trained in one loop run "
                        "every step (a stopping rule stops one slice's fit), it needs --stop-rule none; "
                        "use --batch-slices 1")
    if method == "gp-dip":
        raise UserError(f"--batch-slices {batch_slices} with --method gp-dip: its per-step weight noise is drawn per "
                        "network in one loop only; use --batch-slices 1")


def _batch_refusals(problems, recipes) -> None:
    """What one loop over several problems cannot do, refused before any output exists (one line)."""
    for p, r in zip(problems, recipes):
        check_batchable(r.method, r.stop_rule, len(problems))
        if tuple(p.image_hw) != tuple(problems[0].image_hw):
            raise UserError(f"--batch-slices: slices batched together need one grid ({p.info.get('file')}: "
                            f"{tuple(p.image_hw)}, {problems[0].info.get('file')}: {tuple(problems[0].image_hw)})")


def _batch_checks(runs: List[_SliceRun]) -> None:
    """The resolved runs of a batch share their network and fit options (one loop)."""
    first = runs[0]
    for s in runs[1:]:
        if s.rc.fit_options() != first.rc.fit_options() or s.cfg != first.cfg or (s.mask is None) != (first.mask is None):
            raise UserError("--batch-slices: slices batched together need one network and the same fit options "
                            f"({s.problem.info.get('file')} differs from {first.problem.info.get('file')})")


def _train_batch(runs: List[_SliceRun]) -> list:
    """Train the slices' networks in one loop (:mod:`mri_oes.batched`); their per-slice results. The
    batch's checkpoint lives in the first slice's staging folder, named by the batch's identities (a
    rerun with the same batch resumes it; another grouping starts afresh)."""
    import torch
    from .batched import SliceBatch, StackedGenerator, StackedMask, batch_evaluator, split_result
    _batch_checks(runs)
    rc = runs[0].rc
    net = StackedGenerator([s.net for s in runs])
    z = torch.stack([s.z for s in runs])
    op = SliceBatch([s.problem.operator for s in runs])
    ys = [s.problem.y for s in runs]
    mask = StackedMask([s.mask for s in runs]) if runs[0].mask is not None else None
    identity = {"batch": [s.identity for s in runs]}
    checkpoint = None
    if runs[0].work is not None:
        checkpoint = runs[0].work / f"{BATCH_CHECKPOINT_PREFIX}{tensor_digest(identity)[:12]}.safetensors"
    res = methods.train_generator(
        net, z, op, op.stack(ys), mask=mask, evaluate=batch_evaluator(op.ops, ys, [s.problem.evaluate for s in runs]),
        progress=rc.progress, desc=f"{rc.method} x{len(runs)}", checkpoint=checkpoint, identity=identity,
        **rc.fit_options())
    for b, s in enumerate(runs):
        net.unstack_into(b, s.net)
    return split_result(res, len(runs))


BATCH_CHECKPOINT_PREFIX = "checkpoint-batch-"


def run_batch(problems, recipes, outs, overwrite: bool = False, command: str = "fit", writers=None) -> List[dict]:
    """:func:`run` for several problems of one grid whose networks train in ONE loop (a batch dimension:
    :mod:`mri_oes.batched`; the same result per problem as :func:`run`, up to float rounding). Masks are
    learned (or loaded) per problem first, each in its own run folder; every run folder is written as
    :func:`run` writes it, its record's ``config`` holding ``batch_slices``. ``recipes``/``writers``: one
    per problem. Refused (one line) for a stopping rule or GP-DIP, and for problems whose grid, network
    or fit options differ."""
    if not (len(problems) == len(recipes) == len(outs)) or not problems:
        raise ValueError("run_batch needs one recipe and one output folder per problem")
    writers = list(writers) if writers is not None else [None] * len(problems)
    _batch_refusals(problems, recipes)
    with contextlib.ExitStack() as stack:
        runs = [_open(p, r.override(batch_slices=len(problems)), o, overwrite, True, command, stack)
                for p, r, o in zip(problems, recipes, outs)]
        results = _train_batch(runs) if runs[0].rc.steps > 0 else [None] * len(runs)
        records = []
        for s, res, w in zip(runs, results, writers):
            for stale in s.work.glob(BATCH_CHECKPOINT_PREFIX + "*"):   # another grouping's, never resumed
                stale.unlink()
            records.append(_close(s, res, command, w))
        return records
