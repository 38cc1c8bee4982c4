"""SGD with momentum, dampening, Nesterov momentum and weight decay (PyTorch's formulas)."""
from __future__ import annotations

__all__ = ["SGD"]
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _number

if TYPE_CHECKING:
    from .optimizer import ParamsT


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD.

    Args:
        params: an iterable of Parameters (model.parameters()) or of param-group dicts.
        lr: float >= 0, the learning rate; default 1e-3.
        momentum: float >= 0, the momentum factor; default 0 (plain SGD, no state).
        dampening: float >= 0, how much of the gradient the momentum buffer leaves out
            (it adds (1 - dampening) * g); default 0.
        weight_decay: float >= 0, the L2 penalty added to the gradient; default 0.
        nesterov: bool, Nesterov momentum (needs momentum > 0 and dampening 0); default False.
        maximize: bool, keyword only: ascend the objective (the gradient is negated);
            default False.

    Per parameter p with gradient g:
        g = g + weight_decay * p                       (negate g first when maximize)
        with momentum: b = g on the first step, then b = momentum * b + (1 - dampening) * g;
                       g = g + momentum * b (nesterov) or g = b
        p = p - lr * g
    State per parameter: 'momentum_buffer' (when momentum != 0), created at its first step.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            _number(group, name)
        _flag(group, "nesterov")
        _flag(group, "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"nesterov: Nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _state_keys(self, group: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (), ("momentum_buffer",)

    def _new_state(self, data: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _update(self, data: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        buffer, first_step = None, False
        if group["momentum"] != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = np.empty_like(data)
                first_step = True
        _C.sgd_step(data, grad, buffer, group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                    group["nesterov"], group["maximize"], first_step)
