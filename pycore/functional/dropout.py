"""dropout forward and backward (csrc/elementwise.cpp)."""
__all__ = ["dropout", "dropout_forward", "dropout_backward"]
import numpy as np

from .. import _C
from .._checks import float_array, grad_like, probability
from .._context import default_generator


def dropout_forward(x, p=0.5, training=True):
    """(y, ctx) of dropout. ctx is the mask (x's shape and dtype: 1/(1-p) where x was kept,
    0 where it was dropped), or None when dropout is the identity (p = 0 or not training)."""
    x = float_array(x, "input")
    p = probability(p, "p")
    if not training or p == 0.0:
        return x.copy(), None
    # Uniform draws from pycore's generator, so pycore.manual_seed fixes the mask.
    u = default_generator().random(x.shape, dtype=x.dtype)
    y = np.empty_like(x)
    mask = np.empty_like(x)
    _C.dropout_forward(y, mask, x, u, p)
    return y, mask


def dropout(x, p=0.5, training=True):
    """Inverted dropout: each element is zeroed with probability p and the others are
    scaled by 1/(1-p), so that E[y] = x. The identity when training is False or p = 0;
    zeros when p = 1.

    x: any shape; p: probability in [0, 1]. Returns an array of x's shape and dtype.
    """
    return dropout_forward(x, p, training)[0]


def dropout_backward(grad_output, ctx):
    """dL/dx = grad_output * mask, ctx = dropout_forward's mask (None: the identity)."""
    if ctx is None:
        return float_array(grad_output, "grad_output").copy()
    mask = float_array(ctx, "mask")
    grad_output = grad_like(grad_output, mask, "the mask's")
    grad_input = np.empty_like(mask)
    _C.dropout_backward(grad_input, grad_output, mask)
    return grad_input
