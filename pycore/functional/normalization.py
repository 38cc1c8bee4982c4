"""batch_norm forward and backward (csrc/batchnorm.cpp); layer_norm (numpy)."""
from __future__ import annotations

__all__ = ["batch_norm", "batch_norm_forward", "batch_norm_backward", "layer_norm", "layer_norm_forward",
           "layer_norm_backward"]
import math
from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from .. import _C
from .._checks import context, float_array, grad_like, gradient_buffer, real, shape_matches

BatchNormContext = namedtuple("BatchNormContext", "input mean invstd weight training")
BatchNormContext.__doc__ = """batch_norm_forward's ctx.

Attributes:
    input: the (N, C, ...) input, C-contiguous.
    mean: (C,) the per-channel mean it normalised with (the batch's in training, the
        running one otherwise).
    invstd: (C,) 1 / sqrt(var + eps) it normalised with, likewise.
    weight: (C,) or None.
    training: whether the statistics came from the batch (a bool).
"""
LayerNormContext = namedtuple("LayerNormContext", "input normalized_shape mean invstd weight")
LayerNormContext.__doc__ = """layer_norm_forward's ctx (k = len(normalized_shape)).

Attributes:
    input: the input x.
    normalized_shape: the trailing shape normalised over, a tuple.
    mean: the per-sample mean, shape x.shape[:-k] + (1,) * k.
    invstd: 1 / sqrt(var + eps), the same shape.
    weight: normalized_shape, or None.
"""


def _channel_array(a: np.ndarray, name: str, C: int, dtype: np.dtype, writeable: bool = False) -> np.ndarray:
    """a as a (C,) array of dtype; writeable=True: a buffer updated in place, so it must
    already be a C-contiguous writeable array of dtype (a copy would lose the writes)."""
    if writeable:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array (it is updated in place), got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{name}: dtype {a.dtype} does not match the input's dtype {dtype}")
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"{name}: must be C-contiguous and writeable (it is updated in place)")
    else:
        a = float_array(a, name, dtype=dtype)
    if a.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},) (one value per channel), got {a.shape}")
    return a


def _optional_channel_array(a: np.ndarray | None, name: str, C: int, dtype: np.dtype,
                            writeable: bool = False) -> np.ndarray | None:
    """None for None (an argument left out), else _channel_array(a, ...)."""
    return None if a is None else _channel_array(a, name, C, dtype, writeable)


def _channel_view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(outer, channels, inner) = (N, C, prod(spatial)): the kernels' view of an (N, C, ...) array."""
    return shape[0], shape[1], math.prod(shape[2:])


def batch_norm_forward(x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
                       weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
                       momentum: float = 0.1, eps: float = 1e-5) -> tuple[np.ndarray, BatchNormContext]:
    """batch_norm, and what batch_norm_backward needs.

    Args:
        x: (N, C, ...) float32 or float64 array, 2 to 5 axes.
        running_mean: (C,) or None, as batch_norm (updated in place when training).
        running_var: (C,) or None, as batch_norm (updated in place when training).
        weight: (C,) or None (default).
        bias: (C,) or None (default).
        training: normalise with the batch's statistics (default False).
        momentum: the running statistics' update rate (default 0.1).
        eps: > 0, added to the variance (default 1e-5).

    Returns:
        (y, ctx) with y = batch_norm(...), x's shape and dtype; ctx = BatchNormContext(input,
        mean, invstd, weight, training) with the statistics y was normalised with.
    """
    x = float_array(x, "input", ndim=(2, 3, 4, 5), layout="(N, C, ...)")
    C = x.shape[1]
    running_mean = _optional_channel_array(running_mean, "running_mean", C, x.dtype, writeable=True)
    running_var = _optional_channel_array(running_var, "running_var", C, x.dtype, writeable=True)
    weight = _optional_channel_array(weight, "weight", C, x.dtype)
    bias = _optional_channel_array(bias, "bias", C, x.dtype)
    momentum, eps = real(momentum, "momentum"), real(eps, "eps", minimum=0, exclusive_minimum=True)
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm: running_mean and running_var are required when training=False")
    if training and x.size // C <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                         f"got input of shape {x.shape}")
    y = np.empty_like(x)
    mean = np.empty(C, dtype=x.dtype)
    invstd = np.empty(C, dtype=x.dtype)
    _C.batch_norm_forward(y, mean, invstd, x, weight, bias, running_mean, running_var, *_channel_view(x.shape),
                          bool(training), momentum, eps)
    return y, BatchNormContext(x, mean, invstd, weight, bool(training))


def batch_norm(x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """Batch normalisation of x (N, C, ...) per channel c, as torch.nn.functional.batch_norm:

        y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c

    training=True: mean_c and var_c (biased) come from the batch, and running_mean /
    running_var (C,) are updated in place when given:
        running = (1 - momentum) * running + momentum * batch_statistic
    (running_var takes the unbiased variance, M/(M-1) var_c, M = N * H * W).
    training=False: mean_c and var_c are running_mean and running_var.

    Args:
        x: (N, C, ...) float32 or float64 array, 2 to 5 axes (more than one value per
            channel when training).
        running_mean: (C,) C-contiguous writeable array of x's dtype, or None (only when
            training; then running_var is None too).
        running_var: (C,) likewise.
        weight: (C,) scale, or None (default: no scale).
        bias: (C,) shift, or None (default: no shift).
        training: normalise with the batch's statistics and update the running ones
            (default False: normalise with the running ones).
        momentum: the running statistics' update rate (default 0.1).
        eps: > 0, added to the variance (default 1e-5).

    Returns:
        y, a new array of x's shape and dtype.
    """
    return batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum, eps)[0]


def batch_norm_backward(grad_output: np.ndarray, ctx: BatchNormContext, grad_weight: np.ndarray | None = None,
                        grad_bias: np.ndarray | None = None, need_input_grad: bool = True) -> np.ndarray | None:
    """Gradients of batch_norm, given dL/dy and batch_norm_forward's ctx.

    With xhat = (x - mean) * invstd and g = grad_output, sums and means per channel over
    N and the spatial axes:
        dL/dweight_c = sum(g * xhat),   dL/dbias_c = sum(g)
        dL/dx (training) = weight_c invstd_c (g - mean(g) - xhat mean(g xhat))
        dL/dx (eval)     = weight_c invstd_c g
    (weight_c = 1 without a weight).

    Args:
        grad_output: dL/dy, x's shape and dtype.
        ctx: batch_norm_forward's BatchNormContext.
        grad_weight: (C,) C-contiguous writeable array of x's dtype that dL/dweight is
            ADDED into, or None (default: not computed).
        grad_bias: (C,) likewise for dL/dbias, or None (default).
        need_input_grad: False skips dL/dx (default True).

    Returns:
        dL/dx, a new array of x's shape and dtype; None when need_input_grad is False.
    """
    x, mean, invstd, weight, training = context(ctx, BatchNormContext, "batch_norm")
    x = float_array(x, "input", ndim=(2, 3, 4, 5), layout="(N, C, ...)")
    grad_output = grad_like(grad_output, x, "the input's")
    C = x.shape[1]
    mean = _channel_array(mean, "mean", C, x.dtype)  # required: a None (an edited ctx) raises here, not in C++
    invstd = _channel_array(invstd, "invstd", C, x.dtype)
    weight = _optional_channel_array(weight, "weight", C, x.dtype)
    grad_weight = _optional_channel_array(grad_weight, "grad_weight", C, x.dtype, writeable=True)
    grad_bias = _optional_channel_array(grad_bias, "grad_bias", C, x.dtype, writeable=True)
    grad_input = np.empty_like(x) if need_input_grad else None
    _C.batch_norm_backward(grad_input, grad_weight, grad_bias, grad_output, x, mean, invstd, weight,
                           *_channel_view(x.shape), bool(training))
    return grad_input


def _layer_norm_shapes(x: np.ndarray, normalized_shape: Sequence[int]) -> tuple[int, ...]:
    """The trailing axes layer_norm reduces over; ValueError unless x ends with normalized_shape."""
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if x.ndim < k or x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"layer_norm: expected an input whose last {k} dims are {normalized_shape}, "
                         f"got shape {x.shape}")
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm_forward(x: np.ndarray, normalized_shape: Sequence[int], weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5) -> tuple[np.ndarray, LayerNormContext]:
    """layer_norm, and what layer_norm_backward needs.

    Args:
        x: float32 or float64 array whose last k axes are normalized_shape.
        normalized_shape: the k trailing sizes to normalise over.
        weight: normalized_shape, or None (default).
        bias: normalized_shape, or None (default).
        eps: > 0 (default 1e-5).

    Returns:
        (y, ctx) with y = layer_norm(...), x's shape and dtype; ctx = LayerNormContext(input,
        normalized_shape, mean, invstd, weight), mean and invstd of shape
        x.shape[:-k] + (1,) * k.
    """
    x = float_array(x, "input")
    axes = _layer_norm_shapes(x, normalized_shape)
    trailing = x.shape[axes[0]:]
    weight = None if weight is None else float_array(weight, "weight", dtype=x.dtype)
    bias = None if bias is None else float_array(bias, "bias", dtype=x.dtype)
    for a, name in ((weight, "weight"), (bias, "bias")):
        if a is not None:
            shape_matches(a, trailing, name)
    eps = real(eps, "eps", minimum=0, exclusive_minimum=True)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    # Biased variance, as PyTorch; computed in the input's dtype (float32 statistics on
    # float32 input: sums of at most a row of a few thousand values).
    invstd = 1.0 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + x.dtype.type(eps))
    y = centered * invstd
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y, LayerNormContext(x, tuple(normalized_shape), mean, invstd, weight)


def layer_norm(x: np.ndarray, normalized_shape: Sequence[int], weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """Layer normalisation over the last k = len(normalized_shape) axes, as
    torch.nn.functional.layer_norm:  y = (x - mean) / sqrt(var + eps) * weight + bias,
    mean and biased var per sample over those axes.

    Args:
        x: float32 or float64 array whose last k axes are normalized_shape.
        normalized_shape: the k trailing sizes to normalise over (a tuple or list).
        weight: scale of shape normalized_shape, or None (default).
        bias: shift of shape normalized_shape, or None (default).
        eps: > 0, added to the variance (default 1e-5).

    Returns:
        y, a new array of x's shape and dtype.
    """
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(grad_output: np.ndarray, ctx: LayerNormContext, grad_weight: np.ndarray | None = None,
                        grad_bias: np.ndarray | None = None, need_input_grad: bool = True) -> np.ndarray | None:
    """Gradients of layer_norm given dL/dy and layer_norm_forward's ctx.

    With xhat = (x - mean) invstd: dL/dweight = the sum over the leading axes of
    grad_output * xhat, dL/dbias = the sum of grad_output over them, and
    dL/dx = invstd (g - mean(g) - xhat mean(g xhat)), g = grad_output * weight and the
    means over the normalized axes.

    Args:
        grad_output: dL/dy, x's shape and dtype.
        ctx: layer_norm_forward's LayerNormContext.
        grad_weight: normalized_shape C-contiguous writeable array of x's dtype that
            dL/dweight is ADDED into, or None (default).
        grad_bias: normalized_shape likewise for dL/dbias, or None (default).
        need_input_grad: False skips dL/dx (default True).

    Returns:
        dL/dx, a new array of x's shape and dtype; None when need_input_grad is False.
    """
    x, normalized_shape, mean, invstd, weight = context(ctx, LayerNormContext, "layer_norm")
    x = float_array(x, "input")
    axes = _layer_norm_shapes(x, normalized_shape)
    grad_output = grad_like(grad_output, x, "the input's")
    stats_shape = x.shape[:axes[0]] + (1,) * len(axes)
    mean = float_array(mean, "mean", dtype=x.dtype)
    invstd = float_array(invstd, "invstd", dtype=x.dtype)
    shape_matches(mean, stats_shape, "mean")
    shape_matches(invstd, stats_shape, "invstd")
    trailing, leading = x.shape[axes[0]:], tuple(range(axes[0]))
    weight = None if weight is None else float_array(weight, "weight", dtype=x.dtype)
    if weight is not None:
        shape_matches(weight, trailing, "weight")
    grad_weight = gradient_buffer(grad_weight, "grad_weight", trailing, x.dtype)
    grad_bias = gradient_buffer(grad_bias, "grad_bias", trailing, x.dtype)
    xhat = (x - mean) * invstd
    if grad_weight is not None:
        grad_weight += (grad_output * xhat).sum(axis=leading)
    if grad_bias is not None:
        grad_bias += grad_output.sum(axis=leading)
    if not need_input_grad:
        return None
    g = grad_output * weight if weight is not None else grad_output
    return invstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
