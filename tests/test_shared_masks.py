"""``recon --share-pruning-mask volume|protocol``: one OES pruning mask learned per file or per protocol
(grid and acceleration) and reused by every slice of it; resumable, refused when it does not match,
part of the run identity (tiny phantom volumes, few steps, one thread)."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_kspace, write_file  # noqa: E402

from mri_oes import methods  # noqa: E402
from mri_oes.cli import main  # noqa: E402

TINY = ["--method", "sparse-dip", "--accel", "4", "--levels", "3", "--width", "0.25", "--steps", "6",
        "--mask-steps", "4", "--density", "0.5", "--log-every", "3", "--workers", "1", "--threads", "1",
        "--no-progress"]
RUN = "sparse-dip_4x"




def make_data(folder: Path) -> Path:
    """64x64 volumes of 3 and 2 slices (one protocol) and a 1-slice 64x48 volume (another grid)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("a", 3), ("b", 2))):
        k, _, _ = phantom_kspace(slices=n, seed=i)
        write_file(folder / f"{name}.h5", k)
    k, _, _ = phantom_kspace(slices=1, seed=2)
    write_file(folder / "c.h5", k[..., 8:56])
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("shared") / "data")


@pytest.fixture
def count_learning(monkeypatch):
    """How often an OES mask is learned (the runner calls methods.learn_oes_mask)."""
    calls = []
    real = methods.learn_oes_mask

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(methods, "learn_oes_mask", counted)
    return calls


def _recon(data, out, *extra):
    return main(["recon", str(data), "--out", str(out), *TINY, *extra])


def _records(out):
    return {f"{f.parent.parent.name}/{f.parent.name}": json.loads(f.read_text())
            for f in sorted((out / RUN / "slices").glob("*/*/metrics.json"))}


@pytest.fixture(scope="module")
def protocol_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("protocol") / "out"
    torch.set_num_threads(1)
    calls = []
    real = methods.learn_oes_mask

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    methods.learn_oes_mask = counted
    try:
        assert _recon(data, out, "--share-pruning-mask", "protocol") == 0
    finally:
        methods.learn_oes_mask = real
    return out, len(calls)


def test_protocol_learns_one_mask_per_grid_and_every_slice_uses_it(protocol_run):
    out, learned = protocol_run
    masks = sorted(p.name for p in (out / RUN / "masks").iterdir())
    assert masks == ["64x48_4x", "64x64_4x"] and learned == 2   # 6 slices, 2 protocols, 2 masks learned
    recs = _records(out)
    assert len(recs) == 6
    for key, files in (("64x64_4x", ("a", "b")), ("64x48_4x", ("c",))):
        m = json.loads((out / RUN / "masks" / key / "metrics.json").read_text())
        src = m["shared_mask"]
        # learned on the centre slice of the first file of the protocol
        assert src["scan"] == files[0] and src["slice"] == (1 if files[0] == "a" else 0)
        assert m["method"] == "oes-mask" and m["mask_steps"] == 4 and m["time"]["cpu_s"] > 0
        from mri_oes.statefile import file_digest
        assert src["digest"] == file_digest(out / RUN / "masks" / key / "mask.safetensors")
        mine = [r for k, r in recs.items() if k.split("/")[0] in files]
        assert mine and {r["shared_mask"]["digest"] for r in mine} == {src["digest"]}
        assert all(r["shared_mask"]["key"] == key and r["mask_source"] == "file" and r["mask_steps"] == 0
                   for r in mine)
        # the slice identity holds the mask file's digest
        ident = json.loads((out / RUN / "slices" / mine[0]["scan"] / "000" / "identity.json").read_text())
        assert ident["mask_file"] == src["digest"] and ident["config"]["share_mask"] == "protocol"


def test_summary_reports_amortised_beside_cold_cpu(protocol_run):
    out, _ = protocol_run
    row = json.loads((out / "summary.json").read_text())["rows"][0]
    recs = list(_records(out).values())
    masks = [json.loads(f.read_text())["time"]["cpu_s"] for f in (out / RUN / "masks").glob("*/metrics.json")]
    cpu = [r["time"]["cpu_s"] for r in recs]
    assert row["share_mask"] == "protocol" and row["shared_masks"] == 2
    assert row["mask_cpu_s"] == pytest.approx(sum(masks))
    assert row["amortised_cpu_s_per_slice"] == pytest.approx((sum(cpu) + sum(masks)) / 6)
    assert row["cold_cpu_s_per_slice"] == pytest.approx(
        sum(c + r["shared_mask"]["cpu_s"] for c, r in zip(cpu, recs)) / 6)
    assert row["amortised_cpu_s_per_slice"] < row["cold_cpu_s_per_slice"]
    import csv
    rows = list(csv.DictReader(open(out / RUN / "slices.csv")))
    assert {r["shared_mask"] for r in rows} == {"64x64_4x", "64x48_4x"} and all(float(r["cpu_s"]) > 0 for r in rows)


def test_resume_reuses_the_mask_and_does_not_relearn(protocol_run, data, tmp_path, count_learning):
    out = tmp_path / "out"
    shutil.copytree(protocol_run[0], out)
    digest = json.loads((out / RUN / "masks" / "64x64_4x" / "metrics.json").read_text())["shared_mask"]["digest"]
    shutil.rmtree(out / RUN / "slices" / "b" / "001")   # one slice to recompute
    (tmp_path / "link").symlink_to(data)   # the same data under another path
    assert _recon(tmp_path / "link", out, "--share-pruning-mask", "protocol") == 0
    assert count_learning == []   # the mask was reused, not learned again
    rec = _records(out)["b/001"]
    assert rec["shared_mask"]["digest"] == digest and rec["mask_steps"] == 0


def test_volume_mode_learns_one_mask_per_file_on_its_centre_slice(data, tmp_path, count_learning):
    out = tmp_path / "out"
    assert _recon(data, out, "--share-pruning-mask", "volume", "--slice", "0") == 0
    assert len(count_learning) == 3 and sorted(p.name for p in (out / RUN / "masks").iterdir()) == ["a", "b", "c"]
    for name, centre in (("a", 1), ("b", 1), ("c", 0)):   # the file's centre slice, whatever --slice selects
        src = json.loads((out / RUN / "masks" / name / "metrics.json").read_text())["shared_mask"]
        assert src["scan"] == name and src["slice"] == centre and src["mode"] == "volume"
        assert _records(out)[f"{name}/000"]["shared_mask"]["digest"] == src["digest"]


def test_mismatched_mask_is_refused(protocol_run, data, tmp_path, capsys):
    """A mask learned on other data (the source file changed) is refused in one line naming its folder;
    so is a mask file changed after it was learned."""
    out, new = tmp_path / "out", tmp_path / "data"
    shutil.copytree(protocol_run[0], out)
    shutil.copytree(data, new)
    shutil.copytree(protocol_run[0], tmp_path / "out2")
    k, _, _ = phantom_kspace(slices=3, seed=7)
    write_file(new / "a.h5", k)   # the protocol's source file now holds other data
    capsys.readouterr()
    assert _recon(new, out, "--share-pruning-mask", "protocol") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "64x64_4x" in err[0] and "other settings or data" in err[0]
    out2 = tmp_path / "out2"
    mask = out2 / RUN / "masks" / "64x64_4x" / "mask.safetensors"
    b = bytearray(mask.read_bytes())
    b[-5] ^= 0xFF   # one weight's bit flipped
    mask.write_bytes(bytes(b))
    shutil.rmtree(out2 / RUN / "slices" / "a" / "000")
    assert _recon(data, out2, "--share-pruning-mask", "protocol") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed after it was learned" in err[0]


def test_sharing_mode_is_part_of_the_run_identity(protocol_run, data, tmp_path, capsys):
    from mri_oes.recipe import Recipe
    base = Recipe.from_preset("cpu", 8, method="sparse-dip")
    assert "share_mask" not in base.identity()   # off: identities of runs made before the option stay
    assert base.override(share_mask="none").identity() == base.identity()
    assert base.override(share_mask="protocol").identity() != base.identity()
    out, _ = protocol_run
    assert json.loads((out / RUN / "run.json").read_text())["share_mask"] == "protocol"
    tmp = tmp_path / "out"
    shutil.copytree(out, tmp)
    capsys.readouterr()
    assert _recon(data, tmp) == 2   # the same folder with per-slice masks: other settings
    assert "share_mask" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--method", "sparse-dip", "dip"], None),
    (["--pruning-mask", "x.safetensors"], "--pruning-mask"),
    (["--init-from", "somewhere"], "--init-from"),
])
def test_share_refusals(data, tmp_path, capsys, extra, words):
    args = ["recon", str(data), "--out", str(tmp_path / "o"), *TINY, "--share-pruning-mask", "volume", *extra]
    if words is None:   # another method beside sparse-dip is fine: only sparse-dip shares
        from mri_oes.commands import mri
        import argparse
        p = argparse.ArgumentParser()
        sub = p.add_subparsers()
        mri.register(sub)
        a = p.parse_args(args)
        assert mri.recon_recipe(a, "dip", 4, {}).share_mask == "none"
        assert mri.recon_recipe(a, "sparse-dip", 4, {}).share_mask == "volume"
        return
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--share-pruning-mask" in err[0] and words in err[0]
    assert not (tmp_path / "o").exists()


def test_share_needs_sparse_dip(data, tmp_path, capsys):
    assert main(["recon", str(data), "--out", str(tmp_path / "o"), *TINY[2:], "--method", "dip",
                 "--share-pruning-mask", "protocol"]) == 2
    assert "only for --method sparse-dip" in capsys.readouterr().err
