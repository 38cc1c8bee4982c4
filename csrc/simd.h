// simd.h: compile a hot loop for two instruction sets and pick one at run time.
//
// A loop body (a lambda or functor taking a range [begin, end)) is compiled twice: for
// the build's baseline (SSE2 on x86-64) and, on x86-64 with GCC or Clang, for AVX2+FMA
// (8 floats per instruction). simd::run picks the AVX2 copy whenever the GEMM uses its
// AVX2 or AVX-512 micro-kernels (so the CPU has AVX2+FMA); `_C.set_simd_path("generic")`
// therefore switches every kernel to the baseline at once, and the tests cover both.
//
// How: run_avx2 carries the target attribute and the body is always inlined into it,
// together with the always-inline math it calls (fastmath.h), so the compiler
// vectorises the same source once per instruction set. Write bodies with
// PYCORE_INLINE (functors) or PYCORE_LAMBDA_INLINE (lambdas):
//
//     simd::parallel_run(n, threads_for(n, grain),
//                        [=](int64_t i0, int64_t i1) PYCORE_LAMBDA_INLINE {
//                            for (int64_t i = i0; i < i1; ++i) y[i] = fastmath::sigmoid(x[i]);
//                        });
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm.h"
#include "omp_guard.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define PYCORE_SIMD_HAVE_AVX2 1
#define PYCORE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define PYCORE_SIMD_HAVE_AVX2 0
#define PYCORE_TARGET_AVX2
#endif

// PYCORE_IVDEP: says the iterations of the loop after it are independent, for loops over
// slices of one buffer (e.g. an LSTM's four gate blocks at offsets of H) that the
// compiler cannot prove disjoint, so that they vectorise.
#if defined(__clang__)
#define PYCORE_INLINE inline __attribute__((always_inline))
#define PYCORE_LAMBDA_INLINE __attribute__((always_inline))
#define PYCORE_RESTRICT __restrict__
#define PYCORE_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define PYCORE_INLINE inline __attribute__((always_inline))
#define PYCORE_LAMBDA_INLINE __attribute__((always_inline))
#define PYCORE_RESTRICT __restrict__
#define PYCORE_IVDEP _Pragma("GCC ivdep")
#else
#define PYCORE_INLINE inline
#define PYCORE_LAMBDA_INLINE
#define PYCORE_RESTRICT
#define PYCORE_IVDEP
#endif

namespace pycore {
namespace simd {

// True when hot loops should take their AVX2+FMA copy (follows the GEMM's choice).
inline bool use_avx2() {
#if PYCORE_SIMD_HAVE_AVX2
    return std::strcmp(gemm_simd_path(), "generic") != 0;
#else
    return false;
#endif
}

template <class Body>
void run_baseline(const Body& body, int64_t begin, int64_t end) {
    body(begin, end);
}

#if PYCORE_SIMD_HAVE_AVX2
template <class Body>
PYCORE_TARGET_AVX2 void run_avx2(const Body& body, int64_t begin, int64_t end) {
    body(begin, end);
}
#endif

// body(begin, end), compiled for AVX2+FMA when `avx2` (from use_avx2()) and for the
// baseline otherwise. Call use_avx2() once per kernel call, outside parallel regions.
template <class Body>
inline void run(bool avx2, const Body& body, int64_t begin, int64_t end) {
#if PYCORE_SIMD_HAVE_AVX2
    if (avx2) return run_avx2(body, begin, end);
#endif
    run_baseline(body, begin, end);
}

// body over [0, n), split into `threads` contiguous parts (one per thread; serial for 1).
template <class Body>
void parallel_run(int64_t n, int threads, const Body& body) {
    const bool avx2 = use_avx2();
    const int nt = static_cast<int>(std::min<int64_t>(std::max<int64_t>(n, 1), std::max(threads, 1)));
    if (nt <= 1) return run(avx2, body, 0, n);
    RegionErrors errors;  // a body that allocates may throw: never out of the region (omp_guard.h)
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int part = 0; part < nt; ++part) errors.run([&] { run(avx2, body, n * part / nt, n * (part + 1) / nt); });
    errors.rethrow();
}

}  // namespace simd
}  // namespace pycore
