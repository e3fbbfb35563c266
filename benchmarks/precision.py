"""float32 vs bfloat16 generator passes (``core.fit(precision=...)``, ``--precision``), side by side.

The ``cpu`` preset's networks (deep decoder, 6 layers, ``presets.for_accel``: 192 channels at 4x, 128 at
8x) on the real shared brains (8 coils, 230x180 and 256x256), through the real ESPIRiT operator: a
Sparse-DIP training step (an OES-size random mask at the preset's density rule) and an OES mask step
(Concrete, K = 1), each in float32 and bfloat16, ``--repeats`` interleaved repeats of ``--steps`` timed
steps (the order rotates). Seconds per step are process CPU time with one torch thread (the work, robust
to other jobs on the box), wall beside it; ``--threads 2`` times a lone run on both cores (wall).
Prints a table and writes ``benchmarks/results/precision.json`` (``ratios``: bfloat16 / float32 seconds).

    MRI_OES_SHARED=../shared python benchmarks/precision.py            # ~5 min on 2 cores
    MRI_OES_SHARED=../shared python benchmarks/precision.py --threads 2 --out benchmarks/results/precision_2threads.json

bf16 autocast pays off where the CPU multiplies bf16 natively (AVX-512 BF16 / AMX); the table records
the CPU flags it ran on. Quality: results/2026-11-26-mri-quality-preset/README.md (the same runs in both
precisions).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from core_speed import Stamps  # noqa: E402
from mri_oes import core, methods, runtime  # noqa: E402
from mri_oes.generators import GeneratorConfig  # noqa: E402
from mri_oes.io import versions, write_json  # noqa: E402
from mri_oes.masks import maskable_parameters, topk_mask  # noqa: E402
from mri_oes.mri import presets  # noqa: E402
from mri_oes.problem import measurement_count  # noqa: E402

SCANS = {"brain8": "brain8_full.h5", "brain8b": "brain8b_full.h5", "brain4": "brain4_full.h5"}


def cpu_flags() -> list:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if "bf16" in f or "amx" in f)
    except OSError:
        pass
    return []


def problem(scan: str, accel: int):
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    shared = Path(os.environ.get("MRI_OES_SHARED", ROOT.parent / "shared"))
    path = shared / "data" / "mri" / SCANS[scan]
    if not path.is_file():
        raise SystemExit(f"{path}: not found (set MRI_OES_SHARED to the folder holding data/mri/)")
    return build_problem(load_slice(path, 0), accel, "equispaced", 0)


def cases_for(scan: str, accel: int, steps: int):
    p = problem(scan, accel)
    pre = presets.for_accel(presets.get("cpu"), accel)
    cfg = GeneratorConfig.deep_decoder(layers=pre["layers"], width=pre["channels"], mri=True)
    net, z, _ = methods.setup_generator(cfg, p.image_shape, 0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    n_w = sum(v.numel() for v in maskable_parameters(net).values())
    density = presets.density_for(measurement_count(p.operator), n_w, pre["kept_per_measurement"],
                                  pre["density_min"], pre["density_max"])
    g = torch.Generator().manual_seed(0)
    mask = topk_mask({k: torch.rand(v.shape, generator=g) for k, v in maskable_parameters(net).items()}, density)

    def run(make_param, precision):
        net.load_state_dict(state)
        for q in net.parameters():
            q.requires_grad_(True)
        st = Stamps(z.device)
        core.fit(net, z, p.operator, p.y, make_param(net), steps=steps + 2, log_every=1, callback=st,
                 precision=precision)
        return st.per_step()

    tag = f"{scan}_{accel}x_dd{pre['channels']}"
    out = {}
    for prec in core.PRECISIONS:
        out[f"{tag}_sparse_{prec}"] = lambda prec=prec: run(lambda n: core.TrainWeights(n, mask), prec)
        out[f"{tag}_oes_{prec}"] = lambda prec=prec: run(lambda n: core.ConcreteMask(n, density), prec)
    info = {"scan": scan, "accel": accel, "grid": list(p.image_shape), "channels": pre["channels"],
            "layers": pre["layers"], "density": density, "sparsity": 1 - density}
    return out, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", nargs="+", default=["brain8", "brain8b"], choices=tuple(SCANS))
    from mri_oes.cli_common import add_renamed
    add_renamed(ap, "--accel", "--accels", dest="accels", nargs="+", type=int, default=[4, 8], choices=(4, 8),
                help="accelerations, one or more (default 4 8)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    threads = runtime.configure_runtime(a.threads)
    t_start = time.perf_counter()
    cases, infos = {}, {}
    for scan in a.scans:
        for accel in a.accels:
            c, info = cases_for(scan, accel, a.steps)
            cases.update(c)
            infos[f"{scan}_{accel}x"] = info
    names = list(cases)
    samples = {n: [] for n in names}
    for r in range(a.repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            samples[n].append(cases[n]())
    use_cpu = threads == 1
    res = {n: {"s_per_step_wall": statistics.median(w for w, _ in v),
               "s_per_step_cpu": statistics.median(c for _, c in v)} for n, v in samples.items()}
    for r in res.values():
        r["s_per_step"] = r["s_per_step_cpu"] if use_cpu else r["s_per_step_wall"]
    ratios = {n[:-len("_bfloat16")]: res[n]["s_per_step"] / res[n[:-len("_bfloat16")] + "_float32"]["s_per_step"]
              for n in names if n.endswith("_bfloat16")}
    out = {"benchmark": "precision", "config": vars(a), "threads": threads, "problems": infos,
           "timing": "process CPU time (1 thread)" if use_cpu else "wall",
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpu_bf16_flags": cpu_flags(), "usable_cores": runtime.usable_cores(),
                       "loadavg": list(os.getloadavg())},
           "device": "cpu", "seed": 0, "versions": versions(), "cases": res,
           "ratios": {f"{k}_bfloat16_vs_float32": v for k, v in ratios.items()},
           "wall_time_s": time.perf_counter() - t_start}
    print(f"threads {threads}; s/step from {'CPU' if use_cpu else 'wall'} time; CPU bf16 flags: "
          f"{' '.join(out['machine']['cpu_bf16_flags']) or 'none'}")
    print(f"{'case':<28} {'float32':>9} {'bfloat16':>9} {'ratio':>7}")
    for k, v in ratios.items():
        print(f"{k:<28} {res[k + '_float32']['s_per_step']:9.4f} {res[k + '_bfloat16']['s_per_step']:9.4f} {v:7.3f}")
    path = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / "precision.json"
    write_json(path, out)
    print(f"wrote {path} ({out['wall_time_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
