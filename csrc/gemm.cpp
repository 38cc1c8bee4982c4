// gemm.cpp: the loops around the micro-kernel (BLIS's five loops), packing, threads
// and the run-time choice of instruction set.
//
//   for jc in N by NC                (a column block of C and op(B))
//     for pc in K by KC              (a slice of the shared dimension)
//       for ic in M by MC
//         pack op(A)[ic, pc] into MR-tall panels                  -> a_buf (L2)
//         for jg in NC by a group of kPanelsPerPack panels
//           first ic only: pack op(B)[pc, jc+jg] into NR-wide panels -> b_buf (L1/L2, then L3)
//           for jr in the group by NR, for ir in MC by MR: micro-kernel   (registers)
//
// M == 1 (a batch-1 recurrent step) skips packing: a GEMV kernel reads B in place.
//
// PackedMatrix (gemm.h) packs one operand whole, every K slice and every panel, once;
// gemm_packed_a / gemm_packed_b then run these same loops reading its panels where
// the loops above would have packed them, so the bits of C do not change.
//
// Threads: C is cut into a tm x tn grid of rectangles and each thread runs the whole
// nest on its own rectangle with its own packing buffers. Nothing is shared, so there
// are no barriers; a thread grid is chosen so that the extra packing this costs
// (tn copies of A, tm copies of B) stays small. K is never split, so C has one writer.
#include "gemm.h"
#include "omp_guard.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastmath.h"
#include "memory.h"
#include "simd.h"
#include "threads.h"

namespace pycore {

// A second thread from 2^16 multiply-adds (gemm_one_row says why), at most one per block.
int gemm_row_threads(int64_t N, int64_t K, int64_t blocks) {
    return static_cast<int>(std::min<int64_t>(threads_for(N * K, int64_t(1) << 16), blocks));
}

const GemmKernel<float>* gemm_kernel_generic_f32();
const GemmKernel<double>* gemm_kernel_generic_f64();
const GemmKernel<float>* gemm_kernel_avx2_f32();
const GemmKernel<double>* gemm_kernel_avx2_f64();
const GemmKernel<float>* gemm_kernel_avx512_f32();
const GemmKernel<double>* gemm_kernel_avx512_f64();

namespace {

enum SimdPath { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// The AVX-512 path asks for F, BW, VL and DQ (not F alone): the hot loops' AVX-512 copies
// (simd.h) are compiled for all four and follow this choice.
bool cpu_supports(SimdPath path) {
    const portable::X86Features cpu = portable::x86_features();  // none on a non-x86 CPU
    if (path == kAvx512) return cpu.avx512 && gemm_kernel_avx512_f32();
    if (path == kAvx2) return cpu.avx2_fma && gemm_kernel_avx2_f32();
    return path == kGeneric;
}

SimdPath best_path() {
    if (cpu_supports(kAvx512)) return kAvx512;
    if (cpu_supports(kAvx2)) return kAvx2;
    return kGeneric;
}

std::atomic<int> g_path{best_path()};

template <typename T>
const GemmKernel<T>* current_kernel();
template <>
const GemmKernel<float>* current_kernel<float>() {
    switch (g_path.load(std::memory_order_relaxed)) {
        case kAvx512: return gemm_kernel_avx512_f32();
        case kAvx2: return gemm_kernel_avx2_f32();
        default: return gemm_kernel_generic_f32();
    }
}
template <>
const GemmKernel<double>* current_kernel<double>() {
    switch (g_path.load(std::memory_order_relaxed)) {
        case kAvx512: return gemm_kernel_avx512_f64();
        case kAvx2: return gemm_kernel_avx2_f64();
        default: return gemm_kernel_generic_f64();
    }
}

// dst[k*ld_dst + r] = src[r*ld_src + k] for r < rows, k < kc: the transposing copy
// both packs need (rows of A into an A panel, rows of B into a B panel).
//
// Blocks of W x W (W = 16 bytes of T) are transposed in registers with portable
// 16-byte vectors, which every x86-64 and ARM64 CPU has: W loads and W stores per
// block instead of W*W scalar stores. Leftover rows and columns are copied one by one.
template <typename T>
void transpose_rows(const T* src, int64_t ld_src, int64_t rows, int64_t kc, T* dst, int64_t ld_dst) {
    int64_t r = 0;
#if PYCORE_HAVE_SHUFFLEVECTOR
    typedef T vec __attribute__((vector_size(16), aligned(alignof(T))));
    constexpr int W = 16 / sizeof(T);
    static_assert(W == 2 || W == 4, "16-byte vectors hold 4 floats or 2 doubles");
    for (; r + W <= rows; r += W) {
        const T* s = src + r * ld_src;
        int64_t k = 0;
        for (; k + W <= kc; k += W) {
            vec v[W];
            for (int i = 0; i < W; ++i) std::memcpy(&v[i], s + i * ld_src + k, sizeof(vec));
            vec out[W];
            if constexpr (W == 4) {
                const vec lo01 = __builtin_shufflevector(v[0], v[1], 0, 4, 1, 5);
                const vec lo23 = __builtin_shufflevector(v[2], v[3], 0, 4, 1, 5);
                const vec hi01 = __builtin_shufflevector(v[0], v[1], 2, 6, 3, 7);
                const vec hi23 = __builtin_shufflevector(v[2], v[3], 2, 6, 3, 7);
                out[0] = __builtin_shufflevector(lo01, lo23, 0, 1, 4, 5);
                out[1] = __builtin_shufflevector(lo01, lo23, 2, 3, 6, 7);
                out[2] = __builtin_shufflevector(hi01, hi23, 0, 1, 4, 5);
                out[3] = __builtin_shufflevector(hi01, hi23, 2, 3, 6, 7);
            } else {
                out[0] = __builtin_shufflevector(v[0], v[1], 0, 2);
                out[1] = __builtin_shufflevector(v[0], v[1], 1, 3);
            }
            for (int i = 0; i < W; ++i) std::memcpy(dst + (k + i) * ld_dst + r, &out[i], sizeof(vec));
        }
        for (; k < kc; ++k)
            for (int i = 0; i < W; ++i) dst[k * ld_dst + r + i] = s[i * ld_src + k];
    }
#endif
    for (; r < rows; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * ld_dst + r] = src[r * ld_src + k];
}

// The two ways a panel is filled, shared by both operands. A panel holds `width` of
// op(X)'s rows (A, width MR) or columns (B, width NR), stored k-major (kc x width) and
// zero-padded past `count`; `first` is the first row/column, `p0` the first k.
//
// along_k_rows: X[(p0 + k) * ld + first + j] holds element j at depth k, so the values of
// one k are contiguous. Walk each stored row once along all panels, handing width-long
// pieces to the panels, so the reads are long runs the prefetcher follows (panel by panel
// instead, every piece came from a new cache line ld apart: 4 KiB for the weight gradients
// of an LSTM with H = 256, and that loop took 6% of the layer's fwd+bwd).
template <typename T>
void pack_along_k_rows(const T* X, int64_t ld, int64_t p0, int64_t kc, int64_t first, int64_t count, int width,
                       T* dst) {
    for (int64_t k = 0; k < kc; ++k) {
        const T* src = X + (p0 + k) * ld + first;
        for (int64_t j0 = 0; j0 < count; j0 += width) {
            const int64_t n = std::min<int64_t>(width, count - j0);
            T* d = dst + (j0 / width) * kc * width + k * width;
            std::memcpy(d, src + j0, sizeof(T) * n);
            for (int64_t j = n; j < width; ++j) d[j] = T(0);
        }
    }
}

// transposed: X[(first + j) * ld + p0 + k], each of the panel's rows read along k, transposed.
template <typename T>
void pack_transposed(const T* X, int64_t ld, int64_t p0, int64_t kc, int64_t first, int64_t count, int width,
                     T* dst) {
    for (int64_t j0 = 0; j0 < count; j0 += width, dst += kc * width) {
        const int64_t n = std::min<int64_t>(width, count - j0);
        transpose_rows(X + (first + j0) * ld + p0, ld, n, kc, dst, width);
        for (int64_t j = n; j < width; ++j)
            for (int64_t k = 0; k < kc; ++k) dst[k * width + j] = T(0);
    }
}

// Pack op(A)[i0:i0+mc, p0:p0+kc] into MR-tall panels, each stored k-major, zero-padded.
// op(A)(i, k) is A[k*lda + i] when transposed (rows of A along k), else A[i*lda + k].
template <typename T>
void pack_a(const T* A, int64_t lda, bool trans, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            int mr, T* dst) {
    if (trans)
        pack_along_k_rows(A, lda, p0, kc, i0, mc, mr, dst);
    else
        pack_transposed(A, lda, p0, kc, i0, mc, mr, dst);
}

// Pack op(B)[p0:p0+kc, j0:j0+nc] into NR-wide panels, each stored k-major (kc x nr)
// and zero-padded to nr columns. op(B)(k, j) is B[k*ldb + j] (rows of B along k), or
// B[j*ldb + k] when transposed.
template <typename T>
void pack_b(const T* B, int64_t ldb, bool trans, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr,
            T* dst) {
    if (trans)
        pack_transposed(B, ldb, p0, kc, j0, nc, nr, dst);
    else
        pack_along_k_rows(B, ldb, p0, kc, j0, nc, nr, dst);
}

// Packing buffers live as long as the (pooled) OpenMP thread that uses them, so a
// GEMM called once per RNN timestep does not allocate. 64-byte aligned: a packed
// panel row then starts on a cache line.
template <typename T>
class Scratch {
public:
    T* get(size_t count) {
        if (count > capacity_) {
            portable::aligned_free(data_);
            data_ = nullptr, capacity_ = 0;  // a failed allocation below must not leave a stale capacity
            const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
            data_ = static_cast<T*>(portable::aligned_allocate(64, bytes));
            if (!data_) throw std::bad_alloc();
            capacity_ = count;
        }
        return data_;
    }
    ~Scratch() { portable::aligned_free(data_); }

private:
    T* data_ = nullptr;
    size_t capacity_ = 0;
};

enum ScratchSlot { kPackedB = 0, kPackedA = 1, kRowOfA = 2 };

template <typename T>
T* scratch(ScratchSlot which, size_t count) {
    thread_local Scratch<T> buffers[3];
    return buffers[which].get(count);
}

// One row range [i0, i1) of the epilogue (gemm.h) on block c: bias, then act. No bias is
// no addition at all (adding 0 would turn a -0 product into +0).
template <typename T, class Act>
PYCORE_INLINE void finish_rows(const GemmEpilogue<T>& e, T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t n,
                               int64_t i0, int64_t i1, Act act) {
    const T* col_bias = e.col_bias ? e.col_bias + col0 : nullptr;
    for (int64_t i = i0; i < i1; ++i) {
        T* PYCORE_RESTRICT ci = c + i * ldc;
        if (e.row_bias) {
            const T b = e.row_bias[row0 + i];
            for (int64_t j = 0; j < n; ++j) ci[j] = act(ci[j] + b);
        } else if (col_bias) {
            for (int64_t j = 0; j < n; ++j) ci[j] = act(ci[j] + col_bias[j]);
        } else {
            for (int64_t j = 0; j < n; ++j) ci[j] = act(ci[j]);
        }
    }
}

// The epilogue with the instruction set already chosen (simd::use_avx2 once per call, not per tile).
template <typename T>
void run_epilogue(bool avx2, const GemmEpilogue<T>& e, T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m,
                  int64_t n) {
    const auto rows_with = [&](auto act) {
        simd::run(
            avx2,
            [&, act](int64_t i0, int64_t i1) PYCORE_LAMBDA_INLINE { finish_rows(e, c, ldc, row0, col0, n, i0, i1, act); },
            0, m);
    };
    const T slope = e.negative_slope;
    switch (e.activation) {
        case Activation::kNone: rows_with([](T v) PYCORE_LAMBDA_INLINE { return v; }); break;
        case Activation::kRelu: rows_with([](T v) PYCORE_LAMBDA_INLINE { return v > T(0) || v != v ? v : T(0); }); break;
        case Activation::kLeakyRelu:
            rows_with([slope](T v) PYCORE_LAMBDA_INLINE { return v > T(0) ? v : v * slope; });
            break;
        case Activation::kTanh: rows_with([](T v) PYCORE_LAMBDA_INLINE { return fastmath::tanh(v); }); break;
        case Activation::kSigmoid: rows_with([](T v) PYCORE_LAMBDA_INLINE { return fastmath::sigmoid(v); }); break;
    }
}

// A call's epilogue (or none) and its instruction set, handed down to every tile.
template <typename T>
struct Finish {
    const GemmEpilogue<T>* epilogue = nullptr;
    bool avx2 = false;
    void operator()(T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m, int64_t n) const {
        if (epilogue) run_epilogue(avx2, *epilogue, c, ldc, row0, col0, m, n);
    }
};

template <typename T>
Finish<T> finish_of(const GemmEpilogue<T>* epilogue) {
    return Finish<T>{epilogue, epilogue != nullptr && simd::use_avx2()};
}

struct Args {
    bool trans_a, trans_b;
    int64_t M, N, K, lda, ldb, ldc;
};

// K in equal slices of at most KC, the kernel's kc (K = 512 as 2 x 256, not 384 + 128): no short
// slice that pays a full pass over C for a little work. Returns the slice depth.
inline int64_t slice_depth(int64_t K, int64_t KC) {
    const int64_t k_slices = (K + KC - 1) / KC;
    return (K + k_slices - 1) / k_slices;
}

// Operands packed ahead of the call (PackedMatrix), or null: pack as we go. A packed
// operand holds, for each K slice starting at pc, all `panels` panels of `width`
// (MR or NR) in order, so the slice starts at pc * panels * width and panel p of it
// at p * kc * width.
template <typename T>
struct Prepacked {
    const T* a = nullptr;
    const T* b = nullptr;
    const BPanelFill<T>* b_fill = nullptr;  // or op(B) written by the caller's fill (gemm.h)
};

// One thread's share: C[m0:m1, n0:n1].
//
// op(B) is packed in groups of kPanelsPerPack panels, each group just before the first
// row block uses it: long enough runs of B's rows for the prefetcher, small enough
// (tens of KiB) that the kernel reads the fresh panels back from L1/L2 rather than
// from wherever a whole packed KC x NC block would have been pushed to. Later row
// blocks find them packed. When the rows fit in one block (the skinny products of
// recurrent layers) no group is read again after its columns of tiles, so one
// group-sized buffer is reused for all of them.
constexpr int64_t kPanelsPerPack = 4;

template <typename T>
void gemm_block(const GemmKernel<T>& kern, const Args& g, T alpha, const T* A, const T* B, T beta,
                T* C, int64_t m0, int64_t m1, int64_t n0, int64_t n1, Prepacked<T> pre, const Finish<T>& finish) {
    const int mr = kern.mr, nr = kern.nr;
    const int64_t MC = kern.mc, NC = kern.nc;
    const int64_t group = kPanelsPerPack * nr;  // columns packed at once
    const bool one_row_block = m1 - m0 <= MC;
    const int64_t nc_max = std::min<int64_t>(NC, n1 - n0);
    const int64_t kc_max = slice_depth(g.K, kern.kc);
    const int64_t b_cols = one_row_block ? std::min<int64_t>(group, nc_max) : nc_max;
    const int64_t a_panels = (g.M + mr - 1) / mr, b_panels = (g.N + nr - 1) / nr;
    T* b_buf = pre.b ? nullptr : scratch<T>(kPackedB, size_t(kc_max) * ((b_cols + nr - 1) / nr) * nr);
    T* a_buf = pre.a ? nullptr : scratch<T>(kPackedA, size_t(kc_max) * MC);

    for (int64_t jc = n0; jc < n1; jc += NC) {
        const int64_t nc = std::min<int64_t>(NC, n1 - jc);
        for (int64_t pc = 0; pc < g.K; pc += kc_max) {
            const int64_t kc = std::min<int64_t>(kc_max, g.K - pc);
            const T beta_here = pc == 0 ? beta : T(1);  // later K slices accumulate
            for (int64_t ic = m0; ic < m1; ic += MC) {
                const int64_t mc = std::min<int64_t>(MC, m1 - ic);
                // ic is a multiple of MR (m0 and MC are), so the block starts at a panel.
                const T* a_block = pre.a ? pre.a + pc * a_panels * mr + (ic / mr) * kc * mr : a_buf;
                if (!pre.a) pack_a(A, g.lda, g.trans_a, ic, mc, pc, kc, mr, a_buf);
                for (int64_t jg = 0; jg < nc; jg += group) {
                    // This group's panels: prepacked, at the start of b_buf, or at their
                    // place in the block.
                    const int64_t ng = std::min<int64_t>(group, nc - jg);
                    const T* b_group;
                    if (pre.b) {
                        b_group = pre.b + pc * b_panels * nr + ((jc + jg) / nr) * kc * nr;
                    } else {
                        T* dst = one_row_block ? b_buf : b_buf + (jg / nr) * kc * nr;
                        if (ic == m0) {
                            if (pre.b_fill)
                                pre.b_fill->fill(pc, kc, jc + jg, ng, nr, dst);
                            else
                                pack_b(B, g.ldb, g.trans_b, pc, kc, jc + jg, ng, nr, dst);
                        }
                        b_group = dst;
                    }
                    for (int64_t jr = 0; jr < ng; jr += nr) {
                        const T* b_panel = b_group + (jr / nr) * kc * nr;
                        const int64_t n = std::min<int64_t>(nr, ng - jr);
                        for (int64_t ir = 0; ir < mc; ir += mr) {
                            T* c_tile = C + (ic + ir) * g.ldc + jc + jg + jr;
                            const int64_t m = std::min<int64_t>(mr, mc - ir);
                            kern.run(kc, a_block + (ir / mr) * kc * mr, b_panel, c_tile, g.ldc, alpha, beta_here, m, n);
                            // The last K slice finished this tile: the epilogue while it is in L1.
                            if (pc + kc == g.K) finish(c_tile, g.ldc, ic + ir, jc + jg + jr, m, n);
                        }
                    }
                }
            }
        }
    }
}

// M == 1: C[0, :] = alpha * op(A)[0, :] @ op(B) + beta * C[0, :], as a GEMV that reads
// B in place (packing would copy every element of B to use it once). Threads take
// slices of the N columns cut at multiples of kern.row_block, so the result does not
// depend on the thread count. Allocates nothing, except a per-thread gather buffer
// the first time op(A)'s row is strided (trans_a with lda != 1).
template <typename T>
void gemm_one_row(const GemmKernel<T>& kern, const Args& g, T alpha, const T* A, const T* B, T beta, T* C) {
    const T* a = A;
    if (g.trans_a && g.lda != 1 && g.K > 1) {
        // op(A)[0, k] = A[k*lda]: gather the column into this thread's buffer.
        T* row = scratch<T>(kRowOfA, size_t(g.K));
        for (int64_t k = 0; k < g.K; ++k) row[k] = A[k * g.lda];
        a = row;
    }
    const auto row_kernel = g.trans_b ? kern.row_t : kern.row;
    const int64_t block = kern.row_block;
    const int64_t blocks = (g.N + block - 1) / block;
    // Reading B is the whole cost, and each thread reads its own slice of columns: a
    // batch-1 RNN step makes this call every timestep with the same B, so each half stays
    // in its core's L2. Measured on a 2-core Xeon (AVX-512, quiet, float, best of 3 x 200
    // calls), 1 thread -> 2: B of 256 KiB (2^16 multiply-adds) 0.011 -> 0.011 ms, 512 KiB
    // 0.016 -> 0.011, 1 MiB 0.024 -> 0.017, 4 MiB 0.178 -> 0.070 (the halves fit in L2,
    // the whole does not). With one thread up to 2^20, as before, 1x512 @ 512x2048 ran at
    // 0.35x numpy's speed at 2 threads.
    const int nt = gemm_row_threads(g.N, g.K, blocks);
    if (nt == 1) {
        row_kernel(g.K, a, B, g.ldb, C, alpha, beta, g.N);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; ++t) {
        const int64_t j0 = std::min(g.N, blocks * t / nt * block);
        const int64_t j1 = std::min(g.N, blocks * (t + 1) / nt * block);
        const T* b = g.trans_b ? B + j0 * g.ldb : B + j0;
        if (j0 < j1) row_kernel(g.K, a, b, g.ldb, C + j0, alpha, beta, j1 - j0);
    }
}

// C = beta * C, for K == 0 or alpha == 0 (beta == 0 writes zeros, never reads C).
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (beta == T(0))
            std::fill(c, c + N, T(0));
        else if (beta != T(1))
            for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
}

// Split nt threads into a tm x tn grid over C. Each thread packs its own A rows and
// B columns, so the grid that copies least is the one minimising tn*M + tm*N.
void thread_grid(int nt, int64_t M, int64_t N, int mr, int nr, int* tm_out, int* tn_out) {
    const int64_t row_panels = (M + mr - 1) / mr, col_panels = (N + nr - 1) / nr;
    int best_tm = 0, best_tn = 0;
    int64_t best_cost = 0;
    for (int tm = 1; tm <= nt; ++tm) {
        if (nt % tm) continue;
        const int tn = nt / tm;
        if (tm > row_panels || tn > col_panels) continue;
        const int64_t cost = tn * M + tm * N;
        if (best_tm == 0 || cost < best_cost) best_tm = tm, best_tn = tn, best_cost = cost;
    }
    if (best_tm == 0) {
        // nt does not factor onto this shape (say 3 threads, one row panel): use what fits.
        best_tm = static_cast<int>(std::min<int64_t>(nt, row_panels));
        best_tn = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt / best_tm, col_panels)));
    }
    *tm_out = best_tm;
    *tn_out = best_tn;
}

// [begin, end) of part p of `panels` panels split into `parts`, in units of `step` rows.
inline void split(int64_t total, int64_t step, int parts, int p, int64_t* begin, int64_t* end) {
    const int64_t panels = (total + step - 1) / step;
    const int64_t lo = panels * p / parts, hi = panels * (p + 1) / parts;
    *begin = std::min(total, lo * step);
    *end = std::min(total, hi * step);
}

// The tile for an M-row product: the kernel's shorter tile (gemm.h) when M fits one row
// block and the shorter tile pads it to fewer rows (M = 32 or 64 with tiles of 12 and 8
// rows: 36 or 72 rows computed against 32 or 64), else the kernel itself. Every
// element of C is the same sum whichever tile computes it, so the bits do not change.
template <typename T>
const GemmKernel<T>& tile_for_rows(const GemmKernel<T>& kern, int64_t M) {
    const GemmKernel<T>* shorter = kern.short_rows;
    if (!shorter || M > kern.mc) return kern;
    const auto padded = [M](int mr) { return (M + mr - 1) / mr * mr; };
    return padded(shorter->mr) < padded(kern.mr) ? *shorter : kern;
}

// The whole product once the kernel is chosen: the M == 1 GEMV, or the five loops
// on one thread or on a grid of threads; `pre` says which operands come prepacked
// (prepacked A panels are MR tall, so they keep the kernel they were packed for).
template <typename T>
void gemm_run(const GemmKernel<T>& packed_kernel, const Args& g, T alpha, const T* A, const T* B, T beta, T* C,
              Prepacked<T> pre, const Finish<T>& finish = Finish<T>{}) {
    const GemmKernel<T>& kern = pre.a ? packed_kernel : tile_for_rows(packed_kernel, g.M);
    const int64_t M = g.M, N = g.N, K = g.K;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == T(0)) {
        scale_c(M, N, beta, C, g.ldc);
        finish(C, g.ldc, 0, 0, M, N);
        return;
    }
    if (M == 1) {
        gemm_one_row(kern, g, alpha, A, B, beta, C);
        finish(C, g.ldc, 0, 0, 1, N);  // one row of N: still in cache
        return;
    }

    // A second thread from 2^18 multiply-adds on (a few microseconds of work each): a
    // parallel region costs ~2-3 us on an idle machine, far more on a busy one. Against
    // 2^20 as before (Zen 4, 2 threads, each alone): 256 x 10 x 256 took 27 -> 16 us,
    // 64 x 10 x 784 23 -> 14, 128 x 64 x 40 8.3 -> 6.0 (on AVX2 that one gained least: 9.8 -> 9.4).
    const int nt = threads_for(M * N * K, int64_t(1) << 18);
    if (nt == 1) {
        gemm_block(kern, g, alpha, A, B, beta, C, 0, M, 0, N, pre, finish);
        return;
    }
    int tm, tn;
    thread_grid(nt, M, N, kern.mr, kern.nr, &tm, &tn);
    RegionErrors errors;  // a packing buffer's std::bad_alloc must not leave the region (omp_guard.h)
#pragma omp parallel num_threads(tm * tn)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        errors.run([&] {
            int64_t m0, m1, n0, n1;
            split(M, kern.mr, tm, t / tn, &m0, &m1);
            split(N, kern.nr, tn, t % tn, &n0, &n1);
            if (m0 < m1 && n0 < n1) gemm_block(kern, g, alpha, A, B, beta, C, m0, m1, n0, n1, pre, finish);
        });
    }
    errors.rethrow();
}

// Pack all of op(X) for PackedMatrix: for each K slice, `count` panels of `width`,
// panel p holding op(X)'s rows (A) or columns (B) [p*width, (p+1)*width). Threads take
// runs of panels; every panel is the same copy whichever thread makes it.
template <typename T>
void pack_whole(bool side_a, bool trans, const T* X, int64_t ld, int64_t outer, int64_t K, int width,
                int64_t KC, T* dst) {
    const int64_t kc_max = slice_depth(K, KC);
    const int64_t count = (outer + width - 1) / width;
    constexpr int64_t kPanelsPerTask = 8;
    const int64_t runs = (count + kPanelsPerTask - 1) / kPanelsPerTask;
    const int64_t slices = (K + kc_max - 1) / kc_max;
    const int nt = static_cast<int>(std::min<int64_t>(slices * runs, threads_for(outer * K, int64_t(1) << 18)));
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t task = 0; task < slices * runs; ++task) {
        const int64_t pc = task / runs * kc_max, kc = std::min<int64_t>(kc_max, K - pc);
        const int64_t first = task % runs * kPanelsPerTask;
        const int64_t begin = first * width, len = std::min<int64_t>(kPanelsPerTask * width, outer - begin);
        T* out = dst + pc * count * width + first * kc * width;
        if (side_a)
            pack_a(X, ld, trans, begin, len, pc, kc, width, out);
        else
            pack_b(X, ld, trans, pc, kc, begin, len, width, out);
    }
}

// C^T = op(B)^T op(A)^T, the same product with the roles of A and B swapped, is the
// faster way to compute two kinds of product:
// - Few columns, many rows. The tile pads op(B)'s columns to NR (32 for AVX-512 float)
//   but op(A)'s rows only to MR (8 or 12): a classifier's Linear(256 -> 10) computed 32
//   columns for 10, a head of 65 characters 96 for 65. Swapped when that is at least a
//   fifth less padded work: 256 x 10 x 256 went from 0.046 to 0.026 ms, 3200 x 65 x 256
//   from 1.5 to 1.3 (Zen 4, AVX-512, 1 thread).
// - op(A) = A^T with few columns (N <= 256, M >= 4N): the weight gradients dW = dG^T X of
//   the recurrent layers. Packing A^T copies its MR-long pieces one by one (16 bytes on
//   AVX2), M*K/MR of them; swapped, that long side is packed NR at a time. On Zen 4 (1
//   thread, M 1024-2048, K 256-2048) N <= 128 ran 1.2-2.0x faster on AVX2 and 1.1-1.35x on
//   AVX-512, N = 256 1.0-1.1x. What it saves grows with M*K and moving C costs M*N, so
//   only K >= 4N: a batch-1 LSTM's 1024 x 256 x 255 took 1.3-1.7 ms against 1.6-2.0 swapped.
// Either way K >= 16. Each element of C is then the same chain of FMAs over the same K
// slices, and with beta 0 or 1 a partial tile stores what a full one would, so the bits do
// not change (test_gemm compares this path with the prepacked one, which never swaps).
template <typename T>
bool transposed_product_pays(const GemmKernel<T>& kern, const Args& g, T beta) {
    const int64_t M = g.M, N = g.N;
    if (M < 2 || N < 2 || g.K < 16 || !(beta == T(0) || beta == T(1))) return false;
    if (g.trans_a && !g.trans_b && N <= 256 && M >= 4 * N && g.K >= 4 * N) return true;
    const auto padded_work = [&kern](int64_t rows, int64_t cols) {
        const int64_t mr = tile_for_rows(kern, rows).mr, nr = kern.nr;
        return (rows + mr - 1) / mr * mr * ((cols + nr - 1) / nr * nr);
    };
    return 5 * padded_work(N, M) <= 4 * padded_work(M, N);
}

}  // namespace

template <typename T>
void apply_epilogue(const GemmEpilogue<T>& e, T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m, int64_t n) {
    run_epilogue(simd::use_avx2(), e, c, ldc, row0, col0, m, n);
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>* epilogue) {
    const GemmKernel<T>& kern = *current_kernel<T>();
    const Args g{trans_a, trans_b, M, N, K, lda, ldb, ldc};
    if (!transposed_product_pays(kern, g, beta)) {
        gemm_run(kern, g, alpha, A, B, beta, C, Prepacked<T>{}, finish_of(epilogue));
        return;
    }
    // C^T (N x M, contiguous) = op(B)^T @ op(A)^T: op(B)^T is B read with the opposite
    // transpose flag, and likewise A. beta == 1 starts from C^T, copied in.
    memory::Scratch<T> c_t(size_t(M) * size_t(N));
    if (beta != T(0)) transpose_rows(C, ldc, M, N, c_t.data(), M);
    gemm_run(kern, Args{!trans_b, !trans_a, N, M, K, ldb, lda, M}, alpha, B, A, beta, c_t.data(), Prepacked<T>{});
    transpose_rows(c_t.data(), M, N, M, C, ldc);
    finish_of(epilogue)(C, ldc, 0, 0, M, N);
}

template <typename T>
PackedMatrix<T> PackedMatrix<T>::pack(Side side, bool trans, int64_t rows, int64_t cols, int64_t outer,
                                      int64_t K, const T* src, int64_t ld) {
    PackedMatrix<T> p;
    p.side_ = side;
    p.rows_ = std::max<int64_t>(rows, 0), p.cols_ = std::max<int64_t>(cols, 0);
    // A packed left operand takes the tile gemm() would take for its rows (tile_for_rows): a
    // conv weight of 64 output channels packed in 12-row panels computed 72 rows for 64.
    p.kernel_ = side == Side::kA ? &tile_for_rows(*current_kernel<T>(), p.rows_) : current_kernel<T>();
    p.trans_ = trans, p.source_ = src, p.ld_ = ld;
    if (p.rows_ > 0 && p.cols_ > 0) {
        const int width = side == Side::kA ? p.kernel_->mr : p.kernel_->nr;
        const size_t count = size_t((outer + width - 1) / width) * width * size_t(K);
        p.panels_.reset(static_cast<T*>(portable::aligned_allocate(64, (count * sizeof(T) + 63) / 64 * 64)));
        if (!p.panels_) throw std::bad_alloc();
        pack_whole(side == Side::kA, trans, src, ld, outer, K, width, p.kernel_->kc, p.panels_.get());
    }
    return p;
}

template <typename T>
PackedMatrix<T> PackedMatrix<T>::pack_a(bool trans, int64_t M, int64_t K, const T* A, int64_t lda) {
    return pack(Side::kA, trans, M, K, M, K, A, lda);
}

template <typename T>
PackedMatrix<T> PackedMatrix<T>::pack_b(bool trans, int64_t K, int64_t N, const T* B, int64_t ldb) {
    return pack(Side::kB, trans, K, N, N, K, B, ldb);
}

template <typename T>
void gemm_packed_a(const PackedMatrix<T>& A_packed, bool trans_b, int64_t N, T alpha, const T* B,
                   int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>* epilogue) {
    if (A_packed.side_ != PackedMatrix<T>::Side::kA) throw std::invalid_argument("gemm_packed_a: B-side packing");
    const Args g{A_packed.trans_, trans_b, A_packed.rows_, N, A_packed.cols_, A_packed.ld_, ldb, ldc};
    // A default-constructed packing has no kernel, but then its products are empty.
    const GemmKernel<T>& kern = A_packed.kernel_ ? *A_packed.kernel_ : *current_kernel<T>();
    gemm_run(kern, g, alpha, A_packed.source_, B, beta, C, Prepacked<T>{A_packed.panels_.get(), nullptr},
             finish_of(epilogue));
}

template <typename T>
void gemm_packed_a_filled(const PackedMatrix<T>& A_packed, int64_t N, const BPanelFill<T>& B_fill, T beta, T* C,
                          int64_t ldc, const GemmEpilogue<T>* epilogue) {
    if (A_packed.side_ != PackedMatrix<T>::Side::kA)
        throw std::invalid_argument("gemm_packed_a_filled: B-side packing");
    if (A_packed.rows_ < 2) throw std::invalid_argument("gemm_packed_a_filled: op(A) needs at least 2 rows");
    const Args g{A_packed.trans_, false, A_packed.rows_, N, A_packed.cols_, A_packed.ld_, 0, ldc};
    gemm_run(*A_packed.kernel_, g, T(1), A_packed.source_, static_cast<const T*>(nullptr), beta, C,
             Prepacked<T>{A_packed.panels_.get(), nullptr, &B_fill}, finish_of(epilogue));
}

template <typename T>
void gemm_packed_b(bool trans_a, int64_t M, T alpha, const T* A, int64_t lda, const PackedMatrix<T>& B_packed,
                   T beta, T* C, int64_t ldc) {
    if (B_packed.side_ != PackedMatrix<T>::Side::kB) throw std::invalid_argument("gemm_packed_b: A-side packing");
    const Args g{trans_a, B_packed.trans_, M, B_packed.cols_, B_packed.rows_, lda, B_packed.ld_, ldc};
    const GemmKernel<T>& kern = B_packed.kernel_ ? *B_packed.kernel_ : *current_kernel<T>();
    gemm_run(kern, g, alpha, A, B_packed.source_, beta, C, Prepacked<T>{nullptr, B_packed.panels_.get()});
}

template void apply_epilogue<float>(const GemmEpilogue<float>&, float*, int64_t, int64_t, int64_t, int64_t,
                                    int64_t);
template void apply_epilogue<double>(const GemmEpilogue<double>&, double*, int64_t, int64_t, int64_t, int64_t,
                                     int64_t);
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t, const GemmEpilogue<float>*);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t, const GemmEpilogue<double>*);
template class PackedMatrix<float>;
template class PackedMatrix<double>;
template void gemm_packed_a<float>(const PackedMatrix<float>&, bool, int64_t, float, const float*, int64_t,
                                   float, float*, int64_t, const GemmEpilogue<float>*);
template void gemm_packed_a<double>(const PackedMatrix<double>&, bool, int64_t, double, const double*,
                                    int64_t, double, double*, int64_t, const GemmEpilogue<double>*);
template void gemm_packed_a_filled<float>(const PackedMatrix<float>&, int64_t, const BPanelFill<float>&, float,
                                          float*, int64_t, const GemmEpilogue<float>*);
template void gemm_packed_a_filled<double>(const PackedMatrix<double>&, int64_t, const BPanelFill<double>&, double,
                                           double*, int64_t, const GemmEpilogue<double>*);
template void gemm_packed_b<float>(bool, int64_t, float, const float*, int64_t, const PackedMatrix<float>&,
                                   float, float*, int64_t);
template void gemm_packed_b<double>(bool, int64_t, double, const double*, int64_t, const PackedMatrix<double>&,
                                    double, double*, int64_t);

template <typename T>
int64_t gemm_k_slice(int64_t K) {
    return slice_depth(K, current_kernel<T>()->kc);
}
template int64_t gemm_k_slice<float>(int64_t);
template int64_t gemm_k_slice<double>(int64_t);

template <typename T>
int64_t gemm_row_block() {
    return current_kernel<T>()->row_block;
}
template int64_t gemm_row_block<float>();
template int64_t gemm_row_block<double>();

const char* gemm_simd_path() { return current_kernel<float>()->name; }

bool gemm_set_simd_path(const char* name) {
    const std::string want(name);
    if (want == "auto") {
        g_path.store(best_path());
        return true;
    }
    const SimdPath paths[] = {kGeneric, kAvx2, kAvx512};
    const char* names[] = {"generic", "avx2+fma", "avx512f"};
    for (int i = 0; i < 3; ++i) {
        if (want != names[i]) continue;
        if (!cpu_supports(paths[i])) return false;
        g_path.store(paths[i]);
        return true;
    }
    return false;
}

}  // namespace pycore
