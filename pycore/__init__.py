"""pycore: a small deep-learning library for multicore CPUs.

numpy arrays in and out; C++/OpenMP kernels underneath; PyTorch's names.

    import pycore, pycore.nn as nn, pycore.functional as F
"""
import types

from . import _C

__version__ = _C.__version__

from ._context import get_rng_state, is_debug, is_grad_enabled, manual_seed, no_grad, set_debug, set_rng_state
from ._threads import get_num_threads, set_num_threads, set_simd_path, show_config, simd_path
from ._threads import _simd_path_from_environment

_simd_path_from_environment()  # PYCORE_SIMD=avx512|avx2|generic|auto
from .serialization import *  # noqa: F401,F403
from . import serialization

# The subpackages load on first use (`pycore.nn`, `import pycore.nn`, `from pycore import optim`),
# PEP 562's module __getattr__: `import pycore` alone costs numpy + the kernels + ~10 ms, so an app
# that only loads a checkpoint or sets threads does not pay for nn, optim, train and distributed
# (~60 ms of Python more on a quiet 2-core machine; see README's import time).
_SUBPACKAGES = ("data", "datasets", "distributed", "functional", "memory", "nn", "optim", "sequences",
                "testing", "train")


def __getattr__(name: str) -> "types.ModuleType":
    if name in _SUBPACKAGES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")  # also binds pycore.<name>
    raise AttributeError(f"module 'pycore' has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_SUBPACKAGES))


__all__ = [
    *_SUBPACKAGES, "manual_seed", "no_grad", "is_grad_enabled", "get_rng_state", "set_rng_state", "set_debug",
    "is_debug", "get_num_threads", "set_num_threads", "simd_path", "set_simd_path", "show_config",
    *serialization.__all__,
]
