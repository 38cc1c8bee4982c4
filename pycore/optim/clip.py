"""Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_.

Recurrent networks need it: a gradient pushed back through many steps can grow
geometrically ("exploding gradients"); rescaling it keeps one bad batch from wrecking
the weights. Call between backward and the optimizer's step:

    loss_grad = ...; model.backward(loss_grad)
    total = pycore.optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
"""
from __future__ import annotations

__all__ = ["clip_grad_norm_", "clip_grad_value_"]
import math
import numbers
from collections.abc import Iterable
from typing import Union

import numpy as np

from ..nn.module import Parameter

#: What the clipping functions take: one Parameter or an iterable of them (model.parameters()).
ParametersT = Union[Parameter, Iterable[Parameter]]


def _parameters(parameters: ParametersT, name: str = "parameters") -> list[Parameter]:
    """A list of Parameters from one Parameter or an iterable of them."""
    if isinstance(parameters, Parameter):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{name}: expected a Parameter or an iterable of Parameters, "
                        f"got {type(parameters).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}: item {i} is a {type(p).__name__}, not a pycore.nn.Parameter")
    return params


def _gradients(parameters: ParametersT) -> list[np.ndarray]:
    """The parameters' gradient arrays, clipped in place: one whose .grad is None (never
    computed, or set to None by the set-to-none idiom) is skipped, as PyTorch skips it."""
    return [p.grad for p in _parameters(parameters) if p.grad is not None]


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def clip_grad_norm_(parameters: ParametersT, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so that their joint norm is at most max_norm.

    total = || (||g_1||_p, ||g_2||_p, ...) ||_p over every parameter's .grad (p = norm_type,
    which may be float('inf') for the largest absolute value); then, as PyTorch does,
    every grad is multiplied in place by min(1, max_norm / (total + 1e-6)).

    Args:
        parameters: a Parameter or an iterable of them (e.g. model.parameters()); those
            whose .grad is None (PyTorch's set-to-none idiom) are skipped, as in PyTorch.
        max_norm: float, the largest total norm the gradients keep.
        norm_type: float > 0 or float('inf'), the order p of the norms; default 2.0.
        error_if_nonfinite: bool, default False: raise RuntimeError (and leave the grads
            alone) when total is NaN or infinite; otherwise such a total scales the grads
            to NaN, as in PyTorch.

    Returns:
        float: the total norm before clipping (0.0 when no parameter has a gradient).
    """
    grads = _gradients(parameters)
    max_norm = _real(max_norm, "max_norm")
    norm_type = _real(norm_type, "norm_type")
    if norm_type <= 0 and not math.isinf(norm_type):
        raise ValueError(f"norm_type: expected a positive number or inf, got {norm_type}")
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        norms = [np.max(np.abs(g)) if g.size else 0.0 for g in grads]
        total = float(np.max(norms))
    else:
        norms = [np.linalg.norm(g.reshape(-1), ord=norm_type) if g.size else 0.0 for g in grads]
        total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}, "
                           "so they cannot be clipped; set error_if_nonfinite=False to scale them anyway")
    coefficient = min(1.0, max_norm / (total + 1e-6)) if not math.isnan(total) else float("nan")
    for g in grads:
        g *= g.dtype.type(coefficient)
    return total


def clip_grad_value_(parameters: ParametersT, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place.

    Args:
        parameters: a Parameter or an iterable of them (e.g. model.parameters()); those
            whose .grad is None are skipped.
        clip_value: float >= 0, the largest absolute value a gradient element keeps.
    """
    grads = _gradients(parameters)
    clip_value = _real(clip_value, "clip_value")
    if clip_value < 0:
        raise ValueError(f"clip_value: expected a number >= 0, got {clip_value}")
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)
