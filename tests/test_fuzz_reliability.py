"""Reliability matrix, second round: what a hostile or unlucky user can do to the CLI beyond bad flag
values (``tests/test_fuzz_cli.py``).

Categories: ``--overwrite`` and output paths (nothing that is not ours is ever deleted; empty and
symlinked ``--out`` work), ``recon`` resume (a slice is reused only for the same data), declared sizes
(refused before reading; peak memory of the refusals measured), links out of an HDF5 file, one-line
failures (disk full, read-only output, interrupts, tampered run folders, a damaged ESPIRiT cache,
invalid k-space before any run folder), CSV cells a spreadsheet would evaluate.

Every refusal must end with a NON-ZERO exit and EXACTLY ONE line on stderr; a traceback anywhere in
stderr fails the case. The CLI runs in-process (``mri_oes.cli.main``); recon cases use the bundled
``brain8_small.h5`` (1 slice, 8 coils, 96x80) and the ``zero-filled`` method.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import mri_oes
from mri_oes.cli import main

BRAIN = Path(mri_oes.__file__).parent / "data" / "brain8_small.h5"
PEPPER = Path(mri_oes.__file__).parent / "data" / "pepper_128.png"
FIT = ["--method", "dip", "--steps", "1", "--levels", "2", "--width", "0.25", "--log-every", "1", "--no-progress"]
RECON = ["--method", "zero-filled", "--accel", "4", "--no-progress", "--workers", "1"]


def _cli(argv, capsys):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def _refused(argv, capsys, match=None, started=False):
    """A non-zero exit whose stderr is ONE error line; ``started``: a refusal met after recon printed
    its start line (that line may precede the error)."""
    rc, err = _cli(argv, capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc != 0, err
    if started:
        assert lines and lines[0].startswith("mri-oes recon: ") and len(lines) <= 2, err
    else:
        assert len(lines) == 1, err
    assert ": error: " in lines[-1] and sum(": error: " in ln for ln in lines) == 1, err
    if match:
        assert match in lines[-1], lines[-1]
    return lines[-1]


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _partials(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


@pytest.fixture
def scan(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(BRAIN, d / "scan.h5")
    return d / "scan.h5"


def _h5(path, kspace=None, header=True, rss=True, **extra):
    """A small fastMRI-layout file from the bundled brain (or the given k-space)."""
    with h5py.File(BRAIN, "r") as src:
        k = src["kspace"][()] if kspace is None else kspace
        with h5py.File(path, "w") as f:
            f["kspace"] = k
            if rss:
                f["reconstruction_rss"] = src["reconstruction_rss"][()] if kspace is None else \
                    np.sqrt((np.abs(np.fft.ifft2(k)) ** 2).sum(1)).astype(np.float32)[:, :96, :80]
            if header:
                f["ismrmrd_header"] = src["ismrmrd_header"][()]
            for k_, v in extra.items():
                f[k_] = v
    return Path(path)


# ------------------------------------------------------------------------- overwrite: never ours
def test_overwrite_never_deletes_a_folder_holding_the_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(PEPPER, d / "img.png")
    before = _tree(d)
    _refused(["fit", d / "img.png", *FIT, "--out", d, "--overwrite"], capsys, "input")
    assert _tree(d) == before and not _partials(tmp_path)


def test_overwrite_never_deletes_a_users_folder(tmp_path, capsys):
    own = tmp_path / "own"
    own.mkdir()
    (own / "keep.txt").write_text("mine")
    _refused(["fit", PEPPER, *FIT, "--out", own, "--overwrite"], capsys, "not an mri-oes run folder")
    assert (own / "keep.txt").read_text() == "mine" and not _partials(tmp_path)


def test_overwrite_replaces_our_own_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(["fit", PEPPER, *FIT, "--out", out], capsys)[0] == 0
    assert (out / ".mri-oes-run").is_file()
    (out / "stale.txt").write_text("old")
    assert _cli(["fit", PEPPER, *FIT, "--out", out, "--overwrite"], capsys)[0] == 0
    assert (out / "metrics.json").is_file() and not (out / "stale.txt").exists() and not _partials(tmp_path)


def test_planted_partial_symlink_is_never_followed(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    (tmp_path / ".out.partial").symlink_to(victim)
    _refused(["fit", PEPPER, *FIT, "--out", tmp_path / "out", "--overwrite"], capsys, "symbolic link")
    assert (victim / "keep.txt").read_text() == "mine" and not (tmp_path / "out").exists()


def test_recon_overwrite_never_deletes_a_users_folder_inside_out(scan, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "zero-filled_4x").mkdir(parents=True)
    (out / "zero-filled_4x" / "notes.txt").write_text("mine")
    _refused(["recon", scan, *RECON, "--out", out, "--overwrite"], capsys, "not an mri-oes recon run folder")
    assert (out / "zero-filled_4x" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------- --out paths
@pytest.mark.parametrize("link", [False, True], ids=["empty-folder", "symlink-to-empty-folder"])
def test_existing_empty_out_succeeds(tmp_path, capsys, link):
    target = tmp_path / "empty"
    target.mkdir()
    out = target
    if link:
        out = tmp_path / "link"
        out.symlink_to(target)
    assert _cli(["fit", PEPPER, *FIT, "--out", out], capsys)[0] == 0
    assert (target / "metrics.json").is_file() and not _partials(tmp_path)


@pytest.mark.parametrize("case", ["dot", "sub-dotdot", "dangling-symlink", "name-300", "file-as-parent",
                                  "not-permitted", "read-only"])
def test_bad_out_paths_one_line_nothing_stranded(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    out = {"dot": ".", "sub-dotdot": "sub/..", "dangling-symlink": "dangling", "name-300": "x" * 300,
           "file-as-parent": "afile/run", "not-permitted": "/sys/mri-oes-run", "read-only": "ro/run"}[case]
    if case == "dangling-symlink":
        os.symlink(tmp_path / "missing", tmp_path / "dangling")
    if case == "file-as-parent":
        (tmp_path / "afile").write_text("x")
    if case == "read-only":   # a read-only file system: every creation fails with EROFS
        real_mkdir = Path.mkdir

        def ro_mkdir(self, *a, **k):
            if "ro" in self.parts:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real_mkdir(self, *a, **k)
        monkeypatch.setattr(Path, "mkdir", ro_mkdir)
    before = sorted(p.name for p in tmp_path.iterdir())
    _refused(["fit", PEPPER, *FIT, "--out", out], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing stranded


@pytest.mark.parametrize("case", ["dot", "dangling-symlink"])
def test_recon_bad_out_paths(scan, tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    if case == "dangling-symlink":
        os.symlink(tmp_path / "missing", tmp_path / "dangling")
    before = sorted(p.name for p in tmp_path.iterdir())
    _refused(["recon", scan, *RECON, "--out", {"dot": ".", "dangling-symlink": "dangling"}[case]], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_recon_out_inside_input_folder_is_not_read_back(scan, capsys):
    out = scan.parent / "out"
    assert _cli(["recon", scan.parent, *RECON, "--out", out], capsys)[0] == 0
    assert list(out.rglob("*.h5"))   # reconstructions and the ESPIRiT cache live there
    rc, err = _cli(["recon", scan.parent, *RECON, "--out", out], capsys)
    assert rc == 0 and "1 file(s)" in err and "(1 already done)" in err, err


def test_recon_empty_out_folder_succeeds(scan, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert _cli(["recon", scan, *RECON, "--out", out], capsys)[0] == 0
    assert (out / "zero-filled_4x" / "slices" / "scan" / "000" / "metrics.json").is_file()


# --------------------------------------------------------------------------- resume: same data only
@pytest.mark.parametrize("change", ["kspace", "reference"])
def test_recon_resume_never_reuses_a_slice_of_other_data(scan, tmp_path, capsys, change):
    out = tmp_path / "out"
    assert _cli(["recon", scan, *RECON, "--out", out], capsys)[0] == 0
    st = scan.stat()
    with h5py.File(scan, "r+") as f:   # other data, same size, same mtime
        name = "kspace" if change == "kspace" else "reconstruction_rss"
        f[name][...] = f[name][()][..., ::-1]
    os.utime(scan, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan.stat().st_size == st.st_size
    line = _refused(["recon", scan, *RECON, "--out", out], capsys, "another run", started=True)
    assert "digest" in line or "data_range" in line
    rc, err = _cli(["recon", scan, *RECON, "--out", out, "--overwrite"], capsys)
    assert rc == 0 and "(0 already done)" in err


def test_recon_resume_reuses_the_same_data(scan, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(["recon", scan, *RECON, "--out", out], capsys)[0] == 0
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(scan, copy / "scan.h5")   # same content, another path and mtime
    rc, err = _cli(["recon", copy / "scan.h5", *RECON, "--out", out], capsys)
    assert rc == 0 and "(1 already done)" in err, err


# ------------------------------------------------------------------------------ bounded before read
def _slices_bomb(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(10 ** 9, 8, 96, 80), dtype=np.complex64, chunks=(1, 1, 96, 80),
                         compression="gzip")


def _coils_bomb(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(1, 10 ** 6, 96, 80), dtype=np.complex64, chunks=(1, 1, 96, 80),
                         compression="gzip")


def _grid_bomb(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(1, 1, 10 ** 5, 80), dtype=np.complex64, chunks=(1, 1, 96, 80),
                         compression="gzip")


def _header_bomb(path):   # a fixed-length 2**31-byte ismrmrd_header, never written (a small file)
    _h5(path, header=False)
    with h5py.File(path, "a") as f:
        t = h5py.h5t.C_S1.copy()
        t.set_size(2 ** 31)
        h5py.h5d.create(f.id, b"ismrmrd_header", t, h5py.h5s.create(h5py.h5s.SCALAR))


def _header_array_bomb(path):   # ismrmrd_header as 2**33 bytes (a compressed uint8 array)
    _h5(path, header=False)
    with h5py.File(path, "a") as f:
        f.create_dataset("ismrmrd_header", shape=(2 ** 33,), dtype=np.uint8, chunks=(1 << 20,), compression="gzip")


def _vlen_header_bomb(path):   # a 2 MB variable-length header (above the 1 MB limit)
    _h5(path, header=False)
    with h5py.File(path, "a") as f:
        f["ismrmrd_header"] = "<" * (2 << 20)


def _mask_bomb(path):   # a sparse 1 GiB uint8 mask tensor: the file declares it, the disk holds none
    header = json.dumps({"__metadata__": {"mri_oes": "{}"},
                         "w": {"dtype": "U8", "shape": [1 << 30], "data_offsets": [0, 1 << 30]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + (1 << 30))


def _json_depth_bomb(path):
    path.write_text("[" * 200_000 + "]" * 200_000)


def _json_size_bomb(path):   # a sparse 1 GiB metrics.json
    with open(path, "wb") as f:
        f.truncate(1 << 30)


BOMBS = {  # name: (maker, file name, command, words of the refusal)
    "slices-1e9": (_slices_bomb, "bomb.h5", "recon", "limit"),
    "coils-1e6": (_coils_bomb, "bomb.h5", "recon", "limit"),
    "grid-1e5": (_grid_bomb, "bomb.h5", "recon", "limit"),
    "header-2^31-string": (_header_bomb, "bomb.h5", "recon", "limit"),
    "header-2^33-array": (_header_array_bomb, "bomb.h5", "recon", "expected one string"),
    "header-vlen-2MB": (_vlen_header_bomb, "bomb.h5", "recon", "limit"),
    "mask-tensor-1GiB": (_mask_bomb, "mask.safetensors", "mask", "limit"),
    "state-tensor-1GiB": (_mask_bomb, "checkpoint.safetensors", "state", "limit"),
    "json-depth": (_json_depth_bomb, "metrics.json", "summarize", "limit"),
    "json-1GiB": (_json_size_bomb, "metrics.json", "summarize", "limit"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_declared_sizes_refused_before_reading(tmp_path, capsys, name):
    make, fname, cmd, match = BOMBS[name]
    d = tmp_path / "in"
    d.mkdir()
    make(d / fname)
    if cmd == "recon":
        _refused(["recon", d / fname, *RECON, "--out", tmp_path / "out"], capsys, match)
        assert not (tmp_path / "out").exists()
    elif cmd == "mask":
        _refused(["recon", BRAIN, "--method", "sparse-dip", "--accel", "4", "--pruning-mask", d / fname,
                  "--out", tmp_path / "out"], capsys, match)
    elif cmd == "state":
        from mri_oes.errors import StateFileError
        from mri_oes.statefile import load_state
        with pytest.raises(StateFileError, match="limit"):
            load_state(d / fname, None)
    else:
        _refused(["summarize", d], capsys, match)


_PEAK_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import test_fuzz_reliability as T
    from pathlib import Path
    from mri_oes.errors import UserError
    from mri_oes.mri.dataset import discover
    from mri_oes.masks import Mask
    from mri_oes.statefile import load_state
    from mri_oes.schema import collect
    tmp = Path({tmp!r})
    def run(cmd, p):
        if cmd == "recon":
            from mri_oes.mri.data import check_slices
            discover([p]); check_slices(p)
        elif cmd == "mask":
            Mask.load(p)
        elif cmd == "state":
            load_state(p, None)
        else:
            collect([p])
    import tracemalloc
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {{"baseline_mb": peak0 / 1024}}
    for name, (make, fname, cmd, _) in T.BOMBS.items():
        d = tmp / name
        d.mkdir()
        make(d / fname)
        tracemalloc.start()
        try:
            run(cmd, d / fname)
            out[name] = "accepted"
        except UserError:
            traced = tracemalloc.get_traced_memory()[1] / 2 ** 20
            out[name] = [(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024, traced]
        tracemalloc.stop()
    print(json.dumps(out))
""")


def test_bomb_refusals_peak_memory_under_200_mb(tmp_path):
    """Every declared-size refusal above, in one fresh process: the peak resident memory
    (``ru_maxrss``) grows by at most 200 MB over the process's peak after its imports, and the peak
    of the allocations traced during each refusal (``tracemalloc``: Python objects and numpy arrays)
    is at most 200 MB."""
    code = _PEAK_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    peaks = json.loads(res.stdout.strip().splitlines()[-1])
    base = peaks.pop("baseline_mb")
    assert set(peaks) == set(BOMBS)
    for name, v in peaks.items():
        assert v != "accepted", name
        rss, traced = v
        assert rss <= 200, f"{name}: peak resident memory grew by {rss:.0f} MB (baseline {base:.0f} MB)"
        assert traced <= 200, f"{name}: {traced:.0f} MB allocated during the refusal"
    print(f"baseline {base:.0f} MB; growth / traced peak (MB):",
          {k: (round(a, 1), round(b, 2)) for k, (a, b) in peaks.items()})


def test_large_attribute_is_capped_in_recon_json(tmp_path, capsys):
    scan = tmp_path / "scan.h5"
    with h5py.File(BRAIN, "r") as src, h5py.File(scan, "w", libver="latest") as f:   # dense attributes
        for k in src:
            f[k] = src[k][()]
        f.attrs["acquisition"] = np.bytes_(b"A" * (4 << 20))   # a 4 MB attribute
        f.attrs["note"] = "=" * (1 << 20)
    out = tmp_path / "out"
    assert _cli(["recon", scan, *RECON, "--out", out], capsys)[0] == 0
    assert (out / "recon.json").stat().st_size < 200_000


# ----------------------------------------------------------------------------------- links out
def _external_storage(path, tmp):
    raw = tmp / "raw.bin"
    raw.write_bytes(Path("/etc/passwd").read_bytes()[:4096].ljust(4096, b"\0") * 40)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(1, 1, 8, 8), dtype=np.complex64, external=[(str(raw), 0, 4096)])


def _external_link(path, tmp):
    _h5(tmp / "other.h5")
    with h5py.File(path, "w") as f:
        f["kspace"] = h5py.ExternalLink(str(tmp / "other.h5"), "/kspace")


def _virtual(path, tmp):
    src = _h5(tmp / "other.h5")
    with h5py.File(src, "r") as s:
        shape = s["kspace"].shape
    layout = h5py.VirtualLayout(shape=shape, dtype=np.complex64)
    layout[...] = h5py.VirtualSource(str(src), "kspace", shape=shape)
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("kspace", layout)


def _soft_loop(path, tmp):
    with h5py.File(path, "w") as f:
        f["a"] = h5py.SoftLink("/kspace")
        f["kspace"] = h5py.SoftLink("/a")


def _dangling(path, tmp):
    with h5py.File(path, "w") as f:
        f["kspace"] = h5py.SoftLink("/nowhere")


def _rss_soft_link(path, tmp):
    _h5(path, rss=False)
    with h5py.File(path, "a") as f:
        f["reconstruction_rss"] = h5py.SoftLink("/kspace")


LINKS = {"external-storage": (_external_storage, "external storage"),
         "external-link": (_external_link, "external link"),
         "virtual-dataset": (_virtual, "virtual dataset"),
         "soft-link-loop": (_soft_loop, "soft link"),
         "dangling-soft-link": (_dangling, "soft link"),
         "rss-soft-link": (_rss_soft_link, "soft link")}


@pytest.mark.parametrize("name", list(LINKS))
def test_links_out_of_the_file_are_refused(tmp_path, capsys, name):
    make, match = LINKS[name]
    make(tmp_path / "link.h5", tmp_path)
    _refused(["recon", tmp_path / "link.h5", *RECON, "--out", tmp_path / "out"], capsys, match)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "dangling"])
def test_only_regular_files_are_inputs(tmp_path, capsys, kind):
    p = tmp_path / "x.h5"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "device":
        p.symlink_to("/dev/zero")
    else:
        p.symlink_to(tmp_path / "missing.h5")
    _refused(["recon", p, *RECON, "--out", tmp_path / "out"], capsys)
    _refused(["summarize", p], capsys)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_summarize_never_reads_a_fifo_or_a_device(tmp_path, capsys, kind):
    run = tmp_path / "run"
    run.mkdir()
    if kind == "fifo":
        os.mkfifo(run / "metrics.json")
    else:
        (run / "metrics.json").symlink_to("/dev/zero")
    _refused(["summarize", tmp_path], capsys, "not a regular file")


# --------------------------------------------------------------------------- every failure one line
def test_disk_full_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    import mri_oes.io as io
    real = io.save_npy

    def full(path, arr):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(io, "save_npy", full)
    monkeypatch.setattr("mri_oes.runner.save_npy", full)
    out = tmp_path / "run"
    _refused(["fit", PEPPER, *FIT, "--out", out], capsys, "No space left")
    assert not out.exists()
    monkeypatch.setattr(io, "save_npy", real)
    monkeypatch.setattr("mri_oes.runner.save_npy", real)
    assert _cli(["fit", PEPPER, *FIT, "--out", out], capsys)[0] == 0 and not _partials(tmp_path)


def test_recon_disk_full_is_one_line(scan, tmp_path, capsys, monkeypatch):
    import mri_oes.io as io

    def full(path, arr):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(io, "save_npy", full)
    _refused(["recon", scan, *RECON, "--out", tmp_path / "out"], capsys, "No space left", started=True)


@pytest.mark.parametrize("where", ["parser", "discover"])
def test_interrupt_during_start_up_is_one_line_exit_130(scan, tmp_path, capsys, monkeypatch, where):
    def interrupt(*a, **k):
        raise KeyboardInterrupt
    if where == "parser":
        monkeypatch.setattr("mri_oes.cli.build_parser", interrupt)
    else:
        monkeypatch.setattr("mri_oes.mri.dataset.discover", interrupt)
    rc, err = _cli(["recon", scan, *RECON, "--out", tmp_path / "out"], capsys)
    assert rc == 130 and len(err.strip().splitlines()) == 1 and "interrupted" in err


@pytest.mark.parametrize("op,args", [("super-resolution", '{"factor": {"a": 1}}'),
                                     ("super-resolution", '{"factor": [2, 3]}'),
                                     ("inpaint", '{"keep_fraction": [0.5]}'),
                                     ("inpaint", '{"keep_fraction": 0.5, "seed": {"x": [1]}}'),
                                     ("denoise", '{"sigma": {"x": 1}}'),
                                     ("inpaint", "[" * 5000 + "]" * 5000)])
def test_nested_operator_args_are_one_line(tmp_path, capsys, op, args):
    _refused(["fit", PEPPER, *FIT, "--operator", op, "--operator-args", args, "--out", tmp_path / "o"], capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("what", ["run.json", "slice-metrics", "slice-identity", "volume-metrics"])
def test_tampered_recon_folder_is_one_line_or_recomputed(scan, tmp_path, capsys, what):
    out = tmp_path / "out"
    assert _cli(["recon", scan, *RECON, "--out", out], capsys)[0] == 0
    run = out / "zero-filled_4x"
    f = {"run.json": run / "run.json", "slice-metrics": run / "slices" / "scan" / "000" / "metrics.json",
         "slice-identity": run / "slices" / "scan" / "000" / "identity.json",
         "volume-metrics": run / "volumes" / "scan" / "metrics.json"}[what]
    f.write_text("[" * 100 + "]" * 100 if what != "volume-metrics" else "[1, 2]")
    if what == "volume-metrics":   # a derived file: rebuilt from the slices
        assert _cli(["recon", scan, *RECON, "--out", out], capsys)[0] == 0
        assert json.loads(f.read_text())["level"] == "volume"
    else:
        _refused(["recon", scan, *RECON, "--out", out], capsys, started=True)


def test_damaged_espirit_cache_is_rebuilt(scan, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["recon", scan, "--method", "sense", "--max-iter", "2", "--accel", "4", "--no-progress", "--out", out]
    assert _cli(argv, capsys)[0] == 0
    cache = out / ".espirit" / "scan_000.h5"
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 3])   # cut short, as a full disk used to leave it
    shutil.rmtree(out / "sense_4x")
    assert _cli(argv, capsys)[0] == 0
    with h5py.File(cache, "r") as f:   # rebuilt, readable, marked
        assert f.attrs["mri_oes_cache"] == "espirit/1" and len(f.keys()) == 1


def _with_kspace(path, fn):
    with h5py.File(BRAIN, "r") as s:
        k = fn(s["kspace"][()])
    return _h5(path, kspace=k.astype(np.complex64), rss=False)


INVALID = {
    "nan-kspace": (lambda p: _with_kspace(p, lambda k: np.where(np.arange(k.size).reshape(k.shape) == 7, np.nan, k)),
                   "NaN"),
    "inf-kspace": (lambda p: _with_kspace(p, lambda k: k * np.float32(np.inf)), "NaN or Inf"),
    "denormal-kspace": (lambda p: _with_kspace(p, lambda k: (k / np.abs(k).max() * 1e-40)), "denormal"),
    "zero-reference": (lambda p: _h5(p, rss=False, reconstruction_rss=np.zeros((1, 96, 80), np.float32)),
                       "all zeros"),
    "malformed-header": (lambda p: _h5(p, header=False, ismrmrd_header="<ismrmrdHeader><encoding>"), "header"),
    "header-not-string": (lambda p: _h5(p, header=False, ismrmrd_header=np.arange(3)), "ismrmrd_header"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_input_refused_before_any_run_folder(tmp_path, capsys, name):
    make, match = INVALID[name]
    p = make(tmp_path / "bad.h5")
    _refused(["recon", p, *RECON, "--out", tmp_path / "out"], capsys, match)
    assert not (tmp_path / "out").exists()


def test_serial_tasks_retry_as_they_say():
    from mri_oes import parallel
    calls = []

    def flaky(t):
        calls.append(t)
        if calls.count(t) < 2:
            raise RuntimeError("transient")
        return t * 10

    assert list(parallel.run_tasks(flaky, [1], workers=1, retries=2)) == [(1, 10)]
    calls.clear()

    def broken(t):
        calls.append(t)
        raise RuntimeError("always")
    [(t, out)] = list(parallel.run_tasks(broken, [3], workers=1, retries=2))
    assert isinstance(out, parallel.TaskFailure) and out.retried and calls == [3, 3, 3]


# ------------------------------------------------------------------------------------ CSV cells
def test_csv_cells_neutralised_strings_only():
    from mri_oes.io import csv_cell
    assert csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert [csv_cell(v) for v in ("+cmd", "-2+3", "@SUM(A1)")] == ["'+cmd", "'-2+3", "'@SUM(A1)"]
    assert [csv_cell(v) for v in (-1.5, -3, "-1.5", "-inf", "1e-3", None, "plain")] == \
        [-1.5, -3, "-1.5", "-inf", "1e-3", "", "plain"]


def test_summarize_and_recon_tables_neutralise_formulas(tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    evil = d / '=HYPERLINK("http:⁄⁄x","y").h5'
    shutil.copy(BRAIN, evil)
    out = tmp_path / "out"
    assert _cli(["recon", evil, *RECON, "--out", out], capsys)[0] == 0
    csv_path = tmp_path / "all.csv"
    assert _cli(["summarize", out, "--csv", csv_path], capsys)[0] == 0
    for f in [csv_path, out / "zero-filled_4x" / "slices.csv", out / "zero-filled_4x" / "volumes.csv",
              out / "summary.csv"]:
        for row in csv.reader(f.read_text().splitlines()):
            assert not any(c.startswith(("=", "+", "@")) for c in row), (f, row)
            assert not any(c.startswith("-") and not c[1:2].isdigit() and c[1:] not in ("inf", "nan")
                           for c in row), (f, row)
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert rows[0]["scan"].startswith("'=HYPERLINK")
