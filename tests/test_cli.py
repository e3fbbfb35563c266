"""The natural-image command line: outputs, metadata, clear errors, nothing overwritten."""
import json
import re

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
    err = capsys.readouterr().err
    assert ("cannot read mask file" in err or "not a readable mask file" in err) and not out.exists()


def test_existing_result_is_not_overwritten(tmp_path, image_file, capsys):
    out = tmp_path / "run"
    args = ["fit", str(image_file), "--method", "dip", "--steps", "2", "--out", str(out)] + TINY
    assert main(args) == 0
    before = (out / "metrics.json").read_bytes()
    assert main(args) == 2
    assert "already holds a result" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before


def test_ray_starts_only_for_more_than_one_slice_task():
    from mri_oes.parallel import uses_ray
    assert not uses_ray(4, 1, check_installed=False)            # one task: in this process, whatever --workers
    assert not uses_ray(1, 8, check_installed=False)            # one worker: in this process
    assert uses_ray(2, 2, check_installed=False)
    assert uses_ray(1, 1, ray_address="auto", check_installed=False)   # an existing cluster is always used
    assert uses_ray(1, 2, gpus_per_task=0.5, check_installed=False)


def test_single_slice_recon_shows_a_step_bar_under_the_slices_bar(tmp_path, capsys):
    from mri_oes import datasets
    out = tmp_path / "r"
    assert main(["recon", str(datasets.bundled_brain()), "--method", "dip", "--accel", "4", "--steps", "4",
                 "--levels", "2", "--workers", "2", "--progress", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    err = cap.err
    assert "(n=1)" in cap.out and "± 0.00" not in cap.out   # one volume: no spread printed
    assert "dip: " in err and "/4 [" in err, "no step bar for the running slice"
    assert "slices: " in err and "1/1 [" in err
    assert "Token authentication" not in err
    rec = json.loads((out / "recon.json").read_text())
    assert rec["parallel"]["backend"] == "serial"      # --workers 2 but one slice: Ray is not started


def test_slices_in_ray_workers_show_a_step_bar_each(tmp_path, capsys):
    """Two slices on two Ray workers: each running slice gets a step bar (the workers report their steps
    to the driver), under the slices bar."""
    from mri_oes import datasets
    from mri_oes.parallel import ray_available
    if not ray_available():
        pytest.skip("Ray is not installed (extra 'cluster')")
    files = []
    for name in ("a.h5", "b.h5"):
        (tmp_path / name).write_bytes(datasets.bundled_brain().read_bytes())
        files.append(str(tmp_path / name))
    out = tmp_path / "r"
    assert main(["recon", *files, "--method", "dip", "--accel", "4", "--steps", "300", "--levels", "2",
                 "--workers", "2", "--threads", "1", "--progress", "--out", str(out)]) == 0
    err = capsys.readouterr().err.replace("\r", "\n")
    assert json.loads((out / "recon.json").read_text())["parallel"]["backend"] == "ray"
    for stem in ("a", "b"):
        assert re.search(rf"{stem} slice 0 dip 4x: dip: .*\d+/300 \[", err), f"no step bar for slice {stem}"
    assert "slices: " in err and "2/2 [" in err


def test_renamed_transfer_flags_reach_the_run(tmp_path, image_file, capsys):
    out = tmp_path / "t"
    assert main(["transfer", str(image_file), str(image_file), "--tasks", "denoise", "--densities", "0.3",
                 "--mask-sources", "oes", "--steps", "2", "--mask-steps", "2", "--checkpoint-every", "1",
                 "--out", str(out)] + TINY) == 0
    err = capsys.readouterr().err
    assert "--densities is deprecated, use --density" in err and "--mask-sources is deprecated" in err
    rows = [json.loads(p.read_text()) for p in (out / "cases").glob("*/metrics.json")]
    assert rows and {r["mask_source"] for r in rows} == {"oes"} and all(abs(r["density"] - 0.3) < 0.01 for r in rows)


@pytest.mark.parametrize("command", ["learn-mask", "imp", "prune-at-init"])
def test_operator_plugin_on_every_natural_training_command(command, tmp_path, image_file):
    out = tmp_path / command
    extra = {"learn-mask": ["--density", "0.3", "--mask-steps", "2"],
             "imp": ["--rounds", "1", "--steps", "2"],
             "prune-at-init": ["--mask-source", "random", "--density", "0.3", "--steps", "2"]}[command]
    assert main([command, str(image_file), "--operator", "super-resolution", "--operator-args", '{"factor": 2}',
                 "--out", str(out)] + extra + TINY) == 0
    m = json.loads((out / "metrics.json").read_text())
    text = json.dumps(m).replace('\\"', '"')   # the operator and its arguments are recorded
    assert m["task"] == "super-resolution" or "super-resolution" in text, (command, m.get("task"))
    assert '"factor": 2' in text, command


def test_operator_plugin_refused_on_an_mri_file(tmp_path, capsys):
    from mri_oes import datasets
    assert main(["learn-mask", str(datasets.bundled_brain()), "--operator", "denoise", "--out", str(tmp_path / "o")]) == 2
    assert "operator plugins act on images" in capsys.readouterr().err and not (tmp_path / "o").exists()
