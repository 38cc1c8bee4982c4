"""Pooling benchmarks: pycore against PyTorch's NCHW pooling and a vectorised numpy version.

Shapes from issue 3: (64, 32, 28, 28) with k2 s2, and (64, 64, 32, 32) with k3 s1 p1;
and LeNet-5's two poolings at batch 64 (issue 9): (64, 6, 28, 28) and (64, 16, 10, 10), k2 s2;
max and avg; forward alone and forward + backward; 1 and 2 threads. The numpy peer
below (numpy_pool_forward / numpy_pool_backward) is checked against pycore before any
case is timed.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

try:
    from . import harness
except ImportError:  # run as a script from benchmarks/
    import harness

import pycore.functional as F
import pycore.nn as nn

SHAPES = [((64, 32, 28, 28), 2, 2, 0), ((64, 64, 32, 32), 3, 1, 1), ((64, 6, 28, 28), 2, 2, 0),
          ((64, 16, 10, 10), 2, 2, 0)]


# -- the numpy peer: windows as a strided view, reductions over the window axes ---------

def _windows(x, k, s, p, fill):
    """(N, C, OH, OW, k, k) view of the padded x; padding filled with `fill`."""
    if p:
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def numpy_pool_forward(x, k, s, p, mode):
    """Max pooling (padding -inf) or average pooling (count_include_pad=True); for max also
    the position of each maximum inside its window, flat in [0, k*k), for the backward."""
    if mode == "max":
        w = _windows(x, k, s, p, -np.inf)
        flat = w.reshape(w.shape[:4] + (k * k,))  # copies: the windows overlap or are strided
        position = flat.argmax(axis=-1)
        return np.take_along_axis(flat, position[..., None], axis=-1)[..., 0], position
    return _windows(x, k, s, p, 0.0).mean(axis=(-2, -1), dtype=x.dtype), None


def numpy_pool_backward(gy, position, x_shape, k, s, p, mode):
    """Scatter gy back over the windows, one vectorised strided add per window offset."""
    N, C, H, W = x_shape
    OH, OW = gy.shape[2:]
    gx = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=gy.dtype)
    share = gy / gy.dtype.type(k * k)
    for a in range(k):
        for b in range(k):
            target = gx[:, :, a:a + s * (OH - 1) + 1:s, b:b + s * (OW - 1) + 1:s]
            target += np.where(position == a * k + b, gy, 0) if mode == "max" else share
    return gx[:, :, p:p + H, p:p + W]


def _check_numpy_peer(rng):
    """The numpy peer and pycore agree on a small input with both geometries."""
    for (_, _, _, _), k, s, p in SHAPES:
        x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
        for mode in ("max", "avg"):
            m = nn.MaxPool2d(k, s, p) if mode == "max" else nn.AvgPool2d(k, s, p)
            y = m(x)
            gy = rng.standard_normal(y.shape).astype(np.float32)
            y_np, position = numpy_pool_forward(x, k, s, p, mode)
            np.testing.assert_allclose(y_np, y, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(numpy_pool_backward(gy, position, x.shape, k, s, p, mode), m.backward(gy),
                                       rtol=1e-5, atol=1e-6)


def _cases(rng, shape, k, s, p, mode):
    """Forward and forward+backward cases of one shape and mode, at 1 and 2 threads."""
    import torch

    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x)
    py_fn = F.max_pool2d if mode == "max" else F.avg_pool2d
    torch_fn = torch.nn.functional.max_pool2d if mode == "max" else torch.nn.functional.avg_pool2d
    module = nn.MaxPool2d(k, s, p) if mode == "max" else nn.AvgPool2d(k, s, p)
    gy = rng.standard_normal(py_fn(x, k, s, p).shape).astype(np.float32)
    gyt = torch.from_numpy(gy)

    def pycore_train():
        module(x)
        return module.backward(gy)

    def numpy_train():
        _, position = numpy_pool_forward(x, k, s, p, mode)
        return numpy_pool_backward(gy, position, x.shape, k, s, p, mode)

    def torch_train():
        xg = xt.detach().requires_grad_(True)
        torch_fn(xg, k, s, p).backward(gyt)
        return xg.grad

    label = f"{shape} k{k} s{s} p{p}"
    out = []
    for threads in (1, 2):
        out.append(harness.Case(op=f"{mode}_pool2d fwd", shape=label, threads=threads,
                                pycore=lambda: py_fn(x, k, s, p),
                                numpy=lambda: numpy_pool_forward(x, k, s, p, mode)[0],
                                torch=lambda: torch_fn(xt, k, s, p),
                                items=float(np.prod(shape)), items_name="input elem/s"))
        out.append(harness.Case(op=f"{mode}_pool2d fwd+bwd", shape=label, threads=threads,
                                pycore=pycore_train, numpy=numpy_train, torch=torch_train,
                                items=float(np.prod(shape)), items_name="input elem/s"))
    return out


def cases(quick=False):
    rng = np.random.default_rng(0)
    _check_numpy_peer(rng)
    shapes = SHAPES[:1] if quick else SHAPES
    return [case for shape, k, s, p in shapes for mode in ("max", "avg") for case in _cases(rng, shape, k, s, p, mode)]
