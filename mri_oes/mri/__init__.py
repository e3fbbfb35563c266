"""Multi-coil MRI: fastMRI files (:mod:`.data`), ESPIRiT maps (:mod:`.espirit`), problem assembly
(:mod:`.problem`), fastMRI-convention metrics (:mod:`.metrics`) and SigPy baselines (:mod:`.baselines`)."""
