"""pycore's memory pool: the arrays layers return are reused from step to step.

While a layer runs its forward or backward (a loss too), numpy allocates the arrays it
creates from pycore's caching pool (csrc/memory.h) instead of malloc. An array remembers
where it came from: when it is freed, whenever and wherever that happens, its block goes
back to the pool and the next array of that size class reuses it, already in memory.
A steady training loop then allocates nothing new from the system (no page faults).
Arrays you create yourself with numpy are never from the pool.

The pool keeps at most `cache_limit()` bytes of free blocks (256 MiB by default; set
PYCORE_MEMORY_CACHE_MB before import, or call set_cache_limit); blocks in use are not
counted and are never touched.
"""
__all__ = ["stats", "cache_limit", "set_cache_limit", "empty_cache", "handler_name"]

import functools
from typing import Callable, TypeVar

from . import _C
from ._checks import integer

# Used by nn.Module around every forward/backward: enter() -> token, leave(token).
enter = _C.memory_enter
leave = _C.memory_leave

F = TypeVar("F", bound=Callable[..., object])


def pooled(function: F) -> F:
    """Decorator for pycore's own functions (the functional API): the arrays `function`
    creates come from the pool."""

    @functools.wraps(function)
    def run_pooled(*args: object, **kwargs: object) -> object:
        token = enter()
        try:
            return function(*args, **kwargs)
        finally:
            leave(token)

    return run_pooled  # type: ignore[return-value]  # functools.wraps keeps the signature


#: What numpy reports for a pool-backed array: numpy._core.multiarray.get_handler_name(a).
handler_name = _C.memory_handler_name


def stats() -> dict[str, int]:
    """The pool's counters.

    Returns:
        dict: hits and misses (requests served from the cache / from the system),
        cached_bytes (free blocks kept now), cache_limit, live_blocks (blocks in use).
    """
    return _C.memory_stats()


def cache_limit() -> int:
    """The most bytes of free blocks the pool keeps.

    Returns:
        int: the limit in bytes (PYCORE_MEMORY_CACHE_MB at import, else 256 MiB, until
        set_cache_limit changes it).
    """
    return stats()["cache_limit"]


def set_cache_limit(nbytes: int) -> None:
    """Keep at most `nbytes` of free blocks. Frees the cache now if it holds more.

    Args:
        nbytes: int >= 0, the limit in bytes (0: keep none, every freed block goes back to
            the system).
    """
    _C.memory_set_cache_limit(integer(nbytes, "nbytes", minimum=0))


def empty_cache() -> None:
    """Give every cached free block back to the system (arrays in use stay valid)."""
    _C.memory_empty_cache()
