"""mri-oes summarize DIR...: every result under the given run folders as one tidy CSV, readable by
pandas.read_csv as is. One row per result; the first column, level, says what a row is: slice (one
recon slice), volume (one recon volume, fastMRI volume metrics) or run (any other command's result).
Average within one level (e.g. df[df.level == "volume"]): mixing levels counts a volume twice."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError


def row_level(row: dict) -> str:
    """``slice`` / ``volume`` for recon's slice and volume records, ``run`` for every other result."""
    if row.get("level") in ("slice", "volume", "run"):
        return row["level"]
    if row.get("command") == "recon":
        return "volume" if row.get("slice") in (None, "") else "slice"
    return "run"


def cmd_summarize(args) -> int:
    from ..io import atomic_path
    from ..schema import COLUMNS, collect, rows_to_csv
    rows = collect(args.paths)
    if not rows:
        raise UserError(f"no metrics.json under {' '.join(args.paths)}")
    for r in rows:
        r["level"] = row_level(r)
    text = rows_to_csv(rows, columns=("level",) + tuple(COLUMNS))
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
