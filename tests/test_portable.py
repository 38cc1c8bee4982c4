"""csrc/portable.h: the plain-C++ and CPUID fallbacks (what MSVC and other non-GNU compilers
compile) give what the GCC/Clang builtins give.

tests/portable_check.cpp is compiled with -DPYCORE_FORCE_PORTABLE, which selects the
fallbacks while the builtins stay available for comparison, and run: checked add/multiply
on int64 edge values, count-leading-zeros, aligned allocate/free, the portable vector type
against GNU vector types, and the CPU feature test read through CPUID/XGETBV against
libgcc's __builtin_cpu_supports on this machine. Skipped without a GCC-compatible C++
compiler or without the source tree (a wheel's test run).
"""

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(REPO, "csrc", "portable.h")
CHECK_SOURCE = os.path.join(REPO, "tests", "portable_check.cpp")


def gnu_compiler():
    """A C++ compiler that has the GNU builtins (g++ or clang++), or None."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = name and shutil.which(name)
        if not path:
            continue
        probe = subprocess.run([path, "-dM", "-E", "-x", "c++", os.devnull], capture_output=True, text=True)
        if probe.returncode == 0 and "__GNUC__" in probe.stdout:
            return path
    return None


def test_fallbacks_match_builtins(tmp_path):
    if not os.path.exists(HEADER):
        pytest.skip("csrc/portable.h is not here (tests run from an installed wheel)")
    compiler = gnu_compiler()
    if compiler is None:
        pytest.skip("no GCC-compatible C++ compiler to build tests/portable_check.cpp")
    exe = str(tmp_path / "portable_check")
    # -ffp-contract=off: both sides of the vector comparison round each operation
    flags = ["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-DPYCORE_FORCE_PORTABLE"]
    command = [compiler, *flags, "-I", os.path.dirname(HEADER), CHECK_SOURCE, "-o", exe]
    build = subprocess.run(command, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr
