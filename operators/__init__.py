"""Inverse-problem layer: linear forward operators as plugins (see :mod:`operators.base`)."""
from .base import (Composed, GaussianNoise, LinearOperator, OperatorInputError, Scaled,  # noqa: F401
                   center_crop)
from .registry import (OperatorContractError, OperatorNameClash, available, build, builtin, get, rebuild,  # noqa: F401
                       register, source)
from .natural import Denoise, Inpaint, SuperResolution  # noqa: F401,E402
from .mri import MultiCoilMRI  # noqa: F401,E402
from .mri_coils import CoilImagesMRI  # noqa: F401,E402
from .stacked import Stacked  # noqa: F401,E402
from . import testing  # noqa: F401,E402
from .interop import from_deepinv, from_sigpy, to_deepinv, to_sigpy  # noqa: F401,E402
