"""Shared test setup: deterministic seeds and where the real data lives."""
import os
import pathlib

import numpy as np
import pytest
from hypothesis import settings

import pycore
from pycore import _C
from pycore.testing import numeric_grad  # noqa: F401  (one implementation; tests import it from here)

# No per-example deadline: these machines are shared and noisy. The sanitizer run in
# CI (.ci/run) uses fewer examples, since every kernel is several times slower there.
settings.register_profile("pycore", deadline=None, print_blob=True)
settings.register_profile("sanitize", deadline=None, max_examples=10, print_blob=True)
settings.load_profile(os.environ.get("PYCORE_HYPOTHESIS_PROFILE", "pycore"))

DATA_DIR = pathlib.Path(os.environ.get("PYCORE_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed():
    pycore.manual_seed(0)
    np.random.seed(0)
    yield


# The instruction sets this CPU can run the kernels on (csrc/simd.h); a test that takes
# the `simd_path` fixture runs once on each, with the path restored afterwards.
SIMD_PATHS = [p for p in ("generic", "avx2+fma", "avx512f") if _C.set_simd_path(p)]
_C.set_simd_path("auto")


@pytest.fixture(params=SIMD_PATHS)
def simd_path(request):
    before = _C.simd_path()
    assert _C.set_simd_path(request.param)
    yield request.param
    _C.set_simd_path(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def data_path(*parts):
    """Path under the shared data folder, or skip the test with the reason."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set PYCORE_DATA to the folder holding mnist/ and tinyshakespeare/)")
    return path


def child_process_env():
    """Environment for a test's Python subprocess: it imports the same pycore as this process
    (the installed package in CI, the in-place build when developing). Run the child with
    cwd outside the source tree too: `python -m`/`-c` put the working directory first on
    sys.path, and the source tree's pycore has no compiled module after a plain install."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(pycore.__file__)))
    return {**os.environ, "PYTHONPATH": package_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
