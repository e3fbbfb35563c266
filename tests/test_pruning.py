"""Pruning at initialisation: exact densities, scores against independent hand calculations,
layer-collapse detection."""
import math

import pytest
import torch
import torch.nn as nn

import operators as O
from operators.stacked import Stacked
from mri_oes import core, methods, pruning
from mri_oes.generators import GeneratorConfig
from mri_oes.masks import Mask

TINY = GeneratorConfig.oes(levels=3, width=0.25)


def _tiny_linear(seed=0):
    """z (1, 3, 2, 2) → 1×1 conv 3→4 → 1×1 conv 4→2, no bias: a 2-layer linear net per pixel."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.Conv2d(4, 2, 1, bias=False))
    z = torch.randn(1, 3, 2, 2)
    A = O.Denoise((2, 2, 2))
    y = torch.randn(1, 2, 2, 2)
    return net, z, A, y


def _flat_loss(net, z, A, y):
    """The DIP loss as a function of the flattened weights, written without the package's code."""
    w1s, w2s = net[0].weight.shape, net[1].weight.shape
    n1 = net[0].weight.numel()

    def f(theta):
        W1 = theta[:n1].reshape(w1s)[:, :, 0, 0]
        W2 = theta[n1:].reshape(w2s)[:, :, 0, 0]
        x = torch.einsum("oc,bchw->bohw", W2, torch.einsum("ic,bchw->bihw", W1, z))
        return ((x - y) ** 2).mean()

    theta = torch.cat([net[0].weight.detach().reshape(-1), net[1].weight.detach().reshape(-1)])
    return f, theta, n1


def _flat(scores):
    return torch.cat([scores["0.weight"].reshape(-1), scores["1.weight"].reshape(-1)]).double()


def test_snip_matches_hand_gradient():
    net, z, A, y = _tiny_linear()
    f, theta, _ = _flat_loss(net, z, A, y)
    g = torch.autograd.functional.jacobian(f, theta)
    expected = (theta * g).abs()
    got = _flat(pruning.snip_scores(net, z, A, y))
    assert torch.allclose(got, expected.double(), rtol=1e-5, atol=1e-8)


def test_grasp_matches_full_hessian():
    net, z, A, y = _tiny_linear(1)
    f, theta, _ = _flat_loss(net, z, A, y)
    g = torch.autograd.functional.jacobian(f, theta)
    H = torch.autograd.functional.hessian(f, theta)
    S = -theta * (H @ g)               # the paper's score; GraSP removes the highest
    got = _flat(pruning.grasp_scores(net, z, A, y))
    assert torch.allclose(got, S.double(), rtol=1e-4, atol=1e-9)
    # the keep-score is -S: the kept set is the lowest S
    keep = _flat({k: v.double() for k, v in pruning.pai_scores("grasp", net, z, A, y).items()})
    assert torch.allclose(keep, -S.double(), rtol=1e-4, atol=1e-9)
    m = pruning.prune_at_init("grasp", net, z, A, y, 0.5)
    kept = _flat({k: v.double() for k, v in m.keep.items()}).bool()
    assert S[kept].max() <= S[~kept].min() + 1e-12


def test_synflow_matches_hand_formula():
    net, z, A, y = _tiny_linear(2)
    W1 = net[0].weight.detach()[:, :, 0, 0].abs().double()   # (4, 3)
    W2 = net[1].weight.detach()[:, :, 0, 0].abs().double()   # (2, 4)
    P = 2 * 2                                                  # pixels of the all-ones input
    # R = P · 1ᵀ W2 W1 1  →  ∂R/∂W1_ic = P (1ᵀW2)_i ; ∂R/∂W2_oi = P (W1 1)_i
    s1 = W1 * (P * W2.sum(0)[:, None])
    s2 = W2 * (P * W1.sum(1)[None, :])
    got = pruning.synflow_scores(net, z.shape)
    assert torch.allclose(got["0.weight"][:, :, 0, 0], s1)
    assert torch.allclose(got["1.weight"][:, :, 0, 0], s2)
    # iterative version with keep: pruned weights contribute nothing
    keep = {"0.weight": torch.ones(4, 3, 1, 1, dtype=torch.bool), "1.weight": torch.ones(2, 4, 1, 1, dtype=torch.bool)}
    keep["1.weight"][:, 0] = False
    got = pruning.synflow_scores(net, z.shape, keep=keep)
    W2m = W2.clone()
    W2m[:, 0] = 0
    assert torch.allclose(got["0.weight"][:, :, 0, 0], W1 * (P * W2m.sum(0)[:, None]))


def test_synflow_sigmoid_and_bn_handled_and_net_untouched():
    net, z, _ = methods.setup_generator(TINY, (32, 32), 0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = pruning.synflow_scores(net, z.shape)
    assert all(torch.isfinite(v).all() and (v >= 0).all() for v in s.values())
    assert sum(float((v > 0).sum()) for v in s.values()) > 0.9 * sum(v.numel() for v in s.values())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.sigmoid is True


@pytest.mark.parametrize("method", pruning.PAI_METHODS)
@pytest.mark.parametrize("density", [0.3, 0.05])
def test_every_pai_method_exact_density(method, density):
    img = torch.rand(1, 3, 32, 32)
    A = O.Denoise((3, 32, 32))
    net, z, seeds = methods.setup_generator(TINY, (32, 32), 0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = pruning.prune_at_init(method, net, z, A, img, density, seed=3, synflow_rounds=5,
                              meta={"generator": TINY.to_dict(), **seeds})
    assert m.n_kept == round(density * m.n_total)
    assert m.meta["method"] == method and "collapse" in m.meta
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "theta_in/BN changed"


def test_random_mask_is_seeded():
    net, z, _ = methods.setup_generator(TINY, (32, 32), 0)
    A, y = O.Denoise((3, 32, 32)), torch.rand(1, 3, 32, 32)
    a = pruning.prune_at_init("random", net, z, A, y, 0.2, seed=1)
    b = pruning.prune_at_init("random", net, z, A, y, 0.2, seed=1)
    c = pruning.prune_at_init("random", net, z, A, y, 0.2, seed=2)
    assert all(torch.equal(a.keep[k], b.keep[k]) for k in a.keep)
    assert any(not torch.equal(a.keep[k], c.keep[k]) for k in a.keep)


def test_collapse_detected_for_magnitude_at_very_low_density(capsys):
    net, z, _ = methods.setup_generator(TINY, (32, 32), 0)
    A, y = O.Denoise((3, 32, 32)), torch.rand(1, 3, 32, 32)
    with pytest.warns(UserWarning, match="LAYER COLLAPSE"):
        m = pruning.prune_at_init("magnitude", net, z, A, y, 0.002)
    assert m.meta["collapse"]["collapsed"] and m.meta["collapse"]["empty_layers"]
    assert "layer collapse" in capsys.readouterr().err
    # an artificially emptied layer is caught too
    keep = {k: v.clone() for k, v in m.keep.items()}
    dense = Mask({k: torch.ones_like(v) for k, v in keep.items()}, {"scope": "weights"})
    dense.keep["head.weight"][:] = False
    rep = pruning.report_collapse(net, z, A, dense)
    assert rep["collapsed"] and "head.weight" in rep["empty_layers"]


def test_min_layer_density_prevents_empty_layers():
    net, z, _ = methods.setup_generator(TINY, (32, 32), 0)
    A, y = O.Denoise((3, 32, 32)), torch.rand(1, 3, 32, 32)
    m = pruning.prune_at_init("magnitude", net, z, A, y, 0.01, min_layer_density=0.005)
    assert not m.collapsed_layers()


def test_pai_mask_trains_through_the_core():
    img = torch.rand(1, 3, 32, 32)
    A = O.Denoise((3, 32, 32))
    net, z, _ = methods.setup_generator(TINY, (32, 32), 0)
    m = pruning.prune_at_init("snip", net, z, A, img, 0.3)
    w0 = {k: p.detach().clone() for k, p in net.named_parameters()}
    res = methods.train_generator(net, z, A, img, steps=12, mask=m, log_every=4)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    for k, keep in m.keep.items():   # pruned weights never moved
        p = dict(net.named_parameters())[k].detach()
        assert torch.equal(p[~keep], w0[k][~keep])


def test_stacked_operator_adjoint_and_layout():
    ops = [O.Denoise((3, 8, 8)), O.Inpaint((3, 8, 8), keep_fraction=0.5, seed=1),
           O.SuperResolution((3, 8, 8), factor=2)]
    for shared in (False, True):
        S = Stacked(ops, shared_input=shared)
        x = torch.randn(2, *S.in_shape, dtype=torch.float64)
        y = torch.randn(2, *S.out_shape, dtype=torch.float64)
        lhs = (S(x) * y).sum()
        rhs = (x * S.adjoint(y)).sum()
        assert math.isclose(float(lhs), float(rhs), rel_tol=1e-10)
    S = Stacked(ops)
    x = torch.randn(1, 3, 3, 8, 8)
    ref = torch.cat([op(x[:, i]).reshape(1, -1) for i, op in enumerate(ops)], 1)
    assert torch.equal(S(x), ref)


# ------------------------------------------------------------------- maps-free MRI + ConvDecoder
def _coil_op(coils=3, H=32, W=32):
    from operators.mri_coils import CoilImagesMRI
    line = torch.rand(W, generator=torch.Generator().manual_seed(0)) > 0.6
    line[W // 2 - 3: W // 2 + 3] = True
    return CoilImagesMRI(line, coils=coils, shape=(H, W))


def test_coil_images_operator_exact_adjoint_and_layout():
    A = _coil_op()
    g = torch.Generator().manual_seed(1)
    x = torch.complex(torch.randn(2, *A.in_shape, generator=g, dtype=torch.float64),
                      torch.randn(2, *A.in_shape, generator=g, dtype=torch.float64))
    y = torch.complex(torch.randn(2, *A.out_shape, generator=g, dtype=torch.float64),
                      torch.randn(2, *A.out_shape, generator=g, dtype=torch.float64))
    lhs = torch.vdot(A(x).reshape(-1), y.reshape(-1))
    rhs = torch.vdot(x.reshape(-1), A.adjoint(y).reshape(-1))
    assert torch.allclose(lhs, rhs, rtol=1e-10)
    out = torch.arange(6 * 4).float().reshape(1, 6, 2, 2).expand(1, 6, 2, 2)
    from operators.mri_coils import CoilImagesMRI
    C = CoilImagesMRI(torch.ones(2, 2), coils=3)
    xc = C.from_network(out)
    assert torch.equal(xc[0, 1].real, out[0, 2]) and torch.equal(xc[0, 1].imag, out[0, 3])


def test_convdecoder_trains_maps_free():
    coils = 3
    A = _coil_op(coils)
    cfg = GeneratorConfig.convdecoder(out_channels=2 * coils, layers=3, width=16, input_size=(4, 4))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    img = torch.exp(-(xx ** 2 + yy ** 2) * 3)
    sens = torch.stack([torch.exp(1j * (c + 1) * xx) * (1 + 0.3 * c * yy) for c in range(coils)])
    x_true = (sens * img).to(torch.complex64)[None]
    y = A(x_true)
    net, z, _ = methods.setup_generator(cfg, (32, 32), 0)
    assert net(z).shape[1] == 2 * coils
    res = methods.train_generator(net, z, A, y, steps=40, lr=1e-2, log_every=10)
    losses = [h["data_loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0], losses


def test_gp_dip_is_sgld_noise_in_train_weights():
    """GP-DIP (Cheng et al. 2019) = TrainWeights(sgld_std): N(0, sgld_std²) added after each step;
    with lr = 0 the only change is that noise, pruned weights stay put."""
    net, z, _ = methods.setup_generator(TINY, (32, 32), 0)
    A, y = O.Denoise((3, 32, 32)), torch.rand(1, 3, 32, 32)
    m = pruning.prune_at_init("magnitude", net, z, A, y, 0.5)
    w0 = {k: p.detach().clone() for k, p in net.named_parameters()}
    methods.train_generator(net, z, A, y, steps=4, lr=0.0, mask=m, sgld_std=0.02, log_every=4)
    d = net.encoder[1][4][1].weight.detach() - w0["encoder.1.4.1.weight"]
    keep = m.keep["encoder.1.4.1.weight"]
    assert abs(float(d[keep].std()) / (0.02 * 2) - 1) < 0.1       # 4 steps: std 0.02·√4
    assert torch.equal(d[~keep], torch.zeros_like(d[~keep]))
