"""Run a method on a :class:`~mri_oes.problem.Problem` and write its outputs (shared by the CLI for
natural images and MRI, the demo and the experiment scripts).

Every run directory gets ``metrics.json`` (method, density AND sparsity, steps, seed, final/best
metrics, wall time, config, versions), ``recon.png`` + ``recon.npy``, ``curve.png`` (PSNR/loss), and
for OES ``mask.safetensors`` + ``finding1.png``. All files are written atomically.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import methods
from .errors import UserError
from .generators import GeneratorConfig, count_parameters
from .io import save_image, save_npy, versions, write_json
from .masks import Mask, check_density, maskable_parameters

METHODS = ("dip", "sparse-dip", "oes", "deep-decoder", "gp-dip")


@dataclass
class RunConfig:
    method: str = "sparse-dip"
    steps: int = 2000
    mask_steps: int = 1000
    density: float = 0.05
    lr: float = 1e-2
    mask_lr: float = 1e-2
    seed: int = 0
    levels: int = 5
    width: float = 1.0
    scope: str = "weights"
    min_layer_density: float = 0.0
    temperature: float = 0.2
    lam: float = 1e-9
    sgld_std: float = 0.0
    log_every: int = 50
    device: str = "cpu"
    mask_path: Optional[str] = None
    fresh_init: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def generator_config(self, problem) -> GeneratorConfig:
        mri = problem.kind == "mri"
        if self.method == "deep-decoder":
            return GeneratorConfig.deep_decoder(out_channels=problem.out_channels,
                                                layers=self.levels + 1, mri=mri)
        return GeneratorConfig.oes(out_channels=problem.out_channels, levels=self.levels, width=self.width,
                                   mri=mri)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available (use --device cpu)")
    return torch.device(name)


def prepare_out_dir(out, overwrite: bool = False) -> Path:
    """Refuse to clobber an earlier result (nothing is lost); create the folder."""
    out = Path(out)
    if (out / "metrics.json").exists() and not overwrite:
        raise UserError(f"{out} already holds a result (metrics.json); choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def plot_curve(path: Path, history: list, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .io import atomic_path
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].semilogy(steps, [max(h["data_loss"], 1e-12) for h in history])
    axes[0].set_xlabel("step"); axes[0].set_ylabel("data loss (MSE)")
    if history and "psnr" in history[0]:
        axes[1].plot(steps, [h["psnr"] for h in history])
        axes[1].set_xlabel("step"); axes[1].set_ylabel("PSNR (dB)")
    else:
        axes[1].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _display(problem, x):
    return problem.to_display(x) if problem.to_display else x[0].detach().cpu().numpy()


def get_mask(problem, rc: RunConfig, device, out: Path, cfg: GeneratorConfig, net, z, seeds):
    """The mask for a sparse method: a given file (rebuilding its own theta_in and z), or OES-learned."""
    if rc.mask_path:
        mask = Mask.load(rc.mask_path)
        mcfg = mask.generator_config()
        if mcfg.out_channels != problem.out_channels:
            raise UserError(f"mask {rc.mask_path} is for a generator with {mcfg.out_channels} output "
                            f"channels; this problem needs {problem.out_channels}")
        fresh = {"init_seed": seeds["init_seed"], "z_seed": seeds["z_seed"]} if rc.fresh_init else {}
        net, z = mask.build(problem.image_hw, device=device, **fresh)
        seeds = {"seed": rc.seed, "init_seed": fresh.get("init_seed", mask.meta["init_seed"]),
                 "z_seed": fresh.get("z_seed", mask.meta["z_seed"]), "mask_file": str(rc.mask_path),
                 "fresh_init": rc.fresh_init}
        return mask, mcfg, net, z, seeds, None
    meta = {"generator": cfg.to_dict(), **seeds, "source": problem.info}
    mask, res = methods.learn_oes_mask(
        net, z, problem.operator, problem.y, rc.density, steps=rc.mask_steps, lr=rc.mask_lr,
        temperature=rc.temperature, lam=rc.lam, scope=rc.scope, min_layer_density=rc.min_layer_density,
        seed=rc.seed, meta=meta, progress=rc.progress)
    mask.save(out / "mask.safetensors")
    return mask, cfg, net, z, seeds, res


def run(problem, rc: RunConfig, out, overwrite: bool = False, save_outputs: bool = True) -> dict:
    """Run ``rc.method`` on ``problem``; write outputs to ``out``; return the metrics dict."""
    if rc.method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {rc.method!r}")
    if rc.steps < 0 or rc.mask_steps < 0:
        raise UserError("steps must be >= 0")
    method = "sparse-dip" if rc.method == "oes" else rc.method
    device = resolve_device(rc.device)
    # validate everything that can fail on user input before any output exists
    if method == "sparse-dip":
        if rc.mask_path:
            Mask.load(rc.mask_path).generator_config()
        else:
            check_density(rc.density)
    problem.to(device)
    cfg = rc.generator_config(problem)
    t0 = time.perf_counter()
    net, z, seeds = methods.setup_generator(cfg, problem.image_hw, rc.seed, device=device)
    out = prepare_out_dir(out, overwrite) if save_outputs else Path(out)
    mask, mask_res, report = None, None, None
    if method == "sparse-dip":
        mask, cfg, net, z, seeds, mask_res = get_mask(problem, rc, device, out, cfg, net, z, seeds)
        report = methods.collapse_report(net, z, problem.operator, mask)
        f1 = methods.finding1(net, z, problem.operator, mask)
        if save_outputs:
            save_image(out / "finding1.png", _display(problem, f1))
    res = methods.train_generator(
        net, z, problem.operator, problem.y, steps=rc.steps, mask=mask, lr=rc.lr,
        sgld_std=rc.sgld_std if method == "gp-dip" else 0.0, evaluate=problem.evaluate,
        log_every=rc.log_every, seed=rc.seed, progress=rc.progress, desc=method,
        checkpoint=(out / "checkpoint.pt") if save_outputs else None,
        fingerprint=f"{method}:{rc.seed}:{rc.steps}:{cfg.to_dict()}")
    total = time.perf_counter() - t0
    n_weights = mask.n_total if mask is not None else sum(
        p.numel() for p in maskable_parameters(net).values())
    kept = mask.n_kept if mask is not None else n_weights
    metrics = {
        "method": method, "density": kept / n_weights, "sparsity": 1 - kept / n_weights,
        "kept_weights": kept, "maskable_weights": n_weights, "parameters": count_parameters(net),
        "kept_weights_per_measurement": kept / problem.n_measurements,
        "steps": rc.steps, "mask_steps": rc.mask_steps if (method == "sparse-dip" and not rc.mask_path) else 0,
        **seeds, "final": res.final_metrics, "best": res.best_metrics, "best_step": res.best_step,
        "diverged": res.diverged, "wall_time_s": total, "fit_time_s": res.wall_time_s,
        "seconds_per_step": res.wall_time_s / max(rc.steps, 1), "device": str(device),
        "generator": cfg.to_dict(), "problem": problem.info, "collapse": report,
        "config": {k: v for k, v in vars(rc).items()}, "versions": versions(),
        "history": res.history,
    }
    if mask_res is not None:
        metrics["mask_learning"] = {"history": mask_res.history, "wall_time_s": mask_res.wall_time_s,
                                    "finding1": problem.evaluate(f1) if problem.evaluate else None}
    if save_outputs:
        x = res.output
        save_npy(out / "recon.npy", x[0].numpy())
        save_image(out / "recon.png", _display(problem, x))
        if problem.measurements_display is not None:
            save_image(out / "measurements.png", problem.measurements_display)
        plot_curve(out / "curve.png", res.history, f"{method} density={metrics['density']:.4f}")
        write_json(out / "metrics.json", metrics)
    metrics["_result"] = res
    return metrics
