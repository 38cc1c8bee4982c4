"""RMSprop (PyTorch's formulas, including centered and momentum variants)."""
__all__ = ["RMSprop"]
import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _number


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), as torch.optim.RMSprop.

    Args: params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False, maximize=False (keyword).

    Per parameter p with gradient g:
        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g^2
        centered: a = alpha * a + (1 - alpha) * g and d = sqrt(s - a^2) + eps; else d = sqrt(s) + eps
        momentum > 0: b = momentum * b + g / d, p = p - lr * b;  else p = p - lr * g / d
    State per parameter: 'step', 'square_avg' (s), 'momentum_buffer' (b), 'grad_avg' (a, centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            _number(group, name)
        _flag(group, "centered")
        _flag(group, "maximize")

    def _state_keys(self, group):
        required: tuple[str, ...] = ("step", "square_avg")
        required += ("momentum_buffer",) if group["momentum"] > 0 else ()
        required += ("grad_avg",) if group["centered"] else ()
        return required, ()

    def _new_state(self, data, group):
        state = {"step": 0, "square_avg": np.zeros_like(data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(data)
        return state

    def _update(self, data, grad, state, group):
        for key in self._state_keys(group)[0]:
            if key not in state:  # an option switched on after the first step
                state[key] = np.zeros_like(data)
        state["step"] += 1
        _C.rmsprop_step(data, grad, state["square_avg"], state["grad_avg"] if group["centered"] else None,
                        state["momentum_buffer"] if group["momentum"] > 0 else None, group["lr"], group["alpha"],
                        group["eps"], group["weight_decay"], group["momentum"], group["maximize"])
