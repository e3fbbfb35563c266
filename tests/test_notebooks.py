"""The notebooks run top to bottom (with their step counts cut to a handful)."""
import json
import os
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(nb, monkeypatch, shared_data):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(nb.parent)
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    src = "\n".join("".join(c["source"]) for c in cells)
    src = re.sub(r"STEPS, MASK_STEPS, DENSITY, SEED = .*", "STEPS, MASK_STEPS, DENSITY, SEED = 3, 3, 0.05, 0", src)
    ns = {}
    exec(compile(src, str(nb), "exec"), ns)
    assert ns["mask"].n_kept == round(0.05 * ns["mask"].n_total)
