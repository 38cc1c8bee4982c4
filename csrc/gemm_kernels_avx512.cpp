// AVX-512F micro-kernels: 12 x 32 floats (12 x 16 doubles) held in 24 zmm registers.
#include <algorithm>
#include <cstdint>

#include "gemm.h"

#if PYCORE_X86_64  // portable.h, through gemm.h
#include <immintrin.h>

// GCC and Clang compile intrinsics only for a target that has them; MSVC needs no pragma.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

// GCC 12's AVX-512 headers pass _mm512_undefined_*() to the masked builtins behind
// _mm512_reduce_add_ps and friends, and -Wall then reports them as uninitialised, a
// false positive of that compiler: silenced in this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace pycore {
namespace {

struct Avx512F32 {
    using scalar = float;
    using reg = __m512;
    static constexpr int width = 16;
    static reg zero() { return _mm512_setzero_ps(); }
    static reg broadcast(float x) { return _mm512_set1_ps(x); }
    static reg load(const float* p) { return _mm512_loadu_ps(p); }
    static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
    static void storeu(float* p, reg r) { _mm512_storeu_ps(p, r); }
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    static float hsum(reg r) { return _mm512_reduce_add_ps(r); }  // a fixed tree of shuffles and adds
};

struct Avx512F64 {
    using scalar = double;
    using reg = __m512d;
    static constexpr int width = 8;
    static reg zero() { return _mm512_setzero_pd(); }
    static reg broadcast(double x) { return _mm512_set1_pd(x); }
    static reg load(const double* p) { return _mm512_loadu_pd(p); }
    static reg loadu(const double* p) { return _mm512_loadu_pd(p); }
    static void storeu(double* p, reg r) { _mm512_storeu_pd(p, r); }
    static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
    static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
    static double hsum(reg r) { return _mm512_reduce_add_pd(r); }
};

#include "gemm_kernels.h"

// Float blocking, measured on Zen 5 (48 KiB L1d, 1 MiB L2 per core, 32 MiB L3): a
// 12 x 512 panel of A (24 KiB) and a 512 x 32 panel of B (64 KiB) near L1, the
// 432 x 512 block of A (864 KiB) in L2, the 512 x 4032 block of B in L3. Against the
// Zen 3 sizes of the AVX2 kernels (KC = 384, MC = 144) it measured ~5% faster on
// squares 512-2048 and on 64 x 2048 x 512 (1 thread, CPU time, best of 3 runs each).
// The GEMV (M == 1) keeps 8 vectors of sums per column block, as AVX2 does. 16 (rows of B
// read in 1 KiB runs) took 1x1024x256 from ~90 to 114-119 GB/s on that Zen 5, but on a
// Zen 4 read no faster than 8 (1 thread: 14.1-18.5 us against 13.8-14.6), and threads
// split the columns at whole blocks: with 256-column blocks a batch-1 LSTM's backward
// GEMV at H = 256 ran on one thread (3.65 ms per 256 steps; 2.15 with two 128s).
// The 8-row tile (16 accumulators, still enough to keep two FMAs a cycle in flight)
// serves batches of 8, 16, 32 or 64 rows without padding and reads the same B
// panels: on a recurrent step (N x 4H x H, B prepacked) it measured 193-202 GFLOP/s
// against 138-167 for the 12-row tile at N = 8-64, H = 256-512.
constexpr GemmKernel<float> kF32Short = make_gemm_kernel<Avx512F32, 8, 2, 432, 512, 4032>("avx512f");
constexpr GemmKernel<float> kF32 = make_gemm_kernel<Avx512F32, 12, 2, 432, 512, 4032>("avx512f", &kF32Short);
// Double: the Zen 3 sizes (not re-measured here).
constexpr GemmKernel<double> kF64Short = make_gemm_kernel<Avx512F64, 8, 2, 72, 256, 1024>("avx512f");
constexpr GemmKernel<double> kF64 = make_gemm_kernel<Avx512F64, 12, 2, 72, 256, 1024>("avx512f", &kF64Short);
static_assert(kF32Short.nr == kF32.nr && kF32Short.kc == kF32.kc && kF64Short.nr == kF64.nr &&
                  kF64Short.kc == kF64.kc,
              "a shorter tile reads the same B panels");

}  // namespace

const GemmKernel<float>* gemm_kernel_avx512_f32() { return &kF32; }
const GemmKernel<double>* gemm_kernel_avx512_f64() { return &kF64; }

}  // namespace pycore

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else  // not x86-64

namespace pycore {
const GemmKernel<float>* gemm_kernel_avx512_f32() { return nullptr; }
const GemmKernel<double>* gemm_kernel_avx512_f64() { return nullptr; }
}  // namespace pycore

#endif
