"""Core speed, side by side in one run: dense DIP step vs Sparse-DIP step (masked weights through
``functional_call``) for the natural-image and MRI generators, and the MRI operator batched vs a loop.

    python benchmarks/core_speed.py [--size 128] [--levels 5] [--steps 10] [--device cpu] [--out core_speed.json]

Prints a table and writes JSON (seconds per step, ratios, device, versions).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import operators as O  # noqa: E402
from mri_oes import methods  # noqa: E402
from mri_oes.generators import GeneratorConfig  # noqa: E402
from mri_oes.io import versions, write_json  # noqa: E402
from mri_oes.masks import maskable_parameters, topk_mask  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_fit(cfg, hw, op, y, mask, steps, dev, repeats=3):
    times = []
    for _ in range(repeats):
        net, z, _ = methods.setup_generator(cfg, hw, 0, device=dev)
        m = None
        if mask:
            m = topk_mask({k: torch.rand(p.shape) for k, p in maskable_parameters(net).items()}, 0.05)
        methods.train_generator(net, z, op, y, steps=1, mask=m)   # warm-up
        sync(dev)
        t = time.perf_counter()
        methods.train_generator(net, z, op, y, steps=steps, mask=m, log_every=10 ** 9)
        sync(dev)
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="core_speed.json")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    hw = (a.size, a.size)
    rows = []
    g = torch.Generator().manual_seed(0)
    den = O.Denoise((3, *hw))
    y_nat = torch.rand((1, 3, *hw), generator=g).to(dev)
    maps = torch.randn(a.coils, *hw, dtype=torch.complex64, generator=g)
    mri = O.MultiCoilMRI(maps, torch.rand(a.size, generator=g) > 0.7).to(dev)
    y_mri = mri(torch.randn(1, *hw, dtype=torch.complex64, generator=g).to(dev))
    for name, cfg, op, y in (("RGB hourglass", GeneratorConfig.oes(levels=a.levels), den, y_nat),
                             ("MRI hourglass", GeneratorConfig.oes(levels=a.levels, mri=True), mri, y_mri)):
        d = time_fit(cfg, hw, op, y, False, a.steps, dev)
        s = time_fit(cfg, hw, op, y, True, a.steps, dev)
        rows.append({"case": f"{name} {a.size}^2: dense DIP step", "s_per_step": d, "ratio": 1.0})
        rows.append({"case": f"{name} {a.size}^2: Sparse-DIP step (5%)", "s_per_step": s, "ratio": s / d})
    x = torch.randn(a.batch, *hw, dtype=torch.complex64, generator=g).to(dev)
    for fn in (lambda: mri(x), lambda: torch.stack([mri(xi) for xi in x])):
        fn()
    reps = []
    for label, fn in (("batched", lambda: mri(x)), ("loop", lambda: torch.stack([mri(xi) for xi in x]))):
        sync(dev)
        t = time.perf_counter()
        for _ in range(5):
            fn()
        sync(dev)
        reps.append((label, (time.perf_counter() - t) / 5))
    rows.append({"case": f"MultiCoilMRI forward, batch {a.batch}, {a.coils} coils: batched", "s_per_step": reps[0][1],
                 "ratio": 1.0})
    rows.append({"case": f"MultiCoilMRI forward, batch {a.batch}, {a.coils} coils: loop", "s_per_step": reps[1][1],
                 "ratio": reps[1][1] / reps[0][1]})
    print(f"{'case':<62} {'s/step':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r['case']:<62} {r['s_per_step']:9.4f} {r['ratio']:7.2f}")
    write_json(a.out, {"device": str(dev), "threads": torch.get_num_threads(), "args": vars(a), "rows": rows,
                       "versions": versions()})
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
