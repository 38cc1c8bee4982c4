"""Adam and AdamW (PyTorch's formulas, including the bias corrections and amsgrad)."""
from __future__ import annotations

__all__ = ["Adam", "AdamW"]
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _number

if TYPE_CHECKING:
    from .optimizer import ParamsT


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), as torch.optim.Adam.

    Args:
        params: an iterable of Parameters (model.parameters()) or of param-group dicts.
        lr: float >= 0, the learning rate; default 1e-3.
        betas: (beta1, beta2), each in [0, 1): the decay rates of the running averages of
            the gradient (m) and of its square (v); default (0.9, 0.999).
        eps: float >= 0, added to the denominator for numerical stability; default 1e-8.
        weight_decay: float >= 0, the L2 penalty added to the gradient (with
            decoupled_weight_decay, p is multiplied by 1 - lr * weight_decay instead); default 0.
        amsgrad: bool, divide by the largest v seen so far (Reddi et al., 2018); default False.
        maximize: bool, keyword only: ascend the objective (the gradient is negated);
            default False.
        decoupled_weight_decay: bool, keyword only: shrink the weights directly instead of
            adding weight_decay * p to the gradient (AdamW); default False.

    Per parameter p with gradient g, at step t = 1, 2, ...:
        g = g + weight_decay * p        (AdamW instead: p = p * (1 - lr * weight_decay))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2          (amsgrad: v_max = max(v_max, v), used for v)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    State per parameter: 'step', 'exp_avg' (m), 'exp_avg_sq' (v), 'max_exp_avg_sq' (amsgrad).
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
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

    def _state_keys(self, group: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        required = ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        return required, ()

    def _new_state(self, data: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        state = {"step": 0, "exp_avg": np.zeros_like(data), "exp_avg_sq": np.zeros_like(data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(data)
        return state

    def _update(self, data: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
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
    plain gradient.

    Args:
        params: an iterable of Parameters (model.parameters()) or of param-group dicts.
        lr: float >= 0, the learning rate; default 1e-3.
        betas: (beta1, beta2), each in [0, 1): the decay rates of the running averages of
            the gradient and of its square; default (0.9, 0.999).
        eps: float >= 0, added to the denominator for numerical stability; default 1e-8.
        weight_decay: float >= 0, the decoupled decay coefficient; default 1e-2.
        amsgrad: bool, divide by the largest second moment seen so far; default False.
        maximize: bool, keyword only: ascend the objective; default False.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
