"""Process-wide switches: gradient mode, the random generator, debug (anomaly) mode."""
from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np


class _Local(threading.local):
    grad_enabled = True  # each thread's default (a class attribute: no AttributeError to catch per read)


_local = _Local()


def is_grad_enabled() -> bool:
    """Whether forwards on this thread keep what a backward needs.

    Returns:
        bool: False inside `no_grad()` (forwards then cache nothing for a backward), True
        otherwise.
    """
    return _local.grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inference mode for the current thread: modules keep no activations for backward,
    so a served model does not grow its memory, and calling backward raises.

    Returns:
        context manager: use it as `with pycore.no_grad(): ...`; on exit the previous mode
        is back, so blocks nest. Other threads keep their own mode.
    """
    previous = is_grad_enabled()
    _local.grad_enabled = False
    try:
        yield
    finally:
        _local.grad_enabled = previous


# Made on first use, not at import: numpy.random costs ~20 ms of `import pycore` (18-23 ms
# measured with -X importtime on the 2-vCPU Xeon), about half of pycore's own import.
_generator: np.random.Generator | None = None


def manual_seed(seed: Any) -> np.random.Generator:
    """Seed pycore's generator (weight initialisation, dropout masks, shuffling defaults).

    Args:
        seed: anything numpy.random.default_rng accepts (an int, a sequence of ints, a
            SeedSequence or None for fresh entropy).

    Returns:
        numpy.random.Generator: the new generator, which pycore uses from now on.
    """
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    """The generator pycore draws from now (replaced by manual_seed and set_rng_state)."""
    global _generator
    if _generator is None:
        _generator = np.random.default_rng()  # fresh entropy, as numpy's own default
    return _generator


def get_rng_state() -> dict[str, Any]:
    """The state of pycore's generator, for checkpoints.

    Returns:
        dict: numpy's `bit_generator.state`, a plain dict (JSON-safe) that set_rng_state
        accepts.
    """
    return dict(default_generator().bit_generator.state)  # typed a Mapping; numpy makes a new dict per call


def set_rng_state(state: dict[str, Any]) -> None:
    """Put pycore's generator in `state`.

    Args:
        state: dict, a numpy bit generator state as get_rng_state() returns it; its
            'bit_generator' names one of PCG64, PCG64DXSM, MT19937, Philox or SFC64.

    Raises ValueError, with nothing changed, for a state that is not one of numpy's bit
    generators.
    """
    global _generator
    _generator = generator_from_state(state, "rng_state")


def _bit_generators() -> dict[str, type[np.random.BitGenerator]]:
    """The bit generators a saved state may name. A state read from a file picks its class
    from this table: never getattr(np.random, name), which would call e.g. np.random.seed."""
    return {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                          np.random.Philox, np.random.SFC64)}


def generator_from_state(state: Any, what: str) -> np.random.Generator:
    """A new numpy Generator set to `state` (a bit_generator.state dict); ValueError naming
    `what` when the state is malformed. Nothing global is touched."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    known = _bit_generators()
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"{what}: expected a numpy bit generator state with 'bit_generator' one of "
                         f"{sorted(known)}, got {name if isinstance(name, str) else state!r:.100}")
    bit_generator = known[name]()
    try:
        bit_generator.state = copy.deepcopy(state)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{what}: invalid {name} state ({err!s:.200})") from None
    return np.random.Generator(bit_generator)


_debug = False


def set_debug(enabled: bool = True) -> None:
    """Anomaly mode: when on, every module checks its forward output and its backward
    gradients (input and parameters) for NaN/Inf and raises FloatingPointError naming the
    first layer that produced one. Costs a pass over each array; off by default.

    Args:
        enabled: bool, turn anomaly mode on (True, the default) or off (False); any value
            is read by its truth.
    """
    global _debug
    _debug = bool(enabled)


def is_debug() -> bool:
    """Whether anomaly mode is on.

    Returns:
        bool: True while anomaly mode (pycore.set_debug(True)) is on: modules check every
        output and gradient for NaN/Inf.
    """
    return _debug
