"""Fused layers: a convolution or linear layer and the activation after it, in one pass.

    y = act(conv2d(x, weight) + bias)      conv2d(x, weight, bias, ..., activation="relu")
    y = act(x @ weight.T + bias)           linear(x, weight, bias, activation="relu")

The GEMM adds the bias and applies the activation to each output tile as it writes it
(csrc/gemm.h, GemmEpilogue), instead of a second and third pass over the output. The
results are the unfused ones (the same fastmath functions in the same order).

Backward: activation_backward turns dL/dy into dL/d(pre-activation) from the saved
output y alone, then conv2d_backward / linear_backward run as usual:

    y, ctx = conv2d_forward(x, weight, bias, activation="relu")
    grad_pre = activation_backward(grad_y, y, "relu")
    grad_x = conv2d_backward(grad_pre, ctx, grad_weight, grad_bias)

Activations: "relu", "leaky_relu" (negative_slope >= 0, so that the sign of y is that of
the pre-activation and backward needs only y), "tanh", "sigmoid", or None.
"""
from __future__ import annotations

__all__ = ["activation_backward"]
import numpy as np

from .._checks import real
from . import activation as _act

# The codes the kernels take (csrc/gemm.h: Activation).
_CODES = {None: 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}


def activation_code(activation: str | None, negative_slope: float) -> tuple[int, float]:
    """The kernels' encoding of a fused activation, checked.

    Args:
        activation: None, "relu", "leaky_relu", "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope, >= 0 when activation is "leaky_relu" (checked
            as a real number otherwise, and unused).

    Returns:
        (code, slope), the activation's code in csrc/gemm.h's Activation enum and
        negative_slope as a float.

    Raises:
        ValueError: an unknown activation, or a negative slope for "leaky_relu".
        TypeError: negative_slope is not a real number.
    """
    try:
        code = _CODES[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation: expected None, 'relu', 'leaky_relu', 'tanh' or 'sigmoid', "
                         f"got {activation!r}") from None
    negative_slope = real(negative_slope, "negative_slope")
    if code == _CODES["leaky_relu"] and not negative_slope >= 0:
        raise ValueError(f"negative_slope: a fused leaky_relu needs negative_slope >= 0 (its backward reads "
                         f"the sign of the output), got {negative_slope}")
    return code, negative_slope


def activation_backward(grad_output: np.ndarray, y: np.ndarray, activation: str | None,
                        negative_slope: float = 0.01) -> np.ndarray:
    """dL/d(pre-activation) of a fused layer, from dL/dy and the layer's output y.

    relu: grad * (y > 0); leaky_relu: y > 0 ? grad : grad * negative_slope; tanh:
    grad * (1 - y^2); sigmoid: grad * y * (1 - y); None: grad itself. The same kernels
    as the unfused activations' backward (for leaky_relu, y > 0 exactly when its input
    is, since negative_slope >= 0).

    Args:
        grad_output: dL/dy, of y's shape and dtype.
        y: the fused layer's output (conv2d_forward's or linear_forward's y).
        activation: the activation the forward applied: None, "relu", "leaky_relu",
            "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope, >= 0, as given to the forward (default 0.01).

    Returns:
        dL/d(pre-activation), a new array of y's shape and dtype; grad_output itself
        (not a copy) when activation is None.
    """
    activation_code(activation, negative_slope)
    if activation is None:
        return grad_output
    if activation == "relu":
        return _act.relu_backward(grad_output, y)
    if activation == "leaky_relu":  # the output stands in for the input: same sign
        return _act.leaky_relu_backward(grad_output, _act.LeakyReLUContext(y, negative_slope))
    if activation == "tanh":
        return _act.tanh_backward(grad_output, y)
    return _act.sigmoid_backward(grad_output, y)
