"""The one result schema: every run folder any command writes holds ``metrics.json`` of this shape.

One vocabulary for every command (fit, demo, learn-mask, recon per slice and per volume, each IMP
round, prune-at-init, every transfer case, the experiment scripts):

* ``method`` — what produced the image: ``dip`` (dense), ``sparse-dip`` (a generator restricted to a
  fixed mask), ``deep-decoder``, ``conv-decoder``, ``gp-dip``, ``oes-mask`` (mask learning only, no
  training), and the classical MRI methods ``zero-filled``, ``sense``, ``l1-wavelet``.
* ``mask_source`` — where a mask came from: ``none`` (dense), ``oes``, ``imp``, ``random``,
  ``magnitude``, ``snip``, ``grasp``, ``synflow``, ``file`` (given with ``--mask``).
* ``density`` = kept fraction of the maskable weights, ``sparsity`` = 1 − density (both always).
* ``final`` {psnr, ssim, nmse} — the final iterate (what a user gets; no early stopping).
* ``final_network`` {psnr, ssim, nmse} — MRI with data consistency (recon, transfer ``--preset``): the
  network's own final output, while ``final`` is that output projected onto the measured k-space; the
  overfitting gap compares ``best`` with ``final_network`` (both raw outputs). Absent otherwise.
* ``best`` {psnr, ssim, nmse, step} — ORACLE: the iterate with the highest PSNR against the clean
  reference, which a user does not have. For reporting the overfitting gap only. Its ssim and nmse
  are those *at the best-PSNR step* (not the best SSIM seen).
* ``stop_rule`` (``none``, ``image-change``, ``self-validation``, ``discrepancy``) and ``stopped_at`` — network methods:
  the ground-truth-free stopping rule of the training fit and the step it stopped at (None: it ran every
  configured step; ``steps`` is the number of steps run). Absent for classical methods. With
  ``self-validation`` also ``holdout_fraction`` and ``holdout_best_step`` (the logged step whose output
  predicted the held-out measurements best: the result); every history row carries ``holdout_loss``.
  With ``discrepancy`` also ``noise`` {sigma2, level, lines, discrepancy_tau} (the k-space noise estimate the rule
  compared the residual with); every history row carries ``discrepancy``.
* ``time`` {total_s, fit_s, s_per_step} (recon with ``--batch-slices``: ``total_s`` and ``cpu_s`` are the
  slice's share, 1/``config.batch_slices``, of its batch's; ``fit_s`` is the batched loop's); ``seed`` (the one user seed) and ``seeds`` (every derived
  stream); ``device``, ``threads``, ``config`` (every option), ``versions``.
* MRI: ``file``, ``slice``, ``accel``, ``mask_type``, ``metrics_convention`` (``fastmri``: centre
  crop and data range as ``fastmri.evaluate``) and ``full_fov`` {psnr, ssim, nmse} beside it.

Tables are tidy: :func:`flatten` gives one row per run with the column names of :data:`COLUMNS`
(``final_psnr``, ``best_psnr``, ``time_total_s`` …); :func:`collect` reads any run folders into rows
(``mri-oes summarize``).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable, List, Optional

SCHEMA = "mri_oes.result/1"

# The one list of method names (every command, table and experiment takes its names from here).
NETWORK_METHODS = ("dip", "sparse-dip", "deep-decoder", "conv-decoder", "gp-dip", "oes-mask")
CLASSICAL_METHODS = ("zero-filled", "sense", "l1-wavelet")
METHODS = NETWORK_METHODS + CLASSICAL_METHODS
#: the network methods ``recon`` runs on an MRI slice (``conv-decoder`` is a ``--generator`` of sparse-dip)
RECON_NETWORK_METHODS = tuple(m for m in NETWORK_METHODS if m not in ("conv-decoder", "oes-mask"))
#: the networks of the MRI quality experiment (``conv-decoder``: dense DIP on the ConvDecoder)
EXPERIMENT_NETWORK_METHODS = tuple(m for m in NETWORK_METHODS if m not in ("gp-dip", "oes-mask"))
MASK_SOURCES = ("none", "oes", "imp", "random", "magnitude", "snip", "grasp", "synflow", "file")

_NUM = (int, float, type(None))
#: field -> (allowed types, description). Every record has every field (None where not applicable).
FIELDS = {
    "schema": ((str,), f"always {SCHEMA!r}"),
    "command": ((str,), "the mri-oes sub-command (or experiment script) that wrote the record"),
    "method": ((str,), f"one of {METHODS}"),
    "mask_source": ((str,), f"one of {MASK_SOURCES}"),
    "task": ((str, type(None)), "denoise / inpaint / super-resolution / mri"),
    "scan": ((str, type(None)), "input name (image or MRI file stem)"),
    "scenario": ((str, type(None)), "transfer: self / cross-image / cross-task / cross-scan / cross-accel"),
    "accel": ((int, type(None)), "MRI acceleration actually used (computed from the mask for own-mask files)"),
    "density": ((int, float), "kept fraction of maskable weights (1 for dense and classical methods)"),
    "sparsity": ((int, float), "1 - density"),
    "kept_weights": (_NUM, "number of kept maskable weights"),
    "maskable_weights": (_NUM, "number of maskable weights"),
    "kept_weights_per_measurement": (_NUM, "kept weights / real-valued measured numbers"),
    "steps": ((int,), "training steps (0 for classical methods and mask-only runs)"),
    "mask_steps": ((int,), "OES mask-learning steps run for this record (0 if the mask came from elsewhere)"),
    "lr": (_NUM, "Adam learning rate of the weights (None for classical methods)"),
    "seed": ((int,), "the one user seed"),
    "seeds": ((dict,), "every derived seed stream (init_seed, z_seed, ...)"),
    "final": ((dict,), "final iterate: psnr, ssim, nmse (None without a reference)"),
    "best": ((dict,), "ORACLE best-PSNR iterate: psnr, ssim, nmse (at that step), step"),
    "time": ((dict,), "total_s, fit_s, s_per_step"),
    "device": ((str,), "torch device"),
    "threads": ((int,), "torch intra-op threads"),
    "diverged": ((bool,), "the loss became non-finite (the command exits non-zero)"),
    "config": ((dict,), "every option of the run"),
    "versions": ((dict,), "python, torch, numpy, sigpy, fastmri, mri_oes ..."),
}
METRIC_KEYS = ("psnr", "ssim", "nmse")
TIME_KEYS = ("total_s", "fit_s", "s_per_step")

#: flattened table columns, in order (tidy: one row per run)
COLUMNS = ("command", "method", "mask_source", "task", "scan", "slice", "accel", "scenario",
           "density", "sparsity", "kept_weights", "maskable_weights", "kept_weights_per_measurement",
           "steps", "mask_steps", "lr", "seed",
           "final_psnr", "final_ssim", "final_nmse",
           "final_network_psnr", "final_network_ssim", "final_network_nmse", "best_psnr", "best_ssim", "best_nmse", "best_step",
           "stop_rule", "stopped_at",
           "full_fov_psnr", "full_fov_ssim", "full_fov_nmse", "metrics_convention",
           "time_total_s", "time_fit_s", "time_s_per_step", "device", "threads", "diverged", "run_dir")


class SchemaError(ValueError):
    """A result record does not follow the schema (a bug in the writer, not user input)."""


def _clean_metrics(m: Optional[dict], keys=METRIC_KEYS) -> dict:
    m = m or {}
    return {k: (None if m.get(k) is None else float(m[k])) for k in keys}


def make_record(*, command: str, method: str, mask_source: str = "none", density: float = 1.0,
                steps: int = 0, mask_steps: int = 0, seed: int = 0, seeds: Optional[dict] = None,
                final: Optional[dict] = None, best: Optional[dict] = None, best_step: Optional[int] = None,
                time_total_s: float = 0.0, time_fit_s: Optional[float] = None, device: str = "cpu",
                threads: Optional[int] = None, config: Optional[dict] = None, lr: Optional[float] = None,
                diverged: bool = False, task: Optional[str] = None, scan: Optional[str] = None,
                scenario: Optional[str] = None, accel: Optional[int] = None,
                kept_weights: Optional[int] = None, maskable_weights: Optional[int] = None,
                measurements: Optional[int] = None, **extra) -> dict:
    """A schema record; ``extra`` keys (``generator``, ``operator``, ``history``, MRI fields …) are
    kept beside the required ones. ``best`` may carry ``step`` or it is given as ``best_step``."""
    import torch
    from .io import versions
    fit_s = float(time_total_s if time_fit_s is None else time_fit_s)
    best = dict(best or {})
    step = best.pop("step", best_step)
    kpm = None
    if kept_weights is not None and measurements:
        kpm = kept_weights / measurements
    rec = {
        "schema": SCHEMA, "command": command, "method": method, "mask_source": mask_source,
        "task": task, "scan": scan, "scenario": scenario, "accel": None if accel is None else int(accel),
        "density": float(density), "sparsity": 1.0 - float(density),
        "kept_weights": kept_weights, "maskable_weights": maskable_weights,
        "kept_weights_per_measurement": kpm, "measurements": measurements,
        "steps": int(steps), "mask_steps": int(mask_steps), "lr": lr, "seed": int(seed),
        "seeds": dict(seeds or {"seed": int(seed)}),
        "final": _clean_metrics(final), "best": {**_clean_metrics(best), "step": step},
        "time": {"total_s": float(time_total_s), "fit_s": fit_s,
                 "s_per_step": (fit_s / steps) if steps else None},
        "device": str(device), "threads": int(threads if threads is not None else torch.get_num_threads()),
        "diverged": bool(diverged), "config": dict(config or {}), "versions": versions(),
    }
    for k, v in extra.items():
        if k in rec:
            raise SchemaError(f"make_record: {k!r} given twice")
        rec[k] = v
    validate(rec)
    return rec


def validate(rec: dict) -> None:
    """Raise :class:`SchemaError` listing every problem of a record."""
    problems = []
    for k, (types, _) in FIELDS.items():
        if k not in rec:
            problems.append(f"missing {k!r}")
        elif not isinstance(rec[k], types) or (isinstance(rec[k], bool) and bool not in types):
            problems.append(f"{k!r} has type {type(rec[k]).__name__}")
    if not problems:
        if rec["schema"] != SCHEMA:
            problems.append(f"schema is {rec['schema']!r}, expected {SCHEMA!r}")
        if rec["method"] not in METHODS:
            problems.append(f"method {rec['method']!r} not in {METHODS}")
        if rec["mask_source"] not in MASK_SOURCES:
            problems.append(f"mask_source {rec['mask_source']!r} not in {MASK_SOURCES}")
        if not 0 <= rec["density"] <= 1 or abs(rec["density"] + rec["sparsity"] - 1) > 1e-9:
            problems.append(f"density {rec['density']} / sparsity {rec['sparsity']} inconsistent")
        if rec["method"] == "dip" and (rec["mask_source"] != "none" or rec["density"] != 1):
            problems.append("method 'dip' is the dense network (mask_source 'none', density 1)")
        if rec["method"] == "sparse-dip" and rec["mask_source"] == "none":
            problems.append("method 'sparse-dip' needs a mask_source")
        for part, keys in (("final", METRIC_KEYS), ("best", METRIC_KEYS + ("step",)), ("time", TIME_KEYS)):
            missing = [k for k in keys if k not in rec[part]]
            if missing:
                problems.append(f"{part} lacks {missing}")
        if "seed" not in rec["seeds"]:
            problems.append("seeds lacks 'seed'")
    if problems:
        raise SchemaError("result record: " + "; ".join(problems))


def flatten(rec: dict, run_dir: Optional[str] = None) -> dict:
    """One tidy table row (the names of :data:`COLUMNS`) from a record."""
    row = {k: rec.get(k) for k in COLUMNS}
    for part in ("final", "final_network", "best"):
        for k in METRIC_KEYS:
            row[f"{part}_{k}"] = (rec.get(part) or {}).get(k)
    row["best_step"] = (rec.get("best") or {}).get("step")
    for k in METRIC_KEYS:
        row[f"full_fov_{k}"] = (rec.get("full_fov") or {}).get(k)
    for k in TIME_KEYS:
        row[f"time_{k}"] = (rec.get("time") or {}).get(k)
    row["run_dir"] = run_dir if run_dir is not None else rec.get("run_dir")
    return row


def collect(paths: Iterable) -> List[dict]:
    """Rows of every ``metrics.json`` under ``paths`` (folders are searched recursively; files named
    directly are read; collection indexes are skipped, their records are read where they live).
    A file that is not a schema record is refused with one line naming it."""
    from .errors import UserError
    rows = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
        files = [p] if p.is_file() else sorted(p.rglob("metrics.json"))
        for f in files:
            if any(part.startswith(".") and part.endswith(".partial") for part in f.parts):
                continue   # an unfinished run (staging folder)
            from .io import read_json
            try:
                rec = read_json(f, what="result file")   # bounded; never a FIFO or a device
            except OSError as e:
                raise UserError(f"{f}: not a JSON result file ({e})") from None
            if isinstance(rec, dict) and rec.get("kind") == "collection":
                continue   # an index of records that live in sub-folders (transfer cases)
            if not isinstance(rec, dict):
                raise UserError(f"{f}: not a result record (a JSON {type(rec).__name__}, not an object)")
            for r in [rec]:
                try:
                    validate(r)
                except SchemaError as e:
                    raise UserError(f"{f}: {e}") from None
                rows.append(flatten(r, run_dir=str(f.parent)))
    return rows


def _cell(v):
    """A CSV cell: ``None`` empty, non-finite floats as ``nan``/``inf``, strings that a spreadsheet
    would evaluate (``=``, ``+``, ``-``, ``@`` ...) neutralised by :func:`mri_oes.io.csv_cell`."""
    from .io import csv_cell
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return csv_cell(v)


def rows_to_csv(rows: List[dict], columns=COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in columns})
    return buf.getvalue()


def write_table(rows: List[dict], out_base) -> None:
    """``<out_base>.csv`` and ``<out_base>.json`` (atomic), columns of :data:`COLUMNS` first."""
    from .io import atomic_path, write_json
    out_base = Path(out_base)
    extra = [k for r in rows for k in r if k not in COLUMNS]
    columns = list(COLUMNS) + list(dict.fromkeys(extra))
    with atomic_path(out_base.with_suffix(".csv")) as tmp:
        tmp.write_text(rows_to_csv(rows, columns))
    write_json(out_base.with_suffix(".json"), {"schema": SCHEMA, "columns": columns, "rows": rows})
