"""`mri-oes summarize DIR...`: every result under the given run folders as one tidy CSV (one row per
run, the columns of :data:`mri_oes.schema.COLUMNS`), readable by ``pandas.read_csv`` as is."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError


def cmd_summarize(args) -> int:
    from ..io import atomic_path
    from ..schema import collect, rows_to_csv
    rows = collect(args.paths)
    if not rows:
        raise UserError(f"no metrics.json under {' '.join(args.paths)}")
    text = rows_to_csv(rows)
    if args.csv:
        out = Path(args.csv)
        if out.exists() and not args.overwrite:
            raise UserError(f"--csv {out} exists; pass --overwrite to replace it")
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        print(f"{len(rows)} runs -> {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("summarize", help="collect run folders into one CSV (one row per run)",
                       description=__doc__)
    p.add_argument("paths", nargs="+", help="run folders (searched recursively) or metrics.json files")
    p.add_argument("--csv", default=None, help="write the CSV here (default: standard output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.set_defaults(func=cmd_summarize)
