"""Matrix products through pycore's own GEMM (csrc/gemm.cpp)."""
from __future__ import annotations

__all__ = ["gemm", "matmul", "linear", "linear_forward", "linear_backward"]
import math
from collections import namedtuple

import numpy as np

from .. import _C
from .._checks import context, fits_int64, float_array, gradient_buffer, is_float_dtype, same_dtype
from .fused import activation_code

LinearContext = namedtuple("LinearContext", "input weight")
LinearContext.__doc__ = """linear_forward's ctx.

Attributes:
    input: the input (*, in_features) as the GEMM read it (C-contiguous).
    weight: the (out_features, in_features) weight it read (C-contiguous).
"""


def _checked_2d(x: np.ndarray, name: str) -> np.ndarray:
    """x as a 2-D float ndarray (native byte order), not yet copied to a readable layout."""
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    if not is_float_dtype(x.dtype) or not x.dtype.isnative:
        x = float_array(x, name, contiguous=False)  # raises the TypeError naming the dtype, or fixes the byte order
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {x.shape}")
    return x


def _operand(x: np.ndarray) -> np.ndarray:
    """A checked 2-D float array (_checked_2d) the GEMM can read in place, or a copy of it.

    Read in place: C- or Fortran-ordered arrays (a transposed view is read as its
    transpose) and row or column slices of them (one unit stride, the other a positive
    leading dimension). Anything else (negative or other strides, broadcast views,
    misaligned buffers) is copied. This runs on every call, so it stays cheap.
    """
    flags = x.flags
    if not flags.aligned:
        return np.ascontiguousarray(x)
    if flags.c_contiguous or flags.f_contiguous:
        return x
    (rows, cols), (s0, s1), item = x.shape, x.strides, x.itemsize
    if s1 == item and s0 > 0 and s0 % item == 0 and s0 >= cols * item:
        return x  # rows of a wider C-ordered matrix: leading dimension s0 / item
    if s0 == item and s1 > 0 and s1 % item == 0 and s1 >= rows * item:
        return x  # columns of a taller Fortran-ordered matrix
    return np.ascontiguousarray(x)


def _apart_from(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """x, or a copy of it when it may share memory with `out`, which the GEMM writes in
    blocks while it still reads x (an aliased operand gives wrong numbers above one block).
    np.may_share_memory compares the memory bounds only: a false alarm costs one copy."""
    return x.copy() if np.may_share_memory(x, out) else x


def _rows(shape: tuple[int, ...]) -> int:
    """Rows of the (rows, last axis) matrix a (*, features) array is viewed as (also when
    the last axis is empty, where reshape(-1, 0) cannot work out the rows)."""
    return math.prod(shape[:-1])


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, alpha: float = 1.0, beta: float = 0.0,
         trans_a: bool = False, trans_b: bool = False) -> np.ndarray:
    """C = alpha * op(a) @ op(b) + beta * C, where op(x) is x or x.T.

    Args:
        a: 2-D float32 or float64 array; op(a) is (M, K).
        b: 2-D array of a's dtype; op(b) is (K, N).
        c: None (default: a new array), or a C-contiguous, writeable (M, N) array of the
            operands' dtype, updated in place. It may overlap a or b (c=a): the
            overlapping operand is copied first.
        alpha: the scale of the product (default 1.0).
        beta: the scale of c's old values (default 0.0; ignored when c is None).
        trans_a: use a.T for op(a) (default False).
        trans_b: use b.T for op(b) (default False).

    Returns:
        C (M, N), `c` itself when given, otherwise a new C-contiguous array.
    """
    a, b = _checked_2d(a, "a"), _checked_2d(b, "b")
    if a.dtype != b.dtype:
        same_dtype((a, b), ("a", "b"), "gemm")  # raises the TypeError naming both
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != kb:
        raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not align "
                         f"(op(a) is ({m}, {k}), op(b) is ({kb}, {n}); trans_a={trans_a}, trans_b={trans_b})")
    if c is None:
        fits_int64((m, n), a.itemsize, "output", "gemm")
        c, beta = np.empty((m, n), dtype=a.dtype), 0.0
    else:
        if not isinstance(c, np.ndarray):
            raise TypeError(f"c: expected a numpy array, got {type(c).__name__}")
        if c.dtype != a.dtype:
            raise TypeError(f"c: dtype {c.dtype} does not match the operands' dtype {a.dtype}")
        if c.shape != (m, n):
            raise ValueError(f"c: expected shape {(m, n)}, got {c.shape}")
        if not c.flags.c_contiguous or not c.flags.writeable:
            raise ValueError("c: must be C-contiguous and writeable (it is updated in place)")
        a, b = _apart_from(a, c), _apart_from(b, c)
    return _C.gemm(_operand(a), _operand(b), c, bool(trans_a), bool(trans_b), float(alpha), float(beta))


def matmul(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False) -> np.ndarray:
    """op(a) @ op(b) for 2-D float32/float64 arrays, op(x) = x.T when its flag is set.

    Args:
        a: 2-D float32 or float64 array; op(a) is (M, K).
        b: 2-D array of a's dtype; op(b) is (K, N).
        trans_a: use a.T (default False).
        trans_b: use b.T (default False).

    Returns:
        A new (M, N) array of the operands' dtype.
    """
    return gemm(a, b, trans_a=trans_a, trans_b=trans_b)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, activation: str | None = None,
           negative_slope: float = 0.01) -> np.ndarray:
    """y = act(x @ weight.T + bias), on the last axis, as torch.nn.functional.linear (plus
    the fused activation).

    Args:
        x: (*, in_features) float32 or float64 array.
        weight: (out_features, in_features), x's dtype.
        bias: (out_features,), x's dtype, or None (default: no bias).
        activation: None (default), "relu", "leaky_relu", "tanh" or "sigmoid", applied
            with the bias as the GEMM writes y (a fused layer, see pycore.functional.fused).
        negative_slope: the fused leaky_relu's slope, >= 0 (default 0.01).

    Returns:
        y, a new (*, out_features) array of x's dtype.
    """
    return linear_forward(x, weight, bias, activation, negative_slope)[0]


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                   activation: str | None = None, negative_slope: float = 0.01) -> tuple[np.ndarray, LinearContext]:
    """linear, and what linear_backward needs.

    Args:
        x: (*, in_features) float32 or float64 array.
        weight: (out_features, in_features), x's dtype.
        bias: (out_features,) or None (default).
        activation: None (default), "relu", "leaky_relu", "tanh" or "sigmoid", as linear.
        negative_slope: the fused leaky_relu's slope, >= 0 (default 0.01).

    Returns:
        (y, ctx) with y = linear(x, weight, bias, activation, negative_slope), (*, out_features);
        ctx = LinearContext(input, weight).
    """
    code, slope = activation_code(activation, negative_slope)
    x = float_array(x, "input", contiguous=False)
    weight = float_array(weight, "weight", dtype=x.dtype, ndim=2, layout="(out_features, in_features)",
                         contiguous=False)
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}) "
                         f"but weight expects {weight.shape[1]} (shape {weight.shape})")
    fits_int64((_rows(x.shape), weight.shape[0]), x.itemsize, "output", "linear")
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    x2 = x.reshape(_rows(x.shape), weight.shape[1])  # in_features == 0: y is the bias (as PyTorch)
    if bias is not None:
        bias = float_array(bias, "bias", dtype=x.dtype, ndim=1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {bias.shape}")
    y = np.empty((x2.shape[0], weight.shape[0]), dtype=x.dtype)
    # The bias (one per column of y) and the activation are the GEMM's epilogue.
    _C.gemm(x2, weight, y, False, True, 1.0, 0.0, None, bias, code, slope)
    return y.reshape(x.shape[:-1] + (weight.shape[0],)), LinearContext(x, weight)


def linear_backward(grad_output: np.ndarray, ctx: LinearContext, grad_weight: np.ndarray | None = None,
                    grad_bias: np.ndarray | None = None, need_input_grad: bool = True) -> np.ndarray | None:
    """Gradients of linear given grad_output = dL/dy and linear_forward's ctx.

    A fused activation's gradient is not included: run fused.activation_backward first
    and pass its result as grad_output.

    Args:
        grad_output: dL/dy (or dL/d(pre-activation)), (*, out_features), x's dtype.
        ctx: linear_forward's LinearContext.
        grad_weight: (out_features, in_features) C-contiguous writeable array of x's dtype,
            or None (default: the weight is frozen). dL/dweight = grad_output^T x (over all
            leading axes) is ADDED into it, in place.
        grad_bias: (out_features,) likewise, or None. dL/dbias = the sum of grad_output
            over the leading axes is ADDED into it.
        need_input_grad: False skips dL/dx (default True).

    Returns:
        dL/dx = grad_output @ weight, a new (*, in_features) array; None when
        need_input_grad is False.
    """
    x, weight = context(ctx, LinearContext, "linear")
    x = float_array(x, "input")
    weight = float_array(weight, "weight", dtype=x.dtype, ndim=2, layout="(out_features, in_features)")
    out_features, in_features = weight.shape
    if x.ndim < 1 or x.shape[-1] != in_features:
        raise ValueError(f"input: expected shape (*, {in_features}) to match weight of shape {weight.shape}, "
                         f"got {x.shape}")
    grad_output = float_array(grad_output, "grad_output", dtype=x.dtype)
    if grad_output.shape != x.shape[:-1] + (out_features,):
        raise ValueError(f"grad_output: expected shape {x.shape[:-1] + (out_features,)} (the output's), "
                         f"got {grad_output.shape}")
    grad_weight = gradient_buffer(grad_weight, "grad_weight", weight.shape, x.dtype)
    grad_bias = gradient_buffer(grad_bias, "grad_bias", (out_features,), x.dtype)
    gy2 = grad_output.reshape(_rows(x.shape), out_features)
    x2 = x.reshape(_rows(x.shape), in_features)
    if grad_weight is not None:
        _C.gemm(_apart_from(gy2, grad_weight), _apart_from(x2, grad_weight), grad_weight, True, False, 1.0, 1.0)
    if grad_bias is not None:
        _C.channel_sum(grad_bias, gy2, gy2.shape[0], out_features, 1)  # columns of gy2, in double
    if not need_input_grad:
        return None
    gx = np.empty((gy2.shape[0], in_features), dtype=x.dtype)
    _C.gemm(gy2, weight, gx, False, False, 1.0, 0.0)
    return gx.reshape(x.shape)
