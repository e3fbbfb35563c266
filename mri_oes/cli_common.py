"""The one CLI vocabulary: every command builds its flags from these groups, so a concept has one flag
with one meaning and one validated range everywhere.

=======================  ===========================================================================
``--steps``              training steps of the network (every training command)
``--mask-steps``         OES (pruning) mask-learning steps
``--density``            kept fraction of the maskable weights (sparsity = 1 - density); several
                         values where a command sweeps (``transfer``)
``--min-layer-density``  per-layer floor of kept weights (prevents layer collapse at low density)
``--pruning-mask``       a saved network pruning mask (``mask.safetensors``); fastMRI's "mask" is
                         the k-space sampling mask (``--accel``, ``--mask-type``, ``--center-fraction``)
``--share-pruning-mask`` ``recon``: none (a learned mask per slice), volume (one per file) or protocol
                         (one per grid and acceleration), learned once and used by those slices
``--kl-weight``          weight of the KL term of OES mask learning (was ``--lam``)
``--reg-weight``         regularisation weight of SENSE / L1-wavelet (SigPy's ``lamda``; was ``--lamda``)
``--accel``              acceleration(s) of the k-space sampling mask (one or more values)
``--levels/--width``     hourglass scales / channels
``--lr``                 Adam learning rate of the weights
``--device``             cpu, cuda, cuda:N or auto
``--threads``            torch intra-op threads (default: see :func:`default_threads`)
``--seed``               one seed fixes init, z, noise, k-space masks and mask sampling
``--out``                output folder (default ``runs/<command>-<date-time>``)
``--overwrite``          replace an existing result (the whole folder)
``--progress``           progress bars (default: on when stderr is a terminal)
``--log-every``          log loss/metrics every N steps
``--checkpoint-every``   save a resumable checkpoint every N steps
=======================  ===========================================================================

A renamed flag keeps its old name for one release (:func:`add_renamed`): the old name still works,
is hidden from ``--help`` and prints one deprecation line on stderr.

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

from .core import PRECISIONS, STOP_RULES
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


# --------------------------------------------------------------------------------- renamed flags
#: the release that drops the old flag names accepted by :func:`add_renamed`
RENAMED_UNTIL = "0.2"


class _RenamedFlag(argparse.Action):
    """The old name of a renamed flag: stores into the new flag's ``dest`` and prints one line on stderr."""

    def __init__(self, option_strings, dest, new=None, **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {self.new} "
              f"(the old name goes in release {RENAMED_UNTIL})", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(group, new: str, old, **kw):
    """Add flag ``new`` (``kw`` as for ``add_argument``) and accept its previous name(s) ``old`` for one
    release: same values and destination, hidden from ``--help``, one deprecation line on stderr."""
    action = group.add_argument(new, **kw)
    for o in ([old] if isinstance(old, str) else old):
        group.add_argument(o, dest=action.dest, type=kw.get("type"), nargs=kw.get("nargs"),
                           choices=kw.get("choices"), metavar=action.metavar, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS, action=_RenamedFlag, new=new)
    return action


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
        g.add_argument("--log-every", type=positive_int, default=50,
                       help="log loss/metrics every N steps (default 50)")
    if checkpoint:
        g.add_argument("--checkpoint-every", type=positive_int, default=500,
                       help="save a resumable checkpoint every N steps (default 500)")
    return g


def _default(value, show=lambda v: f"{v:g}", name=None):
    """``(argparse default, help text of the default)``: a string describes a value resolved later, and
    ``None`` is the recipe's default of option ``name`` (:mod:`mri_oes.recipe`); either way the flag's
    default is None, "not given"."""
    if value is None:
        from .recipe import FIELD_PART, PARTS
        return None, show(PARTS[FIELD_PART[name]].__dataclass_fields__[name].default)
    return (None, value) if isinstance(value, str) else (value, show(value))


def recipe_from_args(args, preset=None, accel=None, **fixed):
    """The :class:`~mri_oes.recipe.Recipe` of a command's flags: the flags the command has and were
    given (not None) override the recipe's defaults, or ``preset``'s at ``accel`` (an MRI run:
    :meth:`Recipe.from_preset`), then ``fixed``. The MRI acquisition flags count only with a preset."""
    from .recipe import FIELD_PART, Recipe
    given = {k: getattr(args, k) for k in FIELD_PART
             if hasattr(args, k) and k != "accel" and (preset or FIELD_PART[k] != "mri")}
    given.update(fixed)
    return Recipe.from_preset(preset, accel, **given) if preset else Recipe().override(**given)


def add_training_args(p, *, steps=None, lr=1e-2, precision="float32"):
    """--steps --lr --precision. A string for a default (e.g. ``"from --preset"``) describes a value the
    command resolves itself, None (``steps``) is the recipe's default; the flag's default is then None."""
    g = p.add_argument_group("training")
    steps, steps_h = _default(steps, str, "steps")
    lr, lr_h = _default(lr)
    precision, precision_h = _default(precision, str) if precision != "float32" else ("float32", "float32")
    g.add_argument("--steps", type=positive_int, default=steps, help=f"training steps (default {steps_h})")
    g.add_argument("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default {lr_h})")
    g.add_argument("--precision", choices=tuple(PRECISIONS), default=precision,
                   help="generator forward/backward precision: bfloat16 runs the generator under torch.autocast "
                        "(faster per step on CPUs with native bfloat16; weights, operator and loss stay "
                        f"float32) (default {precision_h})")
    return g


def add_stop_args(p, *, rule="none", tol=0.05, patience=500):
    """--stop-rule --stop-tol --stop-patience: the ground-truth-free stop of the training fit
    (:func:`mri_oes.core.fit`; defaults as :func:`add_training_args`: a string describes a value the
    command resolves itself)."""
    g = p.add_argument_group("stopping rule (never reads the reference)")
    rule, rule_h = _default(rule, str)
    tol, tol_h = _default(tol)
    patience, patience_h = _default(patience, str)
    g.add_argument("--stop-rule", choices=STOP_RULES, default=rule,
                   help="none: train every step; image-change: stop once the (averaged) network output has "
                        "changed less than --stop-tol throughout the last --stop-patience steps; "
                        "self-validation: hold --holdout-fraction of the measured lines out of the fit (mask "
                        "learning included), stop once their prediction error has not improved for "
                        "--stop-patience steps and return the output that predicted them best (data "
                        "consistency then uses every measured line); discrepancy: stop once the network's "
                        "residual on the measured lines outside the ACS block is down to --discrepancy-tau "
                        "times what k-space noise alone leaves there (noise estimated from the k-space "
                        f"corners; results/2026-12-05-discrepancy-stop) (default {rule_h})")
    g.add_argument("--stop-tol", type=positive_float, default=tol,
                   help=f"image-change: relative change of the output per 1,000 steps (default {tol_h})")
    g.add_argument("--stop-patience", type=positive_int, default=patience,
                   help="image-change: steps the change must stay below --stop-tol; self-validation: steps "
                        f"without a lower held-out error (default {patience_h})")
    frac, frac_h = _default(None, name="holdout_fraction")
    g.add_argument("--holdout-fraction", type=_ranged(float, 0, 1, lo_open=True, hi_open=True,
                                                      what="a fraction in (0, 1)"), default=frac,
                   help="self-validation: fraction of the measured lines outside the ACS block held out, "
                        f"chosen with --seed (default {frac_h})")
    tau, tau_h = _default(None, name="discrepancy_tau")
    g.add_argument("--discrepancy-tau", type=positive_float, default=tau,
                   help="discrepancy: the multiple of the noise's residual at which the fit stops "
                        f"(default {tau_h})")
    return g


def add_generator_args(p, *, levels_cap="6", width=1.0):
    """--levels --width. ``levels_cap``: the depth cap shown in the help; ``width`` a number or (a string)
    the description of a value the command resolves itself."""
    g = p.add_argument_group("generator")
    width, width_h = _default(width, name="width")
    g.add_argument("--levels", type=levels_int, default=None,
                   help=f"hourglass scales, 1-6 (default: the largest that fits the image grid, at most "
                        f"{levels_cap})")
    g.add_argument("--width", type=positive_float, default=width,
                   help="channel multiplier of the hourglass (1 = the paper's 128 channels) "
                        f"(default {width_h})")
    return g


def add_mask_args(p, *, density=None, mask_steps=None, learn=True, reuse=True, oes=True, floor=0.0):
    """Pruning-mask flags. ``learn``: OES learning flags; ``reuse``: --pruning-mask FILE / --fresh-init.
    A string for ``density``, ``mask_steps`` or ``floor`` describes a value the command resolves itself;
    None (``density``, ``mask_steps``) is the recipe's default."""
    g = p.add_argument_group("pruning mask (which network weights are kept)")
    density, density_h = _default(density, name="density")
    floor, floor_h = _default(floor, name="min_layer_density")
    mask_steps, mask_steps_h = _default(mask_steps, str, "mask_steps")
    g.add_argument("--density", type=mask_density, default=density,
                   help=f"kept fraction of the network's maskable weights, sparsity = 1 - density "
                        f"(default {density_h})")
    g.add_argument("--min-layer-density", type=floor_density, default=floor,
                   help=f"per-layer floor of kept weights, against layer collapse (default {floor_h})")
    g.add_argument("--scope", choices=("weights", "all"), default="weights",
                   help="mask conv/linear weights only (default) or every parameter (the OES authors' code)")
    if reuse:
        add_renamed(g, "--pruning-mask", "--mask", dest="mask_path", default=None, metavar="FILE",
                    help="reuse this network pruning mask (mask.safetensors from learn-mask, imp or "
                         "prune-at-init) instead of learning one; not the k-space sampling mask")
        g.add_argument("--fresh-init", action="store_true",
                       help="with --pruning-mask: apply the mask to a NEW init and z from --seed "
                            "(default: the mask's own)")
    if learn and oes:
        g.add_argument("--mask-steps", type=positive_int, default=mask_steps,
                       help=f"OES mask-learning steps (default {mask_steps_h})")
        g.add_argument("--mask-lr", type=positive_float, default=1e-2,
                       help="Adam learning rate of the OES mask logits (default 0.01)")
        g.add_argument("--temperature", type=positive_float, default=0.2,
                       help="temperature T of the Concrete (relaxed Bernoulli) mask samples (default 0.2)")
        add_renamed(g, "--kl-weight", "--lam", dest="lam", metavar="WEIGHT", type=nonneg_float, default=1e-9,
                    help="weight of the KL term pulling the mask towards --density during OES mask "
                         "learning (the paper's lambda; default 1e-09)")
    return g


def add_task_args(p, *, task=True, fixed=None):
    """Natural-image degradation flags (shared by fit, learn-mask, imp, prune-at-init, transfer).
    ``fixed``: a command for one task (denoise, inpaint, super-resolution) gets only that task's flags."""
    g = p.add_argument_group("task")
    if task:
        g.add_argument("--task", choices=("denoise", "inpaint", "super-resolution"), default="denoise",
                       help="degradation of the image: denoise (Gaussian noise), inpaint (missing pixels) or "
                            "super-resolution (downsampling) (default denoise)")
    g.add_argument("--sigma", type=nonneg_float, default=None,
                   help="noise std on the 0-255 scale (default: 25 for denoising, 0 otherwise)")
    if fixed in (None, "inpaint"):
        g.add_argument("--keep-fraction", type=fraction, default=0.5,
                       help="inpainting: observed pixel fraction (default 0.5)")
    if fixed in (None, "super-resolution"):
        g.add_argument("--factor", type=int, choices=(2, 4, 8), default=4,
                       help="super-resolution: downsampling factor (default 4)")
    g.add_argument("--crop", type=positive_int, default=None,
                   help="centre-crop the image to CROP x CROP pixels (nothing is resized)")
    g.add_argument("--grayscale", action="store_true", help="load the image as one grey channel")
    return g


def add_operator_args(p):
    """--operator / --operator-args: an operator plugin instead of --task."""
    o = p.add_argument_group("operator plugin")
    o.add_argument("--operator", default=None,
                   help="use a registered operator plugin by name (see operators.available()) instead of "
                        "--task; it is built as NAME(shape=(C, H, W), noise=..., **OPERATOR_ARGS)")
    o.add_argument("--operator-args", default="{}",
                   help="JSON object of keyword arguments for --operator, e.g. '{\"sigma\": 2}'")
    return o


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
