"""Reconstruct MRI volumes slice by slice (one resumable task per slice) and assemble them the fastMRI way.

Layout of one run (one method at one acceleration) under ``OUT/<method>_<accel>x/`` (``own-mask`` for
already undersampled files)::

    run.json                              settings of the run (a rerun with others is refused)
    slices/<file stem>/<NNN>/             one complete-or-absent run folder per slice (mri_oes.rundir):
        metrics.json                      the slice record (schema), fastMRI-convention metrics
        reconstruction.npy                float32 [h, w] magnitude at the target size, original units
        recon.png                         that image on the volume's grey scale
        figure.png                        reference, zero-filled, this method, error maps, sampling mask
        curve.png, network_output.npy     network methods: PSNR per step, raw output (complex, scaled
                                          units); checkpoint.safetensors while running, mask.safetensors,
        weights.safetensors               the trained weights (what ``recon --init-from`` starts from)
    masks/<key>/                          sparse-dip with --share-pruning-mask volume|protocol: the one
        mask.safetensors, metrics.json    pruning mask learned for a file (key: its stem) or a protocol
                                          (key: <H>x<W>_<accel>x), a complete-or-absent run folder whose
                                          record's ``shared_mask`` names its source slice and digest
    reconstructions/<file name>.h5        ``reconstruction`` [slices, h, w], written by
                                          fastmri.save_reconstructions once EVERY slice is complete
    volumes/<file stem>/metrics.json      the volume record: fastmri.evaluate's metrics of that file
    volumes/<file stem>/montage.png       the volume's slices: reference and this method
    slices.csv/json, volumes.csv/json     tidy tables (schema.flatten)

A slice is computed in ``slices/<stem>/.<NNN>.partial/`` and renamed into place when done; a killed
run rerun with the same command skips complete slices, resumes network fits from their checkpoints,
and (re)assembles volume files only from complete slices. :func:`run_slice` is the one per-slice
reconstruction (classical methods here, network methods through :func:`mri_oes.runner.run`); the
dataset driver (``mri-oes recon``) maps it over slices with :mod:`mri_oes.parallel`.

"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from . import metrics as M
from ..errors import UserError
from ..recipe import Recipe
from ..schema import CLASSICAL_METHODS, RECON_NETWORK_METHODS

CLASSICAL = CLASSICAL_METHODS
NETWORK = RECON_NETWORK_METHODS
METHODS = CLASSICAL + NETWORK
ERROR_GAIN = 5.0
RECON_FILE = "reconstruction.npy"
NETWORK_OUTPUT_FILE = "network_output.npy"   # a network run's raw output (complex, scaled units)


@dataclass
class SliceJob:
    file: str
    slice: int
    settings: Recipe                          # the run's recipe (Recipe.from_preset with recon's flags)
    run_root: str                             # OUT/<method>_<tag>
    data_range: Optional[float] = None        # the volume max of the cropped target (fastMRI)
    espirit_cache: Optional[str] = None
    mask_run: Optional[str] = None            # --share-pruning-mask: the masks/<key> folder this slice uses

    @property
    def stem(self) -> str:
        return Path(self.file).stem

    @property
    def slice_dir(self) -> Path:
        return slice_dir(self.run_root, self.file, self.slice)

    def __str__(self) -> str:
        return f"{self.stem} slice {self.slice} {self.settings.method} {self.settings.tag}"


@dataclass
class MaskJob:
    """Learn the one pruning mask of a file or protocol (``--share-pruning-mask``) on slice ``slice`` of
    ``file`` into ``masks/<key>/`` of the run (:func:`learn_shared_mask`)."""
    file: str
    slice: int
    settings: Recipe                          # the run's recipe (its share_mask names the mode)
    run_root: str
    key: str
    data_range: Optional[float] = None
    espirit_cache: Optional[str] = None

    @property
    def stem(self) -> str:
        return Path(self.file).stem

    @property
    def out(self) -> Path:
        return mask_dir(self.run_root, self.key)

    def __str__(self) -> str:
        return (f"shared mask {self.key} ({self.stem} slice {self.slice}) {self.settings.method} "
                f"{self.settings.tag}")


def slice_dir(run_root, file, index) -> Path:
    return Path(run_root) / "slices" / Path(file).stem / f"{int(index):03d}"


MASKS_DIR = "masks"
MASK_FILE = "mask.safetensors"


def mask_dir(run_root, key) -> Path:
    """The run folder of a shared pruning mask: ``<run>/masks/<key>/``."""
    return Path(run_root) / MASKS_DIR / key


#: recon's current inputs by file stem (:func:`register_inputs`): what :func:`is_done` compares with
_INPUTS: dict = {}
_DATA_RANGES: dict = {}


def register_inputs(vols) -> None:
    """Record the volumes a recon run reads (``slices/<stem>/`` → file), so that :func:`is_done`
    compares a finished slice with the data given now, not with the file it was made from."""
    _INPUTS.clear()
    _INPUTS.update({v.stem: v for v in vols})


def _current_data_range(vol):
    from .data import _stat_key
    from .dataset import reference_volume
    key = _stat_key(vol.path)
    if key not in _DATA_RANGES:
        _DATA_RANGES[key] = volume_data_range(reference_volume(vol)) if vol.has_reference else None
    return _DATA_RANGES[key]


def is_done(path) -> bool:
    """Whether ``path`` is a finished slice OF THE SAME DATA: its files are there and the content
    digest of the slice's k-space (and reference image) recorded in its ``identity.json`` equals that
    of the input now (:func:`mri_oes.mri.data.slice_digest`; never path, size or mtime), and so does
    the volume's data range its metrics were computed with. A slice of other data is not done (its
    rerun is refused by the run folder, naming the differing keys)."""
    from ..io import read_json
    from .data import slice_digest
    path = Path(path)
    if not ((path / "metrics.json").is_file() and (path / RECON_FILE).is_file()):
        return False
    try:
        stored = read_json(path / "identity.json", max_bytes=1 << 20, what="slice identity")
        index = int(path.name)
        vol = _INPUTS.get(path.parent.name)
        file = str(vol.path) if vol is not None else stored.get("file")
        if not isinstance(stored, dict):
            return False
        if "kspace_digest" not in stored:   # a network run's identity (mri_oes.runner): the data in "problem"
            stored = stored.get("problem")
            if not isinstance(stored, dict):
                return False
        if stored.get("slice") != index or not file:
            return False
        if stored.get("kspace_digest") != slice_digest(file, index):
            return False
        if vol is not None and stored.get("data_range") != _current_data_range(vol):
            return False
    except (UserError, OSError, ValueError, TypeError, AttributeError):
        return False
    return True


def read_record(path) -> dict:
    """A slice's ``metrics.json`` (bounded read; a tampered file is one UserError naming it)."""
    from ..io import read_json
    f = Path(path) / "metrics.json"
    rec = read_json(f, what="slice record")
    if not isinstance(rec, dict) or not isinstance(rec.get("final"), dict) or not isinstance(rec.get("time"), dict):
        raise UserError(f"{f}: not a slice record of mri-oes (tampered or foreign file); remove the slice "
                        "folder to recompute it")
    return rec


# ------------------------------------------------------------------------------------ one slice
def mri_problem(job: SliceJob):
    from .data import load_slice
    from .problem import build_problem
    s = job.settings
    sl = load_slice(job.file, job.slice)
    accel = s.accel if sl.mask is None else None
    p = build_problem(sl, accel, s.mask_type, s.seed, s.center_fraction, espirit=s.espirit,
                      cache=Path(job.espirit_cache) if job.espirit_cache else None)
    return p


def _evaluator(p, data_range, op=None):
    """fastMRI-convention slice metrics of an operator-domain image of ``op`` (default the problem's; the
    training PSNR curve: the slice under the volume's data range)."""
    if p.reference is None:
        return None
    op = op or p.operator

    def evaluate(x_hat):
        mag = M.center_crop(np.abs(op.combine(p.unscale(x_hat, op))), p.crop)
        m = M.slice_metrics(p.reference, mag, data_range)
        return {k: m[k] for k in ("psnr", "ssim", "nmse")}

    return evaluate


def _write_slice_outputs(p, job: SliceJob, x, work: Path, record: dict, zf_metrics: dict) -> None:
    """The slice's outputs into ``work`` and its MRI fields into ``record`` (in place):
    ``reconstruction.npy`` (the result: magnitude at the target size, original units), ``recon.png``
    (that image on the volume's grey scale), ``figure.png`` (:func:`.figures.comparison_figure`:
    reference, zero-filled, this method, error maps at a stated gain, the sampling mask); a network
    run's raw output (complex, the operator's scaled units) is ``network_output.npy`` and its
    ``curve.png`` gains the final image's PSNR as a labelled line."""
    from ..io import save_image, save_npy
    from .figures import FIGURE_FILE, LABELS, comparison_figure
    s = job.settings
    work = Path(work)
    mag = M.center_crop(np.abs(x), p.crop).astype(np.float32)
    save_npy(work / RECON_FILE, mag)
    if (work / "recon.npy").is_file():   # written by the runner: one name per thing
        os.replace(work / "recon.npy", work / NETWORK_OUTPUT_FILE)
    vmax = job.data_range or float(mag.max()) or 1.0
    save_image(work / "recon.png", np.clip(mag / vmax, 0, 1))
    m = {}
    if p.reference is not None:
        m = M.slice_metrics(p.reference, mag, job.data_range)
    images = [] if s.method == "zero-filled" else \
        [("zero-filled", M.center_crop(p.zero_filled("rss"), p.crop), zf_metrics)]
    images.append((LABELS.get(s.method, s.method), mag, m))
    comparison_figure(work / FIGURE_FILE, p.reference, images, p.mask, vmax,
                      title=f"{Path(job.file).name}, slice {job.slice}, {s.tag}")
    hist = record.get("history") or []
    if hist and "psnr" in hist[0] and m.get("psnr") is not None:
        from ..runner import plot_curve
        what = "data-consistent image" if s.data_consistency else "final image"
        plot_curve(work / "curve.png", hist, f"{LABELS.get(s.method, s.method)}, {Path(job.file).name} "
                   f"slice {job.slice}, {s.tag}", final_psnr=m["psnr"], final_label=f"final ({what})")
    record.update(
        final={k: m.get(k) for k in ("psnr", "ssim", "nmse")},
        full_fov=m.get("full_fov", {"psnr": None, "ssim": None, "nmse": None}),
        zero_filled=zf_metrics, metrics_convention="fastmri", data_range=m.get("data_range"),
        metric_crop=m.get("crop"), level="slice", file=str(job.file), slice=int(job.slice),
        num_slices=p.slice.metadata.get("num_slices"), scan=job.stem, task="mri",
        accel=int(round(p.info["mask"]["acceleration"])) if s.accel is None else int(s.accel),
        mask_type=p.info["mask"]["mask_type"], reference=p.reference_source,
        recon_shape=list(mag.shape), problem=p.describe())


def _zf_metrics(p, data_range) -> dict:
    if p.reference is None:
        return {"psnr": None, "ssim": None, "nmse": None}
    m = M.slice_metrics(p.reference, M.center_crop(p.zero_filled("rss"), p.crop), data_range)
    return {k: m[k] for k in ("psnr", "ssim", "nmse")}


def _identity(job: SliceJob) -> dict:
    """A slice run's identity: the content digest of its k-space (and reference image), the volume's
    data range and the settings (the file path is recorded, not trusted: see :func:`is_done`)."""
    from .data import slice_digest
    return {"command": "recon", "file": str(Path(job.file).resolve()),
            "kspace_digest": slice_digest(job.file, job.slice), "slice": int(job.slice),
            "data_range": job.data_range, "settings": job.settings.identity()}


def _classical(job: SliceJob) -> dict:
    from ..rundir import RunDir
    from ..schema import make_record
    from .baselines import classical_operator, run_baseline
    s = job.settings
    with RunDir(job.slice_dir, _identity(job)) as rd:
        t0, c0 = time.perf_counter(), time.process_time()
        p = mri_problem(job)
        t1 = time.perf_counter()
        classical_operator(p, soft_sense=soft_sense(s))
        x = run_baseline(p, s.method, s.lamda, s.max_iter)
        t2 = time.perf_counter()
        rec = make_record(command="recon", method=s.method, mask_source="none", density=1.0, steps=0,
                          seed=s.seed, time_total_s=t2 - t0, time_fit_s=t2 - t1, device="cpu",
                          threads=s.threads, config=s.flat(), accel=s.accel, task="mri", scan=job.stem,
                          lamda=s.lamda, max_iter=s.max_iter)
        rec["time"]["cpu_s"] = time.process_time() - c0
        _write_slice_outputs(p, job, x, rd.work, rec, _zf_metrics(p, job.data_range))
        from ..io import write_json
        write_json(rd.work / "metrics.json", rec)
        rd.commit()
    return rec


def _network_problem(job):
    """``(MRI problem, generic problem)`` of a slice or shared-mask job: what :func:`mri_oes.runner.run` fits,
    on the map sets of :func:`network_operator` (recorded by :func:`fold_over_check`)."""
    from .data import slice_digest
    s = job.settings
    p = mri_problem(job)
    op = network_operator(p, s, fixed_map_sets(s, job.file, job.slice, getattr(job, "mask_run", None)))
    vmax = job.data_range or float(M.center_crop(p.zero_filled("rss"), p.crop).max()) or 1.0
    gp = p.as_problem({"kind": "mri", "task": "mri", "scan": job.stem, "file": str(job.file),
                       "slice": int(job.slice), "accel": s.accel, "data_range": job.data_range,
                       "kspace_digest": slice_digest(job.file, job.slice)},   # the data (see is_done)
                      evaluate=_evaluator(p, job.data_range, op), operator=op, vmax=vmax)
    return p, gp


def soft_sense(map_sets: Optional[int]):
    """:func:`.baselines.classical_operator`'s ``soft_sense`` of a number of map sets (``--map-sets``):
    None (the fold-over rule), or True / False for two / one set."""
    return None if map_sets is None else map_sets == 2


def fixed_map_sets(s: Recipe, file=None, index=None, mask_run=None) -> Optional[tuple]:
    """``(map sets, what fixes them)`` where a file gives the network's output layer -- the pruning mask
    (``--pruning-mask``, or ``mask_run``'s shared mask under ``--share-pruning-mask``) or the weights of
    ``--init-from`` (for slice ``index`` of ``file``), each built for ``out_channels / 2`` map sets -- else
    None (the network is built for the slice's sets)."""
    from ..masks import Mask
    if mask_run or s.mask_path:
        path = Path(mask_run) / MASK_FILE if mask_run else Path(s.mask_path)
        return Mask.load(path).generator_config().out_channels // 2, f"the pruning mask {path}"
    if s.init_from:
        return _head_channels(warm_start(s, file, index).init_from) // 2, f"--init-from {s.init_from}"
    return None


def _head_channels(weights_file) -> int:
    """Output channels of the generator in a finished run's weights file (its ``head`` layer)."""
    from ..statefile import load_state
    tree = load_state(weights_file, None, what="weights file")
    state = tree.get("net") if isinstance(tree, dict) else None
    if not (isinstance(state, dict) and "head.weight" in state):
        raise UserError(f"--init-from {weights_file}: not a weights file of mri-oes (no network output layer)")
    return int(state["head.weight"].shape[0])


def network_operator(p, s: Recipe, fixed: Optional[tuple] = None):
    """The operator a network slice fits: the classical methods' (:func:`.baselines.classical_operator`:
    two ESPIRiT map sets where the fold-over statistic fires, or ``--map-sets``); the network then outputs an
    image per set and the result is their RSS. ``fixed`` (:func:`fixed_map_sets`): the sets a given mask or
    weights file was built for, which win over the rule (a conflicting ``--map-sets``, or two sets where
    ESPIRiT keeps no second one, is one clear line). One set cannot represent an object wider than the
    phase-encode FOV: on brain8 folded to 70 % recon's Sparse-DIP on one set ended at 12.6 dB at 4x against
    zero-filled 23.7 (results/2026-12-05-fold-over-network/). Measured data only; recorded by
    :func:`fold_over_check`."""
    from .baselines import classical_operator
    sets, why = s.map_sets, "--map-sets 1"
    if fixed is not None:
        s.check_map_sets(*fixed)
        sets, why = fixed[0], f"{fixed[1]} is for one"
    op = classical_operator(p, soft_sense=soft_sense(sets))
    if sets is not None and op.sets != sets:
        raise UserError(f"{p.slice.file} slice {p.slice.index}: {fixed[1] if fixed else '--map-sets 2'} needs "
                        f"{sets} ESPIRiT map sets; this slice's ESPIRiT keeps no second set")
    fold_over_check(p, op, why if sets == 1 else "ESPIRiT kept no second map set")
    return op


def fold_over_check(p, op, why_one_set: str = "") -> dict:
    """Record the map sets ``op`` gives a network slice (``problem.espirit.map_sets``) and whether ESPIRiT's
    fold-over statistic fired (``problem.espirit.fold_over.found``; the statistic and its thresholds are
    ``problem.espirit.soft_sense``'s, :func:`.baselines.classical_operator`); warn where it fired and the
    network still fits one set (``why_one_set`` says why). The test is neither sensitive nor specific
    everywhere: it fires on clean brain16 8x seed 1 (5 ACS lines) and not on the shared brains folded to 60 %
    at 4x and 8x, nor on brain8 folded to 70 % at 8x (results/2026-12-05-fold-over-severity/)."""
    import logging
    from . import espirit as E
    esp = p.info["espirit"]
    overlap = esp["soft_sense"]["overlap_fraction"]
    rec = {"found": bool(esp["soft_sense"]["found"])}
    if rec["found"] and op.sets == 1:
        rec["warning"] = (f"{Path(p.slice.file).name} slice {p.slice.index}: ESPIRiT finds fold-over (second "
                          f"eigenvalue > {E.OVERLAP_EIGENVALUE} on {overlap:.1%} of the object, at the phase-encode edges; it "
                          f"also fires on some clean scans); the network fits one map set ({why_one_set}) and falls far below zero-filled "
                          "where the object really folds over: compare with sense / l1-wavelet")
        logging.getLogger(__name__).warning("%s", rec["warning"])
    esp["fold_over"], esp["map_sets"] = rec, int(op.sets)
    return rec


def _network_parts(job: SliceJob, clock=None, share: int = 1):
    """``(recipe, generic problem, writer)`` of a network slice: what :func:`mri_oes.runner.run` (or
    :func:`~mri_oes.runner.run_batch`, several slices in one loop) takes. ``clock``: the ``(wall,
    CPU)`` start of the batch this slice trains in, whose times it records as ``1/share`` of them."""
    s = job.settings
    t0, c0 = clock or (time.perf_counter(), time.process_time())
    shared = None
    if job.mask_run:   # --share-pruning-mask: the mask learned once for this file or protocol
        shared = shared_mask_info(job.mask_run)
        s = s.override(mask_path=str(Path(job.mask_run) / MASK_FILE))
    p, gp = _network_problem(job)
    zf = _zf_metrics(p, job.data_range)

    def writer(problem, res, work, record):
        x = p.unscale(res.output, gp.operator)
        net_final = dict(record["final"])
        if s.data_consistency:   # the image a user gets: the network output projected onto the data
            x = p.data_consistency(x, maps=gp.operator.maps.cpu().numpy())
        else:
            x = gp.operator.combine(x)
        _write_slice_outputs(p, job, x, Path(work), record, zf)
        record["data_consistency"] = s.data_consistency
        record["final_network"] = net_final   # the raw final iterate (what `best` is comparable to)
        if s.density_rule and s.method == "sparse-dip" and s.density is None:
            record["density_rule"] = s.density_rule
        # ESPIRiT and set-up included; CPU-seconds of this process (a resumed fit: since its restart); with
        # --batch-slices: this slice's share of its batch's (config.batch_slices slices)
        record["time"]["total_s"] = (time.perf_counter() - t0) / share
        record["time"]["cpu_s"] = (time.process_time() - c0) / share
        if shared is not None:
            record["shared_mask"] = shared

    return warm_start(s, job.file, job.slice), gp, writer


def _light(rec: dict) -> dict:
    for k in ("_result", "_mask"):
        rec.pop(k, None)
    return rec


def _network(job: SliceJob) -> dict:
    from ..runner import run
    s, gp, writer = _network_parts(job)
    return _light(run(gp, s, job.slice_dir, command="recon", writer=writer))


def _network_batch(jobs: List[SliceJob]) -> List[dict]:
    """Network slices of one grid trained in one loop (``--batch-slices``, :func:`mri_oes.runner.run_batch`);
    slices on two map sets (:func:`network_operator`) form their own loop, their networks having more
    output channels."""
    from ..runner import run_batch
    clock = (time.perf_counter(), time.process_time())
    parts = [_network_parts(j, clock, len(jobs)) for j in jobs]
    recs = [None] * len(jobs)
    for ch in sorted({gp.out_channels for _, gp, _ in parts}):
        idx = [i for i, (_, gp, _) in enumerate(parts) if gp.out_channels == ch]
        out = run_batch([parts[i][1] for i in idx], [parts[i][0] for i in idx], [jobs[i].slice_dir for i in idx],
                        command="recon", writers=[parts[i][2] for i in idx])
        for i, r in zip(idx, out):
            recs[i] = _light(r)
    return recs


def init_source(run, file, index, run_name) -> Path:
    """The finished run folder ``--init-from RUN`` names for slice ``index`` of ``file``: ``RUN`` itself
    (a slice folder holding ``weights.safetensors``), else the slice of the same name in ``RUN`` (a
    recon run folder ``OUT/<method>_<accel>x``, or ``OUT`` itself: ``<run_name>/slices/<stem>/<NNN>``)."""
    from ..runner import WEIGHTS_FILE
    run = Path(run)
    rel = Path("slices") / Path(file).stem / f"{int(index):03d}"
    for d in (run, run / rel, run / run_name / rel):
        if (d / WEIGHTS_FILE).is_file():
            return d
    raise UserError(f"--init-from {run}: no finished network run there ({WEIGHTS_FILE} not in it, nor in "
                    f"{rel} or {run_name}/{rel} under it)")


def warm_start(s: Recipe, file, index) -> Recipe:
    """The recipe of slice ``index`` of ``file`` under ``--init-from``: it starts from that run's weights
    file, and sparse-dip without a mask file or density from its mask (no mask learning)."""
    if not s.init_from:
        return s
    from ..runner import WEIGHTS_FILE
    src = init_source(s.init_from, file, index, s.run_name)
    reuse = s.method == "sparse-dip" and not s.mask_path and s.density is None and (src / "mask.safetensors").is_file()
    return s.override(init_from=str(src / WEIGHTS_FILE), mask_path=str(src / "mask.safetensors") if reuse else None)


def check_warm_start(s: Recipe, file, index, image_hw) -> None:
    """Refuse (one line) an ``--init-from`` source missing for this slice or of another network, before
    any output exists (its output layer, one or two map sets, is checked with the slice's map sets)."""
    if not s.init_from:
        return
    from ..generators import build_generator
    from ..masks import Mask
    from ..runner import load_init_weights
    rc = warm_start(s, file, index).for_grid(image_hw)
    cfg = Mask.load(rc.mask_path).generator_config() if s.method == "sparse-dip" and rc.mask_path else \
        rc.generator_config(_head_channels(rc.init_from), mri=True)
    s.check_map_sets(cfg.out_channels // 2, f"--init-from {s.init_from}")
    load_init_weights(rc.init_from, build_generator(cfg, 0, image_hw))


# ------------------------------------------------------------------------- shared pruning masks
def share_key(s: Recipe, vol, own_accel: Optional[float] = None) -> str:
    """The mask a slice of ``vol`` uses under ``s.share_mask``: ``volume`` one per file (its stem),
    ``protocol`` one per network problem of the run (grid ``<H>x<W>`` and acceleration; the method,
    acceleration and every option are the run's already)."""
    if s.share_mask == "volume":
        return vol.stem
    H, W = (int(n) for n in vol.shape[-2:])
    accel = s.accel if s.accel is not None else int(round(own_accel or 0))
    return f"{H}x{W}_{accel}x"


def centre_slice(vol) -> int:
    """The slice a shared mask is learned on: the file's centre slice (whatever ``--slice`` selects)."""
    return int(vol.num_slices) // 2


def _own_acceleration(vol) -> float:
    from .data import load_slice, own_mask_acceleration
    return own_mask_acceleration(load_slice(vol.path, centre_slice(vol)))


def _mask_recipe(s: Recipe) -> Recipe:
    """The recipe of a shared mask's run: the run's, mask learning only (``steps`` 0)."""
    return s.override(steps=0)


def shared_mask_identity(job: MaskJob) -> dict:
    """What a shared mask's run folder must hold to be reused (:func:`mri_oes.runner.run_identity` of
    its mask-only run: the source slice's data, the resolved recipe, the versions)."""
    from ..runner import run_identity
    from ..statefile import canonical
    _, gp = _network_problem(job)
    rc = _mask_recipe(job.settings).for_problem(gp).validate()
    return canonical(run_identity(gp, rc, "recon"))


def _recorded_source(folder: Path) -> Optional[str]:
    """The file name a shared mask folder (complete, else staged) records as its source, if any."""
    from ..io import read_json
    for f, key in ((folder / "metrics.json", "shared_mask"), (folder.parent / f".{folder.name}.partial" /
                                                              "identity.json", "problem")):
        if f.is_file():
            try:
                rec = read_json(f, max_bytes=16 << 20, what="shared mask record")
                return Path(str(rec[key]["file"])).name
            except (UserError, KeyError, TypeError):
                return None
    return None


def _without_path(ident):
    """An identity without the path its source file was given by (the same data under another path, or
    the same folder named from another working directory, is the same mask)."""
    if not isinstance(ident, dict) or not isinstance(ident.get("problem"), dict):
        return ident
    return {**ident, "problem": {k: v for k, v in ident["problem"].items() if k != "file"}}


def check_shared_mask(job: MaskJob) -> bool:
    """Whether ``job``'s mask is already learned (complete with this identity: reused). A complete or
    staged mask of other settings or data is refused in one line naming its folder; nothing there
    yet: ``False`` (to be learned)."""
    from ..rundir import IDENTITY_FILE, RunDir, is_complete
    from ..io import read_json
    from ..statefile import identity_diff
    d = job.out
    staged = d.parent / f".{d.name}.partial" / IDENTITY_FILE
    if not is_complete(d) and not staged.is_file():
        return False
    ident = shared_mask_identity(job)
    if is_complete(d):
        stored = read_json(d / IDENTITY_FILE, max_bytes=16 << 20, what="shared mask identity") \
            if (d / IDENTITY_FILE).is_file() else {}
        if _without_path(stored) != _without_path(ident):   # the data by its digest, not by its path
            diff = identity_diff(stored if isinstance(stored, dict) else {}, ident)
            raise UserError(f"{d} holds a shared pruning mask learned with other settings or data (differs in: "
                            f"{', '.join(diff[:6])}); rerun with its settings and inputs, remove {d} to learn "
                            "it anew, or pass --overwrite")
        shared_mask_info(d)   # its file unchanged since it was learned
        return True
    RunDir(d, ident).check()   # a staged mask of another identity: refused, naming the keys
    return False


def plan_shared_masks(runs, out, jobs: List[SliceJob], targets: dict, cache) -> tuple:
    """``(mask jobs, slice jobs)`` for ``--share-pruning-mask``: the pending slices of each file
    (``volume``) or protocol (``protocol``) of a sparse-dip run point at one ``masks/<key>/`` folder,
    learned on the centre slice of the file or of the first file of the protocol (sorted by name; a
    mask already learned on another file of the protocol is kept). A complete mask of the same
    identity is reused; one of another identity is refused here, before anything is learned."""
    from dataclasses import replace as _replace
    groups, where = {}, {}
    for s, vs in runs:
        if s.method != "sparse-dip" or s.share_mask == "none":
            continue
        for v in sorted(vs, key=lambda v: v.name):
            key = share_key(s, v, _own_acceleration(v) if s.accel is None else None)
            groups.setdefault((s.run_name, key), (s, []))[1].append(v)
            where[(s.run_name, str(v.path))] = key
    pending = {}
    for j in jobs:
        key = where.get((j.settings.run_name, str(j.file)))
        if key is not None:
            pending.setdefault((j.settings.run_name, key), []).append(j)
    mask_jobs, folder = [], {}
    for (run_name, key), (s, members) in groups.items():
        if (run_name, key) not in pending:
            continue   # every slice done: nothing needs the mask
        root = Path(out) / run_name
        name = _recorded_source(mask_dir(root, key))
        src = next((v for v in members if v.name == name), members[0])
        sl = centre_slice(src)
        s = next(j.settings for j in pending[(run_name, key)])   # the run's recipe with its runtime
        mj = MaskJob(str(src.path), sl, s, str(root), key, targets[src.path][1],
                     str(Path(cache) / f"{src.stem}_{sl:03d}.h5") if cache else None)
        if not check_shared_mask(mj):
            mask_jobs.append(mj)
        folder[(run_name, key)] = str(mj.out)
    jobs = [_replace(j, mask_run=folder[(j.settings.run_name, where[(j.settings.run_name, str(j.file))])])
            if (j.settings.run_name, str(j.file)) in where else j for j in jobs]
    return mask_jobs, jobs


def learn_shared_mask(job: MaskJob) -> dict:
    """Learn one shared pruning mask into ``masks/<key>/`` (:func:`mri_oes.runner.run` with no training
    steps: complete-or-absent, resumed from its mask checkpoint); its record's ``shared_mask`` names
    the source slice and the mask file's digest, ``time.cpu_s`` the CPU-seconds it cost."""
    from ..runner import run
    from ..statefile import file_digest
    s = job.settings
    t0, c0 = time.perf_counter(), time.process_time()
    _, gp = _network_problem(job)

    def writer(problem, res, work, record):
        record["shared_mask"] = {"mode": s.share_mask, "key": job.key, "file": str(job.file), "scan": job.stem,
                                 "slice": int(job.slice), "digest": file_digest(Path(work) / MASK_FILE)}
        record["time"]["total_s"] = time.perf_counter() - t0
        record["time"]["cpu_s"] = time.process_time() - c0

    rec = run(gp, _mask_recipe(s), job.out, command="recon", writer=writer)
    for k in ("_result", "_mask", "history", "mask_learning"):
        rec.pop(k, None)
    return rec


def shared_mask_info(folder) -> dict:
    """What a slice records of the shared mask it used: mode, key, source file and slice, the mask
    file's sha256, density, mask steps and CPU-seconds (read from ``masks/<key>/metrics.json``; a
    mask file changed since it was learned is refused)."""
    from ..io import read_json
    from ..statefile import file_digest
    folder = Path(folder)
    rec = read_json(folder / "metrics.json", max_bytes=16 << 20, what="shared mask record")
    info = rec.get("shared_mask") if isinstance(rec, dict) else None
    if not isinstance(info, dict) or not (folder / MASK_FILE).is_file():
        raise UserError(f"{folder}: not a shared pruning mask of mri-oes recon (tampered?); remove the folder "
                        "to learn it anew")
    if file_digest(folder / MASK_FILE) != info.get("digest"):
        raise UserError(f"{folder / MASK_FILE} changed after it was learned (its sha256 is not the recorded "
                        f"one); remove {folder} to learn it anew")
    return {**info, "density": rec.get("density"), "mask_steps": rec.get("mask_steps"),
            "cpu_s": (rec.get("time") or {}).get("cpu_s")}


def _summary(rec: dict) -> dict:
    rec.pop("history", None)
    rec.pop("mask_learning", None)
    return rec


def run_slice(job: SliceJob) -> dict:
    """Reconstruct one slice into its run folder (skipped when complete); returns a light summary
    (the record without its history) for the driver's tables and status line."""
    if is_done(job.slice_dir):
        rec = read_record(job.slice_dir)
        rec["_skipped"] = True
    else:
        rec = _classical(job) if job.settings.method in CLASSICAL else _network(job)
    return _summary(rec)


def run_slices(jobs: List[SliceJob]) -> List[dict]:
    """:func:`run_slice` for a batch of slices of one grid (``--batch-slices``): the network slices not yet
    done train in one loop (:func:`_network_batch`); finished, classical and lone slices as
    :func:`run_slice`. One summary per job, in order."""
    out: List[Optional[dict]] = [None] * len(jobs)
    pending = [i for i, j in enumerate(jobs) if j.settings.method not in CLASSICAL and not is_done(j.slice_dir)]
    if len(pending) > 1:
        for i, rec in zip(pending, _network_batch([jobs[i] for i in pending])):
            out[i] = _summary(rec)
    for i, job in enumerate(jobs):
        if out[i] is None:
            out[i] = run_slice(job)
    return out


def batch_jobs(jobs: List[SliceJob], grids: dict, size: int) -> List[List[SliceJob]]:
    """``jobs`` in batches of at most ``size`` slices of one run and one grid (``grids``: file → its
    k-space's ``(H, W)``), in the jobs' order within each (run, grid) group."""
    groups: dict = {}
    for j in jobs:
        groups.setdefault((j.settings.run_name, tuple(grids[j.file])), []).append(j)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), max(1, int(size)))]


# ------------------------------------------------------------------------------- whole volumes
def volume_data_range(target: Optional[np.ndarray]) -> Optional[float]:
    """fastMRI's data range of a volume: the maximum of the W×W-cropped target (all slices)."""
    if target is None:
        return None
    return float(M.center_crop(target, M.fastmri_crop(target.shape)).max())


def save_reconstruction(recon: np.ndarray, folder: Path, name: str) -> Path:
    """``folder/name`` holding ``reconstruction`` [slices, h, w], written by
    ``fastmri.save_reconstructions`` into a staging folder and renamed into place (atomic)."""
    from fastmri.utils import save_reconstructions
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}."))
    try:
        save_reconstructions({name: np.asarray(recon, np.float32)}, tmp)
        os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / name


def assemble_volume(run_root, vol, settings: Recipe, target: Optional[np.ndarray],
                    data_range: Optional[float]) -> Optional[dict]:
    """Write ``reconstructions/<file name>.h5`` and the volume record when every selected slice of
    ``vol`` is complete; else return ``None`` (a partial volume file is never written)."""
    from ..io import write_json
    from ..schema import make_record
    run_root = Path(run_root)
    dirs = [slice_dir(run_root, vol.path, s) for s in vol.slices]
    if not all(is_done(d) for d in dirs):
        return None
    recs = [read_record(d) for d in dirs]
    recon = np.stack([np.load(d / RECON_FILE) for d in dirs]).astype(np.float32)
    path = save_reconstruction(recon, run_root / "reconstructions", vol.name)
    m = {}
    if target is not None:
        m = M.volume_metrics(target[vol.slices], recon, data_range)
    r0 = recs[0]
    rec = make_record(
        command="recon", method=r0["method"], mask_source=r0["mask_source"],
        density=float(np.mean([r["density"] for r in recs])), steps=r0["steps"], mask_steps=r0["mask_steps"],
        seed=r0["seed"], seeds=r0["seeds"], final={k: m.get(k) for k in ("psnr", "ssim", "nmse")},
        best=None, time_total_s=float(sum(r["time"]["total_s"] for r in recs)),
        time_fit_s=float(sum(r["time"]["fit_s"] for r in recs)), device=r0["device"], threads=r0["threads"],
        config=r0["config"], lr=r0.get("lr"), diverged=any(r.get("diverged") for r in recs), task="mri",
        scan=vol.stem, accel=r0["accel"], level="volume", file=str(vol.path), slice=None,
        slices=list(vol.slices), num_slices=vol.num_slices, mask_type=r0.get("mask_type"),
        metrics_convention="fastmri", full_fov=m.get("full_fov", {"psnr": None, "ssim": None, "nmse": None}),
        data_range=m.get("data_range"), metric_crop=m.get("crop"), reconstruction=str(path),
        recon_shape=list(recon.shape), reference=r0.get("reference"),
        slice_final_mean={k: (None if any(r["final"][k] is None for r in recs)
                              else float(np.mean([r["final"][k] for r in recs]))) for k in ("psnr", "ssim", "nmse")})
    rec["time"]["s_per_step"] = None
    from .figures import LABELS, MONTAGE_FILE, montage_figure
    rows = [] if target is None else [("reference", M.center_crop(target[vol.slices], recon.shape[-2:]), None)]
    rows.append((LABELS.get(r0["method"], r0["method"]), recon, [r["final"] for r in recs]))
    montage_figure(run_root / "volumes" / vol.stem / MONTAGE_FILE, rows, list(vol.slices), data_range,
                   title=f"{vol.name}, {settings.run_name}")
    write_json(run_root / "volumes" / vol.stem / "metrics.json", rec)
    return rec


def write_tables(run_root) -> None:
    """``slices.csv/json`` and ``volumes.csv/json`` of one run folder from its complete records."""
    from ..io import read_json
    from ..schema import flatten, write_table
    run_root = Path(run_root)
    for level, pattern in (("slices", "slices/*/*/metrics.json"), ("volumes", "volumes/*/metrics.json")):
        rows = []
        for f in sorted(run_root.glob(pattern)):
            rec = read_json(f, what="result record")
            if not isinstance(rec, dict):
                raise UserError(f"{f}: not a result record of mri-oes (tampered or foreign file)")
            row = flatten(rec, run_dir=str(f.parent))
            row["file"] = rec.get("file")
            if level == "slices":   # CPU-seconds of the slice, and of the shared mask it used (if any)
                shared = rec.get("shared_mask") or {}
                row.update(cpu_s=(rec.get("time") or {}).get("cpu_s"), shared_mask=shared.get("key"),
                           shared_mask_digest=shared.get("digest"), shared_mask_cpu_s=shared.get("cpu_s"))
            rows.append(row)
        write_table(rows, run_root / level)


CPU_KEYS = ("cpu_s_per_slice", "shared_masks", "mask_cpu_s", "amortised_cpu_s_per_slice", "cold_cpu_s_per_slice")


def cpu_summary(run_root) -> dict:
    """CPU-seconds per slice of a run's complete slices (``time.cpu_s``, 1 process each):
    ``cpu_s_per_slice`` what a slice task spent (mean); ``mask_cpu_s`` the shared pruning masks' learning
    (``--share-pruning-mask``, each counted once; 0 without sharing); ``amortised_cpu_s_per_slice`` =
    (the slices' CPU-seconds + ``mask_cpu_s``) / slices; ``cold_cpu_s_per_slice`` = mean of each slice's
    CPU-seconds + the learning of the mask it used: a slice on its own, learning its mask (without
    sharing both equal ``cpu_s_per_slice``). ``None`` where a record lacks its CPU-seconds."""
    from ..io import read_json
    recs = [read_json(f, what="slice record") for f in sorted(Path(run_root).glob("slices/*/*/metrics.json"))]
    cpu = [((r.get("time") or {}).get("cpu_s") if isinstance(r, dict) else None) for r in recs]
    shared = [(r.get("shared_mask") or {}) if isinstance(r, dict) else {} for r in recs]
    if not recs or any(c is None for c in cpu) or any(m and m.get("cpu_s") is None for m in shared):
        return {k: None for k in CPU_KEYS}
    masks = {m["key"]: float(m["cpu_s"]) for m in shared if m}
    n = len(recs)
    return {"cpu_s_per_slice": float(np.mean(cpu)), "shared_masks": len(masks),
            "mask_cpu_s": float(sum(masks.values())),
            "amortised_cpu_s_per_slice": float((sum(cpu) + sum(masks.values())) / n),
            "cold_cpu_s_per_slice": float(np.mean([c + float(m.get("cpu_s") or 0.0) for c, m in zip(cpu, shared)]))}


def dataset_summary(out, run_roots: List[Path]) -> List[dict]:
    """``OUT/summary.csv/json``: per method and acceleration, mean ± std over volumes of the fastMRI
    volume metrics (and the full-FOV ones), number of volumes and slices, total time, and the CPU-seconds
    per slice amortised over shared pruning masks beside the cold cost (:func:`cpu_summary`)."""
    from ..io import atomic_path, csv_cell, read_json, write_json
    rows = []
    for root in run_roots:
        recs = [read_json(f, what="volume record") for f in sorted(Path(root).glob("volumes/*/metrics.json"))]
        if not recs:
            continue
        row = {"method": recs[0]["method"], "accel": recs[0]["accel"], "mask_type": recs[0].get("mask_type"),
               "run": Path(root).name, "volumes": len(recs), "slices": int(sum(len(r["slices"]) for r in recs)),
               "metrics_convention": "fastmri"}
        for part, prefix in (("final", ""), ("full_fov", "full_fov_")):
            for k in ("psnr", "ssim", "nmse"):
                vals = [r[part][k] for r in recs if r[part].get(k) is not None]
                row[f"{prefix}{k}_mean"] = float(np.mean(vals)) if vals else None
                row[f"{prefix}{k}_std"] = float(np.std(vals)) if vals else None
        row["time_total_s"] = float(sum(r["time"]["total_s"] for r in recs))
        row["share_mask"] = (recs[0].get("config") or {}).get("share_mask", "none")
        row.update(cpu_summary(root))
        rows.append(row)
    out = Path(out)
    if rows:
        cols = list(rows[0])
        import csv
        import io
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell(r.get(k)) for k in cols})   # strings never read as formulas
        with atomic_path(out / "summary.csv") as tmp:
            tmp.write_text(buf.getvalue())
        write_json(out / "summary.json", {"convention": "fastmri: per volume PSNR/NMSE on the volume, SSIM "
                                          "averaged over slices, W x W crop, data range = volume max; mean "
                                          "and std over volumes",
                                          "cpu": "CPU-seconds per slice (time.process_time of each slice task): "
                                          "amortised = (slices' + shared masks' learning) / slices; cold = a "
                                          "slice's own + the learning of the mask it used (mask learning + "
                                          "training per slice)", "rows": rows})
    return rows
