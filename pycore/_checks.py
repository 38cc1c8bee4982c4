"""Argument checks shared by every public function and module.

Everything a user passes is checked here, in Python, before any C++ runs, so that a
mistake raises an exception that names the argument, what was expected and what
was received: TypeError for a wrong type or dtype, ValueError for a wrong shape or
value. Arrays leave these helpers C-contiguous, which is what the kernels read.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Callable, TypeVar

import numpy as np
from numpy.typing import DTypeLike

T = TypeVar("T")

INT64_MAX = 2 ** 63 - 1
INT64_MIN = -2 ** 63

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_float_dtype(dtype: np.dtype) -> bool:
    """float32 or float64, in either byte order."""
    return dtype.kind == "f" and dtype.itemsize in (4, 8)


def float_dtype(dtype: DTypeLike, name: str = "dtype") -> np.dtype:
    """Return np.dtype(dtype) if it is float32 or float64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def float_array(x: Any, name: str, dtype: DTypeLike | None = None, ndim: int | Iterable[int] | None = None,
                layout: str | None = None, contiguous: bool = True) -> np.ndarray:
    """Return `x` as a C-contiguous float32/float64 ndarray.

    contiguous=False checks without copying (the caller checks the sizes it will
    allocate first, then copies with np.ascontiguousarray).

    dtype: when given, x must already have it (no silent casts: a float64 batch fed
    to a float32 model is a TypeError, as in PyTorch). ndim: an int or a tuple of
    allowed ranks; layout names the expected axes for the message, e.g. "(N, C, H, W)".
    """
    if (type(x) is np.ndarray and x.dtype in FLOAT_DTYPES and (dtype is None or x.dtype == dtype)
            and (ndim is None or x.ndim == ndim or (not isinstance(ndim, int) and x.ndim in ndim))
            and x.flags.c_contiguous):
        return x  # the common case, once per layer call: nothing to convert or report
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, numbers.Number, np.generic)):
            x = np.asarray(x)
        elif hasattr(x, "__array__"):
            x = np.asarray(x)
        else:
            raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if not is_float_dtype(x.dtype):
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {x.dtype}")
    if not x.dtype.isnative:  # byte-swapped data (say, read from a big-endian file)
        x = x.astype(x.dtype.newbyteorder("="))
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name}: dtype {x.dtype} does not match the expected dtype {np.dtype(dtype)}"
                        f" (cast it with .astype(np.{np.dtype(dtype).name}))")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            ranks = " or ".join(f"{n}-D" for n in allowed)
            where = f" {layout}" if layout else ""
            raise ValueError(f"{name}: expected a {ranks} array{where}, got shape {x.shape}")
    # (np.ascontiguousarray would turn a 0-d array into shape (1,).)
    return x if x.flags.c_contiguous or not contiguous else np.ascontiguousarray(x)


def fits_int64(shape: Iterable[int], itemsize: int, what: str, name: str) -> None:
    """Raise ValueError unless an array of `shape` fits in int64 bytes (checked from the
    shape in Python ints, before anything is allocated or handed to C++)."""
    count = math.prod(int(s) for s in shape)
    if count * itemsize > INT64_MAX:
        raise ValueError(f"{name}: the {what} would hold {count} elements ({count * itemsize} bytes) "
                         f"for shape {tuple(int(s) for s in shape)}, more than int64 can index")


def same_dtype(arrays: Sequence[np.ndarray], names: Sequence[str], what: str) -> None:
    """Raise TypeError unless all arrays share one dtype."""
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        listed = ", ".join(f"{n}: {a.dtype}" for n, a in zip(names, arrays))
        raise TypeError(f"{what}: arrays must share one dtype, got {listed}")


def integer(value: Any, name: str, minimum: int | None = INT64_MIN, maximum: int | None = INT64_MAX) -> int:
    """Return value as a Python int (bool is refused), within [minimum, maximum].

    Every int a user passes ends up in C as an int64_t (or smaller): the default bounds
    keep a huge value (2**63) from reaching pybind11 (a signature dump) or Cython (an
    OverflowError); callers with a tighter bound (a C int, a product that must not
    wrap) pass it.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an int <= {maximum}, got {value}")
    return value


def int_pair(value: Any, name: str, minimum: int | None = INT64_MIN,
             maximum: int | None = INT64_MAX) -> tuple[int, int]:
    """An int or a pair of ints (height, width), as PyTorch's _pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
        return (integer(value[0], name, minimum, maximum), integer(value[1], name, minimum, maximum))
    v = integer(value, name, minimum, maximum)
    return (v, v)


def probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return float(value)


def shape_matches(x: np.ndarray, shape: Sequence[int | None], name: str) -> None:
    """Raise ValueError unless x.shape == shape (None in shape matches any size)."""
    ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {x.shape}")


def gradient_buffer(buf: Any, name: str, shape: Iterable[int], dtype: DTypeLike) -> np.ndarray | None:
    """A gradient array updated in place: must already be right, since a copy would lose the writes."""
    if buf is None:
        return None
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array (updated in place) or None, got {type(buf).__name__}")
    if buf.dtype != dtype:
        raise TypeError(f"{name}: dtype {buf.dtype} does not match the input's dtype {dtype}")
    if buf.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {buf.shape}")
    if not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError(f"{name}: must be C-contiguous and writeable (it is updated in place)")
    return buf


def choice(value: Any, name: str, options: Iterable[str]) -> str:
    """value if it is one of options (strings), else ValueError listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return value


def int_single(value: Any, name: str, minimum: int | None = INT64_MIN, maximum: int | None = INT64_MAX) -> int:
    """An int, or a 1-tuple/list holding one (PyTorch's 1-D hyper-parameters accept both)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    return integer(value, name, minimum=minimum, maximum=maximum)


def real(value: Any, name: str, minimum: float | None = None, maximum: float | None = None,
         exclusive_minimum: bool = False, finite: bool = False) -> float:
    """Return value as a Python float (bool is refused: True is not a slope), within
    [minimum, maximum] (or above minimum with exclusive_minimum=True, as eps > 0);
    finite=True also refuses inf and nan (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if minimum is not None and maximum is not None and not exclusive_minimum and not minimum <= value <= maximum:
        raise ValueError(f"{name}: expected a value in [{minimum:g}, {maximum:g}], got {value:g}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        relation = ">" if exclusive_minimum else ">="
        raise ValueError(f"{name}: expected a value {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected a value <= {maximum}, got {value}")
    return value


def optional_float_array(a: Any, name: str, dtype: DTypeLike, shape: Sequence[int | None]) -> np.ndarray | None:
    """None, or a float array of `dtype` whose shape matches `shape` (None entries: any size)."""
    if a is None:
        return None
    a = float_array(a, name, dtype=dtype)
    shape_matches(a, shape, name)
    return a


def grad_like(grad_output: Any, reference: np.ndarray, what: str = "the output's") -> np.ndarray:
    """grad_output as a float array of reference's dtype and shape (the incoming gradient of
    an output that had reference's shape), else TypeError/ValueError naming grad_output."""
    grad_output = float_array(grad_output, "grad_output", dtype=reference.dtype)
    if grad_output.shape != reference.shape:
        raise ValueError(f"grad_output: expected shape {reference.shape} ({what}), got {grad_output.shape}")
    return grad_output


def context(ctx: object, expected_type: type[T], op: str) -> T:
    """ctx, if it is what op's forward returned (an instance of expected_type), else
    TypeError: a backward never trusts a hand-built stand-in."""
    if not isinstance(ctx, expected_type):
        raise TypeError(f"ctx: expected the {expected_type.__name__} that {op}_forward returned, "
                        f"got {type(ctx).__name__}")
    return ctx


class ResolvedCache:
    """Checked results by key, for argument checks that repeat every step with the same
    shapes (conv and pooling geometry: 10-15 us a call saved at LeNet's sizes).

    Callers key by the repr of the hyper-parameters (1 and True, 2 and 2.0 differ there),
    so a value that must be rejected never finds a cached result; failures are not cached.
    Past `size` entries the cache is emptied: a model has a few shapes, many means shapes
    keep changing.
    """

    def __init__(self, size: int = 256) -> None:
        self._entries: dict[Hashable, Any] = {}
        self._size = size

    def get(self, key: Hashable, resolve: Callable[..., T], *args: Any) -> T:
        """The cached value for key, else resolve(*args), kept for next time."""
        value = self._entries.get(key)
        if value is None:
            value = resolve(*args)
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[key] = value
        return value
