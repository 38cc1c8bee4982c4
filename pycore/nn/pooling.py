"""MaxPool2d, AvgPool2d, ReLUMaxPool2d (ReLU then MaxPool2d in one pass, for fusion),
AdaptiveAvgPool2d and AdaptiveMaxPool2d."""
__all__ = ["MaxPool2d", "AvgPool2d", "ReLUMaxPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]
import numpy as np

from .. import functional as F
from .._checks import int_pair, integer
from .._context import is_grad_enabled
from .module import Module


def _max_pool2d_backward(grad_output, ctx):
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

    def __init__(self, kernel_size, stride, padding, ceil_mode, dtype):
        super().__init__(dtype)
        self.kernel_size = int_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", minimum=1)
        self.padding = int_pair(padding, "padding", minimum=0)
        self.ceil_mode = bool(ceil_mode)

    def _run(self, op, x, *extra):
        """op(x, kernel_size, stride, padding, ceil_mode, *extra), the input checked for the
        layer and a bad geometry reported with its name. (F's geometry cache makes the
        checks ~1 us after a shape's first call.)"""
        x = self._check_input(x, ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)")
        try:
            return op(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, *extra)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from None

    def _forward_with(self, op_forward, op, x, *extra):
        """y, keeping op_forward's ctx while gradients are on; else y = op(...)."""
        if not is_grad_enabled():
            self._save_for_backward()  # keeps nothing, and drops an older forward's ctx
            return self._run(op, x, *extra)
        y, ctx = self._run(op_forward, x, *extra)
        self._save_for_backward(ctx)
        return y

    def _backward_with(self, op_backward, grad_output):
        (ctx,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return op_backward(self._check_input(grad_output, "grad_output"), ctx)

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

    def forward(self, x):
        """x (N, C, H, W) or (C, H, W) -> each window's maximum (see the class's Shape)."""
        return self._forward_with(F.max_pool2d_forward, F.max_pool2d, x)

    def backward(self, grad_output):
        """grad_output (the output's shape) -> the input's gradient, each value sent to its
        window's maximum; None when requires_input_grad is False."""
        return self._backward_with(_max_pool2d_backward, grad_output)


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

    def forward(self, x):
        """x (N, C, H, W) or (C, H, W) -> each window's mean (see the class's Shape)."""
        return self._forward_with(F.avg_pool2d_forward, F.avg_pool2d, x, self.count_include_pad)

    def backward(self, grad_output):
        """grad_output (the output's shape) -> the input's gradient, each value spread evenly
        over its window; None when requires_input_grad is False."""
        return self._backward_with(F.avg_pool2d_backward, grad_output)

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


class ReLUMaxPool2d(MaxPool2d):
    """MaxPool2d(ReLU(x)) in one pass over x (F.relu_max_pool2d_forward): the same outputs
    and gradients as nn.ReLU() followed by nn.MaxPool2d, without the ReLU's full-size
    output. Arguments and shapes as MaxPool2d; no parameters, so a model that swaps the
    pair for it keeps its state_dict."""

    def forward(self, x):
        """x (N, C, H, W) or (C, H, W) -> max_pool2d(relu(x)), in one pass."""
        return self._forward_with(F.relu_max_pool2d_forward, F.relu_max_pool2d, x)

    def backward(self, grad_output):
        """grad_output (the output's shape) -> the input's gradient (to each window's maximum
        where it was positive); None when requires_input_grad is False."""
        return self._backward_with(F.relu_max_pool2d_backward, grad_output)


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
        """x (N, C, H, W) or (C, H, W) -> the mean of each of output_size's windows."""
        y, ctx = F.adaptive_avg_pool2d_forward(self._input(x), self.output_size)
        self._save_for_backward(ctx, y.shape)
        return y

    def backward(self, grad_output):
        """grad_output (the output's shape) -> the input's gradient, each value spread evenly
        over its window; None when requires_input_grad is False."""
        ctx, y_shape = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.adaptive_avg_pool2d_backward(self._grad(grad_output, y_shape), ctx)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """2-D max pooling to a fixed output size (F.adaptive_max_pool2d, numpy); windows as
    AdaptiveAvgPool2d. Args: output_size, return_indices=False (True: forward returns
    (y, indices), flat positions in each (H, W) plane, as PyTorch).
    Backward sends each output's gradient to its window's maximum."""

    def __init__(self, output_size, return_indices=False, dtype=np.float32):
        super().__init__(output_size, dtype)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        """x (N, C, H, W) or (C, H, W) -> the maximum of each of output_size's windows, and
        their flat indices into H * W (int64) as a second output when return_indices is set."""
        y, ctx = F.adaptive_max_pool2d_forward(self._input(x), self.output_size)
        self._save_for_backward(ctx)
        return (y, ctx.indices) if self.return_indices else y

    def backward(self, grad_output):
        """grad_output (the output's shape) -> the input's gradient, each value sent to its
        window's maximum; None when requires_input_grad is False."""
        (ctx,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        return F.adaptive_max_pool2d_backward(self._grad(grad_output, ctx.indices.shape), ctx)
