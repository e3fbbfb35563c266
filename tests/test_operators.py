"""Adjointness <A x, y> = <x, A^H y> for EVERY registered operator (batched), plus input checks."""
import json

import numpy as np
import pytest
import torch

import operators as O
from operators.mri_coils import SpiritCoilImagesMRI
from operators.testing import AdjointTestError, check_adjoint

# One small builder per registered operator name. A new plugin must add itself here:
# test_every_registered_operator_is_tested fails otherwise.
BUILDERS = {
    "denoise": lambda: O.Denoise((3, 16, 16)),
    "inpaint": lambda: O.Inpaint((3, 16, 20), keep_fraction=0.3, seed=1),
    "super-resolution": lambda: O.SuperResolution((2, 32, 48), factor=4),
    "mri": lambda: O.MultiCoilMRI(torch.randn(4, 20, 12, dtype=torch.complex64),
                                  torch.rand(12, generator=torch.Generator().manual_seed(0)) > 0.5),
    "mri-coil-images": lambda: O.CoilImagesMRI(torch.rand(12, generator=torch.Generator().manual_seed(0)) > 0.5,
                                               coils=3, shape=(10, 12)),
}
EXTRA = {
    "super-resolution-box-x2": lambda: O.SuperResolution((1, 16, 16), factor=2, kernel="box"),
    "super-resolution-x8": lambda: O.SuperResolution((3, 64, 64), factor=8),
    "mri-2d-mask": lambda: O.MultiCoilMRI(torch.randn(3, 10, 8, dtype=torch.complex64),
                                          torch.rand(10, 8) > 0.6),
    "mri-two-map-sets": lambda: O.MultiCoilMRI(torch.randn(2, 4, 12, 10, dtype=torch.complex64),
                                               torch.rand(10, generator=torch.Generator().manual_seed(1)) > 0.5),
    "composed": lambda: O.Inpaint((1, 32, 32), keep_fraction=0.5) @ O.Denoise((1, 32, 32)),
    "scaled": lambda: 2.5 * O.SuperResolution((1, 32, 32), factor=2),
    "adjoint-of-sr": lambda: O.SuperResolution((1, 32, 32), factor=2).H,
    # not registered (it needs calibrated SPIRiT kernels): the classical methods' maps-free operator
    "mri-coil-images-spirit": lambda: SpiritCoilImagesMRI(
        torch.rand(12, generator=torch.Generator().manual_seed(1)) > 0.5,
        torch.randn(3, 3, 10, 12, dtype=torch.complex64, generator=torch.Generator().manual_seed(0)), mu=0.7),
}


def _rand(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                             torch.randn(shape, generator=g, dtype=torch.float64))
    return torch.randn(shape, generator=g, dtype=torch.float64)


def test_every_registered_operator_is_tested():
    # the project's OWN operators (a third-party plugin installed beside us is not ours to test here;
    # its authors run operators.testing.check_adjoint in their own suite)
    assert set(O.builtin()) >= {"denoise", "inpaint", "super-resolution", "mri", "mri-coil-images"}
    missing = set(O.builtin()) - set(BUILDERS) - set(_plugin_names())
    assert not missing, f"registered operators without an adjoint test builder: {missing}"


def _plugin_names():
    try:
        from tests.test_operators_plugins import PLUGIN_BUILDERS  # optional extension point
        return PLUGIN_BUILDERS
    except ImportError:
        return {}


ALL = {**BUILDERS, **EXTRA, **_plugin_names()}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_shipped_check_adjoint(name, batch):
    assert check_adjoint(ALL[name](), batch=batch, seed=5) < 1e-10


def test_check_adjoint_names_each_contract_violation():
    class Adj(O.Denoise):
        def _adjoint(self, y):
            return 1.01 * y

    class Shape(O.Denoise):
        def _forward(self, x):
            return torch.cat([x, x[..., :1]], -1)

    class Dtype(O.Denoise):
        def _forward(self, x):
            return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)

    class Mix(O.Denoise):   # self-adjoint, but items of a batch leak into each other
        def _forward(self, x):
            return x - x.mean(0, keepdim=True)
        _adjoint = _forward

    class Nan(O.Denoise):
        def _adjoint(self, y):
            return y * float("nan")

    for cls, kind, words in ((Adj, "adjoint", "relative error"), (Shape, "shape", "expected (2, 1, 8, 8)"),
                             (Dtype, "dtype", "declares real data"), (Mix, "batching", "differs"),
                             (Nan, "finite", "NaN")):
        with pytest.raises(AdjointTestError) as e:
            check_adjoint(cls((1, 8, 8)), batch=(2,))
        assert e.value.kind == kind, (cls.__name__, e.value)
        msg = str(e.value)
        assert f"violates the operator contract ({kind}:" in msg and words in msg, msg


def test_plugin_constructor_contract_is_named(monkeypatch, tmp_path, capsys):
    """A plugin written as __init__(self, in_shape, sigma) is refused by the registry with the contract."""
    import operators.registry as reg
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    monkeypatch.setattr(reg, "_SOURCE", dict(reg._SOURCE))

    @O.register("test-blur-wrong-init")
    class WrongInit(O.Denoise):
        def __init__(self, in_shape, sigma):
            super().__init__(in_shape)

    with pytest.raises(O.OperatorContractError) as e:
        O.build("test-blur-wrong-init", shape=(1, 8, 8), noise=None, sigma=1.0)
    msg = str(e.value)
    assert "contract" in msg and "shape" in msg and "noise" in msg and "in_shape" in msg
    assert isinstance(e.value, TypeError)

    @O.register("test-blur-contract")
    class RightInit(O.Denoise):
        def __init__(self, shape, sigma=1.0, noise=None):
            super().__init__(shape, noise=noise)
            self.sigma = sigma

    assert O.build("test-blur-contract", shape=(1, 8, 8), noise=None, sigma=2.0).sigma == 2.0
    # through the command line: one line naming the contract, exit status 2
    from mri_oes.cli import main
    from skimage import io as skio
    img = tmp_path / "x.png"
    skio.imsave(img, (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8), check_contrast=False)
    assert main(["fit", str(img), "--operator", "test-blur-wrong-init", "--operator-args", '{"sigma": 1}',
                 "--steps", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "operator plugin contract" in err[0] and "shape" in err[0]


def test_check_adjoint_catches_wrong_adjoint_shape_and_dtype():
    class WrongAdjoint(O.Denoise):
        def _adjoint(self, y):
            return 1.01 * y

    with pytest.raises(AdjointTestError, match=r"relative error 0.0099\d* > 1e-10"):
        check_adjoint(WrongAdjoint((1, 8, 8)))

    class WrongShape(O.Denoise):
        def _forward(self, x):
            return x[..., :-1]
    with pytest.raises((AdjointTestError, RuntimeError), match="shape"):
        check_adjoint(WrongShape((1, 8, 8)))

    class Nan(O.Denoise):
        def _adjoint(self, y):
            return y * float("nan")
    with pytest.raises(AdjointTestError, match="NaN"):
        check_adjoint(Nan((1, 4, 4)))


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_adjoint_dot_product(name, batch):
    A = ALL[name]()
    x = _rand(batch + A.in_shape, A.in_dtype, 1)
    y = _rand(batch + A.out_shape, A.out_dtype, 2)
    Ax = A(x)
    assert Ax.shape == batch + A.out_shape
    AHy = A.adjoint(y)
    assert AHy.shape == batch + A.in_shape
    lhs = torch.vdot(Ax.reshape(-1).to(y.dtype), y.reshape(-1))
    rhs = torch.vdot(x.reshape(-1), AHy.reshape(-1).to(x.dtype))
    assert abs(lhs - rhs) / abs(lhs) < 1e-10


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_batched_equals_loop(name):
    A = BUILDERS[name]()
    x = _rand((3,) + A.in_shape, A.in_dtype, 3).to(torch.complex64 if A.in_dtype.is_complex else torch.float32)
    batched = A(x)
    looped = torch.stack([A(xi) for xi in x])
    assert torch.allclose(batched, looped, atol=1e-6)


def test_float32_adjoint_within_dtype_tolerance():
    A = O.SuperResolution((3, 64, 64), factor=4)
    x, y = torch.randn(3, 64, 64), torch.randn(3, 16, 16)
    assert abs(float((A(x) * y).sum() - (x * A.adjoint(y)).sum())) / float((A(x) * y).sum().abs()) < 1e-5


def test_wrong_shape_dtype_and_parameters_raise_clear_errors():
    A = O.Denoise((3, 8, 8))
    with pytest.raises(O.OperatorInputError, match=r"shape \(3, 8, 7\).*expected"):
        A(torch.zeros(3, 8, 7))
    with pytest.raises(O.OperatorInputError, match="dtype"):
        A(torch.zeros(3, 8, 8, dtype=torch.complex64))
    with pytest.raises(O.OperatorInputError, match="dtype"):
        A(torch.zeros(3, 8, 8, dtype=torch.int64))
    mri = BUILDERS["mri"]()
    with pytest.raises(O.OperatorInputError, match="complex"):
        mri(torch.zeros(20, 12))
    with pytest.raises(O.OperatorInputError, match="does not divide"):
        O.SuperResolution((3, 30, 32), factor=4)
    with pytest.raises(O.OperatorInputError, match="factor must be 2, 4 or 8"):
        O.SuperResolution((3, 32, 32), factor=3)
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(O.OperatorInputError, match="keep_fraction"):
            O.Inpaint((3, 8, 8), keep_fraction=bad)
    with pytest.raises(O.OperatorInputError, match="line mask has 5"):
        O.MultiCoilMRI(torch.ones(2, 4, 6, dtype=torch.complex64), torch.ones(5))


def test_inpaint_exact_keep_fraction_and_seed():
    a = O.Inpaint((3, 20, 20), keep_fraction=0.25, seed=7)
    b = O.Inpaint((3, 20, 20), keep_fraction=0.25, seed=7)
    c = O.Inpaint((3, 20, 20), keep_fraction=0.25, seed=8)
    assert int(a.mask.sum()) == 100
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)
    user = np.zeros((20, 20)); user[:5] = 1
    assert O.Inpaint((3, 20, 20), mask=user).keep_fraction == 0.25


def test_super_resolution_preserves_constants_and_downsamples():
    A = O.SuperResolution((1, 32, 32), factor=4)
    y = A(torch.full((1, 32, 32), 0.7))
    assert torch.allclose(y, torch.full((1, 8, 8), 0.7), atol=1e-6)


def test_noise_model_is_seeded():
    A = O.Denoise((1, 8, 8), noise=O.GaussianNoise(0.1, clip=(0, 1)))
    x = torch.full((1, 8, 8), 0.5)
    assert torch.equal(A.measure(x, seed=3), A.measure(x, seed=3))
    assert not torch.equal(A.measure(x, seed=3), A.measure(x, seed=4))
    assert float(A.measure(x, seed=3).std()) > 0.05


def test_registry_builds_by_name_and_rejects_unknown():
    A = O.build("inpaint", shape=(1, 8, 8), keep_fraction=0.5)
    assert isinstance(A, O.Inpaint)
    with pytest.raises(KeyError, match="unknown operator 'nope'"):
        O.build("nope")


def test_entry_point_plugin_is_discovered(monkeypatch):
    import operators.registry as reg

    class EP:
        name, value = "my-blur", "pkg:Blur"

        def load(self):
            class Blur(O.Denoise):
                name = "my-blur"
            return Blur

    monkeypatch.setattr(reg, "_entry_points_loaded", False)
    monkeypatch.setattr(reg, "entry_points", lambda group: [EP()] if group == reg.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    monkeypatch.setattr(reg, "_SOURCE", dict(reg._SOURCE))
    assert "my-blur" in reg.available()
    assert reg.build("my-blur", shape=(1, 4, 4)).name == "my-blur"
    # a third-party plugin is not one of the project's own operators: the coverage test ignores it
    assert "my-blur" not in reg.builtin() and reg.source("my-blur") == "entry point my-blur = pkg:Blur"
    assert check_adjoint(reg.build("my-blur", shape=(1, 4, 4))) < 1e-12


def _fake_entry_points(monkeypatch, eps):
    import operators.registry as reg
    monkeypatch.setattr(reg, "_entry_points_loaded", False)
    monkeypatch.setattr(reg, "_clash_error", None)
    monkeypatch.setattr(reg, "entry_points", lambda group: eps if group == reg.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    monkeypatch.setattr(reg, "_SOURCE", dict(reg._SOURCE))
    return reg


class _EP:
    def __init__(self, name, value, cls=None):
        self.name, self.value, self.cls = name, value, cls

    def load(self):
        return self.cls


def test_plugin_named_like_a_builtin_raises_a_clear_error(monkeypatch):
    class Fake(O.Denoise):
        name = "mri"
    reg = _fake_entry_points(monkeypatch, [_EP("mri", "evil_pkg.ops:Fake", Fake)])
    for _ in range(2):                               # every query, not only the first
        with pytest.raises(O.OperatorNameClash, match=r"'mri' \(evil_pkg.ops:Fake\) clashes with the "
                                                        r"built-in operator operators.mri.MultiCoilMRI"):
            reg.get("mri")
    # our own package declaring its built-in class as an entry point is not a clash
    reg = _fake_entry_points(monkeypatch, [_EP("mri", "operators.mri:MultiCoilMRI", O.MultiCoilMRI)])
    assert reg.get("mri") is O.MultiCoilMRI


def test_two_plugins_with_one_name_and_register_clash(monkeypatch):
    class A(O.Denoise):
        pass

    class B(O.Denoise):
        pass
    reg = _fake_entry_points(monkeypatch, [_EP("blur", "a:A", A), _EP("blur", "b:B", B)])
    with pytest.raises(O.OperatorNameClash, match="'blur' \\(b:B\\) clashes with the entry point blur = a:A"):
        reg.available()
    with pytest.raises(O.OperatorNameClash, match="'inpaint' is already registered"):
        O.register("inpaint")(A)


def test_describe_records_constructor_args_and_rebuilds():
    a = O.Inpaint((3, 16, 20), keep_fraction=0.3, seed=4, noise=O.GaussianNoise(0.1, clip=(0, 1)))
    d = json.loads(json.dumps(a.describe()))          # survives a JSON round trip (results, mask files)
    assert d["args"] == {"shape": [3, 16, 20], "keep_fraction": 0.3, "seed": 4, "mask": None,
                         "noise": {"noise": {"type": "gaussian", "sigma": 0.1, "clip": [0, 1]}}}
    b = O.rebuild(d)
    assert torch.equal(a.mask, b.mask) and b.noise.sigma == 0.1 and b.noise.clip == (0, 1)
    sr = O.rebuild(json.loads(json.dumps(O.SuperResolution((2, 32, 32), factor=2, kernel="box").describe())))
    assert sr.factor == 2 and sr.kernel_name == "box"
    mri = BUILDERS["mri"]()
    d = json.loads(json.dumps(mri.describe()))
    assert d["args"]["maps"]["tensor"]["shape"] == [4, 20, 12]
    with pytest.raises(O.OperatorInputError, match="pass maps="):
        O.rebuild(d)
    maps = mri.maps.clone()
    mask = torch.rand(12, generator=torch.Generator().manual_seed(0)) > 0.5
    x = torch.randn(20, 12, dtype=torch.complex64)
    assert torch.equal(O.rebuild(d, maps=maps, mask=mask)(x), mri(x))
    with pytest.raises(O.OperatorInputError, match="maps differs from the recorded"):
        O.rebuild(d, maps=maps * 2, mask=mask)


def test_mri_generator_image_restricted_to_maps_support():
    maps = torch.randn(2, 8, 6, dtype=torch.complex64)
    maps[:, :2] = 0                                      # ESPIRiT-cropped rows
    A = O.MultiCoilMRI(maps, torch.ones(6))
    x = A.from_network(torch.randn(1, 2, 8, 8))
    assert x.shape == (1, 8, 6) and torch.all(x[:, :2] == 0) and torch.all(x[:, 2:] != 0)


def test_mri_generator_output_per_map_set():
    """Two map sets: a network outputs (real, imag) per set, in that order; ``A`` sums the sets' coil images
    and the image is the RSS over the sets. Two channels are one clear line."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 8, 6, dtype=torch.complex64, generator=g)
    A = O.MultiCoilMRI(maps, torch.ones(6))
    assert A.network_channels == 4
    out = torch.randn(1, 4, 10, 8, generator=g)
    x = A.from_network(out)
    c = out[:, :, 1:9, 1:7]
    assert x.shape == (1, 2, 8, 6)
    assert torch.equal(x[:, 1], torch.complex(c[:, 2], c[:, 3]))
    expect = (maps[0] * x[:, 0, None] + maps[1] * x[:, 1, None])
    torch.testing.assert_close(A(x), O.mri.fft2c(expect))
    torch.testing.assert_close(A.combine(x), x.abs().pow(2).sum(1).sqrt())
    with pytest.raises(O.OperatorInputError, match="2 map sets must output 4 channels"):
        A.from_network(torch.randn(1, 2, 8, 6))


def test_center_crop_is_fastmri_crop_for_arrays_and_tensors():
    """One centre crop: fastMRI's convention (first kept row (H - h) // 2) on numpy and torch, odd and even."""
    from fastmri.data.transforms import center_crop as fastmri_center_crop
    from operators.base import OperatorInputError, center_crop
    a = np.arange(3 * 7 * 10, dtype=np.float32).reshape(3, 7, 10)
    for hw in [(4, 4), (5, 3), (7, 10), (2, 9)]:
        want = fastmri_center_crop(a, hw)
        got = center_crop(a, hw)
        assert isinstance(got, np.ndarray) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(center_crop(torch.from_numpy(a), hw).numpy(), want)
    with pytest.raises(OperatorInputError, match=r"cannot crop \(7, 10\) to \(8, 8\)"):
        center_crop(a, (8, 8))
