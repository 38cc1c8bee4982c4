// loss.h: the training losses, each a forward/backward pair (llm.c style).
//
// Cross entropy is fused with log-softmax: forward reads each row of logits once
// for its max and log-sum-exp and writes the row's loss; backward rebuilds the
// softmax from the saved log-sum-exp, so no (rows, classes) probability tensor is
// ever stored. The element-wise losses (MSE, BCE-with-logits) reduce in fixed
// blocks, so their sums are the same bits at any thread count.
//
// Backward kernels take the upstream gradient of the per-row (or per-element) loss
// as a pointer plus a stride: stride 1 for reduction='none' (one value per row),
// stride 0 for 'mean'/'sum' (one value, already divided by the mean's denominator).
// They write (=) the gradient of the logits, a fresh array owned by the caller.
#pragma once
#include <cstdint>

namespace pycore {

// Cross entropy over the last axis, with PyTorch's ignore_index, class weights and
// label smoothing. For a row r with logits x (C,), target t, eps = label_smoothing,
// w = class_weight (all ones when null), lse = log(sum_c exp(x_c)), logp_c = x_c - lse:
//
//   loss_r = (1 - eps) * w_t * (-logp_t) + (eps / C) * sum_c w_c * (-logp_c)
//
// and loss_r = 0 for a row whose target equals ignore_index.
//   losses (R,)       out: loss_r
//   logsumexp (R,)    out: lse per row, saved for backward (0 for ignored rows). Kept in
//                     double even for float logits: a float lse of logits near 1e4 is off
//                     by up to 5e-4, which exp(x - lse) would turn into a 5e-4 relative
//                     error in the softmax.
//   logits (R, C), targets (R,) in [0, C) or == ignore_index, class_weight (C,) or null
template <typename T>
void cross_entropy_forward(T* losses, double* logsumexp, const T* logits, const int64_t* targets,
                           const T* class_weight, double label_smoothing, int64_t ignore_index,
                           int64_t R, int64_t C);

// dlogits (R, C) = g_r * d loss_r / d x, where g_r = dlosses[r * dlosses_stride]:
//   d loss_r / d x_c = ((1 - eps) w_t + (eps / C) W) p_c - (1 - eps) w_t [c == t] - (eps / C) w_c
// with p = softmax(x) = exp(x - lse) and W = sum_c w_c. Ignored rows get zeros.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* dlosses, int64_t dlosses_stride, const double* logsumexp,
                            const T* logits, const int64_t* targets, const T* class_weight,
                            double label_smoothing, int64_t ignore_index, int64_t R, int64_t C);

// Squared error e_i = (x_i - y_i)^2 over n elements. Writes e into `losses` when it is
// not null and returns sum_i e_i (accumulated in double, in fixed blocks).
template <typename T>
double mse_forward(T* losses, const T* input, const T* target, int64_t n);

// dinput_i = 2 (x_i - y_i) * dlosses[i * dlosses_stride].
template <typename T>
void mse_backward(T* dinput, const T* dlosses, int64_t dlosses_stride, const T* input, const T* target,
                  int64_t n);

// Binary cross entropy on logits, PyTorch's stable form. With lw = 1 + (pw - 1) y,
// pw = pos_weight[i % P] (pw = 1 when pos_weight is null):
//   e_i = (1 - y_i) x_i + lw * softplus(-x_i),  softplus(-x) = max(-x, 0) + log1p(exp(-|x|))
// which never exponentiates a positive number. Writes e into `losses` when it is not
// null and returns sum_i e_i. P is the length of pos_weight (the input's last axis, or 1).
template <typename T>
double bce_with_logits_forward(T* losses, const T* input, const T* target, const T* pos_weight, int64_t P,
                               int64_t n);

// dinput_i = ((1 - y_i) - lw * sigmoid(-x_i)) * dlosses[i * dlosses_stride]
// (= sigmoid(x_i) - y_i without pos_weight).
template <typename T>
void bce_with_logits_backward(T* dinput, const T* dlosses, int64_t dlosses_stride, const T* input,
                              const T* target, const T* pos_weight, int64_t P, int64_t n);

}  // namespace pycore
