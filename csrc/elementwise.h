// elementwise.h: activations, softmax / log_softmax and dropout, forward and backward.
//
// Every array is contiguous and holds n elements (softmax: outer * dim * inner).
// Backward kernels write the input gradient; PReLU's also adds its slopes' gradient.
// Where the derivative is cheaper from the output, backward reads the saved output y:
//
//   relu        y = max(x, 0)                    dx = dy * (y > 0)
//   leaky_relu  y = x > 0 ? x : slope * x        dx = dy * (x > 0 ? 1 : slope)   (reads x:
//                                                 a negative slope flips the sign of y)
//   sigmoid     y = 1 / (1 + exp(-x))            dx = dy * y * (1 - y)
//   tanh        y = tanh(x)                      dx = dy * (1 - y^2)
//   softmax     y_i = exp(x_i - m) / sum_j exp(x_j - m),  m = max_j x_j
//               dx_i = y_i * (dy_i - sum_j dy_j y_j)
//   log_softmax y_i = x_i - m - log(sum_j exp(x_j - m))
//               dx_i = dy_i - exp(y_i) * sum_j dy_j
//   prelu       y = x > 0 ? x : a_c * x          dx = dy * (x > 0 ? 1 : a_c)
//               da_c += sum over channel c of (x > 0 ? 0 : dy * x)
//   dropout     mask_i = u_i >= p ? 1 / (1 - p) : 0,  y = x * mask;  dx = dy * mask
//
// Softmax runs along the middle axis of an (outer, dim, inner) array: the Python layer
// views any axis that way without moving data. Subtracting the maximum keeps exp() <= 1,
// so inputs of any magnitude give finite results.
#pragma once
#include <cstdint>

namespace pycore {

template <class T> void relu_forward(T* y, const T* x, int64_t n);
template <class T> void relu_backward(T* dx, const T* dy, const T* y, int64_t n);

template <class T> void leaky_relu_forward(T* y, const T* x, T slope, int64_t n);
template <class T> void leaky_relu_backward(T* dx, const T* dy, const T* x, T slope, int64_t n);

template <class T> void sigmoid_forward(T* y, const T* x, int64_t n);
template <class T> void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t n);

template <class T> void tanh_forward(T* y, const T* x, int64_t n);
template <class T> void tanh_backward(T* dx, const T* dy, const T* y, int64_t n);

// log_output = false: softmax; true: log_softmax.
template <class T>
void softmax_forward(T* y, const T* x, int64_t outer, int64_t dim, int64_t inner, bool log_output);
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t outer, int64_t dim, int64_t inner,
                      bool log_output);

// PReLU on x viewed as (outer, channels, inner), one slope a_c per channel (a single slope
// for every element: channels == 1). backward: dx and/or dweight may be nullptr (not
// wanted); dweight is accumulated (+=), each channel's sum taken in double in an order
// that does not depend on the thread count.
template <class T>
void prelu_forward(T* y, const T* x, const T* weight, int64_t outer, int64_t channels, int64_t inner);
template <class T>
void prelu_backward(T* dx, T* dweight, const T* dy, const T* x, const T* weight, int64_t outer, int64_t channels,
                    int64_t inner);

// u: uniform [0, 1) draws, one per element (drawn by the caller from pycore's generator).
template <class T> void dropout_forward(T* y, T* mask, const T* x, const T* u, double p, int64_t n);
template <class T> void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n);

}  // namespace pycore
