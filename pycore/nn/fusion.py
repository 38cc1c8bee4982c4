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

ReLU followed by MaxPool2d pools and clips in one pass (max_pool2d(relu(x)) equals
relu(max_pool2d(x)), so ReLU's full-size output is never written), and a Conv2d/Linear +
ReLU + MaxPool2d triple runs the layer with its ReLU epilogue, then the pooling. Either
way backward applies ReLU's mask in the pooling's backward: an output's gradient reaches
its maximum only where the pooled output is > 0 (the maximum's pre-activation is > 0
exactly then), which saves the separate relu_backward pass over the full-size map
(LeNet-5's conv1: 64 x 6 x 28 x 28 values per step). After a fused ReLU + MaxPool2d pair
the ReLU module keeps nothing (its output was never made); in the triple it keeps its
output, as unfused.

Only these exact classes fuse (a subclass may override forward), and nothing fuses in
debug mode (pycore.set_debug), whose messages name the layer that produced a NaN.
The modules, their names, state_dict keys and repr are the Sequential's, unchanged.
"""
from .. import _context
from .._context import is_grad_enabled
from ..functional.fused import activation_backward
from ..functional.pooling import _max_pool_backward, max_pool2d_forward
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear
from .pooling import MaxPool2d

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


class ReLUPoolStep:
    """ReLU and MaxPool2d run as one, after a Conv2d/Linear (with ReLU as its epilogue) or
    on their own; backward sends the gradient through the pooling and ReLU's mask at once."""

    __slots__ = ("layer", "relu", "pool", "pooled")

    def __init__(self, layer, relu, pool):
        self.layer, self.relu, self.pool = layer, relu, pool
        self.pooled = None  # the pooled output while a backward is due: ReLU's mask

    def __call__(self, x):
        keep = is_grad_enabled()
        if self.layer is None:
            x, geometry = self.pool._input(x)
            clip = True  # relu inside the pooling pass; ReLU's own output never exists
        else:
            x = self.layer._fused_forward(x, "relu")
            self.relu._save_for_backward(x)
            x, geometry = self.pool._input(x)
            clip = False  # already clipped by the layer's epilogue
        y, argmax = max_pool2d_forward(x, geometry, relu=clip, with_indices=keep)
        self.pool._save_for_backward(argmax, geometry)
        self.pooled = y if keep else None
        return y

    def backward(self, grad_output):
        argmax, geometry = self.pool._pop_saved()
        if self.layer is not None:
            self.relu._pop_saved()  # the mask comes from the pooled output instead
        pooled, self.pooled = self.pooled, None
        if not (self.pool.requires_input_grad and self.relu.requires_input_grad):
            return None
        # geometry and argmax come from this step's own forward: only grad_output is checked.
        grad = _max_pool_backward(self.pool._grad(grad_output, geometry), argmax, geometry, pooled)
        return grad if self.layer is None else self.layer.backward(grad)


def plan(modules):
    """The steps that run `modules` (a list) in order: a module, a FusedStep for a layer and
    its activation, or a ReLUPoolStep for [layer +] ReLU + MaxPool2d."""
    if _context.is_debug():
        return list(modules)
    steps, i = [], 0
    while i < len(modules):
        m = modules[i]
        following = [type(n) for n in modules[i + 1:i + 3]]
        act = _activation(modules[i + 1]) if following and type(m) in _LAYERS else None
        if act is not None and following == [ReLU, MaxPool2d]:
            steps.append(ReLUPoolStep(m, modules[i + 1], modules[i + 2]))
            i += 3
        elif act is not None:
            steps.append(FusedStep(m, modules[i + 1], *act))
            i += 2
        elif type(m) is ReLU and following[:1] == [MaxPool2d]:
            steps.append(ReLUPoolStep(None, m, modules[i + 1]))
            i += 2
        else:
            steps.append(m)
            i += 1
    return steps
