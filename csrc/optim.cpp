// optim.cpp: fused SGD, Adam/AdamW and RMSprop updates. See optim.h for the math.
//
// Every element is independent, so each kernel is one parallel loop; the option flags
// are loop-invariant, and the compiler unswitches them out of the loop body.
#include "optim.h"

#include <algorithm>
#include <cmath>

#include "threads.h"

namespace pycore {
namespace {

// Elements per thread below which a second thread costs more than it saves.
constexpr int64_t kElementGrain = 32768;

// torch.lerp's formula: start + weight * (end - start), evaluated from the nearer end
// so that weight = 1 gives exactly `end`.
template <typename T>
inline T lerp(T start, T end, T weight) {
    return weight < T(0.5) ? start + weight * (end - start) : end - (end - start) * (T(1) - weight);
}

}  // namespace

template <typename T>
void sgd_step(T* param, T* momentum_buffer, const T* grad, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
    const T lr_t = T(lr), momentum_t = T(momentum), keep = T(1.0 - dampening), decay = T(weight_decay);
#pragma omp parallel for num_threads(threads_for(n, kElementGrain)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        T g = maximize ? -grad[i] : grad[i];
        if (weight_decay != 0.0) g = g + decay * param[i];
        if (momentum_buffer) {
            const T buf = first_step ? g : momentum_buffer[i] * momentum_t + keep * g;
            momentum_buffer[i] = buf;
            g = nesterov ? g + momentum_t * buf : buf;
        }
        param[i] = param[i] - lr_t * g;
    }
}

template <typename T>
void adam_step(T* param, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, const T* grad, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
               double step_size, double bias_correction2_sqrt, bool maximize) {
    const bool coupled_decay = weight_decay != 0.0 && !decoupled_weight_decay;
    const bool decoupled_decay = weight_decay != 0.0 && decoupled_weight_decay;
    const T decay = T(weight_decay), shrink = T(1.0 - lr * weight_decay);
    const T avg_weight = T(1.0 - beta1), beta2_t = T(beta2), sq_weight = T(1.0 - beta2);
    const T eps_t = T(eps), neg_step_size = T(-step_size), bc2_sqrt = T(bias_correction2_sqrt);
#pragma omp parallel for num_threads(threads_for(n, kElementGrain)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        T g = maximize ? -grad[i] : grad[i];
        T p = param[i];
        if (decoupled_decay) p = p * shrink;
        if (coupled_decay) g = g + decay * p;
        const T m = lerp(exp_avg[i], g, avg_weight);
        const T v = exp_avg_sq[i] * beta2_t + sq_weight * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        T v_used = v;
        if (max_exp_avg_sq) {
            v_used = std::max(max_exp_avg_sq[i], v);
            max_exp_avg_sq[i] = v_used;
        }
        const T denom = std::sqrt(v_used) / bc2_sqrt + eps_t;
        param[i] = p + neg_step_size * m / denom;
    }
}

template <typename T>
void rmsprop_step(T* param, T* square_avg, T* grad_avg, T* momentum_buffer, const T* grad, int64_t n, double lr,
                  double alpha, double eps, double weight_decay, double momentum, bool maximize) {
    const T decay = T(weight_decay), alpha_t = T(alpha), new_weight = T(1.0 - alpha);
    const T eps_t = T(eps), momentum_t = T(momentum), neg_lr = T(-lr);
#pragma omp parallel for num_threads(threads_for(n, kElementGrain)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        T g = maximize ? -grad[i] : grad[i];
        if (weight_decay != 0.0) g = g + decay * param[i];
        const T sq = square_avg[i] * alpha_t + new_weight * g * g;
        square_avg[i] = sq;
        T avg;
        if (grad_avg) {
            const T ga = lerp(grad_avg[i], g, new_weight);
            grad_avg[i] = ga;
            avg = std::sqrt(sq + T(-1) * ga * ga);
        } else {
            avg = std::sqrt(sq);
        }
        avg = avg + eps_t;
        if (momentum_buffer) {
            const T buf = momentum_buffer[i] * momentum_t + g / avg;
            momentum_buffer[i] = buf;
            param[i] = param[i] + neg_lr * buf;
        } else {
            param[i] = param[i] + neg_lr * g / avg;
        }
    }
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
