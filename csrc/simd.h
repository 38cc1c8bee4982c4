// simd.h: compile a hot loop for three instruction sets and pick one at run time.
//
// A loop body (a lambda or functor taking a range [begin, end)) is compiled three times:
// for the build's baseline (SSE2 on x86-64, 4 floats per instruction) and, on x86-64
// with GCC or Clang, for AVX2+FMA (8 floats) and for AVX-512 F/BW/VL/DQ (16 floats).
// simd::run takes the copy that matches the GEMM's micro-kernels (gemm_simd_path():
// "avx512f" -> AVX-512, "avx2+fma" -> AVX2, "generic" -> baseline), so one switch,
// `_C.set_simd_path(...)` or the PYCORE_SIMD environment variable read at import,
// moves every kernel at once, and the tests run each path the CPU has.
//
// How: run_avx2 / run_avx512 carry the target attribute and the body is always inlined
// into them, together with the always-inline math it calls (fastmath.h), so the
// compiler vectorises the same source once per instruction set. Write bodies with
// PYCORE_INLINE (functors) or PYCORE_LAMBDA_INLINE (lambdas):
//
//     simd::parallel_run(n, threads_for(n, grain),
//                        [=](int64_t i0, int64_t i1) PYCORE_LAMBDA_INLINE {
//                            for (int64_t i = i0; i < i1; ++i) y[i] = fastmath::sigmoid(x[i]);
//                        });
//
// A conditional in such a loop must be a select (fastmath::select), not `c ? a : b`
// with a float operation in a branch: GCC keeps that as a branch under its default
// -ftrapping-math and the loop does not vectorise (DEVELOPERS.md says how to check).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm.h"
#include "omp_guard.h"
#include "portable.h"  // PYCORE_INLINE, PYCORE_LAMBDA_INLINE, PYCORE_RESTRICT, PYCORE_IVDEP

// The AVX2/AVX-512 copies need GCC's or Clang's target attribute (MSVC has no per-function
// target: its build runs the hot loops on the baseline copy, the GEMM still on AVX2/AVX-512
// kernels) and an x86-64 CPU (arm64 builds have the baseline copy only).
#if PYCORE_X86_64 && PYCORE_GNU
#define PYCORE_SIMD_HAVE_AVX2 1
#define PYCORE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#if defined(__clang__)
#define PYCORE_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#else
// prefer-vector-width=512 (GCC only): zmm registers even under a -mtune (-march=native on
// Skylake-X, say) that would prefer 256 bits
#define PYCORE_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")))
#endif
#else
#define PYCORE_SIMD_HAVE_AVX2 0
#define PYCORE_TARGET_AVX2
#define PYCORE_TARGET_AVX512
#endif

namespace pycore {
namespace simd {

// The instruction set a hot loop runs on.
enum class Isa { baseline, avx2, avx512 };

// The copy of the hot loops to run: the GEMM's choice (so the CPU has it, and
// `_C.set_simd_path` switches both). Call it once per kernel call, outside parallel regions.
inline Isa current_isa() {
#if PYCORE_SIMD_HAVE_AVX2
    const char* path = gemm_simd_path();
    if (std::strcmp(path, "avx512f") == 0) return Isa::avx512;
    if (std::strcmp(path, "avx2+fma") == 0) return Isa::avx2;
#endif
    return Isa::baseline;
}

// True when the CPU path has AVX2+FMA (the AVX2 or AVX-512 copy); for callers that pass
// the bool form of run() below (csrc/rnn.cpp's gate passes).
inline bool use_avx2() { return current_isa() != Isa::baseline; }

// Not inlined: the baseline copy of a body is then one function per body type, like the
// AVX2 and AVX-512 copies (which cannot inline into baseline callers), instead of one
// inlined copy per call site (a serial call and an OpenMP region's outlined body each):
// 24 KB less library, out of a 5 MB budget for the installed wheel.
template <class Body>
PYCORE_NOINLINE void run_baseline(const Body& body, int64_t begin, int64_t end) {
    body(begin, end);
}

#if PYCORE_SIMD_HAVE_AVX2
template <class Body>
PYCORE_TARGET_AVX2 void run_avx2(const Body& body, int64_t begin, int64_t end) {
    body(begin, end);
}

template <class Body>
PYCORE_TARGET_AVX512 void run_avx512(const Body& body, int64_t begin, int64_t end) {
    body(begin, end);
}
#endif

// body(begin, end), compiled for the instruction set `isa` (from current_isa()).
template <class Body>
inline void run(Isa isa, const Body& body, int64_t begin, int64_t end) {
#if PYCORE_SIMD_HAVE_AVX2
    if (isa == Isa::avx512) return run_avx512(body, begin, end);
    if (isa == Isa::avx2) return run_avx2(body, begin, end);
#endif
    run_baseline(body, begin, end);
}

// The same with a bool from use_avx2(): the AVX-512 copy when the CPU path is AVX-512.
template <class Body>
inline void run(bool avx2, const Body& body, int64_t begin, int64_t end) {
    run(avx2 ? current_isa() : Isa::baseline, body, begin, end);
}

// body over [0, n), split into `threads` contiguous parts (one per thread; serial for 1).
template <class Body>
void parallel_run(int64_t n, int threads, const Body& body) {
    const Isa isa = current_isa();
    const int nt = static_cast<int>(std::min<int64_t>(std::max<int64_t>(n, 1), std::max(threads, 1)));
    if (nt <= 1) return run(isa, body, 0, n);
    RegionErrors errors;  // a body that allocates may throw: never out of the region (omp_guard.h)
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int part = 0; part < nt; ++part) errors.run([&] { run(isa, body, n * part / nt, n * (part + 1) / nt); });
    errors.rethrow();
}

}  // namespace simd
}  // namespace pycore
