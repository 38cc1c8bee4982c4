"""max_pool2d and avg_pool2d forward and backward (csrc/pool2d.pyx).

Inputs are (N, C, H, W) or unbatched (C, H, W), as in PyTorch. Output size per axis:

    out = floor((n + 2p - k) / s) + 1                      (ceil_mode=False)
    out = ceil((n + 2p - k) / s) + 1, minus one when the last window would start
          past the input and its left padding                (ceil_mode=True)
"""
from __future__ import annotations

__all__ = ["max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_forward",
           "avg_pool2d_backward", "relu_max_pool2d", "relu_max_pool2d_forward", "relu_max_pool2d_backward",
           "pool_geometry"]
import numbers
from collections import namedtuple
from typing import Union

import numpy as np

from .. import _pool2d  # the Cython module built from csrc/pool2d.pyx
from .._checks import INT64_MAX, ResolvedCache, context, fits_int64, float_array, float_dtype, int_pair
from ..memory import pooled

# kernel_size, stride and padding as PyTorch takes them: one int for both axes, or (h, w).
_Size = Union[int, tuple[int, int]]

# Everything the kernels need besides the arrays; forward keeps it in ctx so backward reuses it.
PoolGeometry = namedtuple("PoolGeometry", ["input_shape", "output_shape", "kernel", "stride", "padding", "dtype"])
PoolGeometry.__doc__ = """A pooling call's checked arguments (pool_geometry's result).

Attributes:
    input_shape: x's shape, (N, C, H, W) or (C, H, W).
    output_shape: y's shape, x's leading axes + (H_out, W_out).
    kernel: (kh, kw).
    stride: (sh, sw).
    padding: (ph, pw), the same on both sides of each axis.
    dtype: x's dtype.
"""
MaxPool2dContext = namedtuple("MaxPool2dContext", "argmax geometry")
MaxPool2dContext.__doc__ = """max_pool2d_forward's ctx.

Attributes:
    argmax: int64, y's shape: for each output, the flat index ih*W + iw of its maximum
        within its input plane (PyTorch's return_indices layout).
    geometry: the PoolGeometry.
"""
ReLUMaxPool2dContext = namedtuple("ReLUMaxPool2dContext", "output argmax geometry")
ReLUMaxPool2dContext.__doc__ = """relu_max_pool2d_forward's ctx.

Attributes:
    output: the pooled output y (ReLU's mask: a gradient passes where it is > 0).
    argmax: as MaxPool2dContext's.
    geometry: the PoolGeometry.
"""
AvgPool2dContext = namedtuple("AvgPool2dContext", "geometry count_include_pad")
AvgPool2dContext.__doc__ = """avg_pool2d_forward's ctx.

Attributes:
    geometry: the PoolGeometry.
    count_include_pad: whether the divisor counted the padding (a bool).
"""


def _output_size(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape (dilation 1)."""
    span = n + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1  # the last window would start in the right padding: drop it
    return out


# The kernels number a window's positions ki*kW + kj in int32 and allocate per-call tables
# of kW and kH*kW entries (24 and 8 bytes each): a side of at most 2**16 and a window of at
# most 2**24 elements (global pooling over a 4096 x 4096 map; a 128 MiB table) keep every
# size product far from wrapping (a kernel near 2**60 wrapped them) and the tables sane.
MAX_KERNEL_SIDE = 2 ** 16
MAX_WINDOW = 2 ** 24
# Stride bound: ow*stride - padding and (stride - 1) + padding stay inside int64.
MAX_STRIDE = 2 ** 62


def pool_geometry(x: np.ndarray, kernel_size: _Size, stride: _Size | None, padding: _Size, ceil_mode: bool,
                  op: str) -> PoolGeometry:
    """Validate pooling arguments as PyTorch does and return the PoolGeometry.

    Results are cached by value (as conv2d_geometry).

    Args:
        x: the input, (N, C, H, W) or (C, H, W) (only its shape and dtype are read).
        kernel_size: int or (kh, kw), >= 1.
        stride: int or (sh, sw), >= 1; None or () for kernel_size.
        padding: int or (ph, pw), >= 0 and at most half the kernel.
        ceil_mode: round the output size up (see the module docstring).
        op: the calling op's name, for the messages ("max_pool2d", ...).

    Returns:
        PoolGeometry(input_shape, output_shape, kernel, stride, padding, dtype).

    Raises:
        TypeError: a size that is not an int or a pair of ints.
        ValueError: where PyTorch raises (a kernel or stride < 1, padding < 0 or
            > kernel // 2, an empty channel/height/width, an output size < 1), and for a
            window of more than MAX_WINDOW elements (or a side above MAX_KERNEL_SIDE) or a
            stride above MAX_STRIDE (sizes PyTorch would not finish computing either).
    """
    key = (x.shape, x.dtype, repr((kernel_size, stride, padding, ceil_mode)), op)
    return _GEOMETRIES.get(key, _resolve, x.shape, x.dtype, kernel_size, stride, padding, ceil_mode, op)


_GEOMETRIES = ResolvedCache()  # a layer pools the same shapes every step


def _resolve(x_shape: tuple[int, ...], dtype: np.dtype, kernel_size: _Size, stride: _Size | None, padding: _Size,
             ceil_mode: bool, op: str) -> PoolGeometry:
    """pool_geometry from the input's shape and dtype (kernel, stride_hw, padding_hw: the checked pairs)."""
    kernel = int_pair(kernel_size, "kernel_size", minimum=1, maximum=MAX_KERNEL_SIDE)
    if kernel[0] * kernel[1] > MAX_WINDOW:
        raise ValueError(f"kernel_size: a window of at most {MAX_WINDOW} elements, got {kernel}")
    stride_hw = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else int_pair(stride, "stride", minimum=1, maximum=MAX_STRIDE)
    padding_hw = int_pair(padding, "padding", minimum=0)
    for k, p in zip(kernel, padding_hw):
        if p > k // 2:
            raise ValueError(f"{op}: padding should be at most half of kernel_size, got padding={padding_hw} "
                             f"and kernel_size={kernel}")
    if any(d == 0 for d in x_shape[-3:]):
        raise ValueError(f"{op}: expected an input with non-empty channel, height and width axes "
                         f"(only the batch axis may be 0), got shape {tuple(x_shape)}")
    H, W = x_shape[-2:]
    out = tuple(_output_size(n, k, s, p, ceil_mode) for n, k, s, p in zip((H, W), kernel, stride_hw, padding_hw))
    if min(out) < 1:
        raise ValueError(f"{op}: input of height x width {H}x{W} gives output size {out[0]}x{out[1]} "
                         f"with kernel_size={kernel}, stride={stride_hw}, padding={padding_hw}: too small")
    # max pooling also keeps an int64 argmax per output
    fits_int64(x_shape[:-2] + out, max(dtype.itemsize, 8), "output", op)
    return PoolGeometry(x_shape, x_shape[:-2] + out, kernel, stride_hw, padding_hw, dtype)


def _checked_geometry(geometry: PoolGeometry, op: str) -> PoolGeometry:
    """The geometry a backward was given, checked as its forward checked it: a hand-built
    or edited one (a zero stride, an output shape that does not follow from the input)
    raises instead of reaching the kernels."""
    if not isinstance(geometry, PoolGeometry):
        raise TypeError(f"geometry: expected the PoolGeometry that {op}'s forward returned, "
                        f"got {type(geometry).__name__}")
    shape = tuple(geometry.input_shape)
    if len(shape) not in (3, 4) or not all(isinstance(s, numbers.Integral) and 0 <= int(s) <= INT64_MAX for s in shape):
        raise ValueError(f"geometry: input_shape must be 3 or 4 sizes >= 0, got {geometry.input_shape!r}")
    dtype = float_dtype(geometry.dtype, "geometry.dtype")
    errors = []
    for ceil_mode in (False, True):  # the output shape follows from one of the two modes
        try:
            resolved = _resolve(shape, dtype, geometry.kernel, geometry.stride, geometry.padding, ceil_mode, op)
        except ValueError as err:
            errors.append(err)
            continue
        if resolved.output_shape == tuple(geometry.output_shape):
            return resolved
    if len(errors) == 2:
        raise ValueError(f"geometry: {errors[0]}")
    raise ValueError(f"geometry: output_shape {geometry.output_shape} does not follow from input_shape {shape}, "
                     f"kernel {geometry.kernel}, stride {geometry.stride} and padding {geometry.padding}")


def _planes(a: np.ndarray) -> np.ndarray:
    """(..., H, W) -> (P, H, W) view of a C-contiguous array."""
    return a.reshape((-1,) + a.shape[-2:])


def _input(x: np.ndarray) -> np.ndarray:
    """Checked but not yet copied: pool_geometry checks the sizes first."""
    return float_array(x, "input", ndim=(3, 4), layout="(N, C, H, W) or (C, H, W)", contiguous=False)


def _pool(x: np.ndarray, geometry: PoolGeometry, relu: bool,
          with_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, argmax or None) of max pooling x (checked, of the geometry's shape); relu=True
    pools relu(x) in the same pass."""
    x = np.ascontiguousarray(x)
    y = np.empty(geometry.output_shape, dtype=x.dtype)
    argmax = np.empty(geometry.output_shape, dtype=np.int64) if with_indices else None
    _pool2d.max_pool2d_forward(_planes(y), None if argmax is None else _planes(argmax), _planes(x),
                               *geometry.kernel, *geometry.stride, *geometry.padding, relu)
    return y, argmax


@pooled
def max_pool2d(x: np.ndarray, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
               ceil_mode: bool = False) -> np.ndarray:
    """2-D max pooling over (N, C, H, W) or (C, H, W), as torch.nn.functional.max_pool2d.

    y[n, c, i, j] = max_{a < kh, b < kw} x[n, c, i*sh - ph + a, j*sw - pw + b],
    where positions in the padding count as -inf (a NaN in the window gives NaN).
    No argmax is computed (inference needs no backward): max_pool2d_forward keeps it.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        kernel_size: int or (kh, kw), >= 1.
        stride: int or (sh, sw), >= 1, or None (default: kernel_size).
        padding: int or (ph, pw), at most half the kernel (default 0).
        ceil_mode: round the output size up (default False; see the module docstring).

    Returns:
        y, a new (N, C, H_out, W_out) or (C, H_out, W_out) array of x's dtype.
    """
    x = _input(x)
    g = pool_geometry(x, kernel_size, stride, padding, ceil_mode, "max_pool2d")
    return _pool(x, g, False, False)[0]


@pooled
def max_pool2d_forward(x: np.ndarray, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                       ceil_mode: bool = False) -> tuple[np.ndarray, MaxPool2dContext]:
    """max_pool2d, and the argmax max_pool2d_backward needs.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        kernel_size: as max_pool2d.
        stride: as max_pool2d (default None: kernel_size).
        padding: as max_pool2d (default 0).
        ceil_mode: as max_pool2d (default False).

    Returns:
        (y, ctx) with y = max_pool2d(...); ctx = MaxPool2dContext(argmax, geometry).
    """
    x = _input(x)
    g = pool_geometry(x, kernel_size, stride, padding, ceil_mode, "max_pool2d")
    y, argmax = _pool(x, g, False, True)
    return y, MaxPool2dContext(argmax, g)


@pooled
def max_pool2d_backward(grad_output: np.ndarray, ctx: MaxPool2dContext) -> np.ndarray:
    """dL/dx of max_pool2d: each output's gradient goes to the input element that was its
    maximum (overlapping windows add).

    Args:
        grad_output: dL/dy, y's shape and x's dtype.
        ctx: max_pool2d_forward's MaxPool2dContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    argmax, geometry = context(ctx, MaxPool2dContext, "max_pool2d")
    geometry = _checked_geometry(geometry, "max_pool2d")
    return _max_pool_backward(_grad_output(grad_output, geometry), argmax, geometry, None)


@pooled
def relu_max_pool2d(x: np.ndarray, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                    ceil_mode: bool = False) -> np.ndarray:
    """max_pool2d(relu(x)) in one pass over x (see relu_max_pool2d_forward).

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        kernel_size: as max_pool2d.
        stride: as max_pool2d (default None: kernel_size).
        padding: as max_pool2d (default 0).
        ceil_mode: as max_pool2d (default False).

    Returns:
        y, a new array of max_pool2d's output shape and x's dtype, every value >= 0.
    """
    x = _input(x)
    g = pool_geometry(x, kernel_size, stride, padding, ceil_mode, "relu_max_pool2d")
    return _pool(x, g, True, False)[0]


@pooled
def relu_max_pool2d_forward(x: np.ndarray, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                            ceil_mode: bool = False) -> tuple[np.ndarray, ReLUMaxPool2dContext]:
    """max_pool2d(relu(x)) in one pass over x, and what relu_max_pool2d_backward needs.

    Since relu is monotonic, max_pool2d(relu(x)) = relu(max_pool2d(x)): the pooled maxima are
    clipped at 0 as each output row is finished, so relu's full-size output is never written.
    argmax is that of x (where y == 0 it may differ from max_pool2d(relu(x))'s, whose
    gradient there is 0 either way). Arguments and shapes as max_pool2d. On an input that
    is already >= 0 (a layer's fused ReLU epilogue) this is max_pool2d, with the ReLU's
    mask for backward in ctx.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        kernel_size: as max_pool2d.
        stride: as max_pool2d (default None: kernel_size).
        padding: as max_pool2d (default 0).
        ceil_mode: as max_pool2d (default False).

    Returns:
        (y, ctx) with y = relu_max_pool2d(...); ctx = ReLUMaxPool2dContext(y, argmax, geometry).
    """
    x = _input(x)
    g = pool_geometry(x, kernel_size, stride, padding, ceil_mode, "relu_max_pool2d")
    y, argmax = _pool(x, g, True, True)
    return y, ReLUMaxPool2dContext(y, argmax, g)


@pooled
def relu_max_pool2d_backward(grad_output: np.ndarray, ctx: ReLUMaxPool2dContext) -> np.ndarray:
    """dL/dx of relu_max_pool2d: each output with y > 0 sends its gradient to its maximum,
    as max_pool2d_backward followed by relu_backward does.

    Args:
        grad_output: dL/dy, y's shape and x's dtype.
        ctx: relu_max_pool2d_forward's ReLUMaxPool2dContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    y, argmax, geometry = context(ctx, ReLUMaxPool2dContext, "relu_max_pool2d")
    geometry = _checked_geometry(geometry, "relu_max_pool2d")
    grad_output = _grad_output(grad_output, geometry)
    y = float_array(y, "output", dtype=geometry.dtype)
    if y.shape != geometry.output_shape:
        raise ValueError(f"output: expected shape {geometry.output_shape}, got {y.shape}")
    return _max_pool_backward(grad_output, argmax, geometry, y)


def _grad_output(grad_output: np.ndarray, geometry: PoolGeometry) -> np.ndarray:
    g = float_array(grad_output, "grad_output", dtype=geometry.dtype)
    if g.shape != geometry.output_shape:
        raise ValueError(f"grad_output: expected shape {geometry.output_shape}, got {g.shape}")
    return g


def _max_pool_backward(grad_output: np.ndarray, argmax: np.ndarray, geometry: PoolGeometry,
                       relu_output: np.ndarray | None) -> np.ndarray:
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int64 or argmax.shape != geometry.output_shape:
        raise TypeError(f"argmax: expected an int64 array of shape {geometry.output_shape}, got "
                        f"{getattr(argmax, 'dtype', type(argmax).__name__)} {getattr(argmax, 'shape', '')}")
    argmax = np.ascontiguousarray(argmax)
    grad_x = np.empty(geometry.input_shape, dtype=grad_output.dtype)
    _pool2d.max_pool2d_backward(_planes(grad_x), _planes(argmax), _planes(grad_output),
                                None if relu_output is None else _planes(relu_output))
    return grad_x


@pooled
def avg_pool2d(x: np.ndarray, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> np.ndarray:
    """2-D average pooling over (N, C, H, W) or (C, H, W), as torch.nn.functional.avg_pool2d.

    y[n, c, i, j] = (1 / d) * sum_{a < kh, b < kw} x[n, c, i*sh - ph + a, j*sw - pw + b],
    padding contributing zeros. The divisor d counts the window's positions inside the
    input, or with count_include_pad=True (the default) those inside the zero-padded
    input, but never the positions past it that ceil_mode adds (as PyTorch).

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        kernel_size: int or (kh, kw), >= 1.
        stride: int or (sh, sw), >= 1, or None (default: kernel_size).
        padding: int or (ph, pw), at most half the kernel (default 0).
        ceil_mode: round the output size up (default False; see the module docstring).
        count_include_pad: count the zero padding in the divisor (default True).

    Returns:
        y, a new (N, C, H_out, W_out) or (C, H_out, W_out) array of x's dtype.
    """
    return avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad)[0]


@pooled
def avg_pool2d_forward(x: np.ndarray, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                       ceil_mode: bool = False, count_include_pad: bool = True) -> tuple[np.ndarray, AvgPool2dContext]:
    """avg_pool2d, and what avg_pool2d_backward needs.

    Args:
        x: (N, C, H, W) or (C, H, W) float32 or float64 array.
        kernel_size: as avg_pool2d.
        stride: as avg_pool2d (default None: kernel_size).
        padding: as avg_pool2d (default 0).
        ceil_mode: as avg_pool2d (default False).
        count_include_pad: as avg_pool2d (default True).

    Returns:
        (y, ctx) with y = avg_pool2d(...); ctx = AvgPool2dContext(geometry, count_include_pad).
    """
    x = _input(x)
    geometry = pool_geometry(x, kernel_size, stride, padding, ceil_mode, "avg_pool2d")
    x = np.ascontiguousarray(x)
    y = np.empty(geometry.output_shape, dtype=x.dtype)
    _pool2d.avg_pool2d_forward(_planes(y), _planes(x), *geometry.kernel, *geometry.stride, *geometry.padding,
                               bool(count_include_pad))
    return y, AvgPool2dContext(geometry, bool(count_include_pad))


@pooled
def avg_pool2d_backward(grad_output: np.ndarray, ctx: AvgPool2dContext) -> np.ndarray:
    """dL/dx of avg_pool2d: each output's gradient divided by its divisor, added over its window.

    Args:
        grad_output: dL/dy, y's shape and x's dtype.
        ctx: avg_pool2d_forward's AvgPool2dContext.

    Returns:
        dL/dx, a new array of x's shape and dtype.
    """
    geometry, count_include_pad = context(ctx, AvgPool2dContext, "avg_pool2d")
    geometry = _checked_geometry(geometry, "avg_pool2d")
    grad_output = _grad_output(grad_output, geometry)
    grad_x = np.empty(geometry.input_shape, dtype=grad_output.dtype)
    _pool2d.avg_pool2d_backward(_planes(grad_x), _planes(grad_output),
                                *geometry.kernel, *geometry.stride, *geometry.padding, bool(count_include_pad))
    return grad_x
