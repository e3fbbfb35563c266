"""Figures of MRI reconstructions (matplotlib, Agg, written atomically with :func:`mri_oes.io.atomic_path`).

* :func:`comparison_figure` — one slice: the reference, the zero-filled image and each reconstruction
  (PSNR / SSIM in the titles, fastMRI convention), under each its error map ``|x − reference|`` at a
  stated gain with a colour bar, and the k-space sampling mask. Every ``recon`` slice folder gets one
  (``figure.png``: reference, zero-filled, that method).
* :func:`montage_figure` — one volume: a row per image kind (reference, methods), a column per slice.
  Every assembled ``recon`` volume gets one (``volumes/<stem>/montage.png``).
* :func:`write_recon_figures` — the cross-method figures of a ``recon`` output folder (all method
  folders of one acceleration side by side): ``OUT/figures/<stem>_<NNN>_<accel>x.png`` per slice and
  ``OUT/figures/<stem>_<accel>x_montage.png`` per volume of two or more slices. ``recon`` writes them at
  its end; ``python -m mri_oes.mri.figures OUT`` (re)writes them for an existing folder.

Images are shown in the file's units on one grey scale ``[0, data range]`` (the volume maximum of the
cropped target, the metrics' data range); an error map shows ``gain · |x − reference| / data range``
on ``[0, 1]`` (colour 1 = an error of ``1 / gain`` of the data range).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

ERROR_GAIN = 5.0
ERROR_CMAP = "inferno"
FIGURE_FILE = "figure.png"
MONTAGE_FILE = "montage.png"
MAX_MONTAGE_SLICES = 12

#: method names as a figure title shows them
LABELS = {"zero-filled": "zero-filled", "sense": "SENSE", "l1-wavelet": "L1-wavelet", "dip": "DIP",
          "sparse-dip": "Sparse-DIP", "deep-decoder": "deep decoder", "gp-dip": "GP-DIP"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path) -> Path:
    """``fig`` as an RGB PNG (no alpha channel, optimised: lossless) at ``path`` (atomic), then closed."""
    import io
    from PIL import Image
    from ..io import atomic_path
    plt = _plt()
    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=100, format="png")
    finally:
        plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im, atomic_path(path, suffix=".png") as tmp:
        im.convert("RGB").save(tmp, format="PNG", optimize=True)
    return path


def _title(label: str, metrics: Optional[dict]) -> str:
    if metrics and metrics.get("psnr") is not None:
        return f"{label}\nPSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}"
    return label


def mask_picture(mask, rows: int) -> np.ndarray:
    """The line mask ``(W,)`` as a k-space picture ``(rows, W)``: sampled phase-encode lines white."""
    m = (np.asarray(mask).reshape(-1) > 0).astype(np.float32)
    return np.broadcast_to(m[None, :], (int(rows), m.shape[0]))


def _mask_title(mask) -> str:
    m = np.asarray(mask).reshape(-1) > 0
    from .data import acs_lines
    return (f"sampling mask\n{int(m.sum())}/{m.size} lines ({m.size / max(int(m.sum()), 1):.1f}x), "
            f"{acs_lines(m)[1]} ACS")


def comparison_figure(path, reference: Optional[np.ndarray], images: Sequence[Tuple[str, np.ndarray, Optional[dict]]],
                      mask=None, data_range: Optional[float] = None, gain: float = ERROR_GAIN,
                      title: str = "") -> Path:
    """One slice side by side: ``reference`` (magnitude, or None for undersampled input), each
    ``(label, magnitude image, metrics)`` of ``images`` (same size as the reference), error maps
    ``gain · |image − reference| / data_range`` with a colour bar, and the sampling ``mask`` ``(W,)``
    (k-space lines). ``data_range``: the grey scale's and the error's maximum (default: the
    reference's maximum, else the largest image's). Written atomically; returns ``path``."""
    plt = _plt()
    imgs = [(lab, np.abs(np.asarray(x, np.float64)), m) for lab, x, m in images]
    ref = None if reference is None else np.abs(np.asarray(reference, np.float64))
    if data_range is None or not data_range > 0:
        data_range = float(ref.max()) if ref is not None else max(float(x.max()) for _, x, _ in imgs)
        data_range = data_range or 1.0
    panels = ([("reference (fully sampled)", ref, None)] if ref is not None else []) + imgs
    ncol = len(panels) + (mask is not None)
    nrow = 2 if ref is not None else 1
    h, w = panels[0][1].shape
    cw = 2.6
    fig, axes = plt.subplots(nrow, ncol, figsize=(cw * ncol + 0.9, cw * nrow * h / w + 0.8 * nrow + 0.4),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    for j, (lab, x, m) in enumerate(panels):
        axes[0, j].imshow(x, cmap="gray", vmin=0, vmax=data_range, interpolation="nearest")
        axes[0, j].set_title(_title(lab, m), fontsize=9)
    err_im = None
    if ref is not None:
        axes[1, 0].axis("off")
        axes[1, 0].text(0.5, 0.5, f"error maps:\n{gain:g} x |x - reference|\n/ data range {data_range:.4g}",
                        ha="center", va="center", fontsize=9, transform=axes[1, 0].transAxes)
        for j, (lab, x, m) in enumerate(imgs, start=1):
            err = gain * np.abs(x - ref) / data_range
            err_im = axes[1, j].imshow(err, cmap=ERROR_CMAP, vmin=0, vmax=1, interpolation="nearest")
            axes[1, j].set_title(f"|error| x {gain:g}: {lab}", fontsize=9)
    if mask is not None:
        j = ncol - 1
        axes[0, j].imshow(mask_picture(mask, h), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0, j].set_title(_mask_title(mask), fontsize=9)
        axes[0, j].set_xlabel("phase encode (k-space)", fontsize=8)
        if nrow > 1:
            axes[1, j].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if err_im is not None:   # in the free cell under the mask (else beside the error maps)
        kw = {"cax": axes[1, -1].inset_axes([0.04, 0.0, 0.08, 1.0])} if mask is not None else \
            {"ax": list(axes[1, 1:]), "fraction": 0.03, "pad": 0.01}
        cb = fig.colorbar(err_im, **kw)
        cb.set_label(f"{gain:g} x |error| / data range", fontsize=8)
    return save_figure(fig, path)


def montage_figure(path, rows: Sequence[Tuple[str, np.ndarray, Optional[List[dict]]]], slices: Sequence[int],
                   data_range: Optional[float] = None, title: str = "") -> Path:
    """One volume: a row per ``(label, [slices, h, w] magnitude stack, per-slice metrics or None)``,
    a column per slice (at most :data:`MAX_MONTAGE_SLICES`, evenly spaced, named in the title).
    Written atomically; returns ``path``."""
    plt = _plt()
    n = len(slices)
    pick = list(range(n)) if n <= MAX_MONTAGE_SLICES else \
        sorted(set(np.linspace(0, n - 1, MAX_MONTAGE_SLICES).round().astype(int).tolist()))
    stacks = [(lab, np.abs(np.asarray(x, np.float64)), m) for lab, x, m in rows]
    if data_range is None or not data_range > 0:
        data_range = max(float(x.max()) for _, x, _ in stacks) or 1.0
    h, w = stacks[0][1].shape[-2:]
    cw = 1.9
    fig, axes = plt.subplots(len(stacks), len(pick), figsize=(cw * len(pick) + 0.6, cw * len(stacks) * h / w
                                                              + 0.55 * len(stacks) + 0.4), squeeze=False)
    for i, (lab, x, m) in enumerate(stacks):
        for j, k in enumerate(pick):
            ax = axes[i, j]
            ax.imshow(x[k], cmap="gray", vmin=0, vmax=data_range, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            q = m[k] if m else None
            t = f"slice {slices[k]}" + (f"\n{q['psnr']:.2f} dB / {q['ssim']:.3f}" if q and q.get("psnr") is not None else "")
            ax.set_title(t, fontsize=7)
            if j == 0:
                ax.set_ylabel(lab, fontsize=9)
    sub = title + (f" ({len(pick)} of {n} slices)" if len(pick) < n else "")
    if sub:
        fig.suptitle(sub, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ a recon output
def slice_views(file, index: int, settings: dict, shape: Sequence[int]):
    """``(reference or None, zero-filled RSS, line mask)`` of one slice as ``recon`` saw it:
    the slice undersampled with the run's mask (``settings``: a run's ``run.json``: accel, mask_type,
    seed, center_fraction), both images centre-cropped to ``shape`` (the reconstruction's size)."""
    from . import metrics as M
    from .data import load_slice, undersample
    from .problem import ifft2c_np
    sl = load_slice(file, index)
    accel = settings.get("accel") if sl.mask is None else None
    k_us, mask, _ = undersample(sl, accel, settings.get("mask_type", "equispaced"), settings.get("seed", 0),
                                settings.get("center_fraction"))
    zf = M.center_crop(M.rss(ifft2c_np(k_us)), shape)
    if sl.reference is not None:
        ref = M.center_crop(sl.reference, shape)
    elif sl.fully_sampled:
        ref = M.center_crop(M.rss(ifft2c_np(sl.kspace)), shape)
    else:
        ref = None
    return ref, zf, mask


def _runs(out: Path) -> List[Tuple[Path, dict]]:
    from .volume import METHODS
    runs = []
    for f in sorted(Path(out).glob("*/run.json")):
        try:
            s = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if s.get("method") in METHODS:
            runs.append((f.parent, s))
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(runs, key=lambda r: (order[r[1]["method"]], str(r[0])))


def _fresh(path: Path, folders) -> bool:
    """Whether figure ``path`` exists and is newer than every slice record it shows."""
    try:
        t = path.stat().st_mtime
        return all((Path(d) / "metrics.json").stat().st_mtime <= t for d in folders)
    except OSError:
        return False


def write_recon_figures(out, force: bool = False) -> List[Path]:
    """The cross-method figures of a ``recon`` output folder ``OUT`` (see the module doc), from the
    complete slice folders of its runs; the reference, zero-filled image and sampling mask come from
    the input file (recomputed with each acceleration's mask). A figure newer than every slice it
    shows is kept (``force``: rewrite all). Returns the figure paths."""
    from .volume import RECON_FILE, read_record
    out = Path(out)
    groups = {}   # (tag) -> {(stem, slice): [(run settings, slice folder, record)]}
    for root, s in _runs(out):
        tag = f"{s['accel']}x" if s.get("accel") is not None else "own-mask"
        for d in sorted(root.glob("slices/*/[0-9][0-9][0-9]")):
            if (d / "metrics.json").is_file() and (d / RECON_FILE).is_file():   # complete (renamed into place)
                groups.setdefault(tag, {}).setdefault((d.parent.name, int(d.name)), []).append((s, d, read_record(d)))
    written = []
    for tag, by_slice in groups.items():
        volumes = {}
        for (stem, idx), items in sorted(by_slice.items()):
            s0, d0, r0 = items[0]
            fig = out / "figures" / f"{stem}_{idx:03d}_{tag}.png"
            volumes.setdefault(stem, []).append((idx, fig, r0, items))
            if not force and _fresh(fig, [d for _, d, _ in items]):
                written.append(fig)
                continue
            recon_shape = np.load(d0 / RECON_FILE).shape
            ref, zf, mask = slice_views(r0["file"], idx, s0, recon_shape)
            methods = [(LABELS.get(s["method"], s["method"]), np.load(d / RECON_FILE), r.get("final"))
                       for s, d, r in items if s["method"] != "zero-filled"]
            rng = r0.get("data_range")
            images = [("zero-filled", zf, r0.get("zero_filled"))] + methods
            written.append(comparison_figure(fig, ref, images, mask, rng,
                                             title=f"{Path(r0['file']).name}, slice {idx}, {tag}"))
        for stem, sl in volumes.items():
            fig = out / "figures" / f"{stem}_{tag}_montage.png"
            if len(sl) < 2:
                continue
            if not force and _fresh(fig, [d for v in sl for _, d, _ in v[3]]):
                written.append(fig)
                continue
            r0, items0 = sl[0][2], sl[0][3]
            views = [slice_views(v[2]["file"], v[0], v[3][0][0], np.load(v[3][0][1] / RECON_FILE).shape) for v in sl]
            rows = []
            if views[0][0] is not None:
                rows.append(("reference", np.stack([w[0] for w in views]), None))
            rows.append(("zero-filled", np.stack([w[1] for w in views]), [v[2].get("zero_filled") for v in sl]))
            for s, _, _ in items0:
                if s["method"] == "zero-filled":
                    continue
                per = [{t["method"]: (d, r) for t, d, r in v[3]}.get(s["method"]) for v in sl]
                if any(p is None for p in per):
                    continue   # this method lacks some slices
                rows.append((LABELS.get(s["method"], s["method"]), np.stack([np.load(d / RECON_FILE) for d, _ in per]),
                             [r.get("final") for _, r in per]))
            written.append(montage_figure(fig, rows, [v[0] for v in sl], r0.get("data_range"),
                                          title=f"{Path(r0['file']).name}, {tag}"))
    return written


def main(argv=None) -> int:
    import argparse
    import sys
    p = argparse.ArgumentParser(prog="python -m mri_oes.mri.figures",
                                description="(re)write the cross-method figures of a recon output folder")
    p.add_argument("out", help="a recon output folder (--out of mri-oes recon)")
    a = p.parse_args(argv)
    if not Path(a.out).is_dir():
        print(f"{p.prog}: error: {a.out}: no such folder", file=sys.stderr)
        return 2
    for f in write_recon_figures(a.out, force=True):
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
