"""Adam and AdamW (PyTorch's formulas, including the bias corrections and amsgrad)."""
__all__ = ["Adam", "AdamW"]
import numbers

import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _number


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), as torch.optim.Adam.

    Args: params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
    and keywords maximize=False, decoupled_weight_decay=False (True gives AdamW).

    Per parameter p with gradient g, at step t = 1, 2, ...:
        g = g + weight_decay * p        (AdamW instead: p = p * (1 - lr * weight_decay))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2          (amsgrad: v_max = max(v_max, v), used for v)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    State per parameter: 'step', 'exp_avg' (m), 'exp_avg_sq' (v), 'max_exp_avg_sq' (amsgrad).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "eps", "weight_decay"):
            _number(group, name)
        for name in ("amsgrad", "maximize", "decoupled_weight_decay"):
            _flag(group, name)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
                isinstance(b, numbers.Real) and not isinstance(b, bool) for b in betas):
            raise TypeError(f"betas: expected a pair of floats (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas: expected beta{i + 1} in [0, 1), got {beta}")
        group["betas"] = (float(betas[0]), float(betas[1]))

    def _state_keys(self, group):
        required = ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        return required, ()

    def _new_state(self, data, group):
        state = {"step": 0, "exp_avg": np.zeros_like(data), "exp_avg_sq": np.zeros_like(data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(data)
        return state

    def _update(self, data, grad, state, group):
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = np.zeros_like(data)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        # PyTorch keeps the step as a float and forms these in Python doubles
        step = float(state["step"])
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = group["lr"] / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        _C.adam_step(data, grad, state["exp_avg"], state["exp_avg_sq"],
                     state["max_exp_avg_sq"] if group["amsgrad"] else None, group["lr"], beta1, beta2,
                     group["eps"], group["weight_decay"], group["decoupled_weight_decay"], step_size,
                     bias_correction2_sqrt, group["maximize"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as torch.optim.AdamW:
    each step first shrinks p by (1 - lr * weight_decay), then takes the Adam step with the
    plain gradient. Args as Adam, with weight_decay=1e-2 by default."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
