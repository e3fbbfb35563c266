"""Sparse-DIP at recon's defaults against the classical defaults, per scan, acceleration and seed.

Reads committed result files only (no training): the network rows of an MRI quality table
(``mri_quality summary``'s ``table.json``: ``method``, ``variant``, ``scan``, ``accel``, ``seed``,
``final_psnr``/``final_ssim``, ``density``) and benchmark row files with ``key``/``variant`` rows
(``benchmarks/time_to_quality.py``, ``benchmarks/reuse_across_slices.py``) or ``recon``'s slice records
(``metrics.json``, :func:`recon_row`), and the classical rows of
``benchmarks/mri_baselines.py table`` (``rows``: ``method``, ``psnr``, ``ssim``, ``scale``). A network
row counts when it ran recon's default recipe: variant ``default`` (``cold`` in the benchmark files,
or the method's name, where every configured step must have run: no stop, no warm start, no given mask,
no ``--set`` override).

    python benchmarks/network_vs_classical.py \\
        --network results/2026-11-27-mri-gpu/table.json results/2026-12-05-reuse-across-slices/rows.json \\
                  results/2026-12-05-time-to-quality/rows.json results/2026-12-05-levers-8x/rows.json \\
                  results/2026-12-05-time-to-quality-4x/rows.json \\
        --classical results/2026-12-05-classical-rules/after.json \\
        --out results/2026-12-05-network-vs-classical

Writes ``table.md`` and ``table.json`` under ``--out`` (atomically) and prints the table. The check is the
issue's: Sparse-DIP's final (data-consistent) image at or above max(SENSE, L1-wavelet) on the same seed.
The last column is the final minus the highest data-consistent PSNR on the run's logged curve, per seed
(``best_dc_psnr`` of the benchmark rows; ``—`` for the quality tables, whose ``best_psnr`` is the network
output's, not the data-consistent image's).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri_oes.errors import UserError  # noqa: E402
from mri_oes.io import atomic_path, read_json, write_json  # noqa: E402

CLASSICAL = ("zero-filled", "sense", "l1-wavelet")


def _rows(path: Path) -> list:
    data = read_json(path, what="result file")
    if isinstance(data, dict) and data.get("command") == "recon" and "final" in data:
        return [recon_row(data)]
    return data["rows"] if isinstance(data, dict) else data


def recon_row(rec: dict) -> dict:
    """A row of one slice record of ``recon`` (its ``metrics.json``). The scan is the file's stem without the
    shared scans' ``_full`` (``brain8b_full.h5`` -> ``brain8b``, as the benchmarks name them). It counts as
    the default recipe where the map sets were the rule's (no ``--map-sets``) and nothing was stopped, warm
    started or given a mask; recon's curve logs no data-consistent PSNR, so there is no ``best_dc_psnr``."""
    cfg = rec.get("config", {})
    scan = Path(rec.get("file") or rec["scan"]).stem
    default = (cfg.get("map_sets") is None and rec.get("stopped_at") is None and not cfg.get("init_from")
               and not cfg.get("mask_path") and cfg.get("share_mask") in (None, "none"))
    return {"scan": scan[:-len("_full")] if scan.endswith("_full") else scan, "accel": rec["accel"],
            "seed": rec["seed"], "method": rec["method"], "variant": "default" if default else "given",
            "final_psnr": rec["final"]["psnr"], "final_ssim": rec["final"]["ssim"], "density": rec.get("density"),
            "steps": rec.get("steps"), "map_sets": rec.get("problem", {}).get("espirit", {}).get("map_sets")}


def network_rows(paths) -> dict:
    """``{(scan, accel, seed, method): row}`` of the default-recipe network runs (first file wins)."""
    out = {}
    for path in paths:
        for r in _rows(Path(path)):
            method = r.get("method", "sparse-dip")
            # a stop rule that never fired ran every step: the same image as the default run
            default = r.get("variant") == "default" or (
                r.get("variant", "cold") in ("cold", method) and r.get("stopped_at") is None
                and not r.get("init_from") and not r.get("mask_path") and not r.get("set")
                and r.get("steps_run", r.get("steps")) == r.get("steps_configured", r.get("steps")))
            if method not in ("sparse-dip", "deep-decoder") or not default:
                continue
            key = (r["scan"], int(r["accel"]), int(r["seed"]), method)
            out.setdefault(key, dict(r, source_file=str(path)))
    return out


def classical_rows(paths) -> dict:
    out = {}
    for path in paths:
        for r in _rows(Path(path)):
            if r.get("method") in CLASSICAL and float(r.get("scale", 1.0)) == 1.0:
                out.setdefault((r["scan"], int(r["accel"]), int(r["seed"]), r["method"]), r)
    return out


def compare(net: dict, cla: dict) -> list:
    """One row per (scan, accel): means over the seeds the network ran, Δ against max(SENSE, L1) per seed."""
    cases = sorted({(s, a) for (s, a, _, m) in net if m == "sparse-dip"})
    table = []
    for scan, accel in cases:
        seeds = sorted(sd for (s, a, sd, m) in net if (s, a, m) == (scan, accel, "sparse-dip")
                       and all((s, a, sd, c) in cla for c in CLASSICAL))
        if not seeds:
            continue
        per_seed = []
        for sd in seeds:
            n = net[(scan, accel, sd, "sparse-dip")]
            best = max(("sense", "l1-wavelet"), key=lambda c: cla[(scan, accel, sd, c)]["psnr"])
            per_seed.append({"seed": sd, "psnr": n["final_psnr"], "ssim": n["final_ssim"],
                             "density": n.get("density"), "best_classical": best,
                             "delta_psnr": n["final_psnr"] - cla[(scan, accel, sd, best)]["psnr"],
                             "delta_ssim": n["final_ssim"] - cla[(scan, accel, sd, best)]["ssim"],
                             # the highest data-consistent PSNR on the logged curve (benchmark rows only)
                             "best_dc_psnr": n.get("best_dc_psnr"),
                             "source": n["source_file"]})

        def mean(method, key):
            return statistics.fmean(cla[(scan, accel, sd, method)][key] for sd in seeds)
        dd = [net[(scan, accel, sd, "deep-decoder")] for sd in seeds if (scan, accel, sd, "deep-decoder") in net]
        table.append({
            "scan": scan, "accel": accel, "seeds": seeds,
            "sparse_dip_psnr": statistics.fmean(p["psnr"] for p in per_seed),
            "sparse_dip_ssim": statistics.fmean(p["ssim"] for p in per_seed),
            "density": statistics.fmean(p["density"] for p in per_seed if p["density"] is not None),
            "steps": sorted({int(net[(scan, accel, sd, "sparse-dip")].get("steps_configured")
                                 or net[(scan, accel, sd, "sparse-dip")].get("steps") or 0) for sd in seeds}),
            **{f"{m.replace('-', '_')}_{k}": mean(m, k) for m in CLASSICAL for k in ("psnr", "ssim")},
            "deep_decoder_psnr": statistics.fmean(r["final_psnr"] for r in dd) if dd else None,
            "deep_decoder_seeds": [int(r["seed"]) for r in dd],
            "min_delta_psnr": min(p["delta_psnr"] for p in per_seed),
            "met": all(p["delta_psnr"] >= 0 for p in per_seed),
            "per_seed": per_seed})
    return table


def markdown(table: list) -> str:
    head = ("| scan | accel | seeds | steps | Sparse-DIP PSNR / SSIM (density) | SENSE | L1-wavelet | zero-filled | "
            "dense deep decoder (seeds) | Δ PSNR vs max(SENSE, L1) per seed | met | final − best on the curve |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in table:
        dd = (f"{r['deep_decoder_psnr']:.2f} ({','.join(map(str, r['deep_decoder_seeds']))})"
              if r["deep_decoder_psnr"] is not None else "—")
        deltas = ", ".join(f"{p['delta_psnr']:+.2f}" for p in r["per_seed"])
        below_best = ", ".join("—" if p.get("best_dc_psnr") is None else f"{p['psnr'] - p['best_dc_psnr']:+.2f}"
                               for p in r["per_seed"])
        lines.append(
            f"| {r['scan']} | {r['accel']}x | {','.join(map(str, r['seeds']))} | "
            f"{','.join(map(str, r['steps']))} | {r['sparse_dip_psnr']:.2f} / "
            f"{r['sparse_dip_ssim']:.3f} ({r['density']:.2f}) | {r['sense_psnr']:.2f} / {r['sense_ssim']:.3f} | "
            f"{r['l1_wavelet_psnr']:.2f} / {r['l1_wavelet_ssim']:.3f} | {r['zero_filled_psnr']:.2f} / "
            f"{r['zero_filled_ssim']:.3f} | {dd} | {deltas} | {'yes' if r['met'] else '**no**'} | {below_best} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", nargs="+", required=True, help="network result files (first file wins a case)")
    p.add_argument("--classical", nargs="+", required=True, help="mri_baselines table JSON files")
    p.add_argument("--out", required=True, help="folder for table.md / table.json")
    a = p.parse_args(argv)
    for f in a.network + a.classical:
        if not Path(f).is_file():
            p.error(f"no such result file: {f}")
    try:
        table = compare(network_rows(a.network), classical_rows(a.classical))
    except UserError as e:   # a file that is not a bounded JSON document: one line, no traceback
        p.error(str(e))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(table)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(md)
    write_json(out / "table.json", {"network": a.network, "classical": a.classical, "rows": table})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
