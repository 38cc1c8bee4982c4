"""CrossEntropyLoss, MSELoss, BCEWithLogitsLoss.

    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(logits, target)      # a Python float (an array for reduction='none')
    grad_logits = loss_fn.backward()    # d loss / d logits: the logits' shape and dtype
    model.backward(grad_logits)

A loss accepts float32 and float64 inputs alike and returns gradients in the input's
dtype. Each forward supports one backward; backward before a forward, or twice,
raises RuntimeError. Under pycore.no_grad() a forward keeps nothing.
"""
__all__ = ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"]

from .. import functional as F
from .._checks import choice, float_array
from .module import Module


class _Loss(Module):
    """Shared by the losses: the reduction, and backward = F.<loss>_backward(grad, ctx)
    with the ctx F.<loss>_forward returned."""

    _backward_fn = None

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = choice(reduction, "reduction", F.REDUCTIONS)

    def _keep(self, loss_and_ctx):
        loss, ctx = loss_and_ctx
        self._save_for_backward(ctx)
        return loss

    def backward(self, grad=1.0):
        """d loss / d input, of input's shape and dtype, scaled by grad (the loss's own gradient)."""
        (ctx,) = self._pop_saved()
        return self._backward_fn(grad, ctx)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Cross entropy of logits against integer class indices, fused with log-softmax.

    NOTE the layout: classes are on the LAST axis, unlike torch.nn.CrossEntropyLoss.
        input (N, C)    with target (N,)
        input (N, T, C) with target (N, T)   (torch wants (N, C, T) here)
    so a sequence model's (N, T, vocab) output feeds it directly. In general input
    (*, C) with target (*) of any integer dtype, each value in [0, C) or ignore_index.

    Args:
        weight: optional (C,) class weights (PyTorch's weighted mean: the sum of the
            weighted row losses divided by the sum of their targets' weights).
        ignore_index: rows with this target add nothing and are not counted (default -100).
        reduction: 'mean' (default), 'sum' or 'none' (an array of target's shape).
        label_smoothing: eps in [0, 1]; the target distribution becomes
            (1 - eps) * onehot + eps / C, as in PyTorch.

    Per row, with logp = log_softmax(x) and w = weight (ones when None):
        loss = (1 - eps) * w[t] * (-logp[t]) + (eps / C) * sum_c w[c] * (-logp[c])
    and its gradient (unweighted) is softmax(x) - ((1 - eps) * onehot(t) + eps / C).
    """

    _backward_fn = staticmethod(F.cross_entropy_backward)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        weight, self.ignore_index, _, self.label_smoothing = F.cross_entropy_options(
            weight, ignore_index, reduction, label_smoothing)
        if weight is not None:
            self.register_buffer("weight", weight.copy())
        else:
            self.weight = None

    def forward(self, input, target):
        """input (*, C) logits, target (*) class indices -> the loss (float, or array for 'none')."""
        # ctx keeps the checked arguments and the mean's denominator: backward redoes neither.
        return self._keep(F.cross_entropy_forward(input, target, self.weight, self.ignore_index, self.reduction,
                                                  self.label_smoothing))

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}")


class MSELoss(_Loss):
    """Mean squared error: (input - target)^2 over all elements, reduced by 'mean', 'sum' or 'none'.

    input and target: the same shape and float dtype.
    """

    _backward_fn = staticmethod(F.mse_loss_backward)  # 2 (input - target) * grad, / input.size for 'mean'

    def forward(self, input, target):
        """input and target of the same shape -> the loss (float, or array for 'none')."""
        return self._keep(F.mse_loss_forward(input, target, self.reduction))


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits (a sigmoid fused into the loss, stable for any x).

        loss = (1 - y) * x + (1 + (pos_weight - 1) * y) * log(1 + exp(-x))

    Args: pos_weight (optional): one weight per class on the input's last axis (or a
    single value) multiplying the positive term; reduction: 'mean', 'sum' or 'none'.
    input and target (probabilities in [0, 1]): the same shape and float dtype.
    """

    def __init__(self, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        if pos_weight is not None:
            self.register_buffer("pos_weight", float_array(pos_weight, "pos_weight", ndim=(0, 1)).copy())
        else:
            self.pos_weight = None

    # d loss / d input = sigmoid(x) - y (with pos_weight: (1 - y) - (1 + (pw - 1) y) sigmoid(-x)), times grad
    _backward_fn = staticmethod(F.binary_cross_entropy_with_logits_backward)

    def forward(self, input, target):
        """input logits and target probabilities in [0, 1], of the same shape -> the loss
        (float, or array for 'none')."""
        return self._keep(F.binary_cross_entropy_with_logits_forward(input, target, self.pos_weight, self.reduction))
