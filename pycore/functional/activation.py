"""relu, leaky_relu, sigmoid, tanh, softmax, log_softmax and their backwards (csrc/elementwise.cpp).

Inputs of any shape, float32 or float64; outputs are new arrays of the same shape and
dtype. Each backward takes grad_output and what its forward saved (the output y, or for
leaky_relu the input x) and returns grad_input.
"""
__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
           "tanh", "tanh_backward", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward"]
import math
import numbers

import numpy as np

from .. import _C
from .._checks import float_array, integer


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
