import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def shared_data():
    path = os.path.abspath(SHARED)
    if not os.path.isdir(path):
        pytest.skip("../shared/data not present")
    return path
