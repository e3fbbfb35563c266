"""`mri-oes evaluate PRED TARGET`: fastMRI metrics of reconstruction files against their targets.

    mri-oes evaluate runs/recon scan.h5                        # every run of a recon OUT against scan.h5
    mri-oes evaluate runs/recon/sense_4x/reconstructions DATA_DIR/ --csv sense.csv
    mri-oes evaluate my_preds/ multicoil_val/ --challenge multicoil

PRED: a fastMRI reconstruction file (reconstruction [slices, h, w]), a folder of them, or a recon
output folder (every <run>/reconstructions/*.h5 under it, one group per run). TARGET: a target
file or a folder of them (searched recursively), matched to each prediction by file name; fastMRI
input files are targets as they are (they hold reconstruction_rss; --challenge singlecoil reads
reconstruction_esc). The metrics are fastMRI's own functions in fastMRI's convention
(mri_oes.mri.metrics.volume_metrics: both volumes centre-cropped to W x W, data range = the
cropped target volume's maximum, PSNR and NMSE on the volume, SSIM averaged over slices), the numbers
fastmri.evaluate.evaluate computes. A prediction holding only some slices of its target (recon
--slice) is scored on those slices when its run's volumes/<stem>/metrics.json names them.

Prints one row per volume and a mean row per run (mean over volumes); --csv writes the same rows.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UserError

TARGET_KEY = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}
COLUMNS = ("run", "file", "level", "volumes", "slices", "psnr", "ssim", "nmse", "challenge", "target")


def _run_label(path: Path) -> str:
    folder = path.parent
    if folder.name == "reconstructions":
        folder = folder.parent
    return folder.name or str(folder)


def find_predictions(pred) -> list:
    """``[(run label, file)]``: a file, the ``*.h5`` files of a folder, or else every
    ``<run>/reconstructions/*.h5`` under it (a recon output folder)."""
    pred = Path(pred)
    if pred.is_file():
        return [(_run_label(pred.resolve()), pred)]
    if not pred.is_dir():
        raise UserError(f"PRED {pred}: no such file or folder")
    direct = sorted(p for p in pred.glob("*.h5") if p.is_file() and not p.name.startswith("."))
    files = direct or sorted(p for p in pred.glob("**/reconstructions/*.h5")
                             if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"PRED {pred}: no .h5 reconstruction files in it, nor under */reconstructions/")
    if direct:
        return [(_run_label(p.resolve()), p) for p in files]
    # a recon output (or a folder of them): the run folder's path under PRED, e.g. sense_4x or a/sense_4x
    def label(p):
        rel = p.parent.parent.relative_to(pred).as_posix()
        return pred.resolve().name if rel == "." else rel
    return [(label(p), p) for p in files]


def find_target(target: Path, name: str) -> Path:
    """The target file for a prediction called ``name``: ``target`` itself, or the one file of that
    name in the folder ``target`` (searched recursively)."""
    if target.is_file():
        return target
    direct = target / name
    if direct.is_file():
        return direct
    hits = sorted(p for p in target.rglob(name) if p.is_file())
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserError(f"TARGET {target}: {len(hits)} files named {name} ({hits[0]}, {hits[1]}, ...); "
                        "give the folder that holds the right one")
    raise UserError(f"TARGET {target}: no file named {name} (targets are matched to predictions by file name)")


def _read(path: Path, key: str, role: str, hint: str = ""):
    import h5py
    import numpy as np
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{role} {path}: not an HDF5 file ({' '.join(str(e).split())})") from None
    with f:
        if key not in f:
            raise UserError(f"{role} {path}: no '{key}' dataset{hint} (it has: {', '.join(sorted(f)) or 'nothing'})")
        a = np.asarray(f[key][()])
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or not np.isrealobj(a) or not np.isfinite(a).all():
        raise UserError(f"{role} {path}: '{key}' must be a finite real [slices, h, w] array, got "
                        f"{a.dtype} {list(a.shape)}")
    return a


def _recorded_slices(pred: Path):
    """The slice indices of a recon prediction file (its run's volume record), else None."""
    if pred.parent.name != "reconstructions":
        return None
    f = pred.parent.parent / "volumes" / Path(pred.name).stem / "metrics.json"
    try:
        return [int(s) for s in json.loads(f.read_text())["slices"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def evaluate_pair(pred: Path, target: Path, challenge: str = "multicoil") -> dict:
    """fastMRI volume metrics of one prediction file against one target file."""
    from ..mri import metrics as M
    key = TARGET_KEY[challenge]
    other = "singlecoil" if challenge == "multicoil" else "multicoil"
    gt = _read(target, key, "TARGET", f" (a fastMRI {challenge} target holds it; --challenge {other} reads "
                                      f"'{TARGET_KEY[other]}')")
    rec = _read(pred, "reconstruction", "PRED", " (not a fastMRI reconstruction file)")
    slices = list(range(gt.shape[0]))
    data_range = None
    if rec.shape[0] != gt.shape[0]:
        sel = _recorded_slices(pred)
        if sel is None or len(sel) != rec.shape[0] or max(sel) >= gt.shape[0]:
            raise UserError(f"PRED {pred} has {rec.shape[0]} slice(s), TARGET {target} has {gt.shape[0]}; "
                            "no recon record says which slices they are")
        slices = sel
        data_range = float(M.center_crop(gt, M.fastmri_crop(gt.shape)).max())   # the whole volume's (as recon)
        gt = gt[sel]
    try:
        m = M.volume_metrics(gt, rec, data_range)
    except ValueError as e:
        raise UserError(f"PRED {pred} vs TARGET {target}: {e}") from None
    return {"file": pred.name, "slices": len(slices), "psnr": m["psnr"], "ssim": m["ssim"], "nmse": m["nmse"],
            "challenge": challenge, "target": str(target)}


def evaluate(pred, target, challenge: str = "multicoil") -> list:
    """Rows (dicts of :data:`COLUMNS`): one per volume (``level`` volume) and one mean row per run
    (``level`` mean, the mean over its volumes)."""
    import numpy as np
    if challenge not in TARGET_KEY:
        raise UserError(f"--challenge must be multicoil or singlecoil, got {challenge!r}")
    target = Path(target)
    if not target.exists():
        raise UserError(f"TARGET {target}: no such file or folder")
    preds = find_predictions(pred)
    if target.is_file():
        same = [(r, p) for r, p in preds if p.name == target.name]
        if same:
            preds = same
        elif len(preds) > 1:
            raise UserError(f"TARGET {target}: none of the {len(preds)} predictions is named {target.name} "
                            "(give a folder of targets; they are matched by file name)")
    rows, runs = [], {}
    for run, p in preds:
        row = {"run": run, "level": "volume", "volumes": 1, **evaluate_pair(p, find_target(target, p.name), challenge)}
        rows.append(row)
        runs.setdefault(run, []).append(row)
    out = []
    for run, rs in runs.items():
        out.extend(rs)
        out.append({"run": run, "file": "mean", "level": "mean", "volumes": len(rs),
                    "slices": int(sum(r["slices"] for r in rs)),
                    **{k: float(np.mean([r[k] for r in rs])) for k in ("psnr", "ssim", "nmse")},
                    "challenge": challenge, "target": str(target)})
    return out


def format_table(rows) -> str:
    """The rows as an aligned text table (PSNR dB, SSIM, NMSE)."""
    head = ("run", "file", "slices", "PSNR (dB)", "SSIM", "NMSE")
    body = [(r["run"], r["file"] if r["level"] == "volume" else f"mean of {r['volumes']}", str(r["slices"]),
             f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['nmse']:.4f}") for r in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from ..io import atomic_path
    from ..schema import rows_to_csv   # the one CSV writer (cells never read as formulas)
    if args.csv and Path(args.csv).exists() and not args.overwrite:
        raise UserError(f"--csv {args.csv} exists; pass --overwrite to replace it")
    rows = evaluate(args.pred, args.target, args.challenge)
    print(f"fastMRI metrics ({args.challenge}: W x W centre crop, data range = the target volume's "
          "maximum, PSNR/NMSE on the volume, SSIM averaged over slices)")
    print(format_table(rows))
    if args.csv:
        with atomic_path(Path(args.csv)) as tmp:
            tmp.write_text(rows_to_csv(rows, columns=COLUMNS))
        print(f"{len(rows)} rows -> {args.csv}", file=sys.stderr)
    return 0


def register(sub) -> None:
    import argparse
    p = sub.add_parser("evaluate", help="fastMRI metrics of reconstruction files against target files "
                                        "(per volume and mean)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", metavar="PRED", help="a fastMRI reconstruction file, a folder of them, or a recon "
                                                "output folder (every run in it)")
    p.add_argument("target", metavar="TARGET", help="a target file or a folder of them (fastMRI input files "
                                                    "are targets), matched by file name")
    p.add_argument("--challenge", choices=tuple(TARGET_KEY), default="multicoil",
                   help="as fastmri.evaluate: multicoil reads the target's reconstruction_rss, singlecoil its "
                        "reconstruction_esc (default multicoil)")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.set_defaults(func=cmd_evaluate)
