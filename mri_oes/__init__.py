"""mri_oes: untrained-network priors that do not overfit (OES, Sparse-DIP, IMP/LIP) for MRI and images."""
__version__ = "0.1.0"
