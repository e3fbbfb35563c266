"""Per scan x accel x seed: the kernel width each rule picks (the fixed rule; the smallest L1-wavelet held-out
error; the smallest CG-SENSE held-out error) and what L1-wavelet / SENSE reach with it, against the best width
(reference-based, for comparison only). Writes summary.md beside the sweep:

    python results/2026-12-05-espirit-kernel-holdout/summarize.py results/2026-12-05-espirit-kernel-holdout/sweep.jsonl
"""
import json, sys
from collections import defaultdict
from pathlib import Path

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
cases = defaultdict(dict)
for r in rows:
    cases[(r["scan"], r["accel"], r["seed"])][r["kernel_width"]] = r
lines = ["| scan | accel | seed | calib | widths | best L1 (width) | rule | L1 held-out pick | SENSE held-out pick |",
         "|---|---|---|---|---|---|---|---|---|"]
tot = defaultdict(list)
for (scan, accel, seed), ks in sorted(cases.items()):
    any_r = next(iter(ks.values()))
    best = max(ks, key=lambda k: ks[k]["l1-wavelet"][0])
    picks = {"rule": any_r["rule_kernel_width"],
             "l1": min(ks, key=lambda k: ks[k]["l1_holdout_error"]),
             "sense": min(ks, key=lambda k: ks[k]["sense_holdout_error"])}
    cells = []
    for name, k in picks.items():
        if k not in ks:
            cells.append(f"{k} (not run)"); continue
        d = ks[k]["l1-wavelet"][0] - ks[best]["l1-wavelet"][0]
        tot[name].append((d, ks[k]["sense"][0] - max(v["sense"][0] for v in ks.values()),
                          ks[k]["l1-wavelet"][0] - ks.get(picks["rule"], ks[k])["l1-wavelet"][0],
                          ks[k]["sense"][0] - ks.get(picks["rule"], ks[k])["sense"][0]))
        cells.append(f"{k}: {ks[k]['l1-wavelet'][0]:.2f} / SENSE {ks[k]['sense'][0]:.2f} ({d:+.2f})")
    lines.append(f"| {scan} | {accel}x | {seed} | {any_r['calib_width']} | {','.join(map(str, sorted(ks)))} | "
                 f"{ks[best]['l1-wavelet'][0]:.2f} ({best}) | " + " | ".join(cells) + " |")
lines += ["", "| pick | cases | mean L1 vs best width | worst | mean SENSE vs best width | mean L1 vs rule | worst L1 vs rule | mean SENSE vs rule |",
          "|---|---|---|---|---|---|---|---|"]
for name, v in tot.items():
    import numpy as np
    a = np.array(v)
    lines.append(f"| {name} | {len(a)} | {a[:, 0].mean():+.2f} | {a[:, 0].min():+.2f} | {a[:, 1].mean():+.2f} | "
                 f"{a[:, 2].mean():+.2f} | {a[:, 2].min():+.2f} | {a[:, 3].mean():+.2f} |")
text = "\n".join(lines) + "\n"
print(text)
Path(sys.argv[1]).with_name("summary.md").write_text(text)
