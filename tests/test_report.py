"""recon's figures and `mri-oes report`: the page of a real recon output is self-contained (every
image a data URI, no script, no link), holds the run's numbers, and renders in headless Chromium with
every image loaded and a screenshot that is not blank."""
import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mri_oes.cli import main

BRAIN = Path(__file__).resolve().parents[1] / "mri_oes" / "data" / "brain8_small.h5"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: appended to a copy of the page: each image's naturalWidth (0 = not loaded) into the DOM after load
PROBE = ("<script>window.addEventListener('load',function(){document.body.setAttribute('data-images',"
         "[].map.call(document.images,function(i){return i.complete?i.naturalWidth:0}).join(','))});</script>")


@pytest.fixture(scope="module")
def recon_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "recon"
    rc = main(["recon", str(BRAIN), "--accel", "4", "--method", "zero-filled", "sense", "--out", str(out),
               "--workers", "1", "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def report(recon_out):
    assert main(["report", str(recon_out)]) == 0
    return recon_out / "report.html"


def _png(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(src).convert("L"))


def test_recon_figures(recon_out):
    """Per slice folder figure.png, per volume montage.png, OUT/figures across methods; none blank;
    the standalone entry point rewrites the cross-method figure."""
    from mri_oes.mri import figures
    for run in ("zero-filled_4x", "sense_4x"):
        for f in (recon_out / run / "slices" / "brain8_small" / "000" / "figure.png",
                  recon_out / run / "volumes" / "brain8_small" / "montage.png"):
            a = _png(f)
            assert a.std() > 20 and len(np.unique(a)) > 50, f
    fig = recon_out / "figures" / "brain8_small_000_4x.png"
    a = _png(fig)
    assert a.shape[1] > 2 * a.shape[0] * 0.6 and a.std() > 20   # a wide multi-panel figure
    before = fig.stat().st_mtime_ns
    assert figures.main([str(recon_out)]) == 0 and fig.stat().st_mtime_ns >= before
    assert figures.write_recon_figures(recon_out) == [fig]   # up to date: kept, still listed


def test_report_is_self_contained(report, recon_out, capsys):
    text = report.read_text()
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text and "<script" not in text.lower()
    for s in srcs:   # every embedded image decodes
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    rows = json.loads((recon_out / "summary.json").read_text())["rows"]
    for r in rows:   # the summary table holds the run's numbers
        assert f"{r['psnr_mean']:.2f}" in text and r["run"] in text
    assert "brain8_small_000_4x.png" in text and "settings of sense_4x" in text
    # one run of a recon output: refused in one line, naming the folder to give
    assert main(["report", str(recon_out / "sense_4x")]) == 2
    err = capsys.readouterr().err
    assert "give the output folder" in err and len(err.strip().splitlines()) == 1


def _chromium(args, tmp_path):
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package chromium; "
                                             ".ci/run installs it with apt-get, skipped where apt is unavailable)")
def test_report_renders_in_chromium(report, tmp_path):
    text = report.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    p = _chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r'data-images="([0-9,]*)"', p.stdout)
    assert m, f"no probe result in the DOM; chromium said: {p.stderr[-1500:]}"
    widths = [int(w) for w in m.group(1).split(",")]
    assert len(widths) == text.count("<img ") and all(w > 0 for w in widths), widths
    shot = tmp_path / "shot.png"
    p = _chromium([f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri()], tmp_path)
    assert shot.is_file(), p.stderr[-1500:]
    a = _png(shot)
    assert a.shape == (2000, 1200)
    assert a.std() > 20 and len(np.unique(a)) > 50   # text, tables and images, not one flat colour


def test_report_of_a_fit_run(tmp_path):
    """Any run folder (here `fit`): its record as a table and its images embedded; --html elsewhere."""
    from mri_oes.report import RUN_IMAGES
    out = tmp_path / "fit"
    img = BRAIN.parent / "pepper_128.png"
    assert main(["fit", str(img), "--method", "dip", "--steps", "2", "--levels", "2", "--width", "0.25",
                 "--no-progress", "--out", str(out)]) == 0
    page = tmp_path / "pages" / "fit.html"
    assert main(["report", str(out), "--html", str(page)]) == 0
    text = page.read_text()
    assert text.count("<img ") == sum((out / n).is_file() for n in RUN_IMAGES) >= 2
    rec = json.loads((out / "metrics.json").read_text())
    assert f"{rec['final']['psnr']:.2f}" in text and not (out / "report.html").exists()
