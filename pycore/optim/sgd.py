"""SGD with momentum, dampening, Nesterov momentum and weight decay (PyTorch's formulas)."""
__all__ = ["SGD"]
import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _number


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD.

    Args: params (Parameters or param-group dicts), lr=1e-3, momentum=0, dampening=0,
    weight_decay=0, nesterov=False, maximize=False (keyword).

    Per parameter p with gradient g:
        g = g + weight_decay * p                       (negate g first when maximize)
        with momentum: b = g on the first step, then b = momentum * b + (1 - dampening) * g;
                       g = g + momentum * b (nesterov) or g = b
        p = p - lr * g
    State per parameter: 'momentum_buffer' (when momentum != 0), created at its first step.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            _number(group, name)
        _flag(group, "nesterov")
        _flag(group, "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"nesterov: Nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _state_keys(self, group):
        return (), ("momentum_buffer",)

    def _new_state(self, data, group):
        return {}

    def _update(self, data, grad, state, group):
        buffer, first_step = None, False
        if group["momentum"] != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = np.empty_like(data)
                first_step = True
        _C.sgd_step(data, grad, buffer, group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                    group["nesterov"], group["maximize"], first_step)
