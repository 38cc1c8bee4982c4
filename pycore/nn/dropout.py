"""Dropout."""
__all__ = ["Dropout"]
import numpy as np

from .. import functional as F
from .._checks import probability
from .module import Module


class Dropout(Module):
    """During training, zero each element with probability p and scale the rest by 1/(1-p)
    (inverted dropout, so that eval needs no rescaling); in eval mode, the identity.

    Args: p=0.5, the probability of zeroing. Masks come from pycore's generator, so
    pycore.manual_seed(n) makes them reproducible.
    Shape: any; output as input.
    """

    def __init__(self, p=0.5, dtype=np.float32):
        super().__init__(dtype)
        self.p = probability(p, "p")

    def forward(self, x):
        """x -> x with each element zeroed with probability p and the rest scaled by 1/(1-p)
        in training mode; x unchanged in eval mode. Keeps the mask for backward."""
        x = self._check_input(x)
        y, ctx = F.dropout_forward(x, self.p, self.training)
        self._save_for_backward(ctx, x.shape)
        return y

    def backward(self, grad_output):
        """grad_output (x's shape) -> the input's gradient: grad_output through the same mask
        and scale (unchanged in eval mode); None when requires_input_grad is False."""
        ctx, shape = self._pop_saved()  # ctx: the mask, or None (the identity), which has no shape
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != shape:
            raise ValueError(f"Dropout.backward: grad_output has shape {grad_output.shape}, expected {shape}")
        return F.dropout_backward(grad_output, ctx)

    def extra_repr(self):
        return f"p={self.p}"
