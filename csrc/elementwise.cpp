// elementwise.cpp: see elementwise.h for the math of each kernel.
#include "elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastmath.h"
#include "memory.h"
#include "omp_guard.h"
#include "simd.h"
#include "threads.h"

namespace pycore {
namespace {

// Elements per thread below which another thread costs more than it saves: cheap
// arithmetic needs more work per thread than a transcendental function does.
constexpr int64_t kGrainCheap = 1 << 15;
constexpr int64_t kGrainTranscendental = 1 << 13;

// f(i) for i in [0, n), split evenly over the threads; the loop is compiled for each
// instruction set and picked at run time (simd.h), so f must be PYCORE_LAMBDA_INLINE and
// branch-free (conditionals through fastmath::where) for it to vectorise.
template <class F>
void for_each_index(int64_t n, int64_t grain, F f) {
    simd::parallel_run(n, threads_for(n, grain), [=](int64_t i0, int64_t i1) PYCORE_LAMBDA_INLINE {
        for (int64_t i = i0; i < i1; ++i) f(i);
    });
}

// y[i] = f(x[i]) with f from fastmath.h (a transcendental function: a smaller grain).
template <class T, class F>
void map_vectorised(T* y, const T* x, int64_t n, F f) {
    for_each_index(n, kGrainTranscendental, [=](int64_t i) PYCORE_LAMBDA_INLINE { y[i] = f(x[i]); });
}

}  // namespace

// ---------------------------------------------------------------------------------------
// relu

template <class T>
void relu_forward(T* y, const T* x, int64_t n) {
    // !(x <= 0) rather than x > 0, so that a NaN input stays NaN (as PyTorch).
    for_each_index(n, kGrainCheap,
                   [=](int64_t i) PYCORE_LAMBDA_INLINE { y[i] = fastmath::where(!(x[i] <= T(0)), x[i], T(0)); });
}

template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
    for_each_index(n, kGrainCheap,
                   [=](int64_t i) PYCORE_LAMBDA_INLINE { dx[i] = fastmath::where(y[i] > T(0), dy[i], T(0)); });
}

// ---------------------------------------------------------------------------------------
// leaky_relu

template <class T>
void leaky_relu_forward(T* y, const T* x, T slope, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) PYCORE_LAMBDA_INLINE {
        y[i] = fastmath::where(x[i] > T(0), x[i], x[i] * slope);
    });
}

template <class T>
void leaky_relu_backward(T* dx, const T* dy, const T* x, T slope, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) PYCORE_LAMBDA_INLINE {
        dx[i] = fastmath::where(x[i] > T(0), dy[i], dy[i] * slope);
    });
}

// ---------------------------------------------------------------------------------------
// sigmoid

template <class T>
void sigmoid_forward(T* y, const T* x, int64_t n) {
    // fastmath::sigmoid takes exp(-|x|) <= 1: no overflow, full precision down to subnormals.
    map_vectorised(y, x, n, [](T v) PYCORE_LAMBDA_INLINE { return fastmath::sigmoid(v); });
}

template <class T>
void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t n) {
    for_each_index(n, kGrainCheap,
                   [=](int64_t i) PYCORE_LAMBDA_INLINE { dx[i] = dy[i] * y[i] * (T(1) - y[i]); });
}

// ---------------------------------------------------------------------------------------
// tanh

template <class T>
void tanh_forward(T* y, const T* x, int64_t n) {
    map_vectorised(y, x, n, [](T v) PYCORE_LAMBDA_INLINE { return fastmath::tanh(v); });
}

template <class T>
void tanh_backward(T* dx, const T* dy, const T* y, int64_t n) {
    for_each_index(n, kGrainCheap,
                   [=](int64_t i) PYCORE_LAMBDA_INLINE { dx[i] = dy[i] * (T(1) - y[i] * y[i]); });
}

// ---------------------------------------------------------------------------------------
// softmax and log_softmax along the middle axis of (outer, dim, inner).
//
// The last axis (inner == 1, the usual case) runs row by row: one row of dim contiguous
// values per task. Any other axis is split into tasks of (one outer index, a block of up
// to kInnerBlock inner indices); a task walks its (dim, block) slab row by row, keeping
// one running value per inner index, so that its inner loops also run over contiguous
// memory. Exponentials are fastmath::exp in T (vectorised for float); sums are
// accumulated in double, so a float32 softmax over thousands of classes matches a
// float64 reference to float32 rounding. Every task loop runs through simd (simd.h).

namespace {

constexpr int64_t kInnerBlock = 256;
// A slab of at most this many bytes spans whole rows of the inner axis (see for_each_slab).
constexpr int64_t kWholeSlabBytes = 256 * 1024;

// slab(base, width, sum, peak, factor) for every (outer, inner block) task; sum, peak
// and factor are per-thread scratch of `width` entries each.
template <class T, class F>
void for_each_slab(int64_t outer, int64_t dim, int64_t inner, F slab) {
    // An empty axis means an empty array: nothing to do (and inner == 0 would give zero
    // blocks, a division by zero below).
    if (outer == 0 || dim == 0 || inner == 0) return;
    // Whole inner rows when the (dim, inner) slab of one outer index fits in L2 and the
    // outer axis alone gives every thread a task: the slab is then one contiguous run the
    // prefetcher streams, where blocks of it read dim short pieces `inner` apart. On
    // (64, 32, 28, 28) over dim=1 (Zen 4, 1 thread, against PyTorch in one process)
    // log_softmax ran at 0.81-1.03x in blocks of 208 and 1.10-1.29x in whole rows, softmax
    // at 1.6-2.2x and 2.6-2.8x.
    const bool whole_rows = dim * inner * int64_t(sizeof(T)) <= kWholeSlabBytes && outer >= num_threads();
    // Otherwise blocks of nearly equal width, a multiple of 16 floats (one AVX-512
    // register) so that only the last block has a tail the vector loop leaves to scalar
    // code: 784 = 3 x 208 + 160, not 4 x 196 (12 vectors and 4 scalar exps per row
    // each), which was 15% slower
    const int64_t max_block = whole_rows ? inner : kInnerBlock;
    const int64_t blocks = (inner + max_block - 1) / max_block;
    const int64_t block = std::min(inner, ((inner + blocks - 1) / blocks + 15) / 16 * 16);
    const int64_t blocks_used = (inner + block - 1) / block;
    const int64_t tasks = outer * blocks_used;
    const int64_t grain = std::max<int64_t>(1, kGrainTranscendental / std::max<int64_t>(1, dim * block));
    simd::parallel_run(tasks, threads_for(tasks, grain), [=](int64_t t0, int64_t t1) PYCORE_LAMBDA_INLINE {
        std::vector<double> sum(static_cast<size_t>(block));
        std::vector<T> peak_and_factor(static_cast<size_t>(2 * block));
        T* peak = peak_and_factor.data();
        T* factor = peak + block;
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t o = t / blocks_used, i0 = (t % blocks_used) * block;
            slab(o * dim * inner + i0, std::min(block, inner - i0), sum.data(), peak, factor);
        }
    });
}

// The same for the last axis: row(base) for each of the `rows` rows of length dim.
template <class F>
void for_each_row(int64_t rows, int64_t dim, F row) {
    const int64_t grain = std::max<int64_t>(1, kGrainTranscendental / std::max<int64_t>(1, dim));
    simd::parallel_run(rows, threads_for(rows, grain), [=](int64_t r0, int64_t r1) PYCORE_LAMBDA_INLINE {
        for (int64_t r = r0; r < r1; ++r) row(r * dim);
    });
}

template <class T>
void softmax_rows(T* y, const T* x, int64_t rows, int64_t dim, bool log_output) {
    for_each_row(rows, dim, [=](int64_t base) PYCORE_LAMBDA_INLINE {
        const T* PYCORE_RESTRICT xr = x + base;
        T* PYCORE_RESTRICT yr = y + base;
        const T max = fastmath::row_max(xr, dim);
        // softmax: the exponentials go to y; their sum in double
        const double sum = fastmath::row_exp_sum(log_output ? nullptr : yr, xr, max, dim);
        if (log_output) {
            // y = x - lse with lse = hi + lo split into two T values: two T subtractions,
            // each rounding by at most half an ulp of y (lo is tiny), instead of a pass in
            // double
            const double lse = double(max) + fastmath::log_of_sum(sum);
            const T hi = T(lse), lo = T(lse - double(hi));
            for (int64_t d = 0; d < dim; ++d) yr[d] = (xr[d] - hi) - lo;
        } else {
            const T inv = T(1.0 / sum);
            for (int64_t d = 0; d < dim; ++d) yr[d] *= inv;
        }
    });
}

template <class T>
void softmax_rows_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t dim, bool log_output) {
    for_each_row(rows, dim, [=](int64_t base) PYCORE_LAMBDA_INLINE {
        const T* PYCORE_RESTRICT gr = dy + base;
        const T* PYCORE_RESTRICT yr = y + base;
        T* PYCORE_RESTRICT gx = dx + base;
        if (log_output) {
            const T s = T(fastmath::row_sum(gr, dim));
            for (int64_t d = 0; d < dim; ++d) gx[d] = gr[d] - fastmath::exp(yr[d]) * s;
        } else {
            const T s = T(fastmath::row_dot(gr, yr, dim));
            for (int64_t d = 0; d < dim; ++d) gx[d] = yr[d] * (gr[d] - s);
        }
    });
}

}  // namespace

template <class T>
void softmax_forward(T* y, const T* x, int64_t outer, int64_t dim, int64_t inner, bool log_output) {
    if (inner == 1) return softmax_rows(y, x, outer, dim, log_output);
    for_each_slab<T>(outer, dim, inner,
                     [=](int64_t base, int64_t width, double* sum, T* max, T* factor) PYCORE_LAMBDA_INLINE {
        // pass 1: the maximum of each column of the slab
        for (int64_t j = 0; j < width; ++j) max[j] = -std::numeric_limits<T>::infinity();
        for (int64_t d = 0; d < dim; ++d) {
            const T* PYCORE_RESTRICT xr = x + base + d * inner;
            // a float compare and blend (not fastmath::max's integer keys, a third of the
            // instructions): a NaN may be dropped from the max, but it still poisons its
            // column through exp(NaN - max), as in row_max
            for (int64_t j = 0; j < width; ++j) max[j] = fastmath::where(xr[j] > max[j], xr[j], max[j]);
        }
        // pass 2: sum of exp(x - max); softmax keeps the exponentials in y
        for (int64_t j = 0; j < width; ++j) sum[j] = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
            const T* PYCORE_RESTRICT xr = x + base + d * inner;
            T* PYCORE_RESTRICT yr = y + base + d * inner;
            if (log_output) {
                for (int64_t j = 0; j < width; ++j) sum[j] += double(fastmath::exp_for_sum(xr[j] - max[j]));
            } else {
                for (int64_t j = 0; j < width; ++j) {
                    yr[j] = fastmath::exp_nonpositive(xr[j] - max[j]);
                    sum[j] += double(yr[j]);
                }
            }
        }
        // pass 3: normalise, with per-column factors in T (lo, 1 / sum), so that the rows
        // convert nothing
        if (log_output) {
            // y = x - lse, lse = hi + lo in two T values (as in softmax_rows): hi goes to
            // max[], lo to factor[]
            for (int64_t j = 0; j < width; ++j) {
                const double lse = double(max[j]) + fastmath::log_of_sum(sum[j]);
                max[j] = T(lse);
                factor[j] = T(lse - double(max[j]));
            }
            for (int64_t d = 0; d < dim; ++d) {
                const T* PYCORE_RESTRICT xr = x + base + d * inner;
                T* PYCORE_RESTRICT yr = y + base + d * inner;
                for (int64_t j = 0; j < width; ++j) yr[j] = (xr[j] - max[j]) - factor[j];
            }
        } else {
            // y *= 1 / sum rounded to T, as softmax_rows
            for (int64_t j = 0; j < width; ++j) factor[j] = T(1.0 / sum[j]);
            for (int64_t d = 0; d < dim; ++d) {
                T* PYCORE_RESTRICT yr = y + base + d * inner;
                for (int64_t j = 0; j < width; ++j) yr[j] *= factor[j];
            }
        }
    });
}

template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t outer, int64_t dim, int64_t inner,
                      bool log_output) {
    if (inner == 1) return softmax_rows_backward(dx, dy, y, outer, dim, log_output);
    for_each_slab<T>(outer, dim, inner, [=](int64_t base, int64_t width, double* sum, T*, T*) PYCORE_LAMBDA_INLINE {
        // pass 1: softmax: s = sum_j dy_j y_j;  log_softmax: s = sum_j dy_j
        for (int64_t j = 0; j < width; ++j) sum[j] = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
            const T* PYCORE_RESTRICT gr = dy + base + d * inner;
            const T* PYCORE_RESTRICT yr = y + base + d * inner;
            if (log_output) {
                for (int64_t j = 0; j < width; ++j) sum[j] += double(gr[j]);
            } else {
                for (int64_t j = 0; j < width; ++j) sum[j] += double(gr[j]) * double(yr[j]);
            }
        }
        // pass 2: the gradient
        for (int64_t d = 0; d < dim; ++d) {
            const T* PYCORE_RESTRICT gr = dy + base + d * inner;
            const T* PYCORE_RESTRICT yr = y + base + d * inner;
            T* PYCORE_RESTRICT gx = dx + base + d * inner;
            if (log_output) {
                for (int64_t j = 0; j < width; ++j) gx[j] = T(double(gr[j]) - double(fastmath::exp(yr[j])) * sum[j]);
            } else {
                for (int64_t j = 0; j < width; ++j) gx[j] = T(double(yr[j]) * (double(gr[j]) - sum[j]));
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// prelu: x viewed as (outer, channels, inner), slope a_c = weight[c].
//
// Channels along the contiguous axis (inner == 1, e.g. (N, C) with C slopes) run row by
// row, vectorised over c against the weight row. Otherwise each (o, c) row of `inner`
// values has one slope; backward cuts every row into fixed blocks of kPreluSumBlock values,
// each block's sum of dy * x over x <= 0 goes to its own slot, and the slots are added per
// channel in (o, block) order afterwards: the same bits for any thread count. A single
// slope is (1, 1, n): one row of many blocks.

namespace {

constexpr int64_t kPreluSumBlock = 1 << 12;

// dx[i] = x > 0 ? dy : a dy for i in [i0, i1) (kInput), and the return value
// sum of (x > 0 ? 0 : dy x) in double (kWeight), over fastmath::kLanes lanes. The products
// are taken in double too (exact for float): the sum then rounds only in its additions.
template <bool kInput, bool kWeight, class T>
PYCORE_INLINE double prelu_backward_run(T* PYCORE_RESTRICT dx, const T* PYCORE_RESTRICT dy,
                                        const T* PYCORE_RESTRICT x, T a, int64_t i0, int64_t i1) {
    constexpr int64_t kLanes = fastmath::kLanes;
    double lanes[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) {
            const T xv = x[i + j], g = dy[i + j];
            if constexpr (kInput) dx[i + j] = fastmath::where(xv > T(0), g, a * g);
            if constexpr (kWeight) lanes[j] += fastmath::where(xv > T(0), 0.0, double(g) * double(xv));
        }
    for (; i < i1; ++i) {
        if constexpr (kInput) dx[i] = fastmath::where(x[i] > T(0), dy[i], a * dy[i]);
        if constexpr (kWeight) lanes[0] += fastmath::where(x[i] > T(0), 0.0, double(dy[i]) * double(x[i]));
    }
    return kWeight ? fastmath::lane_sum(lanes) : 0.0;
}

// Channels along the contiguous axis: column block [c0, c1) of every row, the weight
// gradient summed per column in row order into sums[c] (double).
template <bool kInput, bool kWeight, class T>
void prelu_backward_columns(T* dx, double* sums, const T* dy, const T* x, const T* weight, int64_t rows,
                            int64_t channels) {
    simd::parallel_run(channels, threads_for(rows * channels, kGrainCheap),
                       [=](int64_t c0, int64_t c1) PYCORE_LAMBDA_INLINE {
                           for (int64_t c = c0; c < c1; ++c) sums[c] = 0.0;
                           for (int64_t r = 0; r < rows; ++r) {
                               const T* PYCORE_RESTRICT xr = x + r * channels;
                               const T* PYCORE_RESTRICT gr = dy + r * channels;
                               T* PYCORE_RESTRICT dxr = dx + r * channels;
                               double* PYCORE_RESTRICT s = sums;
                               for (int64_t c = c0; c < c1; ++c) {
                                   const bool positive = xr[c] > T(0);
                                   if constexpr (kInput) dxr[c] = fastmath::where(positive, gr[c], weight[c] * gr[c]);
                                   if constexpr (kWeight) s[c] += fastmath::where(positive, 0.0, double(gr[c]) * double(xr[c]));
                               }
                           }
                       });
}

// Rows of `inner` values with one slope each, in blocks; block t's weight-gradient sum
// goes to sums[t] (kWeight).
template <bool kInput, bool kWeight, class T>
void prelu_backward_blocks(T* dx, double* sums, const T* dy, const T* x, const T* weight, int64_t rows,
                           int64_t channels, int64_t inner) {
    const int64_t blocks = (inner + kPreluSumBlock - 1) / kPreluSumBlock;
    const int64_t tasks = rows * blocks;
    const int64_t grain = std::max<int64_t>(1, kGrainCheap / std::min(inner, kPreluSumBlock));
    simd::parallel_run(tasks, threads_for(tasks, grain), [=](int64_t t0, int64_t t1) PYCORE_LAMBDA_INLINE {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t row = t / blocks, begin = (t % blocks) * kPreluSumBlock;
            const int64_t end = std::min(inner, begin + kPreluSumBlock);
            const int64_t base = row * inner;
            const double s = prelu_backward_run<kInput, kWeight>(dx + base, dy + base, x + base,
                                                                 weight[row % channels], begin, end);
            if constexpr (kWeight) sums[t] = s;
        }
    });
}

template <bool kInput, bool kWeight, class T>
void prelu_backward_impl(T* dx, T* dweight, const T* dy, const T* x, const T* weight, int64_t outer,
                         int64_t channels, int64_t inner) {
    if (inner == 1 && channels > 1) {
        memory::Scratch<double> sums(kWeight ? static_cast<size_t>(channels) : 0);
        prelu_backward_columns<kInput, kWeight>(dx, sums.data(), dy, x, weight, outer, channels);
        if constexpr (kWeight)
            for (int64_t c = 0; c < channels; ++c) dweight[c] += T(sums[c]);
        return;
    }
    const int64_t blocks = (inner + kPreluSumBlock - 1) / kPreluSumBlock;
    memory::Scratch<double> sums(kWeight ? static_cast<size_t>(outer * channels * blocks) : 0);
    prelu_backward_blocks<kInput, kWeight>(dx, sums.data(), dy, x, weight, outer * channels, channels, inner);
    if constexpr (kWeight)
        for (int64_t c = 0; c < channels; ++c) {
            double total = 0.0;
            for (int64_t o = 0; o < outer; ++o)
                for (int64_t b = 0; b < blocks; ++b) total += sums[(o * channels + c) * blocks + b];
            dweight[c] += T(total);
        }
}

}  // namespace

template <class T>
void prelu_forward(T* y, const T* x, const T* weight, int64_t outer, int64_t channels, int64_t inner) {
    if (outer == 0 || channels == 0 || inner == 0) return;
    if (channels == 1) return leaky_relu_forward(y, x, weight[0], outer * inner);  // one slope: the same map
    if (inner == 1) {
        simd::parallel_run(outer, threads_for(outer * channels, kGrainCheap),
                           [=](int64_t r0, int64_t r1) PYCORE_LAMBDA_INLINE {
                               for (int64_t r = r0; r < r1; ++r) {
                                   const T* PYCORE_RESTRICT xr = x + r * channels;
                                   T* PYCORE_RESTRICT yr = y + r * channels;
                                   for (int64_t c = 0; c < channels; ++c)
                                       yr[c] = fastmath::where(xr[c] > T(0), xr[c], weight[c] * xr[c]);
                               }
                           });
        return;
    }
    const int64_t rows = outer * channels;
    simd::parallel_run(rows, threads_for(rows * inner, kGrainCheap), [=](int64_t r0, int64_t r1) PYCORE_LAMBDA_INLINE {
        for (int64_t r = r0; r < r1; ++r) {
            const T a = weight[r % channels];
            const T* PYCORE_RESTRICT xr = x + r * inner;
            T* PYCORE_RESTRICT yr = y + r * inner;
            for (int64_t i = 0; i < inner; ++i) yr[i] = fastmath::where(xr[i] > T(0), xr[i], a * xr[i]);
        }
    });
}

template <class T>
void prelu_backward(T* dx, T* dweight, const T* dy, const T* x, const T* weight, int64_t outer, int64_t channels,
                    int64_t inner) {
    if (outer == 0 || channels == 0 || inner == 0) return;
    if (dx && dweight) return prelu_backward_impl<true, true>(dx, dweight, dy, x, weight, outer, channels, inner);
    if (dx) return prelu_backward_impl<true, false>(dx, dweight, dy, x, weight, outer, channels, inner);
    if (dweight) return prelu_backward_impl<false, true>(dx, dweight, dy, x, weight, outer, channels, inner);
}

// ---------------------------------------------------------------------------------------
// dropout (inverted: kept values are scaled by 1 / (1 - p) so that E[y] = x)

template <class T>
void dropout_forward(T* y, T* mask, const T* x, const T* u, double p, int64_t n) {
    // the scale is rounded once from double: 1 / (1 - 0.8) is 5, not float's 5.0000005
    const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
    for_each_index(n, kGrainCheap, [=](int64_t i) PYCORE_LAMBDA_INLINE {
        mask[i] = fastmath::where(double(u[i]) >= p, scale, T(0));
        y[i] = x[i] * mask[i];
    });
}

template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) PYCORE_LAMBDA_INLINE { dx[i] = dy[i] * mask[i]; });
}

#define PYCORE_INSTANTIATE(T)                                                                       \
    template void relu_forward<T>(T*, const T*, int64_t);                                           \
    template void relu_backward<T>(T*, const T*, const T*, int64_t);                                \
    template void leaky_relu_forward<T>(T*, const T*, T, int64_t);                                  \
    template void leaky_relu_backward<T>(T*, const T*, const T*, T, int64_t);                       \
    template void sigmoid_forward<T>(T*, const T*, int64_t);                                        \
    template void sigmoid_backward<T>(T*, const T*, const T*, int64_t);                             \
    template void tanh_forward<T>(T*, const T*, int64_t);                                           \
    template void tanh_backward<T>(T*, const T*, const T*, int64_t);                                \
    template void softmax_forward<T>(T*, const T*, int64_t, int64_t, int64_t, bool);                \
    template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, bool);     \
    template void prelu_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);              \
    template void prelu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
    template void dropout_forward<T>(T*, T*, const T*, const T*, double, int64_t);                  \
    template void dropout_backward<T>(T*, const T*, const T*, int64_t);

PYCORE_INSTANTIATE(float)
PYCORE_INSTANTIATE(double)
#undef PYCORE_INSTANTIATE

}  // namespace pycore
