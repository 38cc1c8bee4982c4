"""cross_entropy, mse_loss, binary_cross_entropy_with_logits and their backwards (csrc/loss.cpp).

Each loss comes as a forward that returns the loss (a Python float, or an array for
reduction='none') and a `*_backward(grad, ...)` that returns the gradient of the input.
`cross_entropy_forward` also returns the per-row log-sum-exp, which lets
`cross_entropy_backward` rebuild the softmax without another pass for the max.

Reductions follow PyTorch: 'mean' divides by the number of elements (for cross entropy:
of rows not ignored, or their summed class weights), 'sum' adds, 'none' keeps one loss
per row (cross entropy) or per element. A mean over nothing is nan, as in PyTorch.
"""
__all__ = [
    "cross_entropy", "cross_entropy_forward", "cross_entropy_backward",
    "mse_loss", "mse_loss_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
]
import numbers

import numpy as np

from .. import _C
from .._checks import float_array, integer

REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _reduce(total, count, reduction):
    """The reduced loss as a Python float: total / count for 'mean' (nan when count is 0)."""
    if reduction == "sum":
        return float(total)
    return float(total) / count if count else float("nan")


def _grad_of_losses(grad, loss_shape, dtype, reduction, denominator):
    """The upstream gradient as the kernels read it: one value per loss for 'none'
    (a scalar grad is broadcast), or one shared value, divided by the mean's denominator."""
    if reduction == "none":
        g = np.asarray(grad)
        if g.dtype.kind not in "fiub":
            raise TypeError(f"grad: expected a number or a float array, got dtype {g.dtype}")
        if g.ndim and g.shape != tuple(loss_shape):
            raise ValueError(f"grad: expected a scalar or shape {tuple(loss_shape)} (the shape of the "
                             f"unreduced loss), got {g.shape}")
        return np.ascontiguousarray(np.broadcast_to(g.astype(dtype, copy=False), loss_shape)).reshape(-1)
    if isinstance(grad, np.ndarray) and grad.size == 1:
        grad = grad.reshape(()).item()
    if isinstance(grad, bool) or not isinstance(grad, numbers.Real):
        raise TypeError(f"grad: expected a number (the gradient of the scalar loss), got {type(grad).__name__}")
    scale = np.float64(grad)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):  # a mean over nothing: nan, as in PyTorch
            scale = scale / np.float64(denominator)
    return np.array([scale], dtype=dtype)


# ----------------------------------------------------------------------------
# cross entropy


def _cross_entropy_args(input, target, weight, ignore_index, reduction, label_smoothing):
    """Validated (logits (R, C), targets int64 (R,), weight (C,) or None, ...) for the kernels."""
    logits = float_array(input, "input")
    if logits.ndim < 1:
        raise ValueError(f"input: expected logits of shape (*, C) with classes on the last axis, got shape {logits.shape}")
    num_classes = logits.shape[-1]
    if num_classes < 1:
        raise ValueError(f"input: expected at least one class on the last axis, got shape {logits.shape}")
    if not isinstance(target, np.ndarray):
        target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target: expected an integer array of class indices, got dtype {target.dtype} "
                        "(class-probability targets are not supported)")
    if target.shape != logits.shape[:-1]:
        raise ValueError(f"target: expected shape {logits.shape[:-1]} to match input of shape {logits.shape} "
                         f"(classes on the last axis), got {target.shape}")
    ignore_index = integer(ignore_index, "ignore_index")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing: expected a float, got {type(label_smoothing).__name__}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
    _reduction(reduction)
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"target: class index {int(target[position])} at position {position} is outside "
                         f"[0, {num_classes}) and is not ignore_index ({ignore_index})")
    if weight is not None:
        weight = float_array(weight, "weight", ndim=1).astype(logits.dtype, copy=False)
        if weight.shape != (num_classes,):
            raise ValueError(f"weight: expected shape ({num_classes},), one weight per class, got {weight.shape}")
    targets = np.ascontiguousarray(target, dtype=np.int64).reshape(-1)
    return logits.reshape(-1, num_classes), targets, weight, ignore_index, float(label_smoothing)


def _cross_entropy_denominator(targets, weight, ignore_index):
    """The mean's denominator: rows not ignored, or with class weights the sum of their targets' weights."""
    kept = targets[targets != ignore_index]
    return float(weight.astype(np.float64)[kept].sum()) if weight is not None else kept.size


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy of logits against class indices: returns (loss, logsumexp).

    The class axis is the LAST axis (unlike torch.nn.functional.cross_entropy, which wants
    (N, C, d1, ...)): input (*, C) with target (*), e.g. (N, C) with (N,) or a sequence
    model's (N, T, C) with (N, T). logsumexp (float64, target's shape; double even for
    float32 logits, whose exp(x - lse) would lose precision otherwise) is what
    `cross_entropy_backward` needs. See `cross_entropy` for the math.
    """
    loss, logsumexp, _ = _cross_entropy_forward_checked(
        _cross_entropy_args(input, target, weight, ignore_index, reduction, label_smoothing), np.shape(target),
        reduction)
    return loss, logsumexp.reshape(np.shape(target))


def _cross_entropy_forward_checked(args, loss_shape, reduction):
    """(loss, flat logsumexp, the mean's denominator) from _cross_entropy_args' result.
    nn.CrossEntropyLoss keeps args and the denominator for its backward, which then checks
    nothing twice (the target range check and the denominator each read every target)."""
    logits, targets, weight, ignore_index, label_smoothing = args
    losses, logsumexp = _C.cross_entropy_forward(logits, targets, weight, label_smoothing, ignore_index)
    if reduction == "none":
        return losses.reshape(loss_shape), logsumexp, 1.0
    denominator = _cross_entropy_denominator(targets, weight, ignore_index)
    return _reduce(losses.sum(dtype=np.float64), denominator, reduction), logsumexp, denominator


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy of logits against integer class indices, fused with log-softmax.

    NOTE the layout: classes are on the LAST axis. input (*, C), target (*): (N, C) with
    (N,), or (N, T, C) with (N, T), so a char model's (N, T, V) output feeds it directly.
    torch.nn.functional.cross_entropy instead wants (N, C, T): move the axis
    (np.moveaxis(logits, 1, -1)) when porting code that calls it on sequences.

    For a row with logits x, target t, eps = label_smoothing, class weights w (ones when
    None), logp = log_softmax(x):

        loss = (1 - eps) * w[t] * (-logp[t]) + (eps / C) * sum_c w[c] * (-logp[c])

    and 0 where target == ignore_index (default -100). reduction: 'mean' (sum over rows
    divided by the number of rows not ignored, or by the sum of w[t] over them with
    weights; PyTorch's definition), 'sum', or 'none' (an array of target's shape).
    Targets may have any integer dtype and must lie in [0, C) or equal ignore_index.
    Logits as large as +-1e4 are safe: the row max is subtracted before exp.
    """
    return cross_entropy_forward(input, target, weight, ignore_index, reduction, label_smoothing)[0]


def cross_entropy_backward(grad, input, target, logsumexp=None, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0):
    """Gradient of `cross_entropy` with respect to its logits: an array of input's shape and dtype.

    grad: the gradient of the loss (a number; for reduction='none' a number or an array of
    target's shape). logsumexp: from `cross_entropy_forward` (recomputed when None). Per row
    the gradient is grad * (softmax(x) - q) for the unweighted loss, where q is the target
    distribution: (1 - eps) at the target plus eps / C everywhere; zero for ignored rows.
    """
    args = _cross_entropy_args(input, target, weight, ignore_index, reduction, label_smoothing)
    logits, targets, weight, ignore_index, label_smoothing = args
    if logsumexp is None:
        _, logsumexp = _C.cross_entropy_forward(logits, targets, weight, label_smoothing, ignore_index)
    else:
        logsumexp = float_array(logsumexp, "logsumexp", dtype=np.float64)
        if logsumexp.shape != np.shape(target):
            raise ValueError(f"logsumexp: expected shape {np.shape(target)} (that of target), got {logsumexp.shape}")
    denominator = _cross_entropy_denominator(targets, weight, ignore_index) if reduction == "mean" else 1.0
    return _cross_entropy_backward_checked(grad, args, logsumexp.reshape(-1), denominator, np.shape(target),
                                           np.shape(input), reduction)


def _cross_entropy_backward_checked(grad, args, logsumexp, denominator, loss_shape, input_shape, reduction):
    """cross_entropy_backward from checked arguments (see _cross_entropy_forward_checked)."""
    logits, targets, weight, ignore_index, label_smoothing = args
    dlosses = _grad_of_losses(grad, loss_shape, logits.dtype, reduction, denominator)
    dlogits = _C.cross_entropy_backward(dlosses, logsumexp, logits, targets, weight, label_smoothing, ignore_index)
    return dlogits.reshape(input_shape)


# ----------------------------------------------------------------------------
# element-wise losses


def _pair(input, target):
    """input and target as C-contiguous float arrays of one dtype and one shape."""
    x = float_array(input, "input")
    y = float_array(target, "target", dtype=x.dtype)
    if y.shape != x.shape:
        raise ValueError(f"target: expected the input's shape {x.shape}, got {y.shape}")
    return x, y


def _elementwise_result(total, elements, size, reduction):
    return elements if reduction == "none" else _reduce(total, size, reduction)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error: (input - target)^2, reduced by 'mean' (over all elements), 'sum' or 'none'.

    input and target: the same shape and float dtype. Returns a float, or an array of
    input's shape for 'none'.
    """
    x, y = _pair(input, target)
    _reduction(reduction)
    total, elements = _C.mse_forward(x, y, reduction == "none")
    return _elementwise_result(total, elements, x.size, reduction)


def mse_loss_backward(grad, input, target, reduction="mean"):
    """Gradient of `mse_loss` with respect to input: 2 (input - target) * grad (/ input.size for 'mean')."""
    x, y = _pair(input, target)
    _reduction(reduction)
    dlosses = _grad_of_losses(grad, x.shape, x.dtype, reduction, x.size)
    return _C.mse_backward(dlosses, x, y)


def _pos_weight(pos_weight, x):
    if pos_weight is None:
        return None
    pw = float_array(pos_weight, "pos_weight", ndim=(0, 1)).astype(x.dtype, copy=False).reshape(-1)
    last = x.shape[-1] if x.ndim else 1
    if pw.size not in (1, last):
        raise ValueError(f"pos_weight: expected 1 or {last} values (one per class on the input's last axis), "
                         f"got shape {np.shape(pos_weight)}")
    return pw


def binary_cross_entropy_with_logits(input, target, pos_weight=None, reduction="mean"):
    """Binary cross entropy on logits x with targets y in [0, 1], computed stably:

        loss = (1 - y) * x + (1 + (pos_weight - 1) * y) * log(1 + exp(-x))

    with log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|)), which never overflows.
    pos_weight (C,) weights the positive term of each class on the last axis (or one
    value for all). input and target: the same shape and float dtype.
    """
    x, y = _pair(input, target)
    pw = _pos_weight(pos_weight, x)
    _reduction(reduction)
    total, elements = _C.bce_with_logits_forward(x, y, pw, reduction == "none")
    return _elementwise_result(total, elements, x.size, reduction)


def binary_cross_entropy_with_logits_backward(grad, input, target, pos_weight=None, reduction="mean"):
    """Gradient of `binary_cross_entropy_with_logits` with respect to input:
    ((1 - y) - (1 + (pos_weight - 1) y) * sigmoid(-x)) * grad, i.e. sigmoid(x) - y without pos_weight."""
    x, y = _pair(input, target)
    pw = _pos_weight(pos_weight, x)
    _reduction(reduction)
    dlosses = _grad_of_losses(grad, x.shape, x.dtype, reduction, x.size)
    return _C.bce_with_logits_backward(dlosses, x, y, pw)
