"""Speed of the masked-generator core, side by side in ONE run on the same net and input.

Cases (seconds per training step through the real loop, ``core.fit``):

* ``dense``            dense DIP step (``TrainWeights``)
* ``sparse``           Sparse-DIP step, fixed 5% mask (``TrainWeights(mask)``)
* ``oes_k1``           OES mask step, K = 1 (``ConcreteMask``)
* ``oes_k4_loop``      OES mask step, K = 4 samples in a Python loop
* ``oes_k4_batched``   OES mask step, K = 4 samples in one vmap pass
* ``oes_deepcopy``     the OES authors' deep-copy-per-step scheme (re-implementation; full mode)
* ``dense_contiguous_z``  dense step without ``core.CPU_CHANNELS_LAST`` (CPU: fit feeds ``z`` channels_last)
* ``dense_channels_last`` / ``dense_compiled`` / ``dense_bf16_autocast``  options: parameters
  channels_last too / ``torch.compile`` / bf16 autocast of the network (operator and loss float32)
* ``mri_*``            the 2-channel MRI hourglass on a 230×180 8-coil brain-sized slice (grid 256×192,
  5 levels: the most that fit): dense and Sparse-DIP step and OES K=1 mask step, width 1 (``full``) and
  the ``cpu`` preset's width 0.5

Per case: ``--repeats`` interleaved repeats (order rotates), each ``--steps`` timed steps after one
warm-up step; per repeat the median step, reported the median over repeats. On the CPU the ratios use
process CPU time (robust to other jobs on a shared box: with one thread the CPU time is the work);
wall seconds are recorded too. Peak memory: bytes saved for backward in one step (device-independent
activation memory) and, on CUDA, ``max_memory_allocated``. Achieved FLOP/s: convolution/matmul FLOPs of
one step (``torch.utils.flop_counter``) ÷ seconds per step, against the measured matmul peak.

    python benchmarks/core_speed.py --quick                 # <= 5 min on 2 cores, 1 thread
    python benchmarks/core_speed.py --device cuda --compile --channels-last --bf16

Writes ``benchmarks/results/core_speed_<device>[_quick].json`` with a top-level ``ratios`` object
(``oes_k1_vs_dense``, ``oes_k4_batched_vs_dense``, ``oes_k4_batched_vs_loop``, ``sparse_vs_dense``:
seconds of the first ÷ seconds of the second, lower is better).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import operators as O  # noqa: E402
from mri_oes import core, methods, runtime  # noqa: E402
from mri_oes.generators import GeneratorConfig, count_parameters  # noqa: E402
from mri_oes.io import versions, write_json  # noqa: E402
from mri_oes.masks import maskable_parameters, topk_mask  # noqa: E402

GOALS = {"oes_k1_vs_dense": 1.2, "oes_k4_batched_vs_dense": 2.0, "oes_k4_batched_vs_loop": 0.5,
         "sparse_vs_dense": 1.05}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


class Stamps:
    """Per-step (wall, cpu) timestamps from a fit callback."""

    def __init__(self, dev):
        self.dev, self.wall, self.cpu = dev, [], []

    def __call__(self, *args):
        sync(self.dev)
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def per_step(self):
        """Median step (drops the first interval: warm-up)."""
        dw = [b - a for a, b in zip(self.wall[1:], self.wall[2:])]
        dc = [b - a for a, b in zip(self.cpu[1:], self.cpu[2:])]
        return statistics.median(dw), statistics.median(dc)


# ------------------------------------------------------------------------------------------ problems
def natural_problem(cfg, hw, seed, dev):
    net, z, _ = methods.setup_generator(cfg, hw, seed, device=dev)
    y = torch.rand((1, cfg.out_channels, *hw), generator=torch.Generator().manual_seed(seed)).to(dev)
    return net, z, O.Denoise((cfg.out_channels, *hw)).to(dev), y


def mri_problem(cfg, hw, seed, dev, coils=8):
    g = torch.Generator().manual_seed(seed)
    net, z, _ = methods.setup_generator(cfg, hw, seed, device=dev)
    maps = torch.randn(coils, *hw, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    keep = torch.zeros(hw[1], dtype=torch.bool)
    keep[::4] = True
    c = hw[1] // 2
    keep[c - 7:c + 7] = True                       # 4x equispaced + centre lines
    op = O.MultiCoilMRI(maps, keep).to(dev)
    y = op(torch.randn(1, *hw, dtype=torch.complex64, generator=g).to(dev))
    return net, z, op, y


def random_mask(net, density=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    return topk_mask({k: torch.rand(p.shape, generator=g) for k, p in maskable_parameters(net).items()},
                     density, seed=seed)


# --------------------------------------------------------------------------------------------- cases
def run_fit(prob, make_param, steps, samples=1, precision="float32"):
    net, z, op, y = prob
    st = Stamps(z.device)
    core.fit(net, z, op, y, make_param(net), steps=steps + 2, log_every=1, samples=samples, callback=st,
             precision=precision)
    return st


class DeepCopyOES:
    """The OES authors' scheme: a fresh deep copy of the network per step with masked weights set as
    plain (non-leaf) tensors, so gradients reach the logits; K = 1, Adam on the logits."""

    def __init__(self, net, density, lr=1e-2, temperature=0.2, lam=1e-9):
        self.net, self.T, self.lam, self.p0 = net, temperature, lam, density
        self.names = list(maskable_parameters(net))
        params = dict(net.named_parameters())
        self.logits = {k: torch.zeros_like(params[k], requires_grad=True) for k in self.names}
        self.opt = torch.optim.Adam(list(self.logits.values()), lr=lr)

    def step(self, z, A, y):
        self.opt.zero_grad(set_to_none=True)
        net_c = copy.deepcopy(self.net)
        net_c.train()
        for k in self.names:
            mod_name, _, pname = k.rpartition(".")
            mod = net_c.get_submodule(mod_name)
            w = mod._parameters.pop(pname).detach()
            v = self.logits[k]
            u = torch.rand_like(v).clamp(1e-7, 1 - 1e-7)
            setattr(mod, pname, w * torch.sigmoid((v + torch.log(u) - torch.log1p(-u)) / self.T))
        loss = core.data_loss(A(A.from_network(net_c(z))), y)
        kl = 0.0
        for v in self.logits.values():
            p = torch.sigmoid(v)
            kl = kl + (p * (nn.functional.logsigmoid(v) - math.log(self.p0))
                       + (1 - p) * (nn.functional.logsigmoid(-v) - math.log(1 - self.p0))).sum()
        (loss + self.lam * kl).backward()
        self.opt.step()


def make_cases(a, dev):
    """``{name: (fn() -> Stamps, flop_fn or None, memory_fn or None, 'steps' counted)}``"""
    cfg = GeneratorConfig.oes(levels=a.levels, width=a.width)
    hw = (a.size, a.size)
    base = natural_problem(cfg, hw, 0, dev)
    state = copy.deepcopy(base[0].state_dict())
    mask = random_mask(base[0], a.density)

    def fresh(prob=base, st=state):
        prob[0].load_state_dict(st)
        for p in prob[0].parameters():
            p.requires_grad_(True)
        return prob

    cases = {}
    cases["dense"] = lambda: run_fit(fresh(), lambda n: core.TrainWeights(n), a.steps)
    cases["sparse"] = lambda: run_fit(fresh(), lambda n: core.TrainWeights(n, mask), a.steps)
    cases["oes_k1"] = lambda: run_fit(fresh(), lambda n: core.ConcreteMask(n, a.density), a.steps)
    cases["oes_k4_loop"] = lambda: run_fit(
        fresh(), lambda n: core.ConcreteMask(n, a.density, batched_samples=False), a.steps, samples=4)
    cases["oes_k4_batched"] = lambda: run_fit(
        fresh(), lambda n: core.ConcreteMask(n, a.density, batched_samples=True), a.steps, samples=4)
    if not a.quick:
        def deepcopy_case():
            net, z, op, y = fresh()
            for p in net.parameters():
                p.requires_grad_(False)
            d, st = DeepCopyOES(net, a.density), Stamps(dev)
            for _ in range(a.steps + 2):
                st()
                d.step(z, op, y)
            st()
            return st
        cases["oes_deepcopy"] = deepcopy_case
    def contiguous_case():   # core.fit feeds z as channels_last on the CPU; this is without it
        core.CPU_CHANNELS_LAST = False
        try:
            return run_fit(fresh(), lambda n: core.TrainWeights(n), a.steps)
        finally:
            core.CPU_CHANNELS_LAST = True
    if dev.type == "cpu":
        cases["dense_contiguous_z"] = contiguous_case
    if a.channels_last:
        def cl_case():
            net, z, op, y = fresh()
            net = net.to(memory_format=torch.channels_last)
            r = run_fit((net, z.contiguous(memory_format=torch.channels_last), op, y),
                        lambda n: core.TrainWeights(n), a.steps)
            net.to(memory_format=torch.contiguous_format)
            return r
        cases["dense_channels_last"] = cl_case
    if a.bf16:
        def bf16_case():
            return run_fit(fresh(), lambda n: core.TrainWeights(n), a.steps, precision="bfloat16")
        cases["dense_bf16_autocast"] = bf16_case
    if a.compile:
        compiled = {}

        def compiled_case():
            net, z, op, y = fresh()
            if "net" not in compiled:
                compiled["net"] = torch.compile(net)
            return run_fit((compiled["net"], z, op, y), lambda n: core.TrainWeights(n), a.steps)
        cases["dense_compiled"] = compiled_case
    # the MRI networks on a brain-sized slice (230×180, 8 coils; grid 256×192)
    if not a.no_mri:
        # 230×180 fits at most 5 levels (grid 256×192); "full": width 1 (gpu preset width), "cpu_preset"
        mri_cfgs = [("full", GeneratorConfig.oes(levels=5, width=1.0, mri=True)),
                    ("cpu_preset", GeneratorConfig.oes(levels=5, width=0.5, mri=True))]
        for tag, mcfg in mri_cfgs[1:] if a.quick else mri_cfgs:   # quick: the cpu preset net only
            prob = mri_problem(mcfg, (230, 180), 0, dev)
            st0 = copy.deepcopy(prob[0].state_dict())
            mm = random_mask(prob[0], a.density)
            cases[f"mri_{tag}_dense"] = lambda prob=prob, st0=st0: run_fit(
                fresh(prob, st0), lambda n: core.TrainWeights(n), a.steps)
            cases[f"mri_{tag}_sparse"] = lambda prob=prob, st0=st0, mm=mm: run_fit(
                fresh(prob, st0), lambda n: core.TrainWeights(n, mm), a.steps)
            cases[f"mri_{tag}_oes_k1"] = lambda prob=prob, st0=st0: run_fit(
                fresh(prob, st0), lambda n: core.ConcreteMask(n, a.density), a.steps)
    return cases, base, fresh, mask


def one_step_profile(fn_step, dev):
    """(FLOPs, bytes saved for backward, CUDA peak bytes) of one step."""
    from torch.utils.flop_counter import FlopCounterMode
    seen, saved = set(), [0]

    def pack(t):
        try:
            key = (t.untyped_storage().data_ptr(), t.device)
            if key not in seen:
                seen.add(key)
                saved[0] += t.untyped_storage().nbytes()
        except Exception:
            pass
        return t
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    flops = None
    try:
        with FlopCounterMode(display=False) as fc, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn_step()
        flops = fc.get_total_flops()
    except Exception as e:   # vmap/compile paths the counter cannot see through
        print(f"  (flop count failed: {type(e).__name__}: {e})", file=sys.stderr)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn_step()
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return flops, saved[0], peak


def synflow_timing(net, z, density, rounds):
    """SynFlow mask at ``density``: ``rounds`` rounds as shipped (one-pixel scoring, kthvalue top-k)
    vs the per-round cost of the former implementation (full-size float64 scoring pass + the full sort
    of ``topk_mask``), measured here and multiplied by ``rounds``; CPU seconds."""
    from mri_oes import pruning
    net = copy.deepcopy(net).cpu()
    t = time.process_time()
    pruning.synflow_mask(net, z.shape, density, rounds=rounds, seed=0)
    new = time.process_time() - t
    full = pruning._SynFlowScorer(net, z.shape)
    full.reduced = None
    names = list(maskable_parameters(net))
    full.scores(names)   # warm-up
    t = time.process_time()
    s = full.scores(names)
    topk_mask(s, density ** (1 / rounds), seed=0)
    old_round = time.process_time() - t
    return {"rounds": rounds, "new_s": new, "former_s_per_round": old_round,
            "former_s_estimate": old_round * rounds, "speedup": old_round * rounds / new}


def matmul_peak(dev, n=2048, reps=5):
    """float32 matmul FLOP/s (best of ``reps``; CPU: process time, i.e. per unit of CPU work)."""
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    a @ b
    sync(dev)
    clock = time.process_time if dev.type == "cpu" else time.perf_counter
    ts = []
    for _ in range(reps):
        t = clock()
        a @ b
        sync(dev)
        ts.append(clock() - t)
    return 2 * n ** 3 / min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="<= 5 min on 2 cores: 2 timed steps x 3 repeats")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 4; quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; quick 3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 = runtime default rule)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the dense step")
    ap.add_argument("--channels-last", action="store_true", help="also time the dense step in channels_last")
    ap.add_argument("--bf16", action="store_true", help="also time the dense step with precision bfloat16 "
                    "(core.fit; the MRI deep decoder: benchmarks/precision.py)")
    ap.add_argument("--no-mri", action="store_true", help="skip the MRI-slice cases")
    ap.add_argument("--synflow-rounds", type=int, default=100, help="SynFlow rounds timed (0: skip)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    a.steps = a.steps or (2 if a.quick else 4)
    a.repeats = a.repeats or (3 if a.quick else 5)
    threads = runtime.configure_runtime(a.threads or None)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    t_start = time.perf_counter()
    cases, base, fresh, mask = make_cases(a, dev)
    names = list(cases)
    samples = {n: [] for n in names}
    for r in range(a.repeats):
        for i in range(len(names)):
            n = names[(i + r) % len(names)]
            samples[n].append(cases[n]().per_step())
            print(f"  repeat {r + 1}/{a.repeats} {n}: {samples[n][-1][0]:.4f} s wall, "
                  f"{samples[n][-1][1]:.4f} s cpu", file=sys.stderr, flush=True)
    use_cpu_time = dev.type == "cpu"
    res = {}
    for n in names:
        w = statistics.median(s[0] for s in samples[n])
        c = statistics.median(s[1] for s in samples[n])
        res[n] = {"s_per_step_wall": w, "s_per_step_cpu": c, "s_per_step": c if use_cpu_time else w,
                  "samples_wall": [s[0] for s in samples[n]], "samples_cpu": [s[1] for s in samples[n]]}
    # one-step profiles: FLOPs, saved activations, CUDA peak
    net, z, op, y = base

    def prof(make_param, samples_k=1):
        out = []
        for steps in (1, 0):   # one step + the final forward, minus the final forward alone
            fresh()
            out.append(one_step_profile(lambda: core.fit(net, z, op, y, make_param(net), steps=steps,
                                                         log_every=10 ** 9, samples=samples_k), dev))
        (f1, s1, p1), (f0, _, _) = out
        return (f1 - f0 if f1 is not None and f0 is not None else None), s1, p1
    profiles = {"dense": prof(lambda n: core.TrainWeights(n)),
                "sparse": prof(lambda n: core.TrainWeights(n, mask)),
                "oes_k1": prof(lambda n: core.ConcreteMask(n, a.density)),
                "oes_k4_loop": prof(lambda n: core.ConcreteMask(n, a.density, batched_samples=False), 4),
                "oes_k4_batched": prof(lambda n: core.ConcreteMask(n, a.density, batched_samples=True), 4)}
    fresh()
    peak = matmul_peak(dev)
    syn = synflow_timing(net, z, a.density, a.synflow_rounds) if a.synflow_rounds > 0 else None
    # useful FLOPs: a batched pass does the work of its loop (the counter miscounts vmap's grouped convs)
    useful = {n: p[0] for n, p in profiles.items()}
    useful["oes_k4_batched"] = useful["oes_k4_loop"]
    for n, flops in useful.items():
        if n in profiles:
            _, saved, cuda_peak = profiles[n]
            res[n].update({"saved_for_backward_MB": saved / 2 ** 20,
                           "cuda_peak_MB": cuda_peak / 2 ** 20 if cuda_peak is not None else None})
        res[n]["flops_per_step"] = flops   # forward + backward conv/matmul FLOPs of one step
        if flops:
            res[n]["achieved_flops"] = flops / res[n]["s_per_step"]
            res[n]["fraction_of_matmul_peak"] = res[n]["achieved_flops"] / peak
    d = res["dense"]["s_per_step"]
    ratios = {"oes_k1_vs_dense": res["oes_k1"]["s_per_step"] / d,
              "oes_k4_batched_vs_dense": res["oes_k4_batched"]["s_per_step"] / d,
              "oes_k4_batched_vs_loop": res["oes_k4_batched"]["s_per_step"] / res["oes_k4_loop"]["s_per_step"],
              "sparse_vs_dense": res["sparse"]["s_per_step"] / d}
    mri = {}
    for tag in ("full", "cpu_preset"):
        if f"mri_{tag}_dense" in res:
            mri[tag] = {k: res[f"mri_{tag}_{k}"]["s_per_step"] for k in ("dense", "sparse", "oes_k1")}
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    out = {
        "benchmark": "core_speed", "quick": a.quick, "config": vars(a),
        "net": {"generator": GeneratorConfig.oes(levels=a.levels, width=a.width).to_dict(),
                "parameters": count_parameters(base[0]), "image": [3, a.size, a.size]},
        "density": a.density, "sparsity": 1 - a.density, "seed": 0,
        "machine": {"platform": platform.platform(), "processor": dev_name, "cpu_count": os.cpu_count(),
                    "usable_cores": runtime.usable_cores(), "loadavg": list(os.getloadavg())},
        "device": str(dev), "device_name": dev_name, "threads": threads, "versions": versions(),
        "timing": "process CPU time (1-thread work, robust to a shared box)" if use_cpu_time else "wall, synchronised",
        "matmul_peak_flops": peak, "ratios": ratios, "goals": GOALS,
        "mri_230x180_s_per_step": mri, "synflow": syn, "cases": res,
        "wall_time_s": time.perf_counter() - t_start,
    }
    print(f"\nnet {out['net']['parameters']:,} params, {a.size}x{a.size} RGB, device {dev} ({dev_name}), "
          f"threads {threads}, {a.steps} timed steps x {a.repeats} interleaved repeats; "
          f"ratios from {'CPU' if use_cpu_time else 'wall'} time")
    print(f"{'case':<26} {'s/step':>8} {'wall':>8} {'x dense':>8} {'GFLOP/s':>8} {'%peak':>6} {'saved MB':>9}")
    for n in names:
        r = res[n]
        gf = r.get("achieved_flops")
        print(f"{n:<26} {r['s_per_step']:8.4f} {r['s_per_step_wall']:8.4f} {r['s_per_step'] / d:8.2f} "
              f"{gf / 1e9 if gf else float('nan'):8.2f} "
              f"{100 * r['fraction_of_matmul_peak'] if gf else float('nan'):6.1f} "
              f"{r.get('saved_for_backward_MB', float('nan')):9.1f}")
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s")
    print("ratios (goal):")
    for k, v in ratios.items():
        print(f"  {k:<26} {v:6.3f}  (<= {GOALS[k]})  {'ok' if v <= GOALS[k] else 'MISSED'}")
    if syn:
        print(f"SynFlow {syn['rounds']} rounds: {syn['new_s']:.1f} s CPU (former implementation: "
              f"{syn['former_s_per_round']:.2f} s/round x {syn['rounds']} = {syn['former_s_estimate']:.0f} s; "
              f"{syn['speedup']:.1f}x faster)")
    for tag, v in mri.items():
        print(f"MRI net 230x180 (8 coils, grid 256x192, levels 5, {tag}): dense {v['dense']:.3f} s/step, "
              f"Sparse-DIP {v['sparse']:.3f} s/step, OES mask K=1 {v['oes_k1']:.3f} s/step")
    path = Path(a.out) if a.out else (Path(__file__).resolve().parent / "results"
                                      / f"core_speed_{dev.type}{'_quick' if a.quick else ''}.json")
    write_json(path, out)   # atomic; creates the folder
    print(f"wrote {path} ({out['wall_time_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
