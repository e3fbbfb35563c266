"""mri_oes: untrained-network priors that do not overfit (OES, Sparse-DIP, IMP/LIP) for MRI and images.

One call from Python (see :func:`mri_oes.api.reconstruct`)::

    import mri_oes
    image, record = mri_oes.reconstruct("brain.h5", slice=0, accel=4, method="sparse-dip", preset="cpu")
"""
__version__ = "0.1.0"


def reconstruct(kspace, mask=None, **kwargs):
    """Reconstruct one multi-coil slice the way ``mri-oes recon`` does; see :func:`mri_oes.api.reconstruct`."""
    from .api import reconstruct as _reconstruct
    return _reconstruct(kspace, mask, **kwargs)
