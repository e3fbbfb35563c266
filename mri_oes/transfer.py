"""Mask transfer (OES appendix H; OES Table 5; LIP transfer): learn a mask on one source problem, reuse
it on other images / scans / accelerations / tasks, with dense DIP and an IMP mask of equal density
beside it.

One generic driver, :func:`run_transfer`, takes a source :class:`Problem` and named target problems;
:func:`natural_transfer` and :func:`mri_transfer` only build those problems.

* Masks: for every density ``d``: an OES mask (:func:`methods.learn_oes_mask`) and an IMP mask
  (:func:`imp.run_imp`) learned on the source at the source's ``theta_in``. The IMP mask has
  exactly the OES mask's density: the IMP run uses ``R = imp_rounds_for(d, 0.2)`` rounds (or
  ``imp_rounds``) with the per-round prune fraction ``1 − d^(1/R)`` (≈ 20%), so round ``R`` keeps
  ``round(d·n)`` weights. Masks are saved to ``masks/`` and reused on a rerun.
* Every case (target × method × density) trains the network from the mask's own ``theta_in`` and
  ``z`` (rebuilt at the target's image size: hourglass weights do not depend on the size) through
  :func:`methods.train_generator` and writes ``cases/<id>.json`` atomically; a rerun skips finished
  cases.
* MRI with recon's network (``mri-oes transfer --mri … --preset cpu|gpu``): the preset's generator
  and fit options (``fit_options``) for every case, and with data consistency each case's ``final`` is
  the image projected onto its target's measured k-space, ``final_network`` the network output.
* Outputs: ``table.csv`` + ``table.json`` (scenario × method × density → final/best PSNR/SSIM, step of
  best, kept weights, kept-weights-per-measurement ratio), ``psnr_<scenario>.png`` curves and
  ``layer_density_d<d>.png`` (per-layer density, OES vs IMP).

The kept-weights-per-measurement ratio is ``kept / m`` with ``m`` the number of real-valued measured
entries (nonzero entries of ``A(1)``, ×2 for complex data) — SPEC §8: scale this ratio, not the
density, when shrinking an experiment.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import torch

from . import core, imp, methods, pruning
from .recipe import without_off_values
from .errors import UserError
from .generators import GeneratorConfig
from .io import atomic_path, versions, write_json
from .masks import Mask, check_density
from .statefile import canonical, check_identity, identity_digest, tensor_digest
from .schema import make_record
from .problem import Problem, measurement_count  # noqa: F401  (Problem: operator, y, image_hw, evaluate, info)

DEFAULT_DENSITIES = (0.5, 0.2, 0.1, 0.03)
#: what is compared, in the schema's mask_source vocabulary: "none" = dense DIP
MASK_SOURCES = ("none", "oes", "imp")


#: colours of the classical references (mri.baselines.METHODS) in the quality-per-minute plot
REFERENCE_COLORS = {"zero-filled": "tab:red", "sense": "grey", "l1-wavelet": "black"}


def _fmt_d(d: float) -> str:
    return f"{d:g}".replace(".", "p")


def _case_id(scenario: str, method: str, density: float) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in scenario)
    return f"{safe}__{method}" + ("" if method == "none" else f"__d{_fmt_d(density)}")


def _problem_identity(p: Problem) -> dict:
    """What identifies a problem's data: digests of ``y`` and the operator (description + tensors)."""
    return {"y": tensor_digest(p.y), "operator": core._operator_identity(p.operator), "info": canonical(p.info)}


def _reuse(path: Path, expected: dict, found, what: str) -> None:
    """A saved mask/case is reused only when its identity equals this run's; otherwise refuse
    (:class:`~mri_oes.errors.RunMismatch` naming the differing keys)."""
    check_identity(path, expected, found if isinstance(found, dict) else {}, what=what)


def _versions_id() -> dict:
    return {"torch": torch.__version__, "mri_oes": versions().get("mri_oes")}


def _source_masks(source: Problem, cfg, seed, densities, methods_, mask_dir: Path, *, mask_steps,
                  imp_steps_per_round, imp_rounds, lr, scope, min_layer_density, log_every, progress,
                  precision="float32", checkpoint_every=500):
    masks: Dict[tuple, Mask] = {}
    src = {"source": _problem_identity(source), "generator": cfg.to_dict(), "seed": int(seed), "scope": scope,
           "min_layer_density": min_layer_density, "lr": lr, "versions": _versions_id(),
           **without_off_values({"precision": precision})}
    for d in densities:
        if "oes" in methods_:
            path = mask_dir / f"oes_d{_fmt_d(d)}.safetensors"
            ident = {**src, "method": "oes", "density": d, "mask_steps": mask_steps}
            if path.is_file():
                m = Mask.load(path)
                _reuse(path, ident, m.meta.get("identity"), "transfer OES mask")
                masks[("oes", d)] = m
            else:
                net, z, seeds = methods.setup_generator(cfg, source.image_hw, seed)
                meta = {"generator": cfg.to_dict(), **seeds, "image_hw": list(source.image_hw),
                        "source": source.info}
                print(f"transfer: learning OES mask d={d:g} on the source ({mask_steps} steps)", file=sys.stderr)
                m, _ = methods.learn_oes_mask(net, z, source.operator, source.y, d, steps=mask_steps, lr=lr,
                                              scope=scope, min_layer_density=min_layer_density,
                                              seed=core.derive_seed(seed, "oes"), meta=meta,
                                              log_every=log_every, progress=progress,
                                              checkpoint=mask_dir / f"oes_d{_fmt_d(d)}.ckpt.safetensors",
                                              identity=ident, precision=precision,
                                              checkpoint_every=checkpoint_every)
                m.meta["collapse"] = pruning.report_collapse(net, z, source.operator, m, what=f"OES mask d={d:g}")
                m.meta["identity"] = ident
                m.save(path)
                masks[("oes", d)] = m
        if "imp" in methods_:
            path = mask_dir / f"imp_d{_fmt_d(d)}.safetensors"
            R = imp_rounds if imp_rounds is not None else max(1, imp.imp_rounds_for(d, 0.2))
            frac = 1.0 - d ** (1.0 / R)
            ident = {**src, "method": "imp", "density": d, "imp_steps_per_round": imp_steps_per_round,
                     "imp_rounds": R, "prune_fraction": frac}
            if path.is_file():
                m = Mask.load(path)
                _reuse(path, ident, m.meta.get("identity"), "transfer IMP mask")
                masks[("imp", d)] = m
            else:
                print(f"transfer: IMP to d={d:g}: {R} rounds x {imp_steps_per_round} steps, "
                      f"prune fraction {frac:.4f}", file=sys.stderr)
                res = imp.run_imp(cfg, source.image_hw, seed, [(source.operator, source.y)],
                                      imp_steps_per_round, rounds=R, prune_fraction=frac, scope=scope,
                                      out_dir=mask_dir / f"imp_d{_fmt_d(d)}", lr=lr,
                                      checkpoint_every=checkpoint_every,
                                      min_layer_density=min_layer_density, log_every=log_every,
                                      progress=progress, evaluate=source.evaluate, precision=precision)
                m = res["masks"][-1]
                m.meta.update({"source": source.info, "image_hw": list(source.image_hw), "requested_density": d,
                               "identity": ident})
                m.save(path)
                masks[("imp", d)] = m
    return masks


def _saved_case(path: Path, ident: dict) -> dict:
    """A finished case's record, reused only when its identity is exactly ``ident``."""
    try:
        saved = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: unreadable transfer case ({e}); use --overwrite") from None
    _reuse(path, ident, saved.pop("identity", None) if isinstance(saved, dict) else None, "transfer case")
    return saved


def _case_network(cfg, prob, seed: int, scope: str, mask):
    """``(net, z, mask, kept weights)`` of a case: the dense seeded network, or the mask's own (its init, z)."""
    if mask is None:
        net, z, _ = methods.setup_generator(cfg, prob.image_hw, seed)
        return net, z, None, sum(p.numel() for p in pruning.maskable_parameters(net, scope).values())
    net, z = mask.build(prob.image_hw)
    return net, z, mask, mask.n_kept


def run_transfer(source: Problem, targets: Dict[str, Problem], cfg: GeneratorConfig, out_dir, *,
                 seed: int = 0, densities: Sequence[float] = DEFAULT_DENSITIES,
                 methods_: Sequence[str] = MASK_SOURCES, mask_steps: int = 2000, train_steps: int = 2000,
                 imp_steps_per_round: int = 500, imp_rounds: Optional[int] = None, lr: float = 1e-2,
                 dense_lr: Optional[float] = None, scope: str = "weights", min_layer_density: float = 0.0,
                 log_every: int = 50, progress: bool = False, extra_info: Optional[dict] = None,
                 labels: Optional[Dict[str, dict]] = None, precision: str = "float32",
                 fit_options: Optional[dict] = None, final_image: Optional[Dict[str, Callable]] = None,
                 checkpoint_every: int = 500) -> dict:
    """Run every (target, mask source, density) case; returns ``{"rows": [...], "out_dir": ...}``.
    ``labels[target key]``: the table columns ``scenario``, ``task``, ``scan``, ``accel`` of a target.
    ``fit_options``: more :func:`methods.train_generator` options for every case (``lr_final``,
    ``lr_decay_start``, ``grad_clip``, ``input_noise_std``, ``output_average``: the MRI preset's). ``final_image[target
    key](output) -> metrics`` (MRI data consistency): the case's ``final`` is then the metrics of that
    image and ``final_network`` those of the network's output (``best`` is comparable to the latter)."""
    out = Path(out_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    densities = [check_density(d) for d in densities]
    for m in methods_:
        if m not in MASK_SOURCES:
            raise UserError(f"--mask-sources must be among {MASK_SOURCES}, got {m!r}")
    masks = _source_masks(source, cfg, seed, densities, methods_, out / "masks", mask_steps=mask_steps,
                          imp_steps_per_round=imp_steps_per_round, imp_rounds=imp_rounds, lr=lr,
                          scope=scope, min_layer_density=min_layer_density, log_every=log_every,
                          progress=progress, precision=precision, checkpoint_every=checkpoint_every)
    rows = []
    fit_options = dict(fit_options or {})
    case_config = {"densities": densities, "mask_sources": list(methods_), "mask_steps": mask_steps,
                   "steps": train_steps, "imp_steps": imp_steps_per_round, "imp_rounds": imp_rounds, "lr": lr,
                   "dense_lr": dense_lr or lr, "scope": scope, "min_layer_density": min_layer_density,
                   "generator": cfg.to_dict(), "precision": precision, **fit_options,
                   "data_consistency": bool(final_image), **(extra_info or {})}
    common = {"train_steps": train_steps, "log_every": log_every, "seed": int(seed), "scope": scope,
              "generator": cfg.to_dict(), "versions": _versions_id(), **without_off_values({"precision": precision}),
              **fit_options}
    for scen, prob in targets.items():
        n_meas = measurement_count(prob.operator)
        cases = ([("none", 1.0)] if "none" in methods_ else []) + \
                [(m, d) for d in densities for m in ("oes", "imp") if m in methods_]
        for method, d in cases:
            cid = _case_id(scen, method, d)
            path = out / "cases" / f"{cid}.json"
            mk = masks.get((method, d))
            lr_case = lr if mk is not None else (dense_lr or lr)
            ident = {"case": cid, "scenario": scen, "method": method, "requested_density": d,
                     "target": _problem_identity(prob), "lr": lr_case,
                     "mask": None if mk is None else identity_digest(mk.meta.get("identity")), **common}
            if final_image and scen in final_image:   # absent otherwise: earlier cases keep their identity
                ident["data_consistency"] = True
            if path.is_file():   # reuse a finished case only when it is exactly this case
                rows.append(_saved_case(path, ident))
                continue
            net, z, mask, n_kept = _case_network(cfg, prob, seed, scope, None if method == "none" else masks[(method, d)])
            collapse = pruning.report_collapse(net, z, prob.operator, mask, what=cid) if mask is not None else None
            print(f"transfer: case {cid} ({train_steps} steps)", file=sys.stderr)
            res = methods.train_generator(net, z, prob.operator, prob.y, steps=train_steps, mask=mask, lr=lr_case,
                                          evaluate=prob.evaluate, log_every=log_every,
                                          seed=core.derive_seed(seed, "transfer-train"), progress=progress,
                                          checkpoint=out / "cases" / f"{cid}.ckpt.safetensors",
                                          identity=ident, desc=cid, precision=precision,
                                          checkpoint_every=checkpoint_every, **fit_options)
            s = res.summary()
            final, extra = s["final"], {}
            if final_image and scen in final_image and not res.diverged:
                final = {**final, **final_image[scen](res.output)}
                extra = {"final_network": s["final"], "data_consistency": True}
            lab = (labels or {}).get(scen, {})
            row = make_record(
                command="transfer", method="dip" if mask is None else "sparse-dip", mask_source=method,
                density=1.0 if mask is None else mask.density, kept_weights=n_kept,
                maskable_weights=mask.n_total if mask is not None else n_kept, measurements=n_meas,
                steps=train_steps, mask_steps=mask_steps if method == "oes" else 0, lr=lr_case, seed=seed,
                seeds={"seed": seed, "train_seed": core.derive_seed(seed, "transfer-train")},
                final=final, best=s["best"], best_step=s["best_step"],
                time_total_s=s["wall_time_s"], time_fit_s=s["wall_time_s"], device=str(z.device),
                diverged=res.diverged, config=case_config, task=lab.get("task"), scan=lab.get("scan"),
                scenario=lab.get("scenario", scen), accel=lab.get("accel"),
                case=cid, target_key=scen, requested_density=d, final_loss=s["final"].get("data_loss"),
                collapse=collapse, image_hw=list(prob.image_hw), target=prob.info,
                curve=[[h["step"], h.get("psnr"), h.get("time_s")] for h in res.history], **extra)
            write_json(path, {**row, "identity": ident})
            rows.append(row)
    _write_outputs(out, rows, masks, {"source": source.info, "generator": cfg.to_dict(), "seed": seed,
                                      "densities": densities, "mask_steps": mask_steps,
                                      "train_steps": train_steps, "imp_steps_per_round": imp_steps_per_round,
                                      "lr": lr, "dense_lr": dense_lr or lr, "scope": scope,
                                      "versions": versions(), **(extra_info or {})})
    return {"rows": rows, "out_dir": str(out)}


def _write_outputs(out: Path, rows, masks, info):
    from .schema import flatten, write_table
    table = []
    for r in rows:
        row = flatten(r, run_dir=str(out))
        row.update(case=r.get("case"), requested_density=r.get("requested_density"),
                   measurements=r.get("measurements"), final_loss=r.get("final_loss"),
                   collapsed=bool((r.get("collapse") or {}).get("collapsed")))
        table.append(row)
    write_table(table, out / "table")
    write_json(out / "table_info.json", info)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # pragma: no cover
        return
    for scen in dict.fromkeys(r["target_key"] for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            if r["target_key"] != scen:
                continue
            pts = [(c[0], c[1]) for c in r.get("curve", []) if c[1] is not None]
            if pts:
                lab = ("dense DIP" if r["mask_source"] == "none"
                       else f"{r['mask_source']} d={r['requested_density']:g}")
                ax.plot(*zip(*pts), label=lab)
        ax.set_xlabel("step"), ax.set_ylabel("PSNR (dB)"), ax.set_title(f"transfer: {scen}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in scen)
        with atomic_path(out / f"psnr_{safe}.png", suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
    plot_quality_per_minute(out / "quality_per_cpu_minute.png", rows, info.get("baselines") or {})
    for d in sorted({d for (_, d) in masks}):
        fig, ax = plt.subplots(figsize=(7, 4))
        for meth in ("oes", "imp"):
            if (meth, d) in masks:
                pl = masks[(meth, d)].per_layer_density()
                ax.plot(range(len(pl)), list(pl.values()), marker="o", label=meth)
        ax.set_xlabel("layer (maskable tensor, network order)"), ax.set_ylabel("kept fraction")
        ax.set_yscale("log"), ax.set_title(f"per-layer density at d={d:g}"), ax.legend()
        fig.tight_layout()
        with atomic_path(out / f"layer_density_d{_fmt_d(d)}.png", suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


def _minutes(row) -> list:
    """``[(minutes, psnr)]`` of a case's curve: the logged fit time, or (older cases without it)
    ``step × time_s_per_step``."""
    per_step = (row.get("time") or {}).get("s_per_step") or 0.0
    return [((c[2] if len(c) > 2 and c[2] is not None else c[0] * per_step) / 60.0, c[1])
            for c in row.get("curve", []) if c[1] is not None]


def plot_quality_per_minute(path: Path, rows, baselines: Dict[str, dict]) -> None:
    """PSNR against training minutes for every case, one panel per target; the classical references
    of that target (``baselines[target key][method]["psnr"]``) as horizontal lines. The mask's own
    learning time (paid once, on the source) is not on the axis; ``table_info.json`` records it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scens = list(dict.fromkeys(r["target_key"] for r in rows))
    if not scens:
        return
    cols = min(3, len(scens))
    nrows = (len(scens) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    styles = {"none": "-", "oes": "-", "imp": "--"}
    for ax, scen in zip(axes.flat, scens):
        for r in rows:
            if r["target_key"] != scen:
                continue
            pts = _minutes(r)
            if pts:
                lab = "dense DIP" if r["mask_source"] == "none" else f"{r['mask_source']} d={r['requested_density']:g}"
                ax.plot(*zip(*pts), styles.get(r["mask_source"], "-"), lw=1.4 if r["mask_source"] == "none" else 1,
                        color="k" if r["mask_source"] == "none" else None, label=lab)
        for m, v in (baselines.get(scen) or {}).items():
            ax.axhline(v["psnr"], ls=":", lw=1, color=REFERENCE_COLORS.get(m, "grey"))
            ax.annotate(m, (0, v["psnr"]), fontsize=7, va="bottom")
        ax.set_title(scen, fontsize=9), ax.set_xlabel("training CPU minutes"), ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(scens):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------ problem builders
def natural_problem(clean: torch.Tensor, task: str, *, sigma255: float = 25.0, keep_fraction: float = 0.5,
                    factor: int = 4, seed: int = 0, name: str = "image") -> Problem:
    """:func:`mri_oes.problem.natural_problem` with the transfer protocol's noise: ``denoise`` adds
    σ = ``sigma255``/255 (clipped to [0, 1]); ``inpaint`` and ``super-resolution`` are noise-free (DIP/LIP)."""
    from .problem import natural_problem as _np
    clean = clean[0] if clean.dim() == 4 else clean
    p = _np(clean.detach().cpu().numpy(), task, sigma255=sigma255 if task == "denoise" else 0.0,
            keep_fraction=keep_fraction, factor=factor, seed=core.derive_seed(seed, f"{name}-{task}"))
    p.info.update({"image": name, "scan": name, "size": list(clean.shape)})
    return p


def natural_transfer(images: Dict[str, torch.Tensor], out_dir, *, source: Optional[str] = None,
                     source_task: str = "denoise", tasks: Sequence[str] = ("denoise", "inpaint", "super-resolution"),
                     cfg: Optional[GeneratorConfig] = None, seed: int = 0, sigma255: float = 25.0,
                     keep_fraction: float = 0.5, factor: int = 4, **kw) -> dict:
    """Natural-image transfer: mask learned on ``source`` (first image by default) for
    ``source_task``; targets = every image × every task (``self:<task>`` on the source image,
    ``cross-<name>:<task>`` on the others)."""
    if not images:
        raise UserError("transfer needs at least one image")
    names = list(images)
    source = source or names[0]
    if source not in images:
        raise UserError(f"source image {source!r} not among {names}")
    shapes = {tuple(v.shape[-3:]) for v in images.values()}
    if len(shapes) != 1:
        raise UserError(f"all images must have the same size for one mask/net grid, got {sorted(shapes)}")
    C = next(iter(shapes))[0]
    cfg = cfg or GeneratorConfig.oes(out_channels=C)

    def mk(img, task, name):
        return natural_problem(img, task, sigma255=sigma255, keep_fraction=keep_fraction, factor=factor,
                               seed=seed, name=name)

    src = mk(images[source], source_task, source)
    targets = {}
    for name in names:
        for task in tasks:
            tag = "self" if name == source else f"cross-{name}"
            p = src if (name == source and task == source_task) else mk(images[name], task, name)
            targets[f"{tag}:{task}"] = p
    labels = {}
    for key in targets:
        tag, task = key.split(":")
        scan = source if tag == "self" else tag[len("cross-"):]
        scenario = ("self" if task == source_task else "cross-task") if tag == "self" else \
            ("cross-image" if task == source_task else "cross-image-task")
        labels[key] = {"scenario": scenario, "task": task, "scan": scan}
    return run_transfer(src, targets, cfg, out_dir, seed=seed, labels=labels,
                        extra_info={"kind": "natural", "source_image": source, "source_task": source_task}, **kw)


def _projected_metrics(p, x_hat) -> dict:
    """fastMRI metrics of a network output (scaled, batch axis first) projected onto ``p``'s data."""
    x = p.unscale(x_hat)
    m = p.metrics(p.data_consistency(x[0] if x.ndim == 3 else x))
    return {k: m[k] for k in ("psnr", "ssim", "nmse")} if m else {}


def mri_transfer(source_file, out_dir, *, source_slice: int = 0, targets: Sequence[tuple] = (),
                 accels: Sequence[int] = (4, 8), source_accel: int = 4, cfg: Optional[GeneratorConfig] = None,
                 seed: int = 0, mask_type: str = "equispaced", center_fraction: Optional[float] = None,
                 espirit_cache=None, data_consistency: bool = False, **kw) -> dict:
    """OES appendix-H protocol: OES/IMP masks learned on ``(source_file, source_slice)`` at 4×; targets
    ``self/<a>x`` (the source slice) and ``cross-<i>/<a>x`` for ``targets`` = ``[(file, slice), ...]``
    at every acceleration in ``accels``. Uses :mod:`mri_oes.mri.problem` (ESPIRiT maps, scaling,
    fastMRI metrics). ``center_fraction`` None: fastMRI's 0.08 at 4×, 0.04 at 8×. ``data_consistency``:
    every case's ``final`` is the network output projected onto its target's measured k-space (as
    ``recon``), ``final_network`` the output itself."""
    from .mri.data import load_slice
    from .mri.problem import build_problem

    baselines = {}   # target key -> classical references (project defaults) for the quality-per-minute plot
    projected = {}   # target key -> metrics of the data-consistent image of a network output

    def prob(file, sl_idx, accel, key):
        from .mri.baselines import METHODS as CLASSICAL, run_baseline
        p = build_problem(load_slice(file, sl_idx), accel, mask_type, seed, center_fraction=center_fraction,
                          cache=espirit_cache)
        baselines[key] = {}
        if p.reference is not None:
            for m in CLASSICAL:
                t = time.perf_counter()
                psnr = p.metrics(run_baseline(p, m))["psnr"]
                baselines[key][m] = {"psnr": psnr, "time_s": time.perf_counter() - t}
        projected[key] = lambda x, p=p: _projected_metrics(p, x)
        d = p.describe()
        info = {"file": str(file), "slice": sl_idx, "accel": accel, "scale": d.get("scale"),
                "reference": d.get("reference")}
        return p.as_problem(info, evaluate=p.evaluate)

    cfg = cfg or GeneratorConfig.oes(mri=True)
    src = prob(source_file, source_slice, source_accel, f"self/{source_accel}x")
    tg, labels = {}, {}
    for a in accels:
        tg[f"self/{a}x"] = src if a == source_accel else prob(source_file, source_slice, a, f"self/{a}x")
        labels[f"self/{a}x"] = {"scenario": "self" if a == source_accel else "cross-accel", "task": "mri",
                                "scan": Path(source_file).stem, "accel": a}
    for i, (f, sl) in enumerate(targets, start=1):
        for a in accels:
            tg[f"cross-{i}/{a}x"] = prob(f, sl, a, f"cross-{i}/{a}x")
            labels[f"cross-{i}/{a}x"] = {"scenario": "cross-scan" if a == source_accel else "cross-scan-accel",
                                         "task": "mri", "scan": Path(f).stem, "accel": a}
    return run_transfer(src, tg, cfg, out_dir, seed=seed, labels=labels,
                        extra_info={"kind": "mri", "source": [str(source_file), source_slice, source_accel],
                                    "targets": [[str(f), s] for f, s in targets],
                                    "baselines": {k: baselines.get(k, {}) for k in tg}},
                        final_image={k: projected[k] for k in tg} if data_consistency else None, **kw)
