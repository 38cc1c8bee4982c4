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
#include <cstdlib>
#include <memory>

#include "portable.h"

namespace pycore {

// ---------------------------------------------------------------------------------
// Epilogue: what a fused layer (Conv2d or Linear followed by an activation) does to each
// finished tile of C in the GEMM's write-back, while the tile is still in L1:
//
//   C[i, j] = act(C[i, j] + bias)      bias = row_bias[i] or col_bias[j] (or none)
//
// where C[i, j] is the finished alpha * op(A) @ op(B) + beta * C. A conv's output channels
// are the rows of its C (row_bias); a linear layer's output features are the columns
// (col_bias). The activations compute what elementwise.cpp's do, with the same fastmath
// functions: relu(v) = v > 0 or NaN ? v : 0, leaky_relu(v) = v > 0 ? v : v * negative_slope,
// tanh, sigmoid. A null epilogue (the default everywhere) leaves C as the plain product.
enum class Activation : int { kNone = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4 };

template <typename T>
struct GemmEpilogue {
    const T* row_bias = nullptr;  // (M,), or null
    const T* col_bias = nullptr;  // (N,), or null; at most one of the two is given
    Activation activation = Activation::kNone;
    T negative_slope = T(0);  // kLeakyRelu only
};

// The epilogue on the block c (m x n, row stride ldc) that sits at rows row0.. and
// columns col0.. of C (bias indices are C's). Also for callers that finish C themselves
// (conv's staged small images); the loop follows _C.set_simd_path as simd.h describes.
template <typename T>
void apply_epilogue(const GemmEpilogue<T>& e, T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m, int64_t n);

template <typename T>
struct BPanelFill;  // below: an op(B) the caller writes into packed panels

// C = alpha * op(A) @ op(B) + beta * C, then the epilogue (when given) on every element.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc, const GemmEpilogue<T>* epilogue = nullptr);

// The depth of the K slices that gemm sums separately for a product of depth K: each
// slice's sums start from zero and are added to C in order (beta = 1). A kernel that must
// round as the GEMM does (conv's direct kernels) sums in the same slices.
template <typename T>
int64_t gemm_k_slice(int64_t K);

// A one-row product (M == 1) split into column slices at multiples of this, one gemm()
// call per slice, gives the same bits as one call over all columns (GemmKernel::row_block).
template <typename T>
int64_t gemm_row_block();
// The threads gemm() gives a one-row product of N columns and depth K split into at most
// `blocks` parts: for a caller that splits such a product over threads itself.
int gemm_row_threads(int64_t N, int64_t K, int64_t blocks);

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
    // Cache blocking for this tile and this ISA's caches (gemm.cpp): K in slices of at
    // most kc, mc rows of op(A) per packed block, nc columns of op(B) per block.
    // mc % mr == 0 and nc % nr == 0 (asserted where each kernel is defined).
    int64_t mc, kc, nc;
    // Optional: a kernel with fewer rows per tile and the same nr, kc and B panels, for
    // products with few rows, where a tall tile would compute padding (M = 32 with
    // MR = 12 pads to 36 rows); gemm.cpp picks it by M. nullptr when there is none.
    const GemmKernel* short_rows;
};

// ---------------------------------------------------------------------------------
// Packing an operand once for many products (BLIS's "packed matrix" idea).
//
// gemm() copies op(A) and op(B) into the micro-kernel's panel layout on every call.
// When one operand is the same in many products (W_hh at every RNN time step, a conv
// weight for every image) a PackedMatrix holds that copy, made once, and
// gemm_packed_a / gemm_packed_b run the same loops, threads and micro-kernel without
// packing it again. Their results are bitwise those of gemm() with the same operands
// (the same K slices, panels and summation order), for any thread count.
//
// Layout: op(X) (rows x depth for A, depth x cols for B) is cut along K into the
// slices gemm() uses; each slice holds every MR-tall (A) or NR-wide (B) panel of the
// whole matrix, k-major and zero-padded, in order.
//
// The source matrix must stay alive and unchanged while the PackedMatrix is used:
// products with one row (M == 1, a GEMV) read it in place, as gemm() does, since
// packing does not pay for a single pass over it. The micro-kernel in use is fixed at
// packing time (gemm_set_simd_path afterwards does not affect an existing packing).
template <typename T>
class PackedMatrix {
public:
    enum class Side { kA, kB };
    // op(A) (M x K) as the left operand: op(A)(i, k) = trans ? A[k*lda + i] : A[i*lda + k].
    static PackedMatrix pack_a(bool trans, int64_t M, int64_t K, const T* A, int64_t lda);
    // op(B) (K x N) as the right operand: op(B)(k, j) = trans ? B[j*ldb + k] : B[k*ldb + j].
    static PackedMatrix pack_b(bool trans, int64_t K, int64_t N, const T* B, int64_t ldb);

    Side side() const { return side_; }
    int64_t rows() const { return rows_; }  // M for A, K for B
    int64_t cols() const { return cols_; }  // K for A, N for B
    // NR, the width of the B panels in the products with this packing: they compute N in
    // whole panels, so a caller that picks N (conv's tiles) wastes least with multiples of it.
    int panel_width() const { return kernel_ ? kernel_->nr : 1; }

private:
    struct Free {
        void operator()(T* p) const { portable::aligned_free(p); }  // from portable::aligned_allocate
    };
    // Both sides pack the same way: `outer` panels of `width` (MR for A, NR for B) along
    // the dimension that is not K.
    static PackedMatrix pack(Side side, bool trans, int64_t rows, int64_t cols, int64_t outer, int64_t K,
                             const T* src, int64_t ld);
    template <typename U>
    friend void gemm_packed_a(const PackedMatrix<U>&, bool, int64_t, U, const U*, int64_t, U, U*, int64_t,
                              const GemmEpilogue<U>*);
    template <typename U>
    friend void gemm_packed_a_filled(const PackedMatrix<U>&, int64_t, const BPanelFill<U>&, U, U*, int64_t,
                                     const GemmEpilogue<U>*);
    template <typename U>
    friend void gemm_packed_b(bool, int64_t, U, const U*, int64_t, const PackedMatrix<U>&, U, U*, int64_t);

    Side side_ = Side::kB;
    int64_t rows_ = 0, cols_ = 0;
    const GemmKernel<T>* kernel_ = nullptr;
    std::unique_ptr<T, Free> panels_;  // empty when rows_ or cols_ is 0
    // The source, for the M == 1 products that read it in place.
    bool trans_ = false;
    const T* source_ = nullptr;
    int64_t ld_ = 0;
};

// C = alpha * op(A) @ op(B) + beta * C with op(A) (M x K) from A_packed; op(B) is K x N;
// then the epilogue, when given.
template <typename T>
void gemm_packed_a(const PackedMatrix<T>& A_packed, bool trans_b, int64_t N, T alpha, const T* B,
                   int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>* epilogue = nullptr);
// A right operand op(B) (K x N) that is never stored: the caller writes its pieces straight
// into the GEMM's packed panels when the GEMM asks (a convolution's implicit im2col). fill
// writes op(B)[p0:p0+kc, j0:j0+nc] (j0 a multiple of nr) as NR-wide panels, each kc x nr
// and k-major, the columns past nc zero:
//   dst[(j / nr) * kc * nr + k * nr + j % nr] = op(B)(p0 + k, j0 + j)   (0 for j >= nc)
// It is called from the GEMM's threads at once, on disjoint pieces, so it must not write
// shared state.
template <typename T>
struct BPanelFill {
    virtual void fill(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) const = 0;

protected:
    ~BPanelFill() = default;
};

// C = alpha * op(A) @ op(B) + beta * C (then the epilogue) with op(A) from A_packed and op(B)
// (A_packed.cols() x N) from B_fill. A_packed must have at least 2 rows: a one-row product
// reads B in place, and there is no B here (std::invalid_argument otherwise).
template <typename T>
void gemm_packed_a_filled(const PackedMatrix<T>& A_packed, int64_t N, const BPanelFill<T>& B_fill, T beta, T* C,
                          int64_t ldc, const GemmEpilogue<T>* epilogue = nullptr);

// C = alpha * op(A) @ op(B) + beta * C with op(B) (K x N) from B_packed; op(A) is M x K.
template <typename T>
void gemm_packed_b(bool trans_a, int64_t M, T alpha, const T* A, int64_t lda, const PackedMatrix<T>& B_packed,
                   T beta, T* C, int64_t ldc);

}  // namespace pycore
