"""How Sequential runs a layer and the activation after it as one fused layer.

    Sequential(Conv2d(1, 6, 5), ReLU(), MaxPool2d(2), Flatten(), Linear(864, 10), Tanh())
    runs as   [Conv2d+ReLU], MaxPool2d, Flatten, [Linear+Tanh]

A Conv2d or Linear followed by ReLU, LeakyReLU (negative_slope >= 0), Tanh or Sigmoid
becomes one step: the layer's GEMM adds the bias and applies the activation as it writes
each output tile (csrc/gemm.h, GemmEpilogue), so the output is written once instead of
three times. Backward runs the activation's own backward on the ctx its forward would
have kept, built from the output alone (y; for LeakyReLU with slope >= 0, y stands in
for the input: the same sign), then the layer's own backward. Results are those of the
unfused modules, and each module keeps its own ctx, so either may still be
differentiated on its own.

ReLU followed by MaxPool2d pools and clips in one pass (max_pool2d(relu(x)) equals
relu(max_pool2d(x)), so ReLU's full-size output is never written), and a Conv2d/Linear +
ReLU + MaxPool2d triple runs the layer with its ReLU epilogue, then the pooling. Either
way backward applies ReLU's mask in the pooling's backward: an output's gradient reaches
its maximum only where the pooled output is > 0 (the maximum's pre-activation is > 0
exactly then), which saves the separate relu_backward pass over the full-size map
(LeNet-5's conv1: 64 x 6 x 28 x 28 values per step). After a fused ReLU + MaxPool2d pair
the ReLU module keeps nothing (its output was never made); in the triple it keeps its
output, as unfused. The pooling keeps F.relu_max_pool2d_forward's ctx (its output is
ReLU's mask), which on the layer's already clipped output is plain max pooling.

Only these exact classes fuse (a subclass may override forward), and nothing fuses in
debug mode (pycore.set_debug), whose messages name the layer that produced a NaN.
The modules, their names, state_dict keys and repr are the Sequential's, unchanged.
"""
from __future__ import annotations

from typing import Any, Union, cast

import numpy as np

from .. import _context
from .. import functional as F
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear
from .module import Module
from .pooling import MaxPool2d

_LAYERS = (Conv2d, Linear)
_Layer = Union[Conv2d, Linear]
_ACTIVATIONS = {ReLU: "relu", LeakyReLU: "leaky_relu", Tanh: "tanh", Sigmoid: "sigmoid"}


def _activation(module: Module) -> tuple[str, float] | None:
    """(name, negative_slope) for an activation the GEMM epilogue applies, else None."""
    name = _ACTIVATIONS.get(type(module))
    if name is None:
        return None
    slope = getattr(module, "negative_slope", 0.01)
    # A negative slope flips the sign of y, and backward could not tell the side from y.
    return (name, slope) if slope >= 0 else None


def _ctx_from_output(act: Module, y: np.ndarray) -> Any:
    """The ctx act's own forward keeps, from the fused layer's output y: y itself for
    ReLU, Tanh and Sigmoid; for LeakyReLU (slope >= 0 here) y in place of its input."""
    return F.activation.LeakyReLUContext(y, act.negative_slope) if type(act) is LeakyReLU else y


class FusedStep:
    """A layer and its activation run as one: forward and backward, keeping both modules' ctx."""

    __slots__ = ("layer", "act", "name", "slope")

    def __init__(self, layer: _Layer, act: Module, name: str, slope: float) -> None:
        self.layer, self.act, self.name, self.slope = layer, act, name, slope

    def __call__(self, x: Any) -> np.ndarray:
        y = self.layer._fused_forward(x, self.name, self.slope)
        self.act._save_for_backward(_ctx_from_output(self.act, y))
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        grad_pre = self.act.backward(grad_output)
        return None if grad_pre is None else self.layer.backward(grad_pre)


class ReLUPoolStep:
    """ReLU and MaxPool2d run as one, after a Conv2d/Linear (with ReLU as its epilogue) or
    on their own; backward sends the gradient through the pooling and ReLU's mask at once."""

    __slots__ = ("layer", "relu", "pool")

    def __init__(self, layer: _Layer | None, relu: ReLU, pool: MaxPool2d) -> None:
        self.layer, self.relu, self.pool = layer, relu, pool

    def __call__(self, x: Any) -> np.ndarray:
        if self.layer is not None:
            x = self.layer._fused_forward(x, "relu")
            self.relu._save_for_backward(x)
        # relu inside the pooling pass (alone: ReLU's own output never exists; after the
        # layer: x is already clipped, and the pooled output is ReLU's mask for backward)
        return self.pool._forward_with(F.relu_max_pool2d_forward, F.relu_max_pool2d, x)

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        if self.layer is not None:
            self.relu._pop_saved()  # the mask comes from the pooled output in the pool's ctx
        grad = self.pool._backward_with(F.relu_max_pool2d_backward, grad_output)
        if grad is None or not self.relu.requires_input_grad:
            return None
        return grad if self.layer is None else self.layer.backward(grad)


def plan(modules: list[Module]) -> list[Module | FusedStep | ReLUPoolStep]:
    """The steps that run `modules` (a list) in order: a module, a FusedStep for a layer and
    its activation, or a ReLUPoolStep for [layer +] ReLU + MaxPool2d."""
    if _context.is_debug():
        return list(modules)
    steps: list[Module | FusedStep | ReLUPoolStep] = []
    i = 0
    while i < len(modules):
        m = modules[i]
        following = [type(n) for n in modules[i + 1:i + 3]]
        act = _activation(modules[i + 1]) if following and type(m) in _LAYERS else None
        # (the casts restate the exact-type tests, which mypy does not narrow on)
        if act is not None and following == [ReLU, MaxPool2d]:
            steps.append(ReLUPoolStep(cast(_Layer, m), cast(ReLU, modules[i + 1]), cast(MaxPool2d, modules[i + 2])))
            i += 3
        elif act is not None:
            steps.append(FusedStep(cast(_Layer, m), modules[i + 1], *act))
            i += 2
        elif type(m) is ReLU and following[:1] == [MaxPool2d]:
            steps.append(ReLUPoolStep(None, m, cast(MaxPool2d, modules[i + 1])))
            i += 2
        else:
            steps.append(m)
            i += 1
    return steps
