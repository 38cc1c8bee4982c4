// elementwise.cpp: see elementwise.h for the math of each kernel.
#include "elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "threads.h"

namespace pycore {
namespace {

// Elements per thread below which another thread costs more than it saves: cheap
// arithmetic needs more work per thread than a transcendental function does.
constexpr int64_t kGrainCheap = 1 << 15;
constexpr int64_t kGrainTranscendental = 1 << 12;

// out[i] = f(i) for i in [0, n), split evenly over the threads.
template <class F>
void for_each_index(int64_t n, int64_t grain, F f) {
#pragma omp parallel for num_threads(threads_for(n, grain)) schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// relu

template <class T>
void relu_forward(T* y, const T* x, int64_t n) {
    // x > 0 ? x : 0, not std::max, so that a NaN input stays NaN (as PyTorch).
    for_each_index(n, kGrainCheap, [=](int64_t i) { y[i] = x[i] > T(0) || x[i] != x[i] ? x[i] : T(0); });
}

template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) { dx[i] = y[i] > T(0) ? dy[i] : T(0); });
}

// ---------------------------------------------------------------------------------------
// leaky_relu

template <class T>
void leaky_relu_forward(T* y, const T* x, T slope, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) { y[i] = x[i] > T(0) ? x[i] : x[i] * slope; });
}

template <class T>
void leaky_relu_backward(T* dx, const T* dy, const T* x, T slope, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) { dx[i] = x[i] > T(0) ? dy[i] : dy[i] * slope; });
}

// ---------------------------------------------------------------------------------------
// sigmoid

template <class T>
void sigmoid_forward(T* y, const T* x, int64_t n) {
    // exp(-x) overflows to inf for very negative x, and 1 / (1 + inf) = 0: still exact.
    for_each_index(n, kGrainTranscendental, [=](int64_t i) { y[i] = T(1) / (T(1) + std::exp(-x[i])); });
}

template <class T>
void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) { dx[i] = dy[i] * y[i] * (T(1) - y[i]); });
}

// ---------------------------------------------------------------------------------------
// tanh

template <class T>
void tanh_forward(T* y, const T* x, int64_t n) {
    for_each_index(n, kGrainTranscendental, [=](int64_t i) { y[i] = std::tanh(x[i]); });
}

template <class T>
void tanh_backward(T* dx, const T* dy, const T* y, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) { dx[i] = dy[i] * (T(1) - y[i] * y[i]); });
}

// ---------------------------------------------------------------------------------------
// softmax and log_softmax along the middle axis of (outer, dim, inner).
//
// The last axis (inner == 1, the usual case) runs row by row: one row of dim contiguous
// values per task. Any other axis is split into tasks of (one outer index, a block of up
// to kInnerBlock inner indices); a task walks its (dim, block) slab row by row, keeping
// one running value per inner index, so that its inner loops also run over contiguous
// memory. Exponentials are taken in T; sums are accumulated in double, so a float32
// softmax over thousands of classes matches a float64 reference to float32 rounding.

namespace {

constexpr int64_t kInnerBlock = 256;

template <class F>
void for_each_slab(int64_t outer, int64_t dim, int64_t inner, F slab) {
    const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
    const int64_t tasks = outer * blocks;
    const int64_t grain = std::max<int64_t>(1, kGrainTranscendental / std::max<int64_t>(1, dim * std::min(inner, kInnerBlock)));
#pragma omp parallel num_threads(threads_for(tasks, grain))
    {
        std::vector<double> acc(std::min(inner, kInnerBlock));
        std::vector<double> peak(std::min(inner, kInnerBlock));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; ++t) {
            const int64_t o = t / blocks, i0 = (t % blocks) * kInnerBlock;
            const int64_t width = std::min(kInnerBlock, inner - i0);
            slab(o * dim * inner + i0, width, acc.data(), peak.data());
        }
    }
}

// The same for the last axis: row(base) for each of the `rows` rows of length dim.
template <class F>
void for_each_row(int64_t rows, int64_t dim, F row) {
    const int64_t grain = std::max<int64_t>(1, kGrainTranscendental / std::max<int64_t>(1, dim));
#pragma omp parallel for num_threads(threads_for(rows, grain)) schedule(static)
    for (int64_t r = 0; r < rows; ++r) row(r * dim);
}

template <class T>
void softmax_rows(T* y, const T* x, int64_t rows, int64_t dim, bool log_output) {
    for_each_row(rows, dim, [=](int64_t base) {
        const T* xr = x + base;
        T* yr = y + base;
        T max = -std::numeric_limits<T>::infinity();
        for (int64_t d = 0; d < dim; ++d) max = xr[d] > max ? xr[d] : max;
        double sum = 0.0;
        if (log_output) {
            for (int64_t d = 0; d < dim; ++d) sum += std::exp(xr[d] - max);
            const double log_sum = double(max) + std::log(sum);
            for (int64_t d = 0; d < dim; ++d) yr[d] = T(double(xr[d]) - log_sum);
        } else {
            for (int64_t d = 0; d < dim; ++d) {
                yr[d] = std::exp(xr[d] - max);
                sum += yr[d];
            }
            const T inv = T(1.0 / sum);
            for (int64_t d = 0; d < dim; ++d) yr[d] *= inv;
        }
    });
}

template <class T>
void softmax_rows_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t dim, bool log_output) {
    for_each_row(rows, dim, [=](int64_t base) {
        const T* gr = dy + base;
        const T* yr = y + base;
        T* gx = dx + base;
        double sum = 0.0;
        if (log_output) {
            for (int64_t d = 0; d < dim; ++d) sum += gr[d];
            const T s = T(sum);
            for (int64_t d = 0; d < dim; ++d) gx[d] = gr[d] - std::exp(yr[d]) * s;
        } else {
            for (int64_t d = 0; d < dim; ++d) sum += double(gr[d]) * yr[d];
            const T s = T(sum);
            for (int64_t d = 0; d < dim; ++d) gx[d] = yr[d] * (gr[d] - s);
        }
    });
}

}  // namespace

template <class T>
void softmax_forward(T* y, const T* x, int64_t outer, int64_t dim, int64_t inner, bool log_output) {
    if (inner == 1) return softmax_rows(y, x, outer, dim, log_output);
    for_each_slab(outer, dim, inner, [=](int64_t base, int64_t width, double* sum, double* max) {
        // pass 1: the maximum of each column of the slab
        for (int64_t j = 0; j < width; ++j) max[j] = -std::numeric_limits<double>::infinity();
        for (int64_t d = 0; d < dim; ++d) {
            const T* xr = x + base + d * inner;
            for (int64_t j = 0; j < width; ++j) max[j] = std::max<double>(max[j], xr[j]);
        }
        // pass 2: sum of exp(x - max); softmax stores the exponentials on the way
        for (int64_t j = 0; j < width; ++j) sum[j] = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
            const T* xr = x + base + d * inner;
            T* yr = y + base + d * inner;
            for (int64_t j = 0; j < width; ++j) {
                const double e = std::exp(double(xr[j]) - max[j]);
                sum[j] += e;
                if (!log_output) yr[j] = T(e);
            }
        }
        // pass 3: normalise
        if (log_output) {
            for (int64_t j = 0; j < width; ++j) sum[j] = max[j] + std::log(sum[j]);  // log-sum-exp
            for (int64_t d = 0; d < dim; ++d) {
                const T* xr = x + base + d * inner;
                T* yr = y + base + d * inner;
                for (int64_t j = 0; j < width; ++j) yr[j] = T(double(xr[j]) - sum[j]);
            }
        } else {
            for (int64_t j = 0; j < width; ++j) sum[j] = 1.0 / sum[j];
            for (int64_t d = 0; d < dim; ++d) {
                T* yr = y + base + d * inner;
                for (int64_t j = 0; j < width; ++j) yr[j] = T(double(yr[j]) * sum[j]);
            }
        }
    });
}

template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t outer, int64_t dim, int64_t inner,
                      bool log_output) {
    if (inner == 1) return softmax_rows_backward(dx, dy, y, outer, dim, log_output);
    for_each_slab(outer, dim, inner, [=](int64_t base, int64_t width, double* sum, double*) {
        // pass 1: softmax: s = sum_j dy_j y_j;  log_softmax: s = sum_j dy_j
        for (int64_t j = 0; j < width; ++j) sum[j] = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
            const T* gr = dy + base + d * inner;
            const T* yr = y + base + d * inner;
            for (int64_t j = 0; j < width; ++j) sum[j] += log_output ? double(gr[j]) : double(gr[j]) * yr[j];
        }
        // pass 2: the gradient
        for (int64_t d = 0; d < dim; ++d) {
            const T* gr = dy + base + d * inner;
            const T* yr = y + base + d * inner;
            T* gx = dx + base + d * inner;
            if (log_output) {
                for (int64_t j = 0; j < width; ++j) gx[j] = T(gr[j] - std::exp(double(yr[j])) * sum[j]);
            } else {
                for (int64_t j = 0; j < width; ++j) gx[j] = T(yr[j] * (gr[j] - sum[j]));
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// dropout (inverted: kept values are scaled by 1 / (1 - p) so that E[y] = x)

template <class T>
void dropout_forward(T* y, T* mask, const T* x, const T* u, double p, int64_t n) {
    // the scale is rounded once from double: 1 / (1 - 0.8) is 5, not float's 5.0000005
    const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
    for_each_index(n, kGrainCheap, [=](int64_t i) {
        mask[i] = double(u[i]) >= p ? scale : T(0);
        y[i] = x[i] * mask[i];
    });
}

template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n) {
    for_each_index(n, kGrainCheap, [=](int64_t i) { dx[i] = dy[i] * mask[i]; });
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
    template void dropout_forward<T>(T*, T*, const T*, const T*, double, int64_t);                  \
    template void dropout_backward<T>(T*, const T*, const T*, int64_t);

PYCORE_INSTANTIATE(float)
PYCORE_INSTANTIATE(double)
#undef PYCORE_INSTANTIATE

}  // namespace pycore
