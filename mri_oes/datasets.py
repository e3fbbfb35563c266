"""Where the data are: one module for notebooks, benchmarks, tests and scripts (never a relative path).

Shared real data (not shipped; see ``shared/data/SOURCES.md``) are looked up, in order, in

1. the folder named by the environment variable ``MRI_OES_DATA``;
2. ``../shared/data`` next to the repository (``<repo>/../shared/data``);
3. ``/work/shared/data``.

Small real pieces ship INSIDE the package (``mri_oes/data/``, see its README for provenance), so
examples and CI run on a clean checkout without the shared folder:

* :func:`bundled_brain` — ``brain8_small.h5``: fastMRI multi-coil layout, 1 slice, 8 coils, 96×80, the
  central 96×80 of the real fully sampled ``brain8_full.h5`` k-space (a low-resolution scan of the same
  field of view), with ``reconstruction_rss`` and an ISMRMRD header;
* :func:`bundled_image` — ``pepper_128.png``: the centre 128×128 crop of the Set-14 ``pepper.png``.

Typical use::

    from mri_oes import datasets
    f = datasets.brain("brain8")            # shared brain8_full.h5, else FileNotFoundError
    f = datasets.brain("brain8", fallback=True)  # ... else the bundled small brain
    f = datasets.bundled_brain()            # always there
    img = datasets.image("pepper", fallback=True)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

ENV_VAR = "MRI_OES_DATA"
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parents[1]

#: short names of the shared brains -> file under ``mri/``
BRAINS = {"brain8": "brain8_full.h5", "brain8b": "brain8b_full.h5", "brain4": "brain4_full.h5"}
#: shared natural images (``images/NAME.png``)
IMAGES = ("baboon", "barbara", "lena", "pepper")


def candidates() -> List[Path]:
    """The folders searched for shared data, in order."""
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]).expanduser())
    out += [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    return out


def shared_root() -> Optional[Path]:
    """The first existing shared-data folder, or ``None`` (e.g. in CI without ``shared/``)."""
    for c in candidates():
        if c.is_dir():
            return c.resolve()
    return None


def have_shared() -> bool:
    return shared_root() is not None


def path(relative: str) -> Path:
    """A file inside the shared data folder, e.g. ``path("mri/brain8_full.h5")``.

    Raises :class:`FileNotFoundError` naming every folder tried when it is not found."""
    tried = []
    for c in candidates():
        p = c / relative
        if p.exists():
            return p.resolve()
        tried.append(str(c))
    raise FileNotFoundError(f"shared data file {relative!r} not found (looked in: {', '.join(tried)}; "
                            f"set {ENV_VAR}=/path/to/shared/data)")


def bundled_brain() -> Path:
    """The small real brain shipped with the package (fastMRI layout, 8 coils, 96×80, 1 slice)."""
    return PACKAGE_DATA / "brain8_small.h5"


def bundled_image() -> Path:
    """A 128×128 RGB crop of the Set-14 ``pepper`` image shipped with the package."""
    return PACKAGE_DATA / "pepper_128.png"


def brain(name: str = "brain8", fallback: bool = False) -> Path:
    """A shared fully sampled brain by short name (``brain8``, ``brain8b``, ``brain4``) or file name.

    ``fallback=True``: return :func:`bundled_brain` when the shared data are absent."""
    fname = BRAINS.get(name, name)
    if fname not in BRAINS.values():
        raise ValueError(f"unknown brain {name!r}; choose from {', '.join(BRAINS)}")
    try:
        return path(f"mri/{fname}")
    except FileNotFoundError:
        if fallback:
            return bundled_brain()
        raise


def image(name: str = "pepper", fallback: bool = False) -> Path:
    """A shared natural image (``baboon``, ``barbara``, ``lena``, ``pepper``).

    ``fallback=True``: return :func:`bundled_image` when the shared data are absent."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}; choose from {', '.join(IMAGES)}")
    try:
        return path(f"images/{name}.png")
    except FileNotFoundError:
        if fallback:
            return bundled_image()
        raise
