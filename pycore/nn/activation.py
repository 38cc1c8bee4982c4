"""ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Softmax, LogSoftmax: elementwise layers without parameters.

Each forward keeps what its backward needs (the output, or LeakyReLU's input) and each
backward returns grad_input, or None when `requires_input_grad` is False.
"""
__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Softmax", "LogSoftmax"]
import warnings

import numpy as np

from .. import functional as F
from .._checks import choice, integer
from .module import Module


class _Activation(Module):
    """Shared forward/backward: subclasses say which function runs and what backward reads."""

    saves_input = False  # True: backward needs the input x; False: the output y

    def _forward(self, x):
        raise NotImplementedError

    def _backward(self, grad_output, saved):
        raise NotImplementedError

    def forward(self, x):
        x = self._check_input(x)
        y = self._forward(x)
        self._save_for_backward(x if self.saves_input else y)
        return y

    def backward(self, grad_output):
        (saved,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != saved.shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output has shape {grad_output.shape}, "
                             f"expected {saved.shape}")
        return self._backward(grad_output, saved)


class ReLU(_Activation):
    """ReLU(x) = max(x, 0), elementwise. Shape: any; output as input."""

    def _forward(self, x):
        return F.relu(x)

    def _backward(self, grad_output, y):
        return F.relu_backward(grad_output, y)


class LeakyReLU(_Activation):
    """LeakyReLU(x) = x if x > 0 else negative_slope * x, elementwise.

    Args: negative_slope=0.01. Shape: any; output as input.
    """

    saves_input = True

    def __init__(self, negative_slope=0.01, dtype=np.float32):
        super().__init__(dtype)
        F.leaky_relu(np.zeros(0, dtype=self.dtype), negative_slope)  # validates the slope now
        self.negative_slope = float(negative_slope)

    def _forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def _backward(self, grad_output, x):
        return F.leaky_relu_backward(grad_output, x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """Sigmoid(x) = 1 / (1 + exp(-x)), elementwise. Shape: any; output as input."""

    def _forward(self, x):
        return F.sigmoid(x)

    def _backward(self, grad_output, y):
        return F.sigmoid_backward(grad_output, y)


class Tanh(_Activation):
    """Tanh(x) = tanh(x), elementwise. Shape: any; output as input."""

    def _forward(self, x):
        return F.tanh(x)

    def _backward(self, grad_output, y):
        return F.tanh_backward(grad_output, y)


class GELU(_Activation):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF, elementwise (F.gelu, numpy).

    Args: approximate='none' (exact, via erf) or 'tanh' (PyTorch's tanh approximation).
    Shape: any; output as input.
    """

    saves_input = True

    def __init__(self, approximate="none", dtype=np.float32):
        super().__init__(dtype)
        self.approximate = choice(approximate, "approximate", ("none", "tanh"))

    def _forward(self, x):
        return F.gelu(x, self.approximate)

    def _backward(self, grad_output, x):
        return F.gelu_backward(grad_output, x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """SiLU(x) = x * sigmoid(x) (swish), elementwise (F.silu, numpy). Shape: any; output as input."""

    saves_input = True

    def _forward(self, x):
        return F.silu(x)

    def _backward(self, grad_output, x):
        return F.silu_backward(grad_output, x)


def _legacy_softmax_dim(ndim):
    """torch's rule when no dim is given (deprecated there too): 0 for 0-, 1- and 3-D inputs, else 1."""
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Pass dim explicitly.",
                  UserWarning, stacklevel=4)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(_Activation):
    """Softmax(x)_i = exp(x_i) / sum_j exp(x_j) along axis `dim` (computed overflow-safe).

    Args: dim (None: PyTorch's deprecated implicit choice, with its warning).
    Shape: any; output as input, each slice along `dim` summing to 1.
    """

    _log = False

    def __init__(self, dim=None, dtype=np.float32):
        super().__init__(dtype)
        self.dim = None if dim is None else integer(dim, "dim")

    def _axis(self, ndim):
        return _legacy_softmax_dim(ndim) if self.dim is None else self.dim

    def forward(self, x):
        x = self._check_input(x)
        self._used_dim = self._axis(x.ndim)
        y = (F.log_softmax if self._log else F.softmax)(x, self._used_dim)
        self._save_for_backward(y, self._used_dim)
        return y

    def backward(self, grad_output):
        y, dim = self._pop_saved()
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        backward = F.log_softmax_backward if self._log else F.softmax_backward
        return backward(grad_output, y, dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """LogSoftmax(x)_i = x_i - log(sum_j exp(x_j)) along axis `dim` (computed overflow-safe).

    Args: dim (None: PyTorch's deprecated implicit choice, with its warning).
    Shape: any; output as input.
    """

    _log = True
