// loss.cpp: cross entropy (fused log-softmax), MSE and BCE-with-logits kernels.
// See loss.h for the math of each pair.
#include "loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastmath.h"
#include "simd.h"
#include "threads.h"

namespace pycore {
namespace {

// Work per thread below which a second thread costs more than it saves.
constexpr int64_t kElementGrain = 32768;
// Element-wise sums run over blocks of this many elements: each block is summed in
// order, then the block sums in order, so a sum has the same bits at any thread count
// (an OpenMP reduction would add in an order that depends on the threads).
constexpr int64_t kSumBlock = 4096;

// sum_{i < n} term(i), in fixed blocks (see kSumBlock).
template <class Term>
double blocked_sum(int64_t n, Term&& term) {
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    std::vector<double> block_sums(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for num_threads(threads_for(blocks, kElementGrain / kSumBlock)) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t end = std::min(n, (b + 1) * kSumBlock);
        double s = 0.0;
        for (int64_t i = b * kSumBlock; i < end; ++i) s += term(i);
        block_sums[static_cast<size_t>(b)] = s;
    }
    double total = 0.0;
    for (double s : block_sums) total += s;
    return total;
}

// Rows of C classes per thread worth starting a thread for.
int64_t row_grain(int64_t C) { return std::max<int64_t>(1, kElementGrain / std::max<int64_t>(C, 1)); }

// The two loops that dominate cross entropy, with fastmath's exp, which vectorises for
// float (double: the C library). Each kernel runs its rows through simd::parallel_run
// (one copy of the whole row loop per instruction set, chosen at run time), so these
// inline into it: one call per thread, not two per row (a row of 65 classes is a few
// vectors, and the calls and per-row buffer look-ups cost as much).

// lse[i] = log sum_c exp(x[i * C + c]) for `rows` <= kLseRows rows of C logits, each
// from its row max m as m + log sum_c exp(x[c] - m), so that exp never sees a positive
// argument (logits of 1e4 would overflow otherwise); the sums run in double. The rows'
// maxima come first, then their sums, then the logs of all kLseRows sums in one loop,
// which vectorises over rows: no row's exponentials wait on its own max, nor the next
// row on a scalar log (a division and a chain of ten multiply-adds). Row by row, a
// row of 65 classes took 60-65 ns (3200 rows, 1 thread, AVX-512 and AVX2), now 53.
constexpr int64_t kLseRows = 16;

template <typename T>
PYCORE_INLINE void block_logsumexp(const T* x, int64_t C, int64_t rows, double* lse) {
    double sum[kLseRows];
    T max_x[kLseRows];
    for (int64_t i = 0; i < kLseRows; ++i) sum[i] = 1.0, max_x[i] = T(0);  // rows past `rows`: log 1
    for (int64_t i = 0; i < rows; ++i) max_x[i] = fastmath::row_max(x + i * C, C);
    for (int64_t i = 0; i < rows; ++i) sum[i] = fastmath::row_exp_sum<T>(nullptr, x + i * C, max_x[i], C);
    for (int64_t i = 0; i < kLseRows; ++i) lse[i] = double(max_x[i]) + fastmath::log_of_sum(sum[i]);
}

// dx[c] = p_scale * exp(x[c] - lse) - offset * weight[c] (weight[c] = 1 when weight is null).
// lse is large when the logits are, so it is split into lse_hi + lse_lo, two T values
// (as softmax_rows' log_softmax does): x[c] - lse = (x[c] - lse_hi) - lse_lo, two T
// subtractions instead of a round trip through double (six conversions per 16 values).
// x[c] <= max <= lse, so the argument exceeds 0 by at most lse_lo's half ulp, and
// exp_nonpositive (right up to 89) applies.
template <typename T>
PYCORE_INLINE void softmax_gradient_row(T* PYCORE_RESTRICT dx, const T* PYCORE_RESTRICT x, double lse, T p_scale,
                                        T offset, const T* PYCORE_RESTRICT weight, int64_t C) {
    const T lse_hi = T(lse), lse_lo = T(lse - double(lse_hi));
    if (weight) {
        for (int64_t c = 0; c < C; ++c)
            dx[c] = p_scale * fastmath::exp_nonpositive((x[c] - lse_hi) - lse_lo) - offset * weight[c];
    } else {
        for (int64_t c = 0; c < C; ++c) dx[c] = p_scale * fastmath::exp_nonpositive((x[c] - lse_hi) - lse_lo) - offset;
    }
}

}  // namespace

// ----------------------------------------------------------------------------
// cross entropy with log-softmax

template <typename T>
void cross_entropy_forward(T* losses, double* logsumexp, const T* logits, const int64_t* targets,
                           const T* class_weight, double label_smoothing, int64_t ignore_index,
                           int64_t R, int64_t C) {
    const double eps = label_smoothing;
    simd::parallel_run(R, threads_for(R, row_grain(C)), [=](int64_t r0, int64_t r1) PYCORE_LAMBDA_INLINE {
        double block_lse[kLseRows];
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t in_block = (r - r0) % kLseRows;
            if (in_block == 0)  // the next rows' log-sum-exps (ignored rows' too)
                block_logsumexp(logits + r * C, C, std::min(kLseRows, r1 - r), block_lse);
            const int64_t t = targets[r];
            if (t == ignore_index) {
                losses[r] = T(0);
                logsumexp[r] = 0.0;
                continue;
            }
            const T* x = logits + r * C;
            const double lse = block_lse[in_block];
            // the loss: -logp_t, plus the smoothing term sum_c w_c * (-logp_c) = sum_c w_c (lse - x_c)
            const double w_t = class_weight ? double(class_weight[t]) : 1.0;
            double loss = (1.0 - eps) * w_t * (lse - double(x[t]));
            if (eps > 0.0) {
                double smooth = 0.0;
                for (int64_t c = 0; c < C; ++c) {
                    const double w_c = class_weight ? double(class_weight[c]) : 1.0;
                    smooth += w_c * (lse - double(x[c]));
                }
                loss += eps / double(C) * smooth;
            }
            losses[r] = T(loss);
            logsumexp[r] = lse;
        }
    });
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* dlosses, int64_t dlosses_stride, const double* logsumexp,
                            const T* logits, const int64_t* targets, const T* class_weight,
                            double label_smoothing, int64_t ignore_index, int64_t R, int64_t C) {
    const double eps = label_smoothing;
    const double eps_per_class = eps / double(C);
    double weight_total = double(C);  // W = sum_c w_c
    if (class_weight) {
        weight_total = 0.0;
        for (int64_t c = 0; c < C; ++c) weight_total += double(class_weight[c]);
    }
    simd::parallel_run(R, threads_for(R, row_grain(C)), [=](int64_t r0, int64_t r1) PYCORE_LAMBDA_INLINE {
        for (int64_t r = r0; r < r1; ++r) {
            T* dx = dlogits + r * C;
            const int64_t t = targets[r];
            if (t == ignore_index) {
                std::fill(dx, dx + C, T(0));
                continue;
            }
            const T* x = logits + r * C;
            const double g = double(dlosses[r * dlosses_stride]);
            const double lse = logsumexp[r];
            const double w_t = class_weight ? double(class_weight[t]) : 1.0;
            // d loss / d x_c = p_c * (sum of the target distribution's weights) - its weight on c
            const double p_scale = g * ((1.0 - eps) * w_t + eps_per_class * weight_total);
            softmax_gradient_row(dx, x, lse, T(p_scale), T(g * eps_per_class), class_weight, C);
            dx[t] = T(double(dx[t]) - g * (1.0 - eps) * w_t);
        }
    });
}

// ----------------------------------------------------------------------------
// mean squared error

template <typename T>
double mse_forward(T* losses, const T* input, const T* target, int64_t n) {
    return blocked_sum(n, [&](int64_t i) {
        const T diff = input[i] - target[i];
        const T e = diff * diff;
        if (losses) losses[i] = e;
        return double(e);
    });
}

template <typename T>
void mse_backward(T* dinput, const T* dlosses, int64_t dlosses_stride, const T* input, const T* target,
                  int64_t n) {
    simd::parallel_run(n, threads_for(n, kElementGrain), [=](int64_t i0, int64_t i1) PYCORE_LAMBDA_INLINE {
        for (int64_t i = i0; i < i1; ++i) dinput[i] = T(2) * (input[i] - target[i]) * dlosses[i * dlosses_stride];
    });
}

// ----------------------------------------------------------------------------
// binary cross entropy on logits

template <typename T>
double bce_with_logits_forward(T* losses, const T* input, const T* target, const T* pos_weight, int64_t P,
                               int64_t n) {
    return blocked_sum(n, [&](int64_t i) {
        const T x = input[i], y = target[i];
        const T log_weight = pos_weight ? T(1) + (pos_weight[i % P] - T(1)) * y : T(1);
        const T softplus_neg_x = std::max(-x, T(0)) + std::log1p(std::exp(-std::abs(x)));
        const T e = (T(1) - y) * x + log_weight * softplus_neg_x;
        if (losses) losses[i] = e;
        return double(e);
    });
}

template <typename T>
void bce_with_logits_backward(T* dinput, const T* dlosses, int64_t dlosses_stride, const T* input,
                              const T* target, const T* pos_weight, int64_t P, int64_t n) {
#pragma omp parallel for num_threads(threads_for(n, kElementGrain)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const T x = input[i], y = target[i];
        const T log_weight = pos_weight ? T(1) + (pos_weight[i % P] - T(1)) * y : T(1);
        // sigmoid(-x), computed from exp(-|x|) <= 1 so that it cannot overflow
        const T z = std::exp(-std::abs(x));
        const T sigmoid_neg_x = x >= T(0) ? z / (T(1) + z) : T(1) / (T(1) + z);
        dinput[i] = ((T(1) - y) - log_weight * sigmoid_neg_x) * dlosses[i * dlosses_stride];
    }
}

#define PYCORE_INSTANTIATE_LOSS(T)                                                                         \
    template void cross_entropy_forward<T>(T*, double*, const T*, const int64_t*, const T*, double, int64_t,     \
                                           int64_t, int64_t);                                               \
    template void cross_entropy_backward<T>(T*, const T*, int64_t, const double*, const T*, const int64_t*,      \
                                            const T*, double, int64_t, int64_t, int64_t);                   \
    template double mse_forward<T>(T*, const T*, const T*, int64_t);                                        \
    template void mse_backward<T>(T*, const T*, int64_t, const T*, const T*, int64_t);                      \
    template double bce_with_logits_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t);         \
    template void bce_with_logits_backward<T>(T*, const T*, int64_t, const T*, const T*, const T*, int64_t, \
                                              int64_t);

PYCORE_INSTANTIATE_LOSS(float)
PYCORE_INSTANTIATE_LOSS(double)

}  // namespace pycore
