// batchnorm.h: batch normalisation over (N, C, HW), one statistic per channel C.
//
// Forward, training (M = N * HW values per channel):
//   mean_c = (1/M) sum x,   var_c = (1/M) sum (x - mean_c)^2          (biased)
//   running_mean <- (1 - momentum) running_mean + momentum mean_c
//   running_var  <- (1 - momentum) running_var  + momentum var_c * M / (M - 1)   (unbiased)
// Forward, eval: mean_c = running_mean, var_c = running_var.
// Both:  invstd_c = 1 / sqrt(var_c + eps);  y = (x - mean_c) invstd_c weight_c + bias_c.
// mean and invstd are saved for the backward.
//
// Backward, with xhat = (x - mean_c) invstd_c:
//   grad_bias_c   += sum dy
//   grad_weight_c += sum dy xhat
//   training: dx = weight_c invstd_c / M (M dy - sum dy - xhat sum(dy xhat))
//             (the batch statistics depend on x)
//   eval:     dx = weight_c invstd_c dy     (the running statistics are constants)
//
// weight, bias, running_mean, running_var, dx, grad_weight, grad_bias may be null
// (no affine transform, no running statistics, a gradient not wanted).
#pragma once
#include <cstdint>

namespace pycore {

template <class T>
void batch_norm_forward(T* y, T* mean, T* invstd, const T* x, const T* weight, const T* bias,
                        T* running_mean, T* running_var, int64_t N, int64_t C, int64_t HW,
                        bool training, double momentum, double eps);

template <class T>
void batch_norm_backward(T* dx, T* grad_weight, T* grad_bias, const T* dy, const T* x, const T* mean,
                         const T* invstd, const T* weight, int64_t N, int64_t C, int64_t HW,
                         bool training);

}  // namespace pycore
