"""Thread control, the instruction set the kernels run on, and build information."""
import os
import sys
from typing import IO, Optional

from . import _C
from ._checks import integer

# set_num_threads' bound, per CPU (os.cpu_count()): oversubscribing a few times can help a
# machine whose threads wait on memory, beyond that each extra thread only costs.
MAX_THREADS_PER_CPU = 4


def get_num_threads() -> int:
    """The number of threads each kernel uses.

    Returns:
        int: the count set by set_num_threads, else OMP_NUM_THREADS, else the CPUs this
        process may use.
    """
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use `n` threads in every following kernel call, from any Python thread.

    A kernel already running keeps the count it started with. In a process forked
    after pycore was imported, kernels run on one thread whatever is asked (GNU
    OpenMP cannot start threads in such a child), and a warning says so.

    At most MAX_THREADS_PER_CPU (4) threads per CPU of the machine: more only adds
    switching (a count in the thousands would start thousands of OpenMP threads).

    Args:
        n: int, the thread count, from 1 to 4 times os.cpu_count(); ValueError outside.
    """
    n = integer(n, "n", minimum=1, maximum=MAX_THREADS_PER_CPU * (os.cpu_count() or 1))
    if _C.in_forked_child() and n > 1:
        import warnings
        warnings.warn("pycore: in a forked child process kernels run on one thread", RuntimeWarning,
                      stacklevel=2)
    _C.set_num_threads(n)


# set_simd_path's names: each instruction set by its short and its full name
SIMD_PATHS = {"avx512": "avx512f", "avx512f": "avx512f", "avx2": "avx2+fma", "avx2+fma": "avx2+fma",
              "generic": "generic", "auto": "auto"}


def simd_path() -> str:
    """The instruction set every kernel runs on.

    Returns:
        str: 'avx512f', 'avx2+fma' or 'generic' (SSE2).
    """
    return _C.simd_path()


def set_simd_path(name: str) -> None:
    """Run every kernel (GEMM micro-kernels and vectorised loops) on one instruction set:
    'avx512' ('avx512f'), 'avx2' ('avx2+fma'), 'generic' (the SSE2 baseline) or 'auto'
    (the best this CPU has, the default). For benchmarks and tests; the environment
    variable PYCORE_SIMD, read when pycore is imported, does the same for a whole process.

    Args:
        name: str, one of 'avx512', 'avx512f', 'avx2', 'avx2+fma', 'generic' or 'auto'
            (any case).

    Raises ValueError for another name and RuntimeError when the CPU lacks it.
    """
    if not isinstance(name, str) or name.lower() not in SIMD_PATHS:
        raise ValueError(f"simd path: expected one of {', '.join(SIMD_PATHS)}, got {name!r}")
    if not _C.set_simd_path(SIMD_PATHS[name.lower()]):
        raise RuntimeError(f"simd path {name!r}: this CPU does not have that instruction set "
                           f"(it runs {_C.simd_path()})")


def _simd_path_from_environment() -> None:
    """Apply PYCORE_SIMD at import (unset or empty: auto)."""
    name = os.environ.get("PYCORE_SIMD", "").strip()
    if name:
        try:
            set_simd_path(name)
        except (ValueError, RuntimeError) as exc:
            raise type(exc)(f"PYCORE_SIMD={name}: {exc}") from None


def show_config(file: Optional[IO[str]] = None) -> None:
    """Print how pycore was built and what it uses at run time, like numpy.show_config().

    Args:
        file: a text stream to print to; default None, sys.stdout.
    """
    import numpy

    from . import __version__

    ov = _C.openmp_version()
    omp = f"yes (OpenMP {ov // 100}.{ov % 100:02d}, _OPENMP={ov})" if _C.openmp_enabled() else "no"
    lines = [
        f"pycore {__version__}",
        f"  python:         {sys.version.split()[0]}",
        f"  numpy:          {numpy.__version__}",
        f"  compiler:       {_C.compiler}",
        f"  openmp:         {omp}",
        f"  simd path:      {_C.simd_path()} (GEMM micro-kernels and vectorised loops, chosen at run time; "
        f"PYCORE_SIMD={os.environ.get('PYCORE_SIMD', 'unset')})",
        f"  native build:   {_C.native_build}",
        f"  sanitizers:     {_C.sanitize_build}",
        f"  threads:        {_C.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        f"  forked child:   {_C.in_forked_child()}",
    ]
    print("\n".join(lines), file=file)
