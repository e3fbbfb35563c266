"""`mri-oes report RUN_DIR`: one self-contained HTML page of a run folder (tables, figures, curves,
settings; every image embedded), that opens in a browser without a server.

    mri-oes report runs/recon                  # -> runs/recon/report.html
    mri-oes report runs/recon --html ~/recon.html

For a recon output folder: the command and inputs, the summary table, per-volume and per-slice
fastMRI metrics, the cross-method figures (written first when missing), montages, training curves and
each run's settings. For any other run folder: every metrics.json under it and its images.
"""
from __future__ import annotations

import argparse


def cmd_report(args) -> int:
    from ..report import write_report
    path = write_report(args.run_dir, args.html)
    print(path)
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page of a run folder (tables, figures, settings)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a recon output folder (--out of recon) or any run folder")
    p.add_argument("--html", default=None, help="write the page here (default: RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)
