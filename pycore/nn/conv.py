"""Conv2d and Conv1d (conv2d's kernels on a height-1 image)."""
from __future__ import annotations

__all__ = ["Conv2d", "Conv1d"]

from typing import Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import int_pair, int_single, integer
from . import init
from .module import Module, Parameter


def _groups(layer: _ConvNd, groups: int) -> int:
    """groups, checked to divide the layer's in_channels and out_channels."""
    groups = integer(groups, "groups", minimum=1)
    for name in ("in_channels", "out_channels"):
        if getattr(layer, name) % groups:
            raise ValueError(f"{type(layer).__name__}: {name} must be divisible by groups, got {name}="
                             f"{getattr(layer, name)}, groups={groups}")
    return groups


class _ConvNd(Module):
    """What Conv1d and Conv2d share: the input check, and backward on F.<op>_backward with
    the ctx F.<op>_forward returned."""

    _backward_fn: Callable[..., np.ndarray | None] = staticmethod(F.conv2d_backward)
    _input_layout = "(N, C_in, H, W)"
    _output_layout = "(N, C_out, H_out, W_out)"
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | tuple[int, ...]
    groups: int
    weight: Parameter
    bias: Parameter | None

    def _checked_input(self, x: Any) -> np.ndarray:
        ndim = self._input_layout.count(",") + 1
        x = self._check_input(x, ndim=ndim, layout=self._input_layout)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected input with {self.in_channels} channels, shape "
                             f"{self._input_layout.replace('C_in', str(self.in_channels))}, got shape {x.shape}")
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradients of the last forward's convolution.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of the
                output's shape (Conv2d: (N, C_out, H_out, W_out); Conv1d: (N, C_out, L_out))
                and the layer's dtype.

        Returns:
            np.ndarray or None: the input's gradient, of the input's shape; None when
            `requires_input_grad` is False. The weight's gradient is added into
            `weight.grad` and the bias's into `bias.grad` (+=; skipped for a frozen one).
        """
        (ctx,) = self._pop_saved()
        ndim = self._output_layout.count(",") + 1
        grad_output = self._check_input(grad_output, "grad_output", ndim=ndim, layout=self._output_layout)
        return self._backward_fn(grad_output, ctx, self.weight.grad_buffer(),
                                 None if self.bias is None else self.bias.grad_buffer(),
                                 need_input_grad=self.requires_input_grad)


class Conv2d(_ConvNd):
    """2-D convolution over a batch of images, as torch.nn.Conv2d.

        out[n, oc] = bias[oc] + sum_{c in group(oc)} cross_correlate(weight[oc, c], input[n, c])

    Like every deep-learning library this computes cross-correlation: the kernel slides
    over the input without being flipped (a true convolution would flip it).

    Args:
        in_channels (int): channels of the input, C_in.
        out_channels (int): channels of the output, C_out (one filter each).
        kernel_size (int or (kH, kW)): size of each filter.
        stride (int or pair, default 1): step between filter positions.
        padding (int, pair, 'valid' or 'same', default 0): zeros added on both sides of each
            spatial axis. 'valid' is no padding; 'same' keeps H and W (stride must be 1) and,
            for an even kernel, pads one more on the bottom/right, as PyTorch does.
        dilation (int or pair, default 1): spacing between filter taps.
        groups (int, default 1): split input and output channels into this many groups,
            each convolved on its own; groups == in_channels is a depthwise convolution.
            Must divide in_channels and out_channels.
        bias (bool, default True): add a learnable bias per output channel.
        dtype (np.float32 or np.float64, default np.float32).

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out), where
        H_out = floor((H + pad_top + pad_bottom - dilation[0] * (kernel_size[0] - 1) - 1) / stride[0]) + 1
        W_out = floor((W + pad_left + pad_right - dilation[1] * (kernel_size[1] - 1) - 1) / stride[1]) + 1
        (an int padding p means p on each side).

    Attributes:
        weight (Parameter): (C_out, C_in / groups, kH, kW), initialised U(-b, b) with
            b = 1 / sqrt(C_in / groups * kH * kW) (PyTorch's kaiming_uniform(a=sqrt(5))).
        bias (Parameter or None): (C_out,), U(-b, b) with the same b.

    Backward: `backward(grad_output)` adds into weight.grad and bias.grad and returns the
    gradient of the input, or None when `requires_input_grad` is False (set it on a
    network's first layer: the data needs no gradient, and skipping it saves most of that
    layer's backward).

    Example:
        >>> import numpy as np, pycore.nn as nn
        >>> conv = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
        >>> y = conv(x)                     # (8, 16, 32, 32)
        >>> gx = conv.backward(np.ones_like(y))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.in_channels = integer(in_channels, "in_channels", minimum=1)
        self.out_channels = integer(out_channels, "out_channels", minimum=1)
        self.kernel_size = int_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = int_pair(stride, "stride", minimum=1)
        self.dilation = int_pair(dilation, "dilation", minimum=1)
        self.groups = _groups(self, groups)
        F.conv_padding(padding, self.kernel_size, self.stride, self.dilation)  # raises for a bad padding now
        self.padding = padding if isinstance(padding, str) else int_pair(padding, "padding", minimum=0)
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(init.kaiming_uniform(shape, self.dtype))
        self.bias = Parameter(init.bias_uniform(shape, self.out_channels, self.dtype)) if bias else None

    def _hyper(self) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The convolution of a batch of images.

        Args:
            x (np.ndarray): (N, C_in, H, W), of the layer's dtype.

        Returns:
            np.ndarray: (N, C_out, H_out, W_out) (see the class's Shape).
        """
        return self._fused_forward(x)

    def _fused_forward(self, x: Any, activation: str | None = None, negative_slope: float = 0.01) -> np.ndarray:
        """forward, or forward fused with the activation after it (nn/fusion.py)."""
        x = self._checked_input(x)
        y, ctx = F.conv2d_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                  **self._hyper(), activation=activation, negative_slope=negative_slope)
        self._save_for_backward(ctx)
        return y

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over a batch of sequences, as torch.nn.Conv1d (F.conv1d: conv2d's
    kernels on a height-1 image, so the same GEMM and direct paths).

    Args:
        in_channels (int): channels of the input, C_in.
        out_channels (int): channels of the output, C_out (one filter each).
        kernel_size (int): length of each filter.
        stride (int, default 1): step between filter positions.
        padding (int, 'valid' or 'same', default 0): zeros added at both ends. 'valid' is
            no padding; 'same' keeps L (stride must be 1) and, for an even kernel, pads one
            more on the right, as PyTorch does.
        dilation (int, default 1): spacing between filter taps.
        groups (int, default 1): as Conv2d's; must divide in_channels and out_channels.
        bias (bool, default True): add a learnable bias per output channel.
        dtype (np.float32 or np.float64, default np.float32).

    Shape:
        input (N, C_in, L) -> output (N, C_out, L_out), where
        L_out = floor((L + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1
        ('same': L_out = L).

    Attributes:
        weight (Parameter): (C_out, C_in / groups, kernel_size), initialised as Conv2d's:
            U(-b, b), b = 1 / sqrt(C_in / groups * kernel_size).
        bias (Parameter or None): (C_out,), U(-b, b) with the same b.

    Backward: `backward(grad_output)` adds into weight.grad and bias.grad and returns the
    gradient of the input, or None when `requires_input_grad` is False.
    """

    _backward_fn = staticmethod(F.conv1d_backward)
    _input_layout = "(N, C_in, L)"
    _output_layout = "(N, C_out, L_out)"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | str = 0, dilation: int = 1, groups: int = 1, bias: bool = True,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.in_channels = integer(in_channels, "in_channels", minimum=1)
        self.out_channels = integer(out_channels, "out_channels", minimum=1)
        self.kernel_size = (int_single(kernel_size, "kernel_size", 1),)
        self.stride = (int_single(stride, "stride", 1),)
        self.dilation = (int_single(dilation, "dilation", 1),)
        self.groups = _groups(self, groups)
        if isinstance(padding, str):
            F.conv_padding(padding, (1,) + self.kernel_size, (1,) + self.stride, (1,) + self.dilation)
            self.padding = padding
        else:
            self.padding = (int_single(padding, "padding", 0),)
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(init.kaiming_uniform(shape, self.dtype))
        self.bias = Parameter(init.bias_uniform(shape, self.out_channels, self.dtype)) if bias else None

    def _hyper(self) -> dict[str, Any]:
        return dict(stride=self.stride[0], padding=self.padding if isinstance(self.padding, str) else self.padding[0],
                    dilation=self.dilation[0], groups=self.groups)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The convolution of a batch of sequences.

        Args:
            x (np.ndarray): (N, C_in, L), of the layer's dtype.

        Returns:
            np.ndarray: (N, C_out, L_out) (see the class's Shape).
        """
        x = self._checked_input(x)
        y, ctx = F.conv1d_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                  **self._hyper())
        self._save_for_backward(ctx)
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}")

