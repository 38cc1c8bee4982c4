"""Weight initialisation with PyTorch's names and formulas (torch.nn.init), drawn from
pycore's seeded generator (pycore.manual_seed).

The trailing-underscore functions fill a Parameter's data (or a writeable float numpy
array) in place and return it:

    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)

Fans follow calculate_fan_in_and_fan_out: for a weight of shape (out, in, *kernel),
fan_in = in * prod(kernel) and fan_out = out * prod(kernel). The same draws as PyTorch's
cannot be had (another generator), the same distributions are.

uniform, kaiming_uniform and bias_uniform (no underscore) make new arrays: the layers'
default initialisation, as PyTorch's layers do it.
"""
__all__ = ["calculate_gain", "calculate_fan_in_and_fan_out", "uniform_", "normal_", "constant_", "ones_",
           "zeros_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]
import math
from collections.abc import Sequence
from typing import Any, Optional, TypeVar, Union

import numpy as np
from numpy.typing import DTypeLike

from .._checks import choice, real
from .._context import default_generator
from .module import Parameter

# What the in-place initialisers fill and return: a Parameter, or a float numpy array.
Tensor = TypeVar("Tensor", Parameter, np.ndarray)


def uniform(shape: tuple[int, ...], bound: float, dtype: DTypeLike) -> np.ndarray:
    """U(-bound, bound) samples of `shape`, as `dtype`."""
    return default_generator().uniform(-bound, bound, size=shape).astype(dtype)


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape, PyTorch's rule; ValueError below 2 dimensions."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out cannot be computed for a weight with fewer than 2 dimensions, "
                         f"got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def fan_in(shape: Sequence[int]) -> int:
    """Inputs feeding one output: shape[1] * prod(kernel dims), as PyTorch computes it."""
    return _fans(shape)[0]


def kaiming_uniform(shape: tuple[int, ...], dtype: DTypeLike, a: float = math.sqrt(5)) -> np.ndarray:
    """PyTorch's default for Linear and Conv weights: kaiming_uniform_(a=sqrt(5)), i.e.
    U(-b, b) with b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)) -> b = 1/sqrt(fan_in)."""
    return uniform(shape, calculate_gain("leaky_relu", a) * math.sqrt(3.0 / max(1, fan_in(shape))), dtype)


def bias_uniform(weight_shape: tuple[int, ...], out_features: int, dtype: DTypeLike) -> np.ndarray:
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fi = fan_in(weight_shape)
    return uniform((out_features,), 1.0 / math.sqrt(fi) if fi > 0 else 0.0, dtype)


# -- torch.nn.init ---------------------------------------------------------------------
_LINEAR_GAINS = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d", "sigmoid")
_NONLINEARITIES = _LINEAR_GAINS + ("tanh", "relu", "leaky_relu", "selu")


def _finite(value: Any, name: str) -> float:
    return real(value, name, finite=True)


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain.

    Args:
        nonlinearity (str): 'linear', 'identity', 'conv1d', 'conv2d', 'conv3d',
            'conv_transpose1d/2d/3d', 'sigmoid', 'tanh', 'relu', 'leaky_relu' or 'selu'.
        param (float or None, default None): leaky_relu's negative slope (None: 0.01);
            ignored otherwise.

    Returns:
        float: 1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for relu,
        sqrt(2 / (1 + slope^2)) for leaky_relu, 3/4 for selu.
    """
    choice(nonlinearity, "nonlinearity", _NONLINEARITIES)
    if nonlinearity in _LINEAR_GAINS:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    slope = 0.01 if param is None else _finite(param, "param")
    return math.sqrt(2.0 / (1 + slope ** 2))


def _target(tensor: Any) -> np.ndarray:
    """The array to fill: a Parameter's data, or a writeable float numpy array."""
    array = tensor.data if isinstance(tensor, Parameter) else tensor
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise TypeError(f"expected a Parameter or a float numpy array, got {type(tensor).__name__}")
    if not array.flags.writeable:
        raise ValueError("the array is read-only; it is filled in place")
    return array


def calculate_fan_in_and_fan_out(tensor: Union[Parameter, np.ndarray, Sequence[int]]) -> tuple[int, int]:
    """The fans of a weight, as torch.nn.init's private helper of that name.

    Args:
        tensor (Parameter, float array, or a shape as a tuple/list): at least 2 dimensions,
            (out, in, *kernel).

    Returns:
        (int, int): (fan_in, fan_out) = (in * prod(kernel), out * prod(kernel)).
    """
    shape = tuple(tensor) if isinstance(tensor, (tuple, list)) else _target(tensor).shape
    return _fans(shape)


def _fill(tensor: Tensor, values: Any) -> Tensor:
    array = _target(tensor)
    array[...] = values
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b), in place.

    Args:
        tensor (Parameter or writeable float array): filled in place.
        a (float, default 0.0): the lower bound.
        b (float, default 1.0): the upper bound, >= a.

    Returns:
        tensor, the same object.
    """
    a, b = _finite(a, "a"), _finite(b, "b")
    if a > b:
        raise ValueError(f"uniform_: expected a <= b, got a={a}, b={b}")
    return _fill(tensor, default_generator().uniform(a, b, size=_target(tensor).shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std^2), in place.

    Args:
        tensor (Parameter or writeable float array): filled in place.
        mean (float, default 0.0): the mean.
        std (float, default 1.0): the standard deviation, >= 0.

    Returns:
        tensor, the same object.
    """
    mean, std = _finite(mean, "mean"), _finite(std, "std")
    if std < 0:
        raise ValueError(f"normal_: expected std >= 0, got {std}")
    return _fill(tensor, default_generator().normal(mean, std, size=_target(tensor).shape))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with val, in place.

    Args:
        tensor (Parameter or writeable float array): filled in place.
        val (float): a finite value.

    Returns:
        tensor, the same object.
    """
    return _fill(tensor, _finite(val, "val"))


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones, in place.

    Args:
        tensor (Parameter or writeable float array): filled in place.

    Returns:
        tensor, the same object.
    """
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros, in place.

    Args:
        tensor (Parameter or writeable float array): filled in place.

    Returns:
        tensor, the same object.
    """
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)), in place.

    Args:
        tensor (Parameter or writeable float array): at least 2 dimensions; filled in place.
        gain (float, default 1.0): e.g. calculate_gain(nonlinearity).

    Returns:
        tensor, the same object.
    """
    fi, fo = _fans(_target(tensor).shape)
    bound = _finite(gain, "gain") * math.sqrt(6.0 / (fi + fo))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)), in place.

    Args:
        tensor (Parameter or writeable float array): at least 2 dimensions; filled in place.
        gain (float, default 1.0): e.g. calculate_gain(nonlinearity).

    Returns:
        tensor, the same object.
    """
    fi, fo = _fans(_target(tensor).shape)
    return normal_(tensor, 0.0, _finite(gain, "gain") * math.sqrt(2.0 / (fi + fo)))


def _kaiming_std(tensor: Any, a: float, mode: str, nonlinearity: str) -> float:
    choice(mode, "mode", ("fan_in", "fan_out"))
    fi, fo = _fans(_target(tensor).shape)
    fan = fi if mode == "fan_in" else fo
    if fan == 0:
        raise ValueError(f"kaiming init: the weight of shape {_target(tensor).shape} has {mode} = 0")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     ) -> Tensor:
    """He: U(-b, b), b = sqrt(3) * gain / sqrt(fan), gain = calculate_gain(nonlinearity, a),
    in place.

    Args:
        tensor (Parameter or writeable float array): at least 2 dimensions; filled in place.
        a (float, default 0.0): leaky_relu's negative slope.
        mode ('fan_in' or 'fan_out', default 'fan_in'): the fan used; 'fan_in' keeps the
            forward pass's variance, 'fan_out' the backward pass's.
        nonlinearity (str, default 'leaky_relu'): as calculate_gain takes it (PyTorch's
            default too; 'relu' is the usual choice after a ReLU).

    Returns:
        tensor, the same object.
    """
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    ) -> Tensor:
    """He: N(0, std^2), std = gain / sqrt(fan), in place.

    Args:
        tensor (Parameter or writeable float array): at least 2 dimensions; filled in place.
        a, mode, nonlinearity: as kaiming_uniform_'s.

    Returns:
        tensor, the same object.
    """
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def orthogonal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Fill with a (semi-)orthogonal matrix (Saxe et al.) of shape (rows, numel / rows),
    times gain, in place: the QR decomposition of a normal matrix, signs fixed by diag(R),
    as PyTorch.

    Args:
        tensor (Parameter or writeable float array): at least 2 dimensions; filled in place.
        gain (float, default 1.0): the scale.

    Returns:
        tensor, the same object.
    """
    array = _target(tensor)
    if array.ndim < 2:
        raise ValueError(f"orthogonal_: only arrays with 2 or more dimensions are supported, got shape {array.shape}")
    gain = _finite(gain, "gain")
    rows = array.shape[0]
    cols = array.size // rows if rows else 0
    flat = default_generator().standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (gain * q).reshape(array.shape))
