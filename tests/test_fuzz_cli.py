"""Bad-value matrix: every command × bad flag values and corrupt input files.

Each case must end with a NON-ZERO exit, EXACTLY ONE line on stderr (no traceback, no usage block),
and NOTHING written to ``--out`` (the folder does not exist afterwards; an ``--out`` that names an
existing file is left byte-identical). The CLI runs in-process (``mri_oes.cli.main``).

``test_base_command_runs`` checks that each command's base arguments succeed, so a case can only
pass because of the one bad value it changes.
"""
from __future__ import annotations

import os
import re
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from mri_oes.cli import main

sys.path.insert(0, os.path.dirname(__file__))

TINY = ["--levels", "2", "--width", "0.25", "--log-every", "1"]

BASE = {
    "fit": ["fit", "{img}", "--method", "sparse-dip", "--steps", "2", "--mask-steps", "2", "--density", "0.5",
            "--no-progress", *TINY],
    "denoise": ["denoise", "{img}", "--method", "dip", "--steps", "2", "--no-progress", *TINY],
    "learn-mask": ["learn-mask", "{img}", "--density", "0.5", "--mask-steps", "2", "--no-progress", *TINY],
    "recon": ["recon", "{h5}", "--accel", "4", "--method", "dip", "--steps", "2", "--no-progress", *TINY],
    "imp": ["imp", "{img}", "--rounds", "1", "--steps", "2", "--no-progress", *TINY],
    "prune-at-init": ["prune-at-init", "{img}", "--mask-source", "synflow", "--density", "0.5", "--steps", "2",
                      "--synflow-rounds", "2", "--no-progress", *TINY],
    "transfer": ["transfer", "{img}", "--mask-source", "oes", "--density", "0.5", "--mask-steps", "2",
                 "--steps", "2", "--tasks", "denoise", "--no-progress", *TINY],
    "demo": ["demo", "--steps", "2", "--mask-steps", "2", "--no-progress"],
}

NATURAL = ("fit", "denoise", "learn-mask", "imp", "prune-at-init", "transfer")
ALL = tuple(BASE)
#: the flag that means "training steps" per command (learn-mask trains only the mask)
STEPS = {"learn-mask": "--mask-steps"}
#: the learning-rate flag per command (learn-mask: the mask logits' rate)
LR = {"learn-mask": "--mask-lr"}
#: the flag that carries the density per command
DENSITY = {"transfer": "--density", "imp": "--target-density"}
#: commands where density 1 (the dense network) is meaningless (OES mask learning needs d < 1)
DENSITY_ONE_MEANINGLESS = ("fit", "learn-mask", "recon", "transfer", "demo")
#: case-specific replacements of base flags (e.g. recon needs sparse-dip for --density)
DENSITY_SETUP = {"recon": {"--method": "sparse-dip", "--mask-steps": "2"},
                 "imp": {"--rounds": None}}


def _cases():
    cases = []

    def add(cmd, cid, set_=None, drop=(), special=None):
        cases.append(pytest.param(cmd, set_ or {}, tuple(drop), special, id=f"{cmd}-{cid}"))

    for cmd in ALL:
        for v in ("nan", "-1", "inf", "0"):
            add(cmd, f"lr={v}", {LR.get(cmd, "--lr"): v})
        add(cmd, "steps=-1", {STEPS.get(cmd, "--steps"): "-1"})
        if cmd in ("fit", "transfer", "demo"):
            add(cmd, "mask-steps=-1", {"--mask-steps": "-1"})
        if cmd != "denoise":
            dvals = ["0", "1.5", "nan", "-0.1"] + (["1"] if cmd in DENSITY_ONE_MEANINGLESS else [])
            for v in dvals:
                add(cmd, f"density={v}", {**DENSITY_SETUP.get(cmd, {}), DENSITY.get(cmd, "--density"): v})
        if cmd != "demo":
            for v in ("0", "nan", "-1"):
                add(cmd, f"width={v}", {"--width": v})
            add(cmd, "levels=0", {"--levels": "0"})
        add(cmd, "log-every=0", {"--log-every": "0"})
        if cmd in NATURAL:
            for v in ("nan", "-1", "inf"):
                add(cmd, f"sigma={v}", {"--sigma": v})
        add(cmd, "device=bogus", {"--device": "bogus"})
        add(cmd, "out=existing-file", special="out-file")
        add(cmd, "seed=-1", {"--seed": "-1"})
    for v in ("nan", "-1"):
        add("recon", f"lamda={v}", {"--method": "sense", "--reg-weight": v})
    add("recon", "max-iter=0", {"--method": "sense", "--max-iter": "0"})
    add("recon", "center-fraction=nan", {"--center-fraction": "nan"})
    add("recon", "espirit-thresh=nan", {"--espirit-thresh": "nan"})
    add("learn-mask", "temperature=0", {"--temperature": "0"})
    add("fit", "min-layer-density=nan", {"--min-layer-density": "nan"})
    add("fit", "keep-fraction=nan", {"--task": "inpaint", "--keep-fraction": "nan"})
    add("imp", "prune-fraction=0", {"--prune-fraction": "0"})
    add("imp", "prune-fraction=nan", {"--prune-fraction": "nan"})
    add("imp", "rewind=-1", {"--rewind": "-1"})
    add("transfer", "imp-rounds=0", {"--mask-source": "imp", "--imp-rounds": "0", "--imp-steps": "2"})
    add("transfer", "imp-steps=-1", {"--mask-source": "imp", "--imp-steps": "-1"})
    add("prune-at-init", "synflow-rounds=0", {"--synflow-rounds": "0"})
    add("prune-at-init", "synflow-rounds=-1", {"--synflow-rounds": "-1"})
    # corrupt files
    for cmd in NATURAL:
        add(cmd, "file=non-image-png", special="bad-png")
        add(cmd, "file=pixel-bomb-png", special="bomb-png")
    for cmd in ("fit", "denoise", "learn-mask", "recon"):
        add(cmd, "file=truncated-h5", special="truncated-h5")
    add("recon", "file=huge-kspace-h5", special="huge-h5")
    add("transfer", "file=truncated-h5", {"--mri": "{trunc}"}, drop=("{img}",), special="truncated-h5")
    add("fit", "mask=nan-float-mask", {"--pruning-mask": "{nanmask}"}, special="nan-mask")
    add("fit", "mask=non-json-metadata", {"--pruning-mask": "{jsonmask}"}, special="json-mask")
    add("recon", "mask=nan-float-mask", {"--method": "sparse-dip", "--pruning-mask": "{nanmask}"}, special="nan-mask")
    return cases


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-inputs")
    rng = np.random.default_rng(0)
    img = d / "img.png"
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(img)
    from mri_fixtures import phantom_kspace, write_file
    k, _, _ = phantom_kspace(n=64, coils=4, slices=1)
    h5 = write_file(d / "phantom.h5", k)
    trunc = d / "trunc.h5"
    trunc.write_bytes(h5.read_bytes()[:2000])
    bad_png = d / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    bomb = d / "bomb.png"
    _write_png_header_only(bomb, 100_000, 100_000)
    huge = d / "huge.h5"
    with h5py.File(huge, "w") as f:   # declares 2**40 complex entries, stores (almost) none
        f.create_dataset("kspace", shape=(1, 1024, 1024, 1024 * 1024), dtype=np.complex64, chunks=(1, 1, 64, 64))
    from safetensors.torch import save_file
    nanmask = d / "nanmask.safetensors"
    _float_mask(nanmask, float("nan"), mri=False)
    jsonmask = d / "jsonmask.safetensors"
    save_file({"w": torch.ones(2, dtype=torch.uint8)}, str(jsonmask), metadata={"mri_oes": "{not json"})
    return {"img": str(img), "h5": str(h5), "trunc": str(trunc), "bad_png": str(bad_png), "bomb": str(bomb),
            "huge": str(huge), "nanmask": str(nanmask), "jsonmask": str(jsonmask)}


#: what the one line must mention for each corrupt input
EXPECT = {"bad-png": r"image", "bomb-png": r"pixels|too large", "truncated-h5": r"hdf5|truncated|MRI file",
          "huge-h5": r"limit", "nan-mask": r"nan", "json-mask": r"json"}


def _write_png_header_only(path, w, h):
    """A PNG whose IHDR declares w×h pixels, with one tiny IDAT (decompression-bomb shape)."""
    import struct
    import zlib

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


def _float_mask(path, bad_value, mri=False):
    """A mask file for the fuzz image's generator whose first tensor is float with ``bad_value``."""
    import json

    from mri_oes.generators import GeneratorConfig, build_generator
    from mri_oes.masks import FORMAT, maskable_parameters
    from safetensors.torch import save_file
    cfg = GeneratorConfig.oes(out_channels=2 if mri else 3, levels=2, width=0.25, mri=mri)
    net = build_generator(cfg, 1, (32, 32))
    tensors = {k: torch.ones(p.shape, dtype=torch.float32) for k, p in maskable_parameters(net).items()}
    first = next(iter(tensors))
    tensors[first].view(-1)[0] = bad_value
    meta = {"format": FORMAT, "generator": cfg.to_dict(), "init_seed": 1, "z_seed": 2, "scope": "weights"}
    save_file(tensors, str(path), metadata={"mri_oes": json.dumps(meta)})


def _argv(cmd, set_, drop, files, out):
    argv = [a.format(**files) for a in BASE[cmd] if a not in drop]
    for flag, val in set_.items():
        if flag in argv:
            i = argv.index(flag)
            if val is None:
                del argv[i:i + 2]
            else:
                argv[i + 1] = val.format(**files)
        elif val is not None:
            argv += [flag, val.format(**files)]
    return argv + ["--out", str(out)]


def _run(argv, capsys):
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:   # argparse
        rc = e.code if isinstance(e.code, int) else 1
    return rc, capsys.readouterr()


# ------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("cmd", ALL)
def test_base_command_runs(cmd, files, tmp_path, capsys):
    out = tmp_path / "out"
    rc, cap = _run(_argv(cmd, {}, (), files, out), capsys)
    assert rc == 0, cap.err[-2000:]
    assert out.is_dir()


@pytest.mark.parametrize("cmd,set_,drop,special", _cases())
def test_bad_value_refused_in_one_line(cmd, set_, drop, special, files, tmp_path, capsys):
    out = tmp_path / "out"
    set_ = dict(set_)
    fs = dict(files)
    if special == "bad-png":
        fs["img"] = files["bad_png"]
    elif special == "bomb-png":
        fs["img"] = files["bomb"]
    elif special == "truncated-h5":
        fs["img"] = fs["h5"] = files["trunc"]
    elif special == "huge-h5":
        fs["h5"] = files["huge"]
    before = None
    if special == "out-file":
        out = tmp_path / "existing.txt"
        out.write_text("keep me\n")
        before = out.read_bytes()
    argv = _argv(cmd, set_, drop, fs, out)
    rc, cap = _run(argv, capsys)
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert rc not in (0, None), f"exit 0 for {argv}"
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n" + "\n".join(lines[-15:])
    assert "Traceback" not in cap.err
    if special in EXPECT:   # a corrupt file is refused for the right reason
        assert re.search(EXPECT[special], lines[0], re.I), lines[0]
    if before is not None:
        assert out.is_file() and out.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]
    else:
        assert not out.exists(), f"--out was written: {sorted(p.name for p in out.rglob('*'))[:10]}"


def test_matrix_is_broad():
    """The matrix covers every command with the listed bad values (guards accidental shrinking)."""
    ids = [p.id for p in _cases()]
    assert len(ids) >= 150
    for cmd in ALL:
        assert sum(i.startswith(cmd + "-") for i in ids) >= 8
