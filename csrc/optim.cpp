// optim.cpp: fused SGD, Adam/AdamW and RMSprop updates. See optim.h for the math.
//
// Every element is independent, so each kernel is one parallel loop, compiled for each
// instruction set and picked at run time (simd.h). The options become template
// constants (with_flags), one branch-free loop per combination, so that it vectorises.
#include "optim.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "fastmath.h"
#include "simd.h"
#include "threads.h"

namespace pycore {
namespace {

// Elements per thread below which a second thread costs more than it saves.
constexpr int64_t kElementGrain = 32768;

// torch.lerp's formula: start + weight * (end - start), evaluated from the nearer end
// (weight < 0.5: from start) so that weight = 1 gives exactly `end`. The caller picks the
// end once per tensor, since the weight is the same for every element.
template <bool kFromStart, typename T>
PYCORE_INLINE T lerp(T start, T end, T weight) {
    if constexpr (kFromStart) return start + weight * (end - start);
    return end - (end - start) * (T(1) - weight);
}

// max(a, b) that returns NaN when b is NaN, as torch.maximum does (amsgrad's running max).
template <typename T>
PYCORE_INLINE T nan_max(T a, T b) {
    return fastmath::where(a < b || b != b, b, a);
}

// body(i) for i in [0, n), split over the threads (a vectorised loop: see simd.h).
template <class Body>
void for_each_element(int64_t n, Body body) {
    simd::parallel_run(n, threads_for(n, kElementGrain), [=](int64_t i0, int64_t i1) PYCORE_LAMBDA_INLINE {
        for (int64_t i = i0; i < i1; ++i) body(i);
    });
}

// Calls fn(std::bool_constant<flag>...) with each runtime flag turned into a compile-time
// constant, so that every combination of options gets its own loop with no branches in
// it, which the compiler vectorizes (a loop with run-time option branches it does not).
template <class Fn>
void with_flags(Fn&& fn) {
    fn();
}

template <class Fn, class... Rest>
void with_flags(Fn&& fn, bool first, Rest... rest) {
    if (first)
        with_flags([&](auto... flags) { fn(std::true_type{}, flags...); }, rest...);
    else
        with_flags([&](auto... flags) { fn(std::false_type{}, flags...); }, rest...);
}

}  // namespace

// The element loop of sgd_step for one combination of options (see with_flags).
template <typename T, bool kMomentum, bool kFirstStep, bool kDecay, bool kNesterov, bool kNegate>
void sgd_loop(T* param, T* momentum_buffer, const T* grad, int64_t n, T lr, T momentum, T keep, T decay) {
    for_each_element(n, [=](int64_t i) PYCORE_LAMBDA_INLINE {
        T g = grad[i];
        if constexpr (kNegate) g = -g;
        if constexpr (kDecay) g = g + decay * param[i];
        if constexpr (kMomentum) {
            T buf = g;
            if constexpr (!kFirstStep) buf = momentum_buffer[i] * momentum + keep * g;
            momentum_buffer[i] = buf;
            g = kNesterov ? g + momentum * buf : buf;
        }
        param[i] = param[i] - lr * g;
    });
}

template <typename T>
void sgd_step(T* param, T* momentum_buffer, const T* grad, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
    const bool with_momentum = momentum_buffer != nullptr;
    with_flags(
        [&](auto... flags) {
            sgd_loop<T, decltype(flags)::value...>(param, momentum_buffer, grad, n, T(lr), T(momentum),
                                                   T(1.0 - dampening), T(weight_decay));
        },
        with_momentum, with_momentum && first_step, weight_decay != 0.0, with_momentum && nesterov, maximize);
}

// The element loop of adam_step for one combination of options (see with_flags).
template <typename T, bool kAmsgrad, bool kCoupledDecay, bool kDecoupledDecay, bool kNegate, bool kLerpFromStart>
void adam_loop(T* param, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, const T* grad, int64_t n, T decay,
               T shrink, T avg_weight, T beta2, T sq_weight, T eps, T neg_step_size, T bias_correction2_sqrt) {
    for_each_element(n, [=](int64_t i) PYCORE_LAMBDA_INLINE {
        T g = grad[i];
        if constexpr (kNegate) g = -g;
        T p = param[i];
        if constexpr (kDecoupledDecay) p = p * shrink;
        if constexpr (kCoupledDecay) g = g + decay * p;
        const T m = lerp<kLerpFromStart>(exp_avg[i], g, avg_weight);
        const T v = exp_avg_sq[i] * beta2 + sq_weight * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        T v_used = v;
        if constexpr (kAmsgrad) {
            v_used = nan_max(max_exp_avg_sq[i], v);
            max_exp_avg_sq[i] = v_used;
        }
        const T denom = std::sqrt(v_used) / bias_correction2_sqrt + eps;
        param[i] = p + neg_step_size * m / denom;
    });
}

template <typename T>
void adam_step(T* param, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, const T* grad, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
               double step_size, double bias_correction2_sqrt, bool maximize) {
    const T avg_weight = T(1.0 - beta1);
    with_flags(
        [&](auto... flags) {
            adam_loop<T, decltype(flags)::value...>(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n,
                                                    T(weight_decay), T(1.0 - lr * weight_decay), avg_weight,
                                                    T(beta2), T(1.0 - beta2), T(eps), T(-step_size),
                                                    T(bias_correction2_sqrt));
        },
        max_exp_avg_sq != nullptr, weight_decay != 0.0 && !decoupled_weight_decay,
        weight_decay != 0.0 && decoupled_weight_decay, maximize, avg_weight < T(0.5));
}

// The element loop of rmsprop_step for one combination of options (see with_flags).
template <typename T, bool kCentered, bool kMomentum, bool kDecay, bool kNegate, bool kLerpFromStart>
void rmsprop_loop(T* param, T* square_avg, T* grad_avg, T* momentum_buffer, const T* grad, int64_t n, T decay,
                  T alpha, T new_weight, T eps, T momentum, T neg_lr) {
    for_each_element(n, [=](int64_t i) PYCORE_LAMBDA_INLINE {
        T g = grad[i];
        if constexpr (kNegate) g = -g;
        if constexpr (kDecay) g = g + decay * param[i];
        const T sq = square_avg[i] * alpha + new_weight * g * g;
        square_avg[i] = sq;
        T avg;
        if constexpr (kCentered) {
            const T ga = lerp<kLerpFromStart>(grad_avg[i], g, new_weight);
            grad_avg[i] = ga;
            avg = std::sqrt(sq + T(-1) * ga * ga);
        } else {
            avg = std::sqrt(sq);
        }
        avg = avg + eps;
        if constexpr (kMomentum) {
            const T buf = momentum_buffer[i] * momentum + g / avg;
            momentum_buffer[i] = buf;
            param[i] = param[i] + neg_lr * buf;
        } else {
            param[i] = param[i] + neg_lr * g / avg;
        }
    });
}

template <typename T>
void rmsprop_step(T* param, T* square_avg, T* grad_avg, T* momentum_buffer, const T* grad, int64_t n, double lr,
                  double alpha, double eps, double weight_decay, double momentum, bool maximize) {
    const T new_weight = T(1.0 - alpha);
    with_flags(
        [&](auto... flags) {
            rmsprop_loop<T, decltype(flags)::value...>(param, square_avg, grad_avg, momentum_buffer, grad, n,
                                                       T(weight_decay), T(alpha), new_weight, T(eps), T(momentum),
                                                       T(-lr));
        },
        grad_avg != nullptr, momentum_buffer != nullptr, weight_decay != 0.0, maximize, new_weight < T(0.5));
}

#define PYCORE_INSTANTIATE_OPTIM(T)                                                                          \
    template void sgd_step<T>(T*, T*, const T*, int64_t, double, double, double, double, bool, bool, bool);  \
    template void adam_step<T>(T*, T*, T*, T*, const T*, int64_t, double, double, double, double, double,    \
                               bool, double, double, bool);                                                  \
    template void rmsprop_step<T>(T*, T*, T*, T*, const T*, int64_t, double, double, double, double, double, \
                                  bool);

PYCORE_INSTANTIATE_OPTIM(float)
PYCORE_INSTANTIATE_OPTIM(double)

}  // namespace pycore
