"""Operator registry: build any forward model by name (CLI, configs, mask metadata).

Built-in plugins register with :func:`register`. Plugins from other packages declare a Python entry
point in the group ``mri_oes.operators`` (``name = "pkg.module:Class"``); they are loaded the first time
the registry is queried, so a user adds an operator without touching this package::

    # in the plugin's pyproject.toml
    [project.entry-points."mri_oes.operators"]
    blur = "my_pkg.blur:Blur"

Constructor contract (see :mod:`operators.base`): an operator used on images (``mri-oes fit /
learn-mask / imp / prune-at-init --operator NAME --operator-args JSON``) is built as
``NAME(shape=(C, H, W), noise=<GaussianNoise or None>, **operator_args)``; its ``__init__`` must accept
the keywords ``shape`` and ``noise``. A constructor that cannot take them is refused by :func:`build`
with :class:`OperatorContractError` naming the contract.
"""
from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from typing import Callable, Dict

ENTRY_POINT_GROUP = "mri_oes.operators"

_REGISTRY: Dict[str, Callable] = {}
_SOURCE: Dict[str, str] = {}          # name -> "built-in" or "entry point <value>"
_entry_points_loaded = False
_clash_error = None


class OperatorNameClash(ValueError):
    """Two different operators claim one registry name (a plugin named like a built-in, or two plugins)."""


#: what the registry passes to an operator's constructor for an image (see :mod:`operators.base`)
CONSTRUCTOR_CONTRACT = ("__init__(self, shape, noise=None, **options): shape = (C, H, W) of the image "
                        "(the operator's in_shape), noise = a noise model or None (pass it to "
                        "LinearOperator.__init__(in_shape, out_shape, noise)), options = the --operator-args "
                        "keywords")


class OperatorContractError(TypeError):
    """An operator's constructor does not accept the keyword arguments the registry passes."""


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def register(name: str):
    """Class decorator: ``@register("inpaint")`` makes ``build("inpaint", ...)`` construct the class."""

    def deco(cls):
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise OperatorNameClash(f"operator name {name!r} is already registered by {_qualname(existing)} "
                                    f"({_SOURCE.get(name, 'built-in')}); cannot register {_qualname(cls)}")
        _REGISTRY[name] = cls
        _SOURCE.setdefault(name, "built-in")
        return cls

    return deco


def _load_entry_points():
    """Load plugins once. A plugin that fails to import only warns (it must not break the toolkit);
    a plugin whose NAME clashes with a built-in or another plugin raises :class:`OperatorNameClash`
    (every time the registry is queried, until it is renamed or uninstalled): silently picking one of
    the two would run a different forward model than the user asked for."""
    global _entry_points_loaded, _clash_error
    if _entry_points_loaded:
        if _clash_error is not None:
            raise _clash_error
        return
    _entry_points_loaded = True
    clashes = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        src = f"entry point {ep.name} = {ep.value}"
        if ep.name in _REGISTRY:
            existing = _REGISTRY[ep.name]
            if ep.value.replace(":", ".") == _qualname(existing) or ep.value == _SOURCE[ep.name].split("= ")[-1]:
                continue            # the same class declared twice (e.g. our own package's entry point)
            clashes.append(f"operator plugin name {ep.name!r} ({ep.value}) clashes with the "
                           f"{_SOURCE[ep.name]} operator {_qualname(existing)}; rename the plugin's entry "
                           f"point in group {ENTRY_POINT_GROUP!r} or uninstall one of them")
            continue
        try:
            cls = ep.load()
        except Exception as e:  # a broken third-party plugin must not break the toolkit
            warnings.warn(f"operator plugin {ep.name!r} ({ep.value}) failed to load: {e}")
            continue
        _REGISTRY[ep.name] = cls
        _SOURCE[ep.name] = src
    if clashes:
        _clash_error = OperatorNameClash("; ".join(clashes))
        raise _clash_error


def builtin() -> list:
    """Names of the operators this package itself registers (no entry-point plugins)."""
    return sorted(n for n, s in _SOURCE.items() if s == "built-in")


def source(name: str) -> str:
    """``"built-in"`` or ``"entry point NAME = module:Class"``."""
    get(name)
    return _SOURCE[name]


def available() -> list:
    """Names of every registered operator (built-in and entry-point plugins)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get(name: str):
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; available: {', '.join(available())}") from None


def build(name: str, **kwargs):
    """Construct the operator registered as ``name`` with keyword arguments (for an image:
    ``shape=(C, H, W)``, ``noise=...`` and the options; :data:`CONSTRUCTOR_CONTRACT`). A constructor
    that cannot take these keywords raises :class:`OperatorContractError` naming the contract."""
    import inspect
    cls = get(name)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):   # not introspectable: let the call speak
        sig = None
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as e:
            raise OperatorContractError(
                f"operator {name!r} ({_qualname(cls)}{sig}) cannot be built with keyword arguments "
                f"{', '.join(sorted(kwargs)) or 'none'}: {e}. The operator plugin contract is "
                f"{CONSTRUCTOR_CONTRACT}") from None
    return cls(**kwargs)


def rebuild(description: dict, **tensors):
    """Construct an operator again from its :meth:`~operators.LinearOperator.describe` record.

    Scalar constructor arguments come from ``description["args"]``; arguments recorded as tensors
    (``{"tensor": {shape, dtype, sha1}}``, e.g. MRI coil maps and masks) must be passed as keyword
    arguments; they are checked against the recorded shape and sha1."""
    import hashlib

    import numpy as np

    from .base import OperatorInputError, noise_from_description
    if "args" not in description:
        raise OperatorInputError(f"operator description of {description.get('name')!r} records no "
                                 "constructor arguments; it cannot be rebuilt")
    kwargs = {}
    for k, v in description["args"].items():
        if isinstance(v, dict) and "tensor" in v:
            if k not in tensors:
                raise OperatorInputError(f"rebuild {description['name']!r}: pass {k}= (a tensor of shape "
                                         f"{v['tensor']['shape']}, recorded sha1 {v['tensor']['sha1']})")
            t = tensors[k]
            a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
            sha = hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
            if list(a.shape) != v["tensor"]["shape"] or sha != v["tensor"]["sha1"]:
                raise OperatorInputError(f"rebuild {description['name']!r}: {k} differs from the recorded "
                                         f"one (shape {list(a.shape)} vs {v['tensor']['shape']}, sha1 {sha} "
                                         f"vs {v['tensor']['sha1']})")
            kwargs[k] = t
        elif isinstance(v, dict) and "noise" in v:
            kwargs[k] = noise_from_description(v["noise"])
        elif isinstance(v, dict) and ("operator" in v or "repr" in v):
            if k not in tensors:
                raise OperatorInputError(f"rebuild {description['name']!r}: argument {k} was "
                                         f"{next(iter(v))} {str(v)[:80]}; pass {k}= to rebuild")
            kwargs[k] = tensors[k]
        elif isinstance(v, dict) and "complex" in v:
            kwargs[k] = complex(*v["complex"])
        else:
            kwargs[k] = tensors.get(k, v)
    return build(description["name"], **kwargs)
