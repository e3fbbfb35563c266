"""1×1 convolutions as one GEMM (``generators.PointwiseConv``) vs ``nn.Conv2d``'s kernel, side by side.

The ``cpu`` preset's MRI generator is a deep decoder of 1×1 convs (``[192]*5 + [64]`` channels) on the
230×180 8-coil brain grid (256×192). On the CPU, ``core.fit`` feeds ``z`` channels_last, so every layer
runs channels_last; ``PointwiseConv`` then computes each 1×1 conv as ``(N·H·W, C_in) @ W^T`` on views.
This times, through the real loop (``core.fit``), the Sparse-DIP step (mask at the preset's density 0.5)
and the OES mask step (K = 1), with the GEMM path on and off (``generators.POINTWISE_GEMM``) alternating
every two steps within one fit (a shared box's drift hits both; only steps whose forward and backward ran
on one path are timed), median step; process CPU time on the CPU (1 thread: the work).
Both paths give the same values up to float rounding (``tests/test_speed_equivalence.py``).

    python benchmarks/pointwise_conv.py            # ~1 min on this 2-core CPU, 1 thread
    python benchmarks/pointwise_conv.py --device cuda

Writes ``benchmarks/results/pointwise_conv_<device>.json`` (``ratios``: GEMM seconds ÷ conv seconds per
step, lower is better).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_speed import mri_problem, random_mask  # noqa: E402
from mri_oes import core, generators, runtime  # noqa: E402
from mri_oes.generators import GeneratorConfig, count_parameters  # noqa: E402
from mri_oes.io import versions, write_json  # noqa: E402
from mri_oes.mri import presets  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per path (alternating with the other)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    runtime.configure_runtime(a.threads)
    dev = torch.device(a.device)
    chans = presets.for_accel(presets.get("cpu"), 4)["channels"]
    cfg = GeneratorConfig.deep_decoder(width=list(chans), mri=True)
    density = 0.5
    prob = mri_problem(cfg, (230, 180), 0, dev)
    st0 = copy.deepcopy(prob[0].state_dict())
    mask = random_mask(prob[0], density)

    def fresh():
        net = prob[0]
        net.load_state_dict(st0)
        return (net,) + prob[1:]

    class Alternate:
        """fit callback (called between a step's forward and its backward): flips ``POINTWISE_GEMM``
        every second call and stamps only the intervals whose backward and next forward both ran on
        one path, so the two paths alternate in pairs within one fit (drift on a shared box hits both)."""

        def __init__(self):
            self.calls, self.t, self.pure, self.times = 0, None, False, {"gemm": ([], []), "conv": ([], [])}

        def __call__(self, *args):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            now = (time.perf_counter(), time.process_time())
            if self.pure:
                w, c = self.times["gemm" if generators.POINTWISE_GEMM else "conv"]
                w.append(now[0] - self.t[0])
                c.append(now[1] - self.t[1])
            flip = self.calls % 2 == 0
            if flip:   # this backward ran on the old path, the next forward on the new one: not stamped
                generators.POINTWISE_GEMM = not generators.POINTWISE_GEMM
            self.pure, self.calls = not flip, self.calls + 1
            self.t = (time.perf_counter(), time.process_time())

    steps = {"sparse": lambda n: core.TrainWeights(n, mask), "oes_k1": lambda n: core.ConcreteMask(n, density)}
    names = [f"{s}_{path}" for s in steps for path in ("gemm", "conv")]
    wall, cpu = {n: [] for n in names}, {n: [] for n in names}
    t_start = time.perf_counter()
    for s, make_param in steps.items():
        alt = Alternate()
        net, z, op, y = fresh()
        try:
            core.fit(net, z, op, y, make_param(net), steps=4 * a.steps + 6, log_every=1, callback=alt)
        finally:
            generators.POINTWISE_GEMM = True
        for path, (w, c) in alt.times.items():
            wall[f"{s}_{path}"] += w[1:]     # the first interval of each path: warm-up
            cpu[f"{s}_{path}"] += c[1:]
        print(f"  {s}: GEMM {statistics.median(cpu[s + '_gemm']):.4f} s/step (CPU), "
              f"conv {statistics.median(cpu[s + '_conv']):.4f}", flush=True)
    use_cpu = dev.type == "cpu"
    res = {n: {"s_per_step": statistics.median(cpu[n] if use_cpu else wall[n]),
               "s_per_step_wall": statistics.median(wall[n]), "steps_cpu": cpu[n], "steps_wall": wall[n]}
           for n in names}
    ratios = {f"{s}_gemm_vs_conv": res[f"{s}_gemm"]["s_per_step"] / res[f"{s}_conv"]["s_per_step"] for s in steps}
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    out = {
        "benchmark": "pointwise_conv", "config": vars(a),
        "net": {"generator": cfg.to_dict(), "parameters": count_parameters(prob[0]), "image": [230, 180],
                "grid": list(generators.grid_size(cfg, (230, 180))), "coils": 8},
        "density": density, "sparsity": 1 - density, "seed": 0,
        "device": str(dev), "device_name": dev_name, "threads": torch.get_num_threads(),
        "channels_last_input": core.use_channels_last(prob[1]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg())},
        "timing": "process CPU time (1-thread work)" if use_cpu else "wall, synchronised",
        "versions": versions(), "ratios": ratios, "cases": res, "wall_time_s": time.perf_counter() - t_start,
    }
    print(f"\ncpu-preset deep decoder {chans} ({out['net']['parameters']:,} params), 230x180 8 coils, "
          f"device {dev} ({dev_name}), threads {out['threads']}, {a.steps} alternating steps per path")
    print(f"{'step':<8} {'GEMM s/step':>12} {'conv s/step':>12} {'GEMM/conv':>10}")
    for s in steps:
        print(f"{s:<8} {res[s + '_gemm']['s_per_step']:12.4f} {res[s + '_conv']['s_per_step']:12.4f} "
              f"{ratios[s + '_gemm_vs_conv']:10.3f}")
    path = Path(a.out) if a.out else Path(__file__).resolve().parent / "results" / f"pointwise_conv_{dev.type}.json"
    write_json(path, out)   # atomic; creates the folder
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
