"""Shared test setup: deterministic seeds and where the real data lives."""
import os
import pathlib

import numpy as np
import pytest

import pycore

DATA_DIR = pathlib.Path(os.environ.get("PYCORE_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed():
    pycore.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def data_path(*parts):
    """Path under the shared data folder, or skip the test with the reason."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set PYCORE_DATA to the folder holding mnist/ and tinyshakespeare/)")
    return path
