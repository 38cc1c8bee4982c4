"""Smoke test of an installed pycore, run from outside any source tree.

Used by .ci/wheel (the repaired wheel in a clean venv with no compiler on PATH) and by
cibuildwheel's test-command ([tool.cibuildwheel] in pyproject.toml). numpy is all it
needs. It checks that pycore imports from site-packages (not a checkout), prints its
build configuration, runs a LeNet-5 forward and backward whose input gradient agrees
with a float64 central difference, takes one SGD step that lowers the loss, and then
runs itself again in a child process with PYCORE_SIMD=generic (the SSE2/NEON baseline
every CPU has), where the same step must give the same loss to float32 accuracy. On
Linux the OpenMP runtime must be the copy auditwheel bundled (pycore.libs/).

Usage: python smoke.py            (both runs; exits non-zero on any failure)
"""

import json
import os
import subprocess
import sys

import numpy as np


def lenet(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def check_input_gradient(pycore):
    """The input gradient of a float64 LeNet against a central difference along a random direction."""
    from pycore import nn

    pycore.manual_seed(1)
    model = lenet(nn).to(np.float64)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 28, 28))
    y = np.array([3, 7])

    def loss_at(inputs):
        with pycore.no_grad():
            return float(loss_fn(model(inputs), y))

    loss_fn(model(x), y)
    grad_x = model.backward(loss_fn.backward())
    direction = rng.standard_normal(x.shape)
    eps = 1e-6
    numeric = (loss_at(x + eps * direction) - loss_at(x - eps * direction)) / (2 * eps)
    analytic = float(np.sum(grad_x * direction))
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric)), (numeric, analytic)


def training_step(pycore):
    """One SGD step of a float32 LeNet on a fixed batch: (loss before, loss after)."""
    from pycore import nn, optim

    pycore.manual_seed(0)
    model = lenet(nn)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=16)
    model.requires_input_grad = False
    opt.zero_grad()
    before = float(loss_fn(model(x), y))
    model.backward(loss_fn.backward())
    opt.step()
    with pycore.no_grad():
        after = float(loss_fn(model(x), y))
    assert np.isfinite(before) and after < before, (before, after)
    return before, after


def run():
    import pycore

    here = os.path.dirname(os.path.abspath(__file__))
    package_dir = os.path.dirname(os.path.abspath(pycore.__file__))
    assert "site-packages" in package_dir, f"pycore imported from {package_dir}, not an installed copy"
    assert not os.path.commonpath([here, package_dir]) == here, "pycore imported from beside this script"
    pycore.show_config()
    if sys.platform.startswith("linux") and pycore._C.openmp_enabled():
        # auditwheel's copy of libgomp, not the system's: the wheel must not need a compiler runtime
        with open("/proc/self/maps") as maps:
            gomp = {line.split()[-1] for line in maps if "libgomp" in line}
        assert gomp and all("pycore.libs" in path for path in gomp), f"libgomp loaded from {gomp}"
    check_input_gradient(pycore)
    losses = training_step(pycore)
    return {"simd_path": pycore.simd_path(), "openmp": pycore._C.openmp_enabled(), "losses": losses}


def main():
    if os.environ.get("PYCORE_SMOKE_CHILD"):
        print(json.dumps(run()))
        return
    result = run()
    print(f"smoke ({result['simd_path']}): loss {result['losses'][0]:.6f} -> {result['losses'][1]:.6f}")
    env = dict(os.environ, PYCORE_SIMD="generic", PYCORE_SMOKE_CHILD="1")
    child = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True)
    if child.returncode != 0:
        sys.exit(f"smoke with PYCORE_SIMD=generic failed:\n{child.stdout}\n{child.stderr}")
    generic = json.loads(child.stdout.strip().splitlines()[-1])
    assert generic["simd_path"] == "generic", generic
    # Different instruction sets sum in different orders (FMA or not): float32 accuracy, not bits.
    np.testing.assert_allclose(generic["losses"], result["losses"], rtol=1e-4)
    print(f"smoke (generic): loss {generic['losses'][0]:.6f} -> {generic['losses'][1]:.6f}")
    print("smoke: 2 passed, 0 failed")


if __name__ == "__main__":
    main()
