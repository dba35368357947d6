import os

import numpy as np
import pytest
import torch

from cascor.config import preset
from cascor.datasets import encode_targets, two_spirals, xor


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # Tiny problems run fastest on one thread, and a fixed thread count keeps BLAS
    # reductions identical between the processes a test compares.
    torch.set_num_threads(1)


@pytest.fixture
def spirals():
    ds = two_spirals()
    return ds.X.astype(np.float32), encode_targets(ds.y, ds.classes, -0.5, 0.5)


@pytest.fixture
def xor_data():
    ds = xor()
    return ds.X.astype(np.float32), encode_targets(ds.y, ds.classes, -0.5, 0.5)


@pytest.fixture
def spirals_cfg():
    return preset("fahlman-spirals").replace(seed=1)


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
