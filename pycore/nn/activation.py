"""ReLU, LeakyReLU, PReLU, Sigmoid, Tanh, GELU, SiLU, Softmax, LogSoftmax: elementwise layers.

Each is a thin holder around a pycore.functional pair: forward runs F.<op>_forward and
keeps its ctx (_save_for_backward), backward pops it and runs F.<op>_backward. All but
PReLU have no parameters; PReLU's learnable slope gets its gradient in backward even when
`requires_input_grad` is False (backward then returns None but still adds weight.grad).
"""
__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Softmax", "LogSoftmax"]
import warnings

import numpy as np

from .. import functional as F
from .._checks import choice, integer, real
from .module import Module, Parameter


class _Activation(Module):
    """forward = F.<op>_forward(x, *self._arguments()), backward = F.<op>_backward(grad_output, ctx).

    Subclasses name the pair (`_forward_fn`, `_backward_fn`) and, when the op takes
    hyper-parameters, return them from `_arguments`. One with a parameter overrides
    `_backward` to pass its gradient buffer (PReLU).
    """

    _forward_fn = _backward_fn = None

    def _arguments(self):
        return ()

    def forward(self, x):
        x = self._check_input(x)
        y, ctx = self._forward_fn(x, *self._arguments())
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output):
        (ctx,) = self._pop_saved()
        return self._backward(grad_output, ctx)

    def _backward(self, grad_output, ctx):
        """dL/dx from ctx; None when requires_input_grad is False (nothing else to compute)."""
        if not self.requires_input_grad:
            return None
        return self._backward_fn(self._check_input(grad_output, "grad_output"), ctx)


class ReLU(_Activation):
    """ReLU(x) = max(x, 0), elementwise. Shape: any; output as input."""

    _forward_fn, _backward_fn = staticmethod(F.relu_forward), staticmethod(F.relu_backward)


class LeakyReLU(_Activation):
    """LeakyReLU(x) = x if x > 0 else negative_slope * x, elementwise.

    Args: negative_slope=0.01. Shape: any; output as input.
    """

    _forward_fn, _backward_fn = staticmethod(F.leaky_relu_forward), staticmethod(F.leaky_relu_backward)

    def __init__(self, negative_slope=0.01, dtype=np.float32):
        super().__init__(dtype)
        self.negative_slope = real(negative_slope, "negative_slope")

    def _arguments(self):
        return (self.negative_slope,)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class PReLU(_Activation):
    """PReLU(x) = x if x > 0 else weight * x, elementwise, with a learnable weight, as
    torch.nn.PReLU.

    Args: num_parameters=1 (1: one slope for every element; else one per channel, axis 1
    of the input, which must then have num_parameters entries), init=0.25 (the initial
    slope), dtype=np.float32.
    Shape: any (with num_parameters > 1: (N, C, *) with C = num_parameters); output as input.
    Attributes: weight (num_parameters,) (state_dict key "weight", as PyTorch's).
    backward adds dL/dweight into weight.grad (unless frozen) and returns dL/dx, or None
    when requires_input_grad is False.
    """

    _forward_fn, _backward_fn = staticmethod(F.prelu_forward), staticmethod(F.prelu_backward)

    def __init__(self, num_parameters=1, init=0.25, dtype=np.float32):
        super().__init__(dtype)
        self.num_parameters = integer(num_parameters, "num_parameters", minimum=1)
        self.init = real(init, "init")
        self.weight = Parameter(np.full(self.num_parameters, self.init, dtype=self.dtype))

    def _arguments(self):
        return (self.weight.data,)

    def _backward(self, grad_output, ctx):
        grad_output = self._check_input(grad_output, "grad_output")
        return F.prelu_backward(grad_output, ctx, self.weight.grad_buffer(), need_input_grad=self.requires_input_grad)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Sigmoid(_Activation):
    """Sigmoid(x) = 1 / (1 + exp(-x)), elementwise. Shape: any; output as input."""

    _forward_fn, _backward_fn = staticmethod(F.sigmoid_forward), staticmethod(F.sigmoid_backward)


class Tanh(_Activation):
    """Tanh(x) = tanh(x), elementwise. Shape: any; output as input."""

    _forward_fn, _backward_fn = staticmethod(F.tanh_forward), staticmethod(F.tanh_backward)


class GELU(_Activation):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF, elementwise (F.gelu, numpy).

    Args: approximate='none' (exact, via erf) or 'tanh' (PyTorch's tanh approximation).
    Shape: any; output as input.
    """

    _forward_fn, _backward_fn = staticmethod(F.gelu_forward), staticmethod(F.gelu_backward)

    def __init__(self, approximate="none", dtype=np.float32):
        super().__init__(dtype)
        self.approximate = choice(approximate, "approximate", ("none", "tanh"))

    def _arguments(self):
        return (self.approximate,)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """SiLU(x) = x * sigmoid(x) (swish), elementwise (F.silu, numpy). Shape: any; output as input."""

    _forward_fn, _backward_fn = staticmethod(F.silu_forward), staticmethod(F.silu_backward)


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

    _forward_fn, _backward_fn = staticmethod(F.softmax_forward), staticmethod(F.softmax_backward)

    def __init__(self, dim=None, dtype=np.float32):
        super().__init__(dtype)
        self.dim = None if dim is None else integer(dim, "dim")

    def forward(self, x):
        """x -> softmax(x) along self.dim, the same shape; keeps the output for backward."""
        x = self._check_input(x)
        dim = _legacy_softmax_dim(x.ndim) if self.dim is None else self.dim
        y, ctx = self._forward_fn(x, dim)  # ctx keeps the dim used, for backward
        self._save_for_backward(ctx)
        return y

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """LogSoftmax(x)_i = x_i - log(sum_j exp(x_j)) along axis `dim` (computed overflow-safe).

    Args: dim (None: PyTorch's deprecated implicit choice, with its warning).
    Shape: any; output as input.
    """

    _forward_fn, _backward_fn = staticmethod(F.log_softmax_forward), staticmethod(F.log_softmax_backward)
