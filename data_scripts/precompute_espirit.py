"""Precompute ESPIRiT maps for every fastMRI file/slice in a folder into the cache `mri-oes recon` reads.

    python data_scripts/precompute_espirit.py DIR [--accel 4 8] [--mask-type equispaced] [--seed 0]
                                              [--cache DIR/espirit_cache.h5]

Maps depend on the undersampling mask (they come from its ACS lines), so one entry is made per
(file, slice, acceleration, mask type, seed). Pass the same cache to ``mri-oes recon --espirit-cache``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri_oes.errors import UserError  # noqa: E402
from mri_oes.mri.data import file_fingerprint, load_slices, undersample  # noqa: E402
from mri_oes.mri.espirit import cached_espirit_maps  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--accel", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--mask-type", default="equispaced")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None)
    args = ap.parse_args(argv)
    d = Path(args.dir)
    cache = Path(args.cache) if args.cache else d / "espirit_cache.h5"
    files = sorted(p for p in d.glob("*.h5") if p.resolve() != cache.resolve())
    bad = 0
    for f in files:
        try:
            slices = load_slices(f)
        except UserError as e:
            print(f"skip {f}: {e}")
            bad += 1
            continue
        for sl in slices:
            for accel in ([None] if sl.mask is not None else args.accel):
                t = time.perf_counter()
                try:
                    k, m, _ = undersample(sl, accel, args.mask_type, args.seed)
                    _, info = cached_espirit_maps(k, m, cache=cache, fingerprint=file_fingerprint(f),
                                                  slice_index=sl.index)
                except UserError as e:
                    print(f"skip {f} slice {sl.index} accel {accel}: {e}")
                    bad += 1
                    continue
                print(f"{f.name} slice {sl.index} accel {accel}: calib {info['calib_width']} kernel "
                      f"{info['kernel_width']} {'cached' if info['cache_hit'] else 'computed'} "
                      f"{time.perf_counter() - t:.1f}s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
