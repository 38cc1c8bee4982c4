// bind_core.cpp: build facts and thread control.
#include "bind_util.h"
#include "gemm.h"
#include "parallel.h"
#include "threads.h"

#ifndef PYCORE_VERSION_INFO
#error "PYCORE_VERSION_INFO is not defined: build with setup.py, which reads the version from pyproject.toml"
#endif
#define PYCORE_STRINGIFY_TOKENS(x) #x
#define PYCORE_STRINGIFY(x) PYCORE_STRINGIFY_TOKENS(x)

namespace pycore {

namespace {
std::string compiler_name() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}
}  // namespace

void bind_core(pybind11::module_& m) {
    namespace py = pybind11;
    m.def(
        "channel_sum",
        [](py::array out, const py::array& x, int64_t outer, int64_t channels, int64_t inner) {
            if (outer < 0 || channels < 0 || inner < 0) throw py::value_error("channel_sum: negative size");
            bind::dispatch_float(out, "out", [&](auto tag) {
                using T = decltype(tag);
                T* o = bind::out_ptr<T>(out, "out", 1);
                bind::check_shape(out, {channels}, "out");
                const T* xp = bind::in_ptr<T>(x, "x");
                if (x.size() != outer * channels * inner)
                    throw py::value_error("channel_sum: x has " + std::to_string(x.size()) + " elements, expected " +
                                          std::to_string(outer * channels * inner));
                py::gil_scoped_release release;
                channel_sum<T>(o, xp, outer, channels, inner);
            });
        },
        py::arg("out").noconvert(), py::arg("x").noconvert(), py::arg("outer"), py::arg("channels"), py::arg("inner"),
        "out[c] += sum of x viewed as (outer, channels, inner) over axes 0 and 2, in an order that does not "
        "depend on the thread count (a bias gradient). x must be C-contiguous.");
    // setup.py passes the version from pyproject.toml as a bare token (-DPYCORE_VERSION_INFO=0.1.0)
    m.attr("__version__") = PYCORE_STRINGIFY(PYCORE_VERSION_INFO);
    m.attr("compiler") = compiler_name();
#ifdef PYCORE_NATIVE_BUILD
    m.attr("native_build") = true;
#else
    m.attr("native_build") = false;
#endif
#ifdef PYCORE_SANITIZE_BUILD
    m.attr("sanitize_build") = true;
#else
    m.attr("sanitize_build") = false;
#endif
    m.def("openmp_enabled", &openmp_enabled, "True when the kernels were built with OpenMP.");
    m.def("openmp_version", &openmp_version, "The _OPENMP macro of the build (yyyymm), 0 without OpenMP.");
    m.def("get_num_threads", &get_num_threads, "Threads each kernel may use.");
    // Any Python int comes in (py::int_), so that one too large for C is a ValueError naming n,
    // not pybind11's overload dump; pycore.set_num_threads checks the tighter bound first.
    m.def(
        "set_num_threads",
        [](const py::int_& n) {
            constexpr long long kMaxThreads = 1 << 16;
            int overflow = 0;
            const long long value = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
            if (overflow || value < 1 || value > kMaxThreads)
                throw py::value_error("set_num_threads: n must be an integer from 1 to " + std::to_string(kMaxThreads) +
                                      ", got " + std::string(py::str(n)));
            set_num_threads(static_cast<int>(value));
        },
        py::arg("n"), "Set the threads each kernel may use (n >= 1). Takes effect at the next kernel call.");
    m.def("in_forked_child", &in_forked_child,
          "True in a process forked after pycore was imported (kernels then run on one thread).");
    m.def("simd_path", &gemm_simd_path, "Instruction set of the GEMM micro-kernels in use.");
    m.def("set_simd_path", [](const std::string& name) { return gemm_set_simd_path(name.c_str()); },
          py::arg("name"),
          "Use the micro-kernels for 'avx512f', 'avx2+fma', 'generic' or 'auto'; False if the CPU "
          "lacks that instruction set. For tests and benchmarks.");
}

}  // namespace pycore
