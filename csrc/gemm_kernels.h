// gemm_kernels.h: the register-blocked micro-kernel, written once over a small
// vector "traits" type V and compiled per instruction set by gemm_kernels_*.cpp.
//
// Contract (BLIS's gemm micro-kernel):
//   a_panel: MR x kc block of op(A), stored k-major: a_panel[k*MR + i]
//   b_panel: kc x NR block of op(B), stored k-major: b_panel[k*NR + j]
//   c[0:m, 0:n] = alpha * sum_k a[:, k] b[k, :] + beta * c      (m <= MR, n <= NR)
// Both panels are zero-padded to full MR / NR, so the inner loop never branches;
// partial tiles go through a small buffer on the stack. beta == 0 never reads C.
//
// This header must be included inside a namespace private to one instruction set,
// after that file has set its compile target: every function here is then compiled
// for that target only, and nothing of it is shared with other translation units.
#pragma once

template <class V, int MR, int NV>
static void micro_kernel(int64_t kc, const typename V::scalar* a, const typename V::scalar* b,
                         typename V::scalar* c, int64_t ldc, typename V::scalar alpha,
                         typename V::scalar beta, int64_t m, int64_t n) {
    using T = typename V::scalar;
    using R = typename V::reg;
    constexpr int W = V::width;
    constexpr int NR = NV * W;

    R acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();

    for (int64_t k = 0; k < kc; ++k) {
        R bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * W);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            const R ai = V::broadcast(a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += NR;
    }

    const R valpha = V::broadcast(alpha);
    if (m == MR && n == NR) {
        const R vbeta = V::broadcast(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            T* ci = c + i * ldc;
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) {
                R r = V::mul(valpha, acc[i][v]);
                if (beta != T(0)) r = V::fmadd(vbeta, V::loadu(ci + v * W), r);
                V::storeu(ci + v * W, r);
            }
        }
        return;
    }
    alignas(64) T tile[MR * NR];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) V::storeu(tile + i * NR + v * W, V::mul(valpha, acc[i][v]));
    for (int64_t i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        const T* ti = tile + i * NR;
        if (beta == T(0))
            for (int64_t j = 0; j < n; ++j) ci[j] = ti[j];
        else
            for (int64_t j = 0; j < n; ++j) ci[j] = ti[j] + beta * ci[j];
    }
}
