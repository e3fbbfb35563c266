"""PSNR curves (averaged iterates, data-consistent: ``average_dc_psnr``) read from the device logs
(``logs/*.log``, one ``step N  dc_psnr X`` line per logged row), killed runs included.

    python results/2026-11-27-mri-gpu/curves_from_logs.py     # -> curves_from_logs.png
"""
import re
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt   # noqa: E402

HERE = Path(__file__).resolve().parent
L1 = {("brain8", 0): 32.99, ("brain8", 1): 32.63, ("brain8", 2): 32.99, ("brain8b", 0): 35.47,
      ("brain4", 0): 39.61}   # L1-wavelet final per seed (brain8b/brain4: the 3-seed means), stop-23 table


def curve(name):
    pts = [(int(m[1]), float(m[2])) for m in re.finditer(r"^step (\d+)\s+dc_psnr ([\d.]+)",
                                                          (HERE / "logs" / f"{name}.log").read_text(), re.M)]
    return [p[0] for p in pts], [p[1] for p in pts]


def main():
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    for s, c in zip((0, 1, 2), ("C0", "C1", "C2")):
        ax.plot(*curve(f"d90_brain8_4x_s{s}"), c, lw=1, label=f"seed {s}, call 1 (14 jobs; killed at 15,100)")
        ax.plot(*curve(f"call2_d90_brain8_4x_s{s}"), c, lw=1, ls="--", label=f"seed {s}, call 2 (3 jobs)")
        ax.axhline(L1[("brain8", s)], color=c, lw=0.6, ls=":")
    ax.set(title="brain8 4x, Sparse-DIP density 0.9: two GPU runs per seed\n(dotted: L1-wavelet of that seed)",
           xlabel="step", ylabel="PSNR dB (DC, averaged iterates)", ylim=(30, 34))
    ax.legend(fontsize=6)
    ax = axes[1]
    for name, lab in (("call2_d90_brain8_4x_s0", "Sparse-DIP d0.9 s0"), ("d75_brain8_4x_s2", "Sparse-DIP d0.75 s2"),
                      ("call2_d90_brain8_4x_s2", "Sparse-DIP d0.9 s2"), ("dd_brain8_4x_s1", "dense deep decoder s1"),
                      ("call2_d90_brain8_4x_s1", "Sparse-DIP d0.9 s1"), ("dip_brain8_4x_s0", "dense DIP (hourglass) s0")):
        ax.plot(*curve(name), lw=1, label=lab)
    ax.axhline(32.87, color="k", lw=0.8, ls=":", label="L1-wavelet, 3-seed mean")
    ax.set(title="brain8 4x: methods (killed runs end early)", xlabel="step", ylim=(28, 34))
    ax.legend(fontsize=6)
    ax = axes[2]
    for scan, lo in (("brain8b", 33), ("brain4", 37)):
        ax.plot(*curve(f"d90_{scan}_4x_s0"), lw=1, label=f"{scan} Sparse-DIP d0.9 s0")
        ax.plot(*curve(f"dip_{scan}_4x_s0"), lw=1, ls="--", label=f"{scan} dense DIP (hourglass) s0, killed")
        ax.axhline(L1[(scan, 0)], lw=0.6, ls=":", color="k")
    ax.set(title="256x256 scans at 4x (dotted: L1-wavelet 3-seed means)", xlabel="step", ylim=(32, 42))
    ax.legend(fontsize=6)
    fig.tight_layout()
    from mri_oes.io import atomic_path
    with atomic_path(HERE / "curves_from_logs.png") as tmp:   # as mri_quality writes its plots
        fig.savefig(tmp, dpi=110, format="png")


if __name__ == "__main__":
    main()
