"""One result schema: the real outputs of every command validate, and `summarize` makes one tidy CSV."""
import json

import pytest

from mri_oes.cli import main
from mri_oes.datasets import bundled_brain
from mri_oes.schema import COLUMNS, SchemaError, collect, make_record, validate

TINY = ["--levels", "2", "--width", "0.25", "--log-every", "2", "--no-progress"]
IMG = ["skimage:coffee", "--crop", "32"]


def _records(folder):
    files = sorted(folder.rglob("metrics.json"))
    recs = [json.loads(f.read_text()) for f in files]
    return [r for r in recs if r.get("kind") != "collection"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from skimage import data
    from PIL import Image
    base = tmp_path_factory.mktemp("schema")
    img = base / "coffee.png"
    Image.fromarray(data.coffee()[100:132, 200:232]).save(img)
    cmds = {
        "fit": ["fit", str(img), "--method", "dip", "--steps", "3"],
        "denoise": ["denoise", str(img), "--method", "sparse-dip", "--steps", "3", "--mask-steps", "2"],
        "learn-mask": ["learn-mask", str(img), "--mask-steps", "2"],
        "demo": ["demo", "--steps", "3", "--mask-steps", "2"],
        "imp": ["imp", *IMG, "--rounds", "1", "--steps", "2"],
        "prune-at-init": ["prune-at-init", *IMG, "--mask-source", "magnitude", "--density", "0.3", "--steps", "2"],
        "transfer": ["transfer", str(img), str(img), "--tasks", "denoise", "--density", "0.3",
                     "--mask-source", "none", "oes", "--steps", "2", "--mask-steps", "2"],
        "recon": ["recon", str(bundled_brain()), "--accel", "4", "--method", "zero-filled", "dip", "sparse-dip",
                  "--steps", "2", "--mask-steps", "2", "--workers", "1"],
    }
    out = {}
    for name, argv in cmds.items():
        o = base / name
        extra = [] if name == "demo" else TINY
        if name == "demo":
            extra = ["--log-every", "2", "--no-progress"]
        assert main(argv + extra + ["--out", str(o)]) == 0, name
        out[name] = o
    return base, out


def test_every_command_writes_valid_records(runs):
    base, out = runs
    for name, folder in out.items():
        recs = _records(folder)
        assert recs, f"{name} wrote no metrics.json"
        for r in recs:
            validate(r)
            assert set(("final", "best", "time", "density", "sparsity", "seed", "seeds", "device",
                        "threads", "config", "versions")) <= set(r), name
            assert set(r["best"]) >= {"psnr", "ssim", "nmse", "step"}
    lm = _records(out["learn-mask"])[0]
    assert lm["method"] == "oes-mask" and lm["mask_source"] == "oes" and lm["steps"] == 0 and lm["mask_steps"] == 2


def test_summarize_one_tidy_csv(runs, capsys):
    import pandas as pd
    base, _ = runs
    csv_path = base / "all.csv"
    assert main(["summarize", str(base), "--csv", str(csv_path)]) == 0
    df = pd.read_csv(csv_path)
    assert list(df.columns[:len(COLUMNS) + 1]) == ["level"] + list(COLUMNS)
    # the level of each row: recon slices and volumes apart from every other command's runs
    assert set(df.loc[df["command"] != "recon", "level"]) == {"run"}
    rec = df[df["command"] == "recon"]
    assert (rec.loc[rec["slice"].notna(), "level"] == "slice").all()
    assert (rec.loc[rec["slice"].isna(), "level"] == "volume").all() and (rec["level"] == "volume").any()
    assert set(df["command"]) == {"fit", "denoise", "learn-mask", "demo", "imp", "prune-at-init", "transfer",
                                  "recon"}
    mri = df[df["command"] == "recon"]
    assert set(mri["method"]) == {"zero-filled", "dip", "sparse-dip"} and (mri["accel"] == 4).all()
    assert (mri["metrics_convention"] == "fastmri").all() and mri["full_fov_psnr"].notna().all()
    assert len(df) == len(collect([base]))
    assert (abs(df["density"] + df["sparsity"] - 1) < 1e-9).all()
    # refuses to overwrite, one line
    assert main(["summarize", str(base), "--csv", str(csv_path)]) == 2


def test_schema_rejects_inconsistent_records():
    rec = make_record(command="fit", method="dip", steps=1)
    validate(rec)
    for bad in ({"method": "dense"}, {"mask_source": "oes-ish"}, {"sparsity": 0.5}, {"final": None}):
        with pytest.raises(SchemaError):
            validate({**rec, **bad})
    with pytest.raises(SchemaError):
        validate({k: v for k, v in rec.items() if k != "best"})
