"""``recon --init-from RUN``: a network run starting from a finished run's trained weights (tiny phantom,
few steps, one thread)."""
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_h5  # noqa: F401,E402

from mri_oes.cli import main  # noqa: E402
from mri_oes.runner import WEIGHTS_FILE  # noqa: E402

TINY = ["--slice", "0", "--accel", "4", "--workers", "1", "--threads", "1", "--steps", "20", "--log-every", "5",
        "--levels", "3", "--width", "0.25"]




def _recon(path, out, method, *extra):
    return main(["recon", str(path), "--method", method, "--out", str(out), *TINY, *extra])


def _slice(out, method):
    return out / f"{method}_4x" / "slices" / "phantom" / "000"


def _record(out, method):
    return json.loads((_slice(out, method) / "metrics.json").read_text())


@pytest.fixture(scope="module")
def source(phantom_h5, tmp_path_factory):
    """A finished deep-decoder run and a finished Sparse-DIP run (learned mask) on the phantom."""
    out = tmp_path_factory.mktemp("source")
    torch.set_num_threads(1)
    assert _recon(phantom_h5, out, "deep-decoder") == 0
    assert _recon(phantom_h5, out, "sparse-dip", "--density", "0.5", "--mask-steps", "5") == 0
    return out


def test_finished_network_run_stores_its_weights(source):
    for method in ("deep-decoder", "sparse-dip"):
        d = _slice(source, method)
        assert (d / WEIGHTS_FILE).is_file() and not (d / "checkpoint.safetensors").exists()


def test_warm_start_begins_at_the_source_final_output(phantom_h5, source, tmp_path):
    """On the same grid and seed the warm run's first network output (step 0, before any update and
    before data consistency) is the source's final raw network output: the weights were loaded."""
    assert _recon(phantom_h5, tmp_path, "deep-decoder", "--init-from", str(source)) == 0
    src, warm = _record(source, "deep-decoder"), _record(tmp_path, "deep-decoder")
    last, first = src["history"][-1], warm["history"][0]
    assert last["step"] == 20 and first["step"] == 0
    assert first["data_loss"] == pytest.approx(last["data_loss"], rel=1e-5)
    assert first["psnr"] == pytest.approx(last["psnr"], abs=1e-4)
    cold0 = src["history"][0]
    assert abs(first["psnr"] - cold0["psnr"]) > 1.0   # not the random init's output
    assert warm["config"]["init_from"] == str(_slice(source, "deep-decoder") / WEIGHTS_FILE)
    assert warm["seeds"] == src["seeds"]   # z (and the seeds recorded) stay this run's own


def test_init_from_enters_the_run_identity(phantom_h5, source, tmp_path):
    """The weights' digest is in the slice identity (a resumed slice with another init is refused by its
    run folder); the settings name the source (run.json)."""
    from mri_oes.statefile import file_digest
    assert _recon(phantom_h5, tmp_path, "deep-decoder", "--init-from", str(_slice(source, "deep-decoder"))) == 0
    d = _slice(tmp_path, "deep-decoder")
    ident = json.loads((d / "identity.json").read_text())
    assert ident["init_file"] == file_digest(_slice(source, "deep-decoder") / WEIGHTS_FILE)
    cold_ident = json.loads((_slice(source, "deep-decoder") / "identity.json").read_text())
    assert "init_file" not in cold_ident and ident["config"] != cold_ident["config"]
    run = json.loads((tmp_path / "deep-decoder_4x" / "run.json").read_text())
    assert run["init_from"] == str(_slice(source, "deep-decoder"))


def test_resume_refuses_another_init(phantom_h5, source, tmp_path):
    """A killed warm-started slice resumes only with the same weights file content."""
    from mri_oes.errors import RunMismatch
    from mri_oes.mri.data import load_slice
    from mri_oes.mri.problem import build_problem
    from mri_oes.recipe import Recipe
    from mri_oes.runner import run
    from mri_oes.statefile import load_state, save_state
    from mri_oes.mri.volume import network_operator
    from mri_oes.recipe import Acquisition
    p = build_problem(load_slice(phantom_h5, 0), 4, "equispaced", 0)
    # the map sets recon gives this slice (the source run's: ESPIRiT's fold-over statistic fires on the phantom)
    gp = p.as_problem({"kind": "mri", "task": "mri"}, evaluate=None,
                      operator=network_operator(p, Recipe(mri=Acquisition())))
    w = tmp_path / "init.safetensors"
    w.write_bytes((_slice(source, "deep-decoder") / WEIGHTS_FILE).read_bytes())
    rec = _record(source, "deep-decoder")
    rc = Recipe().override(method="deep-decoder", steps=20, layers=rec["config"]["layers"],
                           channels=rec["config"]["channels"], levels=3, progress=False, init_from=str(w),
                           log_every=5, checkpoint_every=5)

    def crash(row):
        if row["step"] == 10:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(gp, rc, tmp_path / "run", command="test", callback=crash)
    original = w.read_bytes()
    tree = load_state(w, None)
    tree["net"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in tree["net"].items()}
    save_state(w, tree, {"what": "weights"})   # same file name, other weights
    with pytest.raises(RunMismatch, match="init_file"):
        run(gp, rc, tmp_path / "run", command="test")
    w.write_bytes(original)   # the same weights again: the same run, resumed
    res = run(gp, rc, tmp_path / "run", command="test")["_result"]
    assert res.resumed_from == 10


def test_mismatched_network_refused(phantom_h5, source, tmp_path, capsys):
    """Another width (or another method's network) is one line naming the file and the layer."""
    capsys.readouterr()
    rc = _recon(phantom_h5, tmp_path, "dip", "--init-from", str(_slice(source, "deep-decoder")))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(_slice(source, "deep-decoder") / WEIGHTS_FILE) in err[0]
    assert "differs from this run's at layer" in err[0]
    assert not (tmp_path / "dip_4x" / "slices").exists()
    rc = _recon(phantom_h5, tmp_path / "c", "dip", "--init-from", str(tmp_path / "nowhere"))
    assert rc == 2 and "no finished network run there" in capsys.readouterr().err


def test_sparse_warm_start_reuses_the_source_mask(phantom_h5, source, tmp_path):
    """sparse-dip --init-from: the source's mask (no mask learning) unless a density is given."""
    from mri_oes.masks import Mask
    assert _recon(phantom_h5, tmp_path / "reuse", "sparse-dip", "--init-from", str(source)) == 0
    src, warm = _record(source, "sparse-dip"), _record(tmp_path / "reuse", "sparse-dip")
    assert warm["mask_source"] == "file" and warm["mask_steps"] == 0 and warm["density"] == src["density"]
    a = Mask.load(_slice(source, "sparse-dip") / "mask.safetensors")
    b = Mask.load(_slice(tmp_path / "reuse", "sparse-dip") / "mask.safetensors")   # the folder keeps its mask
    assert all(torch.equal(a.keep[k], b.keep[k]) for k in a.keep)
    assert warm["history"][0]["data_loss"] == pytest.approx(src["history"][-1]["data_loss"], rel=1e-5)
    assert _recon(phantom_h5, tmp_path / "own", "sparse-dip", "--init-from", str(source), "--density", "0.3",
                  "--mask-steps", "5") == 0
    own = _record(tmp_path / "own", "sparse-dip")
    assert own["mask_source"] == "oes" and own["mask_steps"] == 5 and abs(own["density"] - 0.3) < 0.05
