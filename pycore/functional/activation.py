"""Activations (csrc/elementwise.cpp; GELU and SiLU in numpy), as forward/backward pairs.

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
from __future__ import annotations

__all__ = ["relu", "relu_forward", "relu_backward", "leaky_relu", "leaky_relu_forward", "leaky_relu_backward",
           "sigmoid", "sigmoid_forward", "sigmoid_backward", "tanh", "tanh_forward", "tanh_backward",
           "softmax", "softmax_forward", "softmax_backward", "log_softmax", "log_softmax_forward",
           "log_softmax_backward", "gelu", "gelu_forward", "gelu_backward", "silu", "silu_forward", "silu_backward",
           "prelu", "prelu_forward", "prelu_backward"]
import math
from collections import namedtuple
from typing import Callable

import numpy as np

from .. import _C
from .._checks import choice, context, float_array, grad_like, gradient_buffer, integer, real

LeakyReLUContext = namedtuple("LeakyReLUContext", "input negative_slope")
LeakyReLUContext.__doc__ = """leaky_relu_forward's ctx.

Attributes:
    input: the input x as forward read it (its sign selects the slope).
    negative_slope: the slope for x <= 0, a float.
"""
SoftmaxContext = namedtuple("SoftmaxContext", "output dim")
SoftmaxContext.__doc__ = """softmax_forward's and log_softmax_forward's ctx.

Attributes:
    output: the output y (softmax's probabilities or log_softmax's log-probabilities).
    dim: the axis it was taken along, as given.
"""
GELUContext = namedtuple("GELUContext", "input approximate")
GELUContext.__doc__ = """gelu_forward's ctx.

Attributes:
    input: the input x as forward read it.
    approximate: 'none' or 'tanh'.
"""
PReLUContext = namedtuple("PReLUContext", "input weight")
PReLUContext.__doc__ = """prelu_forward's ctx.

Attributes:
    input: the input x as forward read it.
    weight: the (num_parameters,) weight it read.
"""


def _unary(kernel: Callable[..., None], x: np.ndarray, *args: float) -> np.ndarray:
    x = float_array(x, "input")
    y = np.empty_like(x)
    kernel(y, x, *args)
    return y


def _unary_backward(kernel: Callable[..., None], grad_output: np.ndarray, saved: np.ndarray, saved_name: str,
                    *args: float) -> np.ndarray:
    saved = float_array(saved, saved_name)
    grad_output = grad_like(grad_output, saved, f"the shape of {saved_name}")
    grad_input = np.empty_like(saved)
    kernel(grad_input, grad_output, saved, *args)
    return grad_input


def relu(x: np.ndarray) -> np.ndarray:
    """y = max(x, 0), elementwise (NaN stays NaN), as torch.nn.functional.relu.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        y, a new array of x's shape and dtype.
    """
    return _unary(_C.relu_forward, x)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """relu, and what relu_backward needs.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        (y, ctx) with y = relu(x); ctx is y itself (the mask y > 0 is all backward needs).
    """
    y = relu(x)
    return y, y


def relu_backward(grad_output: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """dL/dx = grad_output * (y > 0).

    Args:
        grad_output: dL/dy, of y's shape and dtype.
        ctx: relu_forward's ctx, the output y.

    Returns:
        dL/dx, a new array of y's shape and dtype.
    """
    return _unary_backward(_C.relu_backward, grad_output, ctx, "output")


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """y = x if x > 0 else negative_slope * x, elementwise, as torch.nn.functional.leaky_relu.

    Args:
        x: float32 or float64 array of any shape.
        negative_slope: the slope for x <= 0, any real number (default 0.01).

    Returns:
        y, a new array of x's shape and dtype.
    """
    return _unary(_C.leaky_relu_forward, x, real(negative_slope, "negative_slope"))


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> tuple[np.ndarray, LeakyReLUContext]:
    """leaky_relu, and what leaky_relu_backward needs.

    Args:
        x: float32 or float64 array of any shape.
        negative_slope: the slope for x <= 0 (default 0.01).

    Returns:
        (y, ctx) with y = leaky_relu(x, negative_slope); ctx = LeakyReLUContext(input,
        negative_slope). Backward reads the sign of the input (a negative slope flips the
        output's sign, so y alone would not do).
    """
    x = float_array(x, "input")
    slope = real(negative_slope, "negative_slope")
    return leaky_relu(x, slope), LeakyReLUContext(x, slope)


def leaky_relu_backward(grad_output: np.ndarray, ctx: LeakyReLUContext) -> np.ndarray:
    """dL/dx = grad_output * (1 if x > 0 else negative_slope).

    Args:
        grad_output: dL/dy, of x's shape and dtype.
        ctx: leaky_relu_forward's LeakyReLUContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    x, slope = context(ctx, LeakyReLUContext, "leaky_relu")
    return _unary_backward(_C.leaky_relu_backward, grad_output, x, "input", real(slope, "negative_slope"))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """y = 1 / (1 + exp(-x)), elementwise, as torch.sigmoid.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        y, a new array of x's shape and dtype.
    """
    return _unary(_C.sigmoid_forward, x)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigmoid, and what sigmoid_backward needs.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        (y, ctx) with y = sigmoid(x); ctx is y itself.
    """
    y = sigmoid(x)
    return y, y


def sigmoid_backward(grad_output: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """dL/dx = grad_output * y * (1 - y).

    Args:
        grad_output: dL/dy, of y's shape and dtype.
        ctx: sigmoid_forward's ctx, the output y.

    Returns:
        dL/dx, a new array of y's shape and dtype.
    """
    return _unary_backward(_C.sigmoid_backward, grad_output, ctx, "output")


def tanh(x: np.ndarray) -> np.ndarray:
    """y = tanh(x), elementwise, as torch.tanh.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        y, a new array of x's shape and dtype.
    """
    return _unary(_C.tanh_forward, x)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tanh, and what tanh_backward needs.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        (y, ctx) with y = tanh(x); ctx is y itself.
    """
    y = tanh(x)
    return y, y


def tanh_backward(grad_output: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """dL/dx = grad_output * (1 - y^2).

    Args:
        grad_output: dL/dy, of y's shape and dtype.
        ctx: tanh_forward's ctx, the output y.

    Returns:
        dL/dx, a new array of y's shape and dtype.
    """
    return _unary_backward(_C.tanh_backward, grad_output, ctx, "output")


# -- softmax ------------------------------------------------------------------------------

def _axis_view(shape: tuple[int, ...], dim: int, op: str) -> tuple[int, int, int]:
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


def _softmax(x: np.ndarray, dim: int, log_output: bool, op: str) -> np.ndarray:
    x = float_array(x, "input")
    y = np.empty_like(x)
    _C.softmax_forward(y, x, *_axis_view(x.shape, dim, op), log_output)
    return y


def _softmax_backward(grad_output: np.ndarray, ctx: SoftmaxContext, log_output: bool, op: str) -> np.ndarray:
    y, dim = context(ctx, SoftmaxContext, op)
    y = float_array(y, "output")
    grad_output = grad_like(grad_output, y)
    grad_input = np.empty_like(y)
    _C.softmax_backward(grad_input, grad_output, y, *_axis_view(y.shape, dim, op), log_output)
    return grad_input


def softmax(x: np.ndarray, dim: int = -1) -> np.ndarray:
    """y_i = exp(x_i - m) / sum_j exp(x_j - m) along axis `dim`, m = max_j x_j, as
    torch.nn.functional.softmax.

    Subtracting the maximum keeps every exponential <= 1, so any finite input gives a
    finite result.

    Args:
        x: float32 or float64 array of any shape (a 0-d array is allowed: y = 1).
        dim: the axis to normalise along, negative counting from the end (default -1).

    Returns:
        y, a new array of x's shape and dtype whose entries along `dim` sum to 1.
    """
    return _softmax(x, dim, False, "softmax")


def softmax_forward(x: np.ndarray, dim: int = -1) -> tuple[np.ndarray, SoftmaxContext]:
    """softmax, and what softmax_backward needs.

    Args:
        x: float32 or float64 array of any shape.
        dim: the axis to normalise along (default -1).

    Returns:
        (y, ctx) with y = softmax(x, dim); ctx = SoftmaxContext(output=y, dim).
    """
    y = softmax(x, dim)
    return y, SoftmaxContext(y, dim)


def softmax_backward(grad_output: np.ndarray, ctx: SoftmaxContext) -> np.ndarray:
    """dL/dx_i = y_i (g_i - sum_j g_j y_j) along dim, g = grad_output.

    Args:
        grad_output: dL/dy, of y's shape and dtype.
        ctx: softmax_forward's SoftmaxContext.

    Returns:
        dL/dx, a new array of y's shape and dtype.
    """
    return _softmax_backward(grad_output, ctx, False, "softmax")


def log_softmax(x: np.ndarray, dim: int = -1) -> np.ndarray:
    """y_i = x_i - m - log(sum_j exp(x_j - m)) along axis `dim`, m = max_j x_j (overflow-safe),
    as torch.nn.functional.log_softmax.

    Args:
        x: float32 or float64 array of any shape.
        dim: the axis to normalise along, negative counting from the end (default -1).

    Returns:
        y, a new array of x's shape and dtype, log(softmax(x, dim)) without its underflow.
    """
    return _softmax(x, dim, True, "log_softmax")


def log_softmax_forward(x: np.ndarray, dim: int = -1) -> tuple[np.ndarray, SoftmaxContext]:
    """log_softmax, and what log_softmax_backward needs.

    Args:
        x: float32 or float64 array of any shape.
        dim: the axis to normalise along (default -1).

    Returns:
        (y, ctx) with y = log_softmax(x, dim); ctx = SoftmaxContext(output=y, dim).
    """
    y = log_softmax(x, dim)
    return y, SoftmaxContext(y, dim)


def log_softmax_backward(grad_output: np.ndarray, ctx: SoftmaxContext) -> np.ndarray:
    """dL/dx_i = g_i - exp(y_i) sum_j g_j along dim, g = grad_output.

    Args:
        grad_output: dL/dy, of y's shape and dtype.
        ctx: log_softmax_forward's SoftmaxContext.

    Returns:
        dL/dx, a new array of y's shape and dtype.
    """
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


def _erf(z: np.ndarray) -> np.ndarray:
    """erf(z) elementwise in z's dtype: exact for float64, within 1.5e-7 for float32."""
    if z.dtype == np.float64:
        return _erf_exact(z).astype(np.float64)
    a = np.abs(z)
    t = 1 / (1 + z.dtype.type(_ERF_P) * a)
    poly = np.zeros_like(t)
    for coefficient in reversed(_ERF_A):  # Horner: t (a1 + t (a2 + ... t a5))
        poly = (poly + z.dtype.type(coefficient)) * t
    return np.copysign(1 - poly * np.exp(-a * a), z)


def _gelu_parts(x: np.ndarray, approximate: str) -> tuple[np.ndarray, np.ndarray]:
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


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (approximate='none', via erf), or
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with approximate='tanh', as
    torch.nn.functional.gelu.

    Args:
        x: float32 or float64 array of any shape.
        approximate: 'none' (default: the erf form above) or 'tanh' (its tanh approximation).

    Returns:
        y, a new array of x's shape and dtype.
    """
    return gelu_forward(x, approximate)[0]


def gelu_forward(x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, GELUContext]:
    """gelu, and what gelu_backward needs.

    Args:
        x: float32 or float64 array of any shape.
        approximate: 'none' (default) or 'tanh', as gelu.

    Returns:
        (y, ctx) with y = gelu(x, approximate); ctx = GELUContext(input, approximate).
    """
    choice(approximate, "approximate", GELU_APPROXIMATIONS)
    x = float_array(x, "input")
    cdf, _ = _gelu_parts(x, approximate)
    return x * cdf, GELUContext(x, approximate)


def gelu_backward(grad_output: np.ndarray, ctx: GELUContext) -> np.ndarray:
    """dL/dx of gelu: grad_output * (Phi(x) + x * Phi'(x)), with Phi as the forward used it.

    Args:
        grad_output: dL/dy, of x's shape and dtype.
        ctx: gelu_forward's GELUContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    x, approximate = context(ctx, GELUContext, "gelu")
    choice(approximate, "approximate", GELU_APPROXIMATIONS)
    x = float_array(x, "input")
    grad_output = grad_like(grad_output, x, "the shape of input")
    cdf, density = _gelu_parts(x, approximate)
    return grad_output * (cdf + x * density)


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU(x) = x * sigmoid(x) (swish), elementwise, as torch.nn.functional.silu.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        y, a new array of x's shape and dtype.
    """
    x = float_array(x, "input")
    return x * sigmoid(x)


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """silu, and what silu_backward needs.

    Args:
        x: float32 or float64 array of any shape.

    Returns:
        (y, ctx) with y = silu(x); ctx is the input x (backward recomputes sigmoid(x)).
    """
    x = float_array(x, "input")
    return silu(x), x


def silu_backward(grad_output: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """dL/dx of silu: grad_output * s (1 + x (1 - s)), s = sigmoid(x).

    Args:
        grad_output: dL/dy, of x's shape and dtype.
        ctx: silu_forward's ctx, the input x.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    x = float_array(ctx, "input")
    grad_output = grad_like(grad_output, x, "the shape of input")
    s = sigmoid(x)
    return grad_output * s * (1 + x * (1 - s))


# -- PReLU: the activation with a learnable parameter ----------------------------------------
# csrc/elementwise.cpp: one pass forward, one backward (the input gradient and each channel's
# weight gradient together). The worked example of DEVELOPERS.md's checklist for an op
# with a weight.

def _prelu_dims(x: np.ndarray, weight: np.ndarray) -> tuple[int, int, int]:
    # the kernel's view (outer, channels, inner) of x: the channel axis 1, or every element
    # as one channel for a single slope
    if weight.shape[0] == 1:
        return 1, 1, x.size
    return x.shape[0], weight.shape[0], math.prod(x.shape[2:])


def _prelu_weight_view(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def prelu(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """PReLU(x) = x if x > 0 else weight * x, elementwise, as torch.nn.functional.prelu.

    Args:
        x: float32 or float64 array of any shape.
        weight: (num_parameters,) of x's dtype: one value for every element, or one per
            channel (axis 1 of x, which then has >= 2 axes).

    Returns:
        y, a new array of x's shape and dtype.
    """
    return prelu_forward(x, weight)[0]


def prelu_forward(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, PReLUContext]:
    """prelu, and what prelu_backward needs.

    Args:
        x: float32 or float64 array of any shape.
        weight: (num_parameters,) of x's dtype, as prelu.

    Returns:
        (y, ctx) with y = prelu(x, weight); ctx = PReLUContext(input, weight).
    """
    x = float_array(x, "input")
    weight, _ = _prelu_weight_view(x, weight)
    y = np.empty_like(x)
    _C.prelu_forward(y, x, weight, *_prelu_dims(x, weight))
    return y, PReLUContext(x, weight)


def prelu_backward(grad_output: np.ndarray, ctx: PReLUContext, grad_weight: np.ndarray | None = None,
                   need_input_grad: bool = True) -> np.ndarray | None:
    """Gradients of prelu, given dL/dy and prelu_forward's ctx.

    Args:
        grad_output: dL/dy, of x's shape and dtype.
        ctx: prelu_forward's PReLUContext.
        grad_weight: (num_parameters,) C-contiguous writeable array of x's dtype, or None
            (default: the weight is frozen). dL/dweight = the sum of grad_output * x where
            x <= 0 (over every axis but the channel axis, or over all axes for a single
            weight) is ADDED into it, in place.
        need_input_grad: False skips dL/dx (default True).

    Returns:
        dL/dx = grad_output * (1 if x > 0 else weight) (PyTorch's convention at x == 0),
        a new array of x's shape and dtype; None when need_input_grad is False.
    """
    x, weight = context(ctx, PReLUContext, "prelu")
    x = float_array(x, "input")
    weight, _ = _prelu_weight_view(x, weight)
    grad_output = grad_like(grad_output, x)
    grad_weight = gradient_buffer(grad_weight, "grad_weight", weight.shape, x.dtype)
    grad_input = np.empty_like(x) if need_input_grad else None
    _C.prelu_backward(grad_input, grad_weight, grad_output, x, weight, *_prelu_dims(x, weight))
    return grad_input
