"""Loading a run folder never runs code; resumes only from the same run; inputs decoded at
their real bit depth with size limits; corrupt masks and MRI files refused in one line.

The pickle payload below creates a marker file when it is unpickled (``torch.load(weights_only=False)``
or ``pickle.load``): :func:`test_payload_is_live` shows it fires when loaded that way, every other test
places it under every state-file name the code looks for and asserts the marker never appears.
"""
from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from mri_oes import core, methods, statefile
from mri_oes.cli import main
from mri_oes.errors import RunMismatch, StateFileError, UserError
from mri_oes.generators import GeneratorConfig
from mri_oes.io import atomic_path, clean_stale_temps, load_image, write_json
from mri_oes.masks import Mask
from operators.natural import Denoise

sys.path.insert(0, os.path.dirname(__file__))
from mri_fixtures import phantom_kspace, write_file  # noqa: E402

TINY = ["--levels", "2", "--width", "0.25", "--log-every", "1", "--no-progress"]


class _Payload:
    """Unpickling this creates ``marker`` (stands for arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fingerprint": "", "step": 1, "net": _Payload(marker)}, path)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PWNED"


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    p = tmp_path_factory.mktemp("img") / "img.png"
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(p)
    return p


def test_payload_is_live(tmp_path, marker):
    """The test payload really executes when a checkpoint is loaded the old way (so the tests below
    can fail)."""
    _plant(tmp_path / "checkpoint.pt", marker)
    torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------- library: core.fit
def _tiny_problem(seed=0, scale=1.0):
    torch.manual_seed(seed)
    clean = torch.rand(1, 3, 16, 16) * scale
    cfg = GeneratorConfig.oes(out_channels=3, levels=2, width=0.25)
    net, z, _ = methods.setup_generator(cfg, (16, 16), 0)
    return net, z, Denoise((3, 16, 16)), clean, cfg


def test_fit_ignores_pickled_checkpoint_and_refuses_garbage_state(tmp_path, marker):
    net, z, A, y, _ = _tiny_problem()
    ck = tmp_path / "checkpoint.pt"
    _plant(ck, marker)
    with pytest.warns(UserWarning, match="never loaded"):
        res = methods.train_generator(net, z, A, y, steps=3, checkpoint=ck, checkpoint_every=1)
    assert res.resumed_from is None and not marker.exists()
    # a pickle (or any garbage) under the state-file name: refused in one line, never unpickled
    _plant(tmp_path / "checkpoint.safetensors", marker)
    net, z, A, y, _ = _tiny_problem()
    with pytest.raises(StateFileError, match="not a readable state file"):
        methods.train_generator(net, z, A, y, steps=3, checkpoint=ck, checkpoint_every=1)
    assert not marker.exists()


def _crash_after(step):
    def cb(row):
        if row["step"] >= step:
            raise KeyboardInterrupt
    return cb


def test_fit_resume_refuses_other_data_or_lr_naming_keys(tmp_path):
    ck = tmp_path / "checkpoint.safetensors"
    net, z, A, y, _ = _tiny_problem()
    with pytest.raises(KeyboardInterrupt):
        methods.train_generator(net, z, A, y, steps=8, lr=0.01, log_every=1, checkpoint=ck, checkpoint_every=2,
                                callback=_crash_after(5), identity={"method": "dip"})
    assert ck.is_file()
    ident = statefile.read_identity(ck)
    assert ident["hyper"]["lr"] == 0.01 and ident["run"] == {"method": "dip"}
    # other data (another image): refused, naming the data digest
    net, z, A, _, _ = _tiny_problem()
    other = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with pytest.raises(RunMismatch) as e:
        methods.train_generator(net, z, A, other, steps=8, lr=0.01, log_every=1, checkpoint=ck,
                                checkpoint_every=2, identity={"method": "dip"})
    assert e.value.keys == ["y"] and "differs in y" in str(e.value)
    # another learning rate: refused, naming it
    net, z, A, y, _ = _tiny_problem()
    with pytest.raises(RunMismatch) as e:
        methods.train_generator(net, z, A, y, steps=8, lr=0.02, log_every=1, checkpoint=ck, checkpoint_every=2,
                                identity={"method": "dip"})
    assert e.value.keys == ["hyper.lr"] and "0.02" in str(e.value)
    # the same run resumes and equals an uninterrupted one
    net, z, A, y, _ = _tiny_problem()
    res = methods.train_generator(net, z, A, y, steps=8, lr=0.01, log_every=1, checkpoint=ck, checkpoint_every=2,
                                  identity={"method": "dip"})
    net2, z2, A2, y2, _ = _tiny_problem()
    ref = methods.train_generator(net2, z2, A2, y2, steps=8, lr=0.01, log_every=1)
    assert res.resumed_from == 4 and not ck.exists()
    assert torch.equal(res.output, ref.output)
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history]


def test_oes_mask_learning_resumes_from_checkpoint(tmp_path):
    ck = tmp_path / "mask_checkpoint.safetensors"
    net, z, A, y, _ = _tiny_problem()
    real_fit = core.fit

    def crashing_fit(*a, **kw):
        kw["callback"] = _crash_after(4)
        return real_fit(*a, **kw)

    core.fit = crashing_fit
    try:
        with pytest.raises(KeyboardInterrupt):
            methods.learn_oes_mask(net, z, A, y, 0.3, steps=8, log_every=1, checkpoint=ck, checkpoint_every=2)
    finally:
        core.fit = real_fit
    assert ck.is_file() and statefile.read_identity(ck)["param"]["type"] == "ConcreteMask"
    net, z, A, y, _ = _tiny_problem()
    m1, r1 = methods.learn_oes_mask(net, z, A, y, 0.3, steps=8, log_every=1, checkpoint=ck, checkpoint_every=2)
    net, z, A, y, _ = _tiny_problem()
    m2, _ = methods.learn_oes_mask(net, z, A, y, 0.3, steps=8, log_every=1)
    assert r1.resumed_from == 4
    assert all(torch.equal(m1.keep[k], m2.keep[k]) for k in m1.keep)


def test_statefile_roundtrip_and_identity_from_header_only(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(1, 2, 5, 5)).sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(3)
    tree = {"net": net.state_dict(), "opt": opt.state_dict(), "gen": g.get_state(), "hist": [{"a": float("nan")}],
            "c": torch.randn(4, dtype=torch.complex64), "t": (1, "x", None)}
    p = statefile.save_state(tmp_path / "s.safetensors", tree, {"seed": 1, "data": {"y": "abc"}})
    assert oct(p.stat().st_mode & 0o777) != "0o600"
    assert statefile.read_identity(p) == {"seed": 1, "data": {"y": "abc"}}
    back = statefile.load_state(p, {"seed": 1, "data": {"y": "abc"}})
    assert torch.equal(back["c"], tree["c"]) and back["t"] == (1, "x", None) and np.isnan(back["hist"][0]["a"])
    torch.optim.Adam(net.parameters()).load_state_dict(back["opt"])
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    with pytest.raises(RunMismatch) as e:
        statefile.load_state(p, {"seed": 2, "data": {"y": "abd"}})
    assert e.value.keys == ["data.y", "seed"]


# ------------------------------------------------------------------------------- library: IMP
def _imp(out, **kw):
    from mri_oes import imp
    net, z, A, y, cfg = _tiny_problem()
    args = dict(rounds=2, out_dir=out, lr=0.01, log_every=1, verbose=False)
    args.update(kw)
    return imp.run_imp(cfg, (16, 16), 0, [(A, y)], 2, **args)


def test_imp_never_unpickles_and_refuses_other_settings(tmp_path, marker):
    out = tmp_path / "imp"
    res = _imp(out, rounds=3, rewind=1)
    assert {p.name for p in out.glob("round_*.safetensors")} == {f"round_0{i}.safetensors" for i in range(4)}
    assert (out / "rewind_weights.safetensors").is_file()
    # a rerun with another lr: refused naming the key (nothing reused, nothing deleted)
    with pytest.raises(RunMismatch) as e:
        _imp(out, rounds=3, rewind=1, lr=0.02)
    assert "lr" in e.value.keys and (out / "round_03.safetensors").is_file()
    # an unfinished state whose rewind weights are a pickle: never loaded, refused in one line
    st = json.loads((out / "imp_state.json").read_text())
    st.update(finished=False, rounds=st["rounds"][:2], next_mask=None)
    write_json(out / "imp_state.json", st)
    (out / "rewind_weights.safetensors").unlink()
    _plant(out / "rewind_weights.pt", marker)
    for r in range(4):
        _plant(out / f"round_{r:02d}.ckpt.pt", marker)
    with pytest.raises(UserError, match="never loaded"):
        _imp(out, rounds=3, rewind=1)
    assert not marker.exists()
    # garbage under the rewind state name: refused, not unpickled
    _plant(out / "rewind_weights.safetensors", marker)
    with pytest.raises(StateFileError):
        _imp(out, rounds=3, rewind=1)
    assert not marker.exists()
    assert res["rounds"][-1]["round"] == 3


def test_imp_fresh_run_leaves_no_stale_rounds(tmp_path):
    out = tmp_path / "imp"
    _imp(out, rounds=3)
    _imp(out, rounds=1, resume=False)
    assert sorted(p.name for p in out.glob("round_*.safetensors")) == ["round_00.safetensors", "round_01.safetensors"]
    st = json.loads((out / "imp_state.json").read_text())
    assert len(st["rounds"]) == 2 and st["identity"]["rounds"] == 1


# ----------------------------------------------------------------------------- library: transfer
def test_transfer_reuses_only_the_same_run(tmp_path):
    from mri_oes import transfer
    torch.manual_seed(0)
    imgs = {"a": torch.rand(3, 16, 16)}
    cfg = GeneratorConfig.oes(out_channels=3, levels=2, width=0.25)
    kw = dict(tasks=("denoise",), cfg=cfg, densities=[0.5], methods_=("oes",), mask_steps=2, train_steps=2,
              log_every=1)
    if "none" in getattr(transfer, "MASK_SOURCES", ()):
        kw["methods_"] = ("none", "oes")
    r1 = transfer.natural_transfer(imgs, tmp_path / "t", seed=0, **kw)
    r2 = transfer.natural_transfer(imgs, tmp_path / "t", seed=0, **kw)   # identical: reused
    assert [r.get("final_psnr") for r in r1["rows"]] == [r.get("final_psnr") for r in r2["rows"]]
    with pytest.raises(RunMismatch) as e:
        transfer.natural_transfer(imgs, tmp_path / "t", seed=1, **kw)
    assert "seed" in e.value.keys
    with pytest.raises(RunMismatch) as e:
        transfer.natural_transfer(imgs, tmp_path / "t", seed=0, **{**kw, "lr": 0.02})
    assert "lr" in e.value.keys
    with pytest.raises(RunMismatch) as e:
        transfer.natural_transfer({"a": torch.rand(3, 16, 16)}, tmp_path / "t", seed=0, **kw)
    assert any(k.startswith("source.y") for k in e.value.keys)


# --------------------------------------------------------------------------------- CLI: every entry
def _staging(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


PICKLE_NAMES = ("checkpoint.pt", "fit.ckpt.pt", "mask_checkpoint.pt", "rewind_weights.pt", "round_00.ckpt.pt",
                "round_01.ckpt.pt", "masks/oes_d0p5.ckpt.pt", "masks/imp_d0p5/rewind_weights.pt",
                "masks/imp_d0p5/round_00.ckpt.pt")
STATE_NAMES = ("checkpoint.safetensors", "mask_checkpoint.safetensors", "rewind_weights.safetensors",
               "round_00.ckpt.safetensors", "round_01.ckpt.safetensors", "masks/oes_d0p5.ckpt.safetensors")

COMMANDS = {
    "fit": ["fit", "{img}", "--method", "dip", "--steps", "4", "--checkpoint-every", "1"],
    "learn-mask": ["learn-mask", "{img}", "--density", "0.5", "--mask-steps", "4", "--checkpoint-every", "1"],
    "prune-at-init": ["prune-at-init", "{img}", "--mask-source", "magnitude", "--density", "0.5", "--steps", "4",
                      "--checkpoint-every", "1"],
    "imp": ["imp", "{img}", "--rounds", "1", "--steps", "2"],
    "transfer": ["transfer", "{img}", "--mask-source", "oes", "--density", "0.5", "--mask-steps", "2",
                 "--steps", "2", "--tasks", "denoise"],
}


def _interrupted_run(argv, monkeypatch):
    """Run a command until its first fit starts, then 'kill' it (the staging folder stays)."""
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(core, "fit", boom)
    try:
        rc = main(argv)   # the CLI reports an interrupt (non-zero) and keeps the staging folder
    except KeyboardInterrupt:
        rc = 130
    monkeypatch.undo()
    assert rc != 0


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_planted_pickles_never_execute(cmd, tmp_path, image_file, marker, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = [a.format(img=image_file) for a in COMMANDS[cmd]] + TINY + ["--out", str(out)]
    _interrupted_run(argv, monkeypatch)
    stage = _staging(out)
    assert stage.is_dir(), "the interrupted run left no staging folder to plant into"
    for d in (stage, out.parent):
        for name in PICKLE_NAMES:
            _plant(d / name, marker)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(argv)
    assert not marker.exists(), f"{cmd}: a planted pickle was executed"
    assert rc == 0, capsys.readouterr().err
    # pickles (garbage) under the state-file names of an interrupted run: refused, never executed
    out2 = tmp_path / "run2"
    argv2 = argv[:-1] + [str(out2)]
    _interrupted_run(argv2, monkeypatch)
    for name in STATE_NAMES:
        _plant(_staging(out2) / name, marker)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = main(argv2)
        except SystemExit as e:
            rc = e.code
    err = capsys.readouterr().err
    assert not marker.exists(), f"{cmd}: a planted state file was unpickled"
    assert rc == 2, err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]   # (transfer prints progress lines first)
    assert "error:" in last and "not a readable state file" in last


def test_cli_resume_with_other_lr_is_refused_naming_it(tmp_path, image_file, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["fit", str(image_file), "--method", "dip", "--steps", "4", "--checkpoint-every", "1"] + TINY
    _interrupted_run(argv + ["--out", str(out)], monkeypatch)
    capsys.readouterr()
    assert main(argv + ["--lr", "0.02", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------- inputs: images
def test_16bit_png_loads_at_its_bit_depth(tmp_path):
    a = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I;16")
    x = load_image(p, grayscale=True)
    assert x.shape == (1, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], a / 65535.0, atol=1e-6)
    rgb = load_image(p)
    assert rgb.shape == (3, 32, 32) and abs(float(rgb.mean()) - 0.5) < 1e-3


def test_palette_and_alpha_images(tmp_path):
    rng = np.random.default_rng(0)
    rgba = (rng.random((8, 8, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        x = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(x, rgba[..., :3].transpose(2, 0, 1) / 255.0, atol=1e-6)
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (3, 8, 8)


def _png_declaring(path, w, h):
    import struct
    import zlib

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (10_000, 10_000)])
def test_pixel_bomb_refused_before_decoding(tmp_path, w, h):
    p = tmp_path / "bomb.png"
    _png_declaring(p, w, h)
    with pytest.raises(UserError, match="pixels|too large"):
        load_image(p)


def test_result_files_get_ordinary_permissions_and_stale_temps_are_cleaned(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.npy") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    stale = [tmp_path / ".metrics.json.k2j4_x9a.json", tmp_path / "sub" / ".mask.safetensors.abcdefgh.safetensors"]
    for p in stale:
        p.parent.mkdir(exist_ok=True)
        p.write_text("half")
    keep = [tmp_path / ".lock", tmp_path / "metrics.json", tmp_path / ".hidden_config"]
    for p in keep:
        p.write_text("x")
    removed = clean_stale_temps(tmp_path)
    assert sorted(removed) == sorted(stale) and all(p.exists() for p in keep)


# ----------------------------------------------------------------------------------- inputs: masks
def _mask_file(path, tensors, meta):
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata={"mri_oes": meta if isinstance(meta, str) else json.dumps(meta)})
    return path


def test_nan_inf_and_non_binary_masks_refused(tmp_path):
    from mri_oes.masks import FORMAT
    meta = {"format": FORMAT, "scope": "weights"}
    for bad, msg in ((float("nan"), "NaN"), (float("inf"), "NaN or Inf"), (0.5, "other than 0/1")):
        t = torch.ones(4)
        t[1] = bad
        with pytest.raises(UserError, match=msg):
            Mask.load(_mask_file(tmp_path / "m.safetensors", {"w": t}, meta))
    ok = Mask.load(_mask_file(tmp_path / "ok.safetensors", {"w": torch.tensor([0.0, 1.0, 1.0, 0.0])}, meta))
    assert ok.n_kept == 2


@pytest.mark.parametrize("meta,msg", [("{not json", "not JSON"), ("[1, 2]", "not an object"),
                                      ({"format": "mri_oes.mask/1", "init_seed": "zero"}, "init_seed"),
                                      ({"format": "mri_oes.mask/1", "generator": [1]}, "generator"),
                                      ({"format": "mri_oes.mask/1", "kept_weights": 3}, "kept_weights")])
def test_bad_mask_metadata_is_one_line(tmp_path, meta, msg):
    p = _mask_file(tmp_path / "m.safetensors", {"w": torch.ones(4, dtype=torch.uint8)}, meta)
    with pytest.raises(UserError, match=msg) as e:
        Mask.load(p)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------ inputs: MRI
def test_mri_declared_sizes_checked_before_reading(tmp_path):
    from mri_oes.mri import data as D
    huge = tmp_path / "huge.h5"
    with h5py.File(huge, "w") as f:
        f.create_dataset("kspace", shape=(1, 64, 4096, 4096 * 16), dtype=np.complex64, chunks=(1, 1, 64, 64))
    with pytest.raises(UserError, match="limit"):
        D.load_slices(huge, [0])
    k, _, _ = phantom_kspace(n=32, coils=2, slices=1)
    big_mask = tmp_path / "bigmask.h5"
    with h5py.File(big_mask, "w") as f:
        f["kspace"] = k
        f.create_dataset("mask", shape=(1 << 40,), dtype=np.float32, chunks=(1 << 16,))
    with pytest.raises(UserError, match="'mask' has"):
        D.load_slices(big_mask, [0])
    nan_mask = write_file(tmp_path / "nanmask.h5", k, extra={"mask": np.full(32, np.nan, np.float32)})
    with pytest.raises(UserError, match="0/1"):
        D.load_slices(nan_mask, [0])


def test_own_mask_acceleration_is_actual_and_a_different_accel_refused(tmp_path):
    from mri_oes.mri import data as D
    k, _, _ = phantom_kspace(n=64, coils=2, slices=1)
    m = np.zeros(64, np.float32)
    m[::3] = 1
    m[28:36] = 1
    f = write_file(tmp_path / "us.h5", k * m, extra={"mask": m})
    sl = D.load_slice(f, 0)
    actual = 64 / m.sum()
    assert D.own_mask_acceleration(sl) == pytest.approx(actual)
    _, _, info = D.undersample(sl, None)
    assert info["acceleration"] == pytest.approx(actual)
    with pytest.raises(UserError, match="actual acceleration"):
        D.undersample(sl, 8)
    with pytest.raises(UserError, match="actual acceleration"):
        D.own_mask_acceleration(sl, 4)   # 2.46x actual: a 4x claim is refused too


def test_espirit_cache_never_writes_into_an_input(tmp_path):
    from mri_oes.mri import data as D
    from mri_oes.mri.espirit import cached_espirit_maps, check_cache_path
    k, _, _ = phantom_kspace(n=64, coils=4, slices=1)
    f = write_file(tmp_path / "in.h5", k)
    before = f.read_bytes()
    with pytest.raises(UserError, match="input file"):
        check_cache_path(f, inputs=[f])
    with pytest.raises(UserError, match="not an ESPIRiT cache"):
        check_cache_path(f)
    sl = D.load_slice(f, 0)
    ku, mask, _ = D.undersample(sl, 4)
    maps, info = cached_espirit_maps(ku, mask, cache=f)   # computed, never cached into the input
    assert not info["cache_hit"] and f.read_bytes() == before
    cache = tmp_path / "cache.h5"
    cached_espirit_maps(ku, mask, cache=cache)
    assert check_cache_path(cache) == cache
    with h5py.File(cache, "r") as h:
        assert h.attrs["mri_oes_cache"] == "espirit/1"


def test_no_unpickling_anywhere_in_the_package():
    """No loader in the toolkit can run code from a file: no torch.load / pickle.load / np.load with
    allow_pickle in the package sources (docstrings quoting them in ``backticks`` excepted)."""
    import re
    root = Path(__file__).resolve().parents[1]
    pat = re.compile(r"(?<!`)\b(torch\.load\(|pickle\.loads?\(|dill\.load|joblib\.load|allow_pickle\s*=\s*True)")
    hits = [f"{p.relative_to(root)}:{i}" for d in ("mri_oes", "operators") for p in (root / d).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pat.search(line)]
    assert hits == []
