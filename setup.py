"""Build pycore's compiled parts.

Two kinds of extension module come out of csrc/:
  pycore._C       every C++ kernel (csrc/*.cpp) behind one pybind11 module;
  pycore._NAME    one module per csrc/NAME.pyx: loops written in Cython with prange.

The package's metadata (name, version, dependencies) lives in pyproject.toml; this file
only describes the extension modules. The version is read from pyproject.toml here and
compiled into the module (`pycore._C.__version__`, which is `pycore.__version__`), so it
is written in one place.

Build-time switches (environment variables):
  PYCORE_NATIVE=1          add -march=native (not portable; off by default)
  PYCORE_SANITIZE=1        build with AddressSanitizer + UndefinedBehaviorSanitizer
  PYCORE_NO_OPENMP=1       build without OpenMP: every kernel runs on one thread (what a
                           compiler without OpenMP gives; CI builds this way to test it)
  PYCORE_FAIL_NO_OPENMP=1  make a missing OpenMP an error instead of a warning
  PYCORE_FORCE_PORTABLE=1  compile as if GCC/Clang were another compiler: the plain-C++ and
                           CPUID branches of csrc/portable.h instead of the GNU builtins, so a
                           Linux build tests what MSVC compiles (CI does; use a fresh copy or
                           --force, since objects built without it are otherwise kept)
  PYCORE_BUILD_JOBS=N      compile N files at once (default: all cores)

The GEMM micro-kernels and the hot loops are compiled once per instruction set (target
pragmas and attributes in csrc/) and chosen at run time, so the default build runs on
any x86-64 and still uses AVX2/FMA or AVX-512 where the CPU has them.

An edited header rebuilds the sources that include it: the extension lists the headers
as `depends` (so build_ext does not skip it), and each object file is recompiled when
its source or any header it includes, directly or not, is newer (`needs_recompile`).
"""

import copy
import glob
import os
import re
import subprocess
import sys
import tempfile
import warnings

try:
    import tomllib
except ImportError:  # Python < 3.11: the build requirement tomli (pyproject.toml)
    import tomli as tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"

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

# Flags by compiler family. GCC and Clang (Linux, Apple clang, MinGW) take the same ones;
# MSVC has its own spelling and no equivalent of the warnings' fine control.
UNIX_COMPILE = ["-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"]
# Cython's generated helpers; -g0: Python's own CFLAGS say -g, which made _pool2d 1.9 MB
# instead of 0.35 (pybind11 adds -g0 to _C itself). -Wno-psabi: pool2d_2x2.h's helpers return
# AVX vectors; they are always inlined into the AVX copies, so GCC's note that such a return
# changes the ABI concerns no real call.
UNIX_CYTHON_EXTRA = ["-Wno-unused-function", "-Wno-psabi", "-g0"]
# /wd4068: MSVC warns "unknown pragma" at every `#pragma GCC unroll` (a hint for GCC and
# Clang; MSVC compiles the loop as written). /O2 is setuptools' default, said explicitly.
MSVC_COMPILE = ["/O2", "/wd4068"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def project_version():
    """The version from pyproject.toml's [project] table: the one place it is written."""
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def local_includes(path):
    """The files `path` includes with #include "..." that exist beside it, transitively."""
    found = set()
    pending = [path]
    while pending:
        with open(pending.pop(), encoding="utf-8") as f:
            text = f.read()
        for name in INCLUDE_RE.findall(text):
            header = os.path.normpath(os.path.join(os.path.dirname(path), name))
            if os.path.isfile(header) and header not in found:
                found.add(header)
                pending.append(header)
    return found


def needs_recompile(obj, src):
    """True when the object file is older than its source or than any header the source
    includes (pybind11's naive_recompile looks at the source only)."""
    built = os.stat(obj).st_mtime
    return any(os.stat(p).st_mtime > built for p in [src, *local_includes(src)])


def openmp_flags(compiler):
    """(compile, link) flags for OpenMP with this compiler, after checking that they work.

    Like scikit-learn's build helper: compile, link and run a tiny program; when that
    fails (or PYCORE_NO_OPENMP=1 asks for it), warn and build sequential kernels, which
    run on one thread; PYCORE_FAIL_NO_OPENMP=1 makes it an error instead.
    """
    if compiler.compiler_type == "msvc":
        flags = (["/openmp"], [])
    elif sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag: the preprocessor flag plus LLVM's libomp
        # (Homebrew's; CPPFLAGS/LDFLAGS point at it, see [tool.cibuildwheel.macos]).
        flags = (["-Xpreprocessor", "-fopenmp"], ["-lomp"])
    else:
        flags = (["-fopenmp"], ["-fopenmp"])
    try:
        if env_flag("PYCORE_NO_OPENMP"):
            raise RuntimeError("PYCORE_NO_OPENMP is set")
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(OPENMP_PROBE)
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=flags[0])
            # The extensions' link line gets $LDFLAGS (libomp's folder on macOS); the probe's does not.
            library_dirs = [a[2:] for a in os.environ.get("LDFLAGS", "").split() if a.startswith("-L")]
            # MSVC: objects compiled with /openmp name vcomp.lib themselves; link.exe takes no /openmp.
            link_flags = flags[1]
            compiler.link_executable(
                objects, "probe", output_dir=tmp, library_dirs=library_dirs, extra_postargs=link_flags
            )
            exe = os.path.join(tmp, "probe" + (compiler.exe_extension or ""))
            subprocess.run([exe], check=True, capture_output=True)
        return flags
    except Exception as exc:  # distutils' CompileError/LinkError, OSError, CalledProcessError...
        message = f"OpenMP probe failed ({exc}); pycore's kernels will run on one thread."
        if env_flag("PYCORE_FAIL_NO_OPENMP"):
            raise RuntimeError(message) from exc
        warnings.warn(message, stacklevel=1)
        return [], []


def make_build_ext(base):
    """The build_ext command: a subclass of `base` (pybind11's), made in a function so that
    this file imports without the build requirements (tests read its helpers)."""

    class BuildExt(base):
        """pybind11's build_ext with the compiler-specific flags (chosen here, where the
        compiler is known) and the sanitizer build, which compiles the thin bind*.cpp glue
        without instrumentation (pybind11's templates take minutes to compile with it), so
        the sanitizers watch the kernels, where pycore's own index math lives."""

        def build_extensions(self):
            msvc = self.compiler.compiler_type == "msvc"
            omp_compile, omp_link = openmp_flags(self.compiler)
            compile_args = (MSVC_COMPILE if msvc else UNIX_COMPILE) + omp_compile
            link_args = list(omp_link)
            macros = []
            if env_flag("PYCORE_NATIVE"):
                if msvc:
                    raise RuntimeError("PYCORE_NATIVE=1: -march=native has no MSVC equivalent here")
                compile_args.append("-march=native")
                macros.append(("PYCORE_NATIVE_BUILD", "1"))
            if env_flag("PYCORE_SANITIZE"):
                if msvc:
                    raise RuntimeError("PYCORE_SANITIZE=1 needs GCC or Clang")
                compile_args = [a for a in compile_args if a != "-O3"] + ["-O1"] + SANITIZE
                link_args += SANITIZE
                macros.append(("PYCORE_SANITIZE_BUILD", "1"))
            if env_flag("PYCORE_FORCE_PORTABLE"):
                macros.append(("PYCORE_FORCE_PORTABLE", "1"))
            for ext in self.extensions:
                cython = ext.name != "pycore._C"
                extra = [] if msvc or not cython else UNIX_CYTHON_EXTRA
                ext.extra_compile_args += extra + [a for a in compile_args if not (cython and a == "-Wextra")]
                ext.extra_link_args += link_args
                ext.define_macros += macros
            super().build_extensions()

        def build_extension(self, ext):
            if not (env_flag("PYCORE_SANITIZE") and ext.name == "pycore._C"):
                return super().build_extension(ext)
            glue = [s for s in ext.sources if os.path.basename(s).startswith("bind")]
            plain_args = [a for a in ext.extra_compile_args if a not in SANITIZE]
            glue_objects = self.compiler.compile(
                glue,
                output_dir=self.build_temp,
                macros=ext.define_macros,
                include_dirs=ext.include_dirs,
                extra_postargs=plain_args,
                depends=ext.depends,
            )
            kernels = copy.copy(ext)
            kernels.sources = [s for s in ext.sources if s not in glue]
            kernels.extra_objects = list(ext.extra_objects) + glue_objects
            return super().build_extension(kernels)

    return BuildExt


def extensions():
    import numpy
    from Cython.Build import cythonize
    from pybind11.setup_helpers import Pybind11Extension

    core = Pybind11Extension(
        "pycore._C",
        sorted(glob.glob(f"{CSRC}/*.cpp")),  # sorted: reproducible builds
        depends=sorted(glob.glob(f"{CSRC}/*.h")),
        include_dirs=[CSRC, numpy.get_include()],  # numpy's C API: bind_memory.cpp only
        # A bare token, turned into a string in bind_core.cpp (a quoted string in a -D
        # flag does not survive MSVC's command line).
        define_macros=[("PYCORE_VERSION_INFO", project_version())],
        cxx_std=17,
    )
    # Each csrc/NAME.pyx becomes the module pycore._NAME.
    from setuptools import Extension

    # csrc/ on the include path: their verbatim C++ includes portable.h and pool2d_2x2.h.
    cython_modules = [
        Extension(
            "pycore._" + os.path.splitext(os.path.basename(pyx))[0],
            [pyx],
            language="c++",
            include_dirs=[CSRC],
            depends=sorted(glob.glob(f"{CSRC}/*.h")),
        )
        for pyx in sorted(glob.glob(f"{CSRC}/*.pyx"))
    ]
    return [core] + cythonize(
        cython_modules,
        build_dir="build/cython",
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


if __name__ == "__main__":
    from pybind11.setup_helpers import ParallelCompile, build_ext
    from setuptools import setup

    with ParallelCompile("PYCORE_BUILD_JOBS", needs_recompile=needs_recompile):
        setup(ext_modules=extensions(), cmdclass={"build_ext": make_build_ext(build_ext)})
