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
__all__ = ["add", "sub", "mul", "div", "cat", "stack", "split", "chunk", "reshape", "flatten", "mean", "sum",
           "select", "narrow", "transpose", "permute", "constant", "detach"]

import builtins
import numbers

import numpy as np

from .. import autograd
from .._checks import integer


def _value(operand, name):
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


def _array(x, name):
    """A numpy array operand (shape ops take arrays only)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")
    return x


def _dim(dim, ndim, name="dim", extra=0):
    """dim in [-ndim - extra, ndim + extra) as a non-negative axis (extra=1: stack's new axis)."""
    size = ndim + extra
    dim = integer(dim, name)
    if not -size <= dim < size or size == 0:
        raise ValueError(f"{name}: expected a dimension in [{-size}, {size - 1}] for {ndim}-d input, got {dim}")
    return dim % size


def _dims(dim, ndim):
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


def _record(name, operands, output, backward):
    """output, recorded with backward(output_grads) -> per-operand grads while a forward is recorded."""
    tape = autograd._recording.tape
    if tape is None:
        return output
    return tape.call_op(name, operands, output, backward)


def _unbroadcast(grad, shape):
    """The gradient of an operand of `shape` that numpy broadcast to grad's shape: summed
    over the axes broadcasting added or stretched."""
    if np.shape(grad) == tuple(shape):
        return grad
    extra = np.ndim(grad) - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return np.sum(grad, axis=axes).reshape(shape)


def _grad_for(grad, operand, value):
    """grad reduced to an operand's shape; None for a number (nothing to differentiate)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        return None
    return _unbroadcast(grad, value.shape).astype(value.dtype, copy=False)


def _binary(name, input, other):
    return _value(input, f"{name}: input"), _value(other, f"{name}: other")


def _scalar(alpha, name):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{name}: alpha: expected a real number, got {type(alpha).__name__}")
    return alpha


def add(input, other, *, alpha=1):
    """input + alpha * other (torch.add), broadcasting."""
    a, b = _binary("add", input, other)
    alpha = _scalar(alpha, "add")
    y = np.asarray(a + (b if alpha == 1 else alpha * b))

    def backward(grads):
        (g,) = grads
        return _grad_for(g, input, a), _grad_for(g if alpha == 1 else alpha * g, other, b)

    return _record("add", (input, other), y, backward)


def sub(input, other, *, alpha=1):
    """input - alpha * other (torch.sub), broadcasting."""
    return add(input, other, alpha=-_scalar(alpha, "sub"))


def mul(input, other):
    """input * other elementwise (torch.mul), broadcasting."""
    a, b = _binary("mul", input, other)
    y = np.asarray(a * b)

    def backward(grads):
        (g,) = grads
        return _grad_for(g * b, input, a), _grad_for(g * a, other, b)

    return _record("mul", (input, other), y, backward)


def div(input, other):
    """input / other elementwise (torch.div), broadcasting."""
    a, b = _binary("div", input, other)
    y = np.asarray(a / b)

    def backward(grads):
        (g,) = grads
        ga = g / b
        return _grad_for(ga, input, a), _grad_for(-ga * y, other, b)

    return _record("div", (input, other), y, backward)


def _sequence(tensors, name):
    if isinstance(tensors, np.ndarray) or not isinstance(tensors, (tuple, list)):
        raise TypeError(f"{name}: tensors: expected a tuple or list of arrays, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{name}: tensors: expected at least one array")
    return [_array(t, f"{name}: tensors[{i}]") for i, t in enumerate(tensors)]


def cat(tensors, dim=0):
    """Join arrays along an existing axis dim (torch.cat); the other axes must match."""
    arrays = _sequence(tensors, "cat")
    dim = _dim(dim, arrays[0].ndim)
    for i, t in enumerate(arrays):
        if t.ndim != arrays[0].ndim or t.shape[:dim] + t.shape[dim + 1:] != arrays[0].shape[:dim] + arrays[0].shape[dim + 1:]:
            raise ValueError(f"cat: tensors[{i}] has shape {t.shape}, which does not match tensors[0]'s "
                             f"{arrays[0].shape} outside dim {dim}")
    y = np.concatenate(arrays, axis=dim)
    bounds = np.cumsum([t.shape[dim] for t in arrays])[:-1]

    def backward(grads):
        return tuple(np.split(grads[0], bounds, axis=dim))

    return _record("cat", tuple(tensors), y, backward)


def stack(tensors, dim=0):
    """Join same-shaped arrays along a new axis dim (torch.stack)."""
    arrays = _sequence(tensors, "stack")
    dim = _dim(dim, arrays[0].ndim, extra=1)
    for i, t in enumerate(arrays):
        if t.shape != arrays[0].shape:
            raise ValueError(f"stack: tensors[{i}] has shape {t.shape}, expected tensors[0]'s {arrays[0].shape}")
    y = np.stack(arrays, axis=dim)

    def backward(grads):
        return tuple(np.moveaxis(grads[0], dim, 0))

    return _record("stack", tuple(tensors), y, backward)


def _pieces(name, x, sizes, dim):
    """x cut along dim into pieces of the given sizes (views), recorded as one op."""
    bounds = np.cumsum(sizes)[:-1]
    pieces = tuple(np.split(x, bounds, axis=dim))

    def backward(grads):
        parts = [np.zeros_like(p) if g is None else g for g, p in zip(grads, pieces)]
        return (np.concatenate(parts, axis=dim),)

    return _record(name, (x,), pieces, backward)


def split(tensor, split_size_or_sections, dim=0):
    """A tuple of views of tensor along dim (torch.split): pieces of split_size_or_sections
    (an int; the last piece may be smaller) or of each size in a list (summing to the axis)."""
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


def chunk(input, chunks, dim=0):
    """input split along dim into `chunks` pieces of ceil(length / chunks) (torch.chunk: the
    last may be smaller, and there may be fewer than chunks)."""
    x = _array(input, "chunk: input")
    chunks = integer(chunks, "chunk: chunks", minimum=1)
    dim = _dim(dim, x.ndim)
    size = max(-(-x.shape[dim] // chunks), 1)
    return split(x, size, dim)


def reshape(input, shape):
    """input with a new shape (torch.reshape; one entry may be -1): a view where numpy can."""
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

    def backward(grads):
        return (grads[0].reshape(x.shape),)

    return _record("reshape", (input,), y, backward)


def flatten(input, start_dim=0, end_dim=-1):
    """input with axes start_dim..end_dim merged into one (torch.flatten)."""
    x = _array(input, "flatten: input")
    if x.ndim == 0:
        return reshape(input, (1,))
    start, end = _dim(start_dim, x.ndim, "start_dim"), _dim(end_dim, x.ndim, "end_dim")
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim ({end_dim})")
    return reshape(input, x.shape[:start] + (-1 if x.size else int(np.prod(x.shape[start:end + 1])),)
                   + x.shape[end + 1:])


def _reduce(name, input, dim, keepdim, scale_by_count):
    x = _array(input, f"{name}: input")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: input: expected a float array, got dtype {x.dtype}")
    axes = _dims(dim, x.ndim)
    y = np.asarray(np.mean(x, axis=axes, keepdims=keepdim) if scale_by_count else
                   np.sum(x, axis=axes, keepdims=keepdim), dtype=x.dtype)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1

    def backward(grads):
        g = np.asarray(grads[0], dtype=x.dtype)
        if not keepdim:
            g = np.expand_dims(g, axes)
        g = np.broadcast_to(g / count if scale_by_count else g, x.shape).copy()  # writeable, like every gradient
        return (g,)

    return _record(name, (input,), y, backward)


def mean(input, dim=None, keepdim=False):
    """The mean over dim (None: every axis, giving a 0-d array), torch.mean's arguments."""
    return _reduce("mean", input, dim, keepdim, scale_by_count=True)


def sum(input, dim=None, keepdim=False):
    """The sum over dim (None: every axis, giving a 0-d array), torch.sum's arguments."""
    return _reduce("sum", input, dim, keepdim, scale_by_count=False)


def _index_op(name, input, dim, index):
    """input[..., index, ...] on axis dim: an int (the axis goes) or a slice (it stays)."""
    x = _array(input, f"{name}: input")
    dim = _dim(dim, x.ndim)
    where = (slice(None),) * dim + (index,)
    y = x[where]

    def backward(grads):
        g = np.zeros(x.shape, dtype=grads[0].dtype)
        g[where] = grads[0]
        return (g,)

    return _record(name, (input,), y, backward)


def select(input, dim, index):
    """input's slice at `index` along dim, that axis removed (torch.select; index may be
    negative): F.select(y, 1, -1) is the last time step of a batch-first sequence."""
    x = _array(input, "select: input")
    dim = _dim(dim, x.ndim)
    index = integer(index, "select: index")
    if not -x.shape[dim] <= index < x.shape[dim]:
        raise IndexError(f"select: index {index} is out of range for dim {dim} of length {x.shape[dim]}")
    return _index_op("select", input, dim, index)


def narrow(input, dim, start, length):
    """input[start:start + length] along dim (torch.narrow; start may be negative)."""
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


def permute(input, dims):
    """input with its axes reordered (torch.permute): a view."""
    x = _array(input, "permute: input")
    if not isinstance(dims, (tuple, list)):
        raise TypeError(f"permute: dims: expected a tuple of ints, got {type(dims).__name__}")
    axes = tuple(_dim(d, x.ndim, "dims") for d in dims)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} is not a permutation of the {x.ndim} axes")
    y = x.transpose(axes)
    inverse = tuple(np.argsort(axes))

    def backward(grads):
        return (grads[0].transpose(inverse),)

    return _record("permute", (input,), y, backward)


def transpose(input, dim0, dim1):
    """input with axes dim0 and dim1 swapped (torch.transpose): a view."""
    x = _array(input, "transpose: input")
    axes = list(range(x.ndim))
    a, b = _dim(dim0, x.ndim, "dim0"), _dim(dim1, x.ndim, "dim1")
    axes[a], axes[b] = axes[b], axes[a]
    return permute(input, axes)


def constant(input):
    """input brought into a recorded forward without a gradient (a fixed mask, an encoding
    table, a detached value): a view of it that backward does not differentiate. Outside a
    recorded forward, input itself."""
    x = _array(input, "constant: input")
    tape = autograd._recording.tape
    if tape is None:
        return x
    view = x.view()
    view.setflags(write=False)
    tape.mark_constant(view)
    return view


def detach(input):
    """PyTorch's name for constant(input): the same values, no gradient."""
    return constant(input)
