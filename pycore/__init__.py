"""pycore: a small deep-learning library for multicore CPUs.

numpy arrays in and out; C++/OpenMP kernels underneath; PyTorch's names.

    import pycore, pycore.nn as nn, pycore.functional as F
"""
from . import _C

__version__ = _C.__version__

from ._context import get_rng_state, is_debug, is_grad_enabled, manual_seed, no_grad, set_debug, set_rng_state
from ._threads import get_num_threads, set_num_threads, set_simd_path, show_config, simd_path
from ._threads import _simd_path_from_environment

_simd_path_from_environment()  # PYCORE_SIMD=avx512|avx2|generic|auto
from . import data, datasets, distributed, functional, memory, nn, optim, sequences, testing, train
from .serialization import *  # noqa: F401,F403
from . import serialization

__all__ = [
    "functional", "nn", "manual_seed", "no_grad", "is_grad_enabled", "get_rng_state",
    "set_rng_state", "set_debug", "is_debug", "get_num_threads", "set_num_threads", "simd_path", "set_simd_path",
    "show_config", "optim", "train", "data", "memory", "datasets", "distributed", "sequences", "testing", *serialization.__all__,
]
