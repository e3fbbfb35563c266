"""`mri-oes` command line. Each sub-command lives beside the code it drives and registers itself
through a module-level ``register(subparsers)`` function listed in ``COMMAND_MODULES``; the shared
flags come from :mod:`mri_oes.cli_common` (one vocabulary, validated ranges, one-line errors)."""
from __future__ import annotations

import importlib
import sys

from .cli_common import OneLineParser

COMMAND_MODULES = [
    "mri_oes.commands.natural",   # demo, learn-mask, fit, denoise/inpaint/super-resolve helpers
    "mri_oes.commands.mri",       # recon (and MRI input for learn-mask)
    "mri_oes.commands.lottery",   # imp, prune-at-init, transfer
    "mri_oes.commands.summarize",  # summarize run folders into one table
]


def build_parser() -> OneLineParser:
    from . import __version__
    p = OneLineParser(
        prog="mri-oes",
        description="Untrained-network priors that do not overfit: OES masks, Sparse-DIP, IMP/LIP, "
                    "dense DIP and classical baselines, for natural images and multi-coil MRI.")
    p.add_argument("--version", action="version", version=f"mri-oes {__version__}")
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:   # bad flag (one line already printed), --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .errors import USER_ERRORS
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        msg = " ".join(str(e).split())   # one line, whatever the message
        print(f"mri-oes {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mri-oes {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
