"""MaxPool2d, AvgPool2d, ReLUMaxPool2d (ReLU then MaxPool2d in one pass, for fusion),
AdaptiveAvgPool2d and AdaptiveMaxPool2d."""
__all__ = ["MaxPool2d", "AvgPool2d", "ReLUMaxPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]
import numpy as np

from .. import functional as F
from .._checks import int_pair, integer
from .._context import is_grad_enabled
from .module import Module


# Input shapes whose geometry a layer remembers (a training and an evaluation batch size,
# a last smaller batch...); past this the cache starts over.
_GEOMETRIES_KEPT = 8


class _Pool2d(Module):
    op = "pool2d"

    def __init__(self, kernel_size, stride, padding, ceil_mode, dtype):
        super().__init__(dtype)
        self.kernel_size = int_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", minimum=1)
        self.padding = int_pair(padding, "padding", minimum=0)
        self.ceil_mode = bool(ceil_mode)
        self._geometries = {}

    def _input(self, x):
        """(x, geometry): the checked input and its PoolGeometry, validated once per
        shape and dtype (~15 us a call saved at LeNet's sizes)."""
        x = self._check_input(x, ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")
        key = (x.shape, x.dtype)
        geometry = self._geometries.get(key)
        if geometry is None:
            try:
                geometry = F.pool_geometry(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.op)
            except ValueError as err:
                raise ValueError(f"{type(self).__name__}: {err}") from None
            if len(self._geometries) >= _GEOMETRIES_KEPT:
                self._geometries.clear()
            self._geometries[key] = geometry
        return x, geometry

    def _grad(self, grad_output, geometry):
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != geometry.output_shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output has shape {grad_output.shape}, "
                             f"expected {geometry.output_shape}")
        return grad_output

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")


class MaxPool2d(_Pool2d):
    """2-D max pooling: the maximum of each kernel_size window, moved by stride.

    Args: kernel_size (int or (kh, kw)), stride=None (= kernel_size), padding=0 (implicit
    -inf on both sides, at most half the kernel), ceil_mode=False (round the output size
    up, keeping only windows that start inside the input or its left padding).
    Shape: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) or (C, H_out, W_out),
        H_out = floor((H + 2 * padding[0] - kernel_size[0]) / stride[0]) + 1   (ceil with ceil_mode)
    Backward sends each output's gradient to the input element that was its maximum.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, dtype=np.float32):
        super().__init__(kernel_size, stride, padding, ceil_mode, dtype)

    op = "max_pool2d"

    def forward(self, x):
        x, geometry = self._input(x)
        y, argmax = F.max_pool2d_forward(x, geometry, with_indices=is_grad_enabled())
        self._save_for_backward(argmax, geometry)
        return y

    def backward(self, grad_output):
        argmax, geometry = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.max_pool2d_backward(self._grad(grad_output, geometry), argmax, geometry)


class AvgPool2d(_Pool2d):
    """2-D average pooling: the mean of each kernel_size window, moved by stride.

    Args: kernel_size, stride=None (= kernel_size), padding=0 (implicit zeros, at most half
    the kernel), ceil_mode=False, count_include_pad=True (the divisor counts the zero
    padding; never the positions past it that ceil_mode adds).
    Shape: as MaxPool2d.
        y[n, c, i, j] = (1 / d) sum_{a, b} x[n, c, i * sh - ph + a, j * sw - pw + b]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 dtype=np.float32):
        super().__init__(kernel_size, stride, padding, ceil_mode, dtype)
        self.count_include_pad = bool(count_include_pad)

    op = "avg_pool2d"

    def forward(self, x):
        x, geometry = self._input(x)
        y = F.avg_pool2d_forward(x, geometry, self.count_include_pad)
        self._save_for_backward(geometry)
        return y

    def backward(self, grad_output):
        (geometry,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.avg_pool2d_backward(self._grad(grad_output, geometry), geometry, self.count_include_pad)

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


class ReLUMaxPool2d(MaxPool2d):
    """MaxPool2d(ReLU(x)) in one pass over x (F.relu_max_pool2d_with_indices): the same
    outputs and gradients as nn.ReLU() followed by nn.MaxPool2d, without the ReLU's
    full-size output. Arguments and shapes as MaxPool2d; no parameters, so a model that
    swaps the pair for it keeps its state_dict."""

    op = "relu_max_pool2d"

    def forward(self, x):
        x, geometry = self._input(x)
        y, argmax = F.max_pool2d_forward(x, geometry, relu=True)
        self._save_for_backward(y, argmax, geometry)
        return y

    def backward(self, grad_output):
        y, argmax, geometry = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.relu_max_pool2d_backward(self._grad(grad_output, geometry), y, argmax, geometry)


class _AdaptivePool2d(Module):
    def __init__(self, output_size, dtype):
        super().__init__(dtype)
        if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and None in output_size:
            self.output_size = tuple(None if s is None else integer(s, "output_size", minimum=1)
                                     for s in output_size)
        else:
            self.output_size = int_pair(output_size, "output_size", minimum=1)

    def _input(self, x):
        return self._check_input(x, ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")

    def _grad(self, grad_output, shape):
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output has shape {grad_output.shape}, "
                             f"expected {shape}")
        return grad_output

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """2-D average pooling to a fixed output size, whatever the input's (F.adaptive_avg_pool2d,
    numpy). AdaptiveAvgPool2d(1) is global average pooling, as at the end of a ResNet.

    Args: output_size (int, (oh, ow), or a pair with None: keep that input size).
    Shape: (N, C, H, W) or (C, H, W) -> (N, C, oh, ow) or (C, oh, ow); windows follow
    PyTorch's rule [floor(i H / oh), ceil((i + 1) H / oh)).
    """

    def __init__(self, output_size, dtype=np.float32):
        super().__init__(output_size, dtype)

    def forward(self, x):
        x = self._input(x)
        y = F.adaptive_avg_pool2d(x, self.output_size)
        self._save_for_backward(x.shape, y.shape)
        return y

    def backward(self, grad_output):
        x_shape, y_shape = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.adaptive_avg_pool2d_backward(self._grad(grad_output, y_shape), x_shape)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """2-D max pooling to a fixed output size (F.adaptive_max_pool2d, numpy); windows as
    AdaptiveAvgPool2d. Args: output_size, return_indices=False (True: forward returns
    (y, indices), flat positions in each (H, W) plane, as PyTorch).
    Backward sends each output's gradient to its window's maximum."""

    def __init__(self, output_size, return_indices=False, dtype=np.float32):
        super().__init__(output_size, dtype)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        x = self._input(x)
        y, indices = F.adaptive_max_pool2d_with_indices(x, self.output_size)
        self._save_for_backward(x.shape, indices)
        return (y, indices) if self.return_indices else y

    def backward(self, grad_output):
        x_shape, indices = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.adaptive_max_pool2d_backward(self._grad(grad_output, indices.shape), indices, x_shape)
