"""conv2d forward and backward (csrc/conv.cpp).

    y[n, oc, i, j] = bias[oc] + sum_{c, kh, kw} weight[oc, c, kh, kw]
                     * x_padded[n, g*C_g + c, i*stride_h + kh*dilation_h, j*stride_w + kw*dilation_w]

with g = oc // (C_out / groups) the group of output channel oc and C_g = C_in / groups. As in
every deep-learning library this is cross-correlation: the kernel is not flipped.
"""
from __future__ import annotations

__all__ = ["conv2d", "conv2d_forward", "conv2d_backward", "conv1d", "conv1d_forward", "conv1d_backward",
           "conv_padding", "conv2d_geometry"]

import numbers
from collections import namedtuple
from typing import Any

import numpy as np

from .. import _C
from .._checks import (
    INT64_MAX,
    ResolvedCache,
    context,
    fits_int64,
    float_array,
    gradient_buffer,
    int_pair,
    int_single,
    integer,
)
from .fused import activation_code

Conv2dGeometry = namedtuple("Conv2dGeometry", ["stride", "padding", "dilation", "groups", "output_shape"])
Conv2dGeometry.__doc__ = """The resolved hyper-parameters of one convolution (conv2d_geometry's result).

Attributes:
    stride: (h, w) ints >= 1.
    padding: (top, bottom, left, right) ints >= 0, after 'same'/'valid' are resolved.
    dilation: (h, w) ints >= 1.
    groups: int >= 1.
    output_shape: (N, C_out, H_out, W_out).
"""

Conv2dContext = namedtuple("Conv2dContext", "input weight stride padding dilation groups")
Conv2dContext.__doc__ = """conv2d_forward's ctx: what the forward read, with its hyper-parameters as
given (backward resolves them again: conv2d_geometry caches).

Attributes:
    input: the (N, C_in, H, W) input, C-contiguous.
    weight: the (C_out, C_in/groups, kH, kW) weight, C-contiguous.
    stride: as passed to conv2d_forward.
    padding: as passed to conv2d_forward.
    dilation: as passed to conv2d_forward.
    groups: as passed to conv2d_forward.
"""
Conv1dContext = namedtuple("Conv1dContext", "input weight stride padding dilation groups")
Conv1dContext.__doc__ = """conv1d_forward's ctx.

Attributes:
    input: the (N, C_in, L) input.
    weight: the (C_out, C_in/groups, K) weight.
    stride: as passed to conv1d_forward.
    padding: as passed to conv1d_forward.
    dilation: as passed to conv1d_forward.
    groups: as passed to conv1d_forward.
"""


def conv_padding(padding: int | tuple[int, int] | str, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from an int, a pair, 'valid' or 'same' (PyTorch's rules).

    'same' keeps the size at stride 1: an axis needs d*(k-1) padding in all, total//2
    before and the rest after, so an even kernel pads one more on the bottom/right.

    Args:
        padding: an int >= 0 (every side), an (h, w) pair (top and bottom h, left and
            right w), 'valid' (no padding) or 'same'.
        kernel: (kH, kW).
        stride: (h, w); must be (1, 1) for 'same'.
        dilation: (h, w).

    Returns:
        (top, bottom, left, right) ints >= 0.

    Raises:
        TypeError: padding is neither an int, a pair nor a string.
        ValueError: an unknown string, a negative value, or 'same' with a stride.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding: 'same' is not supported for strided convolutions "
                                 f"(stride={stride}); use an explicit padding")
            total_h, total_w = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
            return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        raise ValueError(f"padding: expected an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, bool) or not isinstance(padding, (tuple, list, numbers.Integral)):
        raise TypeError(f"padding: expected an int, a pair of ints, 'valid' or 'same', "
                        f"got {type(padding).__name__} {padding!r}")
    pad_h, pad_w = int_pair(padding, "padding", minimum=0)
    return (pad_h, pad_h, pad_w, pad_w)


def _output_size(n: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """floor((n + pad_lo + pad_hi - dilation*(k-1) - 1) / stride) + 1, in Python ints."""
    return (n + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def conv2d_geometry(input_shape: tuple[int, ...], weight_shape: tuple[int, ...],
                    stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                    dilation: int | tuple[int, int] = 1, groups: int = 1, itemsize: int = 4) -> Conv2dGeometry:
    """Check the hyper-parameters against the shapes and resolve them.

    A layer calls this with the same shapes and hyper-parameters every step, so results
    are cached (about 10 us a call saved). The key holds the repr of the hyper-parameters,
    which tells 1 from True and 2 from 2.0, so a value that must be rejected never finds a
    cached result; failures are not cached.

    Args:
        input_shape: (N, C_in, H, W).
        weight_shape: (C_out, C_in/groups, kH, kW).
        stride: int or (h, w) pair, >= 1 (default 1).
        padding: int, (h, w) pair, 'valid' or 'same', as conv2d (default 0).
        dilation: int or (h, w) pair, >= 1 (default 1).
        groups: >= 1, dividing C_in and C_out (default 1).
        itemsize: bytes per element (4 for float32, the default; 8 for float64), for the
            int64 size checks.

    Returns:
        Conv2dGeometry(stride, padding, dilation, groups, output_shape), padding resolved
        to (top, bottom, left, right).

    Raises:
        TypeError: a non-int stride, dilation or groups, or a padding of the wrong type.
        ValueError: values < 1, negative or unknown padding, 'same' with a stride, channels
            that do not match weight.shape[1] * groups, groups not dividing the channels, a
            kernel larger than the padded input, or sizes whose element or byte count would
            not fit in int64.
    """
    key = (tuple(input_shape), tuple(weight_shape), repr((stride, padding, dilation, groups)), itemsize)
    return _GEOMETRIES.get(key, _resolve_geometry, input_shape, weight_shape, stride, padding, dilation, groups,
                           itemsize)


_GEOMETRIES = ResolvedCache()  # a layer convolves the same shapes every step


def _resolve_geometry(input_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride: int | tuple[int, int],
                      padding: int | tuple[int, int] | str, dilation: int | tuple[int, int], groups: int,
                      itemsize: int) -> Conv2dGeometry:
    """conv2d_geometry without the cache (stride_hw, dilation_hw: stride and dilation as checked (h, w) pairs)."""
    n, c_in, h, w = (int(s) for s in input_shape)
    c_out, c_per_group, kh, kw = (int(s) for s in weight_shape)
    if min(c_in, h, w) < 1:
        raise ValueError(f"input: expected non-empty channel and spatial axes (only the batch axis may be 0), "
                         f"got shape {tuple(input_shape)}")
    stride_hw = int_pair(stride, "stride", minimum=1)
    dilation_hw = int_pair(dilation, "dilation", minimum=1)
    groups = integer(groups, "groups", minimum=1)
    if min(c_out, c_per_group, kh, kw) < 1:
        raise ValueError(f"weight: expected shape (C_out, C_in/groups, kH, kW) with every size >= 1, "
                         f"got {tuple(weight_shape)}")
    if c_in % groups:
        raise ValueError(f"groups: must divide the input channels, got groups={groups} for C_in={c_in}")
    if c_out % groups:
        raise ValueError(f"groups: must divide the output channels, got groups={groups} for "
                         f"C_out={c_out} (weight.shape[0])")
    if c_per_group * groups != c_in:
        raise ValueError(f"weight: expected weight.shape[1] * groups == input channels, got "
                         f"weight of shape {tuple(weight_shape)} with groups={groups} for input of shape "
                         f"{tuple(input_shape)} ({c_per_group} * {groups} != {c_in})")
    pads = conv_padding(padding, (kh, kw), stride_hw, dilation_hw)
    # The kernel forms H + pad_top + pad_bottom and dilation*(kH - 1) in int64 (and the
    # same along W): each must fit, or it wraps (a stride of 2**62 leaves a tiny output).
    for size, k, lo, hi, d in ((h, kh, pads[0], pads[1], dilation_hw[0]), (w, kw, pads[2], pads[3], dilation_hw[1])):
        if size + lo + hi > INT64_MAX or d * (k - 1) > INT64_MAX:
            raise ValueError(f"padding, dilation: the padded input ({size} + {lo} + {hi}) or the dilated kernel "
                             f"({d} * ({k} - 1)) does not fit in int64")
    h_out = _output_size(h, kh, stride_hw[0], pads[0], pads[1], dilation_hw[0])
    w_out = _output_size(w, kw, stride_hw[1], pads[2], pads[3], dilation_hw[1])
    if h_out < 1 or w_out < 1:
        raise ValueError(f"weight: the kernel ({kh}, {kw}) with dilation {dilation_hw} is larger than the "
                         f"padded input ({h + pads[0] + pads[1]}, {w + pads[2] + pads[3]}) "
                         f"(input shape {tuple(input_shape)}, padding {pads}); the output would be "
                         f"({h_out}, {w_out})")
    # Sizes the kernel allocates or indexes: the output and one image's column matrix.
    fits_int64((n, c_out, h_out, w_out), itemsize, "output", "input")
    fits_int64((c_per_group * kh * kw, h_out * w_out), itemsize, "column buffer", "input")
    return Conv2dGeometry(stride_hw, pads, dilation_hw, groups, (n, c_out, h_out, w_out))


def _kernel_args(geo: Conv2dGeometry) -> tuple[int, int, int, int, int, int, int, int, int]:
    """The binding's trailing arguments, in its order."""
    return (*geo.stride, *geo.padding, *geo.dilation, geo.groups)


def _inputs(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checked but not yet copied: the caller checks the geometry first, then copies."""
    x = float_array(x, "input", ndim=4, layout="(N, C_in, H, W)", contiguous=False)
    weight = float_array(weight, "weight", ndim=4, layout="(C_out, C_in/groups, kH, kW)", contiguous=False)
    if weight.dtype != x.dtype:
        raise TypeError(f"weight: dtype {weight.dtype} does not match the input's dtype {x.dtype}")
    return x, weight


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
           activation: str | None = None, negative_slope: float = 0.01) -> np.ndarray:
    """2-D convolution (cross-correlation) of a batch of images, as torch.nn.functional.conv2d.

    Args:
        x: (N, C_in, H, W) float32 or float64 array.
        weight: (C_out, C_in/groups, kH, kW), same dtype as x.
        bias: (C_out,), same dtype as x, or None (default).
        stride: int or (h, w) pair, >= 1 (default 1).
        padding: int, (h, w) pair (zeros on both sides), 'valid' (none) or 'same' (output
            size = input size; stride must be 1; an even kernel pads one more bottom/right).
            Default 0.
        dilation: int or (h, w) pair, >= 1 (default 1).
        groups: channels are split into this many groups, convolved separately
            (groups == C_in == C_out is a depthwise convolution). Default 1.
        activation: None (default), "relu", "leaky_relu" (with negative_slope >= 0), "tanh"
            or "sigmoid": applied, with the bias, as the output is written (a fused layer,
            see pycore.functional.fused; its backward is activation_backward then
            conv2d_backward).
        negative_slope: the fused leaky_relu's slope, >= 0 (default 0.01).

    Returns:
        y, a new (N, C_out, H_out, W_out) array of x's dtype with
        H_out = floor((H + pad_top + pad_bottom - dilation_h*(kH-1) - 1) / stride_h) + 1
        (W_out likewise).
    """
    return conv2d_forward(x, weight, bias, stride, padding, dilation, groups, activation, negative_slope)[0]


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                   stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                   dilation: int | tuple[int, int] = 1, groups: int = 1, activation: str | None = None,
                   negative_slope: float = 0.01) -> tuple[np.ndarray, Conv2dContext]:
    """conv2d, and what conv2d_backward needs.

    Args:
        x: (N, C_in, H, W) float32 or float64 array.
        weight: (C_out, C_in/groups, kH, kW), x's dtype.
        bias: (C_out,) or None (default).
        stride: int or (h, w) pair, as conv2d (default 1).
        padding: int, (h, w) pair, 'valid' or 'same', as conv2d (default 0).
        dilation: int or (h, w) pair, as conv2d (default 1).
        groups: as conv2d (default 1).
        activation: the fused activation, as conv2d (default None).
        negative_slope: the fused leaky_relu's slope (default 0.01).

    Returns:
        (y, ctx) with y = conv2d(...), (N, C_out, H_out, W_out); ctx = Conv2dContext(input,
        weight, stride, padding, dilation, groups).
    """
    x, weight = _inputs(x, weight)
    if bias is not None:
        bias = float_array(bias, "bias", ndim=1, layout="(C_out,)")
        if bias.dtype != x.dtype:
            raise TypeError(f"bias: dtype {bias.dtype} does not match the input's dtype {x.dtype}")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias: expected shape ({weight.shape[0]},) (one per output channel), "
                             f"got {bias.shape}")
    code, slope = activation_code(activation, negative_slope)
    geo = conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, x.itemsize)
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    out = np.empty(geo.output_shape, dtype=x.dtype)
    y = _C.conv2d_forward(out, x, weight, bias, *_kernel_args(geo), code, slope)
    return y, Conv2dContext(x, weight, stride, padding, dilation, groups)


def conv2d_backward(grad_output: np.ndarray, ctx: Conv2dContext, grad_weight: np.ndarray | None = None,
                    grad_bias: np.ndarray | None = None, need_input_grad: bool = True) -> np.ndarray | None:
    """Gradients of conv2d, given dL/dy and conv2d_forward's ctx.

    Adds, in place,
        grad_weight (C_out, C_in/groups, kH, kW) += dL/dweight   (when given)
        grad_bias   (C_out,)                     += dL/dbias = sum of grad_output over N, H, W
    A fused activation's gradient is not included: run fused.activation_backward first.

    Args:
        grad_output: dL/dy, (N, C_out, H_out, W_out), x's dtype.
        ctx: conv2d_forward's Conv2dContext.
        grad_weight: (C_out, C_in/groups, kH, kW) C-contiguous writeable array of x's
            dtype that dL/dweight is ADDED into, or None (default: the weight is frozen).
        grad_bias: (C_out,) likewise for dL/dbias, or None (default).
        need_input_grad: False skips dL/dx (a network's first layer: that saves most of
            its backward). Default True.

    Returns:
        dL/dx, a new (N, C_in, H, W) array; None when need_input_grad is False.
    """
    x, weight, stride, padding, dilation, groups = context(ctx, Conv2dContext, "conv2d")
    x, weight = _inputs(x, weight)
    geo = conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, x.itemsize)
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    grad_output = float_array(grad_output, "grad_output", ndim=4, layout="(N, C_out, H_out, W_out)")
    if grad_output.dtype != x.dtype:
        raise TypeError(f"grad_output: dtype {grad_output.dtype} does not match the input's dtype {x.dtype}")
    if grad_output.shape != geo.output_shape:
        raise ValueError(f"grad_output: expected shape {geo.output_shape} (the output's), got {grad_output.shape}")
    grad_weight = gradient_buffer(grad_weight, "grad_weight", weight.shape, x.dtype)
    grad_bias = gradient_buffer(grad_bias, "grad_bias", (weight.shape[0],), x.dtype)
    grad_input = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    _C.conv2d_backward(grad_input, grad_weight, grad_bias, grad_output, x, weight, *_kernel_args(geo))
    return grad_input


def _as_2d(x: np.ndarray, weight: np.ndarray, stride: int | tuple[int], padding: int | tuple[int] | str,
           dilation: int | tuple[int]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """conv1d's arguments as conv2d's on a height-1 image: x (N, C, L) -> (N, C, 1, L),
    weight (O, C_g, K) -> (O, C_g, 1, K) (views, no copies), and the 1-D hyper-parameters
    as (1, s), (0, p), (1, d); 'valid'/'same' pass through."""
    x = float_array(x, "input", ndim=3, layout="(N, C_in, L)")
    weight = float_array(weight, "weight", dtype=x.dtype, ndim=3, layout="(C_out, C_in / groups, K)")
    hyper = dict(stride=(1, int_single(stride, "stride", 1)), dilation=(1, int_single(dilation, "dilation", 1)),
                 padding=padding if isinstance(padding, str) else (0, int_single(padding, "padding", 0)))
    return x[:, :, None, :], weight[:, :, None, :], hyper


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: int | tuple[int] = 1,
           padding: int | tuple[int] | str = 0, dilation: int | tuple[int] = 1, groups: int = 1) -> np.ndarray:
    """1-D convolution (cross-correlation) of a batch of sequences, as
    torch.nn.functional.conv1d, on conv2d's kernels (a height-1 image).

    Args:
        x: (N, C_in, L) float32 or float64 array.
        weight: (C_out, C_in / groups, K), x's dtype.
        bias: (C_out,) or None (default).
        stride: int >= 1, or a 1-tuple (default 1).
        padding: int >= 0 (both ends), a 1-tuple, 'valid' or 'same' (stride 1 only).
            Default 0.
        dilation: int >= 1, or a 1-tuple (default 1).
        groups: as conv2d (default 1).

    Returns:
        y, a new (N, C_out, L_out) array of x's dtype,
        L_out = floor((L + 2 padding - dilation (K - 1) - 1) / stride) + 1.
    """
    return conv1d_forward(x, weight, bias, stride, padding, dilation, groups)[0]


def conv1d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                   stride: int | tuple[int] = 1, padding: int | tuple[int] | str = 0,
                   dilation: int | tuple[int] = 1, groups: int = 1) -> tuple[np.ndarray, Conv1dContext]:
    """conv1d, and what conv1d_backward needs.

    Args:
        x: (N, C_in, L) float32 or float64 array.
        weight: (C_out, C_in / groups, K), x's dtype.
        bias: (C_out,) or None (default).
        stride: as conv1d (default 1).
        padding: as conv1d (default 0).
        dilation: as conv1d (default 1).
        groups: as conv1d (default 1).

    Returns:
        (y, ctx) with y = conv1d(...), (N, C_out, L_out); ctx = Conv1dContext(input, weight,
        stride, padding, dilation, groups).
    """
    x4, w4, hyper = _as_2d(x, weight, stride, padding, dilation)
    y = conv2d(x4, w4, bias, groups=groups, **hyper)[:, :, 0, :]
    return y, Conv1dContext(x4[:, :, 0, :], w4[:, :, 0, :], stride, padding, dilation, groups)


def conv1d_backward(grad_output: np.ndarray, ctx: Conv1dContext, grad_weight: np.ndarray | None = None,
                    grad_bias: np.ndarray | None = None, need_input_grad: bool = True) -> np.ndarray | None:
    """Gradients of conv1d, given dL/dy and conv1d_forward's ctx (conv2d_backward on a
    height-1 image).

    Args:
        grad_output: dL/dy, (N, C_out, L_out), x's dtype.
        ctx: conv1d_forward's Conv1dContext.
        grad_weight: (C_out, C_in / groups, K) C-contiguous writeable array of x's dtype
            that dL/dweight is ADDED into, or None (default: the weight is frozen).
        grad_bias: (C_out,) likewise for dL/dbias (the sum of grad_output over N and L),
            or None (default).
        need_input_grad: False skips dL/dx (default True).

    Returns:
        dL/dx, an (N, C_in, L) array; None when need_input_grad is False.
    """
    x, weight, stride, padding, dilation, groups = context(ctx, Conv1dContext, "conv1d")
    x4, w4, hyper = _as_2d(x, weight, stride, padding, dilation)
    grad_output = float_array(grad_output, "grad_output", dtype=x4.dtype, ndim=3, layout="(N, C_out, L_out)")
    _, _, left, right = conv_padding(hyper["padding"], (1, w4.shape[3]), hyper["stride"], hyper["dilation"])
    expected = (x4.shape[0], w4.shape[0],
                _output_size(x4.shape[3], w4.shape[3], hyper["stride"][1], left, right, hyper["dilation"][1]))
    if grad_output.shape != expected:
        raise ValueError(f"grad_output: expected shape {expected} (the output's), got {grad_output.shape}")
    grad_weight = gradient_buffer(grad_weight, "grad_weight", w4.shape[:2] + w4.shape[3:], x4.dtype)
    ctx2d = Conv2dContext(x4, w4, groups=groups, **hyper)
    grad_x = conv2d_backward(grad_output[:, :, None, :], ctx2d,
                             None if grad_weight is None else grad_weight[:, :, None, :], grad_bias,
                             need_input_grad=need_input_grad)
    return None if grad_x is None else grad_x[:, :, 0, :]
