"""Slices per loop: seconds per slice and memory per slice of recon's 4x network trained B slices at a time.

``recon --batch-slices B`` trains B slices of one grid in one loop (:mod:`mri_oes.batched`: the B networks
stacked, one vmap pass per step). This benchmark measures what that buys against B slices one after the
other, on the device given: for each B in ``--batch-slices``, one fresh process per measurement —

* ``sequential``: B one-slice fits (:func:`mri_oes.methods.train_generator`, the route of ``recon``),
  ``--steps`` timed steps each after ``--warmup`` untimed ones;
* ``batched``: one fit of the B slices stacked (:func:`mri_oes.runner.run_batch`'s pieces), the same steps;
* ``idle``: the problems built, nothing trained (the process's memory floor on a CPU).

Slices: the shared 256x256 scans (``--scan``, default brain8b, brain4, phantom4: 8, 4 and 4 coils) at 4x,
cycled to B slices, each with its own seed (init, z, mask). The network and fit are the ``cpu`` preset's
at 4x on that grid (6-layer deep decoder, 192 channels, density by the preset's rule); the masks are
random at that density (training costs the same for any mask; mask learning is not timed here). Memory:
``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS above the idle process's on a CPU,
per slice held at once (one in the sequential run, B in the batched one). ``--vmap``: the batched run
stacks the networks by :func:`torch.func.vmap` instead of grouping them (``stacking`` in each row). Seconds per slice at the preset = seconds per slice-step x the preset's 11,000 steps.
Prints a table and writes ``OUT/batched_slices.json`` and ``OUT/table.md``:

    python benchmarks/batched_slices.py --batch-slices 1 2 4 --steps 10 --threads 1 --out results/DATE-batched-slices
    python benchmarks/batched_slices.py --device cuda --batch-slices 1 4 16 --steps 50 --out /tmp/gpu   # a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("MRI_OES_SHARED", ROOT.parent / "shared")) / "data" / "mri"
PRESET_STEPS_4X = 11000


def _problems(scans, batch, device):
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    built = {}
    for s in scans:
        f = SHARED / f"{s}_full.h5"
        if not f.is_file():
            raise SystemExit(f"--scan {s}: {f} not found (set MRI_OES_SHARED to the shared folder)")
        built[s] = build_problem(load_slice(f, 0), 4, "equispaced", 0)
    out = [built[scans[b % len(scans)]] for b in range(batch)]
    grids = {tuple(p.image_shape) for p in out}
    if len(grids) != 1:
        raise SystemExit(f"--scan: one grid needed to batch slices, got {sorted(grids)}")
    for p in out:
        p.operator.to(device)
    return out


def _slice_setup(p, seed, device):
    """Network, input, random mask at the preset's density and fit options of slice ``seed``."""
    import torch
    from mri_oes import methods
    from mri_oes.masks import Mask, maskable_parameters
    from mri_oes.recipe import Recipe
    gp = p.as_problem({"kind": "mri"}, evaluate=None)
    rc = Recipe.from_preset("cpu", 4, method="sparse-dip", seed=seed).for_problem(gp)
    cfg = rc.generator_config(2, mri=True)
    net, z, _ = methods.setup_generator(cfg, tuple(p.image_shape), seed, device=device)
    g = torch.Generator().manual_seed(seed)
    keep = {k: (torch.rand(w.shape, generator=g) < rc.density) for k, w in maskable_parameters(net).items()}
    return net, z, Mask(keep, {"scope": "weights"}), rc


def measure(mode, batch, steps, warmup, scans, device, vmap=False) -> dict:
    """One measurement in this process (``mode``: sequential, batched or idle)."""
    import resource
    import torch
    from mri_oes import methods
    from mri_oes.batched import SliceBatch, StackedGenerator, StackedMask
    dev = torch.device(device)
    problems = _problems(scans, batch, dev)
    slices = [_slice_setup(p, b, dev) for b, p in enumerate(problems)]
    opts = {k: v for k, v in slices[0][3].fit_options().items() if k not in ("steps", "log_every")}
    opts["log_every"] = 10 ** 9

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def fit_all(n):
        if n <= 0:
            return
        if mode == "sequential":
            for (net, z, mask, _), p in zip(slices, problems):
                methods.train_generator(net, z, p.operator, p.y, mask=mask, steps=n, **opts)
        else:
            sb = SliceBatch([p.operator for p in problems])
            methods.train_generator(stacked, torch.stack([z for _, z, _, _ in slices]), sb,
                                    sb.stack([p.y for p in problems]),
                                    mask=StackedMask([m for _, _, m, _ in slices]), steps=n, **opts)

    stacked = StackedGenerator([s[0] for s in slices], grouped=not vmap) if mode == "batched" else None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if mode != "idle":
        fit_all(warmup)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    if mode != "idle":
        fit_all(steps)
    sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    mem = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"mode": mode, "batch": batch, "stacking": stacked.mode if stacked is not None else None, "steps": steps, "warmup": warmup, "wall_s": wall, "cpu_s": cpu,
            "peak_memory_bytes": int(mem), "memory_kind": "cuda_max_allocated" if dev.type == "cuda" else "max_rss",
            "density": slices[0][3].density, "grid": list(problems[0].image_shape),
            "coils": [int(p.operator.out_shape[0]) for p in problems]}


def _child(mode, batch, args) -> dict:
    cmd = [sys.executable, __file__, "--one", mode, str(batch), "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--device", args.device, "--threads", str(args.threads), "--scan", *args.scan,
           *(["--vmap"] if args.vmap else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{mode} B={batch} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows) -> str:
    lines = ["| B | mode | s per step (all slices) | s per slice-step | speed-up vs sequential | s per 4x slice "
             f"({PRESET_STEPS_4X:,} steps) | memory per slice (MiB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['mode']} | {r['s_per_step']:.3f} | {r['s_per_slice_step']:.4f} | "
                     f"{r['speedup']:.2f} | {r['s_per_slice_at_preset']:.0f} | "
                     + (f"{r['memory_per_slice_mib']:.0f}" if r.get("memory_per_slice_mib") is not None else "—") + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-slices", type=int, nargs="+", default=[1, 2, 4],
                    help="slices per loop to measure (recon's --batch-slices)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--scan", nargs="+", default=["brain8b", "brain4", "phantom4"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batched_slices")
    ap.add_argument("--vmap", action="store_true", help="stack the batched networks by vmap (not grouped)")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "B"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps, args.warmup, args.scan, args.device,
                                 args.vmap)))
        return 0
    from mri_oes.io import atomic_path, versions, write_json
    rows = []
    floor = _child("idle", max(args.batch_slices), args)["peak_memory_bytes"] if args.device == "cpu" else 0
    for b in args.batch_slices:
        seq = _child("sequential", b, args)
        for m in (seq, _child("batched", b, args)):
            per = m["wall_s"] / args.steps
            # memory: one slice trains at a time in the sequential run, all B at once in the batched one
            held = 1 if m["mode"] == "sequential" else b
            m.update(s_per_step=per, s_per_slice_step=per / b, speedup=seq["wall_s"] / m["wall_s"],
                     s_per_slice_at_preset=per / b * PRESET_STEPS_4X,
                     memory_per_slice_mib=(m["peak_memory_bytes"] - floor) / held / 2 ** 20)
            rows.append(m)
            print(f"B={b} {m['mode']}: {per:.3f} s/step, {per / b:.4f} s per slice-step, "
                  f"{m['memory_per_slice_mib']:.0f} MiB per slice", file=sys.stderr)
    md = table(rows)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "batched_slices.json", {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "threads": args.threads, "vmap": args.vmap, "memory_floor_bytes": floor, "versions": versions(), "rows": rows})
    with atomic_path(args.out / "table.md") as tmp:
        Path(tmp).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
