"""The maps-free classical fallback (SPIRiT on the coil images) and the rule that chooses it.

* :class:`operators.mri_coils.SpiritCoilImagesMRI` has an exact adjoint, and its image-domain kernels
  are the SPIRiT k-space kernels (circular correlation in k-space);
* the calibrated kernels are consistent with the scan they came from (``(G - I) x`` small on the fully
  sampled coil images, not on unrelated images);
* the maps / maps-free rule never reads the reference (corrupted reference and unmeasured k-space ->
  the same choice, held-out errors and images) and is recorded;
* (tests/test_mri_defaults.py) brain8 folded into 70 % of its phase-encode FOV at 8x stays above
  zero-filled with the rule on (slow).
"""
import numpy as np
import pytest
import torch

from mri_oes import datasets
from mri_oes.mri import baselines as B
from mri_oes.mri import espirit as E
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem, ifft2c_np
from operators.mri import fft2c
from operators.mri_coils import SpiritCoilImagesMRI

METHODS = ("sense", "l1-wavelet")




def _brain():
    return load_slice(datasets.bundled_brain(), 0)


def test_spirit_operator_shapes_and_image():
    """(Its adjoint: tests/test_operators.py's parametrised adjoint test.)"""
    g = torch.randn(3, 3, 10, 12, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(12, generator=torch.Generator().manual_seed(1)) > 0.5
    op = SpiritCoilImagesMRI(mask, g, mu=0.7)
    assert op.in_shape == (3, 10, 12) and op.out_shape == (2, 3, 10, 12)
    x = torch.randn(3, 10, 12, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    assert op.coil_images(x) is x
    np.testing.assert_allclose(op.combine(x.numpy()), op.combine(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(op.combine(x).numpy(), np.sqrt((np.abs(x.numpy()) ** 2).sum(0)), rtol=1e-6)


def test_image_kernels_are_the_kspace_correlation():
    rng = np.random.default_rng(0)
    C, H, W, kh, kw = 3, 12, 10, 5, 3
    w = rng.standard_normal((C, C, kh, kw)) + 1j * rng.standard_normal((C, C, kh, kw))
    x = rng.standard_normal((C, H, W)) + 1j * rng.standard_normal((C, H, W))
    k = fft2c(torch.from_numpy(x)).numpy()
    direct = np.zeros_like(k)
    for i in range(kh):
        for j in range(kw):   # (G k)_c(p) = Σ_{d,o} w[c,d,o] k_d(p + o), circular
            direct += np.einsum("cd,dhw->chw", w[:, :, i, j],
                                np.roll(k, (-(i - kh // 2), -(j - kw // 2)), axis=(1, 2)))
    g = E.spirit_image_kernels(w, (H, W)).astype(np.complex128)
    via_image = fft2c(torch.from_numpy(np.einsum("cdhw,dhw->chw", g, x))).numpy()
    assert np.abs(via_image - direct).max() <= 1e-5 * np.abs(direct).max()


def test_kernels_fit_the_scan_they_were_calibrated_on():
    sl = _brain()
    p = build_problem(sl, 4, "equispaced", seed=0)
    op = B.spirit_operator(p)
    x = torch.from_numpy((ifft2c_np(sl.kspace) * p.scale).astype(np.complex64))
    res = float(op._gmi(x[None]).norm() / x.norm())
    other = x[torch.roll(torch.arange(x.shape[0]), 1)]   # coils relabelled: not this scan's coil geometry
    assert res < 0.3 < float(op._gmi(other[None]).norm() / other.norm())
    rec = p.info["espirit"].get("maps_free")
    assert rec is None   # spirit_operator alone decides nothing


def _untimed(d):
    return {k: _untimed(v) if isinstance(v, dict) else v for k, v in d.items() if k != "time_s"}


def test_maps_free_rule_never_reads_the_reference(monkeypatch):
    monkeypatch.setattr(B, "MAPS_FREE", "holdout")
    sl = _brain()
    p = build_problem(sl, 4, "equispaced", seed=0)
    images = {m: B.run_baseline(p, m, max_iter=20) for m in METHODS}
    rng = np.random.default_rng(1)
    sl.reference = rng.random(sl.reference.shape).astype(np.float32) * 1e3
    unmeasured = ~(p.mask > 0)
    noise = (rng.standard_normal(sl.kspace.shape) + 1j * rng.standard_normal(sl.kspace.shape)) * 1e3
    sl.kspace = np.where(unmeasured[None, None, :], noise, sl.kspace).astype(np.complex64)
    q = build_problem(sl, 4, "equispaced", seed=0)
    again = {m: B.run_baseline(q, m, max_iter=20) for m in METHODS}
    a, b = p.info["espirit"]["maps_free"], q.info["espirit"]["maps_free"]
    assert _untimed(a) == _untimed(b)
    assert a["chosen"] in ("maps", "maps-free") and set(a["holdout_error"]) == {"maps", "maps-free"}
    assert a["spirit"]["kernel_shape"] and p.describe()["espirit"]["coil_operator"]
    for m in METHODS:
        np.testing.assert_array_equal(again[m], images[m])


def test_forced_choices_and_the_image_convention():
    p = build_problem(_brain(), 4, "equispaced", seed=0)
    op = B.coil_operator(p, maps_free=True)
    assert isinstance(op, SpiritCoilImagesMRI) and p.info["espirit"]["maps_free"]["chosen"] == "maps-free"
    x = B.sense(p, max_iter=20)
    assert np.isrealobj(x) and x.shape == p.image_shape and (x >= 0).all()   # RSS of the coil images
    zf = p.metrics(B.zero_filled(p))
    assert p.metrics(x)["psnr"] > zf["psnr"]
    q = build_problem(_brain(), 4, "equispaced", seed=0)
    assert B.coil_operator(q, maps_free=False) is B.classical_operator(q)
    assert q.info["espirit"]["maps_free"]["chosen"] == "maps"


def test_the_operators_carry_what_the_classical_solvers_need():
    """Maps, plain coil images and SPIRiT share one interface (baselines has no per-class dispatch):
    ``with_mask`` (the held-out rule's training-lines operator), ``augment`` (the right-hand side),
    ``joint_sparse`` and ``l2`` (L1-wavelet's prox and ℓ2 term)."""
    from operators.mri import MultiCoilMRI
    from operators.mri_coils import CoilImagesMRI
    gen = torch.Generator().manual_seed(0)
    C, H, W = 3, 8, 10
    maps = torch.randn(C, H, W, dtype=torch.complex64, generator=gen)
    g = torch.randn(C, C, H, W, dtype=torch.complex64, generator=gen)
    mask, train = np.ones(W, np.float32), np.zeros(W, np.float32)
    train[::2] = 1
    y = torch.randn(C, H, W, dtype=torch.complex64, generator=gen)
    ops = {"maps": MultiCoilMRI(maps, mask), "coil images": CoilImagesMRI(mask, C, (H, W)),
           "spirit": SpiritCoilImagesMRI(mask, g, mu=0.7, l2=0.03)}
    for name, op in ops.items():
        t = op.with_mask(train)
        assert type(t) is type(op) and t.in_shape == op.in_shape and t.out_shape == op.out_shape, name
        assert torch.equal(t.mask[0, 0], torch.from_numpy(train)) and t.l2 == op.l2, name
        rhs = op.augment(y)
        assert tuple(rhs.shape) == op.out_shape, name
        x = op.adjoint(rhs)
        assert tuple(x.shape) == op.in_shape, name
    assert ops["spirit"].with_mask(train).mu == 0.7 and torch.equal(ops["spirit"].with_mask(train).kernels, g)
    assert (ops["maps"].joint_sparse, ops["coil images"].joint_sparse, ops["spirit"].joint_sparse) == (False, True, True)
    assert (ops["maps"].l2, ops["spirit"].l2) == (0.0, 0.03)


@pytest.mark.parametrize("generator", ["deep-decoder", "hourglass"])
def test_networks_fit_maps_free_coil_images(generator):
    """On the maps-free coil-image operator a network outputs 2·coils channels (real, imaginary per coil)
    through the one runner; the named configurations gave every MRI generator 2 channels, and the fit
    refused ("the generator must output 2·coils")."""
    from mri_oes.problem import Problem
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run
    from operators.mri_coils import CoilImagesMRI
    torch.manual_seed(0)
    C, H, W = 3, 16, 16
    lines = torch.zeros(W)
    lines[::2] = 1
    lines[6:10] = 1
    op = CoilImagesMRI(lines, C, (H, W))
    y = op(torch.randn(1, C, H, W, dtype=torch.complex64, generator=torch.Generator().manual_seed(1)))[0]
    net = ({"method": "deep-decoder", "layers": 3, "channels": 16} if generator == "deep-decoder"
           else {"method": "dip", "levels": 2, "width": 0.125})
    rec = run(Problem(op, y, (H, W), kind="mri"), Recipe().override(steps=80, lr=1e-2, log_every=10, **net), None,
              save_outputs=False)
    res = rec["_result"]
    assert rec["generator"]["out_channels"] == 2 * C and tuple(res.output.shape) == (1, C, H, W)
    losses = [h["data_loss"] for h in res.history if "data_loss" in h]
    assert losses[-1] < 0.5 * losses[0]


def test_a_network_fits_through_the_spirit_operator():
    """A generator outputs (re, im) per coil for the SPIRiT operator (as for the plain coil images); fitted
    through it on the bundled brain at 4x (a small dense DIP, 40 steps) its loss -- data and calibration
    consistency -- falls."""
    from mri_oes.problem import Problem
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run
    p = build_problem(_brain(), 4, "equispaced", seed=0)
    op = B.spirit_operator(p)
    C = p.maps.shape[0]
    assert op.network_channels == 2 * C
    out = torch.randn(1, 2 * C, *p.image_shape, generator=torch.Generator().manual_seed(0))
    x = op.from_network(out)
    assert x.shape == (1, C, *p.image_shape) and torch.equal(x[:, 1], torch.complex(out[:, 2], out[:, 3]))
    gp = Problem(op, op.augment(p.y), tuple(p.image_shape), kind="mri", info={"kind": "mri", "task": "mri"})
    rc = Recipe().override(method="dip", steps=40, log_every=10, levels=2, width=0.125, seed=0)
    res = run(gp, rc, None, save_outputs=False, command="test")["_result"]
    losses = [h["data_loss"] for h in res.history]
    assert res.output.shape == (1, C, *p.image_shape) and losses[-1] < 0.5 * losses[0]
