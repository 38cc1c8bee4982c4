"""dropout forward and backward (csrc/elementwise.cpp).

Inverted dropout, as torch.nn.functional.dropout: each element is zeroed with probability
p and the others are scaled by 1/(1-p), so that E[y] = x. The random draws come from
pycore's generator (pycore.manual_seed fixes the mask).
"""
from __future__ import annotations

__all__ = ["dropout", "dropout_forward", "dropout_backward"]
import numpy as np

from .. import _C
from .._checks import float_array, grad_like, probability
from .._context import default_generator


def dropout_forward(x: np.ndarray, p: float = 0.5, training: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """dropout, and the mask dropout_backward needs.

    Args:
        x: float32 or float64 array of any shape.
        p: the probability of zeroing an element, in [0, 1] (default 0.5).
        training: False makes dropout the identity (default True).

    Returns:
        (y, ctx) with y = dropout(x, p, training), a new array; ctx is the mask (x's shape and
        dtype: 1/(1-p) where x was kept, 0 where it was dropped), or None when dropout is
        the identity (p = 0 or not training).
    """
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


def dropout(x: np.ndarray, p: float = 0.5, training: bool = True) -> np.ndarray:
    """Inverted dropout: each element is zeroed with probability p and the others are
    scaled by 1/(1-p), so that E[y] = x. The identity when training is False or p = 0;
    zeros when p = 1.

    Args:
        x: float32 or float64 array of any shape.
        p: the probability of zeroing an element, in [0, 1] (default 0.5).
        training: False makes dropout the identity (default True).

    Returns:
        y, a new array of x's shape and dtype (a copy of x when dropout is the identity).
    """
    return dropout_forward(x, p, training)[0]


def dropout_backward(grad_output: np.ndarray, ctx: np.ndarray | None) -> np.ndarray:
    """dL/dx = grad_output * mask.

    Args:
        grad_output: dL/dy, of x's shape and dtype.
        ctx: dropout_forward's ctx: the mask, or None (dropout was the identity).

    Returns:
        dL/dx, a new array of x's shape and dtype (a copy of grad_output for None).
    """
    if ctx is None:
        return float_array(grad_output, "grad_output").copy()
    mask = float_array(ctx, "mask")
    grad_output = grad_like(grad_output, mask, "the mask's")
    grad_input = np.empty_like(mask)
    _C.dropout_backward(grad_input, grad_output, mask)
    return grad_input
