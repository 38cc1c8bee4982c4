"""Learning-rate schedules with torch.optim.lr_scheduler's values: StepLR, MultiStepLR,
CosineAnnealingLR, LinearLR (warm-up), LambdaLR, OneCycleLR, ReduceLROnPlateau, and the
combinators SequentialLR and ChainedScheduler.

    scheduler = StepLR(optimizer, step_size=10, gamma=0.1)
    for epoch in range(epochs):
        train_one_epoch(...)          # calls optimizer.step()
        scheduler.step()

Creating a scheduler records each group's 'initial_lr' and sets epoch 0; every step()
moves to the next epoch and writes the new rates into the optimizer's param_groups.
The rates are computed with PyTorch's recursive formulas (each from the previous
rate), so they equal torch's to the last bit, epoch by epoch. ReduceLROnPlateau.step takes
the monitored value: scheduler.step(val_loss). pycore.train.fit(scheduler=...) steps a
scheduler per epoch or per optimizer step (scheduler_interval).
"""
from __future__ import annotations

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "CosineAnnealingLR", "LinearLR", "LambdaLR", "OneCycleLR",
           "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler"]
import bisect
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Union

from .._checks import integer
from .optimizer import Optimizer, _number

#: A value given once for every param group, or one per group.
PerGroup = Union[float, Sequence[float]]


class LRScheduler:
    """Base class: subclasses define `_next_lrs()`, the rates for `self.last_epoch`.

    state_dict() holds plain numbers and lists: 'base_lrs', 'last_epoch', '_step_count',
    '_last_lr' and the schedule's own hyperparameters (PyTorch's names). The optimizer's
    current rates live in the optimizer's state_dict, as in PyTorch.

    Args:
        optimizer: Optimizer, whose param groups' 'lr' the schedule sets.
        last_epoch: int >= -1, the index of the last epoch done; default -1 (a new schedule:
            each group's 'initial_lr' is recorded from its 'lr'). A larger value resumes a
            schedule and needs 'initial_lr' already in every group (load the optimizer's
            state first).
    """

    _hyperparameters: tuple[str, ...] = ()  # attribute names, set from the constructor's arguments
    _last_lr: list[float]

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
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

    def step(self) -> None:
        """Advance one epoch and set every group's 'lr' to the schedule's value for it."""
        self._step_count += 1
        self.last_epoch += 1
        self._set_lrs(self._next_lrs())

    def get_last_lr(self) -> list[float]:
        """The rates the last step() set.

        Returns:
            list of float: one rate per param group.
        """
        return list(self._last_lr)

    def _set_lrs(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _initial_step(self) -> None:
        """The step a scheduler takes when created (SequentialLR replays it at a milestone)."""
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def _restart(self) -> None:
        """Jump to epoch 0 with the closed form where there is one (torch's _update_lr(0))."""
        self.last_epoch = 0
        closed_form = getattr(self, "_closed_form_lrs", None)
        self._set_lrs(closed_form() if closed_form is not None else self._next_lrs())

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _next_lrs(self) -> list[float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position and hyperparameters.

        Returns:
            dict: 'base_lrs', 'last_epoch', '_step_count', '_last_lr' and the
            hyperparameters (PyTorch's names), as numbers and lists.
        """
        out = {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch, "_step_count": self._step_count,
               "_last_lr": list(self._last_lr)}
        out.update({name: getattr(self, name) for name in self._hyperparameters})
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by state_dict(); nothing changes when a check fails (ValueError).

        Args:
            state_dict: dict, from state_dict() (extra keys from a PyTorch scheduler are
                ignored).
        """
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

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)}" for k in self._hyperparameters)
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply each group's rate by gamma every step_size epochs:
    lr(epoch) = initial_lr * gamma ** (epoch // step_size).

    Args:
        optimizer: Optimizer, whose rates the schedule sets.
        step_size: int >= 1, the epochs between two decays.
        gamma: float >= 0, the factor of each decay; default 0.1.
        last_epoch: int >= -1, the last epoch done (-1, the default: start the schedule).
    """

    _hyperparameters = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        values: dict[str, Any] = {"step_size": step_size, "gamma": gamma}
        self._check_hyperparameters(values)
        self.step_size, self.gamma = values["step_size"], values["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        values["step_size"] = integer(values["step_size"], "step_size", minimum=1)
        _number(values, "gamma")

    def _next_lrs(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lrs(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneal each group's rate along a cosine from its initial value to eta_min over
    T_max epochs (and back up over the next T_max, as PyTorch's schedule does):

        lr(epoch) = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    computed, as in PyTorch, from the previous epoch's rate (SGDR's recursive form).

    Args:
        optimizer: Optimizer, whose rates the schedule sets.
        T_max: int >= 1, the epochs (or steps) from the initial rate down to eta_min.
        eta_min: float >= 0, the smallest rate; default 0.0.
        last_epoch: int >= -1, the last epoch done (-1, the default: start the schedule).
    """

    _hyperparameters = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        values: dict[str, Any] = {"T_max": T_max, "eta_min": eta_min}
        self._check_hyperparameters(values)
        self.T_max, self.eta_min = values["T_max"], values["eta_min"]
        super().__init__(optimizer, last_epoch)

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        values["T_max"] = integer(values["T_max"], "T_max", minimum=1)
        _number(values, "eta_min")

    def _next_lrs(self) -> list[float]:
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

    def _closed_form_lrs(self) -> list[float]:
        return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


def _real(values: dict[str, Any], name: str, low: float, high: float, low_open: bool = False) -> None:
    """values[name] as a float in [low, high] ((low, high] with low_open); ValueError naming it."""
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (low < value if low_open else low <= value) or not value <= high:
        raise ValueError(f"{name}: expected a value in {'(' if low_open else '['}{low}, {high}], got {value}")
    values[name] = value


class MultiStepLR(LRScheduler):
    """Multiply each group's rate by gamma at each milestone epoch (twice at a milestone
    listed twice): lr(epoch) = initial_lr * gamma ** (number of milestones <= epoch).

    Args:
        optimizer: Optimizer, whose rates the schedule sets.
        milestones: iterable of ints >= 0, the epochs at which the rate decays (in any
            order; kept sorted).
        gamma: float >= 0, the factor of each decay; default 0.1.
        last_epoch: int >= -1, the last epoch done (-1, the default: start the schedule).
    """

    _hyperparameters = ("milestones", "gamma")
    milestones: list[int]
    gamma: float

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        values: dict[str, Any] = {"milestones": milestones, "gamma": gamma}
        self._check_hyperparameters(values)
        self.milestones, self.gamma = values["milestones"], values["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        if isinstance(values["milestones"], (str, bytes)) or not hasattr(values["milestones"], "__iter__"):
            raise TypeError(f"milestones: expected a list of ints, got {type(values['milestones']).__name__}")
        values["milestones"] = sorted(integer(m, "milestones", minimum=0) for m in values["milestones"])
        _number(values, "gamma")

    def _next_lrs(self) -> list[float]:
        hits = self.milestones.count(self.last_epoch)
        if not hits:
            return self._current_lrs()
        return [lr * self.gamma ** hits for lr in self._current_lrs()]

    def _closed_form_lrs(self) -> list[float]:
        return [base * self.gamma ** bisect.bisect_right(self.milestones, self.last_epoch) for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Warm-up: scale each group's rate by a factor going linearly from start_factor to
    end_factor over total_iters steps, then keep it:

        lr(epoch) = initial_lr * (start + (end - start) * min(epoch, total_iters) / total_iters)

    (computed recursively, as in PyTorch).

    Args:
        optimizer: Optimizer, whose rates the schedule sets.
        start_factor: float in (0, 1], the factor at epoch 0; default 1/3.
        end_factor: float in [0, 1], the factor from epoch total_iters on; default 1.0.
        total_iters: int >= 1, the epochs the factor takes to reach end_factor; default 5.
        last_epoch: int >= -1, the last epoch done (-1, the default: start the schedule).
    """

    _hyperparameters = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        values: dict[str, Any] = {"start_factor": start_factor, "end_factor": end_factor, "total_iters": total_iters}
        self._check_hyperparameters(values)
        self.start_factor, self.end_factor, self.total_iters = (values["start_factor"], values["end_factor"],
                                                                values["total_iters"])
        super().__init__(optimizer, last_epoch)

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        _real(values, "start_factor", 0.0, 1.0, low_open=True)
        _real(values, "end_factor", 0.0, 1.0)
        values["total_iters"] = integer(values["total_iters"], "total_iters", minimum=1)

    def _next_lrs(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        return [lr * (1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change))
                for lr in self._current_lrs()]

    def _closed_form_lrs(self) -> list[float]:
        return [base * (self.start_factor + (self.end_factor - self.start_factor)
                        * min(self.total_iters, self.last_epoch) / self.total_iters) for base in self.base_lrs]


class LambdaLR(LRScheduler):
    """lr(epoch) = initial_lr * lr_lambda(epoch), one function for all groups or one per group.

    A function cannot be stored in a checkpoint (no pickle): state_dict() holds the
    counters and rates and 'lr_lambdas': [None, ...] (as PyTorch does for plain functions);
    re-create the scheduler with the same function(s) and then load_state_dict().

    Args:
        optimizer: Optimizer, whose rates the schedule sets.
        lr_lambda: a function of the epoch (int) returning the factor of every group's
            initial rate, or a list of such functions, one per param group.
        last_epoch: int >= -1, the last epoch done (-1, the default: start the schedule).
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        groups = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        functions: list[Any] = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * groups
        if isinstance(lr_lambda, (list, tuple)) and len(functions) != groups:
            raise ValueError(f"lr_lambda: expected {groups} functions (one per param group), got {len(functions)}")
        for i, fn in enumerate(functions):
            if not callable(fn):
                raise TypeError(f"lr_lambda[{i}]: expected a function of the epoch, got {type(fn).__name__}")
        self.lr_lambdas: list[Callable[[int], float]] = functions
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self) -> list[float]:
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position; the functions are not saved.

        Returns:
            dict: LRScheduler.state_dict()'s entries and 'lr_lambdas': one None per group.
        """
        return {**super().state_dict(), "lr_lambdas": [None] * len(self.lr_lambdas)}

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        pass


class OneCycleLR(LRScheduler):
    """The 1cycle policy, per optimizer step: the rate rises from max_lr/div_factor to max_lr
    over pct_start of total_steps, then anneals to max_lr/(div_factor*final_div_factor)
    (three_phase: back to the start first); momentum (or Adam's beta1) moves the other way
    between max_momentum and base_momentum. Same arguments and values as PyTorch's; the
    per-group 'initial_lr', 'max_lr', 'min_lr', 'max_momentum', 'base_momentum' live in the
    optimizer's param_groups (and so in its state_dict), as in PyTorch.

    Args:
        optimizer: Optimizer, whose rates (and momentum or beta1) the schedule sets.
        max_lr: float, or one per param group: the peak rate.
        total_steps: int >= 1, the steps in the cycle; default None: epochs * steps_per_epoch.
        epochs: int >= 1, with steps_per_epoch, when total_steps is None; default None.
        steps_per_epoch: int >= 1, with epochs, when total_steps is None; default None.
        pct_start: float in [0, 1], the fraction of the cycle spent raising the rate;
            default 0.3.
        anneal_strategy: str, 'cos' (cosine annealing, the default) or 'linear'.
        cycle_momentum: bool, move momentum (or Adam's beta1) inversely to the rate; needs
            an optimizer with momentum or betas; default True.
        base_momentum: float, or one per group: the momentum at the peak rate; default 0.85.
        max_momentum: float, or one per group: the momentum at the start and end; default 0.95.
        div_factor: float > 0, initial rate = max_lr / div_factor; default 25.0.
        final_div_factor: float > 0, final rate = initial rate / final_div_factor; default 1e4.
        three_phase: bool, go back down to the initial rate before annealing to the final
            one (fast.ai's variant); default False.
        last_epoch: int >= -1, the last step done (-1, the default: start the schedule).
    """

    _hyperparameters = ("total_steps", "pct_start", "anneal_strategy", "cycle_momentum", "div_factor",
                        "final_div_factor", "three_phase", "use_beta1")
    total_steps: int
    pct_start: float
    anneal_strategy: str
    cycle_momentum: bool
    div_factor: float
    final_div_factor: float
    three_phase: bool
    use_beta1: bool

    def __init__(self, optimizer: Optimizer, max_lr: PerGroup, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum: PerGroup = 0.85,
                 max_momentum: PerGroup = 0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a pycore.optim.Optimizer, got {type(optimizer).__name__}")
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: pass total_steps, or epochs and steps_per_epoch")
            total_steps = integer(epochs, "epochs", minimum=1) * integer(steps_per_epoch, "steps_per_epoch", minimum=1)
        use_beta1 = "betas" in optimizer.defaults
        if cycle_momentum and "momentum" not in optimizer.defaults and not use_beta1:
            raise ValueError("OneCycleLR: cycle_momentum=True needs an optimizer with momentum or betas")
        values: dict[str, Any] = {
            "total_steps": total_steps, "pct_start": pct_start, "anneal_strategy": anneal_strategy,
            "cycle_momentum": cycle_momentum, "div_factor": div_factor, "final_div_factor": final_div_factor,
            "three_phase": three_phase, "use_beta1": use_beta1}
        self._check_hyperparameters(values)
        groups = len(optimizer.param_groups)
        max_lrs = self._per_group(max_lr, "max_lr", groups)
        momenta = (self._per_group(max_momentum, "max_momentum", groups),
                   self._per_group(base_momentum, "base_momentum", groups))
        for name, value in values.items():
            setattr(self, name, value)
        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / self.div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / self.final_div_factor
            if self.cycle_momentum:
                for group, high, low in zip(optimizer.param_groups, *momenta):
                    if self.use_beta1:
                        group["betas"] = (high, *group["betas"][1:])
                    else:
                        group["momentum"] = high
                    group["max_momentum"], group["base_momentum"] = high, low
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _per_group(value: PerGroup, name: str, groups: int) -> list[float]:
        values: list[Any] = list(value) if isinstance(value, (list, tuple)) else [value] * groups
        if len(values) != groups:
            raise ValueError(f"{name}: expected {groups} values (one per param group), got {len(values)}")
        for v in values:
            _number({name: v}, name)
        return [float(v) for v in values]

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        values["total_steps"] = integer(values["total_steps"], "total_steps", minimum=1)
        _real(values, "pct_start", 0.0, 1.0)
        if values["anneal_strategy"] not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy: expected 'cos' or 'linear', got {values['anneal_strategy']!r}")
        for name in ("div_factor", "final_div_factor"):
            _real(values, name, 0.0, math.inf, low_open=True)
        for name in ("cycle_momentum", "three_phase", "use_beta1"):
            if not isinstance(values[name], bool):
                raise TypeError(f"{name}: expected True or False, got {values[name]!r}")

    def _phases(self) -> list[tuple[float, str, str, str, str]]:
        """(end step, start key, end key, start momentum key, end momentum key) per phase."""
        total, pct = self.total_steps, self.pct_start
        if self.three_phase:
            return [(float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                    (float(2 * pct * total) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                    (total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        return [(float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _next_lrs(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, more than total_steps={self.total_steps}")
        phases = self._phases()
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr_from, lr_to, m_from, m_to) in enumerate(phases):
                if step <= end_step or i == len(phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
                    if self.cycle_momentum:
                        momentum = self._anneal(group[m_from], group[m_to], pct)
                        if self.use_beta1:
                            group["betas"] = (momentum, *group["betas"][1:])
                        else:
                            group["momentum"] = momentum
                    break
                start_step = end_step
        return lrs


class ReduceLROnPlateau:
    """Multiply the rates by `factor` when a monitored value has stopped improving for
    `patience` epochs; step(value) once per epoch with that value (e.g. the validation loss).
    Same arguments and values as PyTorch's. `monitor` (pycore only) names the history key
    fit(scheduler=...) passes: by default "val_loss" with a val_loader, else "loss".

    Args:
        optimizer: Optimizer, whose rates the scheduler lowers.
        mode: str, 'min' (the value should fall, e.g. a loss; the default) or 'max' (rise,
            e.g. an accuracy).
        factor: float in [0, 1), new rate = rate * factor; default 0.1.
        patience: int >= 0, the epochs without improvement tolerated before lowering the
            rate; default 10.
        threshold: float >= 0, the least change that counts as an improvement; default 1e-4.
        threshold_mode: str, 'rel' (the change is relative to the best value, the default)
            or 'abs'.
        cooldown: int >= 0, the epochs after a reduction before bad epochs count again;
            default 0.
        min_lr: float, or one per param group: the rate never goes below it; default 0.
        eps: float >= 0, a reduction smaller than eps is skipped; default 1e-8.
        monitor: str or None, the history key fit passes to step(); default None ("val_loss"
            with a val_loader, else "loss").
    """

    # set from the constructor's arguments (or load_state_dict) after one check of all of them
    mode: str
    factor: float
    patience: int
    threshold: float
    threshold_mode: str
    cooldown: int
    eps: float
    min_lrs: list[float]

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr: PerGroup = 0,
                 eps: float = 1e-8, monitor: str | None = None) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a pycore.optim.Optimizer, got {type(optimizer).__name__}")
        groups = len(optimizer.param_groups)
        values: dict[str, Any] = {
            "mode": mode, "factor": factor, "patience": patience, "threshold": threshold,
            "threshold_mode": threshold_mode, "cooldown": cooldown, "eps": eps,
            "min_lrs": list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * groups}
        self._check(values, groups)
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a history key such as 'val_loss', got {monitor!r}")
        self.optimizer, self.monitor = optimizer, monitor
        self.__dict__.update(values)
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    _STATE = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps", "min_lrs",
              "last_epoch", "best", "num_bad_epochs", "cooldown_counter", "_last_lr")

    @staticmethod
    def _check(values: dict[str, Any], groups: int) -> None:
        if values["mode"] not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {values['mode']!r}")
        if values["threshold_mode"] not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected 'rel' or 'abs', got {values['threshold_mode']!r}")
        _number(values, "factor", below=1.0)
        _number(values, "threshold")
        _number(values, "eps")
        values["patience"] = integer(values["patience"], "patience", minimum=0)
        values["cooldown"] = integer(values["cooldown"], "cooldown", minimum=0)
        if len(values["min_lrs"]) != groups:
            raise ValueError(f"min_lr: expected {groups} values (one per param group), got {len(values['min_lrs'])}")
        for i, v in enumerate(values["min_lrs"]):
            entry = {f"min_lr[{i}]": v}
            _number(entry, f"min_lr[{i}]")
            values["min_lrs"][i] = entry[f"min_lr[{i}]"]

    def _better(self, value: float) -> bool:
        relative = self.threshold_mode == "rel"
        if self.mode == "min":
            return value < (self.best * (1.0 - self.threshold) if relative else self.best - self.threshold)
        return value > (self.best * (self.threshold + 1.0) if relative else self.best + self.threshold)

    def step(self, metrics: float) -> None:
        """End one epoch: lower the rates if the value has not improved for `patience` epochs.

        Args:
            metrics: float, the monitored value for this epoch (e.g. the validation loss).
        """
        current = float(metrics)
        self.last_epoch += 1
        if self._better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(float(group["lr"]) * self.factor, floor)
                if float(group["lr"]) - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The current rates.

        Returns:
            list of float: one rate per param group.
        """
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's hyperparameters and progress.

        Returns:
            dict: hyperparameters, best value, counters and rates: numbers, strings and lists.
        """
        return {k: (list(v) if isinstance(v, list) else v) for k, v in ((k, getattr(self, k)) for k in self._STATE)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by state_dict(); nothing changes when a check fails (ValueError).

        Args:
            state_dict: dict, from state_dict().
        """
        name = "ReduceLROnPlateau.load_state_dict"
        if not isinstance(state_dict, dict) or any(k not in state_dict for k in self._STATE):
            raise ValueError(f"{name}: expected a dict with {list(self._STATE)}")
        values = {k: state_dict[k] for k in self._STATE}
        values["min_lrs"] = list(values["min_lrs"]) if isinstance(values["min_lrs"], (list, tuple)) else None
        if values["min_lrs"] is None:
            raise ValueError(f"{name}: 'min_lrs' must be a list")
        self._check(values, len(self.optimizer.param_groups))
        for key in ("last_epoch", "num_bad_epochs", "cooldown_counter"):
            values[key] = integer(values[key], key, minimum=0)
        for key in ("best",):
            if isinstance(values[key], bool) or not isinstance(values[key], numbers.Real):
                raise ValueError(f"{name}: 'best' must be a number, got {values[key]!r}")
            values[key] = float(values[key])
        self.__dict__.update(values)


class _Combined(LRScheduler):
    """Shared checks and state of SequentialLR and ChainedScheduler."""

    _own_state: tuple[str, ...]  # the subclass's own counters in its state_dict
    _schedulers: list[LRScheduler]

    def _check_children(self, schedulers: Iterable[Any], optimizer: Optimizer | None) -> list[LRScheduler]:
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError(f"{type(self).__name__}: expected at least one scheduler")
        for i, child in enumerate(schedulers):
            if not isinstance(child, LRScheduler):
                kind = "ReduceLROnPlateau (it needs a value at each step)" if isinstance(child, ReduceLROnPlateau) \
                    else type(child).__name__
                raise TypeError(f"{type(self).__name__}: schedulers[{i}] must be an epoch scheduler, got {kind}")
            if child.optimizer is not optimizer:
                raise ValueError(f"{type(self).__name__}: schedulers[{i}] belongs to another optimizer")
        return schedulers

    def state_dict(self) -> dict[str, Any]:
        """The combination's state and its schedulers'.

        Returns:
            dict: its own counters, '_last_lr', and '_schedulers': each scheduler's state_dict.
        """
        return {**{k: getattr(self, k) for k in self._own_state},
                "_last_lr": list(self._last_lr), "_schedulers": [c.state_dict() for c in self._schedulers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by state_dict(), every scheduler's or none (ValueError).

        Args:
            state_dict: dict, from state_dict().
        """
        name = f"{type(self).__name__}.load_state_dict"
        if (not isinstance(state_dict, dict) or not isinstance(state_dict.get("_schedulers"), list)
                or len(state_dict["_schedulers"]) != len(self._schedulers)):
            raise ValueError(f"{name}: expected a dict with '_schedulers', one state per scheduler "
                             f"({len(self._schedulers)})")
        own = {k: integer(state_dict.get(k), k, minimum=-1) for k in self._own_state}
        # validate all children before writing any: each child's load_state_dict validates first
        # then writes, so load into copies of their current states, restoring on a failure
        saved = [c.state_dict() for c in self._schedulers]
        try:
            for child, state in zip(self._schedulers, state_dict["_schedulers"]):
                child.load_state_dict(state)
        except BaseException:
            for child, state in zip(self._schedulers, saved):
                child.load_state_dict(state)
            raise
        self.__dict__.update(own)
        self._last_lr = [float(v) for v in state_dict.get("_last_lr", self._last_lr)]


class SequentialLR(_Combined):
    """Run schedulers one after another: schedulers[i] from epoch milestones[i-1] on, each
    restarted at its milestone (e.g. LinearLR warm-up, then CosineAnnealingLR). As PyTorch's.

    Args:
        optimizer: Optimizer, the one every scheduler in `schedulers` was made for.
        schedulers: list of epoch schedulers (not ReduceLROnPlateau), run in this order.
        milestones: list of ints >= 0, one fewer than the schedulers: the epochs at which
            the next scheduler takes over.
        last_epoch: int >= -1, the last epoch done (-1, the default: start the schedule).
    """

    _own_state = ("last_epoch",)

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a pycore.optim.Optimizer, got {type(optimizer).__name__}")
        children = self._check_children(schedulers, optimizer)
        milestone_epochs = [integer(m, "milestones", minimum=0) for m in milestones]
        if len(milestone_epochs) != len(children) - 1:
            raise ValueError(f"SequentialLR: expected {len(children) - 1} milestones for {len(children)} "
                             f"schedulers, got {len(milestone_epochs)}")
        self.optimizer, self._schedulers, self._milestones = optimizer, children, milestone_epochs
        self.last_epoch = integer(last_epoch, "last_epoch", minimum=-1) + 1
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for child in children:  # undo the step each child took when it was created
            child.last_epoch -= 1
        first = children[bisect.bisect_right(milestone_epochs, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        """Advance one epoch: step the scheduler in charge, or restart the next one at its milestone."""
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        child = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            child._restart()
        else:
            child.step()
        self._last_lr = child.get_last_lr()


class ChainedScheduler(_Combined):
    """Step every scheduler at each step(), in order; their effects on the rate compound.

    Args:
        schedulers: iterable of epoch schedulers (not ReduceLROnPlateau) of one optimizer.
        optimizer: Optimizer or None, the schedulers' optimizer; default None: the first
            scheduler's.
    """

    _own_state = ()

    def __init__(self, schedulers: Iterable[LRScheduler], optimizer: Optimizer | None = None) -> None:
        children = list(schedulers)
        if optimizer is None and children:
            optimizer = getattr(children[0], "optimizer", None)
        self._schedulers = self._check_children(children, optimizer)
        assert optimizer is not None  # _check_children matched every scheduler's optimizer to it
        self.optimizer = optimizer
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self) -> None:
        """Step every scheduler once, in order."""
        for child in self._schedulers:
            child.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
