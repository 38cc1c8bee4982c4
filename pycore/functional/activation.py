"""Activations (csrc/elementwise.cpp; GELU, SiLU and PReLU in numpy), as forward/backward pairs.

Every activation X comes as
    X(x, ...) -> y                                  torch.nn.functional's name: y only
    X_forward(x, ...) -> (y, ctx)                   y and what backward needs
    X_backward(grad_output, ctx) -> grad_input      dL/dx from dL/dy and that ctx
and PReLU, the one with a learnable parameter, also adds dL/dweight into a buffer:
    prelu_backward(grad_output, ctx, grad_weight=None, need_input_grad=True).
ctx is the saved array itself where one array is enough (relu, sigmoid, tanh keep their
output y; silu its input x), otherwise a small namedtuple (LeakyReLUContext,
SoftmaxContext, GELUContext, PReLUContext). Inputs of any shape, float32 or float64;
outputs are new arrays of the same shape and dtype.
"""
__all__ = ["relu", "relu_forward", "relu_backward", "leaky_relu", "leaky_relu_forward", "leaky_relu_backward",
           "sigmoid", "sigmoid_forward", "sigmoid_backward", "tanh", "tanh_forward", "tanh_backward",
           "softmax", "softmax_forward", "softmax_backward", "log_softmax", "log_softmax_forward",
           "log_softmax_backward", "gelu", "gelu_forward", "gelu_backward", "silu", "silu_forward", "silu_backward",
           "prelu", "prelu_forward", "prelu_backward"]
import math
from collections import namedtuple

import numpy as np

from .. import _C
from .._checks import choice, context, float_array, gradient_buffer, grad_like, integer, real

LeakyReLUContext = namedtuple("LeakyReLUContext", "input negative_slope")
SoftmaxContext = namedtuple("SoftmaxContext", "output dim")
GELUContext = namedtuple("GELUContext", "input approximate")
PReLUContext = namedtuple("PReLUContext", "input weight")


def _unary(kernel, x, *args):
    x = float_array(x, "input")
    y = np.empty_like(x)
    kernel(y, x, *args)
    return y


def _unary_backward(kernel, grad_output, saved, saved_name, *args):
    saved = float_array(saved, saved_name)
    grad_output = grad_like(grad_output, saved, f"the shape of {saved_name}")
    grad_input = np.empty_like(saved)
    kernel(grad_input, grad_output, saved, *args)
    return grad_input


def relu(x):
    """y = max(x, 0), elementwise (NaN stays NaN)."""
    return _unary(_C.relu_forward, x)


def relu_forward(x):
    """(y, ctx) of relu; ctx is y itself (the mask y > 0 is all backward needs)."""
    y = relu(x)
    return y, y


def relu_backward(grad_output, ctx):
    """dL/dx = grad_output * (y > 0), ctx = relu's output y."""
    return _unary_backward(_C.relu_backward, grad_output, ctx, "output")


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope * x, elementwise."""
    return _unary(_C.leaky_relu_forward, x, real(negative_slope, "negative_slope"))


def leaky_relu_forward(x, negative_slope=0.01):
    """(y, LeakyReLUContext(input, negative_slope)): backward reads the sign of the input
    (a negative slope flips the output's sign, so y alone would not do)."""
    x = float_array(x, "input")
    slope = real(negative_slope, "negative_slope")
    return leaky_relu(x, slope), LeakyReLUContext(x, slope)


def leaky_relu_backward(grad_output, ctx):
    """dL/dx = grad_output * (1 if x > 0 else negative_slope)."""
    x, slope = context(ctx, LeakyReLUContext, "leaky_relu")
    return _unary_backward(_C.leaky_relu_backward, grad_output, x, "input", real(slope, "negative_slope"))


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), elementwise."""
    return _unary(_C.sigmoid_forward, x)


def sigmoid_forward(x):
    """(y, ctx) of sigmoid; ctx is y itself."""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(grad_output, ctx):
    """dL/dx = grad_output * y * (1 - y), ctx = sigmoid's output y."""
    return _unary_backward(_C.sigmoid_backward, grad_output, ctx, "output")


def tanh(x):
    """y = tanh(x), elementwise."""
    return _unary(_C.tanh_forward, x)


def tanh_forward(x):
    """(y, ctx) of tanh; ctx is y itself."""
    y = tanh(x)
    return y, y


def tanh_backward(grad_output, ctx):
    """dL/dx = grad_output * (1 - y^2), ctx = tanh's output y."""
    return _unary_backward(_C.tanh_backward, grad_output, ctx, "output")


# -- softmax ------------------------------------------------------------------------------

def _axis_view(shape, dim, op):
    """(outer, size, inner) such that a C-contiguous array of `shape` is (outer, size, inner)
    with `dim` as the middle axis: the kernel then needs no transposed copy."""
    dim = integer(dim, "dim")
    ndim = len(shape)
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{op}: dim out of range: expected a value in [{-max(ndim, 1)}, {max(ndim, 1) - 1}] "
                         f"for an input with shape {tuple(shape)}, got {dim}")
    if ndim == 0:
        return 1, 1, 1
    dim %= ndim
    # math.prod, not np.prod: a tenth of the time (about 1 us against 7 per call)
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])


def _softmax(x, dim, log_output, op):
    x = float_array(x, "input")
    y = np.empty_like(x)
    _C.softmax_forward(y, x, *_axis_view(x.shape, dim, op), log_output)
    return y


def _softmax_backward(grad_output, ctx, log_output, op):
    y, dim = context(ctx, SoftmaxContext, op)
    y = float_array(y, "output")
    grad_output = grad_like(grad_output, y)
    grad_input = np.empty_like(y)
    _C.softmax_backward(grad_input, grad_output, y, *_axis_view(y.shape, dim, op), log_output)
    return grad_input


def softmax(x, dim=-1):
    """y_i = exp(x_i - m) / sum_j exp(x_j - m) along axis `dim`, m = max_j x_j.

    Subtracting the maximum keeps every exponential <= 1, so any finite input gives a
    finite result. Shape and dtype as x.
    """
    return _softmax(x, dim, False, "softmax")


def softmax_forward(x, dim=-1):
    """(y, SoftmaxContext(output=y, dim)) of softmax."""
    y = softmax(x, dim)
    return y, SoftmaxContext(y, dim)


def softmax_backward(grad_output, ctx):
    """dL/dx_i = y_i (g_i - sum_j g_j y_j) along dim, from softmax_forward's ctx."""
    return _softmax_backward(grad_output, ctx, False, "softmax")


def log_softmax(x, dim=-1):
    """y_i = x_i - m - log(sum_j exp(x_j - m)) along axis `dim`, m = max_j x_j (overflow-safe)."""
    return _softmax(x, dim, True, "log_softmax")


def log_softmax_forward(x, dim=-1):
    """(y, SoftmaxContext(output=y, dim)) of log_softmax."""
    y = log_softmax(x, dim)
    return y, SoftmaxContext(y, dim)


def log_softmax_backward(grad_output, ctx):
    """dL/dx_i = g_i - exp(y_i) sum_j g_j along dim, from log_softmax_forward's ctx."""
    return _softmax_backward(grad_output, ctx, True, "log_softmax")


# GELU and SiLU are numpy (no C++ kernel yet). numpy has no erf. float64 input uses
# math.erf per element: exact to double precision (gradcheck's finite differences need
# that) but ~100 ns an element. float32 input uses Abramowitz & Stegun 7.1.26, whose
# absolute error (<= 1.5e-7) is about one float32 ulp near 1, at ~10 numpy passes.
_erf_exact = np.frompyfunc(math.erf, 1, 1)
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")


def _erf(z):
    """erf(z) elementwise in z's dtype: exact for float64, within 1.5e-7 for float32."""
    if z.dtype == np.float64:
        return _erf_exact(z).astype(np.float64)
    a = np.abs(z)
    t = 1 / (1 + z.dtype.type(_ERF_P) * a)
    poly = np.zeros_like(t)
    for coefficient in reversed(_ERF_A):  # Horner: t (a1 + t (a2 + ... t a5))
        poly = (poly + z.dtype.type(coefficient)) * t
    return np.copysign(1 - poly * np.exp(-a * a), z)


def _gelu_parts(x, approximate):
    """(Phi, dPhi) in x's dtype, where gelu(x) = x * Phi(x): the normal CDF and its
    density for 'none', their tanh approximation for 'tanh'."""
    half = x.dtype.type(0.5)
    if approximate == "none":
        cdf = half * (1 + _erf(x * x.dtype.type(1 / math.sqrt(2.0))))
        density = np.exp(-half * x * x) * x.dtype.type(1 / math.sqrt(2.0 * math.pi))
        return cdf, density
    square = x * x
    t = np.tanh(x.dtype.type(_SQRT_2_OVER_PI) * x * (1 + x.dtype.type(_GELU_CUBIC) * square))
    cdf = half * (1 + t)
    # d/dx of 0.5 (1 + tanh(inner)), so that x * density + cdf is gelu's derivative
    density = half * (1 - t * t) * x.dtype.type(_SQRT_2_OVER_PI) * (1 + x.dtype.type(3 * _GELU_CUBIC) * square)
    return cdf, density


def gelu(x, approximate="none"):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (approximate='none', via erf), or
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with approximate='tanh', as
    torch.nn.functional.gelu."""
    return gelu_forward(x, approximate)[0]


def gelu_forward(x, approximate="none"):
    """(y, GELUContext(input, approximate)) of gelu."""
    choice(approximate, "approximate", GELU_APPROXIMATIONS)
    x = float_array(x, "input")
    cdf, _ = _gelu_parts(x, approximate)
    return x * cdf, GELUContext(x, approximate)


def gelu_backward(grad_output, ctx):
    """dL/dx of gelu: grad_output * (Phi(x) + x * Phi'(x)), x and approximate from ctx."""
    x, approximate = context(ctx, GELUContext, "gelu")
    choice(approximate, "approximate", GELU_APPROXIMATIONS)
    x = float_array(x, "input")
    grad_output = grad_like(grad_output, x, "the shape of input")
    cdf, density = _gelu_parts(x, approximate)
    return grad_output * (cdf + x * density)


def silu(x):
    """SiLU(x) = x * sigmoid(x) (swish), elementwise, as torch.nn.functional.silu."""
    x = float_array(x, "input")
    return x * sigmoid(x)


def silu_forward(x):
    """(y, ctx) of silu; ctx is the input x (backward recomputes sigmoid(x))."""
    x = float_array(x, "input")
    return silu(x), x


def silu_backward(grad_output, ctx):
    """dL/dx of silu: grad_output * s (1 + x (1 - s)), s = sigmoid(x), x = ctx."""
    x = float_array(ctx, "input")
    grad_output = grad_like(grad_output, x, "the shape of input")
    s = sigmoid(x)
    return grad_output * s * (1 + x * (1 - s))


# -- PReLU: the activation with a learnable parameter ----------------------------------------
# csrc/elementwise.cpp: one pass forward, one backward (the input gradient and each channel's
# weight gradient together). The worked example of DEVELOPERS.md's checklist for an op
# with a weight.

def _prelu_dims(x, weight):
    # the kernel's view (outer, channels, inner) of x: the channel axis 1, or every element
    # as one channel for a single slope
    if weight.shape[0] == 1:
        return 1, 1, x.size
    return x.shape[0], weight.shape[0], math.prod(x.shape[2:])


def _prelu_weight_view(x, weight):
    """weight (num_parameters,) checked against x and shaped to broadcast over it: one
    value per channel on axis 1 (x with >= 2 axes), or a single value for any x (PyTorch's
    rule: a 0- or 1-D input has no channel axis)."""
    weight = float_array(weight, "weight", dtype=x.dtype, ndim=1, layout="(num_parameters,)")
    count = weight.shape[0]
    if count == 1:
        return weight, weight.reshape((1,) * x.ndim)
    if x.ndim < 2 or x.shape[1] != count:
        channels = x.shape[1] if x.ndim >= 2 else "none (a 0- or 1-D input)"
        raise ValueError(f"weight: {count} parameters need the input's channel axis 1 to have {count} "
                         f"entries, got input of shape {x.shape} (channels: {channels})")
    return weight, weight.reshape((1, count) + (1,) * (x.ndim - 2))


def prelu(x, weight):
    """PReLU(x) = x if x > 0 else weight * x, elementwise, as torch.nn.functional.prelu.

    x: any shape; weight: (num_parameters,), either one value for every element or one per
    channel (axis 1 of x, which then has >= 2 axes). Output: x's shape and dtype.
    """
    return prelu_forward(x, weight)[0]


def prelu_forward(x, weight):
    """(y, PReLUContext(input, weight)) of prelu."""
    x = float_array(x, "input")
    weight, _ = _prelu_weight_view(x, weight)
    y = np.empty_like(x)
    _C.prelu_forward(y, x, weight, *_prelu_dims(x, weight))
    return y, PReLUContext(x, weight)


def prelu_backward(grad_output, ctx, grad_weight=None, need_input_grad=True):
    """Gradients of prelu, given dL/dy and prelu_forward's ctx.

    Adds dL/dweight = sum of grad_output * x where x <= 0 (over every axis but the
    channel axis, or over all axes for a single weight) into grad_weight when given (in
    place; None: the weight is frozen). Returns dL/dx = grad_output * (1 if x > 0 else
    weight), PyTorch's convention at x == 0, or None when need_input_grad is False.
    """
    x, weight = context(ctx, PReLUContext, "prelu")
    x = float_array(x, "input")
    weight, _ = _prelu_weight_view(x, weight)
    grad_output = grad_like(grad_output, x)
    grad_weight = gradient_buffer(grad_weight, "grad_weight", weight.shape, x.dtype)
    grad_input = np.empty_like(x) if need_input_grad else None
    _C.prelu_backward(grad_input, grad_weight, grad_output, x, weight, *_prelu_dims(x, weight))
    return grad_input
