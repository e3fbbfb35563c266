"""Seconds per step, side by side in one run: dense DIP step vs our OES mask step (ConcreteMask through
``core.fit``, ``functional_call``, no copy) vs a re-implementation of the OES authors' approach (deep-copy
the network every step, write ``theta ∘ m̂`` into the copy, forward/backward to the logits).

Default: the exact 3,008,867-parameter OES net on a 256×256 RGB image.

    python benchmarks/mask_step_speed.py --size 256 --steps 5 --device cpu --out bench.json
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import operators as O  # noqa: E402
from mri_oes import core, methods  # noqa: E402
from mri_oes.generators import GeneratorConfig, count_parameters  # noqa: E402
from mri_oes.masks import maskable_parameters  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_fit(net, z, A, y, make_param, steps, dev):
    """Median seconds per step of core.fit: log_every=1 with a callback timestamping every step (no
    evaluate callback, so the record is negligible); the median is robust to other load."""
    stamps = []

    def cb(row):
        _sync(dev)
        stamps.append(time.perf_counter())

    core.fit(net, z, A, y, make_param(), steps=steps + 2, log_every=1, callback=cb)
    diffs = sorted(b - a for a, b in zip(stamps[1:], stamps[2:]))   # drop the first (warm-up) step
    return diffs[len(diffs) // 2]


class DeepCopyOES:
    """The authors' scheme: a fresh deep copy of the network per step with masked weights set as
    plain (non-leaf) tensors, so gradients reach the logits; K = 1, Adam on the logits."""

    def __init__(self, net, density, lr=1e-2, temperature=0.2, lam=1e-9, scope="weights"):
        self.net, self.T, self.lam, self.p0 = net, temperature, lam, density
        self.names = list(maskable_parameters(net, scope))
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
            m = torch.sigmoid((v + torch.log(u) - torch.log1p(-u)) / self.T)
            setattr(mod, pname, w * m)
        loss = core.data_loss(A(A.from_network(net_c(z))), y)
        kl = 0.0
        for v in self.logits.values():
            p = torch.sigmoid(v)
            kl = kl + (p * (nn.functional.logsigmoid(v) - math.log(self.p0))
                       + (1 - p) * (nn.functional.logsigmoid(-v) - math.log(1 - self.p0))).sum()
        (loss + self.lam * kl).backward()
        self.opt.step()
        return float(loss.detach())


def time_deepcopy(net, z, A, y, density, steps, dev):
    d = DeepCopyOES(net, density)
    d.step(z, A, y)  # warm-up
    times = []
    for _ in range(steps):
        _sync(dev)
        t = time.perf_counter()
        d.step(z, A, y)
        _sync(dev)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median reported)")
    ap.add_argument("--out", default="mask_step_speed.json")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cfg = GeneratorConfig.oes(levels=a.levels, width=a.width)
    hw = (a.size, a.size)
    net, z, _ = methods.setup_generator(cfg, hw, 0, device=dev)
    img = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0)).to(dev)
    A = O.Denoise((3, *hw))
    n_params = count_parameters(net)
    state = copy.deepcopy(net.state_dict())

    def dense():
        net.load_state_dict(state)
        for p in net.parameters():
            p.requires_grad_(True)
        return time_fit(net, z, A, img, lambda: core.TrainWeights(net), a.steps, dev)

    def ours():
        net.load_state_dict(state)
        t = time_fit(net, z, A, img, lambda: core.ConcreteMask(net, a.density), a.steps, dev)
        for p in net.parameters():
            p.requires_grad_(True)
        return t

    def deepcopy_():
        net.load_state_dict(state)
        for p in net.parameters():
            p.requires_grad_(False)
        t = time_deepcopy(net, z, A, img, a.density, a.steps, dev)
        for p in net.parameters():
            p.requires_grad_(True)
        return t

    names = ["dense DIP step (TrainWeights, core.fit)",
             "OES mask step (ConcreteMask, core.fit, functional_call)",
             "OES mask step, authors' deep-copy-per-step (re-implementation)"]
    fns = [dense, ours, deepcopy_]
    # interleaved repeats (method order rotates), median over repeats: robust to other load on the box
    samples = {n: [] for n in names}
    for r in range(a.repeats):
        for i in range(len(fns)):
            j = (i + r) % len(fns)
            samples[names[j]].append(fns[j]())
    rows = [(n, sorted(samples[n])[len(samples[n]) // 2]) for n in names]

    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"net: {n_params:,} parameters, image {a.size}x{a.size} RGB, device {dev} ({dev_name}), "
          f"threads {torch.get_num_threads()}, median of {a.steps} timed steps x {a.repeats} interleaved repeats")
    w = max(len(r[0]) for r in rows)
    print(f"{'method':<{w}}  s/step   rel. to dense")
    for name, t in rows:
        print(f"{name:<{w}}  {t:7.4f}  {t / rows[0][1]:6.2f}x")
    out = {"parameters": n_params, "size": a.size, "device": str(dev), "device_name": dev_name,
           "threads": torch.get_num_threads(), "steps": a.steps, "density": a.density,
           "torch": torch.__version__, "repeats": a.repeats, "seconds_per_step": {n: t for n, t in rows}, "samples": samples}
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
