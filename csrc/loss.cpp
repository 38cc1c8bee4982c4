// loss.cpp: cross entropy (fused log-softmax), MSE and BCE-with-logits kernels.
// See loss.h for the math of each pair.
#include "loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

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

// exp(x) for x <= 0 (a logit minus its row's max or log-sum-exp), in float arithmetic
// the compiler vectorizes (std::exp is a library call it cannot): Cody-Waite reduction
// x = n ln2 + r with |r| <= ln2/2, a degree-7 Taylor polynomial for exp(r), and 2^n
// added straight into the exponent bits. Measured error: under 1.6 ulp (9.2e-8
// relative) on [-87, 0]. Results below about 2^-126 (x < -87) flush to 0, which a
// probability sum cannot tell apart; NaN stays NaN. Always inlined, so that it is
// compiled for the instruction set of each clone of its callers (below).
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
inline float softmax_exp(float x) {
    constexpr float kLog2e = 1.44269504088896341f;
    constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo, hi exact in 9 bits
    constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: t = y + kRound holds round(y) in its low bits
    constexpr int32_t kRoundBits = 0x4B400000;
    const float t = x * kLog2e + kRound;
    const float n = t - kRound;
    int32_t n_bits;
    std::memcpy(&n_bits, &t, sizeof n_bits);
    const uint32_t exponent = uint32_t(n_bits - kRoundBits) << 23;  // n, shifted into the exponent field
    const float r = (x - n * kLn2Hi) - n * kLn2Lo;
    float poly = 1.0f / 5040.0f;
    poly = poly * r + 1.0f / 720.0f;
    poly = poly * r + 1.0f / 120.0f;
    poly = poly * r + 1.0f / 24.0f;
    poly = poly * r + 1.0f / 6.0f;
    poly = poly * r + 0.5f;
    poly = poly * r + 1.0f;
    poly = poly * r + 1.0f;
    // 2^n * poly, then the two special cases, selected with bit masks (a ?: on floats
    // would keep the compiler from vectorizing the loop)
    uint32_t bits, x_bits;
    std::memcpy(&bits, &poly, sizeof bits);
    std::memcpy(&x_bits, &x, sizeof x_bits);
    bits += exponent;
    const uint32_t not_underflow = 0u - uint32_t(x_bits <= 0xC2AE0000u);       // x >= -87 (bits of -87.0f)
    const uint32_t is_nan = 0u - uint32_t((x_bits & 0x7FFFFFFFu) > 0x7F800000u);
    bits = (bits & not_underflow & ~is_nan) | (x_bits & is_nan);
    float result;
    std::memcpy(&result, &bits, sizeof result);
    return result;
}

// The max and the (double) sum of a row, each over kLanes independent partial results:
// one running max or sum is a chain of dependent operations that waits on each step's
// latency; separate lanes overlap (and the sum's lanes vectorize).
constexpr int64_t kLanes = 8;

template <typename T>
T row_max(const T* x, int64_t C) {
    T lanes[kLanes];
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = -std::numeric_limits<T>::infinity();
    int64_t c = 0;
    for (; c + kLanes <= C; c += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) lanes[j] = std::max(lanes[j], x[c + j]);
    for (; c < C; ++c) lanes[0] = std::max(lanes[0], x[c]);
    T result = lanes[0];
    for (int64_t j = 1; j < kLanes; ++j) result = std::max(result, lanes[j]);
    return result;
}

template <typename T>
double row_sum(const T* x, int64_t C) {
    double lanes[kLanes] = {};
    int64_t c = 0;
    for (; c + kLanes <= C; c += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) lanes[j] += double(x[c + j]);
    for (; c < C; ++c) lanes[0] += double(x[c]);
    double result = 0.0;
    for (int64_t j = 0; j < kLanes; ++j) result += lanes[j];
    return result;
}

// The two loops that dominate cross entropy, one row at a time. The float versions are
// compiled twice, for AVX2+FMA (Haswell and later) and for baseline x86-64, and the
// loader picks one for the CPU it runs on (GCC's target_clones, on Linux): twice the
// vector width where AVX2 is there, and a build that still runs everywhere. Other
// compilers build the baseline version only.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define PYCORE_AVX2_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define PYCORE_AVX2_CLONES
#endif

// exps[c] = exp(x[c] - shift) for c < C, with shift >= every x[c] (the row max).
PYCORE_AVX2_CLONES void shifted_exps(float* exps, const float* x, float shift, int64_t C) {
    for (int64_t c = 0; c < C; ++c) exps[c] = softmax_exp(x[c] - shift);
}

void shifted_exps(double* exps, const double* x, double shift, int64_t C) {
    for (int64_t c = 0; c < C; ++c) exps[c] = std::exp(x[c] - shift);
}

// dx[c] = p_scale * exp(x[c] - lse) - offset * weight[c] (weight[c] = 1 when weight is null).
// x[c] - lse is formed in double (lse is large when the logits are) and rounded once.
PYCORE_AVX2_CLONES void softmax_gradient_row(float* dx, const float* x, double lse, float p_scale, float offset,
                                             const float* weight, int64_t C) {
    if (weight) {
        for (int64_t c = 0; c < C; ++c) dx[c] = p_scale * softmax_exp(float(double(x[c]) - lse)) - offset * weight[c];
    } else {
        for (int64_t c = 0; c < C; ++c) dx[c] = p_scale * softmax_exp(float(double(x[c]) - lse)) - offset;
    }
}

void softmax_gradient_row(double* dx, const double* x, double lse, double p_scale, double offset,
                          const double* weight, int64_t C) {
    for (int64_t c = 0; c < C; ++c) dx[c] = p_scale * std::exp(x[c] - lse) - offset * (weight ? weight[c] : 1.0);
}

// A per-thread row buffer (kernels may run on several Python threads at once).
template <typename T>
T* row_scratch(int64_t C) {
    thread_local std::vector<T> buffer;
    if (static_cast<int64_t>(buffer.size()) < C) buffer.resize(static_cast<size_t>(C));
    return buffer.data();
}

}  // namespace

// ----------------------------------------------------------------------------
// cross entropy with log-softmax

template <typename T>
void cross_entropy_forward(T* losses, double* logsumexp, const T* logits, const int64_t* targets,
                           const T* class_weight, double label_smoothing, int64_t ignore_index,
                           int64_t R, int64_t C) {
    const double eps = label_smoothing;
#pragma omp parallel for num_threads(threads_for(R, row_grain(C))) schedule(static)
    for (int64_t r = 0; r < R; ++r) {
        const int64_t t = targets[r];
        if (t == ignore_index) {
            losses[r] = T(0);
            logsumexp[r] = 0.0;
            continue;
        }
        const T* x = logits + r * C;
        // pass 1: the row max, so that exp never sees a positive argument (logits of
        // 1e4 would overflow otherwise)
        const T max_x = row_max(x, C);
        // pass 2: log-sum-exp; the exps first (a loop the compiler vectorizes), then their
        // sum in double
        T* exps = row_scratch<T>(C);
        shifted_exps(exps, x, max_x, C);
        const double lse = double(max_x) + std::log(row_sum(exps, C));
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
#pragma omp parallel for num_threads(threads_for(R, row_grain(C))) schedule(static)
    for (int64_t r = 0; r < R; ++r) {
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
#pragma omp parallel for num_threads(threads_for(n, kElementGrain)) schedule(static)
    for (int64_t i = 0; i < n; ++i) dinput[i] = T(2) * (input[i] - target[i]) * dlosses[i * dlosses_stride];
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
