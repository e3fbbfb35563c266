"""The natural-image command line: outputs, metadata, clear errors, nothing overwritten."""
import json

import numpy as np
import pytest
from PIL import Image

from mri_oes.cli import main
from mri_oes.masks import Mask


@pytest.fixture
def image_file(tmp_path):
    from skimage import data
    path = tmp_path / "img.png"
    Image.fromarray(data.astronaut()[100:164, 150:214]).save(path)
    return path


TINY = ["--levels", "3", "--width", "0.25", "--no-progress", "--log-every", "5"]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "learn-mask", "fit", "recon", "denoise", "inpaint", "super-resolve", "imp",
                "prune-at-init", "transfer", "summarize"):
        assert cmd in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mri-oes ")


def test_bad_flag_is_one_line_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["fit", "--lr", "nan", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr" in err[0] and not out.exists()


def test_learn_mask_then_fit_with_mask(tmp_path, image_file):
    out = tmp_path / "mask"
    assert main(["learn-mask", str(image_file), "--density", "0.1", "--mask-steps", "10", "--out", str(out)] + TINY) == 0
    mask = Mask.load(out / "mask.safetensors")
    assert abs(mask.density - 0.1) < 1e-4
    assert {"generator", "init_seed", "z_seed", "source"} <= set(mask.meta)
    fit = tmp_path / "fit"
    assert main(["fit", str(image_file), "--method", "sparse-dip", "--pruning-mask", str(out / "mask.safetensors"),
                 "--steps", "10", "--out", str(fit)] + TINY) == 0
    m = json.loads((fit / "metrics.json").read_text())
    assert m["density"] == pytest.approx(mask.density) and m["sparsity"] == pytest.approx(1 - mask.density)
    assert m["seeds"]["init_seed"] == mask.meta["init_seed"] and "psnr" in m["final"] and "psnr" in m["best"]
    assert {"recon.png", "recon.npy", "curve.png", "metrics.json"} <= {p.name for p in fit.iterdir()}
    assert np.load(fit / "recon.npy").shape == (3, 64, 64)


@pytest.mark.parametrize("cmd,extra", [("denoise", []), ("inpaint", ["--keep-fraction", "0.5"]),
                                       ("super-resolve", ["--factor", "2"])])
def test_task_shortcuts_run_dense_dip(tmp_path, image_file, cmd, extra):
    out = tmp_path / cmd
    assert main([cmd, str(image_file), "--method", "dip", "--steps", "5", "--out", str(out)] + extra + TINY) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "dip" and m["density"] == 1.0 and m["problem"]["task"] in cmd.replace("-resolve", "-resolution")


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path, image_file, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "o1"
    assert main(["fit", str(bad), "--steps", "1", "--out", str(out)] + TINY) == 2
    assert "cannot read image" in capsys.readouterr().err and not out.exists()
    assert main(["fit", str(image_file), "--density", "1.5", "--steps", "1", "--out", str(out)] + TINY) == 2
    assert "density" in capsys.readouterr().err and not out.exists()
    assert main(["super-resolve", str(image_file), "--factor", "3", "--steps", "1", "--out", str(out)] + TINY) == 2
    assert "factor" in capsys.readouterr().err and not out.exists()
    assert main(["fit", str(image_file), "--levels", "6", "--steps", "1", "--out", str(out)]) == 2
    assert "too small" in capsys.readouterr().err and not out.exists()
    assert main(["fit", str(image_file), "--pruning-mask", str(bad), "--steps", "1", "--out", str(out)] + TINY) == 2
    assert "cannot read mask file" in capsys.readouterr().err and not out.exists()


def test_existing_result_is_not_overwritten(tmp_path, image_file, capsys):
    out = tmp_path / "run"
    args = ["fit", str(image_file), "--method", "dip", "--steps", "2", "--out", str(out)] + TINY
    assert main(args) == 0
    before = (out / "metrics.json").read_bytes()
    assert main(args) == 2
    assert "already holds a result" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
