"""adaptive_avg_pool2d and adaptive_max_pool2d, forward and backward (numpy, no C++ kernel).

The input (N, C, H, W) or (C, H, W) is cut into output_size (oh, ow) windows, PyTorch's
rule per axis: window i of n inputs into `out` outputs covers

    [floor(i * n / out), ceil((i + 1) * n / out))

so windows may overlap by one when out does not divide n. output_size 1 is global
pooling. One numpy reduction per output cell over all N * C planes at once: cheap for the
small outputs these layers are used for (1x1 after a CNN's last block; 7x7 at most).
"""
__all__ = ["adaptive_avg_pool2d", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
           "adaptive_max_pool2d", "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward"]
from collections import namedtuple

import numpy as np

from .._checks import context, float_array, float_dtype, int_pair, integer

AdaptiveAvgPool2dContext = namedtuple("AdaptiveAvgPool2dContext", "input_shape output_shape dtype")
AdaptiveMaxPool2dContext = namedtuple("AdaptiveMaxPool2dContext", "indices input_shape dtype")
AdaptiveMaxPool2dContext.__doc__ = """adaptive_max_pool2d_forward's ctx: indices (int64, y's shape),
each output's flat position h * W + w in its (H, W) plane; input_shape and dtype: x's."""


def _output_size(output_size, x_shape):
    """(oh, ow) from an int, a pair, or a pair with None (keep that input size), as PyTorch."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and None in output_size:
        return tuple(x_shape[-2 + i] if s is None else integer(s, "output_size", minimum=1)
                     for i, s in enumerate(output_size))
    return int_pair(output_size, "output_size", minimum=1)


def _windows(n, out):
    """[(start, end)] of each output along an axis of n inputs."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def _input(x, output_size):
    x = float_array(x, "input", ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"adaptive pooling: input has an empty spatial dimension, shape {x.shape}")
    return x, _output_size(output_size, x.shape)


def _grad_output(grad_output, output_shape, dtype):
    g = float_array(grad_output, "grad_output", dtype=float_dtype(dtype, "ctx.dtype"))
    if g.shape != tuple(output_shape):
        raise ValueError(f"grad_output: expected shape {tuple(output_shape)} (the output's), got {g.shape}")
    return g


def adaptive_avg_pool2d(x, output_size):
    """The mean of each adaptive window (see the module docstring), as
    torch.nn.functional.adaptive_avg_pool2d. Output (..., oh, ow)."""
    return adaptive_avg_pool2d_forward(x, output_size)[0]


def adaptive_avg_pool2d_forward(x, output_size):
    """(y, AdaptiveAvgPool2dContext(input_shape)) of adaptive_avg_pool2d."""
    x, (oh, ow) = _input(x, output_size)
    H, W = x.shape[-2:]
    y = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for i, (h0, h1) in enumerate(_windows(H, oh)):
        for j, (w0, w1) in enumerate(_windows(W, ow)):
            y[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return y, AdaptiveAvgPool2dContext(x.shape, y.shape, x.dtype)


def _input_shape(input_shape):
    input_shape = tuple(integer(d, "input_shape", minimum=1) for d in input_shape)
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape: expected (N, C, H, W) or (C, H, W), got {input_shape}")
    return input_shape


def adaptive_avg_pool2d_backward(grad_output, ctx):
    """dL/dx of adaptive_avg_pool2d: each output's gradient shared equally by its window
    (overlapping windows add)."""
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


def adaptive_max_pool2d_forward(x, output_size):
    """(y, AdaptiveMaxPool2dContext(indices, input_shape)): the maximum of each adaptive
    window and its flat position h * W + w in its (H, W) plane (int64, the first maximum on
    ties), as torch.nn.functional.adaptive_max_pool2d(return_indices=True)."""
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


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """adaptive max pooling, as torch.nn.functional.adaptive_max_pool2d: y, or (y, indices)."""
    y, ctx = adaptive_max_pool2d_forward(x, output_size)
    return (y, ctx.indices) if return_indices else y


def adaptive_max_pool2d_backward(grad_output, ctx):
    """dL/dx of adaptive_max_pool2d: each output's gradient goes to its window's maximum
    (ctx from adaptive_max_pool2d_forward); repeated positions add."""
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
