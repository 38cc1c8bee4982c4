"""RMSprop (PyTorch's formulas, including centered and momentum variants)."""
from __future__ import annotations

__all__ = ["RMSprop"]
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _number

if TYPE_CHECKING:
    from .optimizer import ParamsT


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), as torch.optim.RMSprop.

    Args:
        params: an iterable of Parameters (model.parameters()) or of param-group dicts.
        lr: float >= 0, the learning rate; default 1e-2.
        alpha: float >= 0, the smoothing constant of the running average of g^2; default 0.99.
        eps: float >= 0, added to the denominator for numerical stability; default 1e-8.
        weight_decay: float >= 0, the L2 penalty added to the gradient; default 0.
        momentum: float >= 0, the momentum factor (0: no momentum buffer); default 0.
        centered: bool, normalise by an estimate of the gradient's variance (subtract the
            squared running mean of g); default False.
        maximize: bool, keyword only: ascend the objective (the gradient is negated);
            default False.

    Per parameter p with gradient g:
        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g^2
        centered: a = alpha * a + (1 - alpha) * g and d = sqrt(s - a^2) + eps; else d = sqrt(s) + eps
        momentum > 0: b = momentum * b + g / d, p = p - lr * b;  else p = p - lr * g / d
    State per parameter: 'step', 'square_avg' (s), 'momentum_buffer' (b), 'grad_avg' (a, centered).
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            _number(group, name)
        _flag(group, "centered")
        _flag(group, "maximize")

    def _state_keys(self, group: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        required: tuple[str, ...] = ("step", "square_avg")
        required += ("momentum_buffer",) if group["momentum"] > 0 else ()
        required += ("grad_avg",) if group["centered"] else ()
        return required, ()

    def _new_state(self, data: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        state = {"step": 0, "square_avg": np.zeros_like(data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(data)
        return state

    def _update(self, data: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        for key in self._state_keys(group)[0]:
            if key not in state:  # an option switched on after the first step
                state[key] = np.zeros_like(data)
        state["step"] += 1
        _C.rmsprop_step(data, grad, state["square_avg"], state["grad_avg"] if group["centered"] else None,
                        state["momentum_buffer"] if group["momentum"] > 0 else None, group["lr"], group["alpha"],
                        group["eps"], group["weight_decay"], group["momentum"], group["maximize"])
