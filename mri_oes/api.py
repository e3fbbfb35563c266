"""One call from Python: reconstruct one multi-coil slice with any method, the way ``mri-oes recon`` does.

    import mri_oes
    image, record = mri_oes.reconstruct("brain.h5", slice=0, accel=4, method="l1-wavelet")
    image, record = mri_oes.reconstruct(kspace, mask=mask, method="sparse-dip", preset="cpu")

:func:`reconstruct` is ``recon`` for one slice, not a second implementation: the keyword arguments
are recon's flags (their argparse names: ``steps``, ``density``, ``reg_weight`` ...), resolved against
``--preset`` by the same code (:func:`mri_oes.commands.mri.recon_recipe`), validated by the same checks,
and the slice is reconstructed by :func:`mri_oes.mri.volume.run_slice` into a recon run folder
(``out``, or a temporary folder removed afterwards). A NumPy k-space is first written as a one-slice
fastMRI file (``kspace`` [1, coils, H, W]; ``mask`` when a sampling mask is given; ``reconstruction_rss``
when a reference is given), so it takes exactly the file route.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from .errors import UserError

#: Python names accepted for recon flags whose argparse destination differs (the flag's own name)
ALIASES = {"reg_weight": "lamda", "kl_weight": "lam", "pruning_mask": "mask_path"}
#: recon destinations that are not per-slice settings (inputs, parallelism, output handling)
_NOT_SETTINGS = {"paths", "method", "slice", "accel", "preset", "out", "overwrite", "workers", "gpus_per_task",
                 "ray_address", "retries", "func", "progress", "no_espirit_cache",
                 "share_mask"}   # one slice here: a mask shared across slices is recon's (--share-pruning-mask)


def _recon_defaults():
    """recon's flags with their defaults, as its parser makes them (one source of truth)."""
    from .cli import build_parser
    return build_parser().parse_args(["recon", "_", "--method", "zero-filled"])


def _line_mask(mask, W: int) -> np.ndarray:
    """A fastMRI k-space sampling mask as a ``(W,)`` 0/1 line mask: ``(W,)``, fastMRI's ``(1, 1, W, 1)``,
    or ``(H, W)`` with identical rows (lines along the readout H)."""
    m = np.asarray(mask, dtype=np.float32)
    m = np.squeeze(m)
    if m.ndim == 2 and np.all(m == m[:1]):
        m = m[0]
    if m.ndim != 1 or m.shape[0] != W:
        raise UserError(f"mask: expected a line mask of W={W} phase-encode lines (shape (W,), (1, 1, W, 1) or "
                        f"(H, W) with equal rows), got shape {np.shape(mask)}")
    if not np.isin(m, (0.0, 1.0)).all() or not m.any():
        raise UserError("mask: expected 0/1 values with at least one sampled line")
    return m


def _write_slice_file(path: Path, kspace: np.ndarray, mask: Optional[np.ndarray],
                      reference: Optional[np.ndarray]) -> Path:
    import h5py
    from .io import atomic_path
    if path.is_file():
        return path   # same content (the name is its digest)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=kspace[None].astype(np.complex64))
            if mask is not None:
                f.create_dataset("mask", data=mask.astype(np.float32))
            if reference is not None:
                f.create_dataset("reconstruction_rss", data=np.asarray(reference, np.float32)[None])
    return path


def _array_input(kspace, mask, reference, folder: Path) -> Path:
    """A NumPy slice as a one-slice fastMRI file in ``folder`` named by a digest of its content."""
    from .mri import metrics as M
    from .mri.problem import ifft2c_np
    k = np.asarray(kspace)
    if k.ndim != 3 or not np.iscomplexobj(k):
        raise UserError(f"kspace: expected a complex array (coils, H, W), got {k.dtype} of shape {k.shape} "
                        "(or pass a fastMRI file path)")
    k = k.astype(np.complex64)
    if not np.isfinite(k.view(np.float32)).all():
        raise UserError("kspace: contains NaN or Inf")
    m = None
    if mask is not None:
        m = _line_mask(mask, k.shape[-1])
        if reference is None and np.all(np.any(np.abs(k) > 0, axis=(0, 1))):
            reference = M.rss(ifft2c_np(k))   # fully sampled input: the fastMRI target of this slice
        k = k * m[None, None, :]
    if reference is not None:
        reference = np.asarray(reference, np.float32)
        if reference.ndim != 2 or reference.shape[0] > k.shape[1] or reference.shape[1] > k.shape[2]:
            raise UserError(f"reference: expected a magnitude image (h, w) no larger than the k-space grid "
                            f"{k.shape[1:]}, got shape {reference.shape}")
    h = hashlib.sha1(k.tobytes())
    for a in (m, reference):
        h.update(b"|" if a is None else np.ascontiguousarray(a).tobytes())
    return _write_slice_file(folder / f"kspace-{h.hexdigest()[:12]}.h5", k, m, reference)


def _recon_args(flags: dict, method: str, preset: str, accel, progress: bool):
    """recon's parsed flags with ``flags`` (Python names, :data:`ALIASES`) set; an unknown name is one
    UserError listing recon's settings."""
    args = _recon_defaults()
    known = set(vars(args)) - _NOT_SETTINGS
    for name, value in flags.items():
        dest = ALIASES.get(name, name)
        if dest not in known:
            valid = sorted((known - set(ALIASES.values())) | set(ALIASES))
            raise UserError(f"reconstruct() got an unknown setting {name!r}; recon's settings are: "
                            f"{', '.join(valid)}")
        setattr(args, dest, value)
    args.method, args.preset, args.progress = [method], preset, bool(progress)
    args.accel = None if accel is None else [int(accel)]
    return args


def _input_file(kspace, mask, reference, index: int, folder: Path):
    """``(fastMRI file, slice index)`` of the input: the file itself, or a one-slice file in ``folder``
    of an array (or of a file's slice under a given mask or reference)."""
    if isinstance(kspace, (str, Path)):
        if mask is None and reference is None:
            return Path(kspace), int(index)
        from .mri.data import load_slice
        sl = load_slice(kspace, index)   # a file slice under a given mask
        return _array_input(sl.kspace, mask, reference if reference is not None else sl.reference, folder), 0
    return _array_input(kspace, mask, reference, folder), 0


def reconstruct(kspace: Union[str, Path, np.ndarray], mask=None, *, accel: Optional[int] = None,
                method: str = "l1-wavelet", preset: str = "cpu", slice: int = 0, reference=None,
                out: Optional[Union[str, Path]] = None, progress: bool = False,
                **flags) -> Tuple[np.ndarray, dict]:
    """Reconstruct one multi-coil slice; returns ``(image, record)``.

    * ``kspace``: a fastMRI multi-coil file path (with ``slice``), or a complex NumPy array
      ``(coils, H, W)`` (H = readout, W = phase encode, DC at the centre, as fastMRI stores it).
    * ``mask``: the k-space sampling mask (``(W,)`` lines, fastMRI's ``(1, 1, W, 1)``, or ``(H, W)``); the
      k-space is multiplied by it. Or ``accel`` (e.g. 4 or 8): a seeded fastMRI line mask is drawn as
      ``recon --accel`` does (``mask_type``, ``center_fraction``, ``seed``). A file that is already
      undersampled (its own ``mask``) needs neither.
    * ``method``: ``zero-filled``, ``sense``, ``l1-wavelet``, ``dip``, ``sparse-dip``, ``deep-decoder``,
      ``gp-dip``; ``preset``: ``cpu`` or ``gpu`` (the network settings not given).
    * ``reference``: the fully sampled magnitude image for metrics (array input; a fully sampled array
      given with ``mask`` gets its own RSS, a fastMRI file its ``reconstruction_rss``).
    * ``**flags``: any ``mri-oes recon`` flag by its Python name, e.g. ``steps=200``, ``density=0.5``,
      ``reg_weight=0.003`` (SigPy's ``lamda``; default: chosen per scan), ``max_iter=50``, ``pruning_mask="mask.safetensors"``,
      ``device="cuda"``, ``threads=2``, ``seed=1``.
    * ``out``: keep the recon run folder here (``OUT/<method>_<accel>x/slices/<stem>/<NNN>/``: the
      slice's metrics.json, reconstruction.npy and pictures; a second call with the same input and
      settings returns the stored result); default: a temporary folder, removed before returning.

    ``image``: float32 magnitude ``(h, w)`` at the fastMRI target size, in the k-space's original units
    (what recon writes to ``reconstruction.npy``). ``record``: the slice's result record (recon's
    ``metrics.json``: ``final`` PSNR/SSIM/NMSE in the fastMRI convention when there is a reference,
    ``zero_filled``, ``time``, ``config`` ...). Bad input raises :class:`mri_oes.errors.UserError`
    naming the argument.
    """
    from .cli_common import setup_runtime
    from .commands.mri import _check_run_folder, _validate, recon_recipe
    from .io import write_json
    from .mri.dataset import discover, reference_volume
    from .mri.volume import METHODS, RECON_FILE, SliceJob, read_record, run_slice, volume_data_range

    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    args = _recon_args(flags, method, preset, accel, progress)
    if mask is not None and accel is not None:
        raise UserError("give mask= (a k-space sampling mask) or accel= (draw one), not both")
    if not isinstance(kspace, (str, Path)) and accel is None and mask is None:
        raise UserError("kspace array: give mask= (the sampling mask) or accel= (e.g. 4) for a fully sampled one")
    if args.density is not None and method != "sparse-dip":
        raise UserError("density is only for method='sparse-dip'")

    tmp = None if out is not None else tempfile.TemporaryDirectory(prefix="mri_oes-")
    root = Path(out) if out is not None else Path(tmp.name)
    try:
        path, index = _input_file(kspace, mask, reference, slice, root / ".inputs")
        vols = discover([path], [index])
        setup_runtime(args)
        esp = _validate(args, vols)
        vol = vols[0]
        run_accel = None if vol.undersampled else args.accel[0]
        s = recon_recipe(args, method, run_accel, esp, int(args.threads), 1).with_runtime(progress=bool(progress))
        _check_run_folder(root / s.run_name, s, False)
        (root / s.run_name).mkdir(parents=True, exist_ok=True)
        write_json(root / s.run_name / "run.json", s.identity())
        rng = volume_data_range(reference_volume(vol)) if vol.has_reference else None
        job = SliceJob(str(vol.path), index, s, str(root / s.run_name), rng, None)
        run_slice(job)
        image = np.load(job.slice_dir / RECON_FILE)
        record = read_record(job.slice_dir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return image, record
