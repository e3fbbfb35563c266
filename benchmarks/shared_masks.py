"""Table of ``recon --share-pruning-mask``: per scan, the slice's PSNR/SSIM and CPU-seconds with a mask of
its own (a run with ``--share-pruning-mask none``) and with the shared mask (a run with ``volume`` or
``protocol``), and per run the CPU-seconds per slice amortised beside cold (recon's ``summary.json``).

    python benchmarks/shared_masks.py --own OUT_NONE --shared OUT_PROTOCOL --out results/2026-12-05-shared-masks

Reads only the run folders recon wrote (slice records ``slices/<stem>/<NNN>/metrics.json``, shared mask
records ``masks/<key>/metrics.json``, ``summary.json``); writes ``rows.json`` (the records' numbers, no
training curves) and ``table.md`` into ``--out``. ``--l1 OUT`` adds L1-wavelet's PSNR per scan from a
``recon --method l1-wavelet`` folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri_oes.errors import UserError  # noqa: E402
from mri_oes.io import atomic_path, read_json, write_json  # noqa: E402


def _slices(out: Path, method: str = "sparse-dip") -> dict:
    """``{(scan, slice): record}`` of every complete slice of ``method`` runs under recon folder ``out``."""
    recs = {}
    for f in sorted(out.glob(f"{method}_*/slices/*/*/metrics.json")):
        r = read_json(f, what="slice record")
        recs[(r["scan"], int(r["slice"]), int(r["accel"]))] = r
    return recs


def _summary(out: Path, method: str = "sparse-dip") -> list:
    f = out / "summary.json"
    return [r for r in read_json(f, what="run summary")["rows"] if r["method"] == method] if f.is_file() else []


def _masks(out: Path) -> list:
    rows = []
    for f in sorted(out.glob("sparse-dip_*/masks/*/metrics.json")):
        r = read_json(f, what="shared mask record")
        rows.append({"run": f.parents[2].name, "key": f.parent.name, **r["shared_mask"], "density": r["density"],
                     "mask_steps": r["mask_steps"], "cpu_s": r["time"].get("cpu_s"), "wall_s": r["time"]["total_s"],
                     "finding1_psnr": (r.get("final") or {}).get("psnr")})
    return rows


def _row(r: dict) -> dict:
    return {"psnr": r["final"]["psnr"], "ssim": r["final"]["ssim"], "density": r["density"],
            "mask_steps": r["mask_steps"], "steps": r["steps"], "cpu_s": r["time"].get("cpu_s"),
            "wall_s": r["time"]["total_s"], "shared_mask": r.get("shared_mask"),
            "mask_source": r["mask_source"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--own", type=Path, required=True, help="recon folder run with --share-pruning-mask none")
    ap.add_argument("--shared", type=Path, required=True, help="recon folder run with volume or protocol")
    ap.add_argument("--l1", type=Path, default=None, help="recon folder with --method l1-wavelet (optional)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:   # a record that is not a bounded JSON document: one line, no traceback
        own, shared = _slices(a.own), _slices(a.shared)
        l1 = _slices(a.l1, "l1-wavelet") if a.l1 else {}
        masks, summary = _masks(a.shared), {"own": _summary(a.own), "shared": _summary(a.shared)}
    except UserError as e:
        ap.error(str(e))
    rows = []
    for key in sorted(set(own) | set(shared)):
        scan, sl, accel = key
        row = {"scan": scan, "slice": sl, "accel": accel,
               "own": _row(own[key]) if key in own else None, "shared": _row(shared[key]) if key in shared else None,
               "l1_psnr": l1[key]["final"]["psnr"] if key in l1 else None}
        rows.append(row)
    doc = {"own_run": str(a.own), "shared_run": str(a.shared), "l1_run": str(a.l1) if a.l1 else None,
           "rows": rows, "masks": masks, "summary": summary,
           "config": {"own": next(iter(own.values()))["config"] if own else None,
                      "shared": next(iter(shared.values()))["config"] if shared else None},
           "versions": next(iter((shared or own).values()))["versions"] if (shared or own) else None}
    write_json(a.out / "rows.json", doc)

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    lines = ["| scan | accel | L1 PSNR | own mask: density | PSNR / SSIM | CPU-s | shared mask (source) | density | "
             "PSNR / SSIM | CPU-s (training) | Δ PSNR |", "|" + "---|" * 11]
    for r in rows:
        o, s = r["own"] or {}, r["shared"] or {}
        src = s.get("shared_mask") or {}
        d = (s["psnr"] - o["psnr"]) if s.get("psnr") is not None and o.get("psnr") is not None else None
        lines.append(f"| {r['scan']} | {r['accel']}× | {f(r['l1_psnr'], '.2f')} | {f(o.get('density'), '.3f')} | "
                     f"{f(o.get('psnr'), '.2f')} / {f(o.get('ssim'), '.3f')} | {f(o.get('cpu_s'), '.0f')} | "
                     f"{src.get('key', '—')} ({src.get('scan', '—')}) | {f(s.get('density'), '.3f')} | "
                     f"{f(s.get('psnr'), '.2f')} / {f(s.get('ssim'), '.3f')} | {f(s.get('cpu_s'), '.0f')} | "
                     f"{f(d, '+.2f')} |")
    lines += ["", "| run | share | slices | shared masks | mask CPU-s | CPU-s per slice: amortised | cold |",
              "|" + "---|" * 7]
    for name, rs in doc["summary"].items():
        for r in rs:
            lines.append(f"| {name} ({r['run']}) | {r.get('share_mask', 'none')} | {r['slices']} | "
                         f"{r.get('shared_masks')} | {f(r.get('mask_cpu_s'), '.0f')} | "
                         f"{f(r.get('amortised_cpu_s_per_slice'), '.0f')} | {f(r.get('cold_cpu_s_per_slice'), '.0f')} |")
    with atomic_path(a.out / "table.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
