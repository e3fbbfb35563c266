"""Write a fastMRI-layout multi-coil HDF5 file from fully sampled k-space, or cut pseudo-scans from
``brain8_full.h5``.

    python data_scripts/make_fastmri_file.py from-array KSPACE.npy|KSPACE(.cfl) OUT.h5 [--axes ...]
    python data_scripts/make_fastmri_file.py brain-scans OUT_DIR [--brain ../shared/data/mri/brain8_full.h5]

Layout (fastMRI multi-coil): ``kspace`` complex64 [slices, coils, H, W] (H = readout, W = phase
encode, DC at the centre), ``reconstruction_rss`` float32 [slices, H, W], ``ismrmrd_header`` with
encoded/recon matrix sizes written the fastMRI way (``x`` = H = readout, ``y`` = W = phase encode),
attrs ``acquisition``, ``max``, ``norm``, ``patient_id``.

``brain-scans`` — HONEST NOTE: there is one real fully sampled brain slice. The "scans" made here are
the SAME subject and slice, changed by (a) keeping a subset of the coils, (b) keeping only the centre
of k-space (a lower-resolution acquisition of the same field of view) and (c) a linear phase ramp in
k-space (a circular shift of the image, i.e. a different field-of-view position). They are useful to
exercise transfer code paths (different coil counts, grids, shifts), NOT as independent subjects:
results "across scans" made this way overstate how well anything generalises.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ifft2c(k):
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax)


def header_xml(h, w):
    size = f"<matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>"
    fov = f"<fieldOfView_mm><x>{h}</x><y>{w}</y><z>5</z></fieldOfView_mm>"
    return ('<?xml version="1.0" encoding="utf-8"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
            f"<encoding><encodedSpace>{size}{fov}</encodedSpace><reconSpace>{size}{fov}</reconSpace>"
            "<encodingLimits><kspace_encoding_step_1><minimum>0</minimum>"
            f"<maximum>{w - 1}</maximum><center>{w // 2}</center></kspace_encoding_step_1>"
            "</encodingLimits></encoding></ismrmrdHeader>")


def write_fastmri(path, kspace, acquisition="UNKNOWN", patient_id="unknown", **attrs):
    """kspace: fully sampled complex [slices, coils, H, W] or [coils, H, W], DC centred. Atomic."""
    from mri_oes.io import atomic_path
    k = np.asarray(kspace, np.complex64)
    if k.ndim == 3:
        k = k[None]
    if k.ndim != 4:
        raise SystemExit(f"kspace must be [coils, H, W] or [slices, coils, H, W], got {k.shape}")
    if not np.isfinite(k.view(np.float32)).all():
        raise SystemExit("kspace contains NaN/Inf")
    rss = np.sqrt((np.abs(ifft2c(k)) ** 2).sum(1)).astype(np.float32)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f["kspace"] = k
            f["reconstruction_rss"] = rss
            f["ismrmrd_header"] = header_xml(*k.shape[-2:])
            f.attrs.update(acquisition=acquisition, max=float(rss.max()), norm=float(np.linalg.norm(rss)),
                           patient_id=patient_id, **attrs)
    return k.shape


def read_array(path):
    p = Path(path)
    if p.suffix == ".npy":
        return np.load(p)
    base = str(p.with_suffix("")) if p.suffix in (".cfl", ".hdr") else str(p)
    with open(base + ".hdr") as f:
        f.readline()
        dims = [int(d) for d in f.readline().split()]
    return np.fromfile(base + ".cfl", np.complex64).reshape(dims, order="F")


def brain_scans(brain):
    """(name, kspace [coils, H, W], description) variants of the one brain slice."""
    with h5py.File(brain, "r") as f:
        k = f["kspace"][0]
    C, H, W = k.shape
    yield "scan1_full", k, "all 8 coils, full 230x180 grid"
    yield "scan2_coils0-5", k[:6], "coils 0-5 only"
    ch, cw = 192, 160
    t, l = H // 2 - ch // 2, W // 2 - cw // 2
    yield "scan3_lowres", k[:, t:t + ch, l:l + cw] * np.sqrt(ch * cw / (H * W)), \
        f"centre {ch}x{cw} of k-space (lower resolution, same FOV)"
    ky = np.arange(H)[:, None] - H // 2
    kx = np.arange(W)[None, :] - W // 2
    ramp = np.exp(-2j * np.pi * (12 * ky / H + 20 * kx / W))
    yield "scan4_shift_coils2-7", (k * ramp)[2:], "coils 2-7, image circularly shifted by (12, 20) pixels"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("from-array", help="write one file from a .npy or BART .cfl k-space array")
    a.add_argument("kspace")
    a.add_argument("out")
    a.add_argument("--axes", default=None,
                   help="axis order of the input as letters c,h,w[,s] (e.g. 'hwc' for BART 230x180x8); "
                        "default: [coils,H,W] or [slices,coils,H,W]")
    a.add_argument("--acquisition", default="UNKNOWN")
    a.add_argument("--patient-id", default="unknown")
    b = sub.add_parser("brain-scans", help="cut pseudo-scans from brain8_full.h5 (same subject! see doc)")
    b.add_argument("out_dir")
    b.add_argument("--brain", default=str(ROOT.parent / "shared" / "data" / "mri" / "brain8_full.h5"))
    args = ap.parse_args(argv)
    if args.cmd == "from-array":
        k = np.squeeze(read_array(args.kspace))
        if args.axes:
            if len(args.axes) != k.ndim:
                raise SystemExit(f"--axes {args.axes!r} has {len(args.axes)} letters, array has {k.ndim} dims {k.shape}")
            order = [args.axes.index(c) for c in ("s" if "s" in args.axes else "") + "chw"]
            k = k.transpose(order)
        print(args.out, write_fastmri(args.out, k, args.acquisition, args.patient_id))
    else:
        out = Path(args.out_dir)
        for name, k, desc in brain_scans(args.brain):
            shape = write_fastmri(out / f"brain8_{name}.h5", k, "AXT1", "espirit_example_brain",
                                  derived_from=str(args.brain), derivation=desc)
            print(out / f"brain8_{name}.h5", shape, desc)


if __name__ == "__main__":
    main()
