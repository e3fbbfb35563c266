"""The recipe of a run: the one carrier of network options, from flags or a preset to the fitting loop.

A :class:`Recipe` is frozen and typed, in parts: :class:`Network` (which generator), :class:`MaskOptions`
(which weights are kept and how the OES mask is learned), :class:`Training` (the fit: its field names
are :func:`mri_oes.core.fit`'s keyword arguments), :class:`Acquisition` (an MRI slice's k-space sampling,
ESPIRiT and classical solver; ``None`` for natural images) and :class:`Runtime` (device, threads, bars:
never part of a result). Every command builds one and hands it to :func:`mri_oes.runner.run`:

    recipe = Recipe.from_preset("cpu", accel=4, method="sparse-dip", steps=500)   # recon, the API
    recipe = Recipe().override(method="dip", steps=2000, seed=1)                   # fit, denoise ...
    fit_recipe = recipe.for_problem(problem)     # the grid decides depth, steps and the density rule
    fit_recipe.validate()                         # every check once, one line naming the flag
    fit_recipe.identity()                         # what a resumed run must share

Each field has one default, here. Unknown options are refused naming the flag.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

from .errors import UserError


@dataclass(frozen=True)
class Network:
    method: str = "sparse-dip"             # schema.RECON_NETWORK_METHODS
    generator: Optional[str] = None        # sparse-dip's network: hourglass (None), deep-decoder, conv-decoder
    levels: Optional[int] = None           # hourglass scales (None: the largest that fits the grid ...)
    levels_cap: Optional[int] = None       # ... at most this deep (None: 6)
    width: float = 1.0                     # hourglass channel multiplier (1 = the paper's 128 channels)
    layers: Optional[int] = None           # decoder depth (None: deep decoder levels + 1, ConvDecoder 5)
    channels: Optional[object] = None      # decoder width, or per-layer widths (None: 128 / 64)
    init_from: Optional[str] = None        # start from a finished run's trained weights (recon: the run
                                           # folder; one fit: its weights file, mri.volume.warm_start)


@dataclass(frozen=True)
class MaskOptions:
    density: Optional[float] = 0.05        # kept fraction of the maskable weights (None: density_rule)
    density_rule: Optional[dict] = None    # presets.density_for(**rule): kept weights per measured value
    mask_steps: int = 1000
    mask_lr: float = 1e-2
    temperature: float = 0.2
    lam: float = 1e-9                      # weight of the KL term (--kl-weight)
    scope: str = "weights"
    min_layer_density: float = 0.0
    min_layer_density_given: bool = False  # an explicit floor is refused above the rule's density, never capped
    mask_path: Optional[str] = None        # --pruning-mask: reuse this mask instead of learning one
    fresh_init: bool = False
    mask_source: str = "oes"               # learned (OES) or a pruning-at-init score (pruning.PAI_METHODS)
    synflow_rounds: int = 100              # SynFlow's scoring rounds
    share_mask: str = "none"               # recon: one learned mask per file ("volume") or per grid and
                                           # acceleration ("protocol") instead of one per slice (SHARE_MODES)


@dataclass(frozen=True)
class Training:
    steps: int = 2000
    steps_pixels: Optional[int] = None     # steps were sized for this many pixels: smaller grids get more
    steps_scale_max: Optional[float] = None   # ... at most this many times more (None: no limit)
    lr: float = 1e-2
    lr_final: Optional[float] = None       # cosine decay of the lr to this value (None: constant)
    lr_decay_start: float = 0.0            # ... after this fraction of the steps
    grad_clip: float = 0.0
    input_noise_std: float = 0.0
    output_average: float = 0.0            # the result is the running average of the iterates (0: last)
    precision: str = "float32"
    stop_rule: str = "none"
    stop_tol: float = 0.05
    stop_patience: int = 500
    holdout_fraction: float = 0.2          # self-validation: measured lines held out (outside the ACS block)
    discrepancy_tau: float = 1.1           # discrepancy: stop at this multiple of the noise's residual
    sgld_std: float = 0.0                  # gp-dip: weight noise per step
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500


@dataclass(frozen=True)
class Acquisition:
    accel: Optional[int] = None            # None: the file's own sampling mask
    mask_type: str = "equispaced"
    center_fraction: Optional[float] = None
    data_consistency: bool = False         # project the final image onto the measured k-space
    lamda: Optional[float] = None          # classical regularisation weight (--reg-weight)
    max_iter: Optional[int] = None
    espirit: dict = field(default_factory=dict)
    map_sets: Optional[int] = None         # ESPIRiT map sets, 1 or 2 (None: two where fold-over is found,
                                           # or as many as a network's given weights / mask output)


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    threads: int = 1
    progress: bool = False
    batch_slices: int = 1                  # recon: slices of one grid trained in one loop (runner.run_batch)


PARTS = {"network": Network, "mask": MaskOptions, "training": Training, "mri": Acquisition, "runtime": Runtime}
#: option name -> the part that holds it
FIELD_PART = {f.name: part for part, cls in PARTS.items() for f in fields(cls)}
#: core.fit keyword arguments that the training part carries (steps_pixels, steps_scale_max, sgld_std and
#: holdout_fraction are not fit's: the problem turns the fraction into fit's ``holdout`` entries)
FIT_OPTIONS = tuple(f.name for f in fields(Training)
                    if f.name not in ("steps_pixels", "steps_scale_max", "sgld_std", "holdout_fraction"))
#: fields left out of an identity at their "off" value (runs from before the option keep their identity)
OFF_VALUES = {"precision": "float32", "lr_decay_start": 0.0, "steps_pixels": None, "steps_scale_max": None,
              "init_from": None,
              "mask_source": "oes", "synflow_rounds": 100, "share_mask": "none", "map_sets": None}
#: recon's pruning-mask sharing (--share-pruning-mask): none = a mask learned per slice; volume = one per
#: file, learned on its centre slice; protocol = one per grid and acceleration, learned on the centre slice
#: of the first file (mri_oes.mri.volume.plan_shared_masks)
SHARE_MODES = ("none", "volume", "protocol")
STOP_FIELDS = ("stop_rule", "stop_tol", "stop_patience", "holdout_fraction", "discrepancy_tau")
#: what :meth:`Recipe.for_problem` turns into the fit's depth, steps and density
RESOLUTION_INPUTS = ("levels_cap", "steps_pixels", "steps_scale_max", "density_rule")


def _flag(name: str) -> str:
    return {"lam": "--kl-weight", "lamda": "--reg-weight", "mask_path": "--pruning-mask",
            "share_mask": "--share-pruning-mask"}.get(
        name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class Recipe:
    network: Network = Network()
    mask: MaskOptions = MaskOptions()
    training: Training = Training()
    mri: Optional[Acquisition] = None
    runtime: Runtime = Runtime()
    resolved: bool = False                 # for_problem ran: depth, steps and density are the fit's

    def __getattr__(self, name):
        """``recipe.steps`` reads the part that holds ``steps``."""
        part = FIELD_PART.get(name)
        if part is None or name.startswith("__"):
            raise AttributeError(name)
        holder = object.__getattribute__(self, part)
        if holder is None:
            raise AttributeError(f"{name}: this recipe has no {part} part")
        return getattr(holder, name)

    # ------------------------------------------------------------------------------------ building
    def override(self, **given) -> "Recipe":
        """A copy with the ``given`` options set (``None``: not given, ignored). An unknown name is one
        :class:`UserError` naming its flag. A given ``density`` replaces the density rule, a given
        ``steps`` is taken as is (no scaling by the grid), a given floor is never capped."""
        given = {k: v for k, v in given.items() if v is not None}
        unknown = [k for k in given if k not in FIELD_PART or k == "min_layer_density_given"]
        if unknown:
            raise UserError(f"unknown option {_flag(unknown[0])} (the recipe's options: "
                            f"{', '.join(sorted(k for k in FIELD_PART if k != 'min_layer_density_given'))})")
        if "density" in given:
            given["density_rule"] = None
        if "steps" in given and "steps_pixels" not in given:
            given["steps_pixels"] = None
            given.setdefault("steps_scale_max", None)
        if "min_layer_density" in given:
            given["min_layer_density_given"] = True
        if "channels" in given and isinstance(given["channels"], list):
            given["channels"] = tuple(given["channels"])
        parts = {}
        for part in PARTS:
            mine = {k: v for k, v in given.items() if FIELD_PART[k] == part}
            cur = getattr(self, part)
            if mine:
                cur = replace(cur if cur is not None else PARTS[part](), **mine)
            parts[part] = cur
        return replace(self, **parts)

    @classmethod
    def from_preset(cls, preset, accel=None, **given) -> "Recipe":
        """Preset ``preset`` (a name of :mod:`mri_oes.mri.presets`, or a preset's values at ``accel``:
        :func:`~mri_oes.mri.presets.for_accel`) at ``accel`` with the ``given`` options (flags
        that were given win): what ``recon``, ``reconstruct``, ``transfer --preset`` and the MRI
        experiment train. A learned mask (sparse-dip without a mask file) takes the preset's density rule
        unless a density is given, on the preset's generator; the decoders' depth and width apply to
        sparse-dip and deep-decoder; the preset's per-layer floor never exceeds a given density."""
        from .mri import presets
        pre = presets.for_accel(presets.get(preset), accel) if isinstance(preset, str) else preset
        method = given.get("method") or Network.method
        learned = method == "sparse-dip" and not given.get("mask_path")
        decoder = method in ("sparse-dip", "deep-decoder")
        density = pre.get("density")
        recipe = cls(
            network=Network(method=method, levels_cap=pre.get("levels"), width=pre["width"],
                            generator=pre.get("generator", "hourglass") if learned else None,
                            layers=pre.get("layers") if decoder else None,
                            channels=_frozen(pre.get("channels")) if decoder else None),
            mask=MaskOptions(density=density if learned else None, mask_steps=pre["mask_steps"],
                             min_layer_density=pre["min_layer_density"],
                             density_rule={k: pre[k] for k in ("kept_per_measurement", "density_min", "density_max")}
                             if learned and density is None else None),
            training=Training(steps=pre["steps"], steps_pixels=pre.get("steps_pixels"),
                              steps_scale_max=pre.get("steps_scale_max"), lr=pre["lr"],
                              lr_final=pre.get("lr_final"), lr_decay_start=pre.get("lr_decay_start") or 0.0,
                              grad_clip=pre.get("grad_clip") or 0.0, input_noise_std=pre.get("input_noise_std") or 0.0,
                              output_average=pre.get("output_average") or 0.0, precision=pre["precision"],
                              stop_rule=pre.get("stop_rule") or "none", stop_tol=pre.get("stop_tol", 0.05),
                              stop_patience=pre.get("stop_patience", 500),
                              holdout_fraction=pre.get("holdout_fraction", Training.holdout_fraction),
                              discrepancy_tau=pre.get("discrepancy_tau", Training.discrepancy_tau)),
            mri=Acquisition(accel=accel, data_consistency=bool(pre.get("data_consistency", False))))
        if not learned:
            given = {k: v for k, v in given.items() if k not in ("density", "generator")}
        out = recipe.override(**given)
        if learned and "density" in given and given["density"] is not None and "min_layer_density" not in given:
            # the preset's floor never asks more of a layer than a given density allows
            out = replace(out, mask=replace(out.mask, min_layer_density=min(out.min_layer_density,
                                                                             float(given["density"]))))
        return out

    def with_runtime(self, **kw) -> "Recipe":
        return replace(self, runtime=replace(self.runtime, **kw))

    # --------------------------------------------------------------------------------- resolving
    @property
    def learns_mask(self) -> bool:
        return self.method == "sparse-dip" and not self.mask_path

    def for_grid(self, image_hw) -> "Recipe":
        """The recipe on an ``image_hw`` grid before a problem exists: the hourglass as deep as fits
        (at most ``levels_cap``) unless ``levels`` is set, the steps scaled to the grid (``steps_pixels``),
        a density (the default where none is set; the density rule needs the problem: :meth:`for_problem`)."""
        from .generators import largest_levels
        levels = self.levels or min(self.levels_cap or 6, largest_levels(image_hw))
        steps = self.steps
        if self.steps_pixels:   # the same compute per slice: a smaller grid gets proportionally more steps
            scale = self.steps_pixels / (int(image_hw[0]) * int(image_hw[1]))
            if self.steps_scale_max is not None:   # ... up to a limit (long runs on small grids overfit)
                scale = min(scale, float(self.steps_scale_max))
            steps = max(int(steps), int(round(steps * scale)))
        density = self.density if self.density is not None else MaskOptions.density
        return replace(self, network=replace(self.network, levels=levels),
                       training=replace(self.training, steps=int(steps)),
                       mask=replace(self.mask, density=density), resolved=True)

    def for_problem(self, problem) -> "Recipe":
        """:meth:`for_grid` on ``problem``'s grid, and a learned mask without a density gets the density
        rule's (:func:`mri_oes.mri.presets.density_for` on this network's maskable weights and the
        problem's measured values); the per-layer floor above that density becomes the density (a
        small problem's rule may fall below the preset's floor), a given floor above it is refused."""
        out = self.for_grid(problem.image_hw)
        if self.learns_mask and self.density is None and self.density_rule:
            from .generators import build_generator
            from .masks import maskable_parameters
            from .mri.presets import density_for
            from .problem import measurement_count
            net = build_generator(out.generator_config(problem.out_channels, problem.kind == "mri"), 0,
                                  problem.image_hw)
            n = sum(t.numel() for t in maskable_parameters(net, self.scope).values())
            density = density_for(measurement_count(problem.operator), n, **self.density_rule)
            if self.min_layer_density_given and self.min_layer_density > density:
                raise UserError(f"--min-layer-density {self.min_layer_density} is above the density {density:.4f} "
                                "that the density rule gives this slice: give a lower floor or --density")
            out = replace(out, mask=replace(out.mask, density=density,
                                            min_layer_density=min(self.min_layer_density, density)))
        return out

    def generator_config(self, out_channels: int, mri: bool):
        """The OES hourglass, the deep decoder (method deep-decoder, or ``generator`` for a Sparse-DIP
        mask on it), or Darestani & Heckel's ConvDecoder (``generator`` conv-decoder; input 8x8)."""
        from .generators import GeneratorConfig
        kind = "deep-decoder" if self.method == "deep-decoder" else (self.generator or "hourglass")
        per_layer = isinstance(self.channels, (list, tuple))   # per-layer widths: their length is the depth
        channels = list(self.channels) if per_layer else self.channels
        if kind == "deep-decoder":
            return GeneratorConfig.deep_decoder(out_channels=out_channels,
                                                layers=None if per_layer else self.layers or self.levels + 1,
                                                width=channels or 128, mri=mri)
        if kind == "conv-decoder":
            return GeneratorConfig.convdecoder(out_channels=out_channels,
                                               layers=None if per_layer else self.layers or 5,
                                               width=channels or 64, input_size=(8, 8))
        if kind != "hourglass":
            raise UserError(f"--generator must be hourglass, deep-decoder or conv-decoder, got {kind!r}")
        return GeneratorConfig.oes(out_channels=out_channels, levels=self.levels, width=self.width, mri=mri)

    # ------------------------------------------------------------------------------- validation
    def validate(self) -> "Recipe":
        """Every check of the options, once (one line naming the flag); returns the recipe."""
        from .core import PRECISIONS, STOP_RULES
        from .masks import Mask, check_density
        from .schema import CLASSICAL_METHODS, RECON_NETWORK_METHODS
        if self.method not in RECON_NETWORK_METHODS + CLASSICAL_METHODS:
            raise UserError(f"--method must be one of {RECON_NETWORK_METHODS + CLASSICAL_METHODS}, got {self.method!r}")
        if self.steps < 0 or self.mask_steps < 0:
            raise UserError("--steps and --mask-steps must be >= 0")
        if self.steps_scale_max is not None and not 1.0 <= float(self.steps_scale_max) < float("inf"):
            raise UserError(f"preset field steps_scale_max must be a number >= 1, got {self.steps_scale_max!r}")
        if int(self.batch_slices) < 1:
            raise UserError(f"--batch-slices must be >= 1, got {self.batch_slices!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {tuple(PRECISIONS)}, got {self.precision!r}")
        if self.stop_rule not in STOP_RULES:
            raise UserError(f"--stop-rule must be one of {STOP_RULES}, got {self.stop_rule!r}")
        if not (self.stop_tol > 0 and self.stop_tol < float("inf")):
            raise UserError(f"--stop-tol must be a positive number, got {self.stop_tol!r}")
        if int(self.stop_patience) < 1:
            raise UserError(f"--stop-patience must be >= 1, got {self.stop_patience!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise UserError(f"--holdout-fraction must be in (0, 1), got {self.holdout_fraction!r}")
        if not (self.discrepancy_tau > 0 and self.discrepancy_tau < float("inf")):
            raise UserError(f"--discrepancy-tau must be a positive number, got {self.discrepancy_tau!r}")
        if not 0.0 <= self.output_average < 1.0:
            raise UserError(f"output_average must be in [0, 1), got {self.output_average}")
        if not 0.0 <= self.lr_decay_start < 1.0:
            raise UserError(f"lr_decay_start must be in [0, 1), got {self.lr_decay_start}")
        if self.mri is not None and self.accel is not None and int(self.accel) < 2:
            raise UserError(f"--accel must be an integer >= 2, got {self.accel}")
        if self.mri is not None and self.map_sets not in (None, 1, 2):
            raise UserError(f"--map-sets must be 1 or 2, got {self.map_sets!r}")
        from .pruning import PAI_METHODS
        if self.share_mask not in SHARE_MODES:
            raise UserError(f"--share-pruning-mask must be one of {SHARE_MODES}, got {self.share_mask!r}")
        if self.mask_source not in ("oes",) + PAI_METHODS:
            raise UserError(f"--mask-source must be one of {('oes',) + PAI_METHODS}, got {self.mask_source!r}")
        if self.method == "sparse-dip":
            if self.mask_path:
                cfg = Mask.load(self.mask_path).generator_config()
                self.check_map_sets(cfg.out_channels // 2, f"--pruning-mask {self.mask_path}")
            elif self.density is not None:
                check_density(self.density)
                if not self.density < 1:
                    raise UserError("--density must be < 1 for an OES mask (density 1 is dense DIP: --method dip)")
        return self

    def check_map_sets(self, sets: int, source: str) -> None:
        """Refuse (one line naming ``source``) a given ``--map-sets`` other than the ``sets`` a mask or weights
        file's network was built for (2 output channels per set)."""
        if self.mri is not None and self.map_sets is not None and self.map_sets != sets:
            raise UserError(f"--map-sets {self.map_sets}: {source} is for a network of {sets} map set(s)")

    # --------------------------------------------------------------------------------- identity
    def identity(self) -> dict:
        """What a resumed run must share, the one rule for every run. Fields at their "off" value
        (:data:`OFF_VALUES`, the stopping rule ``none``) are left out, so runs from before those options
        keep their identity; runtime fields never count. A resolved recipe (one fit, :meth:`for_problem`)
        is identified by its resolved values and device; an MRI run over many slices by its acquisition,
        its unresolved network options, and for a classical method by the solver's options only."""
        from .schema import CLASSICAL_METHODS
        flat = self.flat()
        runtime, mri = {f.name for f in fields(Runtime)}, {f.name for f in fields(Acquisition)}
        if self.resolved:   # one fit: its data (acquisition included) is identified beside it
            drop = (runtime - {"device"}) | mri | set(RESOLUTION_INPUTS)
        elif self.method in CLASSICAL_METHODS:   # a classical slice: acquisition and solver only
            drop = set(flat) - (mri - {"data_consistency"}) - {"method", "seed"}
        else:   # a network run over many slices
            drop = runtime | {"sgld_std", "lamda", "max_iter"}
        return without_off_values({k: v for k, v in flat.items() if k not in drop})

    def flat(self) -> dict:
        """Every option by name (the record's ``config``)."""
        out = {}
        for part in PARTS:
            holder = getattr(self, part)
            if holder is not None:
                out.update(asdict(holder))
        out.pop("min_layer_density_given")
        if isinstance(out.get("channels"), tuple):
            out["channels"] = list(out["channels"])
        return out

    def fit_options(self) -> dict:
        """The training part as :func:`mri_oes.core.fit` keyword arguments (their names are the fields')."""
        return {k: getattr(self.training, k) for k in FIT_OPTIONS}

    # ------------------------------------------------------------------------------- MRI naming
    @property
    def tag(self) -> str:
        return f"{self.accel}x" if self.mri is not None and self.accel is not None else "own-mask"

    @property
    def run_name(self) -> str:
        return f"{self.method}_{self.tag}"


def without_off_values(d: dict) -> dict:
    """``d`` without the options at their "off" value (:data:`OFF_VALUES`; the stopping rule ``none``
    with its tolerance, patience, held-out fraction and discrepancy multiple; the fraction under any rule but
    ``self-validation``, the multiple under any but ``discrepancy``): the one rule that keeps the identities of runs (and of fits and
    checkpoints, :func:`mri_oes.core.fit`) made before those options existed."""
    d = dict(d)
    for k, off in OFF_VALUES.items():
        if k in d and (d[k] == off or (off == 0.0 and not d[k])):
            d.pop(k)
    if d.get("stop_rule", "none") == "none":
        for k in STOP_FIELDS:
            d.pop(k, None)
        return d
    if d.get("stop_rule") != "self-validation":   # only that rule holds measurements out
        d.pop("holdout_fraction", None)
    if d.get("stop_rule") != "discrepancy":
        d.pop("discrepancy_tau", None)
    return d


def _frozen(v):
    return tuple(v) if isinstance(v, list) else v
