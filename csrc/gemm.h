// gemm.h: pycore's one matrix multiply, used by linear, convolution and recurrent layers.
//
//   C = alpha * op(A) @ op(B) + beta * C          (row-major, BLAS-style leading dims)
//
// op(A) is M x K: A itself (M x K, row stride lda) or, with trans_a, the transpose
// of a K x M matrix. op(B) is K x N likewise. C is M x N with row stride ldc.
// When beta == 0, C is never read (NaNs in it do not survive).
//
// Built as BLIS builds a GEMM: five loops around one small register-blocked
// micro-kernel, with packed panels of A and B; M == 1 (a GEMV, as in a batch-1
// recurrent step) reads B in place instead. The kernels (gemm_kernels.h) are the only
// code compiled per instruction set (gemm_kernels_*.cpp); one set is picked at run time.
// The result does not depend on the thread count: K is never split, and every
// element is computed by the same code whichever thread computes it.
#pragma once
#include <cstdint>

namespace pycore {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc);

// The instruction set of the micro-kernels in use: "avx512f", "avx2+fma" or "generic".
const char* gemm_simd_path();
// Force a path ("avx512f", "avx2+fma", "generic"); false when the CPU lacks it.
bool gemm_set_simd_path(const char* name);

// Micro-kernel interface (see gemm_kernels.h for the contract).
template <typename T>
struct GemmKernel {
    const char* name;
    int mr, nr;  // register tile: MR rows of op(A) x NR columns of op(B)
    // c[0:m, 0:n] = alpha * (a_panel @ b_panel)[0:m, 0:n] + beta * c   (beta == 0: c not read)
    void (*run)(int64_t kc, const T* a_panel, const T* b_panel, T* c, int64_t ldc,
                T alpha, T beta, int64_t m, int64_t n);
    // M == 1 without packing: c[0:n] = alpha * a[0:k] @ op(B)[0:k, 0:n] + beta * c, a contiguous.
    // Splitting n between threads at multiples of row_block leaves every bit unchanged.
    int row_block;
    void (*row)(int64_t k, const T* a, const T* b, int64_t ldb, T* c, T alpha, T beta, int64_t n);    // op(B)(k, j) = b[k*ldb + j]
    void (*row_t)(int64_t k, const T* a, const T* b, int64_t ldb, T* c, T alpha, T beta, int64_t n);  // op(B)(k, j) = b[j*ldb + k]
};

}  // namespace pycore
