"""Gradient checking: compare a backward against float64 central finite differences.

    from pycore.testing import gradcheck
    layer = MyLayer(..., dtype=np.float64)
    gradcheck(layer, x)                       # every input and parameter gradient

For a model or layer you wrote (a new op, a hand-written backward), this is the test that
its backward matches its forward. Everything runs in float64, where central differences
with eps=1e-6 are accurate to ~1e-8 for smooth functions; float32 would leave ~1e-3 of
rounding noise, so float32 modules are refused (call `.to(np.float64)` on a copy first).
"""
from __future__ import annotations

__all__ = ["gradcheck", "numeric_grad", "GradcheckError"]
import numbers
from collections.abc import Sequence
from typing import Any, Callable, Union

import numpy as np

from ._context import get_rng_state, no_grad, set_rng_state
from .nn.module import Module

#: gradcheck's inputs: one float64 array or several.
Inputs = Union[np.ndarray, Sequence[np.ndarray]]


class GradcheckError(AssertionError):
    """An analytic gradient differs from the finite-difference one (the message names it)."""


def numeric_grad(f: Callable[[np.ndarray], Any], x: np.ndarray, gy: Any, eps: float = 1e-6) -> np.ndarray:
    """d/dx of sum(f(x) * gy) by central differences, perturbing x in place and restoring it.

    Args:
        f: the function, called as f(x) once per perturbation; it may ignore its argument
            and read x itself (a layer's weight, say).
        x: float64 array, the point; each element is moved by +-eps in turn (in place).
        gy: the weights of f's output (an array of its shape, or a scalar).
        eps: float, the finite-difference step; default 1e-6.

    Returns:
        ndarray: the gradient, of x's shape and dtype.
    """
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


def _float64_inputs(inputs: Inputs) -> list[np.ndarray]:
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    out = []
    for i, x in enumerate(inputs):
        if not isinstance(x, np.ndarray) or x.dtype != np.float64:
            raise TypeError(f"gradcheck: inputs[{i}] must be a float64 numpy array (finite differences need "
                            f"float64), got {getattr(x, 'dtype', type(x).__name__)}")
        out.append(np.array(x, copy=True))  # perturbed in place below; the caller's stays as it was
    return out


def _tolerance(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0:
        raise ValueError(f"gradcheck: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _as_tuple(grads: Any, count: int, what: str) -> tuple[Any, ...]:
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != count:
        raise GradcheckError(f"gradcheck: {what} returned {len(grads)} gradient(s) for {count} input(s)")
    return grads


def gradcheck(module_or_fn: Module | Callable[..., Any], inputs: Inputs, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, backward: Callable[..., Any] | None = None, seed: int = 0) -> bool:
    """Check every gradient of `module_or_fn` at `inputs` against float64 central
    differences. A gradient passes when |analytic - numeric| <= atol + rtol * |numeric|
    everywhere; GradcheckError names the first that does not.

    Args:
        module_or_fn: a Module (in float64; its forward's output is differentiated by its
            backward, which must return the input gradient(s) and add into each
            parameter's .grad), or a function of the inputs (then `backward` is needed).
        inputs: a float64 array or a tuple of them (copied, never modified).
        eps: float > 0, the finite-difference step; default 1e-6.
        atol: float >= 0, the absolute tolerance; default 1e-5.
        rtol: float >= 0, the relative tolerance; default 1e-3.
        backward: for a function, backward(grad_output, *inputs) returning one gradient
            per input; default None.
        seed: the seed of grad_output, the output's random normal weights (so that every
            output element counts); default 0.

    Returns:
        bool: True when every gradient matches.

    Each numeric forward runs under pycore.no_grad() with the
    module's buffers (BatchNorm's running statistics) and pycore's random state (Dropout)
    restored first, so that every evaluation sees the same function. Frozen parameters
    (requires_grad=False) are skipped.
    """
    eps, atol, rtol = _tolerance(eps, "eps"), _tolerance(atol, "atol"), _tolerance(rtol, "rtol")
    if not eps > 0:
        raise ValueError("gradcheck: eps must be > 0")
    inputs = _float64_inputs(inputs)
    module = module_or_fn if isinstance(module_or_fn, Module) else None
    if module is None and not callable(module_or_fn):
        raise TypeError(f"gradcheck: expected a Module or a function, got {type(module_or_fn).__name__}")
    if module is None and backward is None:
        raise TypeError("gradcheck: a function needs backward=callable(grad_output, *inputs) to check")
    params: list[tuple[str, Any]] = []
    if module is not None:
        params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        wrong = [name for name, p in module.named_parameters() if p.data.dtype != np.float64]
        if wrong:
            raise TypeError(f"gradcheck: the module must be float64 (finite differences need it); "
                            f"call .to(np.float64) first (not float64: {', '.join(wrong)})")
    buffers = [(b, b.copy()) for _, b in module.named_buffers()] if module is not None else []
    rng_state = get_rng_state()

    def restore() -> None:
        for live, saved in buffers:
            live[...] = saved
        set_rng_state(rng_state)

    def forward() -> np.ndarray:
        restore()
        with no_grad():
            return np.asarray(module_or_fn(*inputs), dtype=np.float64)

    y = forward()
    grad_output = np.random.default_rng(seed).standard_normal(y.shape)
    # Analytic gradients: one forward with gradients on, then backward.
    restore()
    for _, p in params:
        p.grad = np.zeros_like(p.data)
    if module is not None:
        module.requires_input_grad = True
        module(*inputs)
        analytic = _as_tuple(module.backward(grad_output), len(inputs), f"{type(module).__name__}.backward")
    else:
        assert backward is not None  # checked above
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
