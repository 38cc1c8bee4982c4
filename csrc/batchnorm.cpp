// batchnorm.cpp: see batchnorm.h for the math.
//
// Threads split the channels: every sum and every write of one channel belongs to one
// thread, so nothing races and results do not depend on the thread count. Sums run in
// double (fastmath's row sums, over 16 lanes), so float32 statistics over large batches
// keep float32 accuracy. The channel loop runs through simd (compiled per instruction set).
#include "batchnorm.h"

#include <cmath>

#include "fastmath.h"
#include "simd.h"
#include "threads.h"

namespace pycore {
namespace {

// Values per thread below which another thread does not pay.
constexpr int64_t kGrain = 1 << 15;

}  // namespace

template <class T>
void batch_norm_forward(T* y, T* mean, T* invstd, const T* x, const T* weight, const T* bias,
                        T* running_mean, T* running_var, int64_t N, int64_t C, int64_t HW,
                        bool training, double momentum, double eps) {
    const int64_t M = N * HW;
    const int64_t per_channel = M > 0 ? M : 1;
    simd::parallel_run(C, threads_for(C, kGrain / per_channel + 1), [=](int64_t c0, int64_t c1) PYCORE_LAMBDA_INLINE {
        for (int64_t c = c0; c < c1; ++c) {
            double mu, var;
            if (training) {
                // two passes (mean, then squared deviations): no cancellation for large means
                double sum = 0.0;
                for (int64_t n = 0; n < N; ++n) sum += fastmath::row_sum(x + (n * C + c) * HW, HW);
                mu = sum / double(M);
                double squares = 0.0;
                for (int64_t n = 0; n < N; ++n)
                squares += fastmath::row_centered_dot<T>(x + (n * C + c) * HW, mu, nullptr, HW);
                var = squares / double(M);
                if (running_mean) running_mean[c] = T((1.0 - momentum) * running_mean[c] + momentum * mu);
                if (running_var && M > 1)
                    running_var[c] = T((1.0 - momentum) * running_var[c] + momentum * var * double(M) / double(M - 1));
            } else {
                mu = running_mean[c];
                var = running_var[c];
            }
            const double inv = 1.0 / std::sqrt(var + eps);
            mean[c] = T(mu);
            invstd[c] = T(inv);
            // y = x * scale + shift
            const double scale = inv * (weight ? double(weight[c]) : 1.0);
            const double shift = (bias ? double(bias[c]) : 0.0) - mu * scale;
            const T s = T(scale), b = T(shift);
            for (int64_t n = 0; n < N; ++n) {
                const T* xp = x + (n * C + c) * HW;
                T* yp = y + (n * C + c) * HW;
                for (int64_t i = 0; i < HW; ++i) yp[i] = xp[i] * s + b;
            }
        }
    });
}

template <class T>
void batch_norm_backward(T* dx, T* grad_weight, T* grad_bias, const T* dy, const T* x, const T* mean,
                         const T* invstd, const T* weight, int64_t N, int64_t C, int64_t HW,
                         bool training) {
    const int64_t M = N * HW;
    const int64_t per_channel = M > 0 ? M : 1;
    simd::parallel_run(C, threads_for(C, kGrain / per_channel + 1), [=](int64_t c0, int64_t c1) PYCORE_LAMBDA_INLINE {
        for (int64_t c = c0; c < c1; ++c) {
            const double mu = mean[c], inv = invstd[c];
            // sum dy and sum dy * xhat = inv * sum dy * (x - mu)
            double sum_dy = 0.0, sum_dy_xmu = 0.0;
            for (int64_t n = 0; n < N; ++n) {
                sum_dy += fastmath::row_sum(dy + (n * C + c) * HW, HW);
                sum_dy_xmu += fastmath::row_centered_dot(x + (n * C + c) * HW, mu, dy + (n * C + c) * HW, HW);
            }
            const double sum_dy_xhat = sum_dy_xmu * inv;
            if (grad_bias) grad_bias[c] += T(sum_dy);
            if (grad_weight) grad_weight[c] += T(sum_dy_xhat);
            if (!dx) continue;  // the next channel
            const double w = weight ? double(weight[c]) : 1.0;
            if (training && M > 0) {
                // dx = w inv (dy - mean(dy) - xhat mean(dy xhat)), xhat = (x - mu) inv
                const double k = w * inv, mean_dy = sum_dy / double(M);
                const double slope = inv * sum_dy_xhat / double(M);  // xhat * mean(dy xhat) = (x - mu) * slope
                for (int64_t n = 0; n < N; ++n) {
                    const T* xp = x + (n * C + c) * HW;
                    const T* gp = dy + (n * C + c) * HW;
                    T* gx = dx + (n * C + c) * HW;
                    for (int64_t i = 0; i < HW; ++i)
                        gx[i] = T(k * (double(gp[i]) - mean_dy - (double(xp[i]) - mu) * slope));
                }
            } else {
                const T k = T(w * inv);
                for (int64_t n = 0; n < N; ++n) {
                    const T* gp = dy + (n * C + c) * HW;
                    T* gx = dx + (n * C + c) * HW;
                    for (int64_t i = 0; i < HW; ++i) gx[i] = gp[i] * k;
                }
            }
        }
    });
}

template void batch_norm_forward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        float*, float*, int64_t, int64_t, int64_t, bool, double, double);
template void batch_norm_forward<double>(double*, double*, double*, const double*, const double*,
                                         const double*, double*, double*, int64_t, int64_t, int64_t, bool,
                                         double, double);
template void batch_norm_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                         const float*, const float*, int64_t, int64_t, int64_t, bool);
template void batch_norm_backward<double>(double*, double*, double*, const double*, const double*,
                                          const double*, const double*, const double*, int64_t, int64_t,
                                          int64_t, bool);

}  // namespace pycore
