"""Build pycore's compiled parts.

Two extension modules come out of csrc/:
  pycore._C       every C++ kernel (csrc/*.cpp) behind one pybind11 module;
  pycore._NAME    one module per csrc/NAME.pyx: loops written in Cython with prange.

Build-time switches (environment variables):
  PYCORE_NATIVE=1          add -march=native (not portable; off by default)
  PYCORE_SANITIZE=1        build with AddressSanitizer + UndefinedBehaviorSanitizer
  PYCORE_FAIL_NO_OPENMP=1  make a missing OpenMP an error instead of a warning
  PYCORE_BUILD_JOBS=N      compile N files at once (default: all cores)

The GEMM micro-kernels are compiled once per instruction set (csrc/gemm_*.cpp set
their own target with a pragma) and chosen at run time, so the default build runs
on any x86-64 and still uses AVX2/FMA or AVX-512 where the CPU has them.
"""
import glob
import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext, naive_recompile
from setuptools import Extension, setup

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d %d\n", n, _OPENMP);
    return n > 0 ? 0 : 1;
}
"""


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def openmp_flags():
    """Return the compile/link flags for OpenMP, after checking that they work.

    Like scikit-learn's build helper: compile and run a tiny program; when that
    fails, warn and build sequential kernels (or stop, with PYCORE_FAIL_NO_OPENMP).
    """
    compiler = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    flag = "/openmp" if sys.platform == "win32" else "-fopenmp"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cpp")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            subprocess.run(compiler.split() + [flag, src, "-o", exe], check=True, capture_output=True)
            subprocess.run([exe], check=True, capture_output=True)
            return [flag], [flag]
        except (OSError, subprocess.CalledProcessError) as exc:
            message = f"OpenMP probe failed ({exc}); pycore's kernels will run on one thread."
            if _env_flag("PYCORE_FAIL_NO_OPENMP"):
                raise RuntimeError(message) from exc
            warnings.warn(message)
            return [], []


omp_compile, omp_link = openmp_flags()
compile_args = ["-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"] + omp_compile
link_args = list(omp_link)
macros = [("PYCORE_VERSION_INFO", '"0.1.0"')]
if _env_flag("PYCORE_NATIVE"):
    compile_args.append("-march=native")
    macros.append(("PYCORE_NATIVE_BUILD", "1"))
sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
if _env_flag("PYCORE_SANITIZE"):
    compile_args = [a for a in compile_args if a != "-O3"] + ["-O1"] + sanitize
    link_args += sanitize
    macros.append(("PYCORE_SANITIZE_BUILD", "1"))

# Sorted so that builds are reproducible.
cpp_sources = sorted(glob.glob("csrc/*.cpp"))

core = Pybind11Extension(
    "pycore._C",
    cpp_sources,
    include_dirs=["csrc", numpy.get_include()],  # numpy's C API: bind_memory.cpp only
    define_macros=macros,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    cxx_std=17,
)

# Each csrc/NAME.pyx becomes the module pycore._NAME.
cython_modules = [
    Extension(
        "pycore._" + os.path.splitext(os.path.basename(pyx))[0],
        [pyx],
        language="c++",
        extra_compile_args=[a for a in compile_args if a != "-Wextra"] + ["-Wno-unused-function"],
        extra_link_args=link_args,
    )
    for pyx in sorted(glob.glob("csrc/*.pyx"))
]



class BuildExt(build_ext):
    """pybind11's build_ext; in a sanitizer build the thin bind_*.cpp glue is compiled
    without instrumentation (pybind11's templates take minutes to compile with it), so the
    sanitizers watch the kernels, which is where pycore's own index math lives."""

    def build_extensions(self):
        if _env_flag("PYCORE_SANITIZE"):
            compile_one = self.compiler._compile

            def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
                if os.path.basename(src).startswith("bind"):
                    extra_postargs = [a for a in extra_postargs if a not in sanitize]
                return compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts)

            self.compiler._compile = _compile
        super().build_extensions()


ParallelCompile("PYCORE_BUILD_JOBS", needs_recompile=naive_recompile).install()

setup(
    ext_modules=[core]
    + cythonize(
        cython_modules,
        build_dir="build/cython",
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
    ),
    cmdclass={"build_ext": BuildExt},
)
