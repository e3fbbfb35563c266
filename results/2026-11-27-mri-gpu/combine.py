"""Issue 11's tables over every run so far: the committed stop-23 table (its run folders are no longer on
disk) and this stop's runs (``mri_quality table --out runs/mq11`` -> ``table_new.json`` here).

Stop 24 changed the 4x preset (density rule 0.9 / 0.9, was 0.5 / 0.5), so "default" means the preset now:
the 4x Sparse-DIP runs of the 0.5 rule become ``d50`` and the ``d90`` runs become ``default``; the 8x seed-0
runs of the 5,000-step 8x preset (before stop 17) become ``s5000``; a GPU run of a seed that also has a CPU
run of the same preset becomes ``default-cuda`` (one run per seed in the means). Writes ``table.json`` and ``summary.md``
(mri_quality's own summary) here.

    python results/2026-11-27-mri-gpu/combine.py
"""
import json
from pathlib import Path

from mri_oes.experiments.mri_quality import summarize
from mri_oes.io import atomic_path, write_json

HERE = Path(__file__).resolve().parent
OLD = HERE.parent / "2026-11-26-mri-quality-preset" / "table.json"
NEW = HERE / "table_new.json"


def relabel(row, source):
    v, net = row.get("variant"), row["method"] == "sparse-dip"
    if net and row["accel"] == 4 and v == "default" and row["density"] <= 0.5 + 1e-9:
        return "d50"          # the 4x density rule before stop 24 (0.5 kept per measured value, at most 0.5)
    if net and row["accel"] == 4 and v == "d90":
        return "default"      # the 4x preset since stop 24
    if source == "old" and net and row["accel"] == 8 and v == "default" and row["steps"] == 5000:
        return "s5000"        # the 8x preset before stop 17 (5,000 steps; now 3,000)
    return v


def main():
    old, new = json.loads(OLD.read_text()), json.loads(NEW.read_text())
    on_disk = {r["run"] for r in new}
    rows = [{**r, "source": "stop-23 table"} for r in old if r["run"] not in on_disk]
    rows = [{**r, "variant": relabel(r, "old")} for r in rows]
    rows += [{**r, "variant": relabel(r, "new"), "source": "stop 24"} for r in new]
    # one run per seed in the means: where a seed has a CPU run and a GPU run of the same preset, the CPU
    # run (deterministic, the platform the preset is sized for) stays "default", the other "default-<device>"
    cpu_default = {(r["scan"], r["accel"], r["seed"], r["method"]) for r in rows
                   if r.get("variant") == "default" and r.get("device", "cpu") == "cpu"}
    for r in rows:
        if r.get("variant") == "default" and r.get("device", "cpu") != "cpu" and \
                (r["scan"], r["accel"], r["seed"], r["method"]) in cpu_default:
            r["variant"] = f"default-{r['device']}"
    write_json(HERE / "table.json", rows)
    with atomic_path(HERE / "summary.md") as tmp:
        tmp.write_text(summarize(rows))
    print(f"{len(rows)} rows ({len(new)} of stop 24) -> {HERE / 'summary.md'}")


if __name__ == "__main__":
    main()
