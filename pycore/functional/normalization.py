"""batch_norm forward and backward (csrc/batchnorm.cpp)."""
__all__ = ["batch_norm", "batch_norm_with_stats", "batch_norm_backward"]
import numbers

import numpy as np

from .. import _C
from .._checks import float_array


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


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    return float(value)


def batch_norm_with_stats(x, running_mean, running_var, weight=None, bias=None, training=False,
                          momentum=0.1, eps=1e-5):
    """batch_norm returning (y, mean, invstd): the statistics used, for batch_norm_backward."""
    x = float_array(x, "input", ndim=(2, 3, 4, 5), layout="(N, C, ...)")
    C = x.shape[1]
    running_mean = _channel_array(running_mean, "running_mean", C, x.dtype, writeable=True)
    running_var = _channel_array(running_var, "running_var", C, x.dtype, writeable=True)
    weight = _channel_array(weight, "weight", C, x.dtype)
    bias = _channel_array(bias, "bias", C, x.dtype)
    momentum, eps = _real(momentum, "momentum"), _real(eps, "eps")
    if eps <= 0:
        raise ValueError(f"eps: expected a value > 0, got {eps}")
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
    _C.batch_norm_forward(y, mean, invstd, x, weight, bias, running_mean, running_var, bool(training),
                          momentum, eps)
    return y, mean, invstd


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
    return batch_norm_with_stats(x, running_mean, running_var, weight, bias, training, momentum, eps)[0]


def batch_norm_backward(grad_output, x, mean, invstd, weight=None, grad_weight=None, grad_bias=None,
                        training=True, need_input_grad=True):
    """Gradients of batch_norm, given its input x and the (mean, invstd) it used.

    Adds dL/dweight_c = sum(grad_output * xhat) into grad_weight and dL/dbias_c =
    sum(grad_output) into grad_bias (each when given), xhat = (x - mean) * invstd.
    Returns dL/dx (None when need_input_grad is False):
        training: weight_c invstd_c (g - mean(g) - xhat mean(g xhat))   (means over N, H, W)
        eval:     weight_c invstd_c g
    """
    x = float_array(x, "input", ndim=(2, 3, 4, 5), layout="(N, C, ...)")
    grad_output = float_array(grad_output, "grad_output", dtype=x.dtype)
    if grad_output.shape != x.shape:
        raise ValueError(f"grad_output: expected shape {x.shape}, got {grad_output.shape}")
    C = x.shape[1]
    mean = _channel_array(mean, "mean", C, x.dtype)
    invstd = _channel_array(invstd, "invstd", C, x.dtype)
    weight = _channel_array(weight, "weight", C, x.dtype)
    grad_weight = _channel_array(grad_weight, "grad_weight", C, x.dtype, writeable=True)
    grad_bias = _channel_array(grad_bias, "grad_bias", C, x.dtype, writeable=True)
    grad_input = np.empty_like(x) if need_input_grad else None
    _C.batch_norm_backward(grad_input, grad_weight, grad_bias, grad_output, x, mean, invstd, weight,
                           bool(training))
    return grad_input
