"""StepLR, CosineAnnealingLR: learning-rate schedules with torch.optim.lr_scheduler's values.

    scheduler = StepLR(optimizer, step_size=10, gamma=0.1)
    for epoch in range(epochs):
        train_one_epoch(...)          # calls optimizer.step()
        scheduler.step()

Creating a scheduler records each group's 'initial_lr' and sets epoch 0; every step()
moves to the next epoch and writes the new rates into the optimizer's param_groups.
The rates are computed with PyTorch's recursive formulas (each from the previous
rate), so they equal torch's to the last bit, epoch by epoch.
"""
__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR"]
import math

from .._checks import integer
from .optimizer import Optimizer, _number


class LRScheduler:
    """Base class: subclasses define `_next_lrs()`, the rates for `self.last_epoch`.

    state_dict() holds plain numbers and lists: 'base_lrs', 'last_epoch', '_step_count',
    '_last_lr' and the schedule's own hyperparameters (PyTorch's names). The optimizer's
    current rates live in the optimizer's state_dict, as in PyTorch.
    """

    _hyperparameters = ()

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a pycore.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        last_epoch = integer(last_epoch, "last_epoch", minimum=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr': resuming a schedule with "
                                   f"last_epoch={last_epoch} needs the optimizer's state loaded first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def step(self):
        """Advance one epoch and set every group's 'lr' to the schedule's value for it."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self._next_lrs()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The rates the last step() set, one per param group."""
        return list(self._last_lr)

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def _next_lrs(self):
        raise NotImplementedError

    def state_dict(self):
        """{'base_lrs', 'last_epoch', '_step_count', '_last_lr', and the hyperparameters}: numbers and lists."""
        out = {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch, "_step_count": self._step_count,
               "_last_lr": list(self._last_lr)}
        out.update({name: getattr(self, name) for name in self._hyperparameters})
        return out

    def load_state_dict(self, state_dict):
        """Restore a state saved by state_dict() (extra keys from a PyTorch scheduler are ignored)."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise ValueError(f"{name}: expected a dict, got {type(state_dict).__name__}")
        keys = ("base_lrs", "last_epoch", "_step_count", "_last_lr") + tuple(self._hyperparameters)
        missing = [k for k in keys if k not in state_dict]
        if missing:
            raise ValueError(f"{name}: missing entries {missing}")
        groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "_last_lr"):
            if not isinstance(state_dict[key], (list, tuple)) or len(state_dict[key]) != groups:
                raise ValueError(f"{name}: '{key}' must list one rate per param group ({groups}), "
                                 f"got {state_dict[key]!r}")
        restored = {k: state_dict[k] for k in keys}
        restored["last_epoch"] = integer(restored["last_epoch"], "last_epoch", minimum=-1)
        restored["_step_count"] = integer(restored["_step_count"], "_step_count", minimum=0)
        restored["base_lrs"] = [float(v) for v in restored["base_lrs"]]
        restored["_last_lr"] = [float(v) for v in restored["_last_lr"]]
        self._check_hyperparameters(restored)
        for key, value in restored.items():
            setattr(self, key, value)

    def _check_hyperparameters(self, values):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)}" for k in self._hyperparameters)
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply each group's rate by gamma every step_size epochs:
    lr(epoch) = initial_lr * gamma ** (epoch // step_size).

    Args: optimizer, step_size (int >= 1), gamma=0.1, last_epoch=-1.
    """

    _hyperparameters = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        values = {"step_size": step_size, "gamma": gamma}
        self._check_hyperparameters(values)
        self.step_size, self.gamma = values["step_size"], values["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_hyperparameters(self, values):
        values["step_size"] = integer(values["step_size"], "step_size", minimum=1)
        _number(values, "gamma")

    def _next_lrs(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    """Anneal each group's rate along a cosine from its initial value to eta_min over
    T_max epochs (and back up over the next T_max, as PyTorch's schedule does):

        lr(epoch) = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    computed, as in PyTorch, from the previous epoch's rate (SGDR's recursive form).
    Args: optimizer, T_max (int >= 1), eta_min=0.0, last_epoch=-1.
    """

    _hyperparameters = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        values = {"T_max": T_max, "eta_min": eta_min}
        self._check_hyperparameters(values)
        self.T_max, self.eta_min = values["T_max"], values["eta_min"]
        super().__init__(optimizer, last_epoch)

    def _check_hyperparameters(self, values):
        values["T_max"] = integer(values["T_max"], "T_max", minimum=1)
        _number(values, "eta_min")

    def _next_lrs(self):
        epoch, T_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and epoch > 0:
            return [eta_min + (base - eta_min) * (1 + math.cos(epoch * math.pi / T_max)) / 2 for base in self.base_lrs]
        if (epoch - 1 - T_max) % (2 * T_max) == 0:
            # the rate at the bottom of the cosine is eta_min; the recursive ratio below would divide by 0
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
                    for lr, base in zip(self._current_lrs(), self.base_lrs)]
        return [(1 + math.cos(math.pi * epoch / T_max)) / (1 + math.cos(math.pi * (epoch - 1) / T_max))
                * (lr - eta_min) + eta_min for lr in self._current_lrs()]
