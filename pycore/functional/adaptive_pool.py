"""adaptive_avg_pool2d and adaptive_max_pool2d, forward and backward (numpy, no C++ kernel).

The input (N, C, H, W) or (C, H, W) is cut into output_size (oh, ow) windows, PyTorch's
rule per axis: window i of n inputs into `out` outputs covers

    [floor(i * n / out), ceil((i + 1) * n / out))

so windows may overlap by one when out does not divide n. output_size 1 is global
pooling. One numpy reduction per output cell over all N * C planes at once: cheap for the
small outputs these layers are used for (1x1 after a CNN's last block; 7x7 at most).
"""
from __future__ import annotations

__all__ = ["adaptive_avg_pool2d", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
           "adaptive_max_pool2d", "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward"]
from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from .._checks import context, float_array, float_dtype, int_pair, integer

AdaptiveAvgPool2dContext = namedtuple("AdaptiveAvgPool2dContext", "input_shape output_shape dtype")
AdaptiveAvgPool2dContext.__doc__ = """adaptive_avg_pool2d_forward's ctx (shapes only: the mean's
gradient does not depend on the values).

Attributes:
    input_shape: x's shape, (N, C, H, W) or (C, H, W).
    output_shape: y's shape, x's leading axes + (oh, ow).
    dtype: x's dtype.
"""
AdaptiveMaxPool2dContext = namedtuple("AdaptiveMaxPool2dContext", "indices input_shape dtype")
AdaptiveMaxPool2dContext.__doc__ = """adaptive_max_pool2d_forward's ctx.

Attributes:
    indices: int64 array of y's shape: each output's flat position h * W + w in its (H, W) plane.
    input_shape: x's shape, (N, C, H, W) or (C, H, W).
    dtype: x's dtype.
"""


def _output_size(output_size: int | Sequence[int | None], x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """(oh, ow) from an int, a pair, or a pair with None (keep that input size), as PyTorch."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and None in output_size:
        return tuple(x_shape[-2 + i] if s is None else integer(s, "output_size", minimum=1)
                     for i, s in enumerate(output_size))
    return int_pair(output_size, "output_size", minimum=1)


def _windows(n: int, out: int) -> list[tuple[int, int]]:
    """[(start, end)] of each output along an axis of n inputs."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def _input(x: np.ndarray, output_size: int | Sequence[int | None]) -> tuple[np.ndarray, tuple[int, ...]]:
    x = float_array(x, "input", ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"adaptive pooling: input has an empty spatial dimension, shape {x.shape}")
    return x, _output_size(output_size, x.shape)


def _grad_output(grad_output: np.ndarray, output_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    g = float_array(grad_output, "grad_output", dtype=float_dtype(dtype, "ctx.dtype"))
    if g.shape != tuple(output_shape):
        raise ValueError(f"grad_output: expected shape {tuple(output_shape)} (the output's), got {g.shape}")
    return g


def adaptive_avg_pool2d(x: np.ndarray, output_size: int | Sequence[int | None]) -> np.ndarray:
    """The mean of each adaptive window (see the module docstring), as
    torch.nn.functional.adaptive_avg_pool2d.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array, H and W >= 1.
        output_size: (oh, ow) ints >= 1, one int for both, or a pair with None for "keep
            that input size".

    Returns:
        y, a new (N, C, oh, ow) or (C, oh, ow) array of x's dtype.
    """
    return adaptive_avg_pool2d_forward(x, output_size)[0]


def adaptive_avg_pool2d_forward(x: np.ndarray, output_size: int | Sequence[int | None]
                                ) -> tuple[np.ndarray, AdaptiveAvgPool2dContext]:
    """adaptive_avg_pool2d, and what adaptive_avg_pool2d_backward needs.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        output_size: as adaptive_avg_pool2d.

    Returns:
        (y, ctx) with y = adaptive_avg_pool2d(x, output_size); ctx =
        AdaptiveAvgPool2dContext(input_shape, output_shape, dtype).
    """
    x, (oh, ow) = _input(x, output_size)
    H, W = x.shape[-2:]
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for i, (h0, h1) in enumerate(_windows(H, oh)):
        for j, (w0, w1) in enumerate(_windows(W, ow)):
            y[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return y, AdaptiveAvgPool2dContext(x.shape, y.shape, x.dtype)


def _input_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    input_shape = tuple(integer(d, "input_shape", minimum=1) for d in input_shape)
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape: expected (N, C, H, W) or (C, H, W), got {input_shape}")
    return input_shape


def adaptive_avg_pool2d_backward(grad_output: np.ndarray, ctx: AdaptiveAvgPool2dContext) -> np.ndarray:
    """dL/dx of adaptive_avg_pool2d: each output's gradient shared equally by its window
    (overlapping windows add).

    Args:
        grad_output: dL/dy, of y's shape and x's dtype.
        ctx: adaptive_avg_pool2d_forward's AdaptiveAvgPool2dContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    input_shape, output_shape, dtype = context(ctx, AdaptiveAvgPool2dContext, "adaptive_avg_pool2d")
    input_shape = _input_shape(input_shape)
    if len(output_shape) != len(input_shape) or tuple(output_shape[:-2]) != input_shape[:-2]:
        raise ValueError(f"ctx.output_shape: expected {input_shape[:-2]} + (oh, ow), got {output_shape}")
    g = _grad_output(grad_output, output_shape, dtype)
    oh, ow = g.shape[-2:]
    H, W = input_shape[-2:]
    grad_input = np.zeros(input_shape, dtype=g.dtype)
    for i, (h0, h1) in enumerate(_windows(H, oh)):
        for j, (w0, w1) in enumerate(_windows(W, ow)):
            grad_input[..., h0:h1, w0:w1] += (g[..., i, j] / ((h1 - h0) * (w1 - w0)))[..., None, None]
    return grad_input


def adaptive_max_pool2d_forward(x: np.ndarray, output_size: int | Sequence[int | None]
                                ) -> tuple[np.ndarray, AdaptiveMaxPool2dContext]:
    """The maximum of each adaptive window and where it is, as
    torch.nn.functional.adaptive_max_pool2d(return_indices=True).

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array, H and W >= 1.
        output_size: as adaptive_avg_pool2d.

    Returns:
        (y, ctx) with y a new (..., oh, ow) array of x's dtype (NaN counts as the maximum);
        ctx = AdaptiveMaxPool2dContext(indices, input_shape, dtype), indices (int64, y's
        shape) each maximum's flat position h * W + w in its (H, W) plane, the first
        maximum on ties.
    """
    x, (oh, ow) = _input(x, output_size)
    H, W = x.shape[-2:]
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    indices = np.empty(y.shape, dtype=np.int64)
    for i, (h0, h1) in enumerate(_windows(H, oh)):
        for j, (w0, w1) in enumerate(_windows(W, ow)):
            window = x[..., h0:h1, w0:w1].reshape(x.shape[:-2] + (-1,))
            k = np.argmax(window, axis=-1)  # NaN counts as the maximum, as in PyTorch
            y[..., i, j] = np.take_along_axis(window, k[..., None], axis=-1)[..., 0]
            indices[..., i, j] = (h0 + k // (w1 - w0)) * W + w0 + k % (w1 - w0)
    return y, AdaptiveMaxPool2dContext(indices, x.shape, x.dtype)


def adaptive_max_pool2d(x: np.ndarray, output_size: int | Sequence[int | None],
                        return_indices: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Adaptive max pooling, as torch.nn.functional.adaptive_max_pool2d.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array, H and W >= 1.
        output_size: as adaptive_avg_pool2d.
        return_indices: also return where each maximum is (default False).

    Returns:
        y, a new (..., oh, ow) array of x's dtype; (y, indices) with return_indices,
        indices as in adaptive_max_pool2d_forward.
    """
    y, ctx = adaptive_max_pool2d_forward(x, output_size)
    return (y, ctx.indices) if return_indices else y


def adaptive_max_pool2d_backward(grad_output: np.ndarray, ctx: AdaptiveMaxPool2dContext) -> np.ndarray:
    """dL/dx of adaptive_max_pool2d: each output's gradient goes to its window's maximum;
    repeated positions (overlapping windows) add.

    Args:
        grad_output: dL/dy, of y's shape and x's dtype.
        ctx: adaptive_max_pool2d_forward's AdaptiveMaxPool2dContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    indices, input_shape, dtype = context(ctx, AdaptiveMaxPool2dContext, "adaptive_max_pool2d")
    input_shape = _input_shape(input_shape)
    indices = np.asarray(indices)
    if indices.dtype != np.int64 or indices.ndim != len(input_shape) or indices.shape[:-2] != input_shape[:-2]:
        raise ValueError(f"ctx.indices: expected int64 of shape {input_shape[:-2]} + (oh, ow), "
                         f"got {indices.dtype} {indices.shape}")
    grad_output = _grad_output(grad_output, indices.shape, dtype)
    plane = input_shape[-2] * input_shape[-1]
    if indices.size and (indices.min() < 0 or indices.max() >= plane):
        raise ValueError(f"indices: expected positions in [0, {plane}) of an (H, W) plane")
    planes = int(np.prod(input_shape[:-2]))
    offsets = (np.arange(planes, dtype=np.int64) * plane)[:, None]
    grad_input = np.zeros(planes * plane, dtype=grad_output.dtype)
    np.add.at(grad_input, (indices.reshape(planes, -1) + offsets).reshape(-1), grad_output.reshape(-1))
    return grad_input.reshape(input_shape)
