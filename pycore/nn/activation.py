"""ReLU, LeakyReLU, PReLU, Sigmoid, Tanh, GELU, SiLU, Softmax, LogSoftmax: elementwise layers.

Each is a thin holder around a pycore.functional pair: forward runs F.<op>_forward and
keeps its ctx (_save_for_backward), backward pops it and runs F.<op>_backward. All but
PReLU have no parameters; PReLU's learnable slope gets its gradient in backward even when
`requires_input_grad` is False (backward then returns None but still adds weight.grad).
"""
from __future__ import annotations

__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Softmax", "LogSoftmax"]
import warnings
from typing import Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import choice, integer, real
from .module import Module, Parameter


class _Activation(Module):
    """forward = F.<op>_forward(x, *self._arguments()), backward = F.<op>_backward(grad_output, ctx).

    Subclasses name the pair (`_forward_fn`, `_backward_fn`) and, when the op takes
    hyper-parameters, return them from `_arguments`. One with a parameter overrides
    `_backward` to pass its gradient buffer (PReLU).
    """

    _forward_fn: Callable[..., tuple[np.ndarray, Any]]
    _backward_fn: Callable[..., np.ndarray | None]

    def _arguments(self) -> tuple[Any, ...]:
        return ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The activation of every element of x.

        Args:
            x (np.ndarray): a float32 or float64 array of any shape (PReLU: of its dtype,
                and with num_parameters > 1, (N, C, *) with C = num_parameters).

        Returns:
            np.ndarray: the activation, x's shape and dtype (a new array). Backward keeps
            what it needs (the output, or the input for GELU, SiLU, PReLU and LeakyReLU).
        """
        x = self._check_input(x)
        y, ctx = self._forward_fn(x, *self._arguments())
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradient of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of
                the output's shape.

        Returns:
            np.ndarray or None: the input's gradient, grad_output times the activation's
            derivative (for Softmax/LogSoftmax: the product with their Jacobian along
            `dim`), x's shape; None when `requires_input_grad` is False. PReLU adds its
            slope's gradient into `weight.grad` in both cases (unless the weight is frozen).
        """
        (ctx,) = self._pop_saved()
        return self._backward(grad_output, ctx)

    def _backward(self, grad_output: Any, ctx: Any) -> np.ndarray | None:
        """dL/dx from ctx; None when requires_input_grad is False (nothing else to compute)."""
        if not self.requires_input_grad:
            return None
        return self._backward_fn(self._check_input(grad_output, "grad_output"), ctx)


class ReLU(_Activation):
    """ReLU(x) = max(x, 0), elementwise.

    Args:
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.relu_forward), staticmethod(F.relu_backward)


class LeakyReLU(_Activation):
    """LeakyReLU(x) = x if x > 0 else negative_slope * x, elementwise.

    Args:
        negative_slope (float, default 0.01): the slope for x <= 0 (any real number).
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.leaky_relu_forward), staticmethod(F.leaky_relu_backward)

    def __init__(self, negative_slope: float = 0.01, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.negative_slope = real(negative_slope, "negative_slope")

    def _arguments(self) -> tuple[Any, ...]:
        return (self.negative_slope,)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class PReLU(_Activation):
    """PReLU(x) = x if x > 0 else weight * x, elementwise, with a learnable weight, as
    torch.nn.PReLU.

    Args:
        num_parameters (int, default 1): 1 for one slope shared by every element; else one
            slope per channel (axis 1 of the input, which must have num_parameters entries).
        init (float, default 0.25): the initial slope.
        dtype (np.float32 or np.float64, default np.float32): the weight's dtype, which the
            input must have.

    Shape:
        input (*) -> output (*), the same shape; with num_parameters > 1 the input is
        (N, C, *) with C = num_parameters.

    Attributes:
        weight (Parameter): (num_parameters,) (state_dict key "weight", as PyTorch's).
        num_parameters (int): as given (PyTorch's attribute). On a PReLU it hides pycore's
            Module.num_parameters() method: count with `sum(p.size for p in m.parameters())`.

    backward adds dL/dweight into weight.grad (unless frozen) and returns dL/dx, or None
    when requires_input_grad is False.
    """

    _forward_fn, _backward_fn = staticmethod(F.prelu_forward), staticmethod(F.prelu_backward)

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        # PyTorch's attribute name, which shadows Module's method num_parameters() on this class
        self.num_parameters = integer(num_parameters, "num_parameters", minimum=1)  # type: ignore[assignment]
        self.init = real(init, "init")
        self.weight = Parameter(np.full(self.num_parameters, self.init, dtype=self.dtype))

    def _arguments(self) -> tuple[Any, ...]:
        return (self.weight.data,)

    def _backward(self, grad_output: Any, ctx: Any) -> np.ndarray | None:
        grad_output = self._check_input(grad_output, "grad_output")
        return F.prelu_backward(grad_output, ctx, self.weight.grad_buffer(), need_input_grad=self.requires_input_grad)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Sigmoid(_Activation):
    """Sigmoid(x) = 1 / (1 + exp(-x)), elementwise.

    Args:
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.sigmoid_forward), staticmethod(F.sigmoid_backward)


class Tanh(_Activation):
    """Tanh(x) = tanh(x), elementwise.

    Args:
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.tanh_forward), staticmethod(F.tanh_backward)


class GELU(_Activation):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF, elementwise (F.gelu, numpy).

    Args:
        approximate ('none' or 'tanh', default 'none'): 'none' is exact (via erf); 'tanh'
            is PyTorch's tanh approximation
            0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.gelu_forward), staticmethod(F.gelu_backward)

    def __init__(self, approximate: str = "none", dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.approximate = choice(approximate, "approximate", ("none", "tanh"))

    def _arguments(self) -> tuple[Any, ...]:
        return (self.approximate,)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """SiLU(x) = x * sigmoid(x) (swish), elementwise (F.silu, numpy).

    Args:
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.silu_forward), staticmethod(F.silu_backward)


def _legacy_softmax_dim(ndim: int) -> int:
    """torch's rule when no dim is given (deprecated there too): 0 for 0-, 1- and 3-D inputs, else 1."""
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Pass dim explicitly.",
                  UserWarning, stacklevel=4)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(_Activation):
    """Softmax(x)_i = exp(x_i) / sum_j exp(x_j) along axis `dim` (computed overflow-safe).

    Args:
        dim (int or None, default None): the axis normalised (negative: from the end).
            None is PyTorch's deprecated implicit choice (axis 0 for 0-, 1- and 3-D inputs,
            else 1), with its UserWarning.
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape, each slice along `dim` summing to 1.
    """

    _forward_fn, _backward_fn = staticmethod(F.softmax_forward), staticmethod(F.softmax_backward)

    def __init__(self, dim: int | None = None, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.dim = None if dim is None else integer(dim, "dim")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Softmax (LogSoftmax: log-softmax) of x along `dim`.

        Args:
            x (np.ndarray): a float32 or float64 array of any shape.

        Returns:
            np.ndarray: x's shape and dtype. The output is kept for backward (with the
            axis used).
        """
        x = self._check_input(x)
        dim = _legacy_softmax_dim(x.ndim) if self.dim is None else self.dim
        y, ctx = self._forward_fn(x, dim)  # ctx keeps the dim used, for backward
        self._save_for_backward(ctx)
        return y

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """LogSoftmax(x)_i = x_i - log(sum_j exp(x_j)) along axis `dim` (computed overflow-safe).

    Args:
        dim (int or None, default None): the axis normalised, as Softmax's (None: PyTorch's
            deprecated implicit choice, with its warning).
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    _forward_fn, _backward_fn = staticmethod(F.log_softmax_forward), staticmethod(F.log_softmax_backward)
