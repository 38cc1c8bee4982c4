"""Weight initialisation, PyTorch's defaults, drawn from pycore's seeded generator."""
import math

import numpy as np

from .._context import default_generator


def uniform(shape, bound, dtype):
    """U(-bound, bound) samples of `shape`, as `dtype`."""
    return default_generator().uniform(-bound, bound, size=shape).astype(dtype)


def fan_in(shape):
    """Inputs feeding one output: shape[1] * prod(kernel dims), as PyTorch computes it."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive


def kaiming_uniform(shape, dtype, a=math.sqrt(5)):
    """PyTorch's default for Linear and Conv weights: kaiming_uniform_(a=sqrt(5)), i.e.
    U(-b, b) with b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)) -> b = 1/sqrt(fan_in)."""
    gain = math.sqrt(2.0 / (1.0 + a * a))
    return uniform(shape, gain * math.sqrt(3.0 / max(1, fan_in(shape))), dtype)


def bias_uniform(weight_shape, out_features, dtype):
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fi = fan_in(weight_shape)
    return uniform((out_features,), 1.0 / math.sqrt(fi) if fi > 0 else 0.0, dtype)
