"""IMP / Lottery Image Prior (SPEC §5): iterative magnitude pruning with rewinding, single- and
multi-image.

Every mask here is trained through the ONE fitting loop (:func:`mri_oes.methods.train_generator` →
:func:`mri_oes.core.fit`).

IMP (:func:`run_imp`): train N steps → prune ``prune_fraction`` (20%) of the remaining weights by
global magnitude of the trained weights → rewind survivors to ``theta_0`` (or to the weights at step
``j`` of the first, dense round) → repeat. The mask of round ``i`` keeps exactly
``round(0.8^i · d)`` weights (computed from ``d`` directly, so rounding errors never accumulate).

Multi-image IMP (LIP): one network, loss over several degraded images. Two variants:

* ``shared_z=False`` (default): one ``z`` per image, stacked into a batch ``(B, C, H, W)`` that goes
  through the one network; the operator is block-diagonal over the batch (:class:`Stacked`).
  **BatchNorm semantics** (the network runs in train mode, as every DIP fit does): ``bn="per-image"``
  (default) runs the B inputs through the network one at a time (an instance-level ``forward``
  override, same parameters, so ``functional_call`` masking still applies) — each image sees its own
  batch statistics, exactly as in single-image DIP, and the losses add up; ``bn="batch"`` runs one
  batched pass, so BN statistics are pooled over the B images (faster, but couples the images).
  With B = 1 both are single-image DIP.
* ``shared_z=True`` (SPEC §5 wording "one network, one z"): one ``z``, one output image, every
  operator applied to that same output (the network fits all measurements with one image).

The loss is the core's mean over all measurement entries of all images, i.e. the sum over the images
divided by the total number of entries (proportional to the sum; equal weights per entry).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from operators.base import LinearOperator
from operators.natural import Denoise

from . import core, methods
from .recipe import without_off_values
from .errors import RunMismatch, UserError
from .generators import GeneratorConfig, make_input
from .io import write_json
from .masks import Mask, check_density, maskable_parameters, topk_mask
from .statefile import canonical as _canonical, check_identity, load_state, save_state
from operators.stacked import Stacked
from .pruning import report_collapse


def stacked_evaluator(evaluators: Sequence[Optional[Callable]], shared_input: bool = False) -> Callable:
    """``evaluate`` for a :class:`Stacked` output: the mean of each metric over the images (plus
    ``psnr_i``... per image)."""
    evaluators = list(evaluators)

    def evaluate(x_hat):
        rows = []
        for i, ev in enumerate(evaluators):
            if ev is None:
                continue
            rows.append((i, ev(x_hat if shared_input else x_hat[:, i])))
        out = {}
        if rows:
            for k in rows[0][1]:
                out[k] = float(sum(r[k] for _, r in rows) / len(rows))
            for i, r in rows:
                for k, v in r.items():
                    out[f"{k}_{i}"] = v
        return out

    return evaluate


# ================================================================================ PAI score functions


def should_stop(losses: Sequence[float], k: Optional[int]) -> bool:
    """Clean-image-free IMP stopping rule: True when the loss rose in each of the last ``k`` rounds
    (``losses[-k-1] < losses[-k] < ... < losses[-1]``). ``k`` None/0 never stops."""
    if not k or k < 1 or len(losses) < k + 1:
        return False
    tail = [float(v) for v in losses[-(k + 1):]]
    return all(b > a for a, b in zip(tail, tail[1:]))


def imp_keep_count(n_total: int, round_i: int, prune_fraction: float = 0.2) -> int:
    """Weights kept by the mask of IMP round ``i``: ``round((1 − prune_fraction)^i · d)`` (≥ 1)."""
    return max(1, int(round((1.0 - prune_fraction) ** round_i * n_total)))


def imp_rounds_for(target_density: float, prune_fraction: float = 0.2) -> int:
    """Number of prune rounds to reach ``target_density`` (the first round at or below it)."""
    check_density(target_density)
    return max(0, int(math.ceil(math.log(target_density) / math.log(1.0 - prune_fraction) - 1e-9)))


def magnitude_prune(net, mask: Mask, n_keep: int, seed: int = 0, min_layer_density: float = 0.0,
                    meta=None) -> Mask:
    """Keep the ``n_keep`` largest ``|theta|`` among the currently kept weights (global ranking)."""
    params = maskable_parameters(net, mask.meta.get("scope", "weights"))
    scores = {k: torch.where(mask.keep[k], params[k].detach().abs().cpu().double(),
                             torch.full(mask.keep[k].shape, -1.0, dtype=torch.float64))
              for k in mask.keep}
    return topk_mask(scores, n_keep / mask.n_total, seed=seed, min_layer_density=min_layer_density,
                     meta=meta)


def _tensor_digest(ts) -> str:
    h = hashlib.sha256()
    for t in ts:
        t = t.detach().cpu().contiguous()
        if t.is_complex():
            t = torch.view_as_real(t)
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def per_image_forward(net: nn.Module) -> nn.Module:
    """Make ``net`` (in place) run a batch ``z`` one item at a time, so BatchNorm statistics are per
    image (see module docstring). Parameters and their names are unchanged."""
    if getattr(net, "_per_image_forward", False):
        return net
    orig = type(net).forward

    def forward(z):
        if z.shape[0] == 1:
            return orig(net, z)
        return torch.cat([orig(net, z[i:i + 1]) for i in range(z.shape[0])], 0)

    net.forward = forward
    net._per_image_forward = True
    return net


def build_imp_problem(problems, cfg: GeneratorConfig, image_hw, seed: int, shared_z: bool = False,
                      evaluate=None, device=None, bn: str = "per-image"):
    """``(net, z, operator, y, evaluate, seeds)`` for IMP: one problem → itself; several → a
    :class:`Stacked` operator with one ``z`` per image (batch) or a shared ``z``."""
    net, z, seeds = methods.setup_generator(cfg, image_hw, seed, device=device)
    problems = list(problems)
    if not problems:
        raise UserError("IMP needs at least one (operator, y) problem")
    evs = evaluate if isinstance(evaluate, (list, tuple)) else [evaluate] * len(problems)
    if len(evs) != len(problems):
        raise UserError(f"{len(evs)} evaluators for {len(problems)} problems")
    if len(problems) == 1:
        op, y = problems[0]
        return net, z, op, y, evs[0], seeds
    op = Stacked([p[0] for p in problems], shared_input=shared_z)
    y = op.stack_measurements([p[1] for p in problems])
    if not shared_z:
        zs = [z] + [make_input(cfg, image_hw, core.derive_seed(seed, f"z{i}"), device=device)
                    for i in range(1, len(problems))]
        z = torch.cat(zs, 0)
        if bn == "per-image":
            per_image_forward(net)
        elif bn != "batch":
            raise UserError(f"bn must be 'per-image' or 'batch', got {bn!r}")
        seeds["z_seeds"] = [seeds["z_seed"]] + [core.derive_seed(seed, f"z{i}") for i in range(1, len(problems))]
    ev = stacked_evaluator(evs, shared_z) if any(e is not None for e in evs) else None
    return net, z, op, y, ev, seeds


def run_imp(cfg: GeneratorConfig, image_hw, seed: int, problems: Sequence[Tuple[LinearOperator, torch.Tensor]],
            steps_per_round: int, rounds: Optional[int] = None, target_density: Optional[float] = None, *,
            prune_fraction: float = 0.2, rewind: Union[str, int] = "init", scope: str = "weights",
            out_dir=None, evaluate=None, oracle_clean_target=None, stop_rising: Optional[int] = None,
            resume: bool = True, shared_z: bool = False, lr: float = 1e-2, input_noise_std: float = 0.0,
            min_layer_density: float = 0.0, log_every: int = 50, progress: bool = False,
            bn: str = "per-image", device=None, verbose: bool = True, precision: str = "float32",
            checkpoint_every: int = 500) -> dict:
    """Iterative magnitude pruning with rewinding (LIP Alg. 1–2; SPEC §5).

    Round ``r`` (r = 0..R) trains the mask ``m_r`` (``m_0`` dense, density ``0.8^r``) for
    ``steps_per_round`` steps from the rewind point, records its final DIP loss (vs ``y``), saves
    ``round_{r:02d}.safetensors``, then (r < R) prunes ``prune_fraction`` of ``m_r``'s kept weights by
    global magnitude of the trained weights to give ``m_{r+1}``.

    ``rounds``: R (number of prunings), or ``target_density``: the first round at/below it.
    ``rewind``: ``"init"`` (theta_0) or an int ``j`` (the weights at step j of round 0).
    ``oracle_clean_target``: list of clean images (one per problem): train against them with the
    identity operator instead of ``y`` — the LIP authors' oracle; labelled as such everywhere.
    ``stop_rising``: stop when the final loss rose that many rounds in a row (:func:`should_stop`).
    ``bn``: multi-image BatchNorm semantics, ``"per-image"`` or ``"batch"`` (module docstring).
    ``out_dir``: saves every round plus ``imp_state.json``; with ``resume`` a rerun continues after
    the last finished round and yields the same masks as an uninterrupted run.

    Returns ``{"rounds": [per-round dict], "masks": [Mask], "stopped_early": bool,
    "recommended_round": int, "out_dir": str|None}``."""
    R, rewind = _imp_plan(steps_per_round, rounds, target_density, prune_fraction, rewind)
    problems, target = _imp_targets(list(problems), oracle_clean_target)
    net, z, op, y, ev, seeds = build_imp_problem(problems, cfg, image_hw, seed, shared_z, evaluate, device, bn)
    theta0 = {k: v.detach().clone() for k, v in net.state_dict().items()}

    fp_src = {"cfg": cfg.to_dict(), "hw": list(image_hw), "seed": int(seed), "steps": int(steps_per_round),
              "prune_fraction": prune_fraction, "rewind": rewind, "scope": scope, "shared_z": shared_z,
              "lr": lr, "input_noise_std": input_noise_std, "min_layer_density": min_layer_density,
              "target": target, "bn": bn if len(problems) > 1 and not shared_z else "single",
              "data": _tensor_digest([y, z]), "operator": op.describe(),
              "rounds": R, "stop_rising": stop_rising, "log_every": log_every,
              "versions": {"torch": torch.__version__, "mri_oes": _mri_oes_version()}}
    fp_src.update(without_off_values({"precision": precision}))
    fingerprint = hashlib.sha256(json.dumps(fp_src, sort_keys=True, default=str).encode()).hexdigest()[:20]
    ident = _canonical(fp_src)
    base_meta = {"generator": cfg.to_dict(), "init_seed": seeds["init_seed"], "z_seed": seeds["z_seed"],
                 "seed": int(seed), "image_hw": list(image_hw), "scope": scope, "method": "imp",
                 "prune_fraction": prune_fraction, "rewind": rewind, "steps_per_round": steps_per_round,
                 "imp_target": target, "shared_z": shared_z, "n_images": len(problems), "lr": lr,
                 "input_noise_std": input_noise_std, "fingerprint": fingerprint,
                 "bn": fp_src["bn"]}
    if "z_seeds" in seeds:
        base_meta["z_seeds"] = seeds["z_seeds"]

    out = Path(out_dir) if out_dir is not None else None
    state_path = out / "imp_state.json" if out else None
    rows: List[dict] = []
    masks: List[Mask] = []
    mask = Mask.ones(net, scope)
    rewind_state = theta0 if rewind == "init" else None
    start = 0
    if out and resume and state_path.is_file():
        st, rows, masks, resumed_mask, resumed_rewind = _resume_imp(out, state_path, ident, fingerprint, rewind,
                                                                   verbose)
        start = len(rows)
        mask = resumed_mask if resumed_mask is not None else mask
        rewind_state = resumed_rewind if resumed_rewind is not None else rewind_state
        if st.get("finished"):
            return _imp_return(rows, masks, st.get("stopped_early", False), stop_rising, out)
    elif out:
        # a fresh run: no earlier round or state stays beside it (a round checkpoint is kept when
        # resuming is allowed: core.fit resumes it only on an identical identity, else refuses)
        _clear_imp_files(out, keep_checkpoints=resume)
    n_total = mask.n_total
    stopped = False
    for r in range(start, R + 1):
        # rewind survivors (and everything else) to the rewind point; pruned weights are masked
        net.load_state_dict(theta0 if r == 0 or rewind_state is None else rewind_state)
        snap = {}
        le = log_every
        cb = None
        if r == 0 and rewind != "init":
            le = math.gcd(log_every, rewind) if rewind > 0 else log_every

            def snapshot_at_rewind(row, _snap=snap):
                if row["step"] == rewind and "w" not in _snap:
                    _snap["w"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
            cb = snapshot_at_rewind
        # mid-round checkpoints (resume inside a round); not for round 0 with rewind=j, whose snapshot
        # at step j must be taken live
        ck = out / f"round_{r:02d}.ckpt.safetensors" if out and not (r == 0 and rewind != "init") else None
        res = methods.train_generator(net, z, op, y, steps=steps_per_round, mask=None if r == 0 else mask,
                                      lr=lr, evaluate=ev, log_every=le, input_noise_std=input_noise_std,
                                      seed=core.derive_seed(seed, "imp-train"), progress=progress,
                                      checkpoint=ck, identity={"imp": ident, "round": r}, checkpoint_every=checkpoint_every,
                                      desc=f"IMP round {r}", callback=cb, precision=precision)
        if r == 0 and rewind != "init":
            rewind_state = snap.get("w", theta0) if rewind > 0 else theta0
            if out:
                save_state(out / "rewind_weights.safetensors", rewind_state, {**ident, "what": "rewind"})
        row = _round_row(r, res, mask, net, z, op, theta0 if r == 0 or rewind_state is None else rewind_state)
        mask.meta = {**base_meta, **{k: v for k, v in row.items()}, "round": r}
        fname = f"round_{r:02d}.safetensors"
        row["mask_file"] = fname
        masks.append(mask)
        rows.append(row)
        if verbose:
            ps = row["final"].get("psnr")
            print(f"IMP round {r:2d}: density {row['density']:.4f} kept {row['kept_weights']:,} "
                  f"final loss {row['final_loss']:.5g}" + (f" final PSNR {ps:.2f}" if ps is not None else ""),
                  file=sys.stderr)
        stopped = should_stop([rw["final_loss"] for rw in rows], stop_rising)
        last = r == R or stopped
        nxt = None
        if not last:
            nxt = magnitude_prune(net, mask, imp_keep_count(n_total, r + 1, prune_fraction),
                                  seed=core.derive_seed(seed, f"imp-ties-{r + 1}"),
                                  min_layer_density=min_layer_density,
                                  meta={"scope": scope, "fingerprint": fingerprint})
        if out:
            mask.save(out / fname)
            if nxt is not None:
                nxt.save(out / "next_mask.safetensors")
            elif (out / "next_mask.safetensors").is_file():
                (out / "next_mask.safetensors").unlink()
            write_json(state_path, {"fingerprint": fingerprint, "identity": ident, "settings": fp_src, "rounds": rows,
                                    "next_mask": "next_mask.safetensors" if nxt is not None else None,
                                    "finished": last, "stopped_early": stopped, "planned_rounds": R})
        if last:
            break
        mask = nxt
    net.load_state_dict(theta0)
    return _imp_return(rows, masks, stopped, stop_rising, out)


def _resume_imp(out: Path, state_path: Path, ident: dict, fingerprint: str, rewind, verbose: bool):
    """The finished rounds of the IMP run under ``out``: ``(state, rows, masks, next mask or None, rewind
    weights or None)``. Only an identical run resumes (every setting, data digest, versions); another
    is refused, naming the differing settings. Nothing here is unpickled: JSON, masks and state files only."""
    st = _read_imp_state(state_path)
    check_identity(state_path, ident, st.get("identity", st.get("settings")), what="IMP run")
    rows = st["rounds"]
    masks = [_load_round_mask(out, r["mask_file"], fingerprint) for r in rows]
    next_mask = _load_round_mask(out, st["next_mask"], fingerprint) if st.get("next_mask") else None
    rewind_state = None
    if rewind != "init" and rows:
        rw = out / "rewind_weights.safetensors"
        if not rw.is_file():
            raise UserError(f"{out}: cannot resume IMP with rewind={rewind}: {rw.name} is missing "
                            "(an older run stored it as a pickle, which is never loaded); start afresh "
                            "(--overwrite or --no-resume)")
        rewind_state = load_state(rw, {**ident, "what": "rewind"}, what="IMP rewind state")
    _clear_imp_files(out, keep_rounds=len(rows), keep_checkpoints=True)
    if verbose and rows:
        print(f"IMP: resuming after round {len(rows) - 1} from {state_path}", file=sys.stderr)
    return st, rows, masks, next_mask, rewind_state


def _imp_plan(steps_per_round, rounds, target_density, prune_fraction, rewind):
    """``(rounds R, rewind point)`` of an IMP run, every argument checked (one line naming it)."""
    if steps_per_round < 0:
        raise UserError("steps_per_round must be >= 0")
    if not 0 < prune_fraction < 1:
        raise UserError(f"prune_fraction must be in (0, 1), got {prune_fraction}")
    if rounds is None and target_density is None:
        raise UserError("give rounds or target_density")
    R = int(rounds) if rounds is not None else imp_rounds_for(target_density, prune_fraction)
    if R < 0:
        raise UserError("rounds must be >= 0")
    if rewind != "init":
        try:
            rewind = int(rewind)
        except (TypeError, ValueError):
            raise UserError(f"rewind must be 'init' or a step number, got {rewind!r}") from None
        if not 0 <= rewind <= steps_per_round:
            raise UserError(f"rewind step {rewind} outside [0, {steps_per_round}]")
    return R, rewind


def _imp_targets(problems: list, oracle_clean_target):
    """``(problems, target)``: the degraded measurements (``y``), or the LIP authors' oracle, the clean
    images under the identity operator (``oracle-clean``, warned)."""
    if oracle_clean_target is None:
        return problems, "y"
    clean = list(oracle_clean_target)
    if len(clean) != len(problems):
        raise UserError("oracle_clean_target needs one clean image per problem")
    problems = []
    for c in clean:
        c = c[0] if c.dim() == 4 else c
        problems.append((Denoise(tuple(c.shape)), c))
    warnings.warn("IMP is training against the CLEAN image (oracle_clean_target): the resulting "
                  "masks are an oracle baseline, not a blind method")
    return problems, "oracle-clean"


def _round_row(r: int, res, mask: Mask, net, z, op, rewind_state) -> dict:
    """Round ``r``'s row: its mask's density, the fit's final and oracle-best metrics, and the collapse
    check of the mask at the rewind point (``net`` keeps its trained weights)."""
    summ = res.summary()
    row = {"round": r, "density": mask.density, "sparsity": mask.sparsity, "kept_weights": mask.n_kept,
           "final_loss": summ["final"].get("data_loss", summ["final_loss"]), "diverged": res.diverged,
           "final": summ["final"], "best": summ["best"], "best_step": summ["best_step"],
           "wall_time_s": summ["wall_time_s"]}
    trained = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(rewind_state)
    row["collapse"] = report_collapse(net, z, op, mask, what=f"IMP round {r} mask") if r else \
        {"collapsed": False, "empty_layers": [], "constant_output": False}
    net.load_state_dict(trained)
    return row


def _mri_oes_version():
    from . import __version__
    return __version__


def _read_imp_state(path: Path) -> dict:
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable IMP state (JSON: {e}); start afresh (--overwrite)") from None
    if not isinstance(st, dict) or not isinstance(st.get("rounds"), list) or \
            not all(isinstance(r, dict) and isinstance(r.get("mask_file"), str) for r in st["rounds"]):
        raise UserError(f"{path}: not a valid IMP state (no list of rounds with mask files)")
    return st


def _load_round_mask(out: Path, name, fingerprint: str) -> Mask:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+\.safetensors", name):
        raise UserError(f"{out}: IMP state names mask file {name!r}; expected a plain .safetensors name")
    path = out / name
    m = Mask.load(path)
    if m.meta.get("fingerprint") != fingerprint:
        raise RunMismatch(f"{path}: this IMP mask belongs to another run (fingerprint "
                          f"{m.meta.get('fingerprint')!r}, this run {fingerprint!r}); use another output "
                          "folder or --overwrite", keys=["fingerprint"], path=path)
    return m


_IMP_FILES = re.compile(r"^(round_\d+(\.safetensors|\.ckpt\..*)|next_mask\.safetensors|rewind_weights\..*"
                        r"|imp_state\.json)$")


def _clear_imp_files(out: Path, keep_rounds: int = 0, keep_checkpoints: bool = False) -> None:
    """Remove IMP files of an earlier run from ``out`` so no stale later round stays beside a new
    run's rounds: ``keep_rounds`` 0 removes every round mask, the next mask, rewind weights and the
    state (and round checkpoints unless ``keep_checkpoints``); ``keep_rounds`` k > 0 (resuming)
    removes only round masks >= k."""
    if not out.is_dir():
        return
    for p in out.iterdir():
        m = _IMP_FILES.match(p.name)
        if not m or not p.is_file():
            continue
        if keep_checkpoints and ".ckpt." in p.name and not p.name.endswith(".pt"):
            continue
        if keep_rounds:
            r = re.match(r"^round_(\d+)\.safetensors$", p.name)
            if not (r and int(r.group(1)) >= keep_rounds):
                continue
        p.unlink()


def _imp_return(rows, masks, stopped, stop_rising, out):
    rec = len(rows) - 1 - (int(stop_rising) if stopped else 0)
    return {"rounds": rows, "masks": masks, "stopped_early": bool(stopped),
            "recommended_round": max(rec, 0), "out_dir": str(out) if out else None}
