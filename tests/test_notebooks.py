"""Every notebook executes top to bottom in a real Jupyter kernel (nbclient) at its small size
(``MRI_OES_NB_QUICK=1``), without the shared data if need be (they find data through
:mod:`mri_oes.datasets`, which falls back to the data bundled with the package). Notebooks are stored
WITHOUT outputs (checked here too). Also: the data module itself."""
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mri_oes import datasets

NB_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def test_there_are_the_five_workflows():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_mri_reconstruction_compared", "02_mask_transfer", "03_natural_images",
            "04_operator_plugin", "05_inside_a_mask"} <= names


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs_and_has_a_size_parameter(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"{nb.name}: stored outputs (strip them: outputs are made by running it)"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "MRI_OES_NB_QUICK" in "".join(params[0]["source"])
    src = "\n".join("".join(c["source"]) for c in code)
    assert "shared/data" not in src and "../" not in src, f"{nb.name}: data must come through mri_oes.datasets"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_what_it_shows_and_ends_with_what_it_found(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    assert cells[-1]["cell_type"] == "markdown" and "## What it found" in "".join(cells[-1]["source"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(nb, monkeypatch, tmp_path, capsys):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("MRI_OES_NB_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MRI_OES_NB_WORKDIR", str(tmp_path))     # where a notebook writes its run folders
    book = nbformat.read(nb, as_version=4)
    t = time.perf_counter()
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                  # raises CellExecutionError with the cell and traceback on failure
    dt = time.perf_counter() - t
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    if nb.name.startswith("01_"):   # quick mode: the 4x and 8x masks reach 4x and 8x
        text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "4x (equispaced-fraction): 4.00x reached" in text and "8x (equispaced-fraction): 8.00x reached" in text
    n_code = sum(c.cell_type == "code" for c in book.cells)
    with capsys.disabled():           # a line in the CI log that the notebook really ran
        print(f"\n[notebook] {nb.name}: {n_code} code cells executed in {dt:.1f} s (MRI_OES_NB_QUICK=1)")


# ------------------------------------------------------------------------------------- data module
def test_bundled_brain_is_a_real_fastmri_file():
    from mri_oes.mri.data import load_slice
    p = datasets.bundled_brain()
    assert p.is_file() and p.stat().st_size < 600_000
    with h5py.File(p) as f:
        assert f["kspace"].shape == (1, 8, 96, 80) and f["kspace"].dtype == np.complex64
        assert f["reconstruction_rss"].shape == (1, 96, 80) and "ismrmrd_header" in f
    sl = load_slice(p, 0)
    assert sl.fully_sampled and sl.reference.shape == (96, 80)
    assert datasets.bundled_image().is_file()


def test_data_helper_search_order_and_clear_errors(monkeypatch, tmp_path):
    (tmp_path / "mri").mkdir()
    (tmp_path / "mri" / "brain4_full.h5").write_bytes(b"")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert datasets.candidates()[0] == tmp_path
    assert datasets.brain("brain4") == (tmp_path / "mri" / "brain4_full.h5").resolve()
    with pytest.raises(ValueError, match="unknown brain 'brain9'"):
        datasets.brain("brain9")
    monkeypatch.setattr(datasets, "candidates", lambda: [tmp_path / "nowhere"])
    with pytest.raises(FileNotFoundError, match=r"mri/brain8_full.h5.*MRI_OES_DATA"):
        datasets.brain("brain8")
    assert datasets.brain("brain8", fallback=True) == datasets.bundled_brain()
    assert datasets.image("pepper", fallback=True) == datasets.bundled_image()
    assert datasets.shared_root() is None and not datasets.have_shared()


def test_notebooks_extra_is_jupyterlab_and_ipywidgets_installed_by_install_sh_not_ci():
    import tomllib
    root = NB_DIR.parent
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["notebooks"]
    assert {e.split(">")[0].split("=")[0] for e in extra} == {"jupyterlab", "ipywidgets"}
    sh = (root / "install.sh").read_text()
    branch = sh[sh.index('if [ "${1:-}" = "notebooks" ]'):]
    assert '".[notebooks]"' in branch.split("fi\n")[0]
    ci = root / ".ci" / "run"
    if ci.is_file():
        assert "notebooks" not in "".join(l for l in ci.read_text().splitlines(True) if "install" in l)
