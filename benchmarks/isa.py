"""Run every library of a benchmark on one instruction set: `--isa avx512|avx2|generic`.

Each library reads its setting once, when it is loaded, so `restrict(isa)` must run
before numpy, torch or pycore is imported (run.py and train_targets.py call it first
thing, in a fresh process); `report()` then says, from each library itself, what it
runs on, and `check()` fails when a library ignored its setting:

    isa       pycore            PyTorch (ATen / oneDNN / MKL)                        numpy's OpenBLAS
    native    auto              their defaults                                       its own choice
    avx512    PYCORE_SIMD=avx512 ATEN_CPU_CAPABILITY=avx512, ONEDNN_MAX_CPU_ISA=       its own choice (SkylakeX
                                AVX512_CORE_BF16, MKL_ENABLE_INSTRUCTIONS=AVX512      on an AVX-512 CPU)
    avx2      PYCORE_SIMD=avx2  ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2,    OPENBLAS_CORETYPE=Haswell
                                MKL_ENABLE_INSTRUCTIONS=AVX2
    generic   PYCORE_SIMD=generic ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41, OPENBLAS_CORETYPE=Nehalem
              (SSE2)            MKL_ENABLE_INSTRUCTIONS=SSE4_2                        (SSE4.2)

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some machines set for every process
(and which make current OpenBLAS pick slower kernels or blocking), are removed for the
native and avx512 runs, in this process only, so that numpy runs at its best there.
"""
import os

CHOICES = ("native", "avx512", "avx2", "generic")

OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# what each choice sets; None removes the variable
SETTINGS = {
    "native": {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
    "avx512": {"PYCORE_SIMD": "avx512", "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512", "OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
    "avx2": {"PYCORE_SIMD": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"},
    "generic": {"PYCORE_SIMD": "generic", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem"},
}

# what each library must then report (pycore.simd_path(), torch's capability, OpenBLAS's kernel)
EXPECTED = {
    "avx512": ("avx512f", "AVX512", None),
    "avx2": ("avx2+fma", "AVX2", "Haswell"),
    "generic": ("generic", "DEFAULT", "Nehalem"),
}

_changes = []


def isa_from_argv(argv):
    """The value of --isa in argv (native when absent), read before argparse runs: the
    environment must be set before the modules that argparse's caller imports load."""
    for i, arg in enumerate(argv):
        if arg == "--isa" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--isa="):
            return arg.split("=", 1)[1]
    return "native"


def restrict(isa):
    """Set the environment for `isa` in this process; call before importing the libraries."""
    if isa not in CHOICES:
        raise SystemExit(f"--isa: expected one of {', '.join(CHOICES)}, got {isa!r}")
    for name, value in SETTINGS[isa].items():
        before = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        if before != value:
            _changes.append(f"{name}={value if value is not None else '(unset)'}"
                            + (f" (was {before})" if before is not None else ""))


def openblas_kernel():
    """The kernel numpy's OpenBLAS chose (threadpoolctl), or None."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    for info in threadpoolctl.threadpool_info():
        if info.get("internal_api") == "openblas":
            return info.get("architecture")
    return None


def torch_capability():
    """The CPU capability PyTorch's ATen kernels run on, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def report(isa):
    """One line per library: the instruction set it runs on, and what was set to get it."""
    import pycore

    lines = [f"--isa {isa}: pycore simd path {pycore.simd_path()}; torch CPU capability "
             f"{torch_capability() or 'n/a'}; numpy OpenBLAS kernel {openblas_kernel() or 'n/a'}"]
    if _changes:
        lines.append("environment set in this process before the libraries loaded: " + ", ".join(_changes))
    return lines


def check(isa):
    """Exit with a message when a library does not run on the instruction set asked for."""
    import pycore

    if isa not in EXPECTED:
        return
    want_pycore, want_torch, want_blas = EXPECTED[isa]
    problems = []
    if pycore.simd_path() != want_pycore:
        problems.append(f"pycore runs {pycore.simd_path()}, not {want_pycore}")
    torch_cap = torch_capability()
    if torch_cap is not None and torch_cap != want_torch:
        problems.append(f"torch runs {torch_cap}, not {want_torch} (does this CPU have it?)")
    blas = openblas_kernel()
    if want_blas and blas is not None and blas != want_blas:
        problems.append(f"numpy's OpenBLAS runs {blas}, not {want_blas}")
    if problems:
        raise SystemExit(f"--isa {isa}: " + "; ".join(problems))
