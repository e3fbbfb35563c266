"""Inverse-problem layer: linear forward operators as plugins (see :mod:`operators.base`)."""
from .base import (Composed, GaussianNoise, LinearOperator, OperatorInputError, Scaled,  # noqa: F401
                   center_crop)
from .registry import available, build, get, register  # noqa: F401
from .natural import Denoise, Inpaint, SuperResolution  # noqa: F401,E402
from .mri import MultiCoilMRI  # noqa: F401,E402
from .mri_coils import CoilImagesMRI  # noqa: F401,E402
