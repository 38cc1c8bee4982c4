"""BatchNorm1d, BatchNorm2d (csrc/batchnorm.cpp) and LayerNorm (numpy)."""
from __future__ import annotations

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]
import numbers

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import integer, real
from .module import Module, Parameter

_BATCH_NORM_RULES = """
        y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias

    In training, E and Var (biased) are taken over the batch, and the running statistics
    are updated: running = (1 - momentum) * running + momentum * batch value, with the
    unbiased variance for running_var (as PyTorch). In eval mode, running_mean and
    running_var are used instead.

    Args:
        num_features (int): C, the number of channels (axis 1 of the input).
        eps (float > 0, default 1e-5): added to the variance before the square root.
        momentum (float or None, default 0.1): the running statistics' update weight;
            None: their cumulative average over all batches seen (1 / num_batches_tracked).
        affine (bool, default True): learnable weight (initialised to 1) and bias (to 0), (C,).
        track_running_stats (bool, default True): False keeps no buffers and normalises
            with the batch's statistics in eval mode too.
        dtype (np.float32 or np.float64, default np.float32): of the parameters, buffers
            and the input.

    Buffers (state_dict, as PyTorch's): running_mean (C,) zeros, running_var (C,) ones,
    num_batches_tracked (int64 scalar); None when track_running_stats is False.
"""


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share (documented in _BATCH_NORM_RULES): the
    arguments, buffers, forward and backward on F.batch_norm_forward/backward, one mean and
    variance per channel (axis 1). Subclasses say which input ranks they take (`_ndims`,
    `_layout`).
    """

    _ndims: tuple[int, ...] = (4,)
    _layout = "(N, C, H, W)"
    weight: Parameter | None
    bias: Parameter | None
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: np.ndarray | None

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype: DTypeLike = np.float32) -> None:
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

    def reset_running_stats(self) -> None:
        """Reset the buffers in place: running_mean to 0, running_var to 1,
        num_batches_tracked to 0 (nothing without track_running_stats)."""
        for buffer, value in ((self.running_mean, 0), (self.running_var, 1), (self.num_batches_tracked, 0)):
            if buffer is not None:  # None when track_running_stats is False
                buffer.fill(value)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise x per channel.

        In training mode with track_running_stats, the batch's statistics also update
        running_mean, running_var and num_batches_tracked (in place).

        Args:
            x (np.ndarray): (N, C, H, W) for BatchNorm2d, (N, C) or (N, C, L) for
                BatchNorm1d, of the layer's dtype, C = num_features.

        Returns:
            np.ndarray: the normalised x, scaled by weight and shifted by bias; x's shape.
        """
        x = self._check_input(x, ndim=self._ndims, layout=self._layout)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels (axis 1), "
                             f"got shape {x.shape}")
        # the batch counter when this call updates the running statistics, else None
        counter = self.num_batches_tracked if self.training and self.track_running_stats else None
        use_batch_stats = self.training or not self.track_running_stats
        momentum = 0.0
        if counter is not None:
            seen = int(counter) + 1
            momentum = 1.0 / seen if self.momentum is None else self.momentum
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        y, ctx = F.batch_norm_forward(
            x, *running, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, use_batch_stats, momentum, self.eps)
        if counter is not None:
            counter += 1  # in place: the buffer's array stays the state_dict's
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradients of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of
                its shape and the layer's dtype.

        Returns:
            np.ndarray or None: the input's gradient, x's shape (through the batch's mean
            and variance in training mode; a per-channel scale in eval mode, where the
            running statistics are constants); None when `requires_input_grad` is False.
            The gradients of weight and bias are added into their .grad (+=; skipped when
            frozen or affine=False).
        """
        (ctx,) = self._pop_saved()
        return F.batch_norm_backward(
            self._check_input(grad_output, "grad_output"), ctx,
            grad_weight=None if self.weight is None else self.weight.grad_buffer(),
            grad_bias=None if self.bias is None else self.bias.grad_buffer(),
            need_input_grad=self.requires_input_grad)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    __doc__ = """Batch normalisation over (N, C) or (N, C, L): one mean and variance per
    feature C, over N (and L), as torch.nn.BatchNorm1d (BatchNorm2d's kernel).
""" + _BATCH_NORM_RULES + """
    Shape:
        input (N, C) -> output (N, C); input (N, C, L) -> output (N, C, L).
    """

    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    __doc__ = """Batch normalisation over (N, C, H, W): one mean and variance per channel C,
    over (N, H, W), as torch.nn.BatchNorm2d.
""" + _BATCH_NORM_RULES + """
    Shape:
        input (N, C, H, W) -> output (N, C, H, W).
    """


class LayerNorm(Module):
    """Layer normalisation over the last len(normalized_shape) axes of each sample:

        y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias

    E and the biased Var over those axes, the same in training and eval (no running
    statistics). Numpy (F.layer_norm / F.layer_norm_backward), no C++ kernel yet.

    Args:
        normalized_shape (int or tuple of ints): the trailing shape normalised over.
        eps (float > 0, default 1e-5): added to the variance before the square root.
        elementwise_affine (bool, default True): learnable weight (ones) and bias (zeros),
            each of shape normalized_shape.
        bias (bool, default True): False leaves out the bias (PyTorch >= 2.1's argument).
        dtype (np.float32 or np.float64, default np.float32): of the parameters and the input.

    Shape:
        input (*, *normalized_shape) -> output of the same shape.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, dtype: DTypeLike = np.float32) -> None:
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

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise each sample over its last len(normalized_shape) axes.

        Args:
            x (np.ndarray): (*, *normalized_shape), of the layer's dtype.

        Returns:
            np.ndarray: the normalised x, times weight plus bias; x's shape.
        """
        x = self._check_input(x)
        y, ctx = F.layer_norm_forward(x, self.normalized_shape, None if self.weight is None else self.weight.data,
                                      None if self.bias is None else self.bias.data, self.eps)
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradients of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, x's
                shape, of the layer's dtype.

        Returns:
            np.ndarray or None: the input's gradient, x's shape; None when
            `requires_input_grad` is False. The gradients of weight and bias are added into
            their .grad (+=; skipped when frozen or absent).
        """
        (ctx,) = self._pop_saved()
        return F.layer_norm_backward(
            self._check_input(grad_output, "grad_output"), ctx,
            grad_weight=None if self.weight is None else self.weight.grad_buffer(),
            grad_bias=None if self.bias is None else self.bias.grad_buffer(),
            need_input_grad=self.requires_input_grad)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
