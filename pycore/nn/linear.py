"""Linear (fully connected) and Flatten layers."""
from __future__ import annotations

__all__ = ["Linear", "Flatten"]
import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _C
from .. import functional as F
from .._checks import integer
from ..functional.fused import activation_code
from ..functional.linalg import LinearContext
from . import init
from .module import Module, Parameter

# Input shapes whose checked calls Linear and Flatten remember (a training and an evaluation
# batch size, a smaller last batch...); past this they start over.
_SHAPES_KEPT = 8


class Linear(Module):
    """y = x @ weight.T + bias, applied to the last axis, as torch.nn.Linear.

    Args:
        in_features (int): size of each input's last axis.
        out_features (int): size of each output's last axis.
        bias (bool, default True): add a learnable bias.
        dtype (np.float32 or np.float64, default np.float32).

    Shape:
        input (*, in_features) -> output (*, out_features); works on (N, in) and on
        sequences (N, T, in) alike.

    Attributes:
        weight (Parameter): (out_features, in_features), initialised as PyTorch does:
            U(-1/sqrt(in_features), 1/sqrt(in_features)).
        bias (Parameter or None): (out_features,), with the same distribution.

    Backward: `backward(grad_output)` adds into weight.grad and bias.grad and returns the
    gradient of the input, or None when `requires_input_grad` is False.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.in_features = integer(in_features, "in_features", minimum=1)
        self.out_features = integer(out_features, "out_features", minimum=1)
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, self.dtype))
        self.bias = Parameter(init.bias_uniform(shape, self.out_features, self.dtype)) if bias else None
        # (input shape, activation, slope) -> what a checked F.linear call needs again (_remember_checked)
        self._checked_calls: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The affine map of each input row.

        Args:
            x (np.ndarray): (*, in_features), of the layer's dtype.

        Returns:
            np.ndarray: x @ weight.T + bias, (*, out_features).
        """
        return self._fused_forward(x)

    def _fused_forward(self, x: Any, activation: str | None = None, negative_slope: float = 0.01) -> np.ndarray:
        """forward, or forward fused with the activation after it (nn/fusion.py)."""
        x = self._check_input(x)  # C-contiguous, of the layer's dtype
        weight, bias = self.weight.data, None if self.bias is None else self.bias.data
        checked = self._checked_calls.get((x.shape, activation, negative_slope))
        if checked is not None and checked[0] is weight and checked[1] is bias:
            # F.linear checked this input shape with these very arrays before: only the GEMM
            # runs (its checks cost ~2-4 us, as much as a batch-8 Linear(16, 16) itself).
            rows, out_shape, code, slope = checked[2:]
            y = np.empty((rows, self.out_features), dtype=x.dtype)
            _C.gemm(x.reshape(rows, self.in_features), weight, y, False, True, 1.0, 0.0, None, bias, code, slope)
            y, ctx = y.reshape(out_shape), LinearContext(x, weight)  # what F.linear_forward's ctx holds
        else:
            if x.ndim < 1 or x.shape[-1] != self.in_features:
                raise ValueError(f"Linear: expected input with {self.in_features} features on the last axis, "
                                 f"got shape {x.shape}")
            y, ctx = F.linear_forward(x, weight, bias, activation=activation, negative_slope=negative_slope)
            self._remember_checked(x.shape, activation, negative_slope, weight, bias)
        self._save_for_backward(ctx)
        return y

    def _remember_checked(self, shape: tuple[int, ...], activation: str | None, negative_slope: float,
                          weight: np.ndarray, bias: np.ndarray | None) -> None:
        """Remember a call F.linear accepted, to skip its checks for the same input shape and
        the same weight and bias arrays (kept here, so their identity cannot be reused). Only
        arrays the GEMM reads in place qualify: C-contiguous, of the layer's dtype."""
        if not (weight.flags.c_contiguous and weight.dtype == self.dtype
                and (bias is None or (bias.flags.c_contiguous and bias.dtype == self.dtype))):
            return
        if len(self._checked_calls) >= _SHAPES_KEPT:
            self._checked_calls.clear()
        code, slope = activation_code(activation, negative_slope)
        self._checked_calls[shape, activation, negative_slope] = (
            weight, bias, math.prod(shape[:-1]), shape[:-1] + (self.out_features,), code, slope)

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradients of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output,
                (*, out_features), of the layer's dtype.

        Returns:
            np.ndarray or None: the input's gradient, grad_output @ weight, (*, in_features);
            None when `requires_input_grad` is False. grad_output^T @ x (over every leading
            axis) is added into `weight.grad`, grad_output's sum into `bias.grad` (+=;
            skipped for a frozen one).
        """
        (ctx,) = self._pop_saved()
        grad_output = self._check_input(grad_output, "grad_output")
        return F.linear_backward(grad_output, ctx, self.weight.grad_buffer(),
                                 None if self.bias is None else self.bias.grad_buffer(),
                                 need_input_grad=self.requires_input_grad)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flatten dims start_dim..end_dim into one (default: all but the batch axis), as torch.nn.Flatten.

    Args:
        start_dim (int, default 1): the first axis merged (negative: from the end).
        end_dim (int, default -1): the last axis merged, at or after start_dim.
        dtype (np.float32 or np.float64, default np.float32): unused (no parameters); the
            layer takes either float dtype.

    Shape:
        input (N, *dims) -> output (N, prod(dims)) with the defaults; in general the axes
        start_dim..end_dim become one of their sizes' product, the others are unchanged.
        A bad start_dim/end_dim for the input's rank raises IndexError, as in PyTorch.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.start_dim, self.end_dim = integer(start_dim, "start_dim"), integer(end_dim, "end_dim")
        self._shapes: dict[tuple[Any, ...], tuple[int, ...]] = {}  # (input shape, start_dim, end_dim) -> output shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Merge axes start_dim..end_dim of x.

        Args:
            x (np.ndarray): a float array with at least one axis.

        Returns:
            np.ndarray: x reshaped, a view of it (no copy).
        """
        x = self._check_input(x)
        shape = self._shapes.get((x.shape, self.start_dim, self.end_dim))
        if shape is None:
            shape = self._flattened_shape(x.shape)
        self._save_for_backward(x.shape)
        return x.reshape(shape)

    def _flattened_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input shape, checked and remembered (the same few shapes
        come every step: the checks cost ~5 us a call, as much as the rest of the layer)."""
        ndim = len(in_shape)
        if ndim < 1:
            raise ValueError(f"Flatten: input: expected an array with at least 1 dimension, got shape {in_shape}")
        # PyTorch's rules: each dim in [-ndim, ndim - 1] (IndexError, as torch), start <= end.
        for name, dim in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -ndim <= dim < ndim:
                raise IndexError(f"Flatten: {name}={dim} is out of range for an input of shape {in_shape} "
                                 f"(expected a value in [{-ndim}, {ndim - 1}])")
        start, end = self.start_dim % ndim, self.end_dim % ndim
        if start > end:
            raise ValueError(f"Flatten: start_dim={self.start_dim} comes after end_dim={self.end_dim} "
                             f"for an input of shape {in_shape}")
        shape = in_shape[:start] + (math.prod(in_shape[start:end + 1]),) + in_shape[end + 1:]
        if len(self._shapes) >= _SHAPES_KEPT:
            self._shapes.clear()
        self._shapes[in_shape, self.start_dim, self.end_dim] = shape
        return shape

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """The gradient, reshaped back.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of the
                output's size.

        Returns:
            np.ndarray or None: grad_output reshaped to the input's shape; None when
            `requires_input_grad` is False.
        """
        (shape,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.size != math.prod(shape):
            raise ValueError(f"Flatten.backward: grad_output has shape {grad_output.shape}, "
                             f"which does not reshape to the input's {shape}")
        return grad_output.reshape(shape)
