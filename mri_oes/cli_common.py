"""The one CLI vocabulary: every command builds its flags from these groups, so a concept has one flag
with one meaning and one validated range everywhere.

=====================  =============================================================================
``--steps``            training steps of the network (every training command)
``--mask-steps``       OES mask-learning steps
``--density``          kept fraction of the maskable weights (sparsity = 1 − density)
``--min-layer-density`` per-layer floor of kept weights (prevents layer collapse at low density)
``--levels/--width``   hourglass scales (default: the largest that fits the grid, at most 6) / channels
``--lr``               Adam learning rate of the weights
``--device``           cpu, cuda, cuda:N or auto
``--threads``          torch intra-op threads (default: see :func:`default_threads`)
``--seed``             one seed fixes init, z, noise, k-space masks and mask sampling
``--out``              output folder (default ``runs/<command>-<date-time>``)
``--overwrite``        replace an existing result (the whole folder)
``--progress/--no-progress``  progress bars (default: on when stderr is a terminal)
``--log-every``        log loss/metrics every N steps
``--checkpoint-every`` save a resumable checkpoint every N steps
=====================  =============================================================================

Bad values are refused by argparse with ONE line naming the flag (``mri-oes fit: error: argument --lr:
...``), exit status 2, before anything is written.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

from .core import PRECISIONS
from .runtime import configure_runtime, default_threads, resolve_device


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``<prog>: error: <message>``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# ------------------------------------------------------------------------------------------ types
def _number(kind, text, flag_desc):
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {flag_desc}, got {text!r}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected {flag_desc}, got {text!r}")
    return v


def _ranged(kind, lo=None, hi=None, lo_open=False, hi_open=False, what=None):
    def describe():
        if what:
            return what
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi}")
        base = "an integer" if kind is int else "a finite number"
        return base + (" " + " and ".join(parts) if parts else "")

    def parse(text):
        v = _number(kind, text, describe())
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or \
              (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            raise argparse.ArgumentTypeError(f"expected {describe()}, got {text}")
        return v

    parse.__name__ = "value"
    return parse


positive_int = _ranged(int, 1)
nonneg_int = _ranged(int, 0)
finite_float = _ranged(float)
positive_float = _ranged(float, 0, lo_open=True)
nonneg_float = _ranged(float, 0)
fraction = _ranged(float, 0, 1, lo_open=True, what="a fraction in (0, 1]")
mask_density = _ranged(float, 0, 1, lo_open=True, hi_open=True,
                       what="a density in (0, 1) (density 1 is the dense network: use --method dip)")
floor_density = _ranged(float, 0, 1, hi_open=True, what="a per-layer floor in [0, 1)")
levels_int = _ranged(int, 1, 6)
accel_int = _ranged(int, 2, what="an integer acceleration >= 2")

_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def device_name(text):
    if not _DEVICE.match(text or ""):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or auto, got {text!r}")
    return text


def out_folder(text):
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("expected a folder name")
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


# ----------------------------------------------------------------------------------------- groups
def add_run_args(p, *, log_every=True, checkpoint=True):
    """--seed --device --threads --out --overwrite --progress/--no-progress [--log-every --checkpoint-every]"""
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=nonneg_int, default=0,
                   help="one seed fixes init, z, noise, k-space masks and mask sampling (default 0)")
    g.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help=f"torch threads (default {default_threads()} here: OMP_NUM_THREADS if set, else 1 "
                        "per process on <= 2 usable cores, else min(cores, 8))")
    g.add_argument("--out", type=out_folder, default=None,
                   help="output folder (default runs/<command>-<date-time>)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing result (the whole folder)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on when stderr is a terminal)")
    if log_every:
        g.add_argument("--log-every", type=positive_int, default=50, help="log loss/metrics every N steps")
    if checkpoint:
        g.add_argument("--checkpoint-every", type=positive_int, default=500,
                       help="save a resumable checkpoint every N steps (default 500)")
    return g


def add_training_args(p, *, steps=2000, lr=1e-2):
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=positive_int, default=steps, help=f"training steps (default {steps})")
    g.add_argument("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default {lr:g})")
    g.add_argument("--precision", choices=tuple(PRECISIONS), default="float32",
                   help="generator forward/backward precision (bfloat16: torch.autocast, ~1.9x faster per step "
                        "on CPUs with AVX-512 BF16; weights, operator and loss stay float32; default float32)")
    return g


def add_generator_args(p):
    g = p.add_argument_group("generator")
    g.add_argument("--levels", type=levels_int, default=None,
                   help="hourglass scales, 1-6 (default: the largest that fits the image grid, at most 6)")
    g.add_argument("--width", type=positive_float, default=1.0,
                   help="channel multiplier of the hourglass (default 1 = the paper's 128 channels)")
    return g


def add_mask_args(p, *, density=0.05, mask_steps=1000, learn=True, reuse=True, oes=True):
    """Mask flags. ``learn``: OES learning flags; ``reuse``: --mask FILE / --fresh-init."""
    g = p.add_argument_group("mask")
    g.add_argument("--density", type=mask_density, default=density,
                   help=f"kept fraction of weights, sparsity = 1 - density (default {density:g})")
    g.add_argument("--min-layer-density", type=floor_density, default=0.0,
                   help="per-layer floor of kept weights (prevents layer collapse; default 0)")
    g.add_argument("--scope", choices=("weights", "all"), default="weights",
                   help="mask conv/linear weights (default) or every parameter (OES authors' code)")
    if reuse:
        g.add_argument("--mask", dest="mask_path", default=None,
                       help="use this mask file (from learn-mask / imp / prune-at-init) instead of learning one")
        g.add_argument("--fresh-init", action="store_true",
                       help="with --mask: apply the mask to a NEW init/z from --seed (default: the mask's own)")
    if learn and oes:
        g.add_argument("--mask-steps", type=positive_int, default=mask_steps,
                       help=f"OES mask-learning steps (default {mask_steps})")
        g.add_argument("--mask-lr", type=positive_float, default=1e-2, help="OES mask-learning rate")
        g.add_argument("--temperature", type=positive_float, default=0.2, help="Concrete temperature T")
        g.add_argument("--lam", type=nonneg_float, default=1e-9, help="KL weight λ")
    return g


def add_task_args(p, *, task=True, image_nargs="?"):
    """Natural-image degradation flags (shared by fit, learn-mask, imp, prune-at-init, transfer)."""
    g = p.add_argument_group("task")
    if task:
        g.add_argument("--task", choices=("denoise", "inpaint", "super-resolution"), default="denoise")
    g.add_argument("--sigma", type=nonneg_float, default=None,
                   help="noise std on the 0-255 scale (default: 25 for denoising, 0 otherwise)")
    g.add_argument("--keep-fraction", type=fraction, default=0.5, help="inpainting: observed pixel fraction")
    g.add_argument("--factor", type=int, choices=(2, 4, 8), default=4, help="super-resolution factor")
    g.add_argument("--crop", type=positive_int, default=None,
                   help="centre-crop the image to CROP×CROP (nothing is resized)")
    g.add_argument("--grayscale", action="store_true")
    return g


# ------------------------------------------------------------------------------------------ setup
def setup_runtime(args):
    """Tune the allocator, apply --threads and check --device (one clear line if unavailable).
    Returns the torch device."""
    args.threads = configure_runtime(getattr(args, "threads", None))
    device = resolve_device(getattr(args, "device", "cpu"))
    args.device = str(device)
    if getattr(args, "progress", None) is None and hasattr(args, "progress"):
        args.progress = sys.stderr.isatty()
    return device


def out_path(args, command: str) -> Path:
    """``--out`` or the same default everywhere: ``runs/<command>-<YYYYmmdd-HHMMSS>``."""
    if getattr(args, "out", None):
        return Path(args.out)
    return Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
