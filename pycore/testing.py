"""Gradient checking: compare a backward against float64 central finite differences.

    from pycore.testing import gradcheck
    layer = MyLayer(..., dtype=np.float64)
    gradcheck(layer, x)                       # every input and parameter gradient

For a model or layer you wrote (a new op, a hand-written backward), this is the test that
its backward matches its forward. Everything runs in float64, where central differences
with eps=1e-6 are accurate to ~1e-8 for smooth functions; float32 would leave ~1e-3 of
rounding noise, so float32 modules are refused (call `.to(np.float64)` on a copy first).
"""
__all__ = ["gradcheck", "numeric_grad", "GradcheckError"]
import numbers

import numpy as np

from ._context import get_rng_state, no_grad, set_rng_state
from .nn.module import Module


class GradcheckError(AssertionError):
    """An analytic gradient differs from the finite-difference one (the message names it)."""


def numeric_grad(f, x, gy, eps=1e-6):
    """d/dx of sum(f(x) * gy) by central differences (float64), perturbing x in place and
    restoring it. f may ignore its argument and read x itself (a layer's weight, say)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = np.sum(f(x) * gy)
        x[idx] = old - eps
        minus = np.sum(f(x) * gy)
        x[idx] = old
        g[idx] = (plus - minus) / (2 * eps)
    return g


def _float64_inputs(inputs):
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    out = []
    for i, x in enumerate(inputs):
        if not isinstance(x, np.ndarray) or x.dtype != np.float64:
            raise TypeError(f"gradcheck: inputs[{i}] must be a float64 numpy array (finite differences need "
                            f"float64), got {getattr(x, 'dtype', type(x).__name__)}")
        out.append(np.array(x, copy=True))  # perturbed in place below; the caller's stays as it was
    return out


def _tolerance(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0:
        raise ValueError(f"gradcheck: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _as_tuple(grads, count, what):
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != count:
        raise GradcheckError(f"gradcheck: {what} returned {len(grads)} gradient(s) for {count} input(s)")
    return grads


def gradcheck(module_or_fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, backward=None, seed=0):
    """Check every gradient of `module_or_fn` at `inputs` against float64 central
    differences; True when all match, else GradcheckError naming the first that differs.

    module_or_fn: a Module (in float64; its forward's output is differentiated by its
    backward, which must return the input gradient(s) and add into each parameter's .grad),
    or a function of the inputs together with `backward(grad_output, *inputs)` returning
    one gradient per input.
    inputs: a float64 array or a tuple of them (copied, never modified).
    eps: the finite-difference step; a gradient passes when
    |analytic - numeric| <= atol + rtol * |numeric| everywhere.
    The output's weights grad_output are random normal (seeded by `seed`), so that every
    output element counts. Each numeric forward runs under pycore.no_grad() with the
    module's buffers (BatchNorm's running statistics) and pycore's random state (Dropout)
    restored first, so that every evaluation sees the same function. Frozen parameters
    (requires_grad=False) are skipped.
    """
    eps, atol, rtol = _tolerance(eps, "eps"), _tolerance(atol, "atol"), _tolerance(rtol, "rtol")
    if not eps > 0:
        raise ValueError("gradcheck: eps must be > 0")
    inputs = _float64_inputs(inputs)
    is_module = isinstance(module_or_fn, Module)
    if not is_module and not callable(module_or_fn):
        raise TypeError(f"gradcheck: expected a Module or a function, got {type(module_or_fn).__name__}")
    if not is_module and backward is None:
        raise TypeError("gradcheck: a function needs backward=callable(grad_output, *inputs) to check")
    params = []
    if is_module:
        params = [(name, p) for name, p in module_or_fn.named_parameters() if p.requires_grad]
        wrong = [name for name, p in module_or_fn.named_parameters() if p.data.dtype != np.float64]
        if wrong:
            raise TypeError(f"gradcheck: the module must be float64 (finite differences need it); "
                            f"call .to(np.float64) first (not float64: {', '.join(wrong)})")
    buffers = [(b, b.copy()) for _, b in module_or_fn.named_buffers()] if is_module else []
    rng_state = get_rng_state()

    def restore():
        for live, saved in buffers:
            live[...] = saved
        set_rng_state(rng_state)

    def forward():
        restore()
        with no_grad():
            return np.asarray(module_or_fn(*inputs), dtype=np.float64)

    y = forward()
    grad_output = np.random.default_rng(seed).standard_normal(y.shape)
    # Analytic gradients: one forward with gradients on, then backward.
    restore()
    for _, p in params:
        p.grad = np.zeros_like(p.data)
    if is_module:
        module_or_fn.requires_input_grad = True
        module_or_fn(*inputs)
        analytic = _as_tuple(module_or_fn.backward(grad_output), len(inputs), f"{type(module_or_fn).__name__}.backward")
    else:
        analytic = _as_tuple(backward(grad_output, *inputs), len(inputs), "backward")
    checks = [(f"inputs[{i}]", x, g) for i, (x, g) in enumerate(zip(inputs, analytic))]
    checks += [(f"parameter {name!r}", p.data, p.grad.copy()) for name, p in params]
    try:
        for what, array, got in checks:
            expected = numeric_grad(lambda _: forward(), array, grad_output, eps)
            got = np.asarray(got)
            if got.shape != expected.shape:
                raise GradcheckError(f"gradcheck: the gradient of {what} has shape {got.shape}, expected "
                                     f"{expected.shape}")
            error = np.abs(got - expected)
            bad = error > atol + rtol * np.abs(expected)
            if bad.any():
                worst = np.unravel_index(np.argmax(np.where(bad, error, -1)), error.shape)
                raise GradcheckError(
                    f"gradcheck: the gradient of {what} differs from finite differences at {bad.sum()} of "
                    f"{bad.size} positions; worst at index {tuple(int(i) for i in worst)}: analytic "
                    f"{got[worst]:.6g}, numeric {expected[worst]:.6g} (atol={atol}, rtol={rtol})")
    finally:
        restore()
    return True
