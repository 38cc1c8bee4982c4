"""batch_norm forward and backward (csrc/batchnorm.cpp); layer_norm (numpy)."""
__all__ = ["batch_norm", "batch_norm_forward", "batch_norm_backward", "layer_norm", "layer_norm_forward",
           "layer_norm_backward"]
import math
from collections import namedtuple

import numpy as np

from .. import _C
from .._checks import context, float_array, grad_like, gradient_buffer, real, shape_matches

BatchNormContext = namedtuple("BatchNormContext", "input mean invstd weight training")
BatchNormContext.__doc__ = """batch_norm_forward's ctx: the input, the per-channel mean and invstd
it normalised with (the batch's, or the running ones in eval), the weight (or None) and
whether the statistics came from the batch (training)."""
LayerNormContext = namedtuple("LayerNormContext", "input normalized_shape mean invstd weight")


def _channel_array(a, name, C, dtype, writeable=False):
    if a is None:
        return None
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


def _channel_view(shape):
    """(outer, channels, inner) = (N, C, prod(spatial)): the kernels' view of an (N, C, ...) array."""
    return shape[0], shape[1], math.prod(shape[2:])


def batch_norm_forward(x, running_mean, running_var, weight=None, bias=None, training=False,
                       momentum=0.1, eps=1e-5):
    """(y, BatchNormContext) of batch_norm (arguments as batch_norm)."""
    x = float_array(x, "input", ndim=(2, 3, 4, 5), layout="(N, C, ...)")
    C = x.shape[1]
    running_mean = _channel_array(running_mean, "running_mean", C, x.dtype, writeable=True)
    running_var = _channel_array(running_var, "running_var", C, x.dtype, writeable=True)
    weight = _channel_array(weight, "weight", C, x.dtype)
    bias = _channel_array(bias, "bias", C, x.dtype)
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


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation of x (N, C, ...) per channel c, as torch.nn.functional.batch_norm:

        y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c

    training=True: mean_c and var_c (biased) come from the batch, and running_mean /
    running_var (C,) are updated in place when given:
        running = (1 - momentum) * running + momentum * batch_statistic
    (running_var takes the unbiased variance, M/(M-1) var_c, M = N * H * W).
    training=False: mean_c and var_c are running_mean and running_var.
    weight, bias: (C,) or None (no scale / no shift).
    """
    return batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum, eps)[0]


def batch_norm_backward(grad_output, ctx, grad_weight=None, grad_bias=None, need_input_grad=True):
    """Gradients of batch_norm, given dL/dy and batch_norm_forward's ctx.

    Adds dL/dweight_c = sum(grad_output * xhat) into grad_weight and dL/dbias_c =
    sum(grad_output) into grad_bias (each when given), xhat = (x - mean) * invstd.
    Returns dL/dx (None when need_input_grad is False):
        training: weight_c invstd_c (g - mean(g) - xhat mean(g xhat))   (means over N, H, W)
        eval:     weight_c invstd_c g
    """
    x, mean, invstd, weight, training = context(ctx, BatchNormContext, "batch_norm")
    x = float_array(x, "input", ndim=(2, 3, 4, 5), layout="(N, C, ...)")
    grad_output = grad_like(grad_output, x, "the input's")
    C = x.shape[1]
    mean = _channel_array(mean, "mean", C, x.dtype)
    invstd = _channel_array(invstd, "invstd", C, x.dtype)
    weight = _channel_array(weight, "weight", C, x.dtype)
    grad_weight = _channel_array(grad_weight, "grad_weight", C, x.dtype, writeable=True)
    grad_bias = _channel_array(grad_bias, "grad_bias", C, x.dtype, writeable=True)
    grad_input = np.empty_like(x) if need_input_grad else None
    _C.batch_norm_backward(grad_input, grad_weight, grad_bias, grad_output, x, mean, invstd, weight,
                           *_channel_view(x.shape), bool(training))
    return grad_input


def _layer_norm_shapes(x, normalized_shape):
    """The trailing axes layer_norm reduces over; ValueError unless x ends with normalized_shape."""
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if x.ndim < k or x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"layer_norm: expected an input whose last {k} dims are {normalized_shape}, "
                         f"got shape {x.shape}")
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(y, LayerNormContext) of layer_norm; ctx's mean and invstd have shape
    x.shape[:-k] + (1,) * k."""
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


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the last len(normalized_shape) axes, as
    torch.nn.functional.layer_norm:  y = (x - mean) / sqrt(var + eps) * weight + bias,
    mean and biased var per sample over those axes; weight, bias: normalized_shape or None."""
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(grad_output, ctx, grad_weight=None, grad_bias=None, need_input_grad=True):
    """Gradients of layer_norm given dL/dy and layer_norm_forward's ctx.

    Adds dL/dweight = sum over the leading axes of grad_output * xhat into grad_weight and
    dL/dbias = sum of grad_output into grad_bias (each when given), xhat = (x - mean) invstd.
    Returns dL/dx = invstd (g - mean(g) - xhat mean(g xhat)), g = grad_output * weight and
    the means over the normalized axes (None when need_input_grad is False).
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
