"""The speed paths compute what the plain paths compute: K Concrete samples in one batched
pass vs the K-loop, the batched pass's gradients vs per-network ones, the fused OES mask /
KL nodes vs their textbook expressions, SynFlow's one-pixel scoring and top-k vs the full-size pass and
``topk_mask``; plus the thread rule. Small nets, a few steps: fast."""
import copy
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import operators as O
from mri_oes import core, methods, pruning, runtime
from mri_oes.vmap import vmap_forward
from mri_oes.errors import UserError
from mri_oes.generators import GeneratorConfig
from mri_oes.masks import maskable_parameters, topk_mask

CFG = GeneratorConfig.oes(levels=3, width=0.25)
HW = (32, 32)


def _problem(seed):
    net, z, _ = methods.setup_generator(CFG, HW, seed)
    y = torch.rand((1, 3, *HW), generator=torch.Generator().manual_seed(100 + seed))
    return net, z, O.Denoise((3, *HW)), y


def _rand_mask(net, density, seed):
    g = torch.Generator().manual_seed(seed)
    return topk_mask({k: torch.rand(p.shape, generator=g) for k, p in maskable_parameters(net).items()},
                     density, seed=seed)


def _concrete_step(net, z, A, y, batched_samples, K, seed=5):
    """Loss, logit gradients and BN buffers after one OES step computed as core.fit does."""
    net = copy.deepcopy(net).train()
    param = core.ConcreteMask(net, 0.1, seed=seed, batched_samples=batched_samples)
    dl = 0.0
    if batched_samples:
        for out in param.forward_samples(net, z, K):
            dl = dl + core.data_loss(A(A.from_network(out)), y) / K
    else:
        for _ in range(K):
            dl = dl + core.data_loss(A(A.from_network(core.generate(net, z, param.weights()))), y) / K
    loss = dl + param.penalty()
    loss.backward()
    grads = {k: v.grad.clone() for k, v in param.logits.items()}
    return float(loss.detach()), grads, {k: b.clone() for k, b in net.named_buffers()}


def test_batched_concrete_samples_equal_the_loop():
    net, z, A, y = _problem(0)
    for p in net.parameters():                       # logits start at 0: make the step non-trivial
        p.data.mul_(1.5)
    la, ga, ba = _concrete_step(net, z, A, y, False, 3)
    lb, gb, bb = _concrete_step(net, z, A, y, True, 3)
    assert lb == pytest.approx(la, rel=1e-5)
    scale = max(float(g.abs().max()) for g in ga.values())
    assert scale > 0
    for k in ga:
        assert torch.allclose(gb[k], ga[k], rtol=1e-4, atol=1e-5 * scale), k
    # BN running statistics: K sequential momentum updates, as the loop
    for k in ba:
        assert torch.allclose(bb[k].double(), ba[k].double(), rtol=1e-5, atol=1e-6), k
    # a different seed draws different masks (the comparison above is not vacuous)
    lc, _, _ = _concrete_step(net, z, A, y, True, 3, seed=6)
    assert lc != pytest.approx(la, rel=1e-6)


def test_fit_with_batched_samples_follows_the_loop():
    net, z, A, y = _problem(1)
    net, z, y = net.double(), z.double(), y.double()   # float64: no Adam sign-flip drift (see below)
    hist = {}
    for bs in (False, True):
        n = copy.deepcopy(net)
        param = core.ConcreteMask(n, 0.1, seed=3, batched_samples=bs)
        res = core.fit(n, z, A, y, param, steps=3, samples=4, log_every=1)
        hist[bs] = ([h["loss"] for h in res.history], param.probabilities())
    assert hist[True][0] == pytest.approx(hist[False][0], rel=1e-10)
    for k in hist[False][1]:
        assert torch.allclose(hist[True][1][k], hist[False][1][k], atol=1e-10)


def test_fused_concrete_weight_and_kl_match_textbook_formulas():
    torch.manual_seed(0)
    theta = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    v = (torch.randn(5, 4, 3, 3, dtype=torch.float64) * 2).requires_grad_(True)
    u = torch.rand(2, 5, 4, 3, 3, dtype=torch.float64).clamp(1e-7, 1 - 1e-7)
    logistic = torch.log(u) - torch.log1p(-u)
    w = core._concrete_weight(theta, v, torch.logit(u, eps=1e-7), 0.2)
    ref = theta * torch.sigmoid((v + logistic) / 0.2)
    assert torch.allclose(w, ref, rtol=1e-10)
    g_out = torch.randn_like(ref)
    (gv,) = torch.autograd.grad((w * g_out).sum(), v)
    (rv,) = torch.autograd.grad((ref * g_out).sum(), v)
    assert torch.allclose(gv, rv, rtol=1e-8, atol=1e-12)
    p0 = 0.05
    kl = core._ConcreteKL.apply(v, p0)
    p = torch.sigmoid(v)
    ref_kl = (p * (nn.functional.logsigmoid(v) - math.log(p0))
              + (1 - p) * (nn.functional.logsigmoid(-v) - math.log(1 - p0))).sum()
    assert float(kl.detach()) == pytest.approx(float(ref_kl.detach()), rel=1e-10)
    assert torch.allclose(torch.autograd.grad(kl, v)[0], torch.autograd.grad(ref_kl, v)[0], rtol=1e-8)


def test_vmap_forward_gradients_equal_per_network_gradients():
    probs = [_problem(s) for s in range(2)]
    names = [k for k, _ in probs[0][0].named_parameters()]
    stacked = {k: torch.stack([dict(p[0].named_parameters())[k].detach() for p in probs]).requires_grad_(True)
               for k in names}
    outs = vmap_forward(probs[0][0], stacked, torch.stack([p[1] for p in probs]), z_batched=True,
                                buffers_b={k: torch.stack([dict(p[0].named_buffers())[k] for p in probs]).clone()
                                           for k, _ in probs[0][0].named_buffers()})
    total = sum(core.data_loss(A(A.from_network(outs[b])), y) for b, (_, _, A, y) in enumerate(probs))
    total.backward()
    for b, (net, z, A, y) in enumerate(probs):
        n = copy.deepcopy(net).train()
        core.data_loss(A(A.from_network(n(z))), y).backward()
        for k, p in n.named_parameters():
            assert torch.allclose(stacked[k].grad[b], p.grad, rtol=1e-4, atol=1e-6), (b, k)


@pytest.mark.parametrize("cfg,hw", [(GeneratorConfig.oes(levels=3, width=0.25), (32, 32)),
                                    (GeneratorConfig.oes(levels=2, width=0.25, mri=True), (20, 28)),
                                    (GeneratorConfig.deep_decoder(layers=3, width=8), (32, 32))])
def test_synflow_one_pixel_scores_equal_full_size(cfg, hw):
    net, z, _ = methods.setup_generator(cfg, hw, 0)
    fast = pruning._SynFlowScorer(net, z.shape)
    assert fast.reduced is not None
    full = pruning._SynFlowScorer(net, z.shape)
    full.reduced = None
    names = list(maskable_parameters(net))
    keep = _rand_mask(net, 0.3, 0).keep
    for kp in (None, keep):
        a, b = full.scores(names, kp), fast.scores(names, kp)
        for k in names:
            assert torch.allclose(b[k], a[k], rtol=1e-10, atol=0), k
    assert sum(float((v > 0).sum()) for v in a.values()) > 0


def test_synflow_zero_padded_net_falls_back_to_full_size():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    sc = pruning._SynFlowScorer(net, (1, 3, 8, 8))
    assert sc.reduced is None
    s = pruning.synflow_scores(net, (1, 3, 8, 8))
    assert all((v >= 0).all() for v in s.values())


def test_synflow_topk_equals_topk_mask_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.randint(0, 5, (40, 7), generator=g).double(),
              "b": torch.randint(0, 5, (13,), generator=g).double()}
    scores["a"][:3] = -1.0
    for density in (0.05, 0.3, 0.5, 0.77, 1.0):
        for seed in (0, 4):
            ref = topk_mask(scores, density, seed=seed)
            got = pruning._synflow_topk(scores, density, seed)
            assert all(torch.equal(ref.keep[k], got.keep[k]) for k in scores), (density, seed)


def test_configure_threads_rule(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
        assert runtime.default_threads() == 1
        monkeypatch.setattr(runtime, "usable_cores", lambda: 32)
        assert runtime.default_threads() == 8
        monkeypatch.setattr(runtime, "usable_cores", lambda: 4)
        assert runtime.default_threads() == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert runtime.default_threads() == 3
        assert runtime.configure_threads(2) == 2 == torch.get_num_threads()
        with pytest.raises(UserError, match="--threads"):
            runtime.configure_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_threads_for_tasks_splits_idle_cores_between_pending_tasks():
    assert runtime.threads_for_tasks(1, cores=2, load=0.1) == 2      # a lone slice on an idle box
    assert runtime.threads_for_tasks(1, cores=2, load=1.2) == 1      # one core busy elsewhere
    assert runtime.threads_for_tasks(1, cores=2, load=7.0) == 1      # loaded box: never below 1
    assert runtime.threads_for_tasks(2, cores=2, load=0.0) == 1
    assert runtime.threads_for_tasks(3, cores=16, load=0.0) == 5
    assert runtime.threads_for_tasks(1, cores=64, load=0.0) == runtime.MAX_DEFAULT_THREADS


_FAULTS_SCRIPT = """
import resource, torch
from mri_oes import runtime
state = runtime.tune_allocator()
torch.manual_seed(0); torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.BatchNorm2d(32),
                          torch.nn.Conv2d(32, 32, 3, padding=1))
z = torch.randn(1, 32, 256, 256)                       # 8 MiB activations
opt = torch.optim.Adam(net.parameters())
def step():
    opt.zero_grad(); net(z).square().mean().backward(); opt.step()
step()                                                  # first step: the heap grows (faults either way)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):                                     # untuned faults grow per step; tuned stay at the
                                                        # few thousand of thread start-up (3 steps: too close)
    step()
print(state, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt tuning is glibc (Linux) only")
def test_tuned_allocator_stops_page_faulting_freed_blocks():
    """Training steps of a small conv net on 8 MiB activations: glibc's default gives freed memory
    back to the kernel and page-faults it in again every step; tuned, the steps reuse the heap."""
    def run(env_value):
        env = {k: v for k, v in os.environ.items() if k != "MRI_OES_MALLOC"}
        if env_value:
            env["MRI_OES_MALLOC"] = env_value
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        return out[0], int(out[1])
    state_sys, faults_sys = run("system")
    state_tuned, faults_tuned = run(None)
    assert state_sys == "system"
    if state_tuned != "tuned":
        pytest.skip("not glibc: no mallopt")
    if faults_sys < 1000:
        pytest.skip(f"the untuned steps barely page-fault here ({faults_sys} faults): nothing to compare")
    assert faults_tuned * 5 < faults_sys, (faults_tuned, faults_sys)


class _MaskMultiply(core.TrainWeights):
    """The textbook Sparse-DIP parametrization: every parameter trained, the network sees
    ``theta * m`` (pruned entries get zero gradient)."""

    def __init__(self, net, mask, sgld_std=0.0, seed=0):
        super().__init__(net, None, sgld_std=sgld_std, seed=seed)
        self.ref_masks = {k: m.to(torch.float64) for k, m in mask.keep.items()}

    def weights(self):
        return {k: self.params[k] * m.to(self.params[k].dtype) for k, m in self.ref_masks.items()}

    def after_step(self, lr):
        if self.sgld_std > 0:
            with torch.no_grad():
                for k, p in maskable_parameters(self.net).items():
                    noise = torch.randn(p.shape, generator=self._gen, dtype=p.dtype)
                    p.add_(noise * self.ref_masks[k].to(p.dtype), alpha=self.sgld_std)


@pytest.mark.parametrize("sgld_std,grad_clip", [(0.0, 0.0), (0.01, 0.05)])
def test_compact_sparse_training_equals_mask_multiply(sgld_std, grad_clip):
    net, z, A, y = _problem(4)
    net, z, y = net.double(), z.double(), y.double()
    mask = _rand_mask(net, 0.2, 4)
    out = {}
    for name, cls in (("compact", core.TrainWeights), ("multiply", _MaskMultiply)):
        n = copy.deepcopy(net)
        param = cls(n, mask, sgld_std=sgld_std, seed=1)
        res = core.fit(n, z, A, y, param, steps=6, log_every=1, grad_clip=grad_clip)
        out[name] = ([h["loss"] for h in res.history], res.output, n)
    assert out["compact"][0] == pytest.approx(out["multiply"][0], rel=1e-10)
    assert torch.allclose(out["compact"][1], out["multiply"][1], atol=1e-10)
    init = maskable_parameters(net)
    for k, p in maskable_parameters(out["compact"][2]).items():
        keep = mask.keep[k]
        assert torch.allclose(p[keep], maskable_parameters(out["multiply"][2])[k][keep], atol=1e-10), k
        assert torch.equal(p[~keep], init[k][~keep]), k          # pruned: untouched


def test_sparse_checkpoint_resume_equals_uninterrupted(tmp_path):
    net0, z, A, y = _problem(5)
    mask = _rand_mask(net0, 0.2, 5)
    full = methods.train_generator(copy.deepcopy(net0), z, A, y, steps=12, mask=mask, seed=2, log_every=3)
    ck = tmp_path / "run.ckpt"

    class Stop(Exception):
        pass

    def crash(row):
        if row["step"] == 9:
            raise Stop
    with pytest.raises(Stop):
        methods.train_generator(copy.deepcopy(net0), z, A, y, steps=12, mask=mask, seed=2, log_every=3,
                                checkpoint=ck, checkpoint_every=6, fingerprint="a", callback=crash)
    resumed = methods.train_generator(copy.deepcopy(net0), z, A, y, steps=12, mask=mask, seed=2, log_every=3,
                                      checkpoint=ck, checkpoint_every=6, fingerprint="a")
    assert resumed.resumed_from == 6
    assert torch.allclose(resumed.output, full.output, atol=1e-6)


def test_bfloat16_generation_is_close_to_float32_and_keeps_masked_weights():
    net, z, A, y = _problem(6)
    with torch.no_grad():
        ref = net(z)
        with core.generation_context("bfloat16", z.device):
            out = net(z).float()
    assert not torch.equal(out, ref)                                   # it did run in bf16
    assert float((out - ref).abs().max()) < 0.05 * float(ref.abs().max())
    # masked weights still replace the parameters through functional_call
    w = {k: torch.zeros_like(p) for k, p in maskable_parameters(net).items()}
    with torch.no_grad(), core.generation_context("bfloat16", z.device):
        masked = core.generate(net, z, w).float()
    assert torch.allclose(masked, core.generate(net, z, w), atol=1e-2)


def test_sparse_training_on_channels_last_parameters():
    """The kept values are written back into non-contiguous (channels_last) parameters correctly."""
    net, z, A, y = _problem(7)
    net, z, y = net.double(), z.double(), y.double()
    mask = _rand_mask(net, 0.3, 7)
    a, b = copy.deepcopy(net), copy.deepcopy(net).to(memory_format=torch.channels_last)
    assert not dict(b.named_parameters())["encoder.0.0.1.weight"].is_contiguous()
    ra = methods.train_generator(a, z, A, y, steps=3, mask=mask, log_every=1)
    rb = methods.train_generator(b, z, A, y, steps=3, mask=mask, log_every=1)
    assert [h["loss"] for h in rb.history] == pytest.approx([h["loss"] for h in ra.history], rel=1e-9)
    init = maskable_parameters(net)
    for k, p in maskable_parameters(b).items():
        assert torch.allclose(p, maskable_parameters(a)[k], atol=1e-9), k
        assert torch.equal(p[~mask.keep[k]], init[k][~mask.keep[k]]), k


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_gemm_path_equals_conv2d(bias, channels_last, monkeypatch):
    """PointwiseConv (the 1×1 convs of the deep decoder, ConvDecoder and the hourglass head) gives
    nn.Conv2d's output and gradients, with masked weights passed through functional_call."""
    from torch.func import functional_call
    from mri_oes import generators
    g = torch.Generator().manual_seed(0)
    conv = generators.PointwiseConv(6, 4, bias=bias).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = (conv.weight.detach() * (torch.rand(conv.weight.shape, generator=g) < 0.5)).requires_grad_(True)
    xs = x.clone().requires_grad_(True)
    up = torch.randn(2, 4, 5, 7, dtype=torch.float64, generator=g)
    gemm_calls = []
    real_linear = torch.nn.functional.linear
    monkeypatch.setattr(generators.F, "linear", lambda *a: gemm_calls.append(1) or real_linear(*a))
    b = conv.bias.detach().clone().requires_grad_(True) if bias else None
    out = functional_call(conv, {"weight": w, **({"bias": b} if bias else {})}, (xs,))
    (out * up).sum().backward()
    assert bool(gemm_calls) == channels_last          # the GEMM path runs exactly on channels_last input
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    w_ref = w.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().contiguous().requires_grad_(True)
    b_ref = b.detach().clone().requires_grad_(True) if bias else None
    ref = torch.nn.functional.conv2d(x_ref, w_ref, b_ref)
    (ref * up).sum().backward()
    assert torch.allclose(out, ref, atol=1e-12)
    assert torch.allclose(w.grad, w_ref.grad, atol=1e-12)
    assert torch.allclose(xs.grad, x_ref.grad, atol=1e-12)
    if bias:
        assert torch.allclose(b.grad, b_ref.grad, atol=1e-12)
