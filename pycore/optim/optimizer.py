"""Optimizer base class: parameter groups, per-parameter state, step, zero_grad, state_dict.

An optimizer holds `param_groups` (a list of dicts: 'params', a list of Parameters, plus
that group's hyperparameters) and `state` (Parameter -> dict of arrays and the step count).
`step()` loops over the parameter tensors in Python and updates each one with a single
fused C++ pass (csrc/optim.cpp) over its values, gradient and state.

state_dict() uses PyTorch's layout, with parameters replaced by their position in the
order of param_groups:

    {'state': {0: {'step': 3, 'exp_avg': array, ...}, 1: {...}},
     'param_groups': [{'lr': 0.001, 'betas': [0.9, 0.999], ..., 'params': [0, 1]}]}

Every value is a numpy array, a Python number, str or bool, or a list/dict of these, so
a checkpoint can store it without pickle. load_state_dict() checks the structure, the
shapes and the names before it changes anything, and raises ValueError naming the problem.
"""
from __future__ import annotations

__all__ = ["Optimizer"]
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np

from .._checks import FLOAT_DTYPES

if TYPE_CHECKING:
    from ..nn.module import Parameter

    #: What an optimizer takes: Parameters (model.parameters()), or param-group dicts
    #: ({'params': [...], 'lr': ...}) for per-group hyperparameters.
    ParamsT = Union[Iterable[Parameter], Iterable[dict[str, Any]]]

# Entries the schedulers keep in a param group (PyTorch's names), saved and restored with it:
# 'initial_lr' by every scheduler, the others by OneCycleLR.
SCHEDULER_GROUP_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _number(group: dict[str, Any], name: str, minimum: float = 0.0, below: float | None = None) -> None:
    """group[name] as a Python float in [minimum, below); TypeError/ValueError naming it."""
    value = group[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not value >= minimum or (below is not None and not value < below):
        interval = f"[{minimum}, {below})" if below is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected a value {interval}, got {value}")
    group[name] = value


def _flag(group: dict[str, Any], name: str) -> None:
    value = group[name]
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    group[name] = bool(value)


def _plain(value: Any) -> Any:
    """A hyperparameter as state_dict stores it: tuples become lists (JSON has no tuples)."""
    return list(value) if isinstance(value, tuple) else value


class Optimizer:
    """Base class of the optimizers. Subclasses define:

    _check_group(group)          validate (and normalise) a group's hyperparameters in place;
    _state_keys(group)           (required, optional) names of a parameter's state entries;
    _new_state(data, group)      the state of a parameter before its first step;
    _update(data, grad, state, group)  one update of `data` (C-contiguous) in place.

    Args:
        params: the parameters to optimize: an iterable of Parameters (model.parameters()),
            or of dicts {'params': [...], hyperparameter: value} (param groups, each with its
            own hyperparameters; those it leaves out take `defaults`). A list, not a set:
            state_dict numbers the parameters in this order.
        defaults: dict, the subclass's hyperparameters and their values for every group.
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[Parameter, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, (np.ndarray, dict, set)) or hasattr(params, "data") or not hasattr(params, "__iter__"):
            raise TypeError(f"params: expected an iterable of Parameters or of param-group dicts, "
                            f"got {type(params).__name__}")
        items: list[Any] = list(params)  # Parameters, or param-group dicts
        if not items:
            raise ValueError("params: the optimizer got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    # -- parameter groups -------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (e.g. a layer unfrozen
        during fine-tuning).

        Args:
            param_group: dict {'params': a Parameter or a list of them, hyperparameter:
                value, ...}; missing hyperparameters take the optimizer's defaults. A
                parameter already in a group, or an unknown hyperparameter, raises.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group: expected a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group: expected a 'params' entry holding the parameters")
        params = param_group["params"]
        if hasattr(params, "data") and hasattr(params, "grad"):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("params: a set has no order, so the state_dict could not be reloaded; pass a list")
        params = list(params)
        for i, p in enumerate(params):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"params[{i}]: expected a Parameter (with .data and .grad), got {type(p).__name__}")
            if not isinstance(p.data, np.ndarray) or p.data.dtype not in FLOAT_DTYPES:
                raise TypeError(f"params[{i}]: expected float32 or float64 data, got "
                                f"{getattr(p.data, 'dtype', type(p.data).__name__)}")
        group = {**self.defaults, **param_group, "params": params}
        unknown = sorted(k for k in group if k not in self.defaults and k not in ("params", *SCHEDULER_GROUP_KEYS))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameter(s) {unknown}; "
                            f"expected some of {sorted(self.defaults)}")
        self._check_group(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError("params: a parameter appears more than once (within or across param groups)")
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the update -------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Reset every parameter's gradient.

        Args:
            set_to_none: bool, default False: fill each .grad with zeros in place (pycore's
                backward adds into .grad). True sets .grad to None (PyTorch's default); the
                next backward recreates it, and step() skips a parameter whose gradient is
                None.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.fill(0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient (one whose .grad is None, or whose
        requires_grad is False, is left alone).

        Args:
            closure: a callable without arguments that recomputes the loss, run before the
                update; default None.

        Returns:
            The closure's value, or None without a closure.
        """
        loss = closure() if closure is not None else None
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.grad is None or not getattr(p, "requires_grad", True):  # never computed, None, or frozen
                    continue
                data, grad = self._arrays(p, f"param_groups[{g}]['params'][{i}]")
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self._new_state(data, group)
                self._update(data, grad, state, group)
                if data is not p.data:
                    p.data[...] = data
        return loss

    def _arrays(self, p: Parameter, where: str) -> tuple[np.ndarray, np.ndarray]:
        """(values to update in place, gradient), both C-contiguous. A parameter whose
        .data is not C-contiguous is updated in a copy that step() writes back."""
        data, grad = p.data, p.grad
        if not isinstance(data, np.ndarray) or data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.step: {where}.data: expected a float32 or float64 array, "
                            f"got {getattr(data, 'dtype', type(data).__name__)}")
        if not data.flags.writeable:
            raise ValueError(f"{type(self).__name__}.step: {where}.data is read-only")
        grad = np.asarray(grad)
        if grad.dtype != data.dtype or grad.shape != data.shape:
            raise ValueError(f"{type(self).__name__}.step: {where}.grad has dtype {grad.dtype} and shape "
                             f"{grad.shape}, expected its data's {data.dtype} and {data.shape}")
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return data, np.ascontiguousarray(grad)

    def _state_keys(self, group: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        raise NotImplementedError

    def _new_state(self, data: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _update(self, data: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- state dict -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's hyperparameters and per-parameter state, in PyTorch's layout.

        Returns:
            dict: {'state': {index: {name: array or step}}, 'param_groups':
            [{hyperparameters, 'params': [indices]}]}. Arrays are copies; parameters are
            numbered in the order of param_groups, as in PyTorch, and only parameters that
            have state appear under 'state'.
        """
        index: dict[int, int] = {}  # id(parameter) -> its number
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {k: v.copy() if isinstance(v, np.ndarray) else v
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by state_dict().

        The saved dict must have as many groups, each with as many parameters, as this
        optimizer; the hyperparameters are taken from it (as PyTorch does) and the state
        arrays are copied, cast to each parameter's dtype, and checked against its shape.
        Nothing changes when a check fails (ValueError naming the entry).

        Args:
            state_dict: dict, from state_dict() (or a PyTorch optimizer's state_dict with its
                tensors converted to arrays). State keys may be ints or their strings (as
                JSON writes them).
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups', got "
                             f"{sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError(f"{name}: 'param_groups' must be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}: the saved state has {len(saved_groups)} parameter group(s), "
                             f"this optimizer has {len(self.param_groups)}")
        by_index, new_groups = {}, []
        for g, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"{name}: param_groups[{g}] must be a dict with a 'params' list")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}: param_groups[{g}] holds {len(saved['params'])} parameter(s) in the saved "
                                 f"state and {len(group['params'])} here")
            missing = sorted(k for k in self.defaults if k not in saved)
            if missing:
                raise ValueError(f"{name}: param_groups[{g}] lacks the hyperparameter(s) {missing}")
            new_group = {k: saved[k] for k in self.defaults}
            for key in SCHEDULER_GROUP_KEYS:
                if key in saved:
                    if isinstance(saved[key], bool) or not isinstance(saved[key], numbers.Real):
                        raise ValueError(
                            f"{name}: param_groups[{g}][{key!r}]: expected a number, got {saved[key]!r:.50}"
                        )
                    new_group[key] = float(saved[key])
            if isinstance(new_group.get("betas"), list):
                new_group["betas"] = tuple(new_group["betas"])
            try:
                self._check_group(new_group)
            except (TypeError, ValueError) as err:
                raise type(err)(f"{name}: param_groups[{g}]: {err}") from None
            new_group["params"] = group["params"]
            new_groups.append(new_group)
            for saved_index, p in zip(saved["params"], group["params"]):
                by_index[self._index(saved_index, name)] = (p, new_group)

        new_state = {}
        for key, entries in saved_state.items():
            index = self._index(key, name)
            if index not in by_index:
                raise ValueError(f"{name}: state entry {key!r} names no parameter of the saved param_groups")
            p, group = by_index[index]
            new_state[p] = self._load_param_state(entries, p, group, f"{name}: state[{key!r}]")
        self.param_groups = new_groups
        self.state = new_state

    @staticmethod
    def _index(key: Any, name: str) -> int:
        try:
            if isinstance(key, bool) or float(key) != int(key):
                raise ValueError
            return int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected an integer parameter index, got {key!r}") from None

    def _load_param_state(self, entries: Any, p: Parameter, group: dict[str, Any], where: str) -> dict[str, Any]:
        """One parameter's saved state, checked against what this optimizer keeps, as fresh arrays."""
        if not isinstance(entries, dict):
            raise ValueError(f"{where}: expected a dict of state entries, got {type(entries).__name__}")
        entries = {k: v for k, v in entries.items() if v is not None}
        required, optional = self._state_keys(group)
        missing = sorted(set(required) - set(entries))
        unexpected = sorted(set(entries) - set(required) - set(optional))
        if missing or unexpected:
            raise ValueError(f"{where}: missing state entries {missing}, unexpected {unexpected} for these "
                             "hyperparameters")
        state: dict[str, object] = {}
        for key, value in entries.items():
            if key == "step":
                step = float(np.asarray(value))
                if step < 0 or step != int(step):
                    raise ValueError(f"{where}['step']: expected a count >= 0, got {value!r}")
                state[key] = int(step)
                continue
            array = np.asarray(value)
            if array.dtype.kind not in "fiu":
                raise ValueError(f"{where}[{key!r}]: expected a numeric array, got dtype {array.dtype}")
            if array.shape != p.data.shape:
                raise ValueError(f"{where}[{key!r}]: the saved array has shape {array.shape}, "
                                 f"the parameter has shape {p.data.shape}")
            state[key] = np.array(array, dtype=p.data.dtype, order="C")
        return state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"
