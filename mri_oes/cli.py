"""`mri-oes` command line. Each sub-command lives beside the code it drives and registers itself
through a module-level ``register(subparsers)`` function listed in ``COMMAND_MODULES``; the shared
flags come from :mod:`mri_oes.cli_common` (one vocabulary, validated ranges, one-line errors)."""
from __future__ import annotations

import importlib
import sys

from .cli_common import OneLineParser

COMMAND_MODULES = [
    "mri_oes.commands.natural",   # demo, learn-mask, fit, denoise/inpaint/super-resolve shortcuts
    "mri_oes.commands.mri",       # recon (and MRI input for learn-mask)
    "mri_oes.commands.lottery",   # imp, prune-at-init, transfer
    "mri_oes.commands.summarize",  # summarize run folders into one table
    "mri_oes.commands.evaluate",  # fastMRI metrics of reconstruction files against targets
    "mri_oes.commands.report",    # one self-contained HTML page of a recon output folder
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


def _cli_inputs(argv) -> list:
    """Existing paths named on the command line (``--flag=value`` split): a run folder that is or
    holds one of them is never replaced (:mod:`mri_oes.rundir`)."""
    import os
    out = []
    for tok in argv or ():
        tok = str(tok)
        if tok.startswith("-"):
            if "=" not in tok:
                continue
            tok = tok.split("=", 1)[1]
        try:
            if tok and os.path.lexists(tok):
                out.append(tok)
        except (OSError, ValueError):
            continue
    return out


def _one_line(command, e) -> str:
    return f"mri-oes {command}: error: {' '.join(str(e).split())}"


def main(argv=None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not str(a).startswith("-")]
    command = str(words[0]) if words else "?"
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:   # bad flag (one line already printed), --help, --version
            return int(e.code or 0) if not isinstance(e.code, str) else 2
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        command = args.command
        from . import rundir
        from .errors import USER_ERRORS
        rundir.CLI_INPUTS[:] = _cli_inputs(sys.argv[1:] if argv is None else argv)
        try:
            return int(args.func(args) or 0)
        except USER_ERRORS as e:
            print(_one_line(command, e), file=sys.stderr)   # one line, whatever the message
            return 2
        finally:
            rundir.CLI_INPUTS.clear()
    except KeyboardInterrupt:
        print(f"mri-oes {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as e:   # disk full, read-only file system, permissions ... (never a traceback)
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(_one_line(command, f"{e.strerror or e}{where}; a started run is resumable with the same "
                                 "command once this is fixed"), file=sys.stderr)
        return 1
    except MemoryError:
        print(_one_line(command, "out of memory; use a smaller input or fewer workers"), file=sys.stderr)
        return 1
    except RecursionError:   # e.g. JSON nested thousands deep in a flag value or a file
        print(_one_line(command, "input nested too deeply (a JSON value or file); refused"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
