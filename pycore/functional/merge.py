"""Merge and shape ops for composite models, with PyTorch's names and signatures.

    class Block(nn.Module):                       # forward only: backward comes from the tape
        def forward(self, x):
            return self.relu(F.add(x, self.branch(x)))

Each op takes and returns plain numpy arrays and computes with numpy. While a composite's
forward is being recorded (pycore/autograd.py) it also records itself with its backward,
so that gradients flow through it; otherwise it is just the numpy expression, and under
pycore.no_grad() nothing is recorded. Inside a recorded forward their outputs are
read-only (a later backward may read them) and views where numpy's are (reshape, select,
narrow, split, chunk, transpose): `.copy()` gives a writeable array.

add/sub/mul/div broadcast as numpy does; an operand may be an array, a Python number or a
pycore Parameter (its gradient, summed over the broadcast axes, goes into its .grad: a
learnable scale `F.mul(x, self.gamma)`). `constant(x)` brings an array into a recorded
forward without a gradient (a fixed mask, positional encoding, or `detach`).
"""
from __future__ import annotations

__all__ = ["add", "sub", "mul", "div", "cat", "stack", "split", "chunk", "reshape", "flatten", "mean", "sum",
           "select", "narrow", "transpose", "permute", "constant", "detach"]

import builtins
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

import numpy as np

from .. import autograd
from .._checks import integer

if TYPE_CHECKING:  # for the annotations only: pycore.nn imports pycore.functional
    from ..nn.module import Parameter

# An op's backward: the gradients of its outputs -> one gradient per operand (None: none).
# The tape runs it only when a gradient reached an output, so a one-output op always gets
# an array; split's pieces may get None for the pieces no gradient reached.
_Backward = Callable[[Sequence[np.ndarray]], tuple[Optional[np.ndarray], ...]]
_Output = TypeVar("_Output", np.ndarray, tuple[np.ndarray, ...])


def _value(operand: np.ndarray | float | Parameter, name: str) -> np.ndarray | numbers.Real:
    """The numpy value of an operand: an array, a real number, or a Parameter's data."""
    if isinstance(operand, np.ndarray):
        if operand.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a numeric array, got dtype {operand.dtype}")
        return operand
    if isinstance(operand, numbers.Real) and not isinstance(operand, bool):
        return operand
    from ..nn.module import Parameter  # (pycore.nn imports pycore.functional)

    if isinstance(operand, Parameter):
        return operand.data
    raise TypeError(f"{name}: expected a numpy array, a number or a Parameter, got {type(operand).__name__}")


def _array(x: np.ndarray, name: str) -> np.ndarray:
    """A numpy array operand (shape ops take arrays only)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")
    return x


def _dim(dim: int, ndim: int, name: str = "dim", extra: int = 0) -> int:
    """dim in [-ndim - extra, ndim + extra) as a non-negative axis (extra=1: stack's new axis)."""
    size = ndim + extra
    dim = integer(dim, name)
    if not -size <= dim < size or size == 0:
        raise ValueError(f"{name}: expected a dimension in [{-size}, {size - 1}] for {ndim}-d input, got {dim}")
    return dim % size


def _dims(dim: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """mean/sum's dim: None (every axis), an int or a tuple of ints, as a tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    axes = tuple(_dim(d, max(ndim, 1)) for d in dims)  # a 0-d array has dims 0 and -1, as in torch
    if ndim == 0:
        return ()
    if len(set(axes)) != len(axes):
        raise ValueError(f"dim: {dim} names an axis twice")
    return axes


def _record(name: str, operands: tuple[object, ...], output: _Output, backward: _Backward) -> _Output:
    """output, recorded with backward(output_grads) -> per-operand grads while a forward is recorded."""
    tape = autograd._recording.tape
    if tape is None:
        return output
    return tape.call_op(name, operands, output, backward)


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient of an operand of `shape` that numpy broadcast to grad's shape: summed
    over the axes broadcasting added or stretched."""
    if np.shape(grad) == tuple(shape):
        return grad
    extra = np.ndim(grad) - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return np.sum(grad, axis=axes).reshape(shape)


def _grad_for(grad: np.ndarray, operand: np.ndarray | float | Parameter,
              value: np.ndarray | numbers.Real) -> np.ndarray | None:
    """grad reduced to an operand's shape; None for a number (nothing to differentiate)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        return None
    return _unbroadcast(grad, value.shape).astype(value.dtype, copy=False)


def _binary(name: str, input: np.ndarray | float | Parameter,
            other: np.ndarray | float | Parameter) -> tuple[np.ndarray | numbers.Real, np.ndarray | numbers.Real]:
    return _value(input, f"{name}: input"), _value(other, f"{name}: other")


def _scalar(alpha: float, name: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{name}: alpha: expected a real number, got {type(alpha).__name__}")
    return alpha


def add(input: np.ndarray | float | Parameter, other: np.ndarray | float | Parameter, *,
        alpha: float = 1) -> np.ndarray:
    """input + alpha * other (torch.add), broadcasting as numpy does.

    Args:
        input: an array, a real number or a Parameter.
        other: an array, a real number or a Parameter.
        alpha: the real number other is scaled by (default 1).

    Returns:
        A new array of the broadcast shape (0-d for two numbers).
    """
    a, b = _binary("add", input, other)
    alpha = _scalar(alpha, "add")
    y = np.asarray(a + (b if alpha == 1 else alpha * b))

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        (g,) = grads
        return _grad_for(g, input, a), _grad_for(g if alpha == 1 else alpha * g, other, b)

    return _record("add", (input, other), y, backward)


def sub(input: np.ndarray | float | Parameter, other: np.ndarray | float | Parameter, *,
        alpha: float = 1) -> np.ndarray:
    """input - alpha * other (torch.sub), broadcasting as numpy does.

    Args:
        input: an array, a real number or a Parameter.
        other: an array, a real number or a Parameter.
        alpha: the real number other is scaled by (default 1).

    Returns:
        A new array of the broadcast shape (0-d for two numbers).
    """
    return add(input, other, alpha=-_scalar(alpha, "sub"))


def mul(input: np.ndarray | float | Parameter, other: np.ndarray | float | Parameter) -> np.ndarray:
    """input * other elementwise (torch.mul), broadcasting as numpy does.

    Args:
        input: an array, a real number or a Parameter.
        other: an array, a real number or a Parameter.

    Returns:
        A new array of the broadcast shape (0-d for two numbers).
    """
    a, b = _binary("mul", input, other)
    y = np.asarray(a * b)

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        (g,) = grads
        return _grad_for(g * b, input, a), _grad_for(g * a, other, b)

    return _record("mul", (input, other), y, backward)


def div(input: np.ndarray | float | Parameter, other: np.ndarray | float | Parameter) -> np.ndarray:
    """input / other elementwise (torch.div, true division), broadcasting as numpy does.

    Args:
        input: an array, a real number or a Parameter.
        other: an array, a real number or a Parameter.

    Returns:
        A new array of the broadcast shape (0-d for two numbers).
    """
    a, b = _binary("div", input, other)
    y = np.asarray(a / b)

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        (g,) = grads
        ga = g / b
        return _grad_for(ga, input, a), _grad_for(-ga * y, other, b)

    return _record("div", (input, other), y, backward)


def _sequence(tensors: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    if isinstance(tensors, np.ndarray) or not isinstance(tensors, (tuple, list)):
        raise TypeError(f"{name}: tensors: expected a tuple or list of arrays, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{name}: tensors: expected at least one array")
    return [_array(t, f"{name}: tensors[{i}]") for i, t in enumerate(tensors)]


def cat(tensors: Sequence[np.ndarray], dim: int = 0) -> np.ndarray:
    """Join arrays along an existing axis dim (torch.cat); the other axes must match.

    Args:
        tensors: a non-empty tuple or list of arrays of one rank.
        dim: the axis to join along, negative counting from the end (default 0).

    Returns:
        A new array holding the arrays one after the other along dim.
    """
    arrays = _sequence(tensors, "cat")
    dim = _dim(dim, arrays[0].ndim)
    for i, t in enumerate(arrays):
        outside = t.shape[:dim] + t.shape[dim + 1:]
        if t.ndim != arrays[0].ndim or outside != arrays[0].shape[:dim] + arrays[0].shape[dim + 1:]:
            raise ValueError(f"cat: tensors[{i}] has shape {t.shape}, which does not match tensors[0]'s "
                             f"{arrays[0].shape} outside dim {dim}")
    y = np.concatenate(arrays, axis=dim)
    bounds = np.cumsum([t.shape[dim] for t in arrays])[:-1]

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(np.split(grads[0], bounds, axis=dim))

    return _record("cat", tuple(tensors), y, backward)


def stack(tensors: Sequence[np.ndarray], dim: int = 0) -> np.ndarray:
    """Join same-shaped arrays along a new axis dim (torch.stack).

    Args:
        tensors: a non-empty tuple or list of arrays of one shape.
        dim: where the new axis goes, in [-ndim - 1, ndim] (default 0).

    Returns:
        A new array with one more axis, of length len(tensors), at dim.
    """
    arrays = _sequence(tensors, "stack")
    dim = _dim(dim, arrays[0].ndim, extra=1)
    for i, t in enumerate(arrays):
        if t.shape != arrays[0].shape:
            raise ValueError(f"stack: tensors[{i}] has shape {t.shape}, expected tensors[0]'s {arrays[0].shape}")
    y = np.stack(arrays, axis=dim)

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(np.moveaxis(grads[0], dim, 0))

    return _record("stack", tuple(tensors), y, backward)


def _pieces(name: str, x: np.ndarray, sizes: list[int], dim: int) -> tuple[np.ndarray, ...]:
    """x cut along dim into pieces of the given sizes (views), recorded as one op."""
    bounds = np.cumsum(sizes)[:-1]
    pieces = tuple(np.split(x, bounds, axis=dim))

    def backward(grads: Sequence[np.ndarray | None]) -> tuple[np.ndarray]:
        parts = [np.zeros_like(p) if g is None else g for g, p in zip(grads, pieces)]
        return (np.concatenate(parts, axis=dim),)

    return _record(name, (x,), pieces, backward)


def split(tensor: np.ndarray, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[np.ndarray, ...]:
    """tensor cut along dim into pieces (torch.split).

    Args:
        tensor: an array.
        split_size_or_sections: an int >= 1, the size of every piece (the last may be
            smaller), or a tuple or list of sizes >= 0 that sum to the axis's length.
        dim: the axis to cut (default 0).

    Returns:
        A tuple of views of tensor, in order along dim.
    """
    x = _array(tensor, "split: tensor")
    dim = _dim(dim, x.ndim)
    length = x.shape[dim]
    if isinstance(split_size_or_sections, (tuple, list)):
        sizes = [integer(s, "split: split_size_or_sections", minimum=0) for s in split_size_or_sections]
        if builtins.sum(sizes) != length:
            raise ValueError(f"split: the sections {list(sizes)} sum to {builtins.sum(sizes)}, but dim {dim} has "
                             f"length {length}")
    else:
        size = integer(split_size_or_sections, "split: split_size_or_sections", minimum=1)
        sizes = [size] * (length // size) + ([length % size] if length % size else [])
    return _pieces("split", x, sizes or [0], dim)


def chunk(input: np.ndarray, chunks: int, dim: int = 0) -> tuple[np.ndarray, ...]:
    """input split along dim into `chunks` pieces of ceil(length / chunks) (torch.chunk: the
    last may be smaller, and there may be fewer than chunks).

    Args:
        input: an array.
        chunks: the number of pieces wanted, >= 1.
        dim: the axis to cut (default 0).

    Returns:
        A tuple of views of input, in order along dim.
    """
    x = _array(input, "chunk: input")
    chunks = integer(chunks, "chunk: chunks", minimum=1)
    dim = _dim(dim, x.ndim)
    size = max(-(-x.shape[dim] // chunks), 1)
    return split(x, size, dim)


def reshape(input: np.ndarray, shape: int | Sequence[int]) -> np.ndarray:
    """input with a new shape (torch.reshape): a view where numpy can.

    Args:
        input: an array.
        shape: the new shape, an int or a tuple or list of ints >= -1 (one may be -1: the
            size that keeps the number of elements).

    Returns:
        input's values in the new shape, a view where numpy can make one, else a copy.
    """
    x = _array(input, "reshape: input")
    if isinstance(shape, (tuple, list)):
        shape = tuple(integer(n, "reshape: shape", minimum=-1) for n in shape)
    else:
        shape = (integer(shape, "reshape: shape", minimum=-1),)
    try:
        y = x.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape an array of shape {x.shape} ({x.size} values) into {shape}") \
            from None

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray]:
        return (grads[0].reshape(x.shape),)

    return _record("reshape", (input,), y, backward)


def flatten(input: np.ndarray, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    """input with axes start_dim..end_dim merged into one (torch.flatten).

    Args:
        input: an array (a 0-d array becomes shape (1,)).
        start_dim: the first axis to merge (default 0).
        end_dim: the last axis to merge, not before start_dim (default -1).

    Returns:
        input's values with those axes merged, a view where numpy can (as reshape).
    """
    x = _array(input, "flatten: input")
    if x.ndim == 0:
        return reshape(input, (1,))
    start, end = _dim(start_dim, x.ndim, "start_dim"), _dim(end_dim, x.ndim, "end_dim")
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim ({end_dim})")
    return reshape(input, x.shape[:start] + (-1 if x.size else int(np.prod(x.shape[start:end + 1])),)
                   + x.shape[end + 1:])


def _reduce(name: str, input: np.ndarray, dim: int | Sequence[int] | None, keepdim: bool,
            scale_by_count: bool) -> np.ndarray:
    x = _array(input, f"{name}: input")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: input: expected a float array, got dtype {x.dtype}")
    axes = _dims(dim, x.ndim)
    y = np.asarray(np.mean(x, axis=axes, keepdims=keepdim) if scale_by_count else
                   np.sum(x, axis=axes, keepdims=keepdim), dtype=x.dtype)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray]:
        g = np.asarray(grads[0], dtype=x.dtype)
        if not keepdim:
            g = np.expand_dims(g, axes)
        g = np.broadcast_to(g / count if scale_by_count else g, x.shape).copy()  # writeable, like every gradient
        return (g,)

    return _record(name, (input,), y, backward)


def mean(input: np.ndarray, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> np.ndarray:
    """The mean over dim, torch.mean's arguments.

    Args:
        input: a float array.
        dim: an axis, a tuple or list of distinct axes, or None (default: every axis).
        keepdim: keep the reduced axes with length 1 (default False).

    Returns:
        A new array of input's dtype (0-d when every axis is reduced without keepdim).
    """
    return _reduce("mean", input, dim, keepdim, scale_by_count=True)


def sum(input: np.ndarray, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> np.ndarray:
    """The sum over dim, torch.sum's arguments.

    Args:
        input: a float array.
        dim: an axis, a tuple or list of distinct axes, or None (default: every axis).
        keepdim: keep the reduced axes with length 1 (default False).

    Returns:
        A new array of input's dtype (0-d when every axis is reduced without keepdim).
    """
    return _reduce("sum", input, dim, keepdim, scale_by_count=False)


def _index_op(name: str, input: np.ndarray, dim: int, index: int | slice) -> np.ndarray:
    """input[..., index, ...] on axis dim: an int (the axis goes) or a slice (it stays)."""
    x = _array(input, f"{name}: input")
    dim = _dim(dim, x.ndim)
    where = (slice(None),) * dim + (index,)
    y = x[where]

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray]:
        g = np.zeros(x.shape, dtype=grads[0].dtype)
        g[where] = grads[0]
        return (g,)

    return _record(name, (input,), y, backward)


def select(input: np.ndarray, dim: int, index: int) -> np.ndarray:
    """input's slice at `index` along dim, that axis removed (torch.select):
    F.select(y, 1, -1) is the last time step of a batch-first sequence.

    Args:
        input: an array with at least one axis.
        dim: the axis to index.
        index: the position along dim, negative counting from the end.

    Returns:
        A view of input with one axis fewer.
    """
    x = _array(input, "select: input")
    dim = _dim(dim, x.ndim)
    index = integer(index, "select: index")
    if not -x.shape[dim] <= index < x.shape[dim]:
        raise IndexError(f"select: index {index} is out of range for dim {dim} of length {x.shape[dim]}")
    return _index_op("select", input, dim, index)


def narrow(input: np.ndarray, dim: int, start: int, length: int) -> np.ndarray:
    """input[start:start + length] along dim (torch.narrow).

    Args:
        input: an array with at least one axis.
        dim: the axis to narrow.
        start: the first position kept, negative counting from the end.
        length: how many positions to keep, >= 0, within the axis.

    Returns:
        A view of input, its axis dim of the given length.
    """
    x = _array(input, "narrow: input")
    dim = _dim(dim, x.ndim)
    size = x.shape[dim]
    start = integer(start, "narrow: start")
    length = integer(length, "narrow: length", minimum=0)
    if not -size <= start <= size:
        raise IndexError(f"narrow: start {start} is out of range for dim {dim} of length {size}")
    start %= size if size else 1
    if start + length > size:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds dim {dim}'s length {size}")
    return _index_op("narrow", input, dim, slice(start, start + length))


def permute(input: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """input with its axes reordered (torch.permute).

    Args:
        input: an array.
        dims: a tuple or list ordering all of input's axes: axis i of the result is
            input's axis dims[i].

    Returns:
        A view of input with its axes reordered.
    """
    x = _array(input, "permute: input")
    if not isinstance(dims, (tuple, list)):
        raise TypeError(f"permute: dims: expected a tuple of ints, got {type(dims).__name__}")
    axes = tuple(_dim(d, x.ndim, "dims") for d in dims)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} is not a permutation of the {x.ndim} axes")
    y = x.transpose(axes)
    inverse = tuple(np.argsort(axes))

    def backward(grads: Sequence[np.ndarray]) -> tuple[np.ndarray]:
        return (grads[0].transpose(inverse),)

    return _record("permute", (input,), y, backward)


def transpose(input: np.ndarray, dim0: int, dim1: int) -> np.ndarray:
    """input with axes dim0 and dim1 swapped (torch.transpose).

    Args:
        input: an array.
        dim0: one axis.
        dim1: the other axis.

    Returns:
        A view of input with the two axes swapped.
    """
    x = _array(input, "transpose: input")
    axes = list(range(x.ndim))
    a, b = _dim(dim0, x.ndim, "dim0"), _dim(dim1, x.ndim, "dim1")
    axes[a], axes[b] = axes[b], axes[a]
    return permute(input, axes)


def constant(input: np.ndarray) -> np.ndarray:
    """input brought into a recorded forward without a gradient (a fixed mask, an encoding
    table, a detached value).

    Args:
        input: an array.

    Returns:
        Inside a recorded forward, a read-only view of input that backward does not
        differentiate; outside one, input itself.
    """
    x = _array(input, "constant: input")
    tape = autograd._recording.tape
    if tape is None:
        return x
    view = x.view()
    view.setflags(write=False)
    tape.mark_constant(view)
    return view


def detach(input: np.ndarray) -> np.ndarray:
    """PyTorch's name for constant(input): the same values, no gradient.

    Args:
        input: an array.

    Returns:
        constant(input).
    """
    return constant(input)
