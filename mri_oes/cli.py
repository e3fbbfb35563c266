"""`mri-oes` command line. Each sub-command lives beside the code it drives and registers itself
through a module-level ``register(subparsers)`` function listed in ``COMMAND_MODULES``."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "mri_oes.commands.natural",   # demo, learn-mask, fit, denoise/inpaint/super-resolve helpers
    "mri_oes.commands.mri",       # recon (and MRI input for learn-mask)
    "mri_oes.commands.lottery",   # imp, prune-at-init, transfer
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mri-oes",
        description="Untrained-network priors that do not overfit: OES masks, Sparse-DIP, IMP/LIP, "
                    "dense DIP and classical baselines, for natural images and multi-coil MRI.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:   # command group not built yet
                continue
            raise
        mod.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .errors import USER_ERRORS
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"mri-oes {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
