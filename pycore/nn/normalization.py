"""BatchNorm1d, BatchNorm2d (csrc/batchnorm.cpp) and LayerNorm (numpy)."""
__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]
import numbers

import numpy as np

from .. import functional as F
from .._checks import integer, real
from .module import Module, Parameter


class _BatchNorm(Module):
    """Batch normalisation over (N, C, ...), one mean and variance per channel c:

        y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias

    In training, E and Var (biased) are taken over (N, H, W) of the batch, and the running
    statistics are updated: running = (1 - momentum) * running + momentum * batch value,
    with the unbiased variance for running_var (as PyTorch). In eval mode, running_mean
    and running_var are used instead.

    Args: num_features (C), eps=1e-5, momentum=0.1 (None: the cumulative average over all
    batches seen), affine=True (learnable weight, initialised to 1, and bias, to 0),
    track_running_stats=True (False: no buffers, batch statistics in eval mode too),
    dtype=np.float32.
    Buffers (state_dict, as PyTorch's): running_mean (C,) zeros, running_var (C,) ones,
    num_batches_tracked (int64 scalar).
    Subclasses say which input ranks they take (`_ndims`, `_layout`).
    """

    _ndims = (4,)
    _layout = "(N, C, H, W)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__(dtype)
        self.num_features = integer(num_features, "num_features", minimum=1)
        self.eps = real(eps, "eps", minimum=0, exclusive_minimum=True)
        self.momentum = None if momentum is None else real(momentum, "momentum")
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        C = self.num_features
        self.weight = Parameter(np.ones(C, dtype=self.dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(C, dtype=self.dtype)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(C, dtype=self.dtype))
            self.register_buffer("running_var", np.ones(C, dtype=self.dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def forward(self, x):
        x = self._check_input(x, ndim=self._ndims, layout=self._layout)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels (axis 1), "
                             f"got shape {x.shape}")
        update_running = self.training and self.track_running_stats
        use_batch_stats = self.training or not self.track_running_stats
        momentum = 0.0
        if update_running:
            seen = int(self.num_batches_tracked) + 1
            momentum = 1.0 / seen if self.momentum is None else self.momentum
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        y, ctx = F.batch_norm_forward(
            x, *running, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, use_batch_stats, momentum, self.eps)
        if update_running:
            self.num_batches_tracked += 1
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output):
        (ctx,) = self._pop_saved()
        return F.batch_norm_backward(
            self._check_input(grad_output, "grad_output"), ctx,
            grad_weight=None if self.weight is None else self.weight.grad_buffer(),
            grad_bias=None if self.bias is None else self.bias.grad_buffer(),
            need_input_grad=self.requires_input_grad)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L): statistics per feature C over N (and L).
    Arguments, buffers and running-statistics rules as BatchNorm2d (the same kernel).
    Shape: (N, C) -> (N, C), (N, C, L) -> (N, C, L)."""

    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W): statistics per channel C over (N, H, W); see _BatchNorm.
    Shape: (N, C, H, W) -> (N, C, H, W)."""


class LayerNorm(Module):
    """Layer normalisation over the last len(normalized_shape) axes of each sample:

        y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias

    E and the biased Var over those axes, the same in training and eval (no running
    statistics). Numpy (F.layer_norm / F.layer_norm_backward), no C++ kernel yet.

    Args: normalized_shape (int or tuple: the trailing shape), eps=1e-5,
    elementwise_affine=True (weight of ones and bias of zeros, of shape normalized_shape),
    bias=True (PyTorch >= 2.1), dtype=np.float32.
    Shape: (*, *normalized_shape) -> the same.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__(dtype)
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise TypeError(f"normalized_shape: expected an int or a non-empty tuple of ints, got {normalized_shape!r}")
        self.normalized_shape = tuple(integer(d, "normalized_shape", minimum=1) for d in normalized_shape)
        self.eps = real(eps, "eps", minimum=0, exclusive_minimum=True)
        self.elementwise_affine = bool(elementwise_affine)
        affine = self.elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, dtype=self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype=self.dtype)) if affine and bias else None

    def forward(self, x):
        """x (*, *normalized_shape) -> normalised over the last dims, times weight plus bias;
        the same shape."""
        x = self._check_input(x)
        y, ctx = F.layer_norm_forward(x, self.normalized_shape, None if self.weight is None else self.weight.data,
                                      None if self.bias is None else self.bias.data, self.eps)
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output):
        """grad_output (x's shape) -> the input's gradient (None when requires_input_grad is
        False); adds into weight.grad and bias.grad."""
        (ctx,) = self._pop_saved()
        return F.layer_norm_backward(
            self._check_input(grad_output, "grad_output"), ctx,
            grad_weight=None if self.weight is None else self.weight.grad_buffer(),
            grad_bias=None if self.bias is None else self.bias.grad_buffer(),
            need_input_grad=self.requires_input_grad)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
