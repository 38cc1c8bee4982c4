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
from __future__ import annotations

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
CrossEntropyContext.__doc__ = """cross_entropy_forward's ctx (R rows: the input's leading axes flattened).

Attributes:
    logits: (R, C) as the kernel read them.
    targets: (R,) int64 class indices as the kernel read them.
    weight: (C,) class weights of the logits' dtype, or None.
    ignore_index: int.
    label_smoothing: float in [0, 1].
    reduction: 'mean', 'sum' or 'none'.
    logsumexp: (R,) float64, each row's log(sum(exp(logits))).
    denominator: the mean's denominator (1.0 for 'none').
    loss_shape: target's shape (the unreduced loss's).
    input_shape: input's shape (dL/dinput's).
"""
ElementwiseLossContext = namedtuple("ElementwiseLossContext", "input target pos_weight reduction")
ElementwiseLossContext.__doc__ = """mse_loss_forward's and binary_cross_entropy_with_logits_forward's ctx.

Attributes:
    input: the input, C-contiguous.
    target: the target, input's shape and dtype.
    pos_weight: binary_cross_entropy_with_logits' pos_weight as a 1-D array of 1 or C
        values, or None (always None for mse_loss).
    reduction: 'mean', 'sum' or 'none'.
"""


def _reduction(reduction: str) -> str:
    return choice(reduction, "reduction", REDUCTIONS)


def _reduce(total: float, count: float, reduction: str) -> float:
    """The reduced loss as a Python float: total / count for 'mean' (nan when count is 0)."""
    if reduction == "sum":
        return float(total)
    return float(total) / count if count else float("nan")


def _grad_of_losses(grad: float | np.ndarray, loss_shape: tuple[int, ...], dtype: np.dtype, reduction: str,
                    denominator: float) -> np.ndarray:
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


def cross_entropy_options(weight: np.ndarray | None, ignore_index: int, reduction: str,
                          label_smoothing: float) -> tuple[np.ndarray | None, int, str, float]:
    """cross_entropy's options, checked: what nn.CrossEntropyLoss checks at construction
    and cross_entropy at every call.

    Args:
        weight: 1-D float array of class weights, or None.
        ignore_index: an int.
        reduction: 'mean', 'sum' or 'none'.
        label_smoothing: a real number in [0, 1].

    Returns:
        (weight, ignore_index, reduction, label_smoothing), weight as a C-contiguous
        float array (or None), ignore_index as an int, label_smoothing as a float.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a weight that is not 1-D, an unknown reduction, or label_smoothing outside [0, 1].
    """
    if weight is not None:
        weight = float_array(weight, "weight", ndim=1)
    return (weight, integer(ignore_index, "ignore_index"), _reduction(reduction),
            real(label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0))


# ----------------------------------------------------------------------------
# cross entropy


def _cross_entropy_args(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None, ignore_index: int,
                        reduction: str, label_smoothing: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int, float]:
    """Validated (logits (R, C), targets int64 (R,), weight (C,) or None, ...) for the kernels."""
    logits = float_array(input, "input")
    if logits.ndim < 1:
        raise ValueError(f"input: expected logits of shape (*, C) with classes on the last axis, "
                         f"got shape {logits.shape}")
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


def _cross_entropy_denominator(targets: np.ndarray, weight: np.ndarray | None, ignore_index: int) -> float:
    """The mean's denominator: rows not ignored, or with class weights the sum of their targets' weights."""
    kept = targets[targets != ignore_index]
    return float(weight.astype(np.float64)[kept].sum()) if weight is not None else kept.size


def cross_entropy_forward(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                          ignore_index: int = -100, reduction: str = "mean",
                          label_smoothing: float = 0.0) -> tuple[float | np.ndarray, CrossEntropyContext]:
    """cross_entropy, and what cross_entropy_backward needs.

    ctx.logsumexp (float64, one per row; double even for float32 logits, whose
    exp(x - lse) would lose precision otherwise) is what cross_entropy_backward reads.

    Args:
        input: (*, C) logits, float32 or float64 (classes on the LAST axis).
        target: (*) integer class indices.
        weight: (C,) class weights, or None (default).
        ignore_index: the target value whose rows count for nothing (default -100).
        reduction: 'mean' (default), 'sum' or 'none'.
        label_smoothing: in [0, 1] (default 0.0).

    Returns:
        (loss, ctx) with loss as cross_entropy returns it; ctx = CrossEntropyContext(logits,
        targets, weight, ignore_index, label_smoothing, reduction, logsumexp, denominator,
        loss_shape, input_shape).
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


def cross_entropy(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> float | np.ndarray:
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

    Args:
        input: (*, C) logits, float32 or float64, C >= 1.
        target: (*) integer class indices in [0, C) or equal to ignore_index.
        weight: (C,) class weights w, or None (default: all ones).
        ignore_index: the target value whose rows count for nothing (default -100).
        reduction: 'mean' (default), 'sum' or 'none'.
        label_smoothing: eps in [0, 1] (default 0.0).

    Returns:
        The loss, a Python float for 'mean' and 'sum' (nan for a mean over no rows), or a
        new array of target's shape and input's dtype for 'none'.
    """
    return cross_entropy_forward(input, target, weight, ignore_index, reduction, label_smoothing)[0]


def cross_entropy_backward(grad_output: float | np.ndarray, ctx: CrossEntropyContext) -> np.ndarray:
    """Gradient of cross_entropy with respect to its logits.

    Per row the gradient is grad_output * (softmax(x) - q) for the unweighted loss, where
    q is the target distribution: (1 - eps) at the target plus eps / C everywhere; zero for
    ignored rows (divided by the mean's denominator for 'mean').

    Args:
        grad_output: the gradient of the loss: a number (1.0 for the loss itself); for
            reduction='none' a number or an array of target's shape.
        ctx: cross_entropy_forward's CrossEntropyContext.

    Returns:
        dL/dinput, a new array of input's shape and dtype.
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


def _pair(input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """input and target as C-contiguous float arrays of one dtype and one shape."""
    x = float_array(input, "input")
    y = float_array(target, "target", dtype=x.dtype)
    if y.shape != x.shape:
        raise ValueError(f"target: expected the input's shape {x.shape}, got {y.shape}")
    return x, y


def _elementwise_result(total: float, elements: np.ndarray, size: int, reduction: str) -> float | np.ndarray:
    return elements if reduction == "none" else _reduce(total, size, reduction)


def mse_loss(input: np.ndarray, target: np.ndarray, reduction: str = "mean") -> float | np.ndarray:
    """Mean squared error: (input - target)^2, reduced by 'mean' (over all elements), 'sum' or
    'none', as torch.nn.functional.mse_loss.

    Args:
        input: float32 or float64 array of any shape.
        target: input's shape and dtype.
        reduction: 'mean' (default), 'sum' or 'none'.

    Returns:
        The loss, a Python float for 'mean' and 'sum', or a new array of input's shape and
        dtype for 'none'.
    """
    return mse_loss_forward(input, target, reduction)[0]


def mse_loss_forward(input: np.ndarray, target: np.ndarray,
                     reduction: str = "mean") -> tuple[float | np.ndarray, ElementwiseLossContext]:
    """mse_loss, and what mse_loss_backward needs.

    Args:
        input: float32 or float64 array of any shape.
        target: input's shape and dtype.
        reduction: 'mean' (default), 'sum' or 'none'.

    Returns:
        (loss, ctx) with loss as mse_loss returns it; ctx = ElementwiseLossContext(input,
        target, None, reduction).
    """
    x, y = _pair(input, target)
    _reduction(reduction)
    total, elements = _C.mse_forward(x, y, reduction == "none")
    return _elementwise_result(total, elements, x.size, reduction), ElementwiseLossContext(x, y, None, reduction)


def mse_loss_backward(grad_output: float | np.ndarray, ctx: ElementwiseLossContext) -> np.ndarray:
    """Gradient of mse_loss with respect to input: 2 (input - target) * grad_output
    (/ input.size for 'mean').

    Args:
        grad_output: the gradient of the loss: a number (1.0 for the loss itself); for
            reduction='none' a number or an array of input's shape.
        ctx: mse_loss_forward's ElementwiseLossContext.

    Returns:
        dL/dinput, a new array of input's shape and dtype.
    """
    input, target, _, reduction = context(ctx, ElementwiseLossContext, "mse_loss")
    x, y = _pair(input, target)
    dlosses = _grad_of_losses(grad_output, x.shape, x.dtype, _reduction(reduction), x.size)
    return _C.mse_backward(dlosses, x, y)


def _pos_weight(pos_weight: float | np.ndarray | None, x: np.ndarray) -> np.ndarray | None:
    if pos_weight is None:
        return None
    pw = float_array(pos_weight, "pos_weight", ndim=(0, 1)).astype(x.dtype, copy=False).reshape(-1)
    last = x.shape[-1] if x.ndim else 1
    if pw.size not in (1, last):
        raise ValueError(f"pos_weight: expected 1 or {last} values (one per class on the input's last axis), "
                         f"got shape {np.shape(pos_weight)}")
    return pw


def binary_cross_entropy_with_logits(input: np.ndarray, target: np.ndarray,
                                     pos_weight: float | np.ndarray | None = None,
                                     reduction: str = "mean") -> float | np.ndarray:
    """Binary cross entropy on logits x with targets y in [0, 1], computed stably, as
    torch.nn.functional.binary_cross_entropy_with_logits:

        loss = (1 - y) * x + (1 + (pos_weight - 1) * y) * log(1 + exp(-x))

    with log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|)), which never overflows.

    Args:
        input: logits x, float32 or float64 array of any shape.
        target: y, input's shape and dtype.
        pos_weight: (C,) weights of the positive term of each class on the last axis, one
            value (a number or a 1-element array) for all, or None (default: 1).
        reduction: 'mean' (default), 'sum' or 'none'.

    Returns:
        The loss, a Python float for 'mean' and 'sum', or a new array of input's shape and
        dtype for 'none'.
    """
    return binary_cross_entropy_with_logits_forward(input, target, pos_weight, reduction)[0]


def binary_cross_entropy_with_logits_forward(input: np.ndarray, target: np.ndarray,
                                             pos_weight: float | np.ndarray | None = None, reduction: str = "mean"
                                             ) -> tuple[float | np.ndarray, ElementwiseLossContext]:
    """binary_cross_entropy_with_logits, and what its backward needs.

    Args:
        input: logits x, float32 or float64 array of any shape.
        target: y, input's shape and dtype.
        pos_weight: as binary_cross_entropy_with_logits (default None).
        reduction: 'mean' (default), 'sum' or 'none'.

    Returns:
        (loss, ctx) with loss as binary_cross_entropy_with_logits returns it; ctx =
        ElementwiseLossContext(input, target, pos_weight, reduction).
    """
    x, y = _pair(input, target)
    pw = _pos_weight(pos_weight, x)
    _reduction(reduction)
    total, elements = _C.bce_with_logits_forward(x, y, pw, reduction == "none")
    return _elementwise_result(total, elements, x.size, reduction), ElementwiseLossContext(x, y, pw, reduction)


def binary_cross_entropy_with_logits_backward(grad_output: float | np.ndarray,
                                              ctx: ElementwiseLossContext) -> np.ndarray:
    """Gradient of binary_cross_entropy_with_logits with respect to input:
    ((1 - y) - (1 + (pos_weight - 1) y) * sigmoid(-x)) * grad_output, i.e. sigmoid(x) - y
    without pos_weight (/ input.size for 'mean').

    Args:
        grad_output: the gradient of the loss: a number (1.0 for the loss itself); for
            reduction='none' a number or an array of input's shape.
        ctx: binary_cross_entropy_with_logits_forward's ElementwiseLossContext.

    Returns:
        dL/dinput, a new array of input's shape and dtype.
    """
    input, target, pos_weight, reduction = context(ctx, ElementwiseLossContext, "binary_cross_entropy_with_logits")
    x, y = _pair(input, target)
    pw = _pos_weight(pos_weight, x)
    dlosses = _grad_of_losses(grad_output, x.shape, x.dtype, _reduction(reduction), x.size)
    return _C.bce_with_logits_backward(dlosses, x, y, pw)
