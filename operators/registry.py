"""Operator registry: build any forward model by name (CLI, configs, mask metadata).

Built-in plugins register with :func:`register`. Plugins from other packages declare a Python entry
point in the group ``mri_oes.operators`` (``name = "pkg.module:Class"``); they are loaded the first time
the registry is queried, so a user adds an operator without touching this package::

    # in the plugin's pyproject.toml
    [project.entry-points."mri_oes.operators"]
    blur = "my_pkg.blur:Blur"
"""
from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from typing import Callable, Dict

ENTRY_POINT_GROUP = "mri_oes.operators"

_REGISTRY: Dict[str, Callable] = {}
_entry_points_loaded = False


def register(name: str):
    """Class decorator: ``@register("inpaint")`` makes ``build("inpaint", ...)`` construct the class."""

    def deco(cls):
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"operator name {name!r} is already registered by {existing!r}")
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_entry_points():
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            _REGISTRY[ep.name] = ep.load()
        except Exception as e:  # a broken third-party plugin must not break the toolkit
            warnings.warn(f"operator plugin {ep.name!r} ({ep.value}) failed to load: {e}")


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
    """Construct the operator registered as ``name`` with keyword arguments."""
    return get(name)(**kwargs)
