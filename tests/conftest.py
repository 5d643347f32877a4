import os

import pytest
import torch

# Tests may run side by side (pytest -n): one thread each, or torch slows down badly on 2 cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
