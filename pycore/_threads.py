"""Thread control and build information."""
import os
import sys

from . import _C
from ._checks import integer

# set_num_threads' bound, per CPU (os.cpu_count()): oversubscribing a few times can help a
# machine whose threads wait on memory, beyond that each extra thread only costs.
MAX_THREADS_PER_CPU = 4


def get_num_threads():
    """Threads each kernel uses (default: OMP_NUM_THREADS, else the CPUs this process may use)."""
    return _C.get_num_threads()


def set_num_threads(n):
    """Use `n` threads in every following kernel call, from any Python thread.

    A kernel already running keeps the count it started with. In a process forked
    after pycore was imported, kernels run on one thread whatever is asked (GNU
    OpenMP cannot start threads in such a child), and a warning says so.

    At most MAX_THREADS_PER_CPU (4) threads per CPU of the machine: more only adds
    switching (a count in the thousands would start thousands of OpenMP threads).
    """
    n = integer(n, "n", minimum=1, maximum=MAX_THREADS_PER_CPU * (os.cpu_count() or 1))
    if _C.in_forked_child() and n > 1:
        import warnings
        warnings.warn("pycore: in a forked child process kernels run on one thread", RuntimeWarning,
                      stacklevel=2)
    _C.set_num_threads(n)


def show_config(file=None):
    """Print how pycore was built and what it uses at run time, like numpy.show_config()."""
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
        f"  simd path:      {_C.simd_path()} (GEMM micro-kernels chosen at run time)",
        f"  native build:   {_C.native_build}",
        f"  sanitizers:     {_C.sanitize_build}",
        f"  threads:        {_C.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        f"  forked child:   {_C.in_forked_child()}",
    ]
    print("\n".join(lines), file=file)
