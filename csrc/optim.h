// optim.h: the optimizers' per-tensor update loops, one fused pass over the elements.
//
// Each kernel updates one parameter tensor of n elements in place, with its state
// buffers, following PyTorch's single-tensor formulas (torch/optim/*.py) operation by
// operation, so that trajectories match torch.optim. Hyperparameters arrive as double
// and are rounded to T once, as PyTorch rounds its Python scalars. Terms that depend on
// the step count (Adam's bias corrections) are computed by the caller.
//
// Arguments: the tensors updated in place (param, then state), the gradient, n, then
// hyperparameters. Optional state buffers are null when their option is off.
#pragma once
#include <cstdint>

namespace pycore {

// SGD (torch.optim.SGD):
//   g = grad (negated when maximize) + weight_decay * param
//   momentum_buffer (null when momentum == 0):
//       buf = g on the first step, else momentum * buf + (1 - dampening) * g
//       g   = g + momentum * buf (nesterov)  or  buf
//   param -= lr * g
template <typename T>
void sgd_step(T* param, T* momentum_buffer, const T* grad, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step);

// Adam and AdamW (torch.optim.Adam, decoupled_weight_decay for AdamW):
//   g = grad (negated when maximize); Adam: g += weight_decay * param; AdamW: param *= 1 - lr * weight_decay
//   exp_avg    = lerp(exp_avg, g, 1 - beta1)
//   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
//   v = exp_avg_sq, or with amsgrad (max_exp_avg_sq not null) max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)
//   param -= step_size * exp_avg / (sqrt(v) / bias_correction2_sqrt + eps)
// where step_size = lr / (1 - beta1^step) and bias_correction2_sqrt = sqrt(1 - beta2^step).
template <typename T>
void adam_step(T* param, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, const T* grad, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
               double step_size, double bias_correction2_sqrt, bool maximize);

// RMSprop (torch.optim.RMSprop):
//   g = grad (negated when maximize) + weight_decay * param
//   square_avg = alpha * square_avg + (1 - alpha) * g * g
//   centered (grad_avg not null): grad_avg = lerp(grad_avg, g, 1 - alpha), avg = sqrt(square_avg - grad_avg^2) + eps
//   otherwise avg = sqrt(square_avg) + eps
//   momentum (momentum_buffer not null): buf = momentum * buf + g / avg, param -= lr * buf
//   otherwise param -= lr * g / avg
template <typename T>
void rmsprop_step(T* param, T* square_avg, T* grad_avg, T* momentum_buffer, const T* grad, int64_t n, double lr,
                  double alpha, double eps, double weight_decay, double momentum, bool maximize);

}  // namespace pycore
