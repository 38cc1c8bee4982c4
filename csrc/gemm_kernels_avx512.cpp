// AVX-512F micro-kernels: 12 x 32 floats (12 x 16 doubles) held in 24 zmm registers.
#include <cstdint>

#include "gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
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
};

#include "gemm_kernels.h"

constexpr GemmKernel<float> kF32 = make_gemm_kernel<Avx512F32, 12, 2>("avx512f");
constexpr GemmKernel<double> kF64 = make_gemm_kernel<Avx512F64, 12, 2>("avx512f");

}  // namespace

const GemmKernel<float>* gemm_kernel_avx512_f32() { return &kF32; }
const GemmKernel<double>* gemm_kernel_avx512_f64() { return &kF64; }

}  // namespace pycore

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64

namespace pycore {
const GemmKernel<float>* gemm_kernel_avx512_f32() { return nullptr; }
const GemmKernel<double>* gemm_kernel_avx512_f64() { return nullptr; }
}  // namespace pycore

#endif
