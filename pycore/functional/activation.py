"""relu, leaky_relu, sigmoid, tanh, softmax, log_softmax and their backwards (csrc/elementwise.cpp).

Inputs of any shape, float32 or float64; outputs are new arrays of the same shape and
dtype. Each backward takes grad_output and what its forward saved (the output y, or for
leaky_relu the input x) and returns grad_input.
"""
__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
           "tanh", "tanh_backward", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
           "gelu", "gelu_backward", "silu", "silu_backward"]
import math
import numbers

import numpy as np

from .. import _C
from .._checks import choice, float_array, integer


def _unary(kernel, x, *args):
    x = float_array(x, "input")
    y = np.empty_like(x)
    kernel(y, x, *args)
    return y


def _unary_backward(kernel, grad_output, saved, saved_name, *args):
    saved = float_array(saved, saved_name)
    grad_output = float_array(grad_output, "grad_output", dtype=saved.dtype)
    if grad_output.shape != saved.shape:
        raise ValueError(f"grad_output: expected shape {saved.shape} (the shape of {saved_name}), "
                         f"got {grad_output.shape}")
    grad_input = np.empty_like(saved)
    kernel(grad_input, grad_output, saved, *args)
    return grad_input


def _slope(negative_slope):
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"negative_slope: expected a float, got {type(negative_slope).__name__}")
    return float(negative_slope)


def relu(x):
    """y = max(x, 0), elementwise (NaN stays NaN)."""
    return _unary(_C.relu_forward, x)


def relu_backward(grad_output, y):
    """dL/dx = grad_output * (y > 0), from relu's output y."""
    return _unary_backward(_C.relu_backward, grad_output, y, "output")


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope * x, elementwise."""
    return _unary(_C.leaky_relu_forward, x, _slope(negative_slope))


def leaky_relu_backward(grad_output, x, negative_slope=0.01):
    """dL/dx = grad_output * (1 if x > 0 else negative_slope), from leaky_relu's input x."""
    return _unary_backward(_C.leaky_relu_backward, grad_output, x, "input", _slope(negative_slope))


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), elementwise."""
    return _unary(_C.sigmoid_forward, x)


def sigmoid_backward(grad_output, y):
    """dL/dx = grad_output * y * (1 - y), from sigmoid's output y."""
    return _unary_backward(_C.sigmoid_backward, grad_output, y, "output")


def tanh(x):
    """y = tanh(x), elementwise."""
    return _unary(_C.tanh_forward, x)


def tanh_backward(grad_output, y):
    """dL/dx = grad_output * (1 - y^2), from tanh's output y."""
    return _unary_backward(_C.tanh_backward, grad_output, y, "output")


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


def _softmax_backward(grad_output, y, dim, log_output, op):
    y = float_array(y, "output")
    grad_output = float_array(grad_output, "grad_output", dtype=y.dtype)
    if grad_output.shape != y.shape:
        raise ValueError(f"grad_output: expected shape {y.shape} (the output's), got {grad_output.shape}")
    grad_input = np.empty_like(y)
    _C.softmax_backward(grad_input, grad_output, y, *_axis_view(y.shape, dim, op), log_output)
    return grad_input


def softmax(x, dim=-1):
    """y_i = exp(x_i - m) / sum_j exp(x_j - m) along axis `dim`, m = max_j x_j.

    Subtracting the maximum keeps every exponential <= 1, so any finite input gives a
    finite result. Shape and dtype as x.
    """
    return _softmax(x, dim, False, "softmax")


def softmax_backward(grad_output, y, dim=-1):
    """dL/dx_i = y_i (g_i - sum_j g_j y_j) along `dim`, from softmax's output y."""
    return _softmax_backward(grad_output, y, dim, False, "softmax")


def log_softmax(x, dim=-1):
    """y_i = x_i - m - log(sum_j exp(x_j - m)) along axis `dim`, m = max_j x_j (overflow-safe)."""
    return _softmax(x, dim, True, "log_softmax")


def log_softmax_backward(grad_output, y, dim=-1):
    """dL/dx_i = g_i - exp(y_i) sum_j g_j along `dim`, from log_softmax's output y."""
    return _softmax_backward(grad_output, y, dim, True, "log_softmax")


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
    choice(approximate, "approximate", GELU_APPROXIMATIONS)
    x = float_array(x, "input")
    cdf, _ = _gelu_parts(x, approximate)
    return x * cdf


def gelu_backward(grad_output, x, approximate="none"):
    """dL/dx of gelu given its input x: grad_output * (Phi(x) + x * Phi'(x))."""
    choice(approximate, "approximate", GELU_APPROXIMATIONS)
    x = float_array(x, "input")
    grad_output = _grad_like(grad_output, x)
    cdf, density = _gelu_parts(x, approximate)
    return grad_output * (cdf + x * density)


def _grad_like(grad_output, x):
    grad_output = float_array(grad_output, "grad_output", dtype=x.dtype)
    if grad_output.shape != x.shape:
        raise ValueError(f"grad_output: expected shape {x.shape} (the shape of input), got {grad_output.shape}")
    return grad_output


def silu(x):
    """SiLU(x) = x * sigmoid(x) (swish), elementwise, as torch.nn.functional.silu."""
    x = float_array(x, "input")
    return x * sigmoid(x)


def silu_backward(grad_output, x):
    """dL/dx of silu given its input x: grad_output * s (1 + x (1 - s)), s = sigmoid(x)."""
    x = float_array(x, "input")
    grad_output = _grad_like(grad_output, x)
    s = sigmoid(x)
    return grad_output * s * (1 + x * (1 - s))
