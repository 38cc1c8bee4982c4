"""Dropout."""
from __future__ import annotations

__all__ = ["Dropout"]

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import probability
from .module import Module


class Dropout(Module):
    """During training, zero each element with probability p and scale the rest by 1/(1-p)
    (inverted dropout, so that eval needs no rescaling); in eval mode, the identity.

    Masks come from pycore's generator, so pycore.manual_seed(n) makes them reproducible
    (not the same draws as PyTorch's).

    Args:
        p (float in [0, 1], default 0.5): the probability of zeroing an element.
        dtype (np.float32 or np.float64, default np.float32): kept as `.dtype`; the layer
            has no parameters and takes float32 and float64 inputs alike.

    Shape:
        input (*) -> output (*), the same shape.
    """

    def __init__(self, p: float = 0.5, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.p = probability(p, "p")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Drop elements of x at random (training mode only).

        Args:
            x (np.ndarray): a float32 or float64 array of any shape.

        Returns:
            np.ndarray: in training mode, x with each element zeroed with probability p and
            the rest scaled by 1/(1-p), keeping the mask for backward; in eval mode, x
            unchanged.
        """
        x = self._check_input(x)
        y, ctx = F.dropout_forward(x, self.p, self.training)
        self._save_for_backward(ctx, x.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """Gradient of the last forward.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, x's shape.

        Returns:
            np.ndarray or None: the input's gradient, grad_output through the same mask and
            scale (unchanged in eval mode); None when `requires_input_grad` is False.
        """
        ctx, shape = self._pop_saved()  # ctx: the mask, or None (the identity), which has no shape
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != shape:
            raise ValueError(f"Dropout.backward: grad_output has shape {grad_output.shape}, expected {shape}")
        return F.dropout_backward(grad_output, ctx)

    def extra_repr(self) -> str:
        return f"p={self.p}"
