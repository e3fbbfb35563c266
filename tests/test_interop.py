"""Interop adapters: SigPy Linop <-> operator (always), deepinv Physics <-> operator (only where deepinv is
installed: `./install.sh interop`, then `.venv-interop/bin/python -m pytest -q tests/test_interop.py`),
and the shipped adjoint check through every adapter."""
import numpy as np
import pytest
import torch

import operators as O
from mri_oes import methods
from mri_oes.generators import GeneratorConfig
from mri_oes.mri import baselines as B
from operators.testing import AdjointTestError, check_adjoint


def _maps(coils=4, n=16, seed=0):
    import sigpy.mri as mr
    m = mr.birdcage_maps((coils, n, n)).astype(np.complex64)
    return m


def _mask(w, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(w, generator=g) > 0.5
    m[w // 2 - 2: w // 2 + 2] = True
    return m


# --------------------------------------------------------------------------------------------- SigPy
def test_sigpy_sense_linop_equals_our_mri_operator_and_passes_check_adjoint():
    import sigpy.mri as mr
    maps, mask = _maps(), _mask(16)
    w = np.broadcast_to(mask.numpy()[None, :], (16, 16)).astype(np.float32)
    S = O.from_sigpy(mr.linop.Sense(maps, weights=w), name="sigpy-sense")
    ours = O.MultiCoilMRI(torch.from_numpy(maps), mask)
    assert S.in_shape == ours.in_shape and S.out_shape == ours.out_shape and S.name == "sigpy-sense"
    x = torch.randn(3, 16, 16, dtype=torch.complex64)
    assert torch.allclose(S(x), ours(x), atol=1e-5)
    assert torch.allclose(S.adjoint(ours(x)), ours.adjoint(ours(x)), atol=1e-5)
    assert check_adjoint(S, batch=(2, 2)) < 1e-10          # complex128 through SigPy


def test_sigpy_operator_gradients_flow_through_the_linop_adjoint():
    import sigpy.mri as mr
    maps = _maps()
    S = O.from_sigpy(mr.linop.Sense(maps))
    ours = O.MultiCoilMRI(torch.from_numpy(maps), torch.ones(16))
    x = torch.randn(16, 16, dtype=torch.complex64, requires_grad=True)
    S(x).abs().pow(2).sum().backward()
    assert torch.allclose(x.grad, 2 * ours.normal(x.detach()), atol=1e-4)


def test_to_sigpy_normal_is_the_operators_own_and_round_trip_adjoint():
    maps, mask = _maps(), _mask(16)
    ours = O.MultiCoilMRI(torch.from_numpy(maps), mask)
    L = O.to_sigpy(ours)
    x = (np.random.default_rng(0).standard_normal((16, 16)) * (1 + 1j)).astype(np.complex64)
    assert np.allclose(L(x), ours(torch.from_numpy(x)).numpy())
    assert "mri^H mri" in repr(L.N)                        # one call of op.normal, not H * A
    assert np.allclose(L.N(x), L.H(L(x)), atol=1e-5)
    assert check_adjoint(O.from_sigpy(L)) < 1e-10          # ours -> SigPy -> ours


def test_sense_and_l1_wavelet_work_for_a_plugin_operator():
    """The baselines need only forward/adjoint/normal: a SigPy-wrapped plugin gives the same images
    as the built-in MRI operator with the same maps and mask."""
    import sigpy.mri as mr
    maps, mask = _maps(n=32), _mask(32)
    ours = O.MultiCoilMRI(torch.from_numpy(maps), mask)
    w = np.broadcast_to(mask.numpy()[None, :], (32, 32)).astype(np.float32)
    plugin = O.from_sigpy(mr.linop.Sense(maps, weights=w))
    import sigpy as sp
    truth = torch.from_numpy(sp.shepp_logan((32, 32)).astype(np.complex64))
    y = ours(truth)
    a, b = B.sense_operator(ours, y, 0.01, 30), B.sense_operator(plugin, y, 0.01, 30)
    assert np.allclose(a, b, atol=1e-4 * np.abs(a).max())
    err_sense = np.linalg.norm(a - truth.numpy()) / np.linalg.norm(truth.numpy())
    zf = ours.adjoint(y).numpy()
    assert err_sense < 0.8 * np.linalg.norm(zf - truth.numpy()) / np.linalg.norm(truth.numpy())
    l1a, l1b = B.l1_wavelet_operator(ours, y, 1e-3, 30), B.l1_wavelet_operator(plugin, y, 1e-3, 30)
    assert np.linalg.norm(l1a - l1b) < 1e-2 * np.linalg.norm(l1a)   # power-iteration step size is random
    # and a REAL-valued plugin (natural-image blur/inpaint) works with the same code
    inp = O.Inpaint((1, 32, 32), keep_fraction=0.6, seed=0)
    xi = truth.real.abs()[None]
    rec = B.l1_wavelet_operator(inp, inp(xi), 1e-3, 50)
    assert rec.shape == (1, 32, 32) and np.isrealobj(rec)
    obs = inp.mask.numpy() > 0                              # data consistency on the observed pixels
    assert np.isfinite(rec).all() and np.abs(rec - xi.numpy())[obs].max() < 0.05


def test_sigpy_operator_trains_in_fit():
    import sigpy as sp
    blur = sp.linop.ConvolveFilter((1, 16, 16), np.ones((1, 3, 3)) / 9, mode="full")
    # 'full' convolution: out (1, 18, 18); a real Linop
    A = O.from_sigpy(blur, dtype=torch.float32, name="sigpy-blur")
    assert check_adjoint(A) < 1e-10
    x = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = A(x)
    net, z, _ = methods.setup_generator(GeneratorConfig.deep_decoder(out_channels=1, layers=2, width=8),
                                        (16, 16), seed=0)
    res = methods.train_generator(net, z, A, y, steps=15, lr=1e-2, log_every=1)
    losses = [h["data_loss"] for h in res.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


# -------------------------------------------------------------------------------------------- deepinv
def _dinv():
    return pytest.importorskip("deepinv", reason="deepinv not installed (./install.sh interop)")


def test_from_deepinv_adjoint_and_noise_mapping():
    dinv = _dinv()
    P = dinv.physics
    inp = P.Inpainting(img_size=(3, 16, 16), mask=0.5, noise_model=P.GaussianNoise(0.1))
    A = O.from_deepinv(inp, (3, 16, 16))
    assert A.out_shape == (3, 16, 16) and A.name == "deepinv:Inpainting"
    assert isinstance(A.noise, O.GaussianNoise) and abs(A.noise.sigma - 0.1) < 1e-7
    assert check_adjoint(A, batch=(2,)) < 1e-10
    blur = P.Blur(filter=P.blur.gaussian_blur(sigma=(1.0, 1.0)), padding="circular")
    Ab = O.from_deepinv(blur, (1, 16, 16))
    assert Ab.noise is None                                  # ZeroNoise -> None
    assert check_adjoint(Ab) < 1e-4                          # deepinv's blur runs in float32
    # a noise model we have no equivalent of is called through a wrapper, seeded reproducibly
    pois = O.from_deepinv(P.Denoising(noise_model=P.PoissonNoise(gain=0.1, rng=torch.Generator())),
                          (1, 8, 8))
    x = torch.rand(1, 8, 8)
    assert torch.equal(pois.measure(x, seed=3), pois.measure(x, seed=3))
    assert not torch.equal(pois.measure(x, seed=3), pois.measure(x, seed=4))
    assert P.LinearPhysics is not None and O.to_deepinv(pois).noise_model is pois.noise.model


def test_to_deepinv_round_trip_adjoint_and_noise():
    dinv = _dinv()
    P = dinv.physics
    ops = [O.SuperResolution((2, 32, 32), factor=4, noise=O.GaussianNoise(0.05, clip=(0, 1))),
           O.MultiCoilMRI(torch.randn(4, 16, 12, dtype=torch.complex64), _mask(12), noise=O.GaussianNoise(0.01)),
           O.Inpaint((3, 16, 16), keep_fraction=0.4, seed=2)]
    for op in ops:
        ph = O.to_deepinv(op)
        assert isinstance(ph, P.LinearPhysics)
        u = torch.randn((1,) + op.in_shape, dtype=torch.complex128 if op.in_dtype.is_complex else torch.float64)
        assert float(ph.adjointness_test(u)) < 1e-10       # deepinv's own test on our operator
        back = O.from_deepinv(ph, op.in_shape, dtype=op.in_dtype)
        err = check_adjoint(back, batch=(2,))               # ours -> deepinv -> ours
        assert err < 1e-10, (op.name, err)
        assert back.noise is op.noise or (back.noise is None and op.noise is None)
    # plain Gaussian noise becomes deepinv's GaussianNoise; a clipped one a NoiseModel that clips
    assert type(O.to_deepinv(ops[1]).noise_model) is P.GaussianNoise
    ph = O.to_deepinv(ops[0])
    y = ph(torch.rand(4, 2, 32, 32))
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert type(O.to_deepinv(ops[2]).noise_model) is P.ZeroNoise
    # a deepinv physics round-trips to itself
    inp = P.Inpainting(img_size=(1, 8, 8), mask=0.5)
    assert O.to_deepinv(O.from_deepinv(inp, (1, 8, 8))) is inp


def test_deepinv_multicoil_mri_matches_ours():
    """deepinv's MultiCoilMRI (real 2-channel layout) and ours (complex) are the same operator."""
    dinv = _dinv()
    maps = torch.randn(4, 16, 12, dtype=torch.complex64)
    mask = _mask(12)
    ours = O.MultiCoilMRI(maps, mask)
    theirs = O.from_deepinv(dinv.physics.MultiCoilMRI(mask=mask.float().expand(16, 12)[None], coil_maps=maps,
                                                      img_size=(1, 2, 16, 12)), (2, 16, 12))
    assert check_adjoint(theirs) < 1e-10
    x = torch.randn(16, 12, dtype=torch.complex64)
    y = theirs(torch.stack([x.real, x.imag])[None])[0]      # (2, coils, H, W)
    assert torch.allclose(torch.complex(y[0], y[1]), ours(x), atol=1e-5)


def test_wrapped_deepinv_physics_trains_in_fit_and_learns_a_mask():
    dinv = _dinv()
    torch.manual_seed(0)
    phys = dinv.physics.Inpainting(img_size=(3, 32, 32), mask=0.6, rng=torch.Generator().manual_seed(0))
    A = O.from_deepinv(phys, (3, 32, 32))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = A(x)
    cfg = GeneratorConfig.oes(out_channels=3, levels=2, width=0.0625)
    net, z, _ = methods.setup_generator(cfg, (32, 32), seed=0)
    mask, _ = methods.learn_oes_mask(net, z, A, y, density=0.2, steps=3)
    res = methods.train_generator(net, z, A, y, steps=12, mask=mask, log_every=1,
                                  evaluate=methods.natural_evaluator(x))
    losses = [h["data_loss"] for h in res.history]
    assert mask.n_kept == round(0.2 * mask.n_total)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_check_adjoint_flags_a_broken_deepinv_physics():
    dinv = _dinv()
    bad = dinv.physics.LinearPhysics(A=lambda x, **k: 2 * x, A_adjoint=lambda y, **k: y)
    with pytest.raises(AdjointTestError, match="adjoint test failed"):
        check_adjoint(O.from_deepinv(bad, (1, 8, 8)))


# ----------------------------------------------------------------------------------------------- BART
def _bart_compare():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bart_compare.py"
    spec = importlib.util.spec_from_file_location("bart_compare", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bart_compare_cfl_layout_and_missing_bart(tmp_path, monkeypatch):
    bc = _bart_compare()
    rng = np.random.default_rng(0)
    y = (rng.standard_normal((3, 5, 4)) + 1j * rng.standard_normal((3, 5, 4))).astype(np.complex64)
    k = bc.to_bart_kspace(y)                                   # BART: readout, phase encode, z, coils
    assert k.shape == (5, 4, 1, 3) and k[2, 1, 0, 0] == y[0, 2, 1] and k[4, 3, 0, 2] == y[2, 4, 3]
    bc.write_cfl(tmp_path / "k", k)
    assert (tmp_path / "k.hdr").read_text().split("\n")[1] == "5 4 1 3"
    assert np.array_equal(bc.read_cfl(tmp_path / "k"), k)
    assert np.array_equal(bc.from_bart_maps(k), y)
    monkeypatch.setattr(bc.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="`bart` command is not installed"):
        bc.main(["--out", str(tmp_path / "res")])
    assert not list(tmp_path.glob("res*"))


@pytest.mark.skipif(__import__("shutil").which("bart") is None, reason="bart not installed (apt-get install bart)")
def test_bart_sees_our_kspace_layout_and_fft_convention(tmp_path):
    """BART's centred unitary inverse FFT of our k-space, in the benchmark's layout, gives our coil images."""
    import subprocess
    from operators.mri import ifft2c
    bc = _bart_compare()
    rng = np.random.default_rng(1)
    y = (rng.standard_normal((2, 6, 4)) + 1j * rng.standard_normal((2, 6, 4))).astype(np.complex64)
    bc.write_cfl(tmp_path / "k", bc.to_bart_kspace(y))
    subprocess.run(["bart", "fft", "-u", "-i", "3", str(tmp_path / "k"), str(tmp_path / "img")], check=True)
    ours = ifft2c(torch.from_numpy(y)).numpy()
    assert np.allclose(bc.from_bart_maps(bc.read_cfl(tmp_path / "img")), ours, atol=1e-5)
