"""MRI presets, the density rule and the data-consistency projection (fast; phantom file)."""
import numpy as np
import pytest

from mri_oes.errors import UserError
from mri_oes.mri import presets
from mri_oes.mri.data import load_slice
from mri_oes.mri.problem import build_problem, ifft2c_np
from mri_oes.mri.metrics import rss

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_h5  # noqa: F401,E402


def test_presets_have_every_field_and_are_copies():
    cpu, gpu = presets.get("cpu"), presets.get("gpu")
    assert set(cpu) == set(gpu)
    assert gpu["steps"] > cpu["steps"]
    cpu["steps"] = -1
    assert presets.get("cpu")["steps"] != -1          # get() returns a copy
    with pytest.raises(UserError, match="--preset"):
        presets.get("tpu")
    assert presets.espirit_for(presets.get("cpu"), 8).keys() >= {"thresh", "crop"}


def test_for_accel_applies_the_per_acceleration_overrides():
    cpu = presets.get("cpu")
    assert presets.for_accel(cpu, 4)["channels"] == cpu["by_accel"][4]["channels"] != cpu["channels"]
    assert presets.for_accel(cpu, 8)["channels"] == cpu["channels"]
    assert presets.for_accel(cpu, None)["channels"] == cpu["channels"]   # unknown acceleration: base
    assert "by_accel" not in presets.for_accel(cpu, 4) and "by_accel" in cpu   # a copy, input untouched
    assert presets.for_accel(cpu, 4)["steps"] > presets.for_accel(cpu, 8)["steps"] == cpu["steps"]
    gpu = presets.get("gpu")   # the paper's step counts at every acceleration (the cpu 4x steps do not leak)
    assert presets.for_accel(gpu, 4)["steps"] == presets.for_accel(gpu, 8)["steps"] == gpu["steps"] == 40000


def test_density_rule_counts_weights_per_measurement_and_clips():
    assert presets.density_for(100_000, 1_000_000, 0.5) == pytest.approx(0.05)
    assert presets.density_for(10, 1_000_000, 0.5, density_min=0.02) == 0.02
    assert presets.density_for(10_000_000, 1_000_000, 0.5, density_max=0.5) == 0.5
    # half the measurements (8x instead of 4x) -> half the density
    assert presets.density_for(50_000, 1_000_000, 0.5) == pytest.approx(0.5 * presets.density_for(100_000, 1_000_000, 0.5))
    with pytest.raises(ValueError):
        presets.density_for(0, 10)


def test_data_consistency_keeps_measured_lines_and_fills_the_rest(phantom_h5):  # noqa: F811
    p = build_problem(load_slice(phantom_h5, 0), accel=4, seed=0)
    full = load_slice(phantom_h5, 0).kspace
    # zero estimate -> the projection is exactly the zero-filled RSS
    np.testing.assert_allclose(p.data_consistency(np.zeros(p.image_shape, np.complex64)),
                               p.zero_filled("rss"), rtol=1e-5, atol=1e-6)
    # the true coil images -> the fully sampled RSS (measured lines are the true ones)
    coil_true = ifft2c_np(full)
    np.testing.assert_allclose(p.data_consistency(coil_true, coil_images=True), rss(coil_true),
                               rtol=1e-4, atol=1e-5 * float(rss(coil_true).max()))
    # a maps-based estimate: projection never worsens the error on the measured lines
    x = p.zero_filled("espirit")
    assert p.metrics(p.data_consistency(x))["psnr"] >= p.metrics(p.zero_filled("rss"))["psnr"] - 1e-6
    with pytest.raises(UserError):
        p.data_consistency(coil_true, coil_images=True, combine="espirit")
