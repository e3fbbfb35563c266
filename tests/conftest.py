import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# CLI calls inside tests take their thread default from OMP_NUM_THREADS (mri_oes.runtime): one thread
os.environ["OMP_NUM_THREADS"] = "1"
# small test nets gain nothing from intra-op threads, and 2 threads on a busy 2-core box thrash
torch.set_num_threads(1)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def shared_data():
    path = os.path.abspath(SHARED)
    if not os.path.isdir(path):
        pytest.skip("../shared/data not present")
    return path
