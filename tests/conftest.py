import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# CLI calls inside tests take their thread default from OMP_NUM_THREADS (mri_oes.runtime): one thread
os.environ["OMP_NUM_THREADS"] = "1"
# small test nets gain nothing from intra-op threads, and 2 threads on a busy 2-core box thrash
torch.set_num_threads(1)



@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one torch thread and leaves the count as it found it (a CLI call inside a test
    may set it from --threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def shared_data():
    path = os.path.abspath(SHARED)
    if not os.path.isdir(path):
        pytest.skip("../shared/data not present")
    return path
