"""Packaging and build hygiene: the version's single source, PEP 561 files, the _C stub,
header dependency tracking in setup.py, the SIMD path forced at import, and (in CI's
PYCORE_NO_OPENMP build) a build without OpenMP."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pytest

import pycore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.dirname(os.path.abspath(pycore.__file__))


def load_script(path, name):
    """Import one of the repository's scripts (setup.py, .ci/stubgen.py) as a module."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pycore(code, **env):
    """Run `code` in a fresh interpreter that imports the same pycore as this one; returns
    the JSON its last output line holds."""
    child_env = dict(os.environ, PYTHONPATH=os.path.dirname(PACKAGE_DIR), **env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env,
        cwd=os.path.dirname(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_version_comes_from_pyproject():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert pycore.__version__ == version
    assert pycore._C.__version__ == version
    try:
        installed = metadata.version("pycore")
    except metadata.PackageNotFoundError:  # a source checkout with an in-place build
        installed = None
    if "site-packages" in PACKAGE_DIR:
        assert installed == version


def test_package_is_typed():
    """PEP 561: py.typed and the compiled module's stub sit in the imported package
    (so a wheel that dropped its package data fails here)."""
    assert os.path.isfile(os.path.join(PACKAGE_DIR, "py.typed"))
    assert os.path.isfile(os.path.join(PACKAGE_DIR, "_C.pyi"))


def test_stub_matches_the_compiled_module():
    pytest.importorskip("pybind11_stubgen", reason="pybind11-stubgen (dependency group lint) is not installed")
    stubgen = load_script(".ci/stubgen.py", "pycore_stubgen")
    with open(os.path.join(REPO, "pycore", "_C.pyi"), encoding="utf-8") as f:
        checked_in = f.read()
    assert stubgen.generate() == checked_in, "pycore/_C.pyi is out of date: run python .ci/stubgen.py"


def test_stub_names_every_public_binding():
    """Independent of pybind11-stubgen: each public attribute of pycore._C is declared."""
    with open(os.path.join(REPO, "pycore", "_C.pyi"), encoding="utf-8") as f:
        stub = f.read()
    for name in dir(pycore._C):
        if not name.startswith("_"):
            assert f"def {name}(" in stub or f"\n{name}: " in stub or f"class {name}" in stub, name


@pytest.fixture(scope="module")
def build_script():
    return load_script("setup.py", "pycore_setup")


def test_header_closure_follows_nested_includes(tmp_path, build_script):
    (tmp_path / "kernel.cpp").write_text('#include "a.h"\n#include <vector>\n#include "missing.h"\n')
    (tmp_path / "a.h").write_text('#pragma once\n  #  include "b.h"\n')
    (tmp_path / "b.h").write_text('#include "a.h"\n')  # a cycle must terminate
    (tmp_path / "unused.h").write_text("")
    found = build_script.local_includes(str(tmp_path / "kernel.cpp"))
    assert found == {str(tmp_path / "a.h"), str(tmp_path / "b.h")}


def test_an_edited_header_recompiles_its_users(tmp_path, build_script):
    src, header, other, obj = (tmp_path / n for n in ("kernel.cpp", "a.h", "other.h", "kernel.o"))
    src.write_text('#include "a.h"\n')
    header.write_text("")
    other.write_text("")
    obj.write_text("")
    for path, mtime in ((src, 100), (header, 100), (other, 100), (obj, 200)):
        os.utime(path, (mtime, mtime))
    assert not build_script.needs_recompile(str(obj), str(src))
    os.utime(other, (300, 300))  # a header the source does not include
    assert not build_script.needs_recompile(str(obj), str(src))
    os.utime(header, (300, 300))
    assert build_script.needs_recompile(str(obj), str(src))
    os.utime(header, (100, 100))
    os.utime(src, (300, 300))
    assert build_script.needs_recompile(str(obj), str(src))


def test_every_header_is_reached_from_a_source(build_script):
    """Each csrc header is found by the include scan from some .cpp or .pyx (whose verbatim
    C++ includes pool2d_2x2.h), so editing it rebuilds something (a header only reached
    through a form the scan misses would not)."""
    csrc = os.path.join(REPO, "csrc")
    if not os.path.isdir(csrc):
        pytest.skip("no csrc/ beside the tests")
    reached = set()
    for name in os.listdir(csrc):
        if name.endswith((".cpp", ".pyx")) and name != "pool2d.cpp":  # pool2d.cpp: Cython's output
            reached |= build_script.local_includes(os.path.join(csrc, name))
    headers = {os.path.join(csrc, n) for n in os.listdir(csrc) if n.endswith(".h")}
    assert headers <= reached, sorted(headers - reached)


def test_model_runs_with_simd_forced_to_generic_at_import():
    """PYCORE_SIMD=generic (the SSE2/NEON baseline every CPU has) set before import: a conv +
    linear model matches a numpy reference, forward and input gradient."""
    result = run_pycore(
        """
        import json
        import numpy as np
        import pycore
        from pycore import nn
        pycore.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)).to(np.float64)
        x = np.random.default_rng(0).standard_normal((2, 2, 7, 7))
        y = model(x)
        gx = model.backward(np.ones_like(y))
        params = {k: v.tolist() for k, v in model.state_dict().items()}
        print(json.dumps({"path": pycore.simd_path(), "x": x.tolist(), "y": y.tolist(), "gx": gx.tolist(),
                          "params": params}))
    """,
        PYCORE_SIMD="generic",
    )
    assert result["path"] == "generic"
    p = {k: np.array(v) for k, v in result["params"].items()}
    x = np.array(result["x"])
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (N, C, 5, 5, 3, 3)
    conv = np.einsum("nchwij,ocij->nohw", windows, p["0.weight"]) + p["0.bias"][:, None, None]
    hidden = np.maximum(conv, 0).reshape(2, -1)
    np.testing.assert_allclose(result["y"], hidden @ p["3.weight"].T + p["3.bias"], rtol=1e-12, atol=1e-12)
    # d(sum y)/dx: through the linear layer, the ReLU mask, then the transposed convolution
    g_conv = (np.ones((2, 3)) @ p["3.weight"]).reshape(conv.shape) * (conv > 0)
    gx = np.zeros_like(x)
    for i in range(3):
        for j in range(3):
            gx[:, :, i : i + 5, j : j + 5] += np.einsum("nohw,oc->nchw", g_conv, p["0.weight"][:, :, i, j])
    np.testing.assert_allclose(result["gx"], gx, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(
    not os.environ.get("PYCORE_EXPECT_NO_OPENMP"), reason="CI's PYCORE_NO_OPENMP=1 build sets PYCORE_EXPECT_NO_OPENMP"
)
def test_build_without_openmp_runs_single_threaded():
    assert not pycore._C.openmp_enabled()
    assert pycore._C.openmp_version() == 0
    assert pycore.get_num_threads() == 1
    pycore.set_num_threads(2)  # accepted, but the kernels keep one thread (they split work by thread id)
    assert pycore.get_num_threads() == 1
    try:
        a, b = np.random.default_rng(0).standard_normal((2, 67, 67))
        np.testing.assert_allclose(pycore.functional.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    finally:
        pycore.set_num_threads(1)
    import io

    text = io.StringIO()
    pycore.show_config(file=text)
    assert "openmp:         no" in text.getvalue()


def test_subpackages_load_on_first_use():
    """`import pycore` alone loads the kernels, not nn/optim/train or numpy.random (import time); each subpackage
    then appears on first attribute access, `from pycore import X` and `import *` alike."""
    result = run_pycore(
        """
        import json, sys
        import numpy
        numpy_loads_random = "numpy.random" in sys.modules  # numpy 1.x does, 2.x on first use
        import pycore
        before = sorted(m for m in sys.modules if m.startswith("pycore."))
        random_loaded = "numpy.random" in sys.modules and not numpy_loads_random
        seen = [type(pycore.nn.Linear).__name__]
        from pycore import optim
        namespace = {}
        exec("from pycore import *", namespace)
        print(json.dumps({"before": before, "random": random_loaded, "seen": seen, "optim": optim.__name__,
                          "star": sorted(k for k in namespace if k in pycore._SUBPACKAGES),
                          "dir": all(name in dir(pycore) for name in pycore._SUBPACKAGES)}))
    """
    )
    assert result["before"] == [
        "pycore._C",
        "pycore._checks",
        "pycore._context",
        "pycore._threads",
        "pycore.serialization",
    ]
    assert not result["random"], "import pycore loaded numpy.random (~20 ms): the generator is made on first use"
    assert result["seen"] == ["type"] and result["optim"] == "pycore.optim"
    assert result["star"] == sorted(
        ["data", "datasets", "distributed", "functional", "memory", "nn", "optim", "sequences", "testing", "train"]
    )
    assert result["dir"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(pycore, "nope")  # noqa: B009  (the attribute access is the test)
