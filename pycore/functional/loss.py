"""cross_entropy, mse_loss, binary_cross_entropy_with_logits as forward/backward pairs (csrc/loss.cpp).

Each loss X comes as X(input, target, ...) -> loss (a Python float, or an array for
reduction='none'), X_forward(...) -> (loss, ctx) and X_backward(grad_output, ctx) -> the
gradient of the input, grad_output being the loss's own gradient (1.0 for the loss
itself; for reduction='none' a number or an array of the loss's shape). The cross
entropy ctx keeps the checked arguments, the per-row log-sum-exp (so backward rebuilds
the softmax without another pass for the max) and the mean's denominator.

Reductions follow PyTorch: 'mean' divides by the number of elements (for cross entropy:
of rows not ignored, or their summed class weights), 'sum' adds, 'none' keeps one loss
per row (cross entropy) or per element. A mean over nothing is nan, as in PyTorch.
"""
__all__ = [
    "cross_entropy", "cross_entropy_forward", "cross_entropy_backward", "cross_entropy_options",
    "mse_loss", "mse_loss_forward", "mse_loss_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_forward",
    "binary_cross_entropy_with_logits_backward", "REDUCTIONS",
]
import numbers
from collections import namedtuple

import numpy as np

from .. import _C
from .._checks import choice, context, float_array, integer, real

REDUCTIONS = ("mean", "sum", "none")

CrossEntropyContext = namedtuple(
    "CrossEntropyContext",
    "logits targets weight ignore_index label_smoothing reduction logsumexp denominator loss_shape input_shape")
CrossEntropyContext.__doc__ = """cross_entropy_forward's ctx: logits (R, C) and int64 targets (R,)
as the kernel read them, the checked options, logsumexp (R,) float64, the mean's
denominator, and the shapes of the loss and of the input."""
ElementwiseLossContext = namedtuple("ElementwiseLossContext", "input target pos_weight reduction")


def _reduction(reduction):
    return choice(reduction, "reduction", REDUCTIONS)


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
            raise TypeError(f"grad_output: expected a number or a float array, got dtype {g.dtype}")
        if g.ndim and g.shape != tuple(loss_shape):
            raise ValueError(f"grad_output: expected a scalar or shape {tuple(loss_shape)} (the shape of the "
                             f"unreduced loss), got {g.shape}")
        return np.ascontiguousarray(np.broadcast_to(g.astype(dtype, copy=False), loss_shape)).reshape(-1)
    if isinstance(grad, np.ndarray) and grad.size == 1:
        grad = grad.reshape(()).item()
    if isinstance(grad, bool) or not isinstance(grad, numbers.Real):
        raise TypeError(f"grad_output: expected a number (the gradient of the scalar loss), "
                        f"got {type(grad).__name__}")
    scale = np.float64(grad)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):  # a mean over nothing: nan, as in PyTorch
            scale = scale / np.float64(denominator)
    return np.array([scale], dtype=dtype)


def cross_entropy_options(weight, ignore_index, reduction, label_smoothing):
    """(weight (C,) float array or None, ignore_index, reduction, label_smoothing), checked:
    what nn.CrossEntropyLoss checks at construction and cross_entropy at every call."""
    if weight is not None:
        weight = float_array(weight, "weight", ndim=1)
    return (weight, integer(ignore_index, "ignore_index"), _reduction(reduction),
            real(label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0))


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
    weight, ignore_index, reduction, label_smoothing = cross_entropy_options(weight, ignore_index, reduction,
                                                                             label_smoothing)
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"target: class index {int(target[position])} at position {position} is outside "
                         f"[0, {num_classes}) and is not ignore_index ({ignore_index})")
    if weight is not None:
        weight = weight.astype(logits.dtype, copy=False)
        if weight.shape != (num_classes,):
            raise ValueError(f"weight: expected shape ({num_classes},), one weight per class, got {weight.shape}")
    targets = np.ascontiguousarray(target, dtype=np.int64).reshape(-1)
    return logits.reshape(-1, num_classes), targets, weight, ignore_index, label_smoothing


def _cross_entropy_denominator(targets, weight, ignore_index):
    """The mean's denominator: rows not ignored, or with class weights the sum of their targets' weights."""
    kept = targets[targets != ignore_index]
    return float(weight.astype(np.float64)[kept].sum()) if weight is not None else kept.size


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """(loss, CrossEntropyContext) of cross_entropy (arguments as cross_entropy).

    ctx.logsumexp (float64, one per row; double even for float32 logits, whose
    exp(x - lse) would lose precision otherwise) is what cross_entropy_backward reads.
    """
    args = _cross_entropy_args(input, target, weight, ignore_index, reduction, label_smoothing)
    logits, targets, weight, ignore_index, label_smoothing = args
    loss_shape = np.shape(target)
    losses, logsumexp = _C.cross_entropy_forward(logits, targets, weight, label_smoothing, ignore_index)
    if reduction == "none":
        loss, denominator = losses.reshape(loss_shape), 1.0
    else:
        denominator = _cross_entropy_denominator(targets, weight, ignore_index)
        loss = _reduce(losses.sum(dtype=np.float64), denominator, reduction)
    return loss, CrossEntropyContext(*args, reduction, logsumexp, denominator, loss_shape, np.shape(input))


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


def cross_entropy_backward(grad_output, ctx):
    """Gradient of cross_entropy with respect to its logits: an array of input's shape and dtype.

    grad_output: the gradient of the loss (a number; for reduction='none' a number or an
    array of target's shape); ctx: cross_entropy_forward's. Per row the gradient is
    grad_output * (softmax(x) - q) for the unweighted loss, where q is the target
    distribution: (1 - eps) at the target plus eps / C everywhere; zero for ignored rows.
    """
    ctx = context(ctx, CrossEntropyContext, "cross_entropy")
    logits = float_array(ctx.logits, "ctx.logits", ndim=2)
    targets = ctx.targets
    if not (isinstance(targets, np.ndarray) and targets.dtype == np.int64 and targets.shape == logits.shape[:1]
            and targets.flags.c_contiguous):
        raise TypeError(f"ctx.targets: expected the int64 ({logits.shape[0]},) array cross_entropy_forward made")
    logsumexp = float_array(ctx.logsumexp, "ctx.logsumexp", dtype=np.float64)
    if logsumexp.shape != targets.shape:
        raise ValueError(f"ctx.logsumexp: expected shape {targets.shape} (one per row), got {logsumexp.shape}")
    dlosses = _grad_of_losses(grad_output, ctx.loss_shape, logits.dtype, ctx.reduction, ctx.denominator)
    dlogits = _C.cross_entropy_backward(dlosses, logsumexp, logits, targets, ctx.weight, ctx.label_smoothing,
                                        ctx.ignore_index)
    return dlogits.reshape(ctx.input_shape)


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
    return mse_loss_forward(input, target, reduction)[0]


def mse_loss_forward(input, target, reduction="mean"):
    """(loss, ElementwiseLossContext(input, target, None, reduction)) of mse_loss."""
    x, y = _pair(input, target)
    _reduction(reduction)
    total, elements = _C.mse_forward(x, y, reduction == "none")
    return _elementwise_result(total, elements, x.size, reduction), ElementwiseLossContext(x, y, None, reduction)


def mse_loss_backward(grad_output, ctx):
    """Gradient of mse_loss with respect to input: 2 (input - target) * grad_output
    (/ input.size for 'mean')."""
    input, target, _, reduction = context(ctx, ElementwiseLossContext, "mse_loss")
    x, y = _pair(input, target)
    dlosses = _grad_of_losses(grad_output, x.shape, x.dtype, _reduction(reduction), x.size)
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
    return binary_cross_entropy_with_logits_forward(input, target, pos_weight, reduction)[0]


def binary_cross_entropy_with_logits_forward(input, target, pos_weight=None, reduction="mean"):
    """(loss, ElementwiseLossContext(input, target, pos_weight, reduction)) of
    binary_cross_entropy_with_logits."""
    x, y = _pair(input, target)
    pw = _pos_weight(pos_weight, x)
    _reduction(reduction)
    total, elements = _C.bce_with_logits_forward(x, y, pw, reduction == "none")
    return _elementwise_result(total, elements, x.size, reduction), ElementwiseLossContext(x, y, pw, reduction)


def binary_cross_entropy_with_logits_backward(grad_output, ctx):
    """Gradient of binary_cross_entropy_with_logits with respect to input:
    ((1 - y) - (1 + (pos_weight - 1) y) * sigmoid(-x)) * grad_output, i.e. sigmoid(x) - y
    without pos_weight."""
    input, target, pos_weight, reduction = context(ctx, ElementwiseLossContext, "binary_cross_entropy_with_logits")
    x, y = _pair(input, target)
    pw = _pos_weight(pos_weight, x)
    dlosses = _grad_of_losses(grad_output, x.shape, x.dtype, _reduction(reduction), x.size)
    return _C.bce_with_logits_backward(dlosses, x, y, pw)
