"""One self-contained HTML page of a run folder: tables, figures, curves and settings, every image
embedded as a base64 ``data:`` URI, inline CSS, no script and no external link, so the file opens in any
browser without a server and can be mailed or archived as one file.

* a ``recon`` output folder (``recon.json``): the command and inputs, the summary table (mean ± std
  over volumes per method and acceleration), the per-volume and per-slice tables (fastMRI metrics),
  the cross-method figures and montages (``figures/``, written first when missing or stale), each
  volume's montage, each network slice's training curve, and each run's settings;
  (at most :data:`MAX_IMAGES` images of a kind are embedded; the others are listed by path);
* any other run folder (``fit``, ``imp``, ``transfer`` …, or one ``recon`` run): every ``metrics.json``
  under it as one table, and its figures (``figure.png``, ``curve.png``, ``recon.png`` …).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Iterable, List, Optional

from .errors import UserError

REPORT_FILE = "report.html"
#: images a report embeds from a generic run folder, in this order per folder
RUN_IMAGES = ("figure.png", "curve.png", "montage.png", "recon.png", "finding1.png", "measurements.png")
MAX_SLICE_ROWS = 200
#: images embedded per kind (cross-method figures, montages, curves); the rest are listed by path
MAX_IMAGES = 24

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f0f0f0}
td.l,th.l{text-align:left}code,pre{background:#f6f6f6;font-size:12px}pre{padding:8px;overflow-x:auto}
figure{margin:10px 0}figcaption{font-size:12px;color:#555}img{max-width:100%;border:1px solid #ddd}
details{margin:6px 0}summary{cursor:pointer}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v, key: str = "") -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if "psnr" in key:
            return f"{v:.2f}"
        if "ssim" in key or "nmse" in key:
            return f"{v:.4f}"
        if key.endswith("_s") or "time" in key:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return str(v)


def table(rows: List[dict], columns: Iterable[str], headers: Optional[dict] = None) -> str:
    """An HTML table of ``rows`` (dicts) with ``columns``; numbers right-aligned, text left."""
    columns = list(columns)
    headers = headers or {}
    out = ["<table><tr>" + "".join(f"<th>{_e(headers.get(c, c))}</th>" for c in columns) + "</tr>"]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = "" if isinstance(v, (int, float)) and not isinstance(v, bool) else ' class="l"'
            cells.append(f"<td{cls}>{_e(_fmt(v, c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def image(path, caption: str = "") -> str:
    """``path`` (PNG) embedded as a data URI in a captioned ``<figure>``."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{_e(caption or Path(path).name)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _images(items, root: Path) -> List[str]:
    """The first :data:`MAX_IMAGES` of ``[(path, caption)]`` embedded, the others listed by path."""
    out = [image(p, cap) for p, cap in items[:MAX_IMAGES]]
    rest = items[MAX_IMAGES:]
    if rest:
        names = ", ".join(_e(p.relative_to(root) if p.is_relative_to(root) else p) for p, _ in rest[:50])
        out.append(f"<p>{len(rest)} more not embedded: {names}{' ...' if len(rest) > 50 else ''}</p>")
    return out


def _settings_table(d: dict) -> str:
    rows = [{"setting": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
            for k, v in d.items() if v is not None]
    return table(rows, ("setting", "value"))


def _read_json(path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _metric_row(rec: dict, **extra) -> dict:
    row = dict(extra)
    for part in ("final", "final_network", "best", "full_fov", "zero_filled"):
        for k in ("psnr", "ssim", "nmse"):
            v = (rec.get(part) or {}).get(k)
            if v is not None:
                row[f"{part}_{k}"] = v
    row["time_total_s"] = (rec.get("time") or {}).get("total_s")
    return row


METRIC_HEADERS = {"final_psnr": "PSNR (dB)", "final_ssim": "SSIM", "final_nmse": "NMSE",
                  "zero_filled_psnr": "zero-filled PSNR", "final_network_psnr": "network output PSNR",
                  "best_psnr": "best PSNR (oracle)", "full_fov_psnr": "full-FOV PSNR", "time_total_s": "time (s)"}


def _recon_sections(root: Path) -> List[str]:
    from .mri.figures import write_recon_figures
    rj = _read_json(root / "recon.json") or {}
    parts = [f"<p>Command: <code>{_e(rj.get('command', '?'))}</code></p>"]
    inputs = rj.get("inputs") or []
    if inputs:
        cols = [c for c in ("file", "num_slices", "slices", "shape", "undersampled") if any(c in i for i in inputs)]
        parts.append("<h2>Inputs</h2>" + table([{c: (json.dumps(i[c]) if isinstance(i.get(c), list) else i.get(c))
                                                   for c in cols} for i in inputs], cols))
    summary = (_read_json(root / "summary.json") or {}).get("rows") or []
    if summary:
        for r in summary:
            for k in ("psnr", "ssim", "nmse"):
                m, s = r.get(f"{k}_mean"), r.get(f"{k}_std")
                r[k] = None if m is None else (f"{_fmt(m, k)} ± {_fmt(s, k)}" if r.get("volumes", 0) > 1 else _fmt(m, k))
        parts.append("<h2>Summary</h2><p>fastMRI metrics per volume (W×W centre crop, data range = the "
                     "target volume's maximum, PSNR/NMSE on the volume, SSIM averaged over slices); mean ± std "
                     "over volumes.</p>"
                     + table(summary, ("run", "method", "accel", "volumes", "slices", "psnr", "ssim", "nmse",
                                       "time_total_s"), {"psnr": "PSNR (dB)", "ssim": "SSIM", "nmse": "NMSE",
                                                         "time_total_s": "time (s)"}))
    figs = [f for f in write_recon_figures(root) if f.is_file()]
    if figs:
        figs = sorted(figs, key=lambda f: (not f.stem.endswith("_montage"), f.name))   # montages first
        parts.append("<h2>Figures</h2><p>Reference, zero-filled and every method of one acceleration side by "
                     "side; error maps show the stated gain × |error| / data range.</p>")
        parts += _images([(f, f.name) for f in figs], root)
    runs = [(f.parent, _read_json(f) or {}) for f in sorted(root.glob("*/run.json"))]
    settings = rj.get("settings") or {}
    for run, ident in runs:
        parts.append(f"<h2>{_e(run.name)}</h2>")
        vols = [(f.parent, _read_json(f)) for f in sorted(run.glob("volumes/*/metrics.json"))]
        vrows = [_metric_row(r, volume=Path(r.get("file", d.name)).name, slices=len(r.get("slices") or []))
                 for d, r in vols if r]
        if vrows:
            parts.append("<h3>Volumes</h3>" + table(vrows, ["volume", "slices", "final_psnr", "final_ssim", "final_nmse",
                                                            "full_fov_psnr", "time_total_s"], METRIC_HEADERS))
        srecs = [(f.parent, _read_json(f)) for f in sorted(run.glob("slices/*/[0-9][0-9][0-9]/metrics.json"))]
        srows = [_metric_row(r, volume=d.parent.name, slice=r.get("slice")) for d, r in srecs if r]
        if srows:
            cols = ["volume", "slice", "final_psnr", "final_ssim", "final_nmse", "zero_filled_psnr"]
            cols += [c for c in ("final_network_psnr", "best_psnr") if any(c in r for r in srows)]
            cols.append("time_total_s")
            more = f" (first {MAX_SLICE_ROWS} of {len(srows)})" if len(srows) > MAX_SLICE_ROWS else ""
            parts.append(f"<h3>Slices{more}</h3>" + table(srows[:MAX_SLICE_ROWS], cols, METRIC_HEADERS))
        parts += _images([(d / "montage.png", f"{run.name}: {d.name} montage") for d, _ in vols
                          if (d / "montage.png").is_file()], root)
        curves = [d for d, _ in srecs if (d / "curve.png").is_file()]
        if curves:
            parts.append("<h3>Training curves</h3><p>PSNR of the network output per step; the dashed line is "
                         "the table's final image.</p>")
            parts += _images([(d / "curve.png", f"{run.name}: {d.parent.name} slice {d.name}") for d in curves], root)
        s = settings.get(run.name) or ident
        if s:
            parts.append(f"<details><summary>settings of {_e(run.name)}</summary>{_settings_table(s)}</details>")
    if rj.get("parallel"):
        parts.append(f"<details><summary>parallel backend</summary>{_settings_table(rj['parallel'])}</details>")
    return parts


def _generic_sections(root: Path) -> List[str]:
    from .schema import collect
    rows = collect([str(root)])
    if not rows:
        raise UserError(f"RUN_DIR {root}: no recon.json and no metrics.json under it (not a run folder)")
    cols = [c for c in ("run_dir", "command", "method", "task", "scan", "slice", "accel", "density", "steps",
                        "final_psnr", "final_ssim", "best_psnr", "time_total_s") if any(r.get(c) is not None for r in rows)]
    for r in rows:
        if r.get("run_dir"):
            r["run_dir"] = str(Path(r["run_dir"]).relative_to(root)) if Path(r["run_dir"]).is_relative_to(root) \
                else r["run_dir"]
    parts = ["<h2>Runs</h2>" + table(rows, cols, {"final_psnr": "PSNR (dB)", "final_ssim": "SSIM",
                                                   "best_psnr": "best PSNR (oracle)", "time_total_s": "time (s)"})]
    n_img = 0
    for f in sorted(root.rglob("metrics.json")):
        d = f.parent
        if any(p.name.endswith(".partial") for p in [d, *d.parents]):
            continue
        imgs = [d / n for n in RUN_IMAGES if (d / n).is_file()]
        if imgs:
            n_img += len(imgs)
            if n_img > 4 * MAX_IMAGES:
                parts.append(f"<p>further run folders' images not embedded (more than {4 * MAX_IMAGES})</p>")
                break
            rel = d.relative_to(root)
            parts.append(f"<h3>{_e(rel if str(rel) != '.' else root.name)}</h3>")
            parts += [image(p, f"{rel}/{p.name}") for p in imgs]
    return parts


def write_report(run_dir, out=None) -> Path:
    """Write the HTML page of ``run_dir`` to ``out`` (default ``run_dir/report.html``), atomically."""
    from .io import atomic_path
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"RUN_DIR {root}: no such folder")
    if not (root / "recon.json").is_file() and (root / "run.json").is_file() \
            and (root.parent / "recon.json").is_file():
        raise UserError(f"RUN_DIR {root} is one run of a recon output; give the output folder {root.parent}")
    root = root.resolve()
    body = _recon_sections(root) if (root / "recon.json").is_file() else _generic_sections(root)
    title = f"mri-oes report: {root.name}"
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
            + "\n".join(body) + "\n</body></html>\n")
    out = Path(out) if out else root / REPORT_FILE
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
