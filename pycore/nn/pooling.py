"""MaxPool2d, AvgPool2d, ReLUMaxPool2d (ReLU then MaxPool2d in one pass, for fusion),
AdaptiveAvgPool2d and AdaptiveMaxPool2d."""
from __future__ import annotations

__all__ = ["MaxPool2d", "AvgPool2d", "ReLUMaxPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]
from typing import Any, Callable, Union

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import int_pair, integer
from .._context import is_grad_enabled
from .module import Module

_Pair = Union[int, tuple[int, int]]


def _max_pool2d_backward(grad_output: np.ndarray, ctx: Any) -> np.ndarray:
    """MaxPool2d's backward. After a fused ReLU + MaxPool2d (nn/fusion.py) its ctx is
    F.relu_max_pool2d_forward's, which holds the max-pooling ctx and ReLU's mask; run on its
    own (DistributedDataParallel runs each module's backward in turn) this layer is plain
    max pooling, and the ReLU module applies its own mask."""
    if isinstance(ctx, F.pooling.ReLUMaxPool2dContext):
        ctx = F.pooling.MaxPool2dContext(ctx.argmax, ctx.geometry)
    return F.max_pool2d_backward(grad_output, ctx)


class _Pool2d(Module):
    """What the pooling layers share: their arguments, and running a functional op on
    them with the error naming the layer. Each forward keeps the ctx of F.<op>_forward;
    under pycore.no_grad() the plain F.<op> runs instead (max pooling then computes no
    argmax: inference needs no backward)."""

    _backward_fn: Callable[..., np.ndarray]  # F.<op>_backward(grad_output, ctx), set by each layer

    def __init__(self, kernel_size: _Pair, stride: _Pair | None, padding: _Pair, ceil_mode: bool,
                 dtype: DTypeLike) -> None:
        super().__init__(dtype)
        self.kernel_size = int_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", minimum=1)
        self.padding = int_pair(padding, "padding", minimum=0)
        self.ceil_mode = bool(ceil_mode)

    def _run(self, op: Callable[..., Any], x: Any, *extra: Any) -> Any:
        """op(x, kernel_size, stride, padding, ceil_mode, *extra), the input checked for the
        layer and a bad geometry reported with its name. (F's geometry cache makes the
        checks ~1 us after a shape's first call.)"""
        x = self._check_input(x, ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")
        try:
            return op(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, *extra)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from None

    def _forward_with(self, op_forward: Callable[..., Any], op: Callable[..., Any], x: Any, *extra: Any) -> np.ndarray:
        """y, keeping op_forward's ctx while gradients are on; else y = op(...)."""
        if not is_grad_enabled():
            self._save_for_backward()  # keeps nothing, and drops an older forward's ctx
            return self._run(op, x, *extra)
        y, ctx = self._run(op_forward, x, *extra)
        self._save_for_backward(ctx)
        return y

    def _backward_with(self, op_backward: Callable[..., np.ndarray], grad_output: Any) -> np.ndarray | None:
        (ctx,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return op_backward(self._check_input(grad_output, "grad_output"), ctx)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradient of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of
                its shape.

        Returns:
            np.ndarray or None: the input's gradient, x's shape: each output's gradient
            sent to its window's maximum (MaxPool2d; ReLUMaxPool2d only where that maximum
            is positive) or spread evenly over its window (AvgPool2d, with the same divisor
            as forward); None when `requires_input_grad` is False.
        """
        return self._backward_with(self._backward_fn, grad_output)


class MaxPool2d(_Pool2d):
    """2-D max pooling: the maximum of each kernel_size window, moved by stride.

    Args:
        kernel_size (int or (kh, kw)): the window's size.
        stride (int, (sh, sw) or None, default None): the step between windows; None means
            kernel_size.
        padding (int or (ph, pw), default 0): implicit -inf added on both sides, at most
            half the kernel.
        ceil_mode (bool, default False): round the output size up, keeping only windows
            that start inside the input or its left padding.
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (N, C, H, W) or (C, H, W) -> output (N, C, H_out, W_out) or (C, H_out, W_out),
        H_out = floor((H + 2 * padding[0] - kernel_size[0]) / stride[0]) + 1   (ceil with ceil_mode)
        W_out likewise with the second entries.

    Backward sends each output's gradient to the input element that was its maximum.
    """

    _backward_fn = staticmethod(_max_pool2d_backward)

    def __init__(self, kernel_size: _Pair, stride: _Pair | None = None, padding: _Pair = 0,
                 ceil_mode: bool = False, dtype: DTypeLike = np.float32) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The maximum of each window.

        Args:
            x (np.ndarray): (N, C, H, W) or (C, H, W), float32 or float64.

        Returns:
            np.ndarray: (N, C, H_out, W_out) or (C, H_out, W_out) (see the class's Shape).
            Outside pycore.no_grad() the argmax of each window is kept for backward.
        """
        return self._forward_with(F.max_pool2d_forward, F.max_pool2d, x)


class AvgPool2d(_Pool2d):
    """2-D average pooling: the mean of each kernel_size window, moved by stride.

        y[n, c, i, j] = (1 / d) sum_{a, b} x[n, c, i * sh - ph + a, j * sw - pw + b]

    with d the window's size (kh * kw), or with count_include_pad=False the number of its
    positions inside the input.

    Args:
        kernel_size (int or (kh, kw)): the window's size.
        stride (int, (sh, sw) or None, default None): the step between windows; None means
            kernel_size.
        padding (int or (ph, pw), default 0): implicit zeros added on both sides, at most
            half the kernel.
        ceil_mode (bool, default False): as MaxPool2d's.
        count_include_pad (bool, default True): the divisor counts the zero padding (never
            the positions past it that ceil_mode adds).
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (N, C, H, W) or (C, H, W) -> output (N, C, H_out, W_out) or (C, H_out, W_out),
        H_out and W_out as MaxPool2d's.
    """

    _backward_fn = staticmethod(F.avg_pool2d_backward)

    def __init__(self, kernel_size: _Pair, stride: _Pair | None = None, padding: _Pair = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, dtype)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The mean of each window.

        Args:
            x (np.ndarray): (N, C, H, W) or (C, H, W), float32 or float64.

        Returns:
            np.ndarray: (N, C, H_out, W_out) or (C, H_out, W_out) (see the class's Shape).
        """
        return self._forward_with(F.avg_pool2d_forward, F.avg_pool2d, x, self.count_include_pad)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


class ReLUMaxPool2d(MaxPool2d):
    """MaxPool2d(ReLU(x)) in one pass over x (F.relu_max_pool2d_forward): the same outputs
    and gradients as nn.ReLU() followed by nn.MaxPool2d, without the ReLU's full-size
    output. No parameters, so a model that swaps the pair for it keeps its state_dict.

    Args:
        kernel_size, stride, padding, ceil_mode, dtype: as MaxPool2d's.

    Shape:
        as MaxPool2d's: input (N, C, H, W) or (C, H, W) -> output (N, C, H_out, W_out) or
        (C, H_out, W_out).
    """

    _backward_fn = staticmethod(F.relu_max_pool2d_backward)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """max_pool2d(relu(x)), in one pass.

        Args:
            x (np.ndarray): (N, C, H, W) or (C, H, W), float32 or float64.

        Returns:
            np.ndarray: (N, C, H_out, W_out) or (C, H_out, W_out), every value >= 0.
        """
        return self._forward_with(F.relu_max_pool2d_forward, F.relu_max_pool2d, x)


class _AdaptivePool2d(Module):
    """What the adaptive poolings share: output_size, the input check and the gradient's."""

    output_size: tuple[int | None, ...]

    def __init__(self, output_size: _Pair | tuple[int | None, int | None], dtype: DTypeLike) -> None:
        super().__init__(dtype)
        if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and None in output_size:
            self.output_size = tuple(None if s is None else integer(s, "output_size", minimum=1)
                                     for s in output_size)
        else:
            self.output_size = int_pair(output_size, "output_size", minimum=1)

    def _input(self, x: Any) -> np.ndarray:
        return self._check_input(x, ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")

    def _grad(self, grad_output: Any, shape: tuple[int, ...]) -> np.ndarray:
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output has shape {grad_output.shape}, "
                             f"expected {shape}")
        return grad_output

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """2-D average pooling to a fixed output size, whatever the input's (F.adaptive_avg_pool2d,
    numpy). AdaptiveAvgPool2d(1) is global average pooling, as at the end of a ResNet.

    Args:
        output_size (int, (oh, ow), or a pair with None): the output's H and W; None keeps
            that input size.
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (N, C, H, W) or (C, H, W) -> output (N, C, oh, ow) or (C, oh, ow); output row
        i averages input rows [floor(i * H / oh), ceil((i + 1) * H / oh)) (PyTorch's rule;
        columns likewise), so windows may overlap or differ in size.
    """

    def __init__(self, output_size: _Pair | tuple[int | None, int | None],
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(output_size, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The mean of each of output_size's windows.

        Args:
            x (np.ndarray): (N, C, H, W) or (C, H, W), float32 or float64.

        Returns:
            np.ndarray: (N, C, oh, ow) or (C, oh, ow).
        """
        y, ctx = F.adaptive_avg_pool2d_forward(self._input(x), self.output_size)
        self._save_for_backward(ctx, y.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradient of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of
                its shape.

        Returns:
            np.ndarray or None: the input's gradient, x's shape, each output's gradient
            spread evenly over its window (summed where windows overlap); None when
            `requires_input_grad` is False.
        """
        ctx, y_shape = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.adaptive_avg_pool2d_backward(self._grad(grad_output, y_shape), ctx)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """2-D max pooling to a fixed output size (F.adaptive_max_pool2d, numpy); windows as
    AdaptiveAvgPool2d's. Backward sends each output's gradient to its window's maximum.

    Args:
        output_size (int, (oh, ow), or a pair with None): as AdaptiveAvgPool2d's.
        return_indices (bool, default False): True makes forward return (y, indices), the
            maxima's flat positions in each (H, W) plane (int64), as PyTorch.
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (N, C, H, W) or (C, H, W) -> output (N, C, oh, ow) or (C, oh, ow) (indices:
        the same shape).
    """

    def __init__(self, output_size: _Pair | tuple[int | None, int | None],
                 return_indices: bool = False, dtype: DTypeLike = np.float32) -> None:
        super().__init__(output_size, dtype)
        self.return_indices = bool(return_indices)

    def forward(self, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The maximum of each of output_size's windows.

        Args:
            x (np.ndarray): (N, C, H, W) or (C, H, W), float32 or float64.

        Returns:
            np.ndarray or (np.ndarray, np.ndarray): y, (N, C, oh, ow) or (C, oh, ow); with
            return_indices, the pair (y, indices), indices the maxima's flat positions in
            H * W (int64, y's shape).
        """
        y, ctx = F.adaptive_max_pool2d_forward(self._input(x), self.output_size)
        self._save_for_backward(ctx)
        return (y, ctx.indices) if self.return_indices else y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradient of the last forward (of y: indices have none).

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to y, of its shape.

        Returns:
            np.ndarray or None: the input's gradient, x's shape, each output's gradient
            sent to its window's maximum; None when `requires_input_grad` is False.
        """
        (ctx,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.adaptive_max_pool2d_backward(self._grad(grad_output, ctx.indices.shape), ctx)
