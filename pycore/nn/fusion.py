"""How Sequential runs a layer and the activation after it as one fused layer.

    Sequential(Conv2d(1, 6, 5), ReLU(), MaxPool2d(2), Flatten(), Linear(864, 10), Tanh())
    runs as   [Conv2d+ReLU], MaxPool2d, Flatten, [Linear+Tanh]

A Conv2d or Linear followed by ReLU, LeakyReLU (negative_slope >= 0), Tanh or Sigmoid
becomes one step: the layer's GEMM adds the bias and applies the activation as it writes
each output tile (csrc/gemm.h, GemmEpilogue), so the output is written once instead of
three times. Backward turns dL/dy into dL/d(pre-activation) from the output alone
(functional.fused.activation_backward), then runs the layer's own backward. Results are
those of the unfused modules, and each module keeps its own state: the layer saves its
input, the activation its output, so either may still be called on its own.

Only these exact classes fuse (a subclass may override forward), and nothing fuses in
debug mode (pycore.set_debug), whose messages name the layer that produced a NaN.
The modules, their names, state_dict keys and repr are the Sequential's, unchanged.
"""
from .. import _context
from ..functional.fused import activation_backward
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear

_LAYERS = (Conv2d, Linear)
_ACTIVATIONS = {ReLU: "relu", LeakyReLU: "leaky_relu", Tanh: "tanh", Sigmoid: "sigmoid"}


def _activation(module):
    """(name, negative_slope) for an activation the GEMM epilogue applies, else None."""
    name = _ACTIVATIONS.get(type(module))
    if name is None:
        return None
    slope = getattr(module, "negative_slope", 0.01)
    # A negative slope flips the sign of y, and backward could not tell the side from y.
    return (name, slope) if slope >= 0 else None


class FusedStep:
    """A layer and its activation run as one: forward and backward, keeping both modules' state."""

    __slots__ = ("layer", "act", "name", "slope")

    def __init__(self, layer, act, name, slope):
        self.layer, self.act, self.name, self.slope = layer, act, name, slope

    def __call__(self, x):
        y = self.layer._fused_forward(x, self.name, self.slope)
        self.act._save_for_backward(y)
        return y

    def backward(self, grad_output):
        (y,) = self.act._pop_saved()
        if not self.act.requires_input_grad:
            return None
        grad_output = self.act._check_input(grad_output, "grad_output")
        if grad_output.shape != y.shape:
            raise ValueError(f"{type(self.act).__name__}.backward: grad_output has shape {grad_output.shape}, "
                             f"expected {y.shape}")
        return self.layer.backward(activation_backward(grad_output, y, self.name, self.slope))


def plan(modules):
    """The steps that run `modules` (a list) in order: a module, or a FusedStep for a pair."""
    if _context.is_debug():
        return list(modules)
    steps, i = [], 0
    while i < len(modules):
        m = modules[i]
        act = _activation(modules[i + 1]) if i + 1 < len(modules) and type(m) in _LAYERS else None
        if act is None:
            steps.append(m)
            i += 1
        else:
            steps.append(FusedStep(m, modules[i + 1], *act))
            i += 2
    return steps
