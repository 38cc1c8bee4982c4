"""BatchNorm2d."""
__all__ = ["BatchNorm2d"]
import numbers

import numpy as np

from .. import functional as F
from .._checks import integer
from .module import Module, Parameter


class BatchNorm2d(Module):
    """Batch normalisation over (N, C, H, W), one mean and variance per channel c:

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
    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__(dtype)
        self.num_features = integer(num_features, "num_features", minimum=1)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"eps: expected a float > 0, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)):
            raise TypeError(f"momentum: expected a float or None, got {type(momentum).__name__}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
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
        x = self._check_input(x, ndim=4, layout="(N, C, H, W)")
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d: expected {self.num_features} channels (axis 1), got shape {x.shape}")
        update_running = self.training and self.track_running_stats
        use_batch_stats = self.training or not self.track_running_stats
        momentum = 0.0
        if update_running:
            seen = int(self.num_batches_tracked) + 1
            momentum = 1.0 / seen if self.momentum is None else self.momentum
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        y, mean, invstd = F.batch_norm_with_stats(
            x, *running, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, use_batch_stats, momentum, self.eps)
        if update_running:
            self.num_batches_tracked += 1
        self._save_for_backward(x, mean, invstd, use_batch_stats)
        return y

    def backward(self, grad_output):
        x, mean, invstd, use_batch_stats = self._pop_saved()
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != x.shape:
            raise ValueError(f"BatchNorm2d.backward: grad_output has shape {grad_output.shape}, expected {x.shape}")
        return F.batch_norm_backward(
            grad_output, x, mean, invstd,
            weight=None if self.weight is None else self.weight.data,
            grad_weight=None if self.weight is None else self.weight.grad_buffer(),
            grad_bias=None if self.bias is None else self.bias.grad_buffer(),
            training=use_batch_stats, need_input_grad=self.requires_input_grad)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")
