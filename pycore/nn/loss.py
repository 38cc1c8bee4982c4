"""CrossEntropyLoss, MSELoss, BCEWithLogitsLoss.

    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(logits, target)      # a Python float (an array for reduction='none')
    grad_logits = loss_fn.backward()    # d loss / d logits: the logits' shape and dtype
    model.backward(grad_logits)

A loss accepts float32 and float64 inputs alike and returns gradients in the input's
dtype. Each forward supports one backward; backward before a forward, or twice,
raises RuntimeError. Under pycore.no_grad() a forward keeps nothing.
"""
from __future__ import annotations

__all__ = ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"]

from typing import Any, Callable

import numpy as np

from .. import functional as F
from .._checks import choice, float_array
from .module import Module


class _Loss(Module):
    """Shared by the losses: the reduction, and backward = F.<loss>_backward(grad, ctx)
    with the ctx F.<loss>_forward returned."""

    _backward_fn: Callable[..., np.ndarray]

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = choice(reduction, "reduction", F.REDUCTIONS)

    def _keep(self, loss_and_ctx: tuple[Any, Any]) -> float | np.ndarray:
        loss, ctx = loss_and_ctx
        self._save_for_backward(ctx)
        return loss

    def backward(self, grad: float | np.ndarray = 1.0) -> np.ndarray:
        """Gradient of the last forward's loss with respect to its input.

        Args:
            grad (float or np.ndarray, default 1.0): the gradient of whatever the loss feeds
                (1.0 when the loss is what is minimised). With reduction='none', a number
                or an array of the loss's shape.

        Returns:
            np.ndarray: d loss / d input times grad, of the input's shape and dtype (the
            target gets no gradient; the loss has no parameters). Unlike a layer's, it does
            not depend on `requires_input_grad`: the input's gradient is the point.
        """
        (ctx,) = self._pop_saved()
        return self._backward_fn(grad, ctx)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Cross entropy of logits against integer class indices, fused with log-softmax.

    NOTE the layout: classes are on the LAST axis, unlike torch.nn.CrossEntropyLoss.
        input (N, C)    with target (N,)
        input (N, T, C) with target (N, T)   (torch wants (N, C, T) here)
    so a sequence model's (N, T, vocab) output feeds it directly. In general input
    (*, C) with target (*) of any integer dtype, each value in [0, C) or ignore_index.

    Args:
        weight (array-like or None, default None): (C,) class weights (PyTorch's weighted
            mean: the sum of the weighted row losses divided by the sum of their targets'
            weights); a copy is kept as the buffer `weight`.
        ignore_index (int, default -100): rows with this target add nothing and are not counted.
        reduction ('mean', 'sum' or 'none', default 'mean'): 'none' gives an array of
            target's shape.
        label_smoothing (float in [0, 1], default 0.0): eps; the target distribution
            becomes (1 - eps) * onehot + eps / C, as in PyTorch.

    Shape:
        input (*, C) float logits, target (*) integers -> loss: a float, or (*) with
        reduction='none'. E.g. (N, C) with (N,), or (N, T, C) with (N, T).

    Per row, with logp = log_softmax(x) and w = weight (ones when None):
        loss = (1 - eps) * w[t] * (-logp[t]) + (eps / C) * sum_c w[c] * (-logp[c])
    and its gradient (unweighted) is softmax(x) - ((1 - eps) * onehot(t) + eps / C).
    """

    _backward_fn = staticmethod(F.cross_entropy_backward)

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        weight, self.ignore_index, _, self.label_smoothing = F.cross_entropy_options(
            weight, ignore_index, reduction, label_smoothing)
        if weight is not None:
            self.register_buffer("weight", weight.copy())
        else:
            self.weight = None

    def forward(self, input: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        """The loss of a batch of logits.

        Args:
            input (np.ndarray): (*, C) float32 or float64 logits (classes on the last axis).
            target (np.ndarray): (*) integer class indices, each in [0, C) or ignore_index.

        Returns:
            float or np.ndarray: the reduced loss, or with reduction='none' the per-row
            losses, of target's shape.
        """
        # ctx keeps the checked arguments and the mean's denominator: backward redoes neither.
        return self._keep(F.cross_entropy_forward(input, target, self.weight, self.ignore_index, self.reduction,
                                                  self.label_smoothing))

    def extra_repr(self) -> str:
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}")


class MSELoss(_Loss):
    """Mean squared error: (input - target)^2 over all elements, reduced by 'mean', 'sum' or 'none'.

    Args:
        reduction ('mean', 'sum' or 'none', default 'mean'): the mean or sum over every
            element, or (none) the elementwise losses.

    Shape:
        input (*), target (*) of the same shape and float dtype -> loss: a float, or (*)
        with reduction='none'.
    """

    _backward_fn = staticmethod(F.mse_loss_backward)  # 2 (input - target) * grad, / input.size for 'mean'

    def forward(self, input: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        """The squared error of input against target.

        Args:
            input (np.ndarray): the predictions, a float array.
            target (np.ndarray): the targets, of input's shape and dtype.

        Returns:
            float or np.ndarray: the reduced loss, or with reduction='none' the elementwise
            losses, of input's shape.
        """
        return self._keep(F.mse_loss_forward(input, target, self.reduction))


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits (a sigmoid fused into the loss, stable for any x).

        loss = (1 - y) * x + (1 + (pos_weight - 1) * y) * log(1 + exp(-x))

    Args:
        reduction ('mean', 'sum' or 'none', default 'mean'): as MSELoss's.
        pos_weight (array-like or None, default None): one weight per class on the input's
            last axis, or a single value, multiplying the positive term; a copy is kept as
            the buffer `pos_weight`.

    Shape:
        input (*) logits, target (*) probabilities in [0, 1], of the same shape and float
        dtype -> loss: a float, or (*) with reduction='none'.
    """

    def __init__(self, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        if pos_weight is not None:
            self.register_buffer("pos_weight", float_array(pos_weight, "pos_weight", ndim=(0, 1)).copy())
        else:
            self.pos_weight = None

    # d loss / d input = sigmoid(x) - y (with pos_weight: (1 - y) - (1 + (pw - 1) y) sigmoid(-x)), times grad
    _backward_fn = staticmethod(F.binary_cross_entropy_with_logits_backward)

    def forward(self, input: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        """The binary cross entropy of logits against target probabilities.

        Args:
            input (np.ndarray): logits, a float array.
            target (np.ndarray): probabilities in [0, 1], of input's shape and dtype.

        Returns:
            float or np.ndarray: the reduced loss, or with reduction='none' the elementwise
            losses, of input's shape.
        """
        return self._keep(F.binary_cross_entropy_with_logits_forward(input, target, self.pos_weight, self.reduction))
