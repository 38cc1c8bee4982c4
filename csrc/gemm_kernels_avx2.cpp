// AVX2 + FMA micro-kernels, 12 ymm accumulators each: 4 x 24 floats, 6 x 8 doubles.
// The float tile is 4 rows tall so that batches of 32 or 64 rows (the skinny products
// of recurrent layers) leave no partial row tiles; 6 x 16 measured ~10% slower there.
#include <algorithm>
#include <cstdint>

#include "gemm.h"

#if PYCORE_X86_64  // portable.h, through gemm.h
#include <immintrin.h>

// GCC and Clang compile intrinsics only for a target that has them; MSVC needs no pragma.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace pycore {
namespace {

struct Avx2F32 {
    using scalar = float;
    using reg = __m256;
    static constexpr int width = 8;
    static reg zero() { return _mm256_setzero_ps(); }
    static reg broadcast(float x) { return _mm256_set1_ps(x); }
    static reg load(const float* p) { return _mm256_loadu_ps(p); }
    static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
    static void storeu(float* p, reg r) { _mm256_storeu_ps(p, r); }
    static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    // Halves, then pairs, then the last two lanes: a fixed order.
    static float hsum(reg r) {
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
    }
};

struct Avx2F64 {
    using scalar = double;
    using reg = __m256d;
    static constexpr int width = 4;
    static reg zero() { return _mm256_setzero_pd(); }
    static reg broadcast(double x) { return _mm256_set1_pd(x); }
    static reg load(const double* p) { return _mm256_loadu_pd(p); }
    static reg loadu(const double* p) { return _mm256_loadu_pd(p); }
    static void storeu(double* p, reg r) { _mm256_storeu_pd(p, r); }
    static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
    static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
    static double hsum(reg r) {
        const __m128d x = _mm_add_pd(_mm256_castpd256_pd128(r), _mm256_extractf128_pd(r, 1));
        return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
    }
};

#include "gemm_kernels.h"

// Blocking measured on Zen 3 (32 KiB L1d, 512 KiB L2, 32 MiB L3): for float a 384 x 24
// panel of B (36 KiB) near L1 (it spills a little, which measured better than the
// extra C passes of KC = 256), the 144 x 384 block of A in L2, the KC x NC block of B in L3.
constexpr GemmKernel<float> kF32 = make_gemm_kernel<Avx2F32, 4, 3, 144, 384, 4032>("avx2+fma");
constexpr GemmKernel<double> kF64 = make_gemm_kernel<Avx2F64, 6, 2, 72, 256, 1024>("avx2+fma");

}  // namespace

const GemmKernel<float>* gemm_kernel_avx2_f32() { return &kF32; }
const GemmKernel<double>* gemm_kernel_avx2_f64() { return &kF64; }

}  // namespace pycore

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else  // not x86-64

namespace pycore {
const GemmKernel<float>* gemm_kernel_avx2_f32() { return nullptr; }
const GemmKernel<double>* gemm_kernel_avx2_f64() { return nullptr; }
}  // namespace pycore

#endif
