"""Process-wide switches: gradient mode, the random generator, debug (anomaly) mode."""
import contextlib
import threading

import numpy as np

_local = threading.local()


def is_grad_enabled():
    """False inside `no_grad()`: forwards then cache nothing for a backward."""
    return getattr(_local, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inference mode for the current thread: modules keep no activations for backward,
    so a served model does not grow its memory, and calling backward raises."""
    previous = is_grad_enabled()
    _local.grad_enabled = False
    try:
        yield
    finally:
        _local.grad_enabled = previous


_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed pycore's generator (weight initialisation, dropout masks, shuffling defaults)."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator():
    return _generator


def get_rng_state():
    """The generator's state as a plain dict (JSON-safe), for checkpoints."""
    return _generator.bit_generator.state


def set_rng_state(state):
    global _generator
    bit_gen = getattr(np.random, state["bit_generator"])()
    bit_gen.state = state
    _generator = np.random.Generator(bit_gen)


_debug = False


def set_debug(enabled=True):
    """Anomaly mode: when on, every module checks its forward output and its backward
    gradients (input and parameters) for NaN/Inf and raises FloatingPointError naming the
    first layer that produced one. Costs a pass over each array; off by default."""
    global _debug
    _debug = bool(enabled)


def is_debug():
    return _debug
