"""Find fastMRI multi-coil volumes in files and directories (train / val / test / challenge layouts,
knee and brain) and describe each one without reading its k-space.

``discover(paths)`` accepts files and directories (searched recursively for ``*.h5``, sorted) and
returns one :class:`Volume` per file. Every file is validated up front (multi-coil ``kspace``
``[slices, coils, H, W]``, complex); a bad file is one :class:`~mri_oes.errors.UserError` naming it.

* **fully sampled** (train / val: ``reconstruction_rss`` present, or no ``mask`` and every
  phase-encode line holding data): undersampled with a seeded fastMRI mask (``--accel``), evaluated
  against ``reconstruction_rss`` (else the RSS of the fully sampled coil images);
* **already undersampled** (test / challenge: a ``mask`` dataset, or unsampled phase-encode lines and
  no reference): reconstructed with its own mask, no metrics.

``split`` and ``anatomy`` are read from the fastMRI naming (``multicoil_val/…``, ``file_brain_AXT2_…``,
``acquisition`` attribute ``CORPD_FBK`` = knee, ``AX…`` = brain) for the tables only; nothing depends
on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

from ..errors import UserError
from .data import _attrs, _check_kspace_dataset, _member, _open, infer_mask

SPLITS = ("train", "val", "test", "challenge")
KNEE_ACQUISITIONS = ("CORPD_FBK", "CORPDFS_FBK")


@dataclass
class Volume:
    """One fastMRI file. ``slices``: the slice indices to reconstruct (all by default)."""

    path: Path
    num_slices: int
    shape: tuple                   # kspace shape [slices, coils, H, W]
    has_rss: bool                  # reconstruction_rss present
    undersampled: bool             # own mask ('mask' dataset or unsampled lines): no metrics
    split: Optional[str] = None
    anatomy: Optional[str] = None
    acquisition: Optional[str] = None
    slices: List[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def has_reference(self) -> bool:
        return not self.undersampled

    def describe(self) -> dict:
        return {"file": str(self.path), "name": self.name, "num_slices": self.num_slices,
                "shape": list(self.shape), "reference": ("reconstruction_rss" if self.has_rss else
                                                        ("rss of fully sampled kspace" if self.has_reference
                                                         else None)),
                "undersampled": self.undersampled, "split": self.split, "anatomy": self.anatomy,
                "acquisition": self.acquisition, "slices": list(self.slices)}


def _split(path: Path) -> Optional[str]:
    for part in reversed(path.parts[:-1]):
        low = part.lower()
        for s in SPLITS:
            if low.endswith(s) or f"_{s}" in low or low == s:
                return s
    return None


def _anatomy(path: Path, acquisition: Optional[str]) -> Optional[str]:
    name = path.name.lower()
    if "brain" in name or (acquisition or "").upper().startswith("AX"):
        return "brain"
    if "knee" in name or (acquisition or "").upper() in KNEE_ACQUISITIONS:
        return "knee"
    return None


def describe_file(path) -> Volume:
    """Validate one file and describe it (reads the header datasets and one k-space slice)."""
    path = Path(path)
    with _open(path) as f:
        ds = _check_kspace_dataset(f, path)
        n = int(ds.shape[0])
        has_rss = _member(f, "reconstruction_rss", path) is not None
        if _member(f, "mask", path) is not None:
            undersampled = True
        elif has_rss:
            undersampled = False
        else:
            try:
                undersampled = infer_mask(np.asarray(ds[0])) is not None
            except OSError as e:
                raise UserError(f"{path}: cannot read 'kspace' (truncated file? {e})") from None
        attrs = _attrs(f, path)
    acq = attrs.get("acquisition")
    acq = str(acq) if acq is not None else None
    return Volume(path, n, tuple(int(s) for s in ds.shape), has_rss, undersampled, _split(path),
                  _anatomy(path, acq), acq, list(range(n)))


def _walk_h5(root: Path) -> List[Path]:
    """``*.h5`` regular files under ``root`` (sorted), skipping hidden files and folders (staging
    folders, the ESPIRiT cache) and every folder that carries mri-oes's run marker (a recon output
    inside an input folder is never read back as input); symbolic links to folders are not followed."""
    import os
    from ..rundir import MARKER_FILE
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if MARKER_FILE in filenames and Path(dirpath) != root:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            q = Path(dirpath) / name
            if name.endswith(".h5") and not name.startswith(".") and q.is_file():
                found.append(q)
    return sorted(found)


def find_files(paths: Iterable) -> List[Path]:
    """Files given, plus every ``*.h5`` under given directories (recursive, sorted; hidden entries and
    mri-oes output folders skipped). Missing paths, empty directories, anything that is not a regular
    file or a folder, and two inputs with the same file name (their outputs would collide) are
    UserErrors."""
    out: List[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = _walk_h5(p)
            if not found:
                raise UserError(f"{p}: directory holds no *.h5 file (mri-oes output folders are skipped)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists() or p.is_symlink():
            raise UserError(f"{p}: not a regular file or folder (a FIFO, device, socket or dangling link); "
                            "only regular files and folders are read")
        else:
            raise UserError(f"{p}: file not found")
    seen = {}
    for q in out:
        r = q.resolve()
        if q.name in seen and seen[q.name] != r:
            raise UserError(f"two inputs share the file name {q.name} ({seen[q.name]} and {r}); their "
                            "reconstructions/<file name>.h5 would collide: reconstruct them separately")
        seen[q.name] = r
    uniq, done = [], set()
    for q in out:
        if q.resolve() not in done:
            done.add(q.resolve())
            uniq.append(q)
    return uniq


def discover(paths: Iterable, slices: Optional[Sequence[int]] = None) -> List[Volume]:
    """Volumes under ``paths``; ``slices`` (``--slice``) selects the same indices in every volume
    (one out of range for a volume is a UserError naming the file)."""
    vols = [describe_file(p) for p in find_files(paths)]
    if slices is not None:
        for v in vols:
            bad = [s for s in slices if not 0 <= int(s) < v.num_slices]
            if bad:
                raise UserError(f"{v.path}: --slice {bad[0]} out of range: 'kspace' has {v.num_slices} "
                                f"slice(s) (0..{v.num_slices - 1})")
            v.slices = sorted({int(s) for s in slices})
    return vols


def reference_volume(vol: Volume, crop=None) -> Optional[np.ndarray]:
    """The fastMRI target of a volume, ``[all slices, h, w]`` float32: ``reconstruction_rss`` (as
    ``fastmri.evaluate`` reads it), else the RSS of the fully sampled coil images centre-cropped to
    ``crop`` (the recon size); ``None`` for undersampled files."""
    if vol.undersampled:
        return None
    from . import metrics as M
    from .problem import ifft2c_np
    with _open(vol.path) as f:
        ks = _check_kspace_dataset(f, vol.path)   # declared sizes bounded (the volume too)
        if vol.has_rss:
            rss = _member(f, "reconstruction_rss", vol.path)
            return np.asarray(rss[()], np.float32)
        imgs = [M.rss(ifft2c_np(np.asarray(ks[s]))) for s in range(vol.num_slices)]
    vol_img = np.stack(imgs).astype(np.float32)
    return vol_img if crop is None else M.center_crop(vol_img, crop).astype(np.float32)
