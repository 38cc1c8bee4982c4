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

    // Bring the C tile towards L1 while the products are computed: it is read (beta != 0)
    // or written right after the loop, and a miss there would stall on the stores.
    for (int64_t i = 0; i < m; ++i) {
        PYCORE_PREFETCH_WRITE(c + i * ldc);
        PYCORE_PREFETCH_WRITE(c + i * ldc + n - 1);
    }

#pragma GCC unroll 4
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

// ---------------------------------------------------------------------------------
// One row of op(A) times op(B): the M == 1 product (a GEMV) that a batch-1 recurrent
// step makes every timestep. Packing would copy all of B to use each element once,
// so these read B in place. `a` is contiguous (k values); c has n values.

// op(B)(k, j) = b[k*ldb + j] (B not transposed):
//   c[j] = alpha * sum_k a[k] b[k*ldb + j] + beta * c[j]
// Columns go in blocks of NV vectors held in registers while k runs down the rows;
// then single vectors, then scalars. A caller that splits n at multiples of NV*W gets
// the same bits as one call over all n: every full block is computed alike.
//
// The full blocks go through B in tiles of kTileRows rows x kTileCols columns, each
// block's running sums parked in `partial` between row tiles (stored and reloaded
// exactly, so every sum is the same chain of FMAs as without tiles). Without tiles
// each 128-column block walked all K rows ldb apart: with K = 4096, N = 1024 (a
// batch-1 LSTM backward at H = 1024) that touched a new 4 KiB page per row and block
// and read 35 GB/s against 60 for the transposed layout; a tile reads whole rows'
// worth of its columns, one page per row for kTileRows rows.
// A tile is 8 rows of up to 2048 columns: each of its rows is then read from start to end
// as the blocks go by, 8 streams the prefetcher follows. With 64 rows of 8 blocks, AVX2's
// 64-column blocks read each row in 256-byte pieces across 64 streams: on Zen 4 (1 thread,
// B as stored) 1x256x1024 went from 39-48 to 57-77 GB/s, 1x512x2048 from 37-46 to 57-72,
// 1x1024x4096 from 17 to 32-40.
template <class V, int NV>
static void row_times_matrix(int64_t kc, const typename V::scalar* a, const typename V::scalar* b,
                             int64_t ldb, typename V::scalar* c, typename V::scalar alpha,
                             typename V::scalar beta, int64_t n) {
    using T = typename V::scalar;
    using R = typename V::reg;
    constexpr int W = V::width;
    constexpr int64_t kBlock = NV * W, kTileCols = 2048 / kBlock * kBlock, kTileRows = 8;
    static_assert(kTileCols >= kBlock, "a tile holds at least one column block");
    const R valpha = V::broadcast(alpha), vbeta = V::broadcast(beta);
    const int64_t full = n / kBlock * kBlock;
    alignas(64) T partial[kTileCols];
    for (int64_t j0 = 0; j0 < full; j0 += kTileCols) {
        const int64_t j1 = std::min(full, j0 + kTileCols);
        for (int64_t k0 = 0; k0 < kc; k0 += kTileRows) {
            const int64_t k1 = std::min(kc, k0 + kTileRows);
            for (int64_t j = j0; j < j1; j += kBlock) {
                T* part = partial + (j - j0);
                R acc[NV];
#pragma GCC unroll 16
                for (int v = 0; v < NV; ++v) acc[v] = k0 == 0 ? V::zero() : V::loadu(part + v * W);
                const T* bj = b + j;
                for (int64_t k = k0; k < k1; ++k) {
                    const R ak = V::broadcast(a[k]);
                    const T* row = bj + k * ldb;
#pragma GCC unroll 16
                    for (int v = 0; v < NV; ++v) acc[v] = V::fmadd(ak, V::loadu(row + v * W), acc[v]);
                }
                if (k1 < kc) {
#pragma GCC unroll 16
                    for (int v = 0; v < NV; ++v) V::storeu(part + v * W, acc[v]);
                    continue;
                }
#pragma GCC unroll 16
                for (int v = 0; v < NV; ++v) {
                    R r = V::mul(valpha, acc[v]);
                    if (beta != T(0)) r = V::fmadd(vbeta, V::loadu(c + j + v * W), r);
                    V::storeu(c + j + v * W, r);
                }
            }
        }
    }
    int64_t j = full;
    for (; j + W <= n; j += W) {
        R acc = V::zero();
        for (int64_t k = 0; k < kc; ++k) acc = V::fmadd(V::broadcast(a[k]), V::loadu(b + k * ldb + j), acc);
        R r = V::mul(valpha, acc);
        if (beta != T(0)) r = V::fmadd(vbeta, V::loadu(c + j), r);
        V::storeu(c + j, r);
    }
    for (; j < n; ++j) {
        T sum = T(0);
        for (int64_t k = 0; k < kc; ++k) sum += a[k] * b[k * ldb + j];
        c[j] = beta == T(0) ? alpha * sum : alpha * sum + beta * c[j];
    }
}

// RB rows of B (columns of op(B)) dotted with a: out[r] = sum_k a[k] b[r*ldb + k].
// Each row's sum is formed the same way whatever RB is (one vector accumulator over k,
// a fixed-order reduction, then the k tail), so a row gives the same bits in any block.
template <class V, int RB>
static inline void dot_rows(int64_t kc, const typename V::scalar* a, const typename V::scalar* b,
                            int64_t ldb, typename V::scalar* out) {
    using T = typename V::scalar;
    using R = typename V::reg;
    constexpr int W = V::width;
    R acc[RB];
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) acc[r] = V::zero();
    int64_t k = 0;
    for (; k + W <= kc; k += W) {
        const R ak = V::loadu(a + k);
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) acc[r] = V::fmadd(ak, V::loadu(b + r * ldb + k), acc[r]);
    }
    // The lanes are summed by V::hsum, a fixed tree of shuffles and adds (a few
    // instructions, against W dependent scalar adds through memory, which cost as much
    // as the products themselves at K = 256).
    for (int r = 0; r < RB; ++r) {
        T sum = V::hsum(acc[r]);
        for (int64_t kk = k; kk < kc; ++kk) sum += a[kk] * b[r * ldb + kk];
        out[r] = sum;
    }
}

// op(B)(k, j) = b[j*ldb + k] (B transposed, as in x @ W^T with W stored (n, k)):
//   c[j] = alpha * dot(a, b[j*ldb : j*ldb + k]) + beta * c[j]
// Eight rows of b at a time share each load of a: eight accumulators keep both FMA
// units busy and eight rows are read side by side. Against four rows with two
// accumulators each (Zen 4, 1 thread, vs numpy's OpenBLAS) this took 1x256 @ W (1024x256)^T
// from 0.80-0.91 to 0.98-1.04 of numpy's speed on both ISAs and 1x512 @ (2048x512)^T from
// 0.86-0.98 to 1.00-1.08; long rows gain nothing (1x1024 @ (256x1024)^T on AVX-512:
// 0.89-0.96, against 0.94-1.00 before).
template <class V>
static void row_times_matrix_t(int64_t kc, const typename V::scalar* a, const typename V::scalar* b,
                               int64_t ldb, typename V::scalar* c, typename V::scalar alpha,
                               typename V::scalar beta, int64_t n) {
    using T = typename V::scalar;
    constexpr int RB = 8;
    T dots[RB];
    int64_t j = 0;
    for (; j + RB <= n; j += RB) {
        dot_rows<V, RB>(kc, a, b + j * ldb, ldb, dots);
        for (int r = 0; r < RB; ++r) c[j + r] = beta == T(0) ? alpha * dots[r] : alpha * dots[r] + beta * c[j + r];
    }
    for (; j < n; ++j) {
        dot_rows<V, 1>(kc, a, b + j * ldb, ldb, dots);
        c[j] = beta == T(0) ? alpha * dots[0] : alpha * dots[0] + beta * c[j];
    }
}

// Everything one instruction set contributes to gemm.cpp: the MR x (NV vectors) tile
// micro-kernel with its cache blocking (MC, KC, NC), the two one-row kernels (8 vector
// accumulators per column block of the GEMV; gemm_kernels_avx512.cpp says why not 16),
// and optionally a shorter-tile kernel (see gemm.h).
template <class V, int MR, int NV, int64_t MC, int64_t KC, int64_t NC>
constexpr GemmKernel<typename V::scalar> make_gemm_kernel(const char* name,
                                                          const GemmKernel<typename V::scalar>* short_rows = nullptr) {
    static_assert(MC % MR == 0, "a row block holds whole MR-tall panels");
    static_assert(NC % (NV * V::width) == 0, "a column block holds whole NR-wide panels");
    constexpr int kRowVectors = 8;
    return {name,
            MR,
            NV * V::width,
            micro_kernel<V, MR, NV>,
            kRowVectors * V::width,
            row_times_matrix<V, kRowVectors>,
            row_times_matrix_t<V>,
            MC,
            KC,
            NC,
            short_rows};
}
